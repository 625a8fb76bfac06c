"""Prometheus plumbing with no service code in it: plain-number counters and histograms, the exposition endpoint.

The event loop is the only writer of every count and, through the /metrics
handler running on the same loop, the only reader: so a count is a float in a
dict, not prometheus-client's locked value objects (about a microsecond each,
and a request touches a dozen). prometheus-client renders the exposition
format. The service and the shim each build their metrics on these.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_left
from collections.abc import AsyncIterator, Sequence

from aiohttp import web
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

__all__ = [
    "CALL_BUCKETS_S",
    "METRICS_PATH",
    "WAIT_BUCKETS_S",
    "Counts",
    "Histograms",
    "metrics_response",
    "new_registry",
    "serve_metrics",
]

METRICS_PATH = "/metrics"

# Seconds. Waits run from nothing (the common case) to a minute or two under overload.
WAIT_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
CALL_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

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
