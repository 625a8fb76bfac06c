"""The lane scheduler on an owned clock: priority, deadlines, cancellation, one timer."""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
from collections.abc import Callable

import pytest
from translane.config import GovernorConfig, LaneConfig, load_config
from translane.errors import ModelUnavailable, Overloaded
from translane.governor import Governor
from translane.lanes import BATCH, INTERACTIVE, Lane, Ticket

MODEL = load_config(env={}).models["doubao-seed-translation-250915"]
# 60 requests per minute: one per second once the 1-request burst is spent.
SLOW = dataclasses.replace(MODEL, rpm=60, tpm=10_000_000)


class FakeClock:
    """A clock the test moves by hand, with the loop's call_at shape."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, _Handle]] = []
        self._seq = itertools.count()
        self.armed = 0

    def __call__(self) -> float:
        return self.now

    def call_at(self, when: float, cb: Callable[[], None]) -> _Handle:
        h = _Handle(cb)
        heapq.heappush(self._timers, (when, next(self._seq), h))
        self.armed += 1
        return h

    def pending(self) -> int:
        return sum(1 for _, _, h in self._timers if not h.cancelled)

    async def advance(self, dt: float) -> None:
        target = self.now + dt
        while self._timers and self._timers[0][0] <= target:
            when, _, h = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not h.cancelled:
                h.cb()
            await settle()
        self.now = target
        await settle()


class _Handle:
    def __init__(self, cb: Callable[[], None]) -> None:
        self.cb = cb
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def make_lane(clock: FakeClock, concurrency: int = 1, max_queue: int = 100, model: object = SLOW) -> Lane:
    gov = Governor({SLOW.name: model}, GovernorConfig(jitter_allowance_s=0.0), clock())  # type: ignore[dict-item]
    return Lane(LaneConfig("slow", concurrency, max_queue), gov, clock=clock, call_at=clock.call_at)


def finish(lane: Lane, t: Ticket) -> None:
    lane.governor.settle(t.reservation, t.reservation.tokens, lane._clock())
    t.release()


async def test_interactive_waiters_go_before_batch_then_by_arrival() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=1, model=dataclasses.replace(SLOW, rpm=6000))
    first = await lane.admit(SLOW, 10, INTERACTIVE, deadline=100)
    order: list[str] = []

    async def wait(tag: str, prio: int) -> None:
        t = await lane.admit(SLOW, 10, prio, deadline=100)
        order.append(tag)
        finish(lane, t)

    tasks = [
        asyncio.create_task(wait(tag, p))
        for tag, p in [("b1", BATCH), ("b2", BATCH), ("i1", INTERACTIVE), ("i2", INTERACTIVE)]
    ]
    await settle()
    assert lane.queued == 4
    finish(lane, first)
    for _ in range(10):
        await clock.advance(1.0)
    await asyncio.gather(*tasks)
    assert order == ["i1", "i2", "b1", "b2"]


async def test_governor_wait_wakes_exactly_once_at_the_computed_time() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=10)
    first = await lane.admit(SLOW, 10, INTERACTIVE, deadline=100)  # spends the 1-request burst
    finish(lane, first)
    waiter = asyncio.create_task(lane.admit(SLOW, 10, INTERACTIVE, deadline=100))
    await settle()
    assert not waiter.done() and clock.pending() == 1
    rate = lane.governor.budgets[SLOW.name].request_rate
    await clock.advance(1 / rate - 0.01)
    assert not waiter.done()
    await clock.advance(0.02)
    ticket = waiter.result()
    assert ticket.governed_s == pytest.approx(1 / rate, abs=0.02)
    assert clock.armed == 1  # one timer, no polling


async def test_request_that_cannot_meet_its_deadline_is_shed_at_once_with_a_hint() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=10)
    finish(lane, await lane.admit(SLOW, 10, INTERACTIVE, deadline=100))
    queued = [asyncio.create_task(lane.admit(SLOW, 10, INTERACTIVE, deadline=100)) for _ in range(5)]
    await settle()
    # Six requests ahead at one per second: a 2-second deadline cannot be met.
    with pytest.raises(Overloaded) as info:
        await lane.admit(SLOW, 10, INTERACTIVE, deadline=clock.now + 2)
    assert info.value.retry_after_s is not None and info.value.retry_after_s >= 4
    # ...but batch work behind it is judged against all of the queue.
    with pytest.raises(Overloaded):
        await lane.admit(SLOW, 10, BATCH, deadline=clock.now + 5)
    for t in queued:
        t.cancel()
    await settle()


async def test_full_queue_is_rejected() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=1, max_queue=2)
    held = await lane.admit(SLOW, 10, INTERACTIVE, deadline=1000)
    waiting = [asyncio.create_task(lane.admit(SLOW, 10, INTERACTIVE, deadline=1000)) for _ in range(2)]
    await settle()
    with pytest.raises(Overloaded, match="queue is full"):
        await lane.admit(SLOW, 10, INTERACTIVE, deadline=1000)
    assert lane.shed == 1
    for t in waiting:
        t.cancel()
    finish(lane, held)
    await settle()


async def test_cancelled_waiter_leaves_the_queue_and_the_next_one_is_served() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=1, model=dataclasses.replace(SLOW, rpm=6000))
    held = await lane.admit(SLOW, 10, INTERACTIVE, deadline=100)
    a = asyncio.create_task(lane.admit(SLOW, 10, INTERACTIVE, deadline=100))
    b = asyncio.create_task(lane.admit(SLOW, 10, INTERACTIVE, deadline=100))
    await settle()
    assert lane.queued == 2
    a.cancel()
    await settle()
    assert lane.queued == 1
    finish(lane, held)
    await clock.advance(1.0)
    assert b.done() and b.result().model == SLOW.name
    assert lane.in_flight == 1
    finish(lane, b.result())
    assert lane.in_flight == 0


async def test_cancel_after_grant_gives_the_reservation_back() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=1, model=dataclasses.replace(SLOW, rpm=6000))
    held = await lane.admit(SLOW, 10, INTERACTIVE, deadline=100)
    w = asyncio.create_task(lane.admit(SLOW, 10, INTERACTIVE, deadline=100))
    await settle()
    budget = lane.governor.budgets[SLOW.name]
    finish(lane, held)  # grants w synchronously...
    w.cancel()  # ...and w is cancelled before it runs
    await settle()
    assert w.cancelled()
    assert lane.in_flight == 0
    assert budget.requests.level == pytest.approx(budget.requests.capacity, abs=1.0)


async def test_disabled_model_is_unavailable() -> None:
    clock = FakeClock()
    lane = make_lane(clock)
    lane.governor.disable(SLOW.name, 0.0)
    with pytest.raises(ModelUnavailable):
        await lane.admit(SLOW, 10, INTERACTIVE, deadline=100)


async def test_concurrency_is_never_exceeded() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=3, model=dataclasses.replace(SLOW, rpm=600_000))
    peak = 0

    async def work() -> None:
        nonlocal peak
        t = await lane.admit(SLOW, 10, INTERACTIVE, deadline=1000)
        peak = max(peak, lane.in_flight)
        await asyncio.sleep(0)
        finish(lane, t)

    tasks = [asyncio.create_task(work()) for _ in range(30)]
    for _ in range(50):
        await clock.advance(0.01)
    await asyncio.gather(*tasks)
    assert peak == 3 and lane.in_flight == 0 and lane.queued == 0
