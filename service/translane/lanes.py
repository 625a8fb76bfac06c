"""Lanes: bounded concurrency per class of model, waiters ordered by priority then arrival.

A waiter is granted when its lane has a free slot *and* the governor can
reserve its model's request and tokens. Waiters sit in one heap per model (so a
paused model does not block another model of the same lane); one timer, armed
for the earliest moment the governor says a head waiter could start, wakes the
lane. Nothing polls or sleeps.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .config import LaneConfig, ModelConfig
from .errors import ModelUnavailable, Overloaded
from .governor import Governor, Reservation

__all__ = ["BATCH", "INTERACTIVE", "Lane", "Ticket", "Timer"]

INTERACTIVE = 0
BATCH = 1


class Timer(Protocol):
    def cancel(self) -> None: ...


Clock = Callable[[], float]
CallAt = Callable[[float, Callable[[], None]], Timer]


@dataclass(eq=False, slots=True)
class Ticket:
    """A granted lane slot plus the governor reservation that goes with it."""

    lane: Lane
    model: str
    reservation: Reservation
    queued_s: float
    governed_s: float
    started: float
    released: bool = False

    def release(self) -> None:
        """Free the lane slot (idempotent). Settle or refund the reservation first."""
        if not self.released:
            self.released = True
            self.lane._release(self)


@dataclass(order=True, slots=True)
class _Waiter:
    key: tuple[int, int]
    model: str = field(compare=False)
    tokens: int = field(compare=False)
    deadline: float = field(compare=False)
    enqueued: float = field(compare=False)
    future: asyncio.Future[Ticket] = field(compare=False)
    governed_since: float = field(default=-1.0, compare=False)


class Lane:
    """One lane: at most `max_concurrency` calls in flight, at most `max_queue` waiting."""

    def __init__(
        self,
        config: LaneConfig,
        governor: Governor,
        *,
        clock: Clock | None = None,
        call_at: CallAt | None = None,
    ) -> None:
        self.name = config.name
        self.max_concurrency = config.max_concurrency
        self.max_queue = config.max_queue
        self.governor = governor
        loop = asyncio.get_running_loop() if clock is None or call_at is None else None
        self._clock: Clock = clock or loop.time  # type: ignore[union-attr]
        self._call_at: CallAt = call_at or loop.call_at  # type: ignore[union-attr]
        self._heaps: dict[str, list[_Waiter]] = {}
        # Live waiters per model and priority, for the wait estimate.
        self._waiting: dict[str, list[int]] = {}
        self._waiting_tokens: dict[str, list[int]] = {}
        self._seq = itertools.count()
        self._timer: Timer | None = None
        self._timer_at = math.inf
        self.in_flight = 0
        self.queued = 0
        self.granted = 0
        self.shed = 0
        # Moving averages per model: how long a call holds a slot, and the
        # share of grants that went to interactive work.
        self._service_s: dict[str, float] = {}
        self._interactive_share: dict[str, float] = {}

    # -- admission ---------------------------------------------------------

    async def admit(self, model: ModelConfig, tokens: int, priority: int, deadline: float) -> Ticket:
        """Wait for a slot and a reservation; raise Overloaded at once when `deadline` can't be met."""
        name = model.name
        now = self._clock()
        if not self.governor.is_available(name, now):
            raise ModelUnavailable(f"model {name} is out of rotation")
        if self.in_flight < self.max_concurrency and not self._heaps.get(name):
            got = self.governor.try_reserve(name, tokens, now)
            if isinstance(got, Reservation):
                return self._grant(name, got, now, now, -1.0, priority)
        if self.queued >= self.max_queue:
            self.shed += 1
            raise Overloaded(
                f"lane {self.name} queue is full ({self.max_queue} waiting)",
                retry_after_s=self._wait_estimate(name, tokens, priority, now),
            )
        wait = self._wait_estimate(name, tokens, priority, now)
        # The estimate is a forecast: leave it 20% headroom rather than admit
        # work that would time out in the queue.
        if now + wait * 1.2 + self._service_s.get(name, 0.0) > deadline:
            self.shed += 1
            raise Overloaded(
                f"model {name} cannot start within the deadline (about {wait:.2f}s of queue)",
                retry_after_s=wait,
            )
        fut: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        w = _Waiter((priority, next(self._seq)), name, tokens, deadline, now, fut)
        heapq.heappush(self._heaps.setdefault(name, []), w)
        self._count(w, +1)
        self._dispatch()
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                # Granted in the same tick as the cancel: give everything back.
                t = fut.result()
                self.governor.refund(t.reservation, self._clock())
                t.release()
            else:
                # Awaiting task cancelled: asyncio has cancelled `fut` too.
                fut.cancel()
                self._forget(w)
            raise

    def _grant(
        self, model: str, r: Reservation, now: float, enqueued: float, gov_since: float, priority: int
    ) -> Ticket:
        self.in_flight += 1
        self.granted += 1
        share = self._interactive_share.get(model, 0.0)
        self._interactive_share[model] = share + 0.01 * ((priority == INTERACTIVE) - share)
        governed = now - gov_since if gov_since >= 0 else 0.0
        return Ticket(self, model, r, queued_s=max(0.0, now - enqueued - governed), governed_s=governed, started=now)

    def _release(self, ticket: Ticket) -> None:
        self.in_flight -= 1
        now = self._clock()
        held = now - ticket.started
        prev = self._service_s.get(ticket.model)
        self._service_s[ticket.model] = held if prev is None else prev * 0.9 + held * 0.1
        self._dispatch()

    def _count(self, w: _Waiter, sign: int) -> None:
        counts = self._waiting.setdefault(w.model, [0, 0])
        toks = self._waiting_tokens.setdefault(w.model, [0, 0])
        counts[w.key[0]] += sign
        toks[w.key[0]] += sign * w.tokens
        self.queued += sign

    def _forget(self, w: _Waiter) -> None:
        heap = self._heaps.get(w.model)
        if heap is not None and w in heap:
            heap.remove(w)
            heapq.heapify(heap)
            self._count(w, -1)
            self._dispatch()

    def _wait_estimate(self, model: str, tokens: int, priority: int, now: float) -> float:
        counts = self._waiting.get(model, [0, 0])
        toks = self._waiting_tokens.get(model, [0, 0])
        ahead = counts[INTERACTIVE] if priority == INTERACTIVE else counts[0] + counts[1]
        ahead_tokens = toks[INTERACTIVE] if priority == INTERACTIVE else toks[0] + toks[1]
        by_rate = self.governor.time_to_serve(model, ahead + 1, ahead_tokens + tokens, now)
        if priority != INTERACTIVE:
            # Interactive work arriving later goes first: batch gets what it leaves.
            by_rate /= max(0.05, 1.0 - self._interactive_share.get(model, 0.0))
        # Slots free up at in_flight / service_time per second.
        service = self._service_s.get(model, 0.0)
        behind_slots = self.queued - self.max_concurrency + self.in_flight + 1
        by_slots = max(0.0, behind_slots) * service / self.max_concurrency if service else 0.0
        return max(by_rate, by_slots)

    # -- dispatch ------------------------------------------------------------

    def _dispatch(self) -> None:
        now = self._clock()
        earliest = math.inf
        while self.in_flight < self.max_concurrency:
            heads: list[_Waiter] = []
            for heap in self._heaps.values():
                while heap and heap[0].future.done():
                    self._count(heapq.heappop(heap), -1)
                if heap:
                    heads.append(heap[0])
            if not heads:
                break
            heads.sort()
            granted = False
            for w in heads:
                # Never start what cannot finish: a call needs about half its
                # usual time before the deadline to be worth sending.
                if w.deadline <= now + 0.5 * self._service_s.get(w.model, 0.0):
                    heapq.heappop(self._heaps[w.model])
                    self._count(w, -1)
                    self.shed += 1
                    w.future.set_exception(
                        Overloaded(f"model {w.model} could not start before the deadline", retry_after_s=1.0)
                    )
                    granted = True  # the heads changed: look again
                    break
                got = self.governor.try_reserve(w.model, w.tokens, now)
                if isinstance(got, Reservation):
                    heapq.heappop(self._heaps[w.model])
                    self._count(w, -1)
                    w.future.set_result(self._grant(w.model, got, now, w.enqueued, w.governed_since, w.key[0]))
                    granted = True
                    break
                if w.governed_since < 0:
                    w.governed_since = now
                earliest = min(earliest, now + got, w.deadline)
            if not granted:
                break
        self._arm(earliest if self.queued else math.inf)

    def _arm(self, when: float) -> None:
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when < math.inf:
            self._timer = self._call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self._dispatch()

    def kick(self) -> None:
        """Re-run dispatch now (after the governor changed state outside a release)."""
        self._dispatch()

    def snapshot(self) -> dict[str, float]:
        return {
            "in_flight": float(self.in_flight),
            "queued": float(self.queued),
            "max_concurrency": float(self.max_concurrency),
            "granted": float(self.granted),
            "shed": float(self.shed),
        }
