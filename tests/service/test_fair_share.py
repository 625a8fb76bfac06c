"""Fair share inside a lane, on an owned clock: a saturated model's waiting work is served across tenants by weight,
counted in tokens; a light tenant's calls wait little behind a flood, and the forecast refuses the flood's newcomers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Callable

import pytest
from translane.config import GovernorConfig, LaneConfig, load_config
from translane.errors import Overloaded
from translane.governor import Governor
from translane.lanes import BATCH, INTERACTIVE, Lane

from ..helpers.clock import FakeClock, settle

# Tokens bind: about 930 tokens a second once the burst is spent, and requests never do.
MODEL = dataclasses.replace(load_config(env={}).models["doubao-seed-translation-250915"], rpm=1_000_000, tpm=60_000)
FAR = 1e6  # a start-by moment and deadline no test reaches


def make_lane(clock: FakeClock, weights: dict[str, float] | None = None) -> Lane:
    gov = Governor({MODEL.name: MODEL}, GovernorConfig(jitter_allowance_s=0.0), clock())
    weight_of: Callable[[str], float] | None = (lambda t: weights.get(t, 1.0)) if weights is not None else None
    return Lane(LaneConfig("slow", 1000, 100_000), gov, clock=clock, call_at=clock.call_at, weight_of=weight_of)


class Load:
    """Tenants' calls into one lane, and what each was served (tokens, calls) and how long each call waited."""

    def __init__(self, lane: Lane, clock: FakeClock) -> None:
        self.lane, self.clock = lane, clock
        self.tokens: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.waits: dict[str, list[float]] = {}
        self.counting_from = FAR  # (from when the test says)
        self.stopped = False
        self.tasks: list[asyncio.Task[None]] = []

    async def call(self, tenant: str, tokens: int, priority: int = BATCH, start_by: float = FAR) -> None:
        asked = self.clock.now
        async with self.lane.admit(MODEL, tokens, priority, start_by=start_by, deadline=FAR, tenant=tenant) as t:
            t.sent()
            t.settle(tokens)
        if self.clock.now >= self.counting_from:
            self.tokens[tenant] += tokens
            self.calls[tenant] += 1
            self.waits.setdefault(tenant, []).append(self.clock.now - asked)

    def flood(self, tenant: str, tokens: int, callers: int, priority: int = BATCH) -> list[asyncio.Task[None]]:
        """`callers` callers of `tenant`, each sending its next call as soon as the last is served (saturating)."""

        async def caller() -> None:
            while not self.stopped:
                await self.call(tenant, tokens, priority)

        tasks = [asyncio.create_task(caller()) for _ in range(callers)]
        self.tasks += tasks
        return tasks

    async def run(self, seconds: float, every_s: float = 0.0, light: tuple[str, ...] = (), tokens: int = 50) -> None:
        """Move the clock by `seconds`; every `every_s`, each `light` tenant sends one call (open loop)."""
        step = every_s or 0.05
        for _ in range(round(seconds / step)):
            for tenant in light:
                self.tasks.append(asyncio.create_task(self.call(tenant, tokens)))
            await self.clock.advance(step)

    def share(self, tenant: str) -> float:
        return self.tokens[tenant] / sum(self.tokens.values())

    async def stop(self) -> None:
        self.stopped = True
        for t in self.tasks:
            t.cancel()
        await settle()
        assert self.lane.queued == 0 and self.lane.in_flight == 0


async def test_saturating_tenants_are_served_tokens_by_weight() -> None:
    clock = FakeClock()
    load = Load(make_lane(clock, {"a": 3.0, "b": 1.0, "c": 1.0}), clock)
    for tenant in "abc":
        load.flood(tenant, 50, callers=8)
    await load.run(5.0)
    load.counting_from = clock.now
    await load.run(30.0)
    assert load.share("a") == pytest.approx(0.6, abs=0.03)
    assert load.share("b") == pytest.approx(0.2, abs=0.03)
    assert load.share("c") == pytest.approx(0.2, abs=0.03)
    await load.stop()


async def test_a_tenant_of_big_calls_is_served_fewer_calls_for_its_tokens() -> None:
    clock = FakeClock()
    load = Load(make_lane(clock), clock)
    load.flood("big", 200, callers=8)
    load.flood("small", 20, callers=8)
    await load.run(5.0)
    load.counting_from = clock.now
    await load.run(20.0)
    assert load.share("big") == pytest.approx(0.5, abs=0.03)
    assert load.calls["small"] == pytest.approx(10 * load.calls["big"], rel=0.1)
    await load.stop()


@pytest.mark.parametrize("tenants", [True, False], ids=["by-tenant", "one-queue"])
async def test_light_tenants_wait_little_behind_a_flood(tenants: bool) -> None:
    clock = FakeClock()
    load = Load(make_lane(clock), clock)
    # a keeps 100 calls waiting (about 5 s of the model); b and c send 100 tokens a second each, well within a
    # third of the model. Without tenants all are one flow, and b and c wait behind the flood.
    load.flood("a" if tenants else "", 50, callers=100)
    await load.run(5.0)
    load.counting_from = clock.now
    await load.run(20.0, every_s=0.5, light=("b", "c") if tenants else ("", ""))
    if tenants:
        assert max(load.waits["b"] + load.waits["c"]) < 0.25
        assert min(load.waits["a"]) > 4.0
        # a gets everything b and c leave.
        assert load.share("a") == pytest.approx(1 - 2 * 100 / 930, abs=0.03)
    else:
        assert min(load.waits[""]) > 4.0
    await load.stop()


async def test_an_idle_tenants_share_goes_to_the_others_and_it_returns_without_credit() -> None:
    clock = FakeClock()
    load = Load(make_lane(clock), clock)
    load.flood("a", 50, callers=8)
    load.flood("b", 50, callers=8)
    c = load.flood("c", 50, callers=8)
    await load.run(5.0)
    for t in c:
        t.cancel()
    load.counting_from = clock.now
    await load.run(15.0)
    assert load.share("a") == pytest.approx(0.5, abs=0.03) and load.tokens["c"] == 0
    # c, idle for 15 s, comes back saturating: it gets its third from the start, not a catch-up for the idle time.
    load.tokens.clear()
    load.counting_from = clock.now
    load.flood("c", 50, callers=8)
    await load.run(2.0)
    assert load.share("c") == pytest.approx(1 / 3, abs=0.05)
    await load.run(13.0)
    assert load.share("c") == pytest.approx(1 / 3, abs=0.03)
    await load.stop()


async def test_interactive_work_of_a_flood_still_goes_before_batch_of_a_light_tenant() -> None:
    clock = FakeClock()
    load = Load(make_lane(clock), clock)
    load.flood("a", 50, callers=20, priority=INTERACTIVE)
    await load.run(2.0)
    load.counting_from = clock.now
    await load.run(5.0, every_s=0.5, light=("b",))
    assert load.tokens["b"] == 0 and load.lane.queued >= 10
    await load.stop()


async def test_the_forecast_refuses_the_floods_newcomer_and_admits_a_light_tenants() -> None:
    clock = FakeClock()
    lane = make_lane(clock)
    load = Load(lane, clock)
    load.flood("a", 50, callers=100)  # about 5 s of the model waiting
    await load.run(3.0)
    assert lane.queued >= 90
    with pytest.raises(Overloaded, match="cannot start within the deadline") as info:
        await lane.admit(MODEL, 50, BATCH, start_by=clock.now + 1.0, deadline=FAR, tenant="a").__aenter__()
    assert info.value.retry_after_s is not None and info.value.retry_after_s > 4.0
    asked = load.counting_from = clock.now
    light = asyncio.create_task(load.call("b", 50, start_by=clock.now + 1.0))
    await load.run(1.0)
    assert light.done() and light.exception() is None and load.waits["b"][0] < clock.now - asked
    await load.stop()


async def test_a_cancelled_waiter_leaves_its_tenants_queue_at_once_and_the_others_are_untouched() -> None:
    clock = FakeClock()
    lane = make_lane(clock)
    load = Load(lane, clock)
    load.flood("a", 50, callers=30)
    await load.run(2.0)
    waiting = lane.queued
    load.counting_from = clock.now
    b = [asyncio.create_task(load.call("b", 50)) for _ in range(5)]
    await settle()
    assert lane.queued == waiting + 5
    b[1].cancel()
    b[3].cancel()
    await settle()
    assert lane.queued == waiting + 3
    # The rest of b's are served in turn with a's: within about six calls of the model.
    await load.run(0.5)
    assert all(t.done() for t in b) and len(load.waits["b"]) == 3 and max(load.waits["b"]) < 0.4
    await load.stop()
