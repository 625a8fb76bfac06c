"""The aiohttp application: routes, bearer-key auth, CORS, errors as OpenAI JSON, and its lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

import grpc
from aiohttp import web
from translane import tls
from translane.config import ConfigError
from translane.tenants import Tenant, TenantsFile
from translane.tracing import aiohttp_server_middleware, grpc_client_interceptors
from translane.wire import WireError, from_rpc_error

from ._backend import ACTING_TENANT, Backend
from ._batches import routes as batch_routes
from ._config import ShimConfig
from ._description import OPENAPI_PATH, openapi_handler
from ._files import BATCHES, Batches
from ._http import IS_ADMIN, STATE, TASK_ID, TASK_ID_HEADER, TENANT, ShimState, json_response
from ._metrics import METRICS_PATH, ShimMetrics
from ._openai import chat_completions, list_models
from ._plugin import custom_translate
from ._store import Store
from ._usage import USAGE_PATH, get_usage

__all__ = ["TENANTS", "RunningShim", "create_app", "run_shim", "running_shim"]

log = logging.getLogger("translane.shim")

METRICS = web.AppKey("translane_shim_metrics", ShimMetrics)
# Whose key is whose: the tenants file (read again when it changes, and on SIGHUP) plus TRANSLANE_API_KEYS.
TENANTS = web.AppKey("translane_shim_tenants", TenantsFile)
# The tenants file is looked at this often (monotonic seconds) for a change.
TENANTS_CHECK_S = 5.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HEALTH_PATH = "/healthz"
_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # The target may resolve to many service pods (a headless Service): spread calls over all of them.
    ("grpc.lb_policy_name", "round_robin"),
    # A backend that restarts is back within a second or two: look for it that soon, not after grpc's
    # default reconnect backoff (1 s growing to 120 s), or a rolling restart finds every backend "failing".
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # A call that fails in the transport (its backend killed, or refusing calls while it stops:
    # UNAVAILABLE; or one the stopping server had received but not started, which grpc cancels:
    # CANCELLED — about one rolling restart in ten met it)
    # is tried again on another backend, within the caller's deadline: safe, as a translation has
    # no effect to repeat but its cost. The service's own failures carry a "do not retry" pushback
    # (translane.server.NO_RETRY), so only transport failures are retried; a stream that has
    # started answering is never retried. Not throttled: grpc's throttle counts the service's own
    # failures too, so after a provider outage it would stop the retries a killed backend needs;
    # three attempts bound the extra calls, each after a backoff.
    ("grpc.enable_retries", 1),
    (
        "grpc.service_config",
        json.dumps(
            {
                "methodConfig": [
                    {
                        "name": [{"service": "translane.v1.Translator"}],
                        "retryPolicy": {
                            "maxAttempts": 3,
                            "initialBackoff": "0.05s",
                            "maxBackoff": "0.5s",
                            "backoffMultiplier": 2,
                            "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
                        },
                    }
                ],
            }
        ),
    ),
    # A stream whose HTTP reader is slow makes the shim's writes wait, and so its reads of the call: what the
    # service sends meanwhile waits in the call's window, in this process. grpc grows a window by BDP probing,
    # to ~4 MiB a stream; without it a window stays at 64 KiB, ample for a translation's pace (a large answer
    # that is not streamed takes a few more round trips, each a fraction of a millisecond within a cluster).
    ("grpc.http2.bdp_probe", 0),
)
# A request message is the body's text plus framing: twice the body's bytes covers any escaping.
_RETRY_SLACK_BYTES = 64 * 1024
_CORS_METHODS = "GET, POST, DELETE, OPTIONS"
_CORS_HEADERS = "Authorization, Content-Type, X-Task-Id, X-Target-Language, Request-Timeout, X-Request-Timeout"
_CORS_EXPOSED = "X-Task-Id, Retry-After"
_CORS_MAX_AGE_S = 600


def _error_response(exc: WireError) -> web.Response:
    headers = exc.headers()
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return web.Response(status=exc.status, body=exc.body(), content_type="application/json", headers=headers)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes OpenAI error JSON with the right status; never a traceback."""
    try:
        return await handler(request)
    except WireError as exc:
        return _error_response(exc)
    except grpc.aio.AioRpcError as exc:
        return _error_response(from_rpc_error(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            message = f"no route for {request.method} {request.path}"
        elif exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        else:
            message = exc.text or exc.reason
        response = _error_response(WireError(exc.status, message, code=exc.reason.lower().replace(" ", "_")))
        if "Allow" in exc.headers:
            # A 405 names the methods the path does take (RFC 9110 requires it).
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except asyncio.CancelledError:
        raise
    except ConnectionResetError:
        # The client hung up mid-request: nobody to answer, nothing to log as an error.
        return web.Response(status=499, reason="Client Closed Request")
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return _error_response(WireError(500, "internal error in the shim", kind="server_error", code="internal_error"))


class _Access:
    """Who may call: bearer keys (each naming its tenant) for every path but the open ones, and the origins CORS
    admits."""

    def __init__(self, config: ShimConfig, open_paths: Iterable[str]) -> None:
        self.tenants = TenantsFile(config.tenants_file, time.monotonic, TENANTS_CHECK_S, config.api_keys)
        # Only with a tenants file does the shim name a tenant to the service (TRANSLANE_API_KEYS alone: as before).
        self.names_tenants = bool(config.tenants_file)
        self.open_paths = frozenset({HEALTH_PATH, METRICS_PATH, OPENAPI_PATH, *open_paths})
        self.origins = config.cors_origins

    def tenant_of(self, header: str) -> Tenant | None:
        """The tenant whose key the Authorization header bears (compared in constant time), or None."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.tenants.current.by_key(token.strip())

    def origin(self, origin: str | None) -> str | None:
        """`origin` when CORS admits it, else None."""
        if not origin or not self.origins:
            return None
        for allowed in self.origins:
            if allowed in ("*", origin) or (allowed.endswith("*") and origin.startswith(allowed[:-1])):
                return origin
        return None

    @web.middleware
    async def preflight(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS" and self.origins and "Access-Control-Request-Method" in request.headers:
            headers = {}
            if self.origin(request.headers.get("Origin")):
                headers = {
                    "Access-Control-Allow-Methods": _CORS_METHODS,
                    "Access-Control-Allow-Headers": request.headers.get(
                        "Access-Control-Request-Headers", _CORS_HEADERS
                    ),
                    "Access-Control-Max-Age": str(_CORS_MAX_AGE_S),
                }
            return web.Response(status=204, headers=headers)
        return await handler(request)

    @web.middleware
    async def auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.tenants.current.enforced and request.path not in self.open_paths and request.method != "OPTIONS":
            header = request.headers.get("Authorization")
            if not header:
                raise WireError(401, "missing API key: send 'Authorization: Bearer KEY'", code="invalid_api_key")
            tenant = self.tenant_of(header)
            if tenant is None:
                raise WireError(401, "invalid API key", code="invalid_api_key")
            if self.names_tenants:
                ACTING_TENANT.set(tenant.name)
                request[TENANT], request[IS_ADMIN] = tenant.name, tenant.admin
        return await handler(request)

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        task_id = request.get(TASK_ID)
        if task_id:
            response.headers[TASK_ID_HEADER] = task_id
        origin = self.origin(request.headers.get("Origin"))
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = _CORS_EXPOSED
            response.headers.add("Vary", "Origin")


async def _healthz(request: web.Request) -> web.Response:
    """GET /healthz: 200 when the service answers SERVING, else 503."""
    status = await request.app[STATE].backend.health()
    return json_response({"status": status}, 200 if status == "SERVING" else 503)


def create_app(
    config: ShimConfig,
    channel: grpc.aio.Channel,
    *,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
    open_paths: Iterable[str] = (),
) -> web.Application:
    """The shim as an aiohttp app calling the service over `channel`.

    /healthz, /metrics and /openapi.json need no key. `extra_routes` sit behind the same auth unless their path is
    in `open_paths`. With tracing on, every request but probes and scrapes (/healthz, /metrics) gets a server span,
    the parent of its gRPC call. Run by running_shim, request bodies arrive as sent, not inflated (read_json in
    gateway_shim._http inflates them, bounded): an extra route that reads one itself must do the same.
    """
    access = _Access(config, open_paths)
    metrics = ShimMetrics()
    traced = aiohttp_server_middleware()
    middlewares = [metrics.middleware, _errors, access.preflight, access.auth]
    app = web.Application(
        client_max_size=config.max_body_bytes, middlewares=[traced, *middlewares] if traced else middlewares
    )
    app[STATE] = ShimState(config, Backend(channel, config.timeout_s, config.service_key))
    app[METRICS] = metrics
    app[TENANTS] = access.tenants
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get(USAGE_PATH, get_usage)
    app.router.add_post("/translate", custom_translate)
    app.router.add_post("/translate/", custom_translate)
    app.router.add_get(HEALTH_PATH, _healthz)
    app.router.add_get(METRICS_PATH, metrics.handler)
    app.router.add_get(OPENAPI_PATH, openapi_handler())
    batches = Batches(Store(config.data_dir), config.file_keep_s)
    app[BATCHES] = batches
    app.router.add_routes(batch_routes())

    async def run_batches(_: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(batches.sweep_forever(), name="shim file sweeper")]
        if access.tenants.path:  # a changed tenants file is read while no call comes to ask
            tasks.append(loop.create_task(access.tenants.watch(), name="tenants file"))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        batches.close()

    app.cleanup_ctx.append(run_batches)
    app.router.add_routes(extra_routes)
    app.on_response_prepare.append(access.on_prepare)
    return app


@dataclass(frozen=True, slots=True)
class RunningShim:
    """A started shim: its app and the port it listens on."""

    app: web.Application
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextlib.asynccontextmanager
async def running_shim(
    config: ShimConfig,
    *,
    channel: grpc.aio.Channel | None = None,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
    open_paths: Iterable[str] = (),
) -> AsyncIterator[RunningShim]:
    """Listen on config.host:port (0 picks a free port); on exit stop the site, then close our channel."""
    own = channel is None
    interceptors = grpc_client_interceptors()

    # grpc retries only a call whose request it kept, 256 KiB by default: keep the largest body's.
    options = (*_CHANNEL_OPTIONS, ("grpc.per_rpc_retry_buffer_size", 2 * config.max_body_bytes + _RETRY_SLACK_BYTES))

    def open_channel() -> grpc.aio.Channel:
        tls_cfg, target = config.backend_tls, config.grpc_target
        return tls.channel(target, tls=tls_cfg, options=options, interceptors=interceptors or None)

    ch = open_channel() if channel is None else channel
    # Channels replaced after a certificate change: each closes once its calls had time to finish.
    retired: dict[grpc.aio.Channel, asyncio.Task[None]] = {}
    following: asyncio.Task[None] | None = None
    backend: Backend | None = None
    try:
        app = create_app(config, ch, extra_routes=extra_routes, open_paths=open_paths)
        backend = app[STATE].backend
        if own and config.backend_tls is not None:
            following = asyncio.create_task(
                _follow_certificates(config.backend_tls, backend, open_channel, config.timeout_s, retired)
            )
        # handler_cancellation: a client that hangs up cancels its handler, and so its gRPC call.
        # auto_decompress=False: bodies are inflated by read_json, bounded, with a JSON error when they do not.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=config.grace_s, auto_decompress=False
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, config.host, config.port)
            await site.start()
            port = runner.addresses[0][1]
            yield RunningShim(app, config.host, port)
        finally:
            await runner.cleanup()
    finally:
        if following is not None:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
        if own:
            for old, closing in retired.items():
                closing.cancel()
                await old.close()
            await (backend.channel if backend is not None else ch).close()


async def _follow_certificates(
    client: tls.ClientTLS,
    backend: Backend,
    open_channel: Callable[[], grpc.aio.Channel],
    grace_s: float,
    retired: dict[grpc.aio.Channel, asyncio.Task[None]],
) -> None:
    """Open a new channel when the client certificate files change (a renewed certificate); new calls use it,
    calls on the old one get `grace_s` to finish."""
    seen = client.signature()
    while True:
        await asyncio.sleep(client.reload_check_s)
        now = client.signature()
        if now == seen:
            continue
        seen = now
        try:
            fresh = open_channel()
        except ConfigError as exc:
            # Half written, say (a certificate beside the old key): the next change is looked at again.
            log.error("TLS files changed but cannot be used, keeping the channel in use: %s", exc)
            continue
        except Exception:
            log.exception("TLS files changed but no channel could be opened with them, keeping the one in use")
            continue
        old = backend.channel
        backend.replace_channel(fresh)
        log.info("TLS files changed: new calls go over a new channel")
        task = asyncio.create_task(old.close(grace_s))
        retired[old] = task

        def forget(_: asyncio.Task[None], old: grpc.aio.Channel = old) -> None:
            retired.pop(old, None)

        task.add_done_callback(forget)


async def run_shim(
    config: ShimConfig,
    *,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
    open_paths: Iterable[str] = (),
) -> None:
    """Serve the shim until cancelled, then shut it down cleanly."""
    async with running_shim(config, extra_routes=extra_routes, open_paths=open_paths) as shim:
        # SIGHUP: read the tenants file again (it is also read again when it changes).
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, shim.app[TENANTS].reload)
        if config.open_to_anyone:
            if config.allow_public:
                log.warning(
                    "no API keys configured and TRANSLANE_SHIM_ALLOW_PUBLIC is set: the shim on %s "
                    "accepts anyone who can reach it",
                    shim.url,
                )
            else:
                log.warning(
                    "no API keys configured (TRANSLANE_API_KEYS or TRANSLANE_API_KEYS_FILE): the shim "
                    "listens on %s only, and any local process may call it",
                    config.host,
                )
        tls_mode = "plaintext"
        if config.backend_tls is not None:
            tls_mode = "mTLS" if config.backend_tls.cert_file else "TLS"
        log.info(
            "translane shim on %s, calling the service at %s over %s (%d API key%s)",
            shim.url,
            config.grpc_target,
            tls_mode,
            len(config.api_keys),
            "" if len(config.api_keys) == 1 else "s",
        )
        if config.tenants_file:
            log.info(
                "tenants file %s: %d tenants, named to the service as %s",
                config.tenants_file,
                len(shim.app[TENANTS].current.by_name),
                "a gateway by key" if config.service_key else "the identity of the shim's channel",
            )
        log.info(
            "chats the shim cannot read as a translation: %s",
            f"sent as written to {config.passthrough_model}"
            if config.passthrough_model
            else "refused with a 400 (set TRANSLANE_SHIM_PASSTHROUGH_MODEL to send them to a chat model)",
        )
        await asyncio.Event().wait()
