"""Per-model token buckets for requests and tokens: reserve before a call, settle after it.

Why the buckets are shaped as they are: a provider counts RPM/TPM over any
window of `W` seconds. A bucket of capacity `b` refilling at `r` admits at most
`b + r*W` in any such window, so with a limit `L` we set

    r = (L - b - L*j/W) / W          (j: jitter allowance for network delay)

and start each bucket holding `b`, never full at `L`. No window can then see
more than `L`, and the utilisation this costs is `(b + L*j/W) / L`, which is
`burst_fraction + j/W` (0.2% + 0.33% with the shipped defaults; the
token bucket's capacity is at least one full-size call, 0.51% of TPM for the
translation model). Settling with
real usage refunds over-estimates (up to the capacity) and charges
under-estimates as debt, so the long-run rate is the real one. A refund lands
while the provider still counts the original call, so a window can pass the
bound by the over-estimates refunded from calls that began before it, less
those still in flight at its end. In steady flow the two cancel; while the
estimator is still learning a model they need not, so it learns fast and keeps
little headroom once learned, and the jitter allowance absorbs the rest.
Deferring refunds by a window does not help: the deferred credit still lands
inside windows that began after the original call.

The governor is pure arithmetic on a clock passed in by the caller: it never
sleeps and owns no timers. The lane scheduler asks it how long to wait and
arms one timer for the earliest waiter.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .config import GovernorConfig, ModelConfig
from .estimate import TokenEstimator

__all__ = ["Governor", "ModelBudget", "Reservation", "TokenBucket"]


class TokenBucket:
    """A bucket of `capacity` units refilling at `rate` units per second; may run into debt."""

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, capacity: float, rate: float, now: float, level: float | None = None) -> None:
        self.capacity = capacity
        self.rate = rate
        self.level = capacity if level is None else level
        self.updated = now

    def _refill(self, now: float, rate: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * rate)
            self.updated = now

    def wait_time(self, amount: float, now: float, rate: float) -> float:
        """Seconds until `amount` (clamped to the capacity) can be taken."""
        self._refill(now, rate)
        need = min(amount, self.capacity)
        # The tolerance keeps float rounding from producing waits too small to advance a clock.
        if self.level >= need - 1e-6:
            return 0.0
        return (need - self.level) / rate

    def take(self, amount: float, now: float, rate: float) -> None:
        self._refill(now, rate)
        self.level -= amount

    def give(self, amount: float, now: float, rate: float) -> None:
        self._refill(now, rate)
        self.level = min(self.capacity, self.level + amount)


@dataclass(slots=True)
class Reservation:
    """One admitted call: 1 request and `tokens` estimated tokens, held until settled."""

    model: str
    tokens: int
    at: float
    settled: bool = False
    # Taken from the shared (Redis) buckets rather than this process's own.
    shared: bool = False


class ModelBudget:
    """The request and token buckets of one model, with its 429 pause and AIMD rate factor."""

    def __init__(self, model: ModelConfig, cfg: GovernorConfig, now: float, share: float = 1.0) -> None:
        self.name = model.name
        self.cfg = cfg
        w, j = cfg.window_s, cfg.jitter_allowance_s
        rpm, tpm = model.rpm * share, model.tpm * share
        # The largest reservation a full-size input makes must fit in the bucket:
        # the window bound below holds for calls no bigger than the capacity.
        biggest_call = TokenEstimator(model.output_ratio, model.max_output_tokens).estimate(model.max_input_tokens)
        req_burst = max(1.0, math.floor(rpm * cfg.burst_fraction))
        tok_burst = max(min(float(biggest_call), tpm / 2), tpm * cfg.burst_fraction)
        self.request_rate = max(rpm - req_burst - rpm * j / w, rpm * 0.5) / w
        self.token_rate = max(tpm - tok_burst - tpm * j / w, tpm * 0.5) / w
        self.requests = TokenBucket(req_burst, self.request_rate, now)
        self.tokens = TokenBucket(tok_burst, self.token_rate, now)
        self.factor = 1.0
        self.factor_at = now
        self.paused_until = 0.0
        self.disabled_until = 0.0
        self.rate_limited = 0
        self.consecutive_429 = 0
        self.consecutive_failures = 0
        self.down_pauses = 0
        self.down_until = 0.0
        self.outages = 0

    # The factor recovers linearly from its last cut: additive increase.
    def rate_factor(self, now: float) -> float:
        if self.factor >= 1.0:
            return 1.0
        return min(1.0, self.factor + max(0.0, now - self.factor_at) * self.cfg.recover_per_s)

    def wait_time(self, tokens: int, now: float) -> float:
        """Seconds until 1 request and `tokens` tokens can be reserved (0 = now)."""
        if now < self.disabled_until:
            return math.inf
        f = self.rate_factor(now)
        wait = max(
            self.paused_until - now,
            self.requests.wait_time(1, now, self.request_rate * f),
            self.tokens.wait_time(tokens, now, self.token_rate * f),
        )
        return max(0.0, wait)

    def time_to_serve(self, requests: int, tokens: int, now: float) -> float:
        """Rough seconds until `requests` calls totalling `tokens` can all be admitted."""
        if now < self.disabled_until:
            return math.inf
        f = self.rate_factor(now)
        self.requests._refill(now, self.request_rate * f)
        self.tokens._refill(now, self.token_rate * f)
        by_req = (requests - self.requests.level) / (self.request_rate * f)
        by_tok = (tokens - self.tokens.level) / (self.token_rate * f)
        return max(0.0, self.paused_until - now, by_req, by_tok)

    def take(self, tokens: int, now: float) -> None:
        f = self.rate_factor(now)
        self.requests.take(1, now, self.request_rate * f)
        self.tokens.take(tokens, now, self.token_rate * f)

    def adjust_tokens(self, delta: int, now: float) -> None:
        f = self.rate_factor(now)
        if delta > 0:
            self.tokens.take(delta, now, self.token_rate * f)
        elif delta < 0:
            self.tokens.give(-delta, now, self.token_rate * f)

    def refund_request(self, now: float) -> None:
        self.requests.give(1, now, self.request_rate * self.rate_factor(now))

    def on_rate_limited(self, over_rate: bool, retry_after_s: float | None, now: float) -> None:
        """A 429: `over_rate` when it says we went past the rate (cut it), not just that the provider is busy."""
        self.rate_limited += 1
        self.consecutive_429 += 1
        if over_rate:
            # Multiplicative decrease from the factor in force now.
            self.factor = max(self.cfg.min_rate_fraction, self.rate_factor(now) * self.cfg.backoff_factor)
            self.factor_at = now
            # Drain what the buckets hold so the cut takes effect at once.
            self.requests.level = min(self.requests.level, 0.0)
            self.tokens.level = min(self.tokens.level, 0.0)
        if retry_after_s is not None:
            pause = retry_after_s
        elif over_rate:
            pause = min(30.0, self.cfg.default_pause_s * 2 ** (self.consecutive_429 - 1))
        else:
            pause = 0.0
        self.paused_until = max(self.paused_until, now + pause)

    def on_failure(self, now: float) -> None:
        """A call the provider failed (5xx, refused, reset): enough in a row and the model pauses."""
        if now < self.paused_until:
            return  # calls sent before the pause are still failing: that is not news
        self.consecutive_failures += 1
        if self.consecutive_failures < self.cfg.provider_down_after_failures:
            return
        # Down: pause, longer each time the first call after a pause fails too.
        pause = min(self.cfg.provider_down_max_pause_s, self.cfg.provider_down_pause_s * 2**self.down_pauses)
        if self.down_pauses == 0:
            self.outages += 1
        self.down_pauses += 1
        self.consecutive_failures = self.cfg.provider_down_after_failures - 1
        self.down_until = now + pause
        self.paused_until = max(self.paused_until, self.down_until)

    def on_success(self) -> None:
        self.consecutive_429 = 0
        self.consecutive_failures = 0
        self.down_pauses = 0

    def snapshot(self, now: float) -> dict[str, float]:
        f = self.rate_factor(now)
        self.requests._refill(now, self.request_rate * f)
        self.tokens._refill(now, self.token_rate * f)
        return {
            "request_level": self.requests.level,
            "request_capacity": self.requests.capacity,
            "token_level": self.tokens.level,
            "token_capacity": self.tokens.capacity,
            "rate_factor": f,
            "admitted_rpm": self.request_rate * f * 60.0,
            "admitted_tpm": self.token_rate * f * 60.0,
            "paused_s": max(0.0, self.paused_until - now),
            "disabled": 1.0 if now < self.disabled_until else 0.0,
            "rate_limited": float(self.rate_limited),
            "provider_outages": float(self.outages),
        }


class Governor:
    """The in-process governor: one ModelBudget per configured model."""

    kind = "local"

    def __init__(self, models: Mapping[str, ModelConfig], cfg: GovernorConfig, now: float, share: float = 1.0) -> None:
        self.cfg = cfg
        self.budgets = {name: ModelBudget(m, cfg, now, share) for name, m in models.items()}
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, wake: Callable[[], None]) -> None:
        """Call `wake` whenever capacity may have appeared outside a settlement (a lane re-runs dispatch)."""
        self._listeners.append(wake)

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(wake)

    def wake(self) -> None:
        for listener in tuple(self._listeners):
            listener()

    def wait_time(self, model: str, tokens: int, now: float) -> float:
        return self.budgets[model].wait_time(tokens, now)

    def try_reserve(self, model: str, tokens: int, now: float) -> Reservation | float:
        """A Reservation when 1 request and `tokens` fit now, else the seconds to wait."""
        budget = self.budgets[model]
        wait = budget.wait_time(tokens, now)
        if wait > 0.0:
            return wait
        budget.take(tokens, now)
        return Reservation(model, tokens, now)

    def settle(self, r: Reservation, actual_tokens: int, now: float) -> None:
        """Replace the estimate with real usage: refund the surplus or charge the shortfall."""
        if r.settled:
            return
        r.settled = True
        self.budgets[r.model].adjust_tokens(actual_tokens - r.tokens, now)

    def refund(self, r: Reservation, now: float) -> None:
        """Give back a reservation whose call never reached the provider."""
        if r.settled:
            return
        r.settled = True
        b = self.budgets[r.model]
        b.adjust_tokens(-r.tokens, now)
        b.refund_request(now)

    def time_to_serve(self, model: str, requests: int, tokens: int, now: float) -> float:
        return self.budgets[model].time_to_serve(requests, tokens, now)

    def on_rate_limited(self, model: str, over_rate: bool, retry_after_s: float | None, now: float) -> None:
        self.budgets[model].on_rate_limited(over_rate, retry_after_s, now)

    def on_success(self, model: str) -> None:
        self.budgets[model].on_success()

    def on_failure(self, model: str, now: float) -> None:
        """The provider failed a call of `model` (not a 429): a run of them pauses it (see ModelBudget)."""
        b = self.budgets[model]
        was_paused = now < b.paused_until
        b.on_failure(now)
        if not was_paused and now < b.paused_until:
            self.wake()  # waiters of other models may be granted what its waiters now cannot take

    def disable(self, model: str, now: float) -> None:
        """Take a model out of rotation for `disable_s` (the provider's spending limit was hit)."""
        self.budgets[model].disabled_until = now + self.cfg.disable_s
        self.wake()  # its waiters hear it at once and fall back

    def enable_all(self) -> None:
        """Put every disabled model back (the operator's SIGHUP)."""
        for b in self.budgets.values():
            b.disabled_until = 0.0
        self.wake()  # waiters held back by the disabled models may go now

    def is_available(self, model: str, now: float) -> bool:
        return now >= self.budgets[model].disabled_until

    def is_paused(self, model: str, now: float) -> bool:
        return now < self.budgets[model].paused_until

    def down_for(self, model: str, now: float) -> float:
        """Seconds left of the pause after a run of provider failures (0 when the provider is not taken to be down)."""
        return max(0.0, self.budgets[model].down_until - now)

    def snapshot(self, now: float) -> dict[str, dict[str, float]]:
        return {name: b.snapshot(now) for name, b in self.budgets.items()}
