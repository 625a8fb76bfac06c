"""The waiters of one lane: a heap per model, ordered by priority then arrival, that a waiter leaves in O(1).

Waiters sit in one heap per model, so that a paused model does not block
another model of the same lane; the lane looks at the head of each.

Cancellation costs O(1): a waiter that leaves is marked gone and counted out at
once; its heap entry is dropped when it reaches the head (lazy deletion), and
the heaps are rebuilt without the dead when those outnumber the living.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
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
        "future",
        "gone",
        "governed_since",
        "may_leave",
        "model",
        "priority",
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
    ) -> None:
        self.model = model
        self.may_leave = may_leave
        self.tokens = tokens
        self.priority = priority
        self.deadline = deadline
        self.enqueued = now
        self.future = future
        self.governed_since = -1.0
        self.gone = False
        # The timer for the moment it must have started by; cancelled when it leaves the queue.
        self.expiry: Timer | None = None


# Heap entries: (priority, arrival, waiter); the arrival number is unique, so waiters are never compared.
_Entry = tuple[int, int, Waiter[T]]


class LaneQueue(Generic[T]):
    """Live waiters per model, counted per priority (with their tokens) for the lane's wait estimate."""

    __slots__ = ("_by_priority", "_dead", "_heaps", "_leavers", "_seq", "_waiting", "_waiting_tokens", "queued")

    def __init__(self) -> None:
        self._heaps: dict[str, list[_Entry[T]]] = {}
        # Live waiters per model and priority, for the wait estimate.
        self._waiting: dict[str, list[int]] = {}
        self._waiting_tokens: dict[str, list[int]] = {}
        # Live waiters per model that have somewhere else to go (a fallback) when it is taken to be down.
        self._leavers: dict[str, int] = {}
        self._seq = itertools.count()
        self._dead = 0  # entries still in a heap whose waiter is gone
        self.queued = 0
        # Live waiters of every model, per priority: those a newcomer queues behind for a slot.
        self._by_priority = [0, 0]

    def push(self, w: Waiter[T]) -> None:
        heapq.heappush(self._heaps.setdefault(w.model, []), (w.priority, next(self._seq), w))
        self._count(w, +1)

    def models(self) -> Iterable[str]:
        """Every model that has had a waiter in this lane."""
        return self._heaps.keys()

    def has_waiters(self, model: str) -> bool:
        counts = self._waiting.get(model)
        return counts is not None and (counts[0] + counts[1]) > 0

    def waiting(self, model: str, priority: int) -> int:
        """Live waiters of `model` at `priority`."""
        counts = self._waiting.get(model)
        return counts[priority] if counts is not None else 0

    def has_leavers(self, model: str) -> bool:
        """Whether a live waiter of `model` has a fallback to go to."""
        return bool(self._leavers.get(model))

    def ahead(self, model: str, priority: int) -> tuple[int, int]:
        """Live waiters of `model` served before a newcomer of `priority`, and their tokens."""
        counts = self._waiting.get(model, [0, 0])
        toks = self._waiting_tokens.get(model, [0, 0])
        if priority == 0:
            return counts[0], toks[0]
        return counts[0] + counts[1], toks[0] + toks[1]

    def served_before(self, priority: int) -> int:
        """Live waiters of any model served before a newcomer of `priority` (interactive first, then batch)."""
        return self._by_priority[0] if priority == 0 else self._by_priority[0] + self._by_priority[1]

    def heads(self) -> list[Waiter[T]]:
        """The live head waiter of each model, first to be served first."""
        heads: list[_Entry[T]] = []
        for heap in self._heaps.values():
            head = self._head(heap)
            if head is not None:
                heads.append(head)
        heads.sort()
        return [w for _, _, w in heads]

    def pop(self, model: str) -> Waiter[T]:
        """Take the head waiter of `model` out of the queue (it must be live: see `heads`)."""
        w = heapq.heappop(self._heaps[model])[2]
        if w.expiry is not None:
            w.expiry.cancel()
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
        return [w for _, _, w in self._heaps.get(model, []) if w.may_leave and not w.gone and not w.future.done()]

    def drop(self, w: Waiter[T]) -> None:
        """Count a waiter out of the queue (idempotent); its heap entry goes when it reaches the head."""
        if w.gone:
            return
        w.gone = True
        self._count(w, -1)
        self._dead += 1
        if w.expiry is not None:
            w.expiry.cancel()
        if self._dead > 64 and self._dead > 2 * self.queued:
            self._compact()

    def entries(self) -> int:
        """Entries in the heaps, the dead ones not yet dropped included."""
        return sum(len(h) for h in self._heaps.values())

    def _count(self, w: Waiter[T], sign: int) -> None:
        self._waiting.setdefault(w.model, [0, 0])[w.priority] += sign
        self._waiting_tokens.setdefault(w.model, [0, 0])[w.priority] += sign * w.tokens
        if w.may_leave:
            self._leavers[w.model] = self._leavers.get(w.model, 0) + sign
        self.queued += sign
        self._by_priority[w.priority] += sign

    def _compact(self) -> None:
        """Rebuild the heaps without their dead entries: O(n), paid for by the n removals before it."""
        for name, heap in self._heaps.items():
            live = [e for e in heap if not e[2].gone]
            heapq.heapify(live)
            self._heaps[name] = live
        self._dead = 0

    def _head(self, heap: list[_Entry[T]]) -> _Entry[T] | None:
        while heap:
            w = heap[0][2]
            if not w.gone and not w.future.done():
                return heap[0]
            heapq.heappop(heap)
            if w.gone:
                self._dead -= 1
            else:
                # Its task was cancelled and has not run its handler yet: count it out now.
                w.gone = True
                self._count(w, -1)
                if w.expiry is not None:
                    w.expiry.cancel()
        return None
