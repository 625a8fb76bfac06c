"""The aiohttp application: routes, bearer-key auth, CORS, errors as OpenAI JSON, and its lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

import grpc
from aiohttp import web
from translane.tracing import aiohttp_server_middleware, grpc_client_interceptors

from ._backend import Backend
from ._config import ShimConfig
from ._errors import ShimError, from_rpc_error
from ._http import STATE, TASK_ID, TASK_ID_HEADER, ShimState, json_response
from ._metrics import METRICS_PATH, ShimMetrics
from ._openai import chat_completions, list_models
from ._plugin import custom_translate

__all__ = ["RunningShim", "create_app", "run_shim", "running_shim"]

log = logging.getLogger("translane.shim")

METRICS = web.AppKey("translane_shim_metrics", ShimMetrics)

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
    # A stream whose HTTP reader is slow makes the shim's writes wait, and so its reads of the call: what the
    # service sends meanwhile waits in the call's window, in this process. grpc grows a window by BDP probing,
    # to ~4 MiB a stream; without it a window stays at 64 KiB, ample for a translation's pace (a large answer
    # that is not streamed takes a few more round trips, each a fraction of a millisecond within a cluster).
    ("grpc.http2.bdp_probe", 0),
)
_CORS_METHODS = "GET, POST, OPTIONS"
_CORS_HEADERS = "Authorization, Content-Type, X-Task-Id, Request-Timeout, X-Request-Timeout"
_CORS_EXPOSED = "X-Task-Id, Retry-After"
_CORS_MAX_AGE_S = 600


def _error_response(exc: ShimError) -> web.Response:
    headers = exc.headers()
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return web.Response(status=exc.status, body=exc.body(), content_type="application/json", headers=headers)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes OpenAI error JSON with the right status; never a traceback."""
    try:
        return await handler(request)
    except ShimError as exc:
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
        return _error_response(ShimError(exc.status, message, code=exc.reason.lower().replace(" ", "_")))
    except asyncio.CancelledError:
        raise
    except ConnectionResetError:
        # The client hung up mid-request: nobody to answer, nothing to log as an error.
        return web.Response(status=499, reason="Client Closed Request")
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return _error_response(ShimError(500, "internal error in the shim", kind="server_error", code="internal_error"))


class _Access:
    """Who may call: bearer keys for every path but the open ones, and the origins CORS admits."""

    def __init__(self, config: ShimConfig, open_paths: Iterable[str]) -> None:
        self.keys = tuple(k.encode() for k in config.api_keys)
        self.open_paths = frozenset({HEALTH_PATH, METRICS_PATH, *open_paths})
        self.origins = config.cors_origins

    def key_ok(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        given = token.strip().encode()
        # Compare against every key, so the time taken says nothing about which one nearly matched.
        return sum(hmac.compare_digest(given, k) for k in self.keys) > 0

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
        if self.keys and request.path not in self.open_paths and request.method != "OPTIONS":
            header = request.headers.get("Authorization")
            if not header:
                raise ShimError(401, "missing API key: send 'Authorization: Bearer KEY'", code="invalid_api_key")
            if not self.key_ok(header):
                raise ShimError(401, "invalid API key", code="invalid_api_key")
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

    /healthz and /metrics need no key. `extra_routes` sit behind the same auth unless their path is in
    `open_paths`. With tracing on, every request but those two gets a server span, the parent of its gRPC call.
    """
    access = _Access(config, open_paths)
    metrics = ShimMetrics()
    traced = aiohttp_server_middleware()
    middlewares = [metrics.middleware, _errors, access.preflight, access.auth]
    app = web.Application(
        client_max_size=config.max_body_bytes, middlewares=[traced, *middlewares] if traced else middlewares
    )
    app[STATE] = ShimState(config, Backend(channel, config.timeout_s))
    app[METRICS] = metrics
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/translate", custom_translate)
    app.router.add_post("/translate/", custom_translate)
    app.router.add_get(HEALTH_PATH, _healthz)
    app.router.add_get(METRICS_PATH, metrics.handler)
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
    if channel is None:
        interceptors = grpc_client_interceptors()
        ch = grpc.aio.insecure_channel(config.grpc_target, options=_CHANNEL_OPTIONS, interceptors=interceptors or None)
    else:
        ch = channel
    try:
        app = create_app(config, ch, extra_routes=extra_routes, open_paths=open_paths)
        # handler_cancellation: a client that hangs up cancels its handler, and so its gRPC call.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=config.grace_s)
        await runner.setup()
        try:
            site = web.TCPSite(runner, config.host, config.port)
            await site.start()
            port = runner.addresses[0][1]
            yield RunningShim(app, config.host, port)
        finally:
            await runner.cleanup()
    finally:
        if own:
            await ch.close()


async def run_shim(
    config: ShimConfig,
    *,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
    open_paths: Iterable[str] = (),
) -> None:
    """Serve the shim until cancelled, then shut it down cleanly."""
    async with running_shim(config, extra_routes=extra_routes, open_paths=open_paths) as shim:
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
        log.info(
            "translane shim on %s, calling the service at %s (%d API key%s)",
            shim.url,
            config.grpc_target,
            len(config.api_keys),
            "" if len(config.api_keys) == 1 else "s",
        )
        await asyncio.Event().wait()
