"""A lane's waiter queue by itself: order, counts, lazy removal and compaction."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


# -- fair share across flows ---------------------------------------------------


def flow_waiter(flow: str, tokens: int = 10, priority: int = BATCH) -> Waiter[None]:
    return Waiter("m", tokens, priority, 100.0, 0.0, asyncio.get_running_loop().create_future(), False, flow)


def serve(q: LaneQueue[None], n: int) -> list[Waiter[None]]:
    """The next `n` waiters the queue serves (fewer if it runs dry)."""
    out = []
    while len(out) < n and q.heads():
        out.append(q.pop(q.heads()[0].model))
    return out


async def test_one_flow_is_served_in_arrival_order_whatever_the_tokens() -> None:
    q: LaneQueue[None] = LaneQueue()
    ws = [flow_waiter("", tokens) for tokens in (500, 1, 80, 3, 3000, 7)]
    for w in ws:
        q.push(w)
    assert serve(q, 10) == ws


async def test_flows_take_turns_by_weight_in_tokens_and_fifo_within_each() -> None:
    q: LaneQueue[None] = LaneQueue()
    flood = [flow_waiter("a") for _ in range(30)]
    light = [flow_waiter("b") for _ in range(3)]
    for w in flood + light:
        q.push(w)
    # The light flow, arriving behind 30 of the flood's, is served every other turn.
    assert serve(q, 6) == [flood[0], light[0], flood[1], light[1], flood[2], light[2]]
    # Weight 3 against 1: three of its waiters for one of the other's.
    q = LaneQueue()
    heavy = [flow_waiter("h") for _ in range(12)]
    other = [flow_waiter("o") for _ in range(12)]
    for h, o in zip(heavy, other, strict=True):
        q.push(h, 3.0)
        q.push(o, 1.0)
    got = serve(q, 16)
    assert sum(w.flow == "h" for w in got) == 12 and [w for w in got if w.flow == "h"] == heavy


async def test_a_flow_of_big_calls_is_served_fewer_calls_for_the_same_tokens() -> None:
    q: LaneQueue[None] = LaneQueue()
    for _ in range(20):
        q.push(flow_waiter("big", 100))
    for _ in range(100):
        q.push(flow_waiter("small", 10))
    got = serve(q, 55)
    assert sum(w.tokens for w in got if w.flow == "big") == pytest.approx(
        sum(w.tokens for w in got if w.flow == "small"), rel=0.1
    )
    assert sum(w.flow == "small" for w in got) == 50 and sum(w.flow == "big" for w in got) == 5


async def test_a_flow_back_from_idling_starts_at_the_current_virtual_time() -> None:
    q: LaneQueue[None] = LaneQueue()
    busy = [flow_waiter("a") for _ in range(40)]
    q.push(flow_waiter("b"))
    for w in busy:
        q.push(w)
    serve(q, 21)  # b's one call and 20 of a's: b was idle for the last 19
    back = [flow_waiter("b") for _ in range(10)]
    for w in back:
        q.push(w)
    # No credit for idling: from now on one for one, not b's ten first.
    got = serve(q, 8)
    assert [w.flow for w in got] == ["a", "b"] * 4 or [w.flow for w in got] == ["b", "a"] * 4


async def test_interactive_goes_before_batch_whatever_the_flows() -> None:
    q: LaneQueue[None] = LaneQueue()
    batch = flow_waiter("light", priority=BATCH)
    q.push(batch)
    flood = [flow_waiter("flood", priority=INTERACTIVE) for _ in range(5)]
    for w in flood:
        q.push(w)
    assert serve(q, 6) == [*flood, batch]


async def test_the_forecast_puts_a_newcomer_behind_its_own_flow_and_the_others_share() -> None:
    q: LaneQueue[None] = LaneQueue()
    for _ in range(100):
        q.push(flow_waiter("flood", 10))
    for _ in range(2):
        q.push(flow_waiter("light", 10))
    # The flood's newcomer waits behind all 100 of its own and the light flow's 2.
    assert q.ahead("m", BATCH, "flood") == (102, 1020)
    # The light flow's waits behind its own 2 and about as many of the flood's.
    count, tokens = q.ahead("m", BATCH, "light")
    assert 2 <= count <= 5 and tokens <= 50
    # A new flow's, near the front; interactive work is ahead of all batch.
    assert q.ahead("m", BATCH, "new") == (0, 0)
    q.push(flow_waiter("flood", 7, INTERACTIVE))
    assert q.ahead("m", BATCH, "new") == (1, 7)
    # With one flow, the forecast is the queue ahead.
    one: LaneQueue[None] = LaneQueue()
    for tokens in (5, 6, 7):
        one.push(flow_waiter("", tokens))
    assert one.ahead("m", BATCH) == (3, 18)


async def test_a_dropped_waiter_leaves_in_o1_and_its_flow_keeps_its_place() -> None:
    q: LaneQueue[None] = LaneQueue()
    a = [flow_waiter("a") for _ in range(4)]
    b = [flow_waiter("b") for _ in range(4)]
    for x, y in zip(a, b, strict=True):
        q.push(x)
        q.push(y)
    q.drop(b[1])
    q.drop(a[3])  # a's newest: a's next newcomer starts where it did
    assert q.entries() == 8 and q.queued == 6
    # a's newcomer goes after a's 3 and b's 3 (tagged up to a's finish); b's, after its own gap.
    assert q.ahead("m", BATCH, "a") == (6, 60) and q.ahead("m", BATCH, "b") == (6, 60)
    late = flow_waiter("a")
    q.push(late)
    assert late.start == a[3].start
    assert serve(q, 10) == [a[0], b[0], a[1], a[2], b[2], b[3], late]
    assert q.queued == 0 and q.entries() == 0


# Operations on a queue of three flows and two priorities: push (flow, tokens, priority), drop the i-th live waiter,
# or serve the head.
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.sampled_from("abc"), st.integers(0, 500), st.sampled_from([INTERACTIVE, BATCH])),
        st.tuples(st.just("drop"), st.integers(0, 1000)),
        st.tuples(st.just("serve")),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(_OPS, st.dictionaries(st.sampled_from("abc"), st.floats(0.1, 10.0)))
def test_every_waiter_is_served_once_in_order_within_its_flow(
    ops: list[tuple[Any, ...]], weights: dict[str, float]
) -> None:
    loop = asyncio.new_event_loop()
    try:
        q: LaneQueue[None] = LaneQueue()
        live: list[Waiter[None]] = []
        served: list[Waiter[None]] = []
        for op in ops:
            if op[0] == "push":
                w = Waiter("m", op[2], op[3], 100.0, 0.0, loop.create_future(), False, op[1])
                q.push(w, weights.get(op[1], 1.0))
                live.append(w)
            elif op[0] == "drop" and live:
                q.drop(live.pop(op[1] % len(live)))
            elif op[0] == "serve" and q.heads():
                w = q.pop("m")
                assert w in live, "served a waiter that had left or was served already"
                # Interactive first; within a flow and priority, first in first out.
                assert w.priority == min(x.priority for x in live)
                assert w is next(x for x in live if x.flow == w.flow and x.priority == w.priority)
                live.remove(w)
                served.append(w)
            assert q.queued == len(live)
        rest = serve_all(q)
        assert sorted(map(id, rest)) == sorted(map(id, live))
        assert len({id(w) for w in served + rest}) == len(served) + len(rest)
    finally:
        loop.close()


def serve_all(q: LaneQueue[None]) -> list[Waiter[None]]:
    out = []
    while q.heads():
        out.append(q.pop("m"))
    return out
