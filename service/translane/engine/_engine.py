"""The engine: the stack of layers every segment goes through, built once, and the two ways in (whole or
streamed)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator

from ..batch_route import BatchRoutes, DailyQuota
from ..budget import Budgets, open_budgets
from ..cache import SegmentCache, open_cache
from ..config import Config
from ..estimate import TokenEstimator
from ..governor import Governor
from ..governor_choice import open_governor
from ..lanes import BATCH, INTERACTIVE, CallAt, Clock, Lane
from ..metrics import EngineMetrics
from ..outbox import Outbox
from ..shared_batch_quota import open_batch_quota
from ..tasks import all_or_first_failure
from ..tenants import LocalLimits, TenantLimits, TenantsFile, open_limits
from ..tokens import warm_up
from ..tracing import tracer
from ..upstream import UpstreamClient
from ..usage import Ledger, open_ledger
from ._admission import Admission
from ._blank import Blank
from ._cached import Cached
from ._dedup import Dedup
from ._ladder import Ladder
from ._layer import Layer
from ._observe import Observe
from ._parts import Parts
from ._retry import Retry
from ._room import Room
from ._rotation import Rotation
from ._route import Route
from ._settle import Settle
from ._split import Split
from ._tenancy import TenantGate
from ._upstream import Upstream
from ._work import Job, JobResult, Outcome, SegmentDelta, Sink, Stats, Step, Work

__all__ = ["STACK", "Engine"]

# The engine's concerns, outer to inner: this order is the design. Each layer wraps the ones after it and
# sees a segment (or, from Split down, a piece of one) as `Work`; see docs/architecture.md.
STACK: tuple[type[Layer], ...] = (
    Blank,  # nothing to translate: back as it was
    Dedup,  # identical unary work in flight runs once (unary stack, with a cache)
    Cached,  # the segment cache: a hit answers, a complete miss is stored (with a cache)
    Split,  # over the input limit: pieces that fit, joined in order
    Ladder,  # cut at the output limit: the whole budget, then halves; never a silent cut
    Route,  # a job's line with a long enough window may take a batch route: its deadline is the window's end
    Retry,  # failed: again, on a fallback at once when the model is now paused, else after a backoff
    Room,  # a stream whose reader is behind waits here, before taking a slot (stream stack)
    Admission,  # the chain's first model that can start in time: budget, lane ticket (online or batch route)
    Settle,  # what the sent call cost: ticket, governor feedback, budget, estimator, usage, metrics
    Observe,  # a client span per call (only when tracing is on)
)


def build(parts: Parts, layers: tuple[type[Layer], ...] = STACK) -> Step:
    """The stack as one step: each layer that applies wrapped around the next, the provider call innermost."""
    step: Step = Upstream(parts)
    for layer in reversed(layers):
        if layer.applies(parts):
            step = layer(step, parts)
    return step


class Engine:
    """Runs jobs through the stack. Build with `Engine.open`."""

    def __init__(
        self,
        config: Config,
        upstream: UpstreamClient,
        governor: Governor,
        *,
        clock: Clock | None = None,
        call_at: CallAt | None = None,
        cache: SegmentCache | None = None,
        budgets: Budgets | None = None,
        ledger: Ledger | None = None,
        tenants: TenantsFile | None = None,
        tenant_limits: TenantLimits | None = None,
        batch_quota: DailyQuota | None = None,
    ) -> None:
        """`clock` and `call_at` default to the running loop's (tests pass their own to own the time); without
        `budgets`, the day's spending is kept in memory, and without `ledger`, the usage; without `tenants`, there
        are none; without `tenant_limits`, tenants' limits are kept in this process; without `batch_quota`, the
        batch routes' daily quotas too."""
        loop = asyncio.get_running_loop()
        self._clock: Clock = clock or loop.time
        self.config = config
        self.cache = cache
        self.budgets = budgets if budgets is not None else Budgets(config.models, config.budget_timezone)
        self.ledger = ledger if ledger is not None else Ledger(config.budget_timezone)
        self.upstream = upstream
        self.governor = governor
        call_at = call_at or loop.call_at
        server = config.server
        # Before the lanes: a lane may ask a tenant's weight (tenant_weight).
        self.tenants = tenants if tenants is not None else TenantsFile("", self._clock)
        self.lanes = {
            name: Lane(
                lc,
                governor,
                clock=self._clock,
                call_at=call_at,
                queue_target_s={INTERACTIVE: server.interactive_queue_target_s, BATCH: server.batch_queue_target_s},
                standing_after_s=server.standing_queue_after_s,
                weight_of=self.tenant_weight,
            )
            for name, lc in config.lanes.items()
        }
        self.estimators = {n: TokenEstimator(m.output_ratio, m.max_output_tokens) for n, m in config.models.items()}
        self.rotation = Rotation(config.models, governor, self.budgets, self._clock)
        self.batch = (
            BatchRoutes(config.models, self.budgets, self._clock, call_at, batch_quota)
            if BatchRoutes.configured(config.models)
            else None
        )
        limits = tenant_limits or LocalLimits(self._clock, self.budgets.day, self.budgets.seconds_to_next_day)
        self.gate = TenantGate(config, self.tenants, limits, self.estimators, self._clock)
        # The batch routes' lanes are reported beside the online ones ("batch/<model>").
        reported = {**self.lanes, **{lane.name: lane for lane in (self.batch.lanes if self.batch else {}).values()}}
        self.metrics = EngineMetrics(
            config, reported, governor, self._clock, tenants=lambda: self.tenants.current.by_name
        )
        self.metrics.budgets = self.budgets
        self._streams: set[Outbox[Outcome]] = set()
        self.metrics.streams = self._streams
        self.parts = Parts(
            config=config,
            clock=self._clock,
            call_at=call_at,
            governor=governor,
            budgets=self.budgets,
            rotation=self.rotation,
            lanes=self.lanes,
            estimators=self.estimators,
            metrics=self.metrics,
            upstream=upstream,
            ledger=self.ledger,
            cache=cache,
            tracer=tracer("translane.engine"),
            batch=self.batch,
        )
        # One stack for unary work and one for streams, from the one list.
        self._unary = build(self.parts)
        self._stream = build(dataclasses.replace(self.parts, streaming=True))

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        config: Config,
        governor: Governor | None = None,
    ) -> AsyncIterator[Engine]:
        """Build the engine, its governor (unless given), cache, budgets, usage ledger, batch routes' quota and
        upstream session; close them on exit."""
        warm_up()  # not inside the first request, where it would stall the loop
        async with contextlib.AsyncExitStack() as stack:
            gov = governor if governor is not None else await stack.enter_async_context(open_governor(config))
            cache = await stack.enter_async_context(open_cache(config.cache, config.governor))
            budgets = await stack.enter_async_context(open_budgets(config))
            # The tenants file is read here: one that cannot be used stops the start, naming what is wrong.
            clock = asyncio.get_running_loop().time
            tenants = TenantsFile(config.server.tenants_file, clock, config.server.tenants_reload_check_s)
            limits = await stack.enter_async_context(
                open_limits(config.governor, clock, budgets.day, budgets.seconds_to_next_day)
            )
            ledger = await stack.enter_async_context(open_ledger(config))
            batch_quota = await stack.enter_async_context(open_batch_quota(config, budgets, clock))
            upstream = await stack.enter_async_context(UpstreamClient(config))
            engine = cls(
                config,
                upstream,
                gov,
                cache=cache,
                budgets=budgets,
                ledger=ledger,
                tenants=tenants,
                tenant_limits=limits,
                batch_quota=batch_quota,
            )
            stack.callback(engine.close)
            yield engine

    def close(self) -> None:
        """Stop listening to the governor (it may outlive this engine)."""
        for lane in self.lanes.values():
            self.governor.unsubscribe(lane.kick)
        if self.batch is not None:
            self.batch.close()

    def tenant_weight(self, tenant: str) -> float:
        """A tenant's weight in the tenants file in force (1.0 for a name it does not hold, or none)."""
        return self.tenants.weight(tenant)

    def enable_all(self) -> None:
        """Put every model taken out of rotation (a provider spending limit, say) back in."""
        self.governor.enable_all()

    async def translate(self, job: Job, stats: Stats | None = None) -> JobResult:
        """Translate every segment; results come back in request order. `stats` fills in as calls end."""
        stats = Stats() if stats is None else stats
        async with self.gate.admit(job, stats):
            outcomes = await all_or_first_failure(
                [self._unary(Work(job, i, text, stats)) for i, text in enumerate(job.segments)]
            )
        self._price_in(job, stats)
        return JobResult(
            [o.text for o in outcomes],
            [o.model for o in outcomes],
            stats,
            [o.truncated for o in outcomes],
            [o.cached for o in outcomes],
        )

    async def stream(self, job: Job, stats: Stats) -> AsyncIterator[SegmentDelta]:
        """Stream deltas in segment order; all segments run at once, later ones are buffered (see Outbox:
        within `server.stream_buffer_chars`, so a slow reader holds new calls back rather than the text piling up).
        """
        deltas = self._streamed(job, stats)
        # Closed here, not when collected: its tasks are cancelled as the reader goes.
        async with self.gate.admit(job, stats), contextlib.aclosing(deltas):
            async for delta in deltas:
                yield delta

    async def _streamed(self, job: Job, stats: Stats) -> AsyncGenerator[SegmentDelta]:
        outbox: Outbox[Outcome] = Outbox(len(job.segments), self.config.server.stream_buffer_chars)

        async def run(i: int, text: str, sink: Sink) -> None:
            try:
                outbox.finish(i, await self._stream(Work(job, i, text, stats, sink)))
            except BaseException as exc:  # handed to the reader, which re-raises it
                outbox.finish(i, exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise

        tasks = [asyncio.create_task(run(i, t, outbox.sink(i))) for i, t in enumerate(job.segments)]
        self._streams.add(outbox)
        try:
            for i in range(len(job.segments)):
                while True:
                    item = await outbox.take(i)
                    if isinstance(item, str):
                        yield SegmentDelta(i, item, "")
                    elif isinstance(item, BaseException):
                        raise item
                    else:
                        yield SegmentDelta(i, "", item.model, done=True, truncated=item.truncated)
                        break
            self._price_in(job, stats)
        finally:
            self._streams.discard(outbox)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _price_in(self, job: Job, stats: Stats) -> None:
        """When the job is done: a job no call was paid for (served from the cache, cost 0) still names a
        currency, the model's it asked for; otherwise the first model that served sets it (Stats.add)."""
        model = self.config.models.get(job.model)
        if model is not None and not stats.currency:
            stats.currency = model.currency
