"""Prometheus metrics: counts kept as plain numbers as work happens, lane and governor gauges read at scrape time.

The event loop is the only writer of every count and, through the /metrics
handler running on the same loop, the only reader: so a count is a float in a
dict, not prometheus-client's locked value objects (about a microsecond each,
and a request touches a dozen). prometheus-client renders the exposition
format. Each engine owns a registry, so several servers in one process (as in
the tests) never share counts.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Protocol

from aiohttp import web
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from .config import Config, ModelConfig
from .errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
)
from .upstream import Completion

__all__ = [
    "CALL_BUCKETS_S",
    "METRICS_PATH",
    "WAIT_BUCKETS_S",
    "Counts",
    "EngineMetrics",
    "Histograms",
    "call_outcome",
    "metrics_response",
    "new_registry",
    "serve_metrics",
]

METRICS_PATH = "/metrics"

# Seconds. Waits run from nothing (the common case) to a minute or two under overload.
WAIT_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
CALL_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

OUTCOMES = (
    "ok",
    "rate_limited",
    "quota_exhausted",
    "timeout",
    "connection_error",
    "server_error",
    "rejected",
    "cancelled",
)

Labels = tuple[str, ...]


def new_registry() -> CollectorRegistry:
    """A registry with the process, platform and GC collectors in it."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        # They read process-wide facts at scrape time: sharing them between registries is safe.
        registry.register(collector)
    return registry


# -- plain-number metric families ---------------------------------------------


class Counts:
    """A labelled counter: label values -> total."""

    __slots__ = ("doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: Sequence[str]) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.values: dict[Labels, float] = {}

    def inc(self, key: Labels, amount: float = 1.0) -> None:
        self.values[key] = self.values.get(key, 0.0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in self.values.items():
            family.add_metric(list(key), value)
        return family


class _Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.sum = 0.0


class Histograms:
    """A labelled histogram: label values -> bucket counts and sum."""

    __slots__ = ("_le", "bounds", "doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: Sequence[str], bounds: Sequence[float]) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.bounds = tuple(bounds)
        self._le = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self.values: dict[Labels, _Histogram] = {}

    def observe(self, key: Labels, value: float) -> None:
        h = self.values.get(key)
        if h is None:
            h = self.values[key] = _Histogram(len(self.bounds) + 1)
        # Buckets are `le`: a value equal to a bound counts in that bound's bucket.
        h.counts[bisect_left(self.bounds, value)] += 1
        h.sum += value

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, h in self.values.items():
            total, buckets = 0, []
            for le, n in zip(self._le, h.counts, strict=True):
                total += n
                buckets.append((le, float(total)))
            family.add_metric(list(key), buckets, h.sum)
        return family


# -- the engine's metrics -----------------------------------------------------


def call_outcome(exc: BaseException | None) -> str:
    """How an upstream call ended, as one of OUTCOMES."""
    if exc is None:
        return "ok"
    if isinstance(exc, ProviderRateLimited):
        return "rate_limited"
    if isinstance(exc, ProviderQuotaExhausted):
        return "quota_exhausted"
    if isinstance(exc, ProviderTimeout):
        return "timeout"
    if isinstance(exc, ProviderConnectionError):
        return "connection_error"
    if isinstance(exc, ProviderServerError):
        return "server_error"
    if isinstance(exc, ProviderError):
        return "rejected"
    return "cancelled"


class _Snapshots(Protocol):
    def snapshot(self, now: float) -> Mapping[str, Mapping[str, float]]: ...


class _LaneSnapshot(Protocol):
    def snapshot(self) -> Mapping[str, float]: ...


# snapshot key -> (metric name, help); keys a lane or governor does not report are left out.
_LANE_GAUGES = {
    "in_flight": ("translane_lane_in_flight", "Upstream calls the lane has in flight"),
    "queued": ("translane_lane_queued", "Calls waiting in the lane's queue"),
    "max_concurrency": ("translane_lane_max_concurrency", "The lane's concurrency limit"),
}
_LANE_COUNTERS = {
    "granted": ("translane_lane_granted", "Calls the lane let start"),
    "shed": ("translane_lane_shed", "Calls the lane turned away (queue full or deadline out of reach)"),
}
_GOVERNOR_GAUGES = {
    "request_level": ("translane_governor_request_level", "Requests the model's bucket holds now"),
    "request_capacity": ("translane_governor_request_capacity", "Requests the model's bucket holds when full"),
    "token_level": ("translane_governor_token_level", "Tokens the model's bucket holds now"),
    "token_capacity": ("translane_governor_token_capacity", "Tokens the model's bucket holds when full"),
    "rate_factor": ("translane_governor_rate_factor", "Share of the published rate admitted now (<1 after 429s)"),
    "admitted_rpm": ("translane_governor_admitted_rpm", "Requests per minute the governor admits now"),
    "admitted_tpm": ("translane_governor_admitted_tpm", "Tokens per minute the governor admits now"),
    "paused_s": ("translane_governor_paused_seconds", "Seconds until the model's 429 pause ends"),
    "disabled": ("translane_governor_disabled", "1 while the model is out of rotation (spending limit)"),
}


class EngineMetrics:
    """The service's metrics; `registry` is what its /metrics serves."""

    def __init__(
        self,
        config: Config,
        lanes: Mapping[str, _LaneSnapshot],
        governor: _Snapshots,
        clock: Callable[[], float],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._lanes = lanes
        self._governor = governor
        self._clock = clock
        self.requests = Counts(
            "translane_requests",
            "Requests answered, by RPC, model asked for, its lane and gRPC status",
            ["rpc", "model", "lane", "status"],
        )
        self.request_seconds = Histograms(
            "translane_request_duration_seconds",
            "Time from request to answer (or end of stream)",
            ["rpc", "model"],
            CALL_BUCKETS_S,
        )
        self.ttft_seconds = Histograms(
            "translane_time_to_first_token_seconds",
            "TranslateStream: time from request to the first text",
            ["model"],
            CALL_BUCKETS_S,
        )
        self.upstream_calls = Counts(
            "translane_upstream_calls", "Calls to the provider, by model and outcome", ["model", "outcome"]
        )
        self.rate_limited = Counts(
            "translane_upstream_rate_limited", "Provider answers with HTTP 429, by model", ["model"]
        )
        self.retries = Counts(
            "translane_upstream_retries", "Calls retried after a failed one, by the model that failed", ["model"]
        )
        self.fallbacks = Counts(
            "translane_fallbacks", "Calls served by a fallback instead of the model asked for", ["model", "fallback"]
        )
        self.upstream_seconds = Histograms(
            "translane_upstream_duration_seconds",
            "One provider call, from request to last byte",
            ["model"],
            CALL_BUCKETS_S,
        )
        self.queued_seconds = Histograms(
            "translane_queue_wait_seconds", "Time a call waited for a lane slot", ["lane"], WAIT_BUCKETS_S
        )
        self.governed_seconds = Histograms(
            "translane_governor_wait_seconds",
            "Time a call waited for the model's rate budget",
            ["model"],
            WAIT_BUCKETS_S,
        )
        self.tokens = Counts(
            "translane_tokens", "Tokens the provider counted, by model and type (input, output)", ["model", "type"]
        )
        self.cost = Counts("translane_cost", "Cost of the provider calls, by model", ["model", "currency"])
        # Every model's series from the start, so rate() has a zero to count from.
        for m in config.models.values():
            for outcome in OUTCOMES:
                self.upstream_calls.inc((m.name, outcome), 0)
            for counts in (self.rate_limited, self.retries):
                counts.inc((m.name,), 0)
            self.tokens.inc((m.name, "input"), 0)
            self.tokens.inc((m.name, "output"), 0)
            self.cost.inc((m.name, m.currency), 0)
        self.registry = new_registry() if registry is None else registry
        self.registry.register(self)

    # -- what prometheus-client calls at scrape time --------------------------

    def describe(self) -> Iterable[Metric]:
        """The families, without samples, for the registry's name check."""
        for name, doc in _LANE_GAUGES.values():
            yield GaugeMetricFamily(name, doc, labels=["lane"])
        for name, doc in _LANE_COUNTERS.values():
            yield CounterMetricFamily(name, doc, labels=["lane"])
        for name, doc in _GOVERNOR_GAUGES.values():
            yield GaugeMetricFamily(name, doc, labels=["model"])
        for kept in self._kept():
            yield (CounterMetricFamily if isinstance(kept, Counts) else HistogramMetricFamily)(
                kept.name, kept.doc, labels=kept.labels
            )

    def collect(self) -> Iterable[Metric]:
        for kept in self._kept():
            yield kept.family()
        lanes = {name: lane.snapshot() for name, lane in self._lanes.items()}
        yield from _snapshot_families(lanes, _LANE_GAUGES, GaugeMetricFamily, "lane")
        yield from _snapshot_families(lanes, _LANE_COUNTERS, CounterMetricFamily, "lane")
        models = self._governor.snapshot(self._clock())
        yield from _snapshot_families(models, _GOVERNOR_GAUGES, GaugeMetricFamily, "model")

    def _kept(self) -> tuple[Counts | Histograms, ...]:
        return (
            self.requests,
            self.request_seconds,
            self.ttft_seconds,
            self.upstream_calls,
            self.rate_limited,
            self.retries,
            self.fallbacks,
            self.upstream_seconds,
            self.queued_seconds,
            self.governed_seconds,
            self.tokens,
            self.cost,
        )

    # -- engine ------------------------------------------------------------

    def admitted(self, model: ModelConfig, queued_s: float, governed_s: float) -> None:
        """A call got its lane slot after `queued_s` and its reservation after `governed_s`."""
        self.queued_seconds.observe((model.lane,), queued_s)
        self.governed_seconds.observe((model.name,), governed_s)

    def called(
        self, model: ModelConfig, seconds: float, completion: Completion | None, exc: BaseException | None
    ) -> None:
        """One upstream call ended: with `completion`, or with `exc`."""
        name = (model.name,)
        outcome = call_outcome(exc)
        self.upstream_calls.inc((model.name, outcome))
        if isinstance(exc, ProviderError) and exc.status == 429:
            self.rate_limited.inc(name)
        if outcome != "cancelled":
            self.upstream_seconds.observe(name, seconds)
        if completion is not None:
            self.tokens.inc((model.name, "input"), completion.prompt_tokens)
            self.tokens.inc((model.name, "output"), completion.completion_tokens)
            cost = model.cost(completion.prompt_tokens, completion.completion_tokens, completion.cached_tokens)
            self.cost.inc((model.name, model.currency), cost)

    def retried(self, model: ModelConfig) -> None:
        self.retries.inc((model.name,))

    def fell_back(self, asked: str, served: str) -> None:
        self.fallbacks.inc((asked, served))

    # -- server ------------------------------------------------------------

    def answered(self, rpc: str, model: str, lane: str, status: str, seconds: float) -> None:
        """One RPC answered; `model` and `lane` are empty when the request named no valid model."""
        self.requests.inc((rpc, model, lane, status))
        self.request_seconds.observe((rpc, model), seconds)

    def first_token(self, model: str, seconds: float) -> None:
        self.ttft_seconds.observe((model,), seconds)


def _snapshot_families(
    snapshots: Mapping[str, Mapping[str, float]],
    keys: Mapping[str, tuple[str, str]],
    kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
    label: str,
) -> Iterable[Metric]:
    for key, (name, doc) in keys.items():
        family = kind(name, doc, labels=[label])
        for owner, snap in snapshots.items():
            if key in snap:
                family.add_metric([owner], snap[key])
        yield family


# -- the endpoint ---------------------------------------------------------------


def metrics_response(registry: CollectorRegistry, accept: str | None) -> web.Response:
    """The registry in the exposition format the scraper asked for (OpenMetrics or Prometheus text)."""
    encode, content_type = choose_encoder(accept or "")
    return web.Response(body=encode(registry), headers={"Content-Type": content_type})


@contextlib.asynccontextmanager
async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> AsyncIterator[int]:
    """Serve GET /metrics on host:port (0 picks a free port) until exit; yields the bound port.

    On the event loop, not prometheus-client's thread: the collectors read lane and
    governor state and counts that only the loop may touch.
    """

    async def handler(request: web.Request) -> web.Response:
        return metrics_response(registry, request.headers.get("Accept"))

    app = web.Application()
    app.router.add_get(METRICS_PATH, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()
