"""What the engine's layers are built from: the service's shared parts, handed to each layer once at start."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from opentelemetry.trace import Tracer

from ..batch_route import BatchRoutes
from ..budget import Budgets
from ..cache import SegmentCache
from ..config import Config
from ..estimate import TokenEstimator
from ..governor import Governor
from ..lanes import CallAt, Clock, Lane
from ..metrics import EngineMetrics
from ..upstream import UpstreamClient
from ..usage import Ledger
from ._rotation import Rotation

__all__ = ["Parts"]


@dataclass(frozen=True, slots=True)
class Parts:
    """The parts a layer may use; each layer takes what it needs when it is built."""

    config: Config
    clock: Clock
    call_at: CallAt
    governor: Governor
    budgets: Budgets
    rotation: Rotation
    lanes: Mapping[str, Lane]
    estimators: Mapping[str, TokenEstimator]
    metrics: EngineMetrics
    upstream: UpstreamClient
    # Where each answered call's usage is recorded, by tenant, model, day and task.
    ledger: Ledger
    cache: SegmentCache | None = None
    # None when tracing is off: then no span work at all on the hot path.
    tracer: Tracer | None = None
    rng: random.Random = field(default_factory=random.Random)
    # Which stack these parts build: the one for streams (deltas to a sink) or the unary one.
    streaming: bool = False
    # The providers' batch routes (None when no model has one).
    batch: BatchRoutes | None = None

    async def sleep(self, delay_s: float) -> None:
        """Wait `delay_s` on the engine's clock (a test that owns the clock moves it)."""
        if delay_s <= 0:
            await asyncio.sleep(0)
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        handle = self.call_at(self.clock() + delay_s, wake)
        try:
            await woken
        finally:
            handle.cancel()
