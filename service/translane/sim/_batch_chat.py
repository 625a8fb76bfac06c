"""Ark Batch Chat's accounting for one model: a daily token quota and the counters /_sim/stats shows."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["QUOTA", "BatchChatModel"]

# Ark's code for a spent quota; distinct from the RPM/TPM/concurrency 429s of the online route.
QUOTA = "QuotaExceeded"


class BatchChatModel:
    """One model's batch route: tokens spent in the current simulated day, and its counters.

    Days are `day_s` seconds long and counted from `epoch`; times are passed in (the caller reads
    loop.time()), so tests can drive it with any clock.
    """

    __slots__ = (
        "_day",
        "completion_tokens",
        "day_s",
        "epoch",
        "errors",
        "in_flight",
        "max_in_flight",
        "prompt_tokens",
        "quota_rejected",
        "quota_used",
        "rate_limited",
        "requests",
    )

    def __init__(self, day_s: float, epoch: float) -> None:
        self.day_s = day_s
        self.epoch = epoch
        self.in_flight = 0
        self.reset(epoch)

    def reset(self, now: float) -> None:
        """Forget the counters and start a fresh day at `now`; calls in flight stay counted as in flight."""
        self.epoch = now
        self._day = 0
        self.quota_used = 0
        self.requests = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.quota_rejected = 0
        self.rate_limited = 0
        self.errors = 0
        self.max_in_flight = self.in_flight

    def charge(self, now: float, tokens: int, tpd: int) -> float | None:
        """Charge `tokens` to today's quota of `tpd`; None if they fit, else the seconds until the next day."""
        day = math.floor((now - self.epoch) / self.day_s)
        if day != self._day:
            self._day = day
            self.quota_used = 0
        if self.quota_used + tokens > tpd:
            self.quota_rejected += 1
            return self.epoch + (day + 1) * self.day_s - now
        self.quota_used += tokens
        return None

    def enter(self) -> None:
        """A call starts its (long) wait for an answer."""
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight

    def leave(self) -> None:
        """A call's wait has ended, however it ended."""
        self.in_flight -= 1

    def stats(self, now: float, tpd: int) -> dict[str, Any]:
        """The counters as /_sim/stats reports them, with what is left of today's quota of `tpd`."""
        day = math.floor((now - self.epoch) / self.day_s)
        used = self.quota_used if day == self._day else 0
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens": self.prompt_tokens + self.completion_tokens,
            "quota_tpd": tpd,
            "quota_used": used,
            "quota_left": max(0, tpd - used),
            "quota_rejected": self.quota_rejected,
            "rate_limited": self.rate_limited,
            "errors": self.errors,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }
