"""Per-model admission as Ark does it: concurrency, then RPM and TPM over a sliding window."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from ._config import SimModelLimits

__all__ = ["CONCURRENCY", "RPM", "TPM", "ModelLimiter", "Rejection"]

CONCURRENCY = "InflightBatchsizeExceeded"
RPM = "RateLimitExceeded.EndpointRPMExceeded"
TPM = "RateLimitExceeded.EndpointTPMExceeded"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a call was refused, and how long until the limit it hit has room again."""

    code: str
    message: str
    wait_s: float


class ModelLimiter:
    """One model's window of admitted calls, with running sums and the counters /_sim/stats shows.

    Times are passed in (the caller reads loop.time()), so tests can drive it with any clock.
    """

    __slots__ = (
        "_arrivals",
        "_window_tokens",
        "admitted",
        "admitted_tokens",
        "completion_tokens",
        "errors",
        "in_flight",
        "limits",
        "max_in_flight",
        "max_window_requests",
        "max_window_tokens",
        "prompt_tokens",
        "rate_limited",
        "rejected",
        "requests",
        "window_s",
    )

    def __init__(self, limits: SimModelLimits, window_s: float) -> None:
        self.limits = limits
        self.window_s = window_s
        # (arrival time, tokens charged), oldest first; expiry pops from the left, so
        # each admitted call costs O(1) amortised however long the window is.
        self._arrivals: deque[tuple[float, int]] = deque()
        self._window_tokens = 0
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Forget the window and the counters; calls still in flight stay counted as in flight."""
        self._arrivals.clear()
        self._window_tokens = 0
        self.requests = 0
        # Calls admitted against the limits (counted at arrival, as the windows are).
        self.admitted = 0
        self.admitted_tokens = 0
        self.rate_limited = 0
        # Limit 429s by Ark error code.
        self.rejected: dict[str, int] = {}
        self.errors = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.max_in_flight = self.in_flight
        self.max_window_requests = 0
        self.max_window_tokens = 0

    def admit(self, now: float, tokens: int) -> Rejection | None:
        """Admit a call arriving at `now` that will use `tokens`, or say why not."""
        limits = self.limits
        if self.in_flight >= limits.max_concurrency:
            # No clock frees a slot; the smallest honest hint is "soon".
            return Rejection(
                CONCURRENCY,
                f"Too many concurrent requests (limit {limits.max_concurrency}).",
                0.0,
            )
        arrivals = self._arrivals
        cutoff = now - self.window_s
        while arrivals and arrivals[0][0] <= cutoff:
            self._window_tokens -= arrivals.popleft()[1]
        if len(arrivals) >= limits.rpm:
            return Rejection(
                RPM,
                f"The endpoint's RPM limit ({limits.rpm} per {self.window_s:g}s) is exceeded.",
                arrivals[0][0] - cutoff,
            )
        if self._window_tokens + tokens > limits.tpm:
            return Rejection(
                TPM,
                f"The endpoint's TPM limit ({limits.tpm} per {self.window_s:g}s) is exceeded.",
                self._tpm_wait(cutoff, tokens),
            )
        arrivals.append((now, tokens))
        self._window_tokens += tokens
        self.admitted += 1
        self.admitted_tokens += tokens
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight
        if len(arrivals) > self.max_window_requests:
            self.max_window_requests = len(arrivals)
        if self._window_tokens > self.max_window_tokens:
            self.max_window_tokens = self._window_tokens
        return None

    def release(self) -> None:
        """An admitted call has finished, however it ended."""
        self.in_flight -= 1

    def _tpm_wait(self, cutoff: float, tokens: int) -> float:
        if tokens > self.limits.tpm:
            # It never fits; a full window is the longest wait that could matter.
            return self.window_s
        # Only runs on a rejection and stops at the first entries that free enough room.
        excess = self._window_tokens + tokens - self.limits.tpm
        for arrived, charged in self._arrivals:
            excess -= charged
            if excess <= 0:
                return arrived - cutoff
        return self.window_s  # pragma: no cover - the sums guarantee an earlier return

    def stats(self) -> dict[str, Any]:
        """The counters as /_sim/stats reports them."""
        return {
            "requests": self.requests,
            "admitted": self.admitted,
            "admitted_tokens": self.admitted_tokens,
            "rate_limited": self.rate_limited,
            "rejected": dict(self.rejected),
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "max_window_requests": self.max_window_requests,
            "max_window_tokens": self.max_window_tokens,
        }
