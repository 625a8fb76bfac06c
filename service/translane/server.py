"""The gRPC server: the Translator servicer, its request validation (bytes that do not parse included), health,
reflection, and a graceful lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from .config import Config, ModelConfig
from .decoding import Undecodable, parser, streaming, unary
from .engine import Engine, Job, Stats
from .errors import (
    BudgetSpent,
    InvalidRequest,
    ModelUnavailable,
    OutputTruncated,
    Overloaded,
    ProviderAuthError,
    ProviderError,
    ProviderModelNotFound,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    TranslaneError,
    UnknownModel,
    quote,
)
from .lanes import BATCH, INTERACTIVE
from .languages import NAMES, normalize_language
from .prometheus import serve_metrics
from .tls import ServerCertificates
from .tracing import ATTR, MAX_ID_CHARS, grpc_server_interceptors
from .tracing import enabled as tracing_enabled
from .v1 import translate_pb2 as pb
from .v1 import translate_pb2_grpc as pb_grpc

__all__ = ["SERVICE_NAME", "TranslatorService", "running_server", "serve"]

log = logging.getLogger("translane.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Translator"].full_name
MIME_TYPES = ("text/plain", "text/html")
DEADLINE_MARGIN_S = 0.02
# As the shim allows: a task id is logged, traced and echoed, so it is one short line.
MAX_TASK_ID_CHARS = 256
_PRIORITIES = frozenset(pb.Priority.values())
# What must never be in a task id (a log line) or a glossary term (one line of the prompt):
# controls, and anything that ends or folds a line.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


_GRPC_CODES: tuple[tuple[type[TranslaneError], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (BudgetSpent, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (OutputTruncated, grpc.StatusCode.OUT_OF_RANGE),
    (ModelUnavailable, grpc.StatusCode.UNAVAILABLE),
    (ProviderRateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ProviderQuotaExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ProviderRejected, grpc.StatusCode.INVALID_ARGUMENT),
    (ProviderAuthError, grpc.StatusCode.FAILED_PRECONDITION),
    (ProviderModelNotFound, grpc.StatusCode.FAILED_PRECONDITION),
    (ProviderTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (ProviderError, grpc.StatusCode.UNAVAILABLE),
)


def grpc_status_of(exc: TranslaneError) -> grpc.StatusCode:
    """The gRPC status code for one of our errors: the only place this mapping lives."""
    for kind, code in _GRPC_CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def _usage(stats: Stats) -> pb.Usage:
    return pb.Usage(
        prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens,
        total_tokens=stats.prompt_tokens + stats.completion_tokens,
        cached_tokens=stats.cached_tokens,
        cost=round(stats.cost, 8),
        currency=stats.currency,
        estimated=stats.estimated,
        reasoning_tokens=stats.reasoning_tokens,
        cached_segments=stats.cached_segments,
    )


def _timing(stats: Stats, started: float) -> pb.Timing:
    return pb.Timing(
        queued_ms=stats.queued_s * 1000,
        governed_ms=stats.governed_s * 1000,
        upstream_ms=stats.upstream_s * 1000,
        total_ms=(time.perf_counter() - started) * 1000,
    )


# The service's own failures are final for a client's automatic retry policy (gRFC A6 pushback: a
# negative value stops it): the service has already retried the provider within the deadline, and
# UNAVAILABLE from it means "the provider is failing", which another replica would only repeat. A
# failure of the transport (a backend killed, or refusing calls while it stops) carries no such
# trailer, so the shim's channel retries it on another backend (gateway_shim/_app.py).
NO_RETRY = ("grpc-retry-pushback-ms", "-1")


def _trailers(exc: TranslaneError, code: grpc.StatusCode) -> tuple[tuple[str, str | bytes], ...]:
    if exc.retry_after_s is None:
        return (NO_RETRY,)
    delay = max(0.001, exc.retry_after_s)
    detail = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=int(delay), nanos=int((delay % 1) * 1e9))
    )
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=exc.message)
    status.details.add().Pack(detail)
    return (
        NO_RETRY,
        ("retry-after", str(math.ceil(delay))),
        ("grpc-status-details-bin", status.SerializeToString()),
    )


@dataclass(slots=True)
class _Served:
    """What one RPC did, for its metrics, its server span and its log line: recorded when its `with` ends."""

    rpc: str
    task_id: str
    segments: int
    context: grpc.aio.ServicerContext[Any, Any]
    record: Callable[[_Served], None]
    started: float = field(default_factory=time.perf_counter)
    job: Job | None = None
    stats: Stats = field(default_factory=Stats)
    status: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    first_token_s: float | None = None
    served_by: str = ""
    # The model the request asked for (the default's name when it named none), echoed on every answer.
    requested: str = ""

    def __enter__(self) -> _Served:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if kind is not None and issubclass(kind, asyncio.CancelledError | GeneratorExit):
            remaining = self.context.time_remaining()
            expired = remaining is not None and remaining <= 0
            self.status = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
        self.record(self)


class TranslatorService(pb_grpc.TranslatorServicer):
    """translane.v1.Translator backed by an Engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.config: Config = engine.config
        self._loop = asyncio.get_running_loop()
        self._tracing = tracing_enabled()
        # Every code translane can prompt for, and any a model's own list adds.
        known = dict.fromkeys(NAMES)
        for m in self.config.models.values():
            known.update(dict.fromkeys(m.languages))
        self._languages = tuple(known)

    # -- validation -----------------------------------------------------------

    def _job(self, req: pb.TranslateRequest, context: grpc.aio.ServicerContext[Any, Any]) -> Job:
        cfg = self.config
        if not req.segments:
            raise InvalidRequest("segments: at least one segment is required")
        if len(req.segments) > cfg.server.max_segments:
            raise InvalidRequest(f"segments: {len(req.segments)} segments, over the limit of {cfg.server.max_segments}")
        for i, s in enumerate(req.segments):
            if len(s) > cfg.server.max_segment_chars:
                raise InvalidRequest(
                    f"segments[{i}]: {len(s)} characters, over the limit of {cfg.server.max_segment_chars}"
                )
        target = normalize_language(req.target_language)
        if not target:
            raise InvalidRequest("target_language: required (a language code such as 'zh' or 'en')")
        source = normalize_language(req.source_language)
        for name, code, raw in (
            ("target_language", target, req.target_language),
            ("source_language", source, req.source_language),
        ):
            if code and code not in self._languages:
                raise InvalidRequest(
                    f"{name}: unknown language {quote(raw)}; accepted: {', '.join(self._languages)} "
                    "(and region or script variants such as zh-CN, zh-TW, pt-BR, en-US)"
                )
        if req.mime_type and req.mime_type not in MIME_TYPES:
            raise InvalidRequest(f"mime_type: must be one of {', '.join(MIME_TYPES)}, got {quote(req.mime_type)}")
        if len(req.task_id) > MAX_TASK_ID_CHARS or _LINE_BREAKING.search(req.task_id):
            raise InvalidRequest(
                f"task_id: must be one line of at most {MAX_TASK_ID_CHARS} characters, "
                f"no control characters; got {quote(req.task_id)}"
            )
        if req.priority not in _PRIORITIES:
            raise InvalidRequest(f"priority: unknown value {req.priority}; accepted: {', '.join(pb.Priority.keys())}")
        glossary = self._glossary(req)
        model = self._model_for(req.model, target)
        remaining = context.time_remaining()
        budget = cfg.server.default_deadline_s if remaining is None else min(remaining, cfg.server.default_deadline_s)
        priority = BATCH if req.priority == pb.PRIORITY_BATCH else INTERACTIVE
        max_wait = cfg.server.batch_max_queue_wait_s if priority == BATCH else cfg.server.interactive_max_queue_wait_s
        now = self._loop.time()
        # Answer a little before the caller's deadline, so a shed request hears why.
        deadline = now + budget - DEADLINE_MARGIN_S
        return Job(
            segments=tuple(req.segments),
            target_language=target,
            source_language=source,
            model=model.name,
            deadline=deadline,
            max_queue_wait_s=max_wait,
            task_id=req.task_id,
            priority=priority,
            max_output_tokens=req.max_output_tokens,
            glossary=glossary,
            mime_type=req.mime_type or "text/plain",
            allow_truncated=req.allow_truncated,
            use_cache=not req.no_cache,
        )

    def _glossary(self, req: pb.TranslateRequest) -> tuple[tuple[str, str], ...]:
        """The request's glossary as (source, target) terms: each term one non-empty line, within the bounds."""
        limits = self.config.server
        if len(req.glossary) > limits.max_glossary_entries:
            raise InvalidRequest(
                f"glossary: {len(req.glossary)} entries, over the limit of {limits.max_glossary_entries}"
            )
        for i, entry in enumerate(req.glossary):
            for name, term in (("source", entry.source), ("target", entry.target)):
                where = f"glossary[{i}].{name}"
                if not term.strip():
                    raise InvalidRequest(f"{where}: required (a term to translate and its translation)")
                if len(term) > limits.max_glossary_term_chars:
                    raise InvalidRequest(
                        f"{where}: {len(term)} characters, over the limit of {limits.max_glossary_term_chars}"
                    )
                if _LINE_BREAKING.search(term):
                    raise InvalidRequest(f"{where}: must be one line with no control characters, got {quote(term)}")
        return tuple((g.source, g.target) for g in req.glossary)

    def _model_for(self, requested: str, target: str) -> ModelConfig:
        cfg = self.config
        model = cfg.model(requested)
        if model is None:
            raise UnknownModel(f"model: unknown model {quote(requested)}; configured: {', '.join(cfg.models)}")
        # A model that does not speak the target hands over to the first fallback that does.
        for m in self.engine.chain(model.name):
            if not m.languages or target in m.languages:
                return m
        raise InvalidRequest(
            f"target_language: {quote(target)} is not supported by {model.name} or its fallbacks "
            f"(supported: {', '.join(model.languages)})"
        )

    async def refuse(self, rpc: str, request: Undecodable, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Answer a request whose bytes did not parse: INVALID_ARGUMENT saying what is wrong, counted like any."""
        with self._open(rpc, "", 0, context) as served:
            await self._abort(context, InvalidRequest(request.message), served)

    async def _abort(self, context: grpc.aio.ServicerContext[Any, Any], exc: TranslaneError, served: _Served) -> None:
        code = served.status = grpc_status_of(exc)
        if context.done():
            return  # the caller is gone (cancelled or past its deadline): nobody to tell
        await context.abort(code, exc.message, trailing_metadata=_trailers(exc, code))

    # -- one RPC's record -------------------------------------------------------

    def _served(self, rpc: str, request: pb.TranslateRequest, context: grpc.aio.ServicerContext[Any, Any]) -> _Served:
        return self._open(rpc, request.task_id[:MAX_ID_CHARS], len(request.segments), context)

    def _open(self, rpc: str, task_id: str, segments: int, context: grpc.aio.ServicerContext[Any, Any]) -> _Served:
        """The record of an RPC starting now (in flight until `_record` counts it answered)."""
        self.engine.metrics.started(rpc)
        return _Served(rpc, task_id, segments, context, self._record)

    def _record(self, served: _Served) -> None:
        """Count the RPC, annotate its server span and write its one log line: never text, never a key."""
        elapsed = time.perf_counter() - served.started
        job, stats, status = served.job, served.stats, served.status.name
        model = job.model if job is not None else ""
        lane = self.config.models[model].lane if job is not None else ""
        metrics = self.engine.metrics
        metrics.answered(served.rpc, model, lane, status, elapsed)
        if served.first_token_s is not None:
            metrics.first_token(model, served.first_token_s)
        span = trace.get_current_span() if self._tracing else trace.INVALID_SPAN
        if span.is_recording():
            span.set_attributes(
                {
                    ATTR.REQUEST_MODEL: model,
                    ATTR.RESPONSE_MODEL: served.served_by,
                    ATTR.LANE: lane,
                    ATTR.TASK_ID: served.task_id,
                    ATTR.SEGMENTS: served.segments,
                    ATTR.INPUT_TOKENS: stats.prompt_tokens,
                    ATTR.OUTPUT_TOKENS: stats.completion_tokens,
                    ATTR.COST: stats.cost,
                    ATTR.CURRENCY: stats.currency,
                    ATTR.CALLS: stats.calls,
                    ATTR.RETRIES: stats.retries,
                    ATTR.FALLBACKS: stats.fallbacks,
                    ATTR.FALLBACK: stats.fallbacks > 0,
                }
            )
            if served.first_token_s is not None:
                span.set_attribute(ATTR.TTFT_MS, served.first_token_s * 1000)
        if log.isEnabledFor(logging.INFO):
            ctx = span.get_span_context()
            fields: dict[str, Any] = {
                "rpc": served.rpc,
                "status": status,
                "task_id": served.task_id,
                "model": model,
                "served_by": served.served_by,
                "lane": lane,
                "segments": served.segments,
                "prompt_tokens": stats.prompt_tokens,
                "completion_tokens": stats.completion_tokens,
                "cost": round(stats.cost, 8),
                "currency": stats.currency,
                "calls": stats.calls,
                "retries": stats.retries,
                "fallbacks": stats.fallbacks,
                "duration_ms": round(elapsed * 1000, 3),
                "trace_id": format(ctx.trace_id, "032x") if ctx.is_valid else "",
            }
            log.info("%s %s", served.rpc, status, extra=fields)

    # -- RPCs -----------------------------------------------------------------

    async def Translate(
        self, request: pb.TranslateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TranslateResponse:
        with self._served("Translate", request, context) as served:
            try:
                served.job = job = self._job(request, context)
                served.requested = request.model or self.config.default_model
                result = await self.engine.translate(job, served.stats)
            except TranslaneError as exc:
                await self._abort(context, exc, served)
                raise AssertionError("unreachable") from exc
            served.status = grpc.StatusCode.OK
            served.served_by = result.models[0]
            return pb.TranslateResponse(
                translations=[
                    pb.Translation(
                        text=t, model=m, detected_source_language=job.source_language, truncated=cut, cached=hit
                    )
                    for t, m, cut, hit in zip(result.texts, result.models, result.truncated, result.cached, strict=True)
                ],
                model=result.models[0],
                requested_model=served.requested,
                usage=_usage(result.stats),
                timing=_timing(result.stats, served.started),
                task_id=request.task_id,
            )

    async def TranslateStream(
        self, request: pb.TranslateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.TranslateChunk]:
        with self._served("TranslateStream", request, context) as served:
            stats = served.stats
            try:
                served.job = job = self._job(request, context)
                served.requested = request.model or self.config.default_model
                async for d in self.engine.stream(job, stats):
                    if d.text and served.first_token_s is None:
                        served.first_token_s = time.perf_counter() - served.started
                        trace.get_current_span().add_event("first_token")
                    if d.model and not served.served_by:
                        served.served_by = d.model
                    yield pb.TranslateChunk(
                        segment_index=d.index,
                        delta=d.text,
                        model=d.model,
                        segment_done=d.done,
                        truncated=d.truncated,
                        usage=_usage(stats),
                        task_id=request.task_id,
                        requested_model=served.requested,
                    )
            except TranslaneError as exc:
                await self._abort(context, exc, served)
                return
            served.status = grpc.StatusCode.OK
            yield pb.TranslateChunk(
                final=True,
                usage=_usage(stats),
                timing=_timing(stats, served.started),
                task_id=request.task_id,
                segment_index=max(0, len(request.segments) - 1),
                requested_model=served.requested,
            )

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListModelsResponse:
        now = self._loop.time()
        budgets, rotation = self.engine.budgets, self.engine.rotation
        return pb.ListModelsResponse(
            default_model=self.config.default_model,
            models=[
                pb.ModelInfo(
                    name=m.name,
                    lane=m.lane,
                    provider=m.provider,
                    api_style=m.api_style,
                    rpm=m.rpm,
                    tpm=m.tpm,
                    max_concurrency=m.max_concurrency,
                    max_input_tokens=m.max_input_tokens,
                    max_output_tokens=m.max_output_tokens,
                    context_tokens=m.context_tokens,
                    input_price_per_mtok=m.input_price_per_mtok,
                    output_price_per_mtok=m.output_price_per_mtok,
                    currency=m.currency,
                    fallbacks=list(m.fallbacks),
                    available=rotation.available(m, now),
                    daily_token_budget=m.daily_token_budget,
                    daily_tokens_spent=budgets.spent(m.name)[0],
                    daily_cost_budget=m.daily_cost_budget,
                    daily_cost_spent=budgets.spent(m.name)[1],
                )
                for m in self.config.models.values()
            ],
        )


def _add_translator(service: TranslatorService, server: grpc.aio.Server) -> None:
    """Register `service` as pb_grpc.add_TranslatorServicer_to_server does, with our own request parsing:
    bytes that do not parse are INVALID_ARGUMENT naming what is wrong, not UNKNOWN."""
    translate = parser(pb.TranslateRequest)
    handlers = {
        "Translate": grpc.unary_unary_rpc_method_handler(
            unary("Translate", service.Translate, service.refuse),
            request_deserializer=translate,
            response_serializer=pb.TranslateResponse.SerializeToString,
        ),
        "TranslateStream": grpc.unary_stream_rpc_method_handler(
            streaming("TranslateStream", service.TranslateStream, service.refuse),
            request_deserializer=translate,
            response_serializer=pb.TranslateChunk.SerializeToString,
        ),
        "ListModels": grpc.unary_unary_rpc_method_handler(
            unary("ListModels", service.ListModels, service.refuse),
            request_deserializer=parser(pb.ListModelsRequest),
            response_serializer=pb.ListModelsResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """Listen on `address`; OSError saying so when it cannot (in use, say), where grpc raises RuntimeError."""
    try:
        if credentials is not None:
            port: int = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address} (in use, or not an address of this machine): {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return port


class RunningServer:
    """A started server: its bound port, health servicer, engine, metrics and health ports (0 when not served)."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        health_servicer: health.aio.HealthServicer,
        engine: Engine,
        metrics_port: int = 0,
        certificates: ServerCertificates | None = None,
        health_port: int = 0,
    ) -> None:
        self.server = server
        self.port = port
        self.health = health_servicer
        self.engine = engine
        self.metrics_port = metrics_port
        self.certificates = certificates
        self.health_port = health_port

    def on_sighup(self) -> None:
        """SIGHUP: put disabled models back in rotation and read the TLS certificates again."""
        self.engine.governor.enable_all()
        if self.certificates is not None:
            self.certificates.reload()


@contextlib.asynccontextmanager
async def running_server(config: Config, *, grace_s: float | None = None) -> AsyncIterator[RunningServer]:
    """Start the gRPC server on config.server.host:port (and /metrics on metrics_port unless 0);
    on exit go NOT_SERVING and stop gracefully, then stop serving metrics."""
    # Plaintext off loopback, or unreadable certificates, fail here, naming the setting, before anything starts.
    config.server.check_listen()
    certificates = ServerCertificates(config.server) if config.server.tls else None
    async with Engine.open(config) as engine, contextlib.AsyncExitStack() as stack:
        metrics_port = 0
        if config.server.metrics_port:
            metrics = serve_metrics(engine.metrics.registry, config.server.host, config.server.metrics_port)
            metrics_port = await stack.enter_async_context(metrics)
        server = grpc.aio.server(
            interceptors=grpc_server_interceptors() or None,
            options=[
                ("grpc.max_receive_message_length", 32 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ],
        )
        _add_translator(TranslatorService(engine), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        address = f"{config.server.host}:{config.server.port}"
        credentials = certificates.credentials() if certificates is not None else None
        port = _bind(server, address, credentials)
        health_server, health_port = None, 0
        if config.server.health_port:
            # Health alone, in plaintext, for probes without TLS: a server of its own, so nothing
            # else is reachable on that port.
            health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
            health_port = _bind(health_server, f"{config.server.host}:{config.server.health_port}", None)
            await health_server.start()
        await server.start()
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        try:
            yield RunningServer(server, port, health_servicer, engine, metrics_port, certificates, health_port)
        finally:
            # Stop taking new work first, so load balancers drain us, then finish in-flight calls.
            await health_servicer.enter_graceful_shutdown()
            await server.stop(config.server.grace_s if grace_s is None else grace_s)
            if health_server is not None:
                await health_server.stop(0)


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    """Run the server until SIGTERM or SIGINT; SIGHUP puts disabled models back in rotation and reloads TLS."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_server(config) as running:
        loop.add_signal_handler(signal.SIGHUP, running.on_sighup)
        log.info(
            "translane serving on %s:%d (%s; models file %s, default model %s, governor %s)",
            config.server.host,
            running.port,
            ("mTLS" if running.certificates.mutual else "TLS") if running.certificates else "plaintext",
            config.source,
            config.default_model,
            config.governor.kind,
        )
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("stopping: health NOT_SERVING, grace %.1fs", config.server.grace_s)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.remove_signal_handler(sig)
