"""A lane's waiter queue by itself: order, counts, lazy removal and compaction."""

from __future__ import annotations

import asyncio

from translane.lane_queue import LaneQueue, Waiter
from translane.lanes import BATCH, INTERACTIVE

from ..helpers.clock import FakeClock


def waiter(model: str, priority: int, tokens: int = 10, *, may_leave: bool = False) -> Waiter[None]:
    return Waiter(model, tokens, priority, 100.0, 0.0, asyncio.get_running_loop().create_future(), may_leave)


async def test_heads_come_by_priority_then_arrival_across_models() -> None:
    q: LaneQueue[None] = LaneQueue()
    b1, a1, a2, b2 = waiter("b", BATCH), waiter("a", BATCH), waiter("a", INTERACTIVE), waiter("b", INTERACTIVE)
    for w in (b1, a1, a2, b2):
        q.push(w)
    # Within a model, interactive first; across models, the heads by priority then arrival.
    assert q.heads() == [a2, b2]
    assert q.pop("a") is a2
    assert q.heads() == [b2, a1]
    assert list(q.pop_all("b")) == [b2, b1] and b1.gone and b2.gone
    assert q.heads() == [a1] and q.queued == 1


async def test_counts_ahead_of_a_newcomer_follow_the_serving_order() -> None:
    q: LaneQueue[None] = LaneQueue()
    for w in (waiter("m", INTERACTIVE, 5), waiter("m", BATCH, 7), waiter("m", BATCH, 11), waiter("n", BATCH, 100)):
        q.push(w)
    assert q.ahead("m", INTERACTIVE) == (1, 5)
    assert q.ahead("m", BATCH) == (3, 23)
    assert q.ahead("other", BATCH) == (0, 0)
    assert q.has_waiters("m") and not q.has_waiters("other")


async def test_a_dropped_waiter_is_counted_out_at_once_and_its_timer_cancelled() -> None:
    clock = FakeClock()
    q: LaneQueue[None] = LaneQueue()
    first, second = waiter("m", INTERACTIVE, may_leave=True), waiter("m", INTERACTIVE, 20)
    q.push(first)
    q.push(second)
    first.expiry = clock.call_at(50.0, lambda: None)
    assert q.has_leavers("m") and q.leavers("m") == [first]
    q.drop(first)
    q.drop(first)  # idempotent
    assert q.queued == 1 and q.ahead("m", BATCH) == (1, 20) and not q.has_leavers("m")
    assert clock.pending() == 0
    # Its entry stays until it reaches the head.
    assert q.entries() == 2
    assert q.heads() == [second] and q.entries() == 1


async def test_a_waiter_whose_future_is_done_is_counted_out_when_it_reaches_the_head() -> None:
    q: LaneQueue[None] = LaneQueue()
    cancelled, live = waiter("m", INTERACTIVE), waiter("m", INTERACTIVE)
    q.push(cancelled)
    q.push(live)
    cancelled.future.cancel()  # its task has not run its handler yet
    assert q.heads() == [live]
    assert cancelled.gone and q.queued == 1 and q.entries() == 1


async def test_the_heaps_are_rebuilt_when_the_dead_outnumber_the_living() -> None:
    q: LaneQueue[None] = LaneQueue()
    waiters = [waiter("m", BATCH) for _ in range(200)]
    for w in waiters:
        q.push(w)
    for w in waiters[:133]:
        q.drop(w)
    # 133 dead against 67 living: not yet twice as many.
    assert q.queued == 67 and q.entries() == 200
    q.drop(waiters[133])
    assert q.queued == 66 and q.entries() == 66
    assert q.heads() == [waiters[134]]
