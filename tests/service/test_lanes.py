"""The lane scheduler on an owned clock: priority, deadlines, cancellation, timers, admission from start to end."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from translane.config import GovernorConfig, LaneConfig, load_config
from translane.errors import ModelUnavailable, Overloaded
from translane.governor import Governor
from translane.lanes import BATCH, INTERACTIVE, Lane, Ticket

from ..helpers.clock import FakeClock, settle

MODEL = load_config(env={}).models["doubao-seed-translation-250915"]
# 60 requests per minute: one per second once the 1-request burst is spent.
SLOW = dataclasses.replace(MODEL, rpm=60, tpm=10_000_000)


def make_lane(clock: FakeClock, concurrency: int = 1, max_queue: int = 100, model: object = SLOW) -> Lane:
    gov = Governor({SLOW.name: model}, GovernorConfig(jitter_allowance_s=0.0), clock())  # type: ignore[dict-item]
    return Lane(LaneConfig("slow", concurrency, max_queue), gov, clock=clock, call_at=clock.call_at)


async def take(lane: Lane, prio: int = INTERACTIVE, *, start_by: float = 1000.0, deadline: float = 1000.0) -> Ticket:
    """A ticket held open past this call (what `async with lane.admit(...)` does on entry)."""
    return await lane.admit(SLOW, 10, prio, start_by=start_by, deadline=deadline).__aenter__()


def finish(t: Ticket) -> None:
    """The call was sent and the provider used what was reserved."""
    t.sent()
    t.settle(t.reservation.tokens)
    t.close()


async def test_interactive_waiters_go_before_batch_then_by_arrival() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=1, model=dataclasses.replace(SLOW, rpm=6000))
    first = await take(lane)
    order: list[str] = []

    async def wait(tag: str, prio: int) -> None:
        async with lane.admit(SLOW, 10, prio, start_by=100, deadline=100) as t:
            order.append(tag)
            t.sent()

    tasks = [
        asyncio.create_task(wait(tag, p))
        for tag, p in [("b1", BATCH), ("b2", BATCH), ("i1", INTERACTIVE), ("i2", INTERACTIVE)]
    ]
    await settle()
    assert lane.queued == 4
    finish(first)
    for _ in range(10):
        await clock.advance(1.0)
    await asyncio.gather(*tasks)
    assert order == ["i1", "i2", "b1", "b2"]
    assert lane.in_flight == 0 and lane.queued == 0


async def test_governor_wait_wakes_exactly_once_at_the_computed_time() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=10)
    finish(await take(lane))  # spends the 1-request burst
    waiter = asyncio.create_task(take(lane, start_by=100, deadline=100))
    await settle()
    # One timer for the waiter's start-by moment, one for the governor's wake-up.
    assert not waiter.done() and clock.pending() == 2
    rate = lane.governor.budgets[SLOW.name].request_rate
    await clock.advance(1 / rate - 0.01)
    assert not waiter.done()
    await clock.advance(0.02)
    ticket = waiter.result()
    assert ticket.governed_s == pytest.approx(1 / rate, abs=0.02)
    assert clock.armed == 2  # no polling
    assert clock.pending() == 0  # the start-by timer went with the grant


async def test_request_that_cannot_meet_its_deadline_is_shed_at_once_with_a_hint() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=10)
    finish(await take(lane))
    queued = [asyncio.create_task(take(lane, start_by=100, deadline=100)) for _ in range(5)]
    await settle()
    # Six requests ahead at one per second: a 2-second deadline cannot be met.
    with pytest.raises(Overloaded) as info:
        await take(lane, deadline=clock.now + 2)
    assert info.value.retry_after_s is not None and info.value.retry_after_s >= 4
    # ...nor can a 2-second queue wait, whatever the deadline.
    with pytest.raises(Overloaded):
        await take(lane, start_by=clock.now + 2, deadline=1000)
    # ...but batch work behind it is judged against all of the queue.
    with pytest.raises(Overloaded):
        await take(lane, BATCH, deadline=clock.now + 5)
    assert lane.queued == 5 and lane.shed == 3
    for t in queued:
        t.cancel()
    await settle()
    assert lane.queued == 0


async def test_a_waiter_is_refused_when_its_start_by_moment_passes_in_the_queue() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=1, model=dataclasses.replace(SLOW, rpm=6000))
    held = await take(lane)  # the one slot, held for as long as the test likes
    waiter = asyncio.create_task(take(lane, start_by=clock.now + 3, deadline=100))
    await settle()
    await clock.advance(2.9)
    assert not waiter.done()
    await clock.advance(0.2)
    with pytest.raises(Overloaded, match="could not start in time"):
        waiter.result()
    assert lane.queued == 0 and lane.expired == 1
    finish(held)
    assert lane.in_flight == 0


async def test_full_queue_is_rejected() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=1, max_queue=2)
    held = await take(lane)
    waiting = [asyncio.create_task(take(lane)) for _ in range(2)]
    await settle()
    with pytest.raises(Overloaded, match="queue is full"):
        await take(lane)
    assert lane.shed == 1
    for t in waiting:
        t.cancel()
    finish(held)
    await settle()


async def test_cancelled_waiter_leaves_the_queue_and_the_next_one_is_served() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=1, model=dataclasses.replace(SLOW, rpm=6000))
    held = await take(lane)
    a = asyncio.create_task(take(lane, start_by=100, deadline=100))
    b = asyncio.create_task(take(lane, start_by=100, deadline=100))
    await settle()
    assert lane.queued == 2
    a.cancel()
    await settle()
    assert lane.queued == 1
    finish(held)
    await clock.advance(1.0)
    assert b.done() and b.result().model == SLOW.name
    assert lane.in_flight == 1
    finish(b.result())
    assert lane.in_flight == 0


async def test_cancelling_thousands_of_waiters_costs_little_and_keeps_order() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=1, max_queue=100_000, model=dataclasses.replace(SLOW, rpm=600_000))
    held = await take(lane)
    waiters = [asyncio.create_task(take(lane, start_by=10_000, deadline=10_000)) for _ in range(20_000)]
    await settle()
    assert lane.queued == 20_000
    started = time.perf_counter()
    for i, w in enumerate(waiters):
        if i % 4:
            w.cancel()
    await settle()
    # Removing one waiter used to scan the heap: 15,000 removals from 20,000 took minutes.
    assert time.perf_counter() - started < 5.0
    assert lane.queued == 5_000
    # The dead are dropped as they reach the head, or all at once when they outnumber the living.
    assert lane._queue.entries() <= 3 * lane.queued + 64
    served: list[int] = []
    finish(held)
    for _ in range(3):
        await clock.advance(0.001)
    for i, w in enumerate(waiters[:40]):
        if w.done() and not w.cancelled():
            served.append(i)
            finish(w.result())
            await clock.advance(0.001)
    assert served[:3] == [0, 4, 8]
    for w in waiters:
        w.cancel()
    await settle()
    assert lane.queued == 0


async def test_cancel_after_grant_gives_the_reservation_back() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=1, model=dataclasses.replace(SLOW, rpm=6000))
    held = await take(lane)
    w = asyncio.create_task(take(lane, start_by=100, deadline=100))
    await settle()
    budget = lane.governor.budgets[SLOW.name]
    finish(held)  # grants w synchronously...
    w.cancel()  # ...and w is cancelled before it runs
    await settle()
    assert w.cancelled()
    assert lane.in_flight == 0
    assert budget.requests.level == pytest.approx(budget.requests.capacity, abs=1.0)
    assert lane.granted == 2 and lane.refunded == 1  # counted as granted, and as never sent


async def test_leaving_the_admission_refunds_a_call_never_sent_and_keeps_one_that_was() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=2, model=dataclasses.replace(SLOW, rpm=6000, tpm=1_000_000))
    budget = lane.governor.budgets[SLOW.name]
    full_tokens = budget.tokens.level
    # Never sent (shed after the grant, say): everything comes back.
    with pytest.raises(RuntimeError):
        async with lane.admit(SLOW, 500, INTERACTIVE, start_by=10, deadline=10):
            assert budget.tokens.level == pytest.approx(full_tokens - 500)
            raise RuntimeError("no time left")
    assert budget.tokens.level == pytest.approx(full_tokens)
    assert lane.in_flight == 0
    # Sent, then it failed: the provider may have counted all of it.
    with pytest.raises(RuntimeError):
        async with lane.admit(SLOW, 500, INTERACTIVE, start_by=10, deadline=10) as t:
            t.sent()
            raise RuntimeError("connection reset")
    assert budget.tokens.level == pytest.approx(full_tokens - 500)
    # Sent and cut mid-stream after more than was reserved: what was certainly used stands.
    with pytest.raises(asyncio.CancelledError):
        async with lane.admit(SLOW, 500, INTERACTIVE, start_by=10, deadline=10) as t:
            t.sent()
            t.used = 800
            raise asyncio.CancelledError
    assert budget.tokens.level == pytest.approx(full_tokens - 1300)
    # Settled with real usage: the surplus comes back.
    async with lane.admit(SLOW, 500, INTERACTIVE, start_by=10, deadline=10) as t:
        t.sent()
        t.settle(120)
    assert budget.tokens.level == pytest.approx(full_tokens - 1420)
    assert lane.in_flight == 0 and lane.granted == 4 and lane.refunded == 1


async def test_a_governor_wake_dispatches_the_lanes_that_subscribed() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=10)
    budget = lane.governor.budgets[SLOW.name]
    finish(await take(lane))  # spends the 1-request burst: the next waits ~1 s for the governor
    waiter = asyncio.create_task(take(lane, start_by=100, deadline=100))
    await settle()
    assert not waiter.done()
    # Capacity appears outside a settlement (a shared governor's grant arriving from Redis, say):
    # the clock has not moved, so only the wake can let the waiter go.
    budget.requests.level = budget.requests.capacity
    lane.governor.wake()
    await settle()
    assert waiter.done() and waiter.result().governed_s == 0.0
    finish(waiter.result())
    assert lane.in_flight == 0


async def test_disabled_model_is_unavailable() -> None:
    clock = FakeClock()
    lane = make_lane(clock)
    lane.governor.disable(SLOW.name, 0.0)
    with pytest.raises(ModelUnavailable):
        await take(lane)


async def test_concurrency_is_never_exceeded() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=3, model=dataclasses.replace(SLOW, rpm=600_000))
    peak = 0

    async def work() -> None:
        nonlocal peak
        async with lane.admit(SLOW, 10, INTERACTIVE, start_by=1000, deadline=1000) as t:
            peak = max(peak, lane.in_flight)
            t.sent()
            await asyncio.sleep(0)
            t.settle(10)

    tasks = [asyncio.create_task(work()) for _ in range(30)]
    for _ in range(50):
        await clock.advance(0.01)
    await asyncio.gather(*tasks)
    assert peak == 3 and lane.in_flight == 0 and lane.queued == 0


async def test_waiters_of_a_model_taken_out_of_rotation_hear_it_at_once() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=1, model=dataclasses.replace(SLOW, rpm=6000))
    held = await take(lane)
    waiters = [asyncio.create_task(take(lane, start_by=100, deadline=100)) for _ in range(3)]
    await settle()
    assert lane.queued == 3
    lane.governor.disable(SLOW.name, clock.now)  # the provider's spending limit, say
    await settle()
    for w in waiters:
        with pytest.raises(ModelUnavailable):
            w.result()
    assert lane.queued == 0
    finish(held)
    assert lane.in_flight == 0


async def test_waiters_with_a_fallback_leave_when_the_provider_is_taken_to_be_down() -> None:
    clock = FakeClock()
    lane = make_lane(clock, concurrency=1, model=dataclasses.replace(SLOW, rpm=6000))
    held = await take(lane)

    async def wait(may_leave: bool) -> Ticket:
        return await lane.admit(SLOW, 10, INTERACTIVE, start_by=100, deadline=100, may_leave=may_leave).__aenter__()

    leavers = [asyncio.create_task(wait(True)) for _ in range(3)]
    stayer = asyncio.create_task(wait(False))
    await settle()
    assert lane.queued == 4
    for _ in range(GovernorConfig().provider_down_after_failures):
        lane.governor.on_failure(SLOW.name, clock.now)  # connections refused, say
    await settle()
    for w in leavers:
        with pytest.raises(ModelUnavailable, match="provider is failing"):
            w.result()
    # The last model of its chain has nowhere to go: it waits out the pause.
    assert not stayer.done() and lane.queued == 1
    finish(held)
    await clock.advance(GovernorConfig().provider_down_pause_s)
    finish(await stayer)
    assert (lane.in_flight, lane.queued) == (0, 0)


def controlled_lane(clock: FakeClock) -> Lane:
    """A lane whose model takes 10 requests a second, with the controlled delay the service runs."""
    model = dataclasses.replace(SLOW, rpm=600)
    gov = Governor({SLOW.name: model}, GovernorConfig(jitter_allowance_s=0.0), clock())
    return Lane(
        LaneConfig("slow", 1000, 10_000),
        gov,
        clock=clock,
        call_at=clock.call_at,
        queue_target_s={INTERACTIVE: 1.0, BATCH: 5.0},
        standing_after_s=1.0,
    )


async def arrive(lane: Lane, prio: int, wait_cap_s: float) -> asyncio.Task[Ticket]:
    """One newcomer that may wait up to `wait_cap_s`; its ticket is sent and settled when granted."""
    now = lane._clock()

    async def one() -> Ticket:
        t = await take(lane, prio, start_by=now + wait_cap_s, deadline=now + wait_cap_s + 5)
        finish(t)
        return t

    task = asyncio.create_task(one())
    await settle()
    return task


async def test_a_burst_into_an_idle_lane_is_absorbed_up_to_the_max_wait() -> None:
    clock = FakeClock()
    lane = controlled_lane(clock)
    # 40 arrivals within half a second: four seconds of work at 10 a second, all taken.
    burst = []
    for _ in range(40):
        burst.append(await arrive(lane, INTERACTIVE, 10.0))
        await clock.advance(0.0125)
    assert not any(t.done() and t.exception() for t in burst)
    while not all(t.done() for t in burst) and clock.now < 20:
        await clock.advance(0.1)
    assert all(t.result().queued_s + t.result().governed_s < 10.0 for t in burst)
    assert lane.shed == 0


async def test_a_standing_queue_is_kept_near_its_target_and_the_rest_refused_at_once() -> None:
    clock = FakeClock()
    lane = controlled_lane(clock)
    accepted: list[asyncio.Task[Ticket]] = []
    refused = 0
    # Three times what the model takes, for ten seconds.
    for _ in range(300):
        task = await arrive(lane, INTERACTIVE, 10.0)
        if task.done() and task.exception() is not None:
            assert isinstance(task.exception(), Overloaded)
            refused += 1
        else:
            accepted.append(task)
        await clock.advance(1 / 30)
    while not all(t.done() for t in accepted) and clock.now < 60:
        await clock.advance(0.1)
    waits = sorted(t.result().queued_s + t.result().governed_s for t in accepted)
    assert refused > 150  # about two in three: what the provider cannot take
    assert len(accepted) >= 95  # the model stayed busy: ~10 a second for 10 s
    # Once the queue stood (after a second), no newcomer waited much past the target.
    late = [w for w in waits if w > 1.0 * 1.25]
    assert len(late) <= 25, waits[-30:]  # only those that arrived before it stood
    assert waits[-1] < 2.5
    assert lane.expired == 0  # refused on arrival, never after waiting


async def test_each_priority_has_its_own_target() -> None:
    clock = FakeClock()
    lane = controlled_lane(clock)
    # Interactive work stands at 3x for two seconds; batch arrivals beside it keep their longer target.
    for _ in range(60):
        await arrive(lane, INTERACTIVE, 10.0)
        await clock.advance(1 / 30)
    assert lane._standing(SLOW.name, INTERACTIVE, clock.now)
    refused_interactive = await arrive(lane, INTERACTIVE, 10.0)
    assert isinstance(refused_interactive.exception(), Overloaded)
    assert "past its target" in str(refused_interactive.exception())
    batch = await arrive(lane, BATCH, 300.0)
    assert not batch.done()  # batch's own queue was empty: a burst of one, taken
    assert not lane._standing(SLOW.name, BATCH, clock.now)


async def test_a_batch_backlog_does_not_hold_interactive_newcomers_back() -> None:
    """The slot forecast counts only the waiters served first: interactive work overtakes queued batch work."""
    clock = FakeClock()
    lane = make_lane(clock, concurrency=4, max_queue=1000, model=dataclasses.replace(SLOW, rpm=6_000_000))
    # Calls that hold a slot 0.4 s, so the lane knows its service time.
    for _ in range(3):
        held = [await take(lane) for _ in range(4)]
        await clock.advance(0.4)
        for t in held:
            finish(t)
    busy = [await take(lane) for _ in range(4)]
    backlog = [
        asyncio.create_task(take(lane, BATCH, start_by=clock.now + 300, deadline=clock.now + 300)) for _ in range(300)
    ]
    await settle()
    assert lane.queued == 300
    # 300 batch calls ahead would be 30 s of slots; the interactive newcomer is next, ~0.1 s away.
    newcomer = asyncio.create_task(take(lane, INTERACTIVE, start_by=clock.now + 1.0, deadline=clock.now + 5.0))
    await settle()
    assert not newcomer.done(), newcomer.exception() if newcomer.done() else None
    finish(busy.pop())
    await settle()
    assert newcomer.done() and newcomer.exception() is None
    for t in busy:
        finish(t)
    finish(newcomer.result())
    for task in backlog:
        task.cancel()
    await asyncio.gather(*backlog, return_exceptions=True)
