"""Running coroutines together: every result in order, or the first failure with the others cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["all_or_first_failure"]

T = TypeVar("T")


async def all_or_first_failure(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run all at once, results in order; on the first failure cancel the rest and raise that failure."""
    if len(coros) == 1:
        return [await coros[0]]
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c) for c in coros]
    except BaseExceptionGroup as group:
        exc: BaseException = group
        while isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        raise exc from None
    return [t.result() for t in tasks]
