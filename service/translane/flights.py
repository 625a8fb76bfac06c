"""Identical work in flight at the same moment runs once: later callers wait for the first one's result."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Flights"]

T = TypeVar("T")


class Flights(Generic[T]):
    """Identical work in flight at once runs once: later callers wait for the first one's result."""

    def __init__(self, shared_failures: tuple[type[BaseException], ...] = ()) -> None:
        self._running: dict[str, asyncio.Future[T]] = {}
        # Failures that would recur for every twin (a cut the whole ladder could not fix, a bad request):
        # handed to the followers rather than paid for again by each.
        self._shared_failures = shared_failures

    async def join(self, key: str, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """(`work()`'s result, whether it was shared from another caller). A leader cancelled, or failed
        for a passing reason, hands nothing on: the followers then run the work themselves."""
        while (running := self._running.get(key)) is not None:
            try:
                return await asyncio.shield(running), True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not running.cancelled() or (task is not None and task.cancelling()):
                    raise  # we were cancelled (perhaps in the same tick as the leader), not just the leader
            except self._shared_failures:
                raise
            except Exception:
                pass  # the leader failed for a passing reason: try ourselves
            if self._running.get(key) is running:
                del self._running[key]
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._running[key] = fut
        try:
            result = await work()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(exc)
                fut.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        else:
            fut.set_result(result)
            return result, False
        finally:
            if self._running.get(key) is fut:
                del self._running[key]
