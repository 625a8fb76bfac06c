"""A clock the test moves by hand, with the event loop's `call_at` shape: rate and deadline logic in milliseconds."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

__all__ = ["FakeClock", "settle"]


class FakeClock:
    """A clock the test moves by hand, with the loop's call_at shape."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, _Handle]] = []
        self._seq = itertools.count()
        self.armed = 0

    def __call__(self) -> float:
        return self.now

    def call_at(self, when: float, cb: Callable[[], None]) -> _Handle:
        h = _Handle(cb)
        heapq.heappush(self._timers, (when, next(self._seq), h))
        self.armed += 1
        return h

    def pending(self) -> int:
        return sum(1 for _, _, h in self._timers if not h.cancelled)

    async def advance(self, dt: float) -> None:
        target = self.now + dt
        while self._timers and self._timers[0][0] <= target:
            when, _, h = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not h.cancelled:
                h.cb()
            await settle()
        self.now = target
        await settle()


class _Handle:
    def __init__(self, cb: Callable[[], None]) -> None:
        self.cb = cb
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


async def settle(rounds: int = 5) -> None:
    """Let every task that can run, run, for `rounds` turns of the loop (no time passes: nothing waits on a clock)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
