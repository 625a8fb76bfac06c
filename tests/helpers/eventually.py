"""Waiting for background state: poll a condition with a bound, and fail naming what was awaited once it passes."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

__all__ = ["eventually", "eventually_sync"]

T = TypeVar("T")

# What was awaited, for the failure: a phrase, or a function that describes the state when the bound passes.
What = str | Callable[[], str]


@overload
async def eventually(
    condition: Callable[[], Awaitable[T | None]],
    timeout_s: float,
    what: What,
    *,
    interval_s: float = ...,
    ignoring: tuple[type[Exception], ...] = ...,
) -> T: ...


@overload
async def eventually(
    condition: Callable[[], T | None],
    timeout_s: float,
    what: What,
    *,
    interval_s: float = ...,
    ignoring: tuple[type[Exception], ...] = ...,
) -> T: ...


async def eventually(
    condition: Callable[[], object],
    timeout_s: float,
    what: What,
    *,
    interval_s: float = 0.01,
    ignoring: tuple[type[Exception], ...] = (),
) -> object:
    """The first true value of `condition()` (awaited when it returns an awaitable), tried every `interval_s`;
    AssertionError naming `what` once `timeout_s` passes without one. An exception of a type in `ignoring`
    counts as "not yet"; any other ends the wait."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            got = condition()
            if inspect.isawaitable(got):
                got = await got
        except ignoring as exc:
            got = exc
        else:
            if got:
                return got
        if loop.time() >= deadline:
            raise _not_reached(what, timeout_s, got)
        await asyncio.sleep(interval_s)


def eventually_sync(
    condition: Callable[[], T | None],
    timeout_s: float,
    what: What,
    *,
    interval_s: float = 0.05,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """`eventually` for a test that blocks (threads, child processes, no event loop): sleeps between tries."""
    deadline = time.monotonic() + timeout_s
    while True:
        last: object
        try:
            last = got = condition()
        except ignoring as exc:
            last = exc
        else:
            if got is not None and got:
                return got
        if time.monotonic() >= deadline:
            raise _not_reached(what, timeout_s, last)
        time.sleep(interval_s)


def _not_reached(what: What, timeout_s: float, last: object) -> AssertionError:
    described = what() if callable(what) else what
    message = f"not reached in {timeout_s:g} s: {described}"
    if isinstance(last, BaseException):
        error = AssertionError(f"{message} (last try: {type(last).__name__}: {last})")
        error.__cause__ = last
        return error
    if last is not None and last is not False:
        message += f" (last: {last!r})"
    return AssertionError(message)
