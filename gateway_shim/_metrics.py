"""The shim's Prometheus metrics: HTTP requests by route and status, their latency, and requests in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from translane.prometheus import CALL_BUCKETS_S, METRICS_PATH, Counts, Histograms, metrics_response, new_registry

from ._http import CLIENT_GONE

__all__ = ["METRICS_PATH", "ShimMetrics"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What the shim answers when the client hung up first (nginx's convention).
CLIENT_CLOSED = 499
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _route(request: web.Request) -> str:
    """The matched route's pattern ("/v1/chat/completions"), so paths can't grow the label set."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


class ShimMetrics:
    """The shim's metrics in their own registry; `middleware` records, `handler` serves GET /metrics.

    Counts are plain numbers, as in translane.metrics: the event loop alone writes and reads them.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.requests = Counts(
            "translane_shim_requests",
            "HTTP requests answered, by route, method and status",
            ["route", "method", "status"],
        )
        self.seconds = Histograms(
            "translane_shim_request_duration_seconds",
            "Time from request to the end of the answer",
            ["route"],
            CALL_BUCKETS_S,
        )
        self.in_flight = 0
        self.registry = new_registry() if registry is None else registry
        self.registry.register(self)

    def collect(self) -> Iterable[Metric]:
        yield self.requests.family()
        yield self.seconds.family()
        yield GaugeMetricFamily("translane_shim_requests_in_flight", "HTTP requests being served", self.in_flight)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        self.in_flight += 1
        try:
            response = await handler(request)
            status = CLIENT_CLOSED if request.get(CLIENT_GONE) else response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            status = CLIENT_CLOSED
            raise
        finally:
            self.in_flight -= 1
            route = _route(request)
            method = request.method if request.method in _METHODS else "OTHER"
            self.requests.inc((route, method, str(status)))
            self.seconds.observe((route,), time.perf_counter() - started)

    async def handler(self, request: web.Request) -> web.Response:
        """GET /metrics."""
        return metrics_response(self.registry, request.headers.get("Accept"))
