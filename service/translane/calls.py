"""Calling the service as its own tools do (batch jobs, file translation): overload waited out as the service
asks, passing failures tried again, the rest raised."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

import grpc

__all__ = ["MAX_PAUSE_S", "overload_pause", "persist", "retry_after_s"]

T = TypeVar("T")
# The longest single wait: a hint longer than this is waited out in steps, each a fresh try.
MAX_PAUSE_S = 30.0


def retry_after_s(exc: grpc.aio.AioRpcError) -> float | None:
    """The service's `retry-after` trailer in seconds, when it sent a readable one."""
    for key, value in exc.trailing_metadata() or ():
        if key == "retry-after":
            with contextlib.suppress(TypeError, ValueError):
                return max(0.05, float(value))
    return None


def overload_pause(exc: grpc.aio.AioRpcError) -> float | None:
    """Seconds to wait before trying again when the service is full; None when it is not (a spent daily
    budget is RESOURCE_EXHAUSTED too, but no overload: waiting a day is no retry)."""
    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or "daily budget" in (exc.details() or ""):
        return None
    hint = retry_after_s(exc)
    return min(1.0 if hint is None else hint, MAX_PAUSE_S)


async def persist(
    call: Callable[[], Awaitable[T]],
    retry: Collection[grpc.StatusCode],
    max_attempts: int,
    on_wait: Callable[[], None] = lambda: None,
) -> T:
    """`call()` until it answers: overload waited out without limit (`on_wait` each time), codes in `retry`
    tried again with backoff up to `max_attempts` in all; any other failure, or the last, raised."""
    attempts = 0
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            pause = overload_pause(exc)
            if pause is not None:
                on_wait()
                await asyncio.sleep(pause)
                continue
            attempts += 1
            if exc.code() in retry and attempts < max_attempts:
                await asyncio.sleep(min(MAX_PAUSE_S, 0.5 * 2**attempts))
                continue
            raise
