"""OpenTelemetry tracing: set up from the standard OTEL_* variables, off unless asked for.

`OTEL_TRACES_EXPORTER` names the exporters (`otlp`, `console`; default `none`).
With none, no SDK is loaded and no interceptor, middleware or trace config is
installed: every helper here returns "nothing to do" and the hot path is as if
tracing did not exist. With a provider set (by `tracing()` or by
`opentelemetry-instrument`), the maintained instrumentations carry the trace
across each hop: aiohttp server (the shim) → gRPC client → gRPC server → aiohttp
client (the provider sees `traceparent`).

Attributes never hold translated text or keys: models, lanes, ids, counts,
tokens, cost, status and error codes only.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from .config import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "ATTR",
    "aiohttp_client_trace_configs",
    "aiohttp_server_middleware",
    "enabled",
    "end_span",
    "grpc_client_interceptors",
    "grpc_server_interceptors",
    "record_span",
    "tracer",
    "tracing",
    "using",
]


class ATTR:
    """Span attribute names: GenAI semantic conventions where they fit, `translane.*` for the rest."""

    OPERATION = "gen_ai.operation.name"
    PROVIDER = "gen_ai.provider.name"
    REQUEST_MODEL = "gen_ai.request.model"
    RESPONSE_MODEL = "gen_ai.response.model"
    MAX_TOKENS = "gen_ai.request.max_tokens"
    INPUT_TOKENS = "gen_ai.usage.input_tokens"
    OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
    ERROR_TYPE = "error.type"
    HTTP_STATUS = "http.response.status_code"
    MODEL = "translane.model"
    LANE = "translane.lane"
    TASK_ID = "translane.task_id"
    PRIORITY = "translane.priority"
    SEGMENTS = "translane.segments"
    COST = "translane.cost"
    CURRENCY = "translane.currency"
    ATTEMPT = "translane.attempt"
    RETRIES = "translane.retries"
    FALLBACK = "translane.fallback"
    # The way a provider call went: "online" (the model's lane) or "batch" (its batch route).
    ROUTE = "translane.route"
    FALLBACKS = "translane.fallbacks"
    CALLS = "translane.upstream_calls"
    RESERVED_TOKENS = "translane.reserved_tokens"
    QUEUED_MS = "translane.queued_ms"
    GOVERNED_MS = "translane.governed_ms"
    TTFT_MS = "translane.time_to_first_token_ms"
    GRPC_STATUS = "rpc.grpc.status_code"


_OFF = ("", "none")
_OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
_TRUE = ("1", "true", "yes", "on")
# Spans per export. Encoding a batch holds the GIL: the SDK's 512 stall the event loop for tens of
# milliseconds (bench/overhead.py --tracing, p99 at 300 req/s: 29 ms; 5-13 ms with 64, for ~10% more CPU).
EXPORT_BATCH_SPANS = 64
# Probes and scrapes every few seconds would bury the requests that matter.
_UNTRACED_PATHS = frozenset({"/healthz", "/metrics"})


def enabled() -> bool:
    """True when a real tracer provider is installed for this process."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def tracer(name: str) -> Tracer | None:
    """A tracer from the process's provider, or None when tracing is off (so callers skip span work)."""
    return trace.get_tracer(name) if enabled() else None


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        # The Python SDK's own default for `otlp` is gRPC, so the same variables mean the same thing here.
        protocol = (protocol or "grpc").strip()
        if protocol not in _OTLP_BY_PROTOCOL:
            raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported (grpc or http/protobuf)")
        name = _OTLP_BY_PROTOCOL[protocol]
    if name == "otlp_proto_grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    if name == "otlp_proto_http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    raise ConfigError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console or none)")


def _provider(service_name: str, exporters: Sequence[str]) -> TracerProvider:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win; the command's name fills the gap.
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    # The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, the batch
    # sizes and delays from OTEL_BSP_*: the SDK reads them itself.
    provider = TracerProvider(resource=resource)
    batch = None if os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") else EXPORT_BATCH_SPANS
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name), max_export_batch_size=batch))
    return provider


@contextlib.contextmanager
def tracing(service_name: str) -> Iterator[TracerProvider | None]:
    """Install the tracer provider OTEL_* asks for (None when tracing is off); flush and shut it down on exit."""
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").lower().split(",")]
    names = [n for n in names if n not in _OFF]
    if not names or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE or enabled():
        # Off, or someone (opentelemetry-instrument) already installed a provider: leave it be.
        yield None
        return
    provider = _provider(service_name, names)
    trace.set_tracer_provider(provider)
    try:
        yield provider
    finally:
        provider.shutdown()


# -- the maintained instrumentations, only when tracing is on --------------------


_PLUMBING = ("/grpc.health.", "/grpc.reflection.")


def _not_plumbing(details: Any) -> bool:
    """False for health probes and reflection, which every few seconds would each start a trace of their own."""
    # The instrumentation's own filters cost tens of microseconds a call (isinstance on a Protocol).
    method = details.method
    if isinstance(method, bytes):  # grpc.aio clients pass bytes (grpc/grpc#31092)
        method = method.decode()
    return not str(method).startswith(_PLUMBING)


def grpc_server_interceptors() -> list[Any]:
    """Interceptors for grpc.aio.server: a server span per RPC, its parent taken from the caller's metadata."""
    if not enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(filter_=_not_plumbing)]  # type: ignore[no-untyped-call]


def grpc_client_interceptors() -> list[Any]:
    """Interceptors for a grpc.aio channel: a client span per call, trace context injected into its metadata."""
    if not enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(filter_=_not_plumbing))  # type: ignore[no-untyped-call]


def aiohttp_client_trace_configs() -> list[aiohttp.TraceConfig]:
    """Trace configs for an aiohttp session: a span per request, `traceparent` in its headers."""
    if not enabled():
        return []
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    # No url_filter: provider URLs carry no query, and the instrumentation redacts credentials in URLs.
    return [create_trace_config()]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def aiohttp_server_middleware() -> Middleware | None:
    """Middleware for an aiohttp app: a server span per request (probes and scrapes excepted)."""
    if not enabled():
        return None
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor, create_aiohttp_middleware

    # The middleware reads module state that only instrument() sets up; instrument() also swaps
    # web.Application for a subclass in every app of the process (the simulated provider's, the
    # metrics endpoint's), which uninstrument() undoes. What is left is the middleware, for our app alone.
    instrumentor = AioHttpServerInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
        instrumentor.uninstrument()
    traced = create_aiohttp_middleware()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _UNTRACED_PATHS:
            return await handler(request)
        response: web.StreamResponse = await traced(request, handler)
        return response

    return middleware


# -- spans -----------------------------------------------------------------------


def using(span: Span | None) -> contextlib.AbstractContextManager[Any]:
    """Make `span` current for the block (it is not ended); nothing when None."""
    return trace.use_span(span, end_on_exit=False) if span is not None else contextlib.nullcontext()


def end_span(span: Span, error: BaseException | None = None, error_type: str = "") -> None:
    """End `span`, marking it failed when `error` is given: by type and code only, never a message."""
    if error is not None:
        kind = error_type or type(error).__name__
        span.set_attribute(ATTR.ERROR_TYPE, kind)
        span.set_status(Status(StatusCode.ERROR, kind))
    span.end()


def record_span(
    tracer: Tracer,
    name: str,
    start_ns: int,
    duration_s: float,
    attributes: dict[str, Any],
    error: BaseException | None = None,
) -> None:
    """A child of the current span for an interval already measured (a wait seen only once it ended)."""
    span = tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes, start_time=start_ns)
    end_ns = start_ns + max(0, int(duration_s * 1e9))
    if error is not None:
        kind = type(error).__name__
        span.set_attribute(ATTR.ERROR_TYPE, kind)
        span.set_status(Status(StatusCode.ERROR, kind))
    span.end(end_time=min(end_ns, time.time_ns()))
