"""The service's Prometheus metrics: counts kept as work happens, lane and governor gauges read at scrape time.

Each engine owns a registry, so several servers in one process (as in the
tests) never share counts. The plain-number families live in prometheus.py.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .budget import Budgets
from .config import Config, ModelConfig
from .errors import (
    BatchQuotaSpent,
    ProviderConnectionError,
    ProviderError,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
)
from .prometheus import CALL_BUCKETS_S, WAIT_BUCKETS_S, Counts, Histograms, new_registry
from .upstream import Completion

__all__ = ["DEFAULT_TENANT", "EngineMetrics", "call_outcome"]

# The tenant label of the default tenant (callers with no tenant of their own) and of any name not in the file.
DEFAULT_TENANT = "default"

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

# -- the engine's metrics -----------------------------------------------------


def call_outcome(exc: BaseException | None) -> str:
    """How an upstream call ended, as one of OUTCOMES."""
    if exc is None:
        return "ok"
    if isinstance(exc, ProviderRateLimited):
        return "rate_limited"
    if isinstance(exc, ProviderQuotaExhausted | BatchQuotaSpent):
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


class _Unread(Protocol):
    @property
    def unread_chars(self) -> int: ...


RPCS = ("Translate", "TranslateStream")
_IN_FLIGHT = ("translane_requests_in_flight", "Requests being served, by RPC")
_UNREAD = (
    "translane_stream_unread_chars",
    "Text translated for TranslateStream callers and not yet read by them (held for readers that are behind)",
)


# snapshot key -> (metric name, help); keys a lane or governor does not report are left out.
_LANE_GAUGES = {
    "in_flight": ("translane_lane_in_flight", "Upstream calls the lane has in flight"),
    "queued": ("translane_lane_queued", "Calls waiting in the lane's queue"),
    "max_concurrency": ("translane_lane_max_concurrency", "The lane's concurrency limit"),
}
_LANE_COUNTERS = {
    "granted": ("translane_lane_granted", "Calls the lane let start"),
    "refunded": (
        "translane_lane_refunded",
        "Granted calls that never reached the provider (caller gone, or time or budget out first): all given back",
    ),
    "shed": ("translane_lane_shed", "Calls the lane turned away (queue full or deadline out of reach)"),
    "expired": ("translane_lane_expired", "Queued calls refused when their start-by moment passed in the queue"),
}
_GOVERNOR_GAUGES = {
    "request_level": ("translane_governor_request_level", "Requests the model's bucket holds now"),
    "request_capacity": ("translane_governor_request_capacity", "Requests the model's bucket holds when full"),
    "token_level": ("translane_governor_token_level", "Tokens the model's bucket holds now"),
    "token_capacity": ("translane_governor_token_capacity", "Tokens the model's bucket holds when full"),
    "rate_factor": ("translane_governor_rate_factor", "Share of the published rate admitted now (<1 after 429s)"),
    "admitted_rpm": ("translane_governor_admitted_rpm", "Requests per minute the governor admits now"),
    "admitted_tpm": ("translane_governor_admitted_tpm", "Tokens per minute the governor admits now"),
    "paused_s": ("translane_governor_paused_seconds", "Seconds until the model's pause (429 or provider down) ends"),
    "provider_outages": (
        "translane_governor_provider_outages",
        "Times the model's provider was taken to be down (failed calls in a row) since start",
    ),
    "disabled": ("translane_governor_disabled", "1 while the model is out of rotation (spending limit)"),
    # The shared (Redis) governor only.
    "shared": ("translane_governor_shared", "1 while this replica governs through Redis, 0 while it governs locally"),
    "fallbacks": ("translane_governor_redis_fallbacks", "Times this replica lost Redis and governed locally"),
    "shared_rate_share": (
        "translane_governor_shared_rate_share",
        "Share of the model's rate the shared buckets refill at (replicas cut off keep theirs locally)",
    ),
    "held_s": ("translane_governor_held_seconds", "Seconds a replica cut off from Redis still waits before its share"),
    "budget_tokens_spent": ("translane_budget_tokens_spent", "Tokens the model spent in the provider's day so far"),
    "budget_cost_spent": ("translane_budget_cost_spent", "Cost the model spent in the provider's day so far"),
    "budget_spent": ("translane_budget_spent", "1 while the model's daily budget is spent (out of rotation)"),
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
        tenants: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        """`tenants`: the tenants a tenant label may name (the tenants file's); any other tenant is counted
        as DEFAULT_TENANT, so a label's values stay bounded whatever a job carries."""
        self._tenants = tenants
        self._lanes = lanes
        self._governor = governor
        self._clock = clock
        self._models = config.models
        # Set by the engine when it keeps daily budgets.
        self.budgets: Budgets | None = None
        # Set by the engine: its streams in progress, each holding text its reader has not taken.
        self.streams: Collection[_Unread] = ()
        self.in_flight = dict.fromkeys(RPCS, 0)
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
        self.orphans = Counts(
            "translane_upstream_orphaned",
            "Provider calls whose caller had gone before the answer came (paid for, thrown away), by model",
            ["model"],
        )
        self.cache_lookups = Counts(
            "translane_cache_lookups", "Segment cache lookups, by model and result (hit, miss)", ["model", "result"]
        )
        self.cache_saved_tokens = Counts(
            "translane_cache_saved_tokens", "Tokens a cache hit did not pay for, by model", ["model"]
        )
        self.cache_saved_cost = Counts(
            "translane_cache_saved_cost", "Cost a cache hit did not pay, by model", ["model", "currency"]
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
        self.batch_calls = Counts(
            "translane_batch_route_calls",
            "Calls to a model's batch route (also counted in translane_upstream_calls), by model and outcome",
            ["model", "outcome"],
        )
        self.tenant_requests = Counts(
            "translane_tenant_requests", "Provider calls answered, by tenant and model", ["tenant", "model"]
        )
        self.tenant_tokens = Counts(
            "translane_tenant_tokens",
            "Tokens the provider counted, by tenant, model and type (input, output, cached)",
            ["tenant", "model", "type"],
        )
        self.tenant_cost = Counts(
            "translane_tenant_cost", "Cost of the provider calls, by tenant and model", ["tenant", "model", "currency"]
        )
        # Every model's series from the start, so rate() has a zero to count from.
        for m in config.models.values():
            for outcome in OUTCOMES:
                self.upstream_calls.inc((m.name, outcome), 0)
            for counts in (self.rate_limited, self.retries, self.orphans):
                counts.inc((m.name,), 0)
            self.tokens.inc((m.name, "input"), 0)
            self.tokens.inc((m.name, "output"), 0)
            self.cost.inc((m.name, m.currency), 0)
            if m.batch_api:
                for outcome in OUTCOMES:
                    self.batch_calls.inc((m.name, outcome), 0)
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
        yield GaugeMetricFamily(*_IN_FLIGHT, labels=["rpc"])
        yield GaugeMetricFamily(*_UNREAD)
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
        models = {name: dict(snap) for name, snap in self._governor.snapshot(self._clock()).items()}
        if self.budgets is not None:
            for name, m in self._models.items():
                if name in models and (m.daily_token_budget or m.daily_cost_budget):
                    tokens, cost = self.budgets.spent(name)
                    models[name]["budget_tokens_spent"] = float(tokens)
                    models[name]["budget_cost_spent"] = cost
                    models[name]["budget_spent"] = 1.0 if self.budgets.exhausted(m) else 0.0
        yield from _snapshot_families(models, _GOVERNOR_GAUGES, GaugeMetricFamily, "model")
        in_flight = GaugeMetricFamily(*_IN_FLIGHT, labels=["rpc"])
        for rpc, n in self.in_flight.items():
            in_flight.add_metric([rpc], n)
        yield in_flight
        yield GaugeMetricFamily(*_UNREAD, value=sum(s.unread_chars for s in self.streams))

    def _kept(self) -> tuple[Counts | Histograms, ...]:
        return (
            self.requests,
            self.request_seconds,
            self.ttft_seconds,
            self.upstream_calls,
            self.rate_limited,
            self.retries,
            self.orphans,
            self.cache_lookups,
            self.cache_saved_tokens,
            self.cache_saved_cost,
            self.fallbacks,
            self.upstream_seconds,
            self.queued_seconds,
            self.governed_seconds,
            self.tokens,
            self.cost,
            self.batch_calls,
            self.tenant_requests,
            self.tenant_tokens,
            self.tenant_cost,
        )

    # -- engine ------------------------------------------------------------

    def admitted(self, model: ModelConfig, queued_s: float, governed_s: float) -> None:
        """A call got its lane slot after `queued_s` and its reservation after `governed_s`."""
        self.queued_seconds.observe((model.lane,), queued_s)
        self.governed_seconds.observe((model.name,), governed_s)

    def called(
        self,
        model: ModelConfig,
        seconds: float,
        completion: Completion | None,
        exc: BaseException | None,
        batch: bool = False,
    ) -> None:
        """One upstream call ended: with `completion`, or with `exc`; `batch`: on the model's batch route, at its
        price."""
        name = (model.name,)
        outcome = call_outcome(exc)
        self.upstream_calls.inc((model.name, outcome))
        if batch:
            self.batch_calls.inc((model.name, outcome))
        if isinstance(exc, ProviderError) and exc.status == 429:
            self.rate_limited.inc(name)
        if outcome != "cancelled":
            self.upstream_seconds.observe(name, seconds)
        if completion is not None:
            self.tokens.inc((model.name, "input"), completion.prompt_tokens)
            self.tokens.inc((model.name, "output"), completion.completion_tokens)
            cost = model.cost(completion.prompt_tokens, completion.completion_tokens, completion.cached_tokens)
            self.cost.inc((model.name, model.currency), cost * (model.batch_price_factor if batch else 1.0))

    def tenant_label(self, tenant: str) -> str:
        """`tenant` as a label value: a tenant of the file, else DEFAULT_TENANT (never a caller's own string)."""
        return tenant if tenant and tenant in self._tenants() else DEFAULT_TENANT

    def billed(self, tenant: str, model: ModelConfig, completion: Completion, cost: float) -> None:
        """An answered call charged to `tenant`."""
        who = self.tenant_label(tenant)
        self.tenant_requests.inc((who, model.name))
        self.tenant_tokens.inc((who, model.name, "input"), completion.prompt_tokens)
        self.tenant_tokens.inc((who, model.name, "output"), completion.completion_tokens)
        self.tenant_tokens.inc((who, model.name, "cached"), completion.cached_tokens)
        self.tenant_cost.inc((who, model.name, model.currency), cost)

    def retried(self, model: ModelConfig) -> None:
        self.retries.inc((model.name,))

    def cache_hit(self, model: ModelConfig, prompt_tokens: int, completion_tokens: int) -> None:
        """A segment served from the cache: what it would have cost."""
        self.cache_lookups.inc((model.name, "hit"))
        self.cache_saved_tokens.inc((model.name,), prompt_tokens + completion_tokens)
        self.cache_saved_cost.inc((model.name, model.currency), model.cost(prompt_tokens, completion_tokens))

    def cache_miss(self, model: ModelConfig) -> None:
        self.cache_lookups.inc((model.name, "miss"))

    def orphaned(self, model: ModelConfig) -> None:
        """A call was in flight when its caller left."""
        self.orphans.inc((model.name,))

    def fell_back(self, asked: str, served: str) -> None:
        self.fallbacks.inc((asked, served))

    # -- server ------------------------------------------------------------

    def started(self, rpc: str) -> None:
        """One RPC is being served, until `answered` (RPCS have their series from the start)."""
        self.in_flight[rpc] = self.in_flight.get(rpc, 0) + 1

    def answered(self, rpc: str, model: str, lane: str, status: str, seconds: float) -> None:
        """One RPC answered; `model` and `lane` are empty when the request named no valid model."""
        self.in_flight[rpc] = self.in_flight.get(rpc, 0) - 1
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
