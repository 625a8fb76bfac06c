"""The waiters of one lane: a heap per model, ordered by priority, then by a fair share across flows, that a waiter
leaves in O(1).

Waiters sit in one heap per model, so that a paused model does not block
another model of the same lane; the lane looks at the head of each, and across
models serves the heads by priority, then arrival.

Within a model and priority, waiting work is shared across flows (tenants) by
weight, counted in tokens: start-time fair queuing (Goyal, Vin and Cheng, 1996),
the scheme the "virtual token counter" of LLM serving (Sheng et al., 2024) also
comes to. Each model and priority keeps a virtual time: the start tag of the
waiter it served last. A newcomer of flow f starts at max(virtual time, f's last
finish tag) and finishes `tokens / weight` later; the heap serves the smallest
start tag first. A flow is thus FIFO within itself, a flow that sends twice the
tokens waits twice as long for the same weight, and a flow that returns after
idling starts at the current virtual time (it hoards no credit for the time it
sent nothing, and its share meanwhile went to the others). With one flow every
start tag is its predecessor's finish tag: arrival order, as a plain queue.

Cancellation costs O(1): a waiter that leaves is marked gone and counted out at
once (and, if it was its flow's newest, its flow's finish tag goes back to its
start); its heap entry is dropped when it reaches the head (lazy deletion), and
the heaps are rebuilt without the dead when those outnumber the living.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar

__all__ = ["LaneQueue", "Timer", "Waiter"]


class Timer(Protocol):
    def cancel(self) -> None: ...


# What a waiter is granted (the lane's Ticket): the queue never looks at it.
T = TypeVar("T")


class Waiter(Generic[T]):
    """One call waiting for a slot of its lane and a reservation of its model."""

    __slots__ = (
        "deadline",
        "enqueued",
        "expiry",
        "finish",
        "flow",
        "future",
        "gone",
        "governed_since",
        "may_leave",
        "model",
        "priority",
        "start",
        "tokens",
    )

    def __init__(
        self,
        model: str,
        tokens: int,
        priority: int,
        deadline: float,
        now: float,
        future: asyncio.Future[T],
        may_leave: bool,
        flow: str = "",
    ) -> None:
        self.model = model
        self.may_leave = may_leave
        self.tokens = tokens
        self.priority = priority
        self.deadline = deadline
        self.enqueued = now
        self.future = future
        # The flow (tenant) whose share it is served from, and its virtual start and finish tags there.
        self.flow = flow
        self.start = 0.0
        self.finish = 0.0
        self.governed_since = -1.0
        self.gone = False
        # The timer for the moment it must have started by; cancelled when it leaves the queue.
        self.expiry: Timer | None = None


class _Flow:
    """One flow's place in a model's queue of one priority: its last finish tag and its live waiters."""

    __slots__ = ("finish", "tokens", "waiting", "weight")

    def __init__(self, finish: float) -> None:
        self.finish = finish
        self.waiting = 0
        self.tokens = 0
        self.weight = 1.0


class _Share:
    """A model's queue of one priority: its virtual time, its flows, and its live waiters and their tokens."""

    __slots__ = ("flows", "horizon", "tokens", "vtime", "waiting")

    def __init__(self) -> None:
        self.vtime = 0.0  # the start tag of the waiter served last
        self.horizon = 0.0  # the largest finish tag given out
        self.flows: dict[str, _Flow] = {}
        self.waiting = 0
        self.tokens = 0

    def ahead(self, flow: str) -> tuple[int, int]:
        """Live waiters (and their tokens) served before a newcomer of `flow`: its own flow's backlog, and of
        every other flow what it is served in the virtual time until the newcomer's start (its weight's worth)."""
        if not self.waiting:
            return 0, 0
        own = self.flows.get(flow)
        if own is not None and own.waiting == self.waiting:
            return own.waiting, own.tokens  # one flow waiting: a plain queue
        span = max(0.0, own.finish - self.vtime) if own is not None else 0.0
        count, tokens = (own.waiting, float(own.tokens)) if own is not None else (0, 0.0)
        for f in self.flows.values():
            if f is own or not f.waiting:
                continue
            served = span * f.weight
            if served >= f.tokens:
                count += f.waiting
                tokens += f.tokens
            else:
                count += math.ceil(f.waiting * served / f.tokens)
                tokens += served
        return count, math.ceil(tokens)


# Heap entries: (priority, start tag, arrival, waiter); the arrival number is unique, so waiters are never compared.
_Entry = tuple[int, float, int, Waiter[T]]


class LaneQueue(Generic[T]):
    """Live waiters per model, counted per priority and flow (with their tokens) for the lane's wait estimate."""

    __slots__ = ("_by_priority", "_dead", "_heaps", "_leavers", "_seq", "_shares", "queued")

    def __init__(self) -> None:
        self._heaps: dict[str, list[_Entry[T]]] = {}
        # Per model, one share per priority (interactive, batch).
        self._shares: dict[str, tuple[_Share, _Share]] = {}
        # Live waiters per model that have somewhere else to go (a fallback) when it is taken to be down.
        self._leavers: dict[str, int] = {}
        self._seq = itertools.count()
        self._dead = 0  # entries still in a heap whose waiter is gone
        self.queued = 0
        # Live waiters of every model, per priority: those a newcomer queues behind for a slot.
        self._by_priority = [0, 0]

    def push(self, w: Waiter[T], weight: float = 1.0) -> None:
        """Queue `w` in its flow, whose share is `weight` (a positive number; anything else counts as 1)."""
        shares = self._shares.get(w.model)
        if shares is None:
            shares = self._shares[w.model] = (_Share(), _Share())
            self._heaps[w.model] = []
        s = shares[w.priority]
        if not s.waiting:
            # Nobody waits: every flow starts afresh from the furthest tag given out.
            s.vtime = max(s.vtime, s.horizon)
            s.flows.clear()
        f = s.flows.get(w.flow)
        if f is None:
            f = s.flows[w.flow] = _Flow(s.vtime)
        f.weight = weight if weight > 0 else 1.0
        w.start = start = f.finish if f.finish > s.vtime else s.vtime
        w.finish = f.finish = start + w.tokens / f.weight
        if f.finish > s.horizon:
            s.horizon = f.finish
        heapq.heappush(self._heaps[w.model], (w.priority, start, next(self._seq), w))
        self._count(w, +1)

    def models(self) -> Iterable[str]:
        """Every model that has had a waiter in this lane."""
        return self._heaps.keys()

    def has_waiters(self, model: str) -> bool:
        shares = self._shares.get(model)
        return shares is not None and (shares[0].waiting + shares[1].waiting) > 0

    def waiting(self, model: str, priority: int) -> int:
        """Live waiters of `model` at `priority`."""
        shares = self._shares.get(model)
        return shares[priority].waiting if shares is not None else 0

    def has_leavers(self, model: str) -> bool:
        """Whether a live waiter of `model` has a fallback to go to."""
        return bool(self._leavers.get(model))

    def ahead(self, model: str, priority: int, flow: str = "") -> tuple[int, int]:
        """Live waiters of `model` served before a newcomer of `priority` and `flow`, and their tokens (a forecast:
        its own flow's backlog and the others' shares meanwhile; with one flow, exactly the queue ahead)."""
        shares = self._shares.get(model)
        if shares is None:
            return 0, 0
        if priority == 0:
            return shares[0].ahead(flow)
        count, tokens = shares[1].ahead(flow)
        return shares[0].waiting + count, shares[0].tokens + tokens

    def waiting_through(self, model: str, priority: int) -> int:
        """Live waiters of `model` at `priority` or above (interactive is above batch)."""
        shares = self._shares.get(model)
        if shares is None:
            return 0
        return shares[0].waiting if priority == 0 else shares[0].waiting + shares[1].waiting

    def served_before(self, priority: int) -> int:
        """Live waiters of any model served before a newcomer of `priority` (interactive first, then batch)."""
        return self._by_priority[0] if priority == 0 else self._by_priority[0] + self._by_priority[1]

    def heads(self) -> list[Waiter[T]]:
        """The live head waiter of each model, first to be served first (by priority, then arrival)."""
        heads: list[tuple[int, int, Waiter[T]]] = []
        for heap in self._heaps.values():
            head = self._head(heap)
            if head is not None:
                heads.append((head[0], head[2], head[3]))
        heads.sort()
        return [w for _, _, w in heads]

    def pop(self, model: str) -> Waiter[T]:
        """Take the head waiter of `model` out of the queue (it must be live: see `heads`)."""
        w = heapq.heappop(self._heaps[model])[3]
        if w.expiry is not None:
            w.expiry.cancel()
        self._shares[model][w.priority].vtime = w.start
        self._count(w, -1)
        return w

    def pop_all(self, model: str) -> Iterator[Waiter[T]]:
        """Take every live waiter of `model` out of the queue, head first."""
        heap = self._heaps.get(model, [])
        while self._head(heap) is not None:
            w = self.pop(model)
            w.gone = True
            yield w

    def leavers(self, model: str) -> list[Waiter[T]]:
        """The live waiters of `model` that have a fallback to go to."""
        return [e[3] for e in self._heaps.get(model, []) if e[3].may_leave and not e[3].gone and not e[3].future.done()]

    def drop(self, w: Waiter[T]) -> None:
        """Count a waiter out of the queue (idempotent); its heap entry goes when it reaches the head."""
        if w.gone:
            return
        self._leave(w)
        self._dead += 1
        if self._dead > 64 and self._dead > 2 * self.queued:
            self._compact()

    def entries(self) -> int:
        """Entries in the heaps, the dead ones not yet dropped included."""
        return sum(len(h) for h in self._heaps.values())

    def _leave(self, w: Waiter[T]) -> None:
        """Count out a waiter that leaves unserved; its flow does not pay for it if it was the flow's newest."""
        w.gone = True
        f = self._shares[w.model][w.priority].flows[w.flow]
        if f.finish == w.finish:
            f.finish = w.start
        self._count(w, -1)
        if w.expiry is not None:
            w.expiry.cancel()

    def _count(self, w: Waiter[T], sign: int) -> None:
        s = self._shares[w.model][w.priority]
        s.waiting += sign
        s.tokens += sign * w.tokens
        f = s.flows[w.flow]  # (a share forgets its flows only when none of them waits)
        f.waiting += sign
        f.tokens += sign * w.tokens
        if w.may_leave:
            self._leavers[w.model] = self._leavers.get(w.model, 0) + sign
        self.queued += sign
        self._by_priority[w.priority] += sign

    def _compact(self) -> None:
        """Rebuild the heaps without their dead entries: O(n), paid for by the n removals before it."""
        for name, heap in self._heaps.items():
            live = [e for e in heap if not e[3].gone]
            heapq.heapify(live)
            self._heaps[name] = live
        self._dead = 0

    def _head(self, heap: list[_Entry[T]]) -> _Entry[T] | None:
        while heap:
            w = heap[0][3]
            if not w.gone and not w.future.done():
                return heap[0]
            heapq.heappop(heap)
            if w.gone:
                self._dead -= 1
            else:
                # Its task was cancelled and has not run its handler yet: count it out now.
                self._leave(w)
        return None
