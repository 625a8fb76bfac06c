"""The provider's batch route of each model that has one: a lane of its own, gated by the route's daily quota.

A job's line whose completion window allows it goes to its model's batch route (Ark Batch Chat) instead of the
online lanes: answers take minutes and cost a share of the online price (`batch_price_factor`), and the route has
its own limits. Its lane takes `batch_max_concurrency` calls at once and is gated not by the online governor
(RPM/TPM) but by `DailyQuota`: the route's tokens per day (`batch_tpd`) as a bucket that empties at the turn of
the provider's day (the daily budgets' day), reserved before a call and settled with its real usage after, as the
governor does. A provider's 429 QuotaExceeded on the route closes it until the time the provider says (or the
next day). A closed route sends work online, or holds it in the lane until the route opens again, within the
job's window (`batch_when_spent`). The quota is this process's own; with the governor shared in Redis, the
replicas share it there instead (shared_batch_quota.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping

from .budget import Budgets
from .config import LaneConfig, ModelConfig
from .governor import Reservation
from .lanes import CallAt, Clock, Lane

__all__ = ["BATCH_MAX_QUEUE", "BatchRoutes", "DailyQuota"]

log = logging.getLogger("translane.batch")

# Calls a batch lane holds waiting (for its quota's next day, say); jobs bound how many lines are in flight.
BATCH_MAX_QUEUE = 100_000


class DailyQuota:
    """A lane's gate (translane.lanes.Gate) for the batch routes: per model, the day's tokens against its quota."""

    def __init__(self, models: Mapping[str, ModelConfig], budgets: Budgets, share: float = 1.0) -> None:
        """`share`: of each quota, the part this counts to (a replica that cannot reach the shared count: 1/N)."""
        self.tpd = {name: max(1, int(m.batch_tpd * share)) if m.batch_tpd else 0 for name, m in models.items()}
        self._budgets = budgets
        self._day = ""
        # Tokens reserved or spent on the route today, by model.
        self.used: dict[str, int] = {}
        # Loop-clock moment until which the provider said the route's quota is spent, by model.
        self.closed_until: dict[str, float] = {}
        self._listeners: list[Callable[[], None]] = []

    def _roll(self) -> None:
        today = self._budgets.day()
        if today != self._day:
            self._day = today
            self.used.clear()

    def wait_time(self, model: str, tokens: int, now: float) -> float:
        """Seconds until `tokens` fit today's quota (0: now)."""
        closed = self.closed_until.get(model, 0.0)
        if now < closed:
            return closed - now
        tpd = self.tpd[model]
        if not tpd:
            return 0.0
        self._roll()
        if self.used.get(model, 0) + min(tokens, tpd) > tpd:
            return self._budgets.seconds_to_next_day()
        return 0.0

    def close(self, model: str, for_s: float | None, now: float) -> None:
        """The provider said the route's quota is spent: closed for `for_s` (None: until the next day)."""
        for_s = self._budgets.seconds_to_next_day() if for_s is None else for_s
        self.closed_until[model] = max(self.closed_until.get(model, 0.0), now + for_s)
        log.warning("batch route of %s: the provider's quota is spent; closed for %.0fs", model, for_s)

    def left(self, model: str) -> int | None:
        """Tokens left of today's quota (None: no quota)."""
        tpd = self.tpd[model]
        if not tpd:
            return None
        self._roll()
        return max(0, tpd - self.used.get(model, 0))

    # -- the lane's gate ---------------------------------------------------

    def subscribe(self, wake: Callable[[], None]) -> None:
        self._listeners.append(wake)

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(wake)

    def _wake(self) -> None:
        for listener in tuple(self._listeners):
            listener()

    def try_reserve(self, model: str, tokens: int, now: float) -> Reservation | float:
        wait = self.wait_time(model, tokens, now)
        if wait > 0.0:
            return wait
        self.used[model] = self.used.get(model, 0) + tokens
        return Reservation(model, tokens, now)

    def settle(self, r: Reservation, actual_tokens: int, now: float) -> None:
        if r.settled:
            return
        r.settled = True
        self._adjust(r.model, actual_tokens - r.tokens)

    def refund(self, r: Reservation, now: float) -> None:
        if r.settled:
            return
        r.settled = True
        self._adjust(r.model, -r.tokens)

    def _adjust(self, model: str, delta: int) -> None:
        self._roll()  # a call reserved yesterday and settled today counts (at most) against today
        self.used[model] = max(0, self.used.get(model, 0) + delta)
        if delta < 0:
            self._wake()  # what was given back may let a waiter go

    def time_to_serve(self, model: str, requests: int, tokens: int, now: float) -> float:
        return self.wait_time(model, tokens, now)

    def is_available(self, model: str, now: float) -> bool:
        return True

    def down_for(self, model: str, now: float) -> float:
        return 0.0


class BatchRoutes:
    """The batch route of every model that has one: which work may take it, its lane, and its quota."""

    def __init__(
        self,
        models: Mapping[str, ModelConfig],
        budgets: Budgets,
        clock: Clock,
        call_at: CallAt,
        quota: DailyQuota | None = None,
    ) -> None:
        """`quota`: the routes' daily quota (default: this process's own, of the routed models)."""
        routed = {name: m for name, m in models.items() if m.batch_api}
        self.quota = quota if quota is not None else DailyQuota(routed, budgets)
        self.lanes = {
            name: Lane(
                LaneConfig(f"batch/{name}", max_concurrency=m.batch_max_concurrency, max_queue=BATCH_MAX_QUEUE),
                self.quota,
                clock=clock,
                call_at=call_at,
            )
            for name, m in routed.items()
        }

    @staticmethod
    def configured(models: Mapping[str, ModelConfig]) -> bool:
        """Whether any model has a batch route."""
        return any(m.batch_api for m in models.values())

    @staticmethod
    def takes(model: ModelConfig, window_s: float) -> bool:
        """Whether a job's line with a completion window of `window_s` may go to `model`'s batch route."""
        return bool(model.batch_api) and window_s > 0 and window_s >= model.batch_min_window_s

    @staticmethod
    def room(models: Mapping[str, ModelConfig], window_s: float) -> int:
        """The lines a job with a completion window of `window_s` may have in flight on the batch routes (on top of
        its online bound): each route's `batch_max_concurrency` that such a window may take. A batch answer takes
        minutes, so only that many lines at once keep a route busy."""
        return sum(m.batch_max_concurrency for m in models.values() if BatchRoutes.takes(m, window_s))

    def lane_for(self, model: ModelConfig, window_s: float, tokens: int, now: float) -> Lane | None:
        """The lane of `model`'s batch route for a call of `tokens`, or None when the call goes online: no route
        for such a window, or its quota is spent and the model sends such work online."""
        lane = self.lanes.get(model.name)
        if lane is None or not self.takes(model, window_s):
            return None
        if model.batch_when_spent == "online" and self.quota.wait_time(model.name, tokens, now) > 0:
            return None
        return lane

    def close(self) -> None:
        """Stop the lanes listening to the quota."""
        for lane in self.lanes.values():
            self.quota.unsubscribe(lane.kick)
