"""Lanes: bounded concurrency per class of model, waiters granted as the governor allows.

A waiter is granted when its lane has a free slot *and* the governor can
reserve its model's request and tokens. Waiters sit in the lane's queue
(lane_queue.py: one heap per model, ordered by priority, then shared across
flows (tenants) by weight in tokens, first in first out within a flow); one
timer, armed for the earliest moment the governor says a head waiter could
start, wakes the lane, and each waiter has one timer for the moment it must
have started by. Nothing polls or sleeps.

The lane owns a call's admission from start to end:

    async with lane.admit(model, tokens, priority, start_by=..., deadline=..., tenant=...) as ticket:
        ticket.sent()                 # the call leaves for the provider
        ...
        ticket.settle(real_tokens)    # what the provider says it used

On exit the lane refunds a reservation whose call never reached the provider
and keeps (at least) the estimate of one that did, then frees the slot.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Protocol

from .config import LaneConfig, ModelConfig
from .errors import ModelUnavailable, Overloaded
from .governor import Reservation
from .lane_queue import LaneQueue, Timer, Waiter

__all__ = ["BATCH", "INTERACTIVE", "Admission", "CallAt", "Clock", "Gate", "Lane", "Ticket", "Timer"]

INTERACTIVE = 0
BATCH = 1
# The wait estimate is a forecast: leave it this much headroom rather than admit
# work that would time out in the queue.
ESTIMATE_HEADROOM = 1.2
# A call needs about this share of its usual time before the deadline to be worth sending.
MIN_SERVICE_SHARE = 0.5


Clock = Callable[[], float]
CallAt = Callable[[float, Callable[[], None]], Timer]


def _equal_weight(tenant: str) -> float:
    return 1.0


class Gate(Protocol):
    """What a lane asks before it grants a slot: the governor (per-model RPM/TPM buckets), or a batch route's
    daily quota (translane.batch_route)."""

    def subscribe(self, wake: Callable[[], None]) -> None: ...

    def unsubscribe(self, wake: Callable[[], None]) -> None: ...

    def try_reserve(self, model: str, tokens: int, now: float) -> Reservation | float: ...

    def settle(self, r: Reservation, actual_tokens: int, now: float) -> None: ...

    def refund(self, r: Reservation, now: float) -> None: ...

    def time_to_serve(self, model: str, requests: int, tokens: int, now: float) -> float: ...

    def is_available(self, model: str, now: float) -> bool: ...

    def down_for(self, model: str, now: float) -> float: ...


class Ticket:
    """A granted lane slot plus the governor reservation that goes with it."""

    __slots__ = ("_closed", "_sent", "governed_s", "lane", "model", "queued_s", "reservation", "started", "used")

    def __init__(
        self, lane: Lane, model: str, reservation: Reservation, queued_s: float, governed_s: float, started: float
    ) -> None:
        self.lane = lane
        self.model = model
        self.reservation = reservation
        self.queued_s = queued_s
        self.governed_s = governed_s
        self.started = started
        # Tokens the provider has certainly used so far (prompt + what was streamed), when known.
        self.used = 0
        self._sent = False
        self._closed = False

    @property
    def reached_provider(self) -> bool:
        return self._sent

    def sent(self) -> None:
        """Mark that the call is leaving for the provider: from now on its reservation is kept."""
        self._sent = True

    def settle(self, tokens: int) -> None:
        """Replace the estimate with the provider's real usage (the first settlement wins)."""
        self.lane.governor.settle(self.reservation, tokens, self.lane._clock())

    def close(self) -> None:
        """Give back what was not used and free the slot (idempotent)."""
        if self._closed:
            return
        self._closed = True
        lane = self.lane
        now = lane._clock()
        if not self.reservation.settled:
            if self._sent:
                # It reached the provider, which counted the request and may
                # count everything reserved (a cut or failed call says nothing
                # about what it generated): the reservation stands.
                lane.governor.settle(self.reservation, max(self.used, self.reservation.tokens), now)
            else:
                lane.governor.refund(self.reservation, now)
        if not self._sent:
            lane.refunded += 1
        lane._release(self, now)


class Admission:
    """`async with lane.admit(...) as ticket`: waits for a ticket, and closes it on exit."""

    __slots__ = ("_args", "_lane", "_ticket")

    def __init__(self, lane: Lane, args: tuple[ModelConfig, int, int, float, float, bool, str]) -> None:
        self._lane = lane
        self._args = args
        self._ticket: Ticket | None = None

    async def __aenter__(self) -> Ticket:
        self._ticket = await self._lane._acquire(*self._args)
        return self._ticket

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ticket is not None:
            self._ticket.close()


class Lane:
    """One lane: at most `max_concurrency` calls in flight, at most `max_queue` waiting."""

    def __init__(
        self,
        config: LaneConfig,
        governor: Gate,
        *,
        clock: Clock | None = None,
        call_at: CallAt | None = None,
        queue_target_s: Mapping[int, float] | None = None,
        standing_after_s: float = math.inf,
        weight_of: Callable[[str], float] | None = None,
    ) -> None:
        """`queue_target_s` (by priority) and `standing_after_s`: the controlled delay (see `_acquire`); none
        by default. `weight_of`: a tenant's share of a saturated model against the others' (1 for all by
        default), read as each of its calls joins the queue."""
        self.name = config.name
        self.max_concurrency = config.max_concurrency
        self.max_queue = config.max_queue
        self.governor = governor
        self.weight_of: Callable[[str], float] = weight_of or _equal_weight
        loop = asyncio.get_running_loop() if clock is None or call_at is None else None
        self._clock: Clock = clock or loop.time  # type: ignore[union-attr]
        self._call_at: CallAt = call_at or loop.call_at  # type: ignore[union-attr]
        self._queue: LaneQueue[Ticket] = LaneQueue()
        self._timer: Timer | None = None
        self._timer_at = math.inf
        self.in_flight = 0
        self.granted = 0
        self.refunded = 0  # granted calls that never reached the provider
        self.shed = 0
        self.expired = 0
        # Moving averages per model: how long a call holds a slot, and the
        # share of grants that went to interactive work.
        self._service_s: dict[str, float] = {}
        self._interactive_share: dict[str, float] = {}
        self._queue_target_s = dict(queue_target_s or {})
        self._standing_after_s = standing_after_s
        # Per model and priority: the last moment its queue was seen empty.
        self._calm_at: dict[tuple[str, int], float] = {}
        governor.subscribe(self.kick)

    @property
    def queued(self) -> int:
        """Waiters in the queue now."""
        return self._queue.queued

    # -- admission ---------------------------------------------------------

    def admit(
        self,
        model: ModelConfig,
        tokens: int,
        priority: int,
        *,
        start_by: float,
        deadline: float,
        may_leave: bool = False,
        tenant: str = "",
    ) -> Admission:
        """A ticket for one call of `model` that starts by `start_by` and can finish by `deadline`.

        Entering raises Overloaded at once (with a retry hint) when the lane forecasts it cannot start
        in time, and later when the start_by moment passes in the queue; ModelUnavailable when the model
        is out of rotation, and (with `may_leave`: the caller has a fallback) when its provider is taken to
        be down while it waits.

        While it waits, the model's queue of its priority is shared across tenants by their weights, counted
        in tokens; the forecast puts it behind its own tenant's backlog and the others' shares meanwhile.
        """
        return Admission(self, (model, tokens, priority, start_by, deadline, may_leave, tenant))

    async def _acquire(
        self,
        model: ModelConfig,
        tokens: int,
        priority: int,
        start_by: float,
        deadline: float,
        may_leave: bool,
        tenant: str,
    ) -> Ticket:
        name = model.name
        now = self._clock()
        if not self.governor.is_available(name, now):
            raise ModelUnavailable(f"model {name} is out of rotation")
        standing = self._standing(name, priority, now)
        if self.in_flight < self.max_concurrency and not self._queue.has_waiters(name):
            got = self.governor.try_reserve(name, tokens, now)
            if isinstance(got, Reservation):
                return self._grant(name, got, now, now, -1.0, priority)
        if self.queued >= self.max_queue:
            self.shed += 1
            raise Overloaded(
                f"lane {self.name} queue is full ({self.max_queue} waiting)",
                retry_after_s=self._wait_estimate(name, tokens, priority, tenant, now),
            )
        wait = self._wait_estimate(name, tokens, priority, tenant, now)
        service = self._service_s.get(name, 0.0)
        latest = min(start_by, deadline - service)
        if standing:
            # A standing queue is kept near its target: the newcomer starts within it, or hears so now.
            latest = min(latest, now + self._queue_target_s[priority])
        if now + wait * ESTIMATE_HEADROOM > latest:
            self.shed += 1
            why = "is queued past its target" if standing else "cannot start within the deadline"
            raise Overloaded(f"model {name} {why} (about {wait:.2f}s of queue)", retry_after_s=wait)
        fut: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        w = Waiter(name, tokens, priority, deadline, now, fut, may_leave, tenant)
        self._queue.push(w, self.weight_of(tenant))
        w.expiry = self._call_at(min(start_by, deadline - MIN_SERVICE_SHARE * service), lambda: self._expire(w))
        self._dispatch()
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                # Granted in the same tick as the cancel: give everything back.
                fut.result().close()
            else:
                self._queue.drop(w)
                self._left(w, self._clock())
            raise

    def _standing(self, model: str, priority: int, now: float) -> bool:
        """Whether the queue of `model` at `priority` has stood (not been empty) for standing_after_s."""
        key = (model, priority)
        if not self._queue.waiting(model, priority):
            self._calm_at[key] = now
            return False
        if priority not in self._queue_target_s:
            return False
        return now - self._calm_at.get(key, now) > self._standing_after_s

    def _left(self, w: Waiter[Ticket], now: float) -> None:
        """A waiter left the queue (granted, expired, refused or gone): note the moment its queue emptied."""
        if not self._queue.waiting(w.model, w.priority):
            self._calm_at[(w.model, w.priority)] = now

    def _grant(
        self, model: str, r: Reservation, now: float, enqueued: float, gov_since: float, priority: int
    ) -> Ticket:
        self.in_flight += 1
        self.granted += 1
        share = self._interactive_share.get(model, 0.0)
        self._interactive_share[model] = share + 0.01 * ((priority == INTERACTIVE) - share)
        governed = now - gov_since if gov_since >= 0 else 0.0
        return Ticket(self, model, r, max(0.0, now - enqueued - governed), governed, now)

    def _release(self, ticket: Ticket, now: float) -> None:
        self.in_flight -= 1
        held = now - ticket.started
        prev = self._service_s.get(ticket.model)
        self._service_s[ticket.model] = held if prev is None else prev * 0.9 + held * 0.1
        self._dispatch()

    def _expire(self, w: Waiter[Ticket]) -> None:
        """The waiter's start_by passed in the queue: refuse it now rather than start it too late."""
        if w.gone or w.future.done():
            return
        w.expiry = None
        self._queue.drop(w)
        self._left(w, self._clock())
        self.shed += 1
        self.expired += 1
        w.future.set_exception(Overloaded(f"model {w.model} could not start in time", retry_after_s=1.0))

    def _wait_estimate(self, model: str, tokens: int, priority: int, tenant: str, now: float) -> float:
        # Of this model's queue, what the fair share serves first: the tenant's own backlog and what the others
        # are served meanwhile (a flooding tenant's newcomer waits behind its flood; a light one's, near the front).
        ahead, ahead_tokens = self._queue.ahead(model, priority, tenant)
        by_rate = self.governor.time_to_serve(model, ahead + 1, ahead_tokens + tokens, now)
        if priority != INTERACTIVE:
            # Interactive work arriving later goes first: batch gets what it leaves.
            by_rate /= max(0.05, 1.0 - self._interactive_share.get(model, 0.0))
        # Slots free up at in_flight / service_time per second.
        service = self._service_s.get(model, 0.0)
        # Only the waiters served before this one hold it back from a slot (interactive work overtakes batch):
        # of the other models, those of its priority or above; of its own, those its tenant's share puts ahead.
        served_before = self._queue.served_before(priority) - self._queue.waiting_through(model, priority) + ahead
        behind_slots = served_before - self.max_concurrency + self.in_flight + 1
        by_slots = max(0.0, behind_slots) * service / self.max_concurrency if service else 0.0
        return max(by_rate, by_slots)

    # -- dispatch ------------------------------------------------------------

    def _dispatch(self) -> None:
        now = self._clock()
        earliest = math.inf
        for model in self._queue.models():
            if self._queue.has_waiters(model) and not self.governor.is_available(model, now):
                # Taken out of rotation while they waited: tell them now, so they fall back in time.
                self._refuse_all(model)
            elif self._queue.has_leavers(model) and self.governor.down_for(model, now) > 0:
                # Its provider is failing: those with a fallback go there rather than wait out the pause.
                self._refuse_leavers(model)
        while self.in_flight < self.max_concurrency:
            heads = self._queue.heads()
            if not heads:
                break
            granted = False
            for w in heads:
                got = self.governor.try_reserve(w.model, w.tokens, now)
                if isinstance(got, Reservation):
                    self._queue.pop(w.model)
                    self._left(w, now)
                    w.future.set_result(self._grant(w.model, got, now, w.enqueued, w.governed_since, w.priority))
                    granted = True
                    break
                if w.governed_since < 0:
                    w.governed_since = now
                earliest = min(earliest, now + got)
            if not granted:
                break
        self._arm(earliest if self.queued else math.inf)

    def _refuse_all(self, model: str) -> None:
        for w in self._queue.pop_all(model):
            self.shed += 1
            w.future.set_exception(ModelUnavailable(f"model {model} was taken out of rotation"))

    def _refuse_leavers(self, model: str) -> None:
        for w in self._queue.leavers(model):
            self._queue.drop(w)
            self.shed += 1
            w.future.set_exception(ModelUnavailable(f"model {model} is paused: its provider is failing"))

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
        """Re-run dispatch now (the governor changed state outside a release)."""
        self._dispatch()

    def snapshot(self) -> dict[str, float]:
        return {
            "in_flight": float(self.in_flight),
            "queued": float(self.queued),
            "max_concurrency": float(self.max_concurrency),
            "granted": float(self.granted),
            "refunded": float(self.refunded),
            "shed": float(self.shed),
            "expired": float(self.expired),
        }
