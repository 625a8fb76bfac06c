"""A job or file RPC on Redis that cannot reach it: JobsUnavailable (UNAVAILABLE, try again shortly), not an
unexpected error (UNKNOWN)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import RedisError

from ..errors import JobsUnavailable

__all__ = ["reachable"]

_P = ParamSpec("_P")
_T = TypeVar("_T")
# What a caller is told to wait before trying again: Redis back, or another replica answering.
RETRY_AFTER_S = 1.0


def reachable(method: Callable[_P, Coroutine[Any, Any, _T]]) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """`method`, with Redis's failures told as JobsUnavailable."""

    @functools.wraps(method)
    async def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await method(*args, **kwargs)
        except RedisError as exc:
            raise JobsUnavailable(
                f"the job store (Redis) cannot be reached now: {type(exc).__name__}: {exc}",
                retry_after_s=RETRY_AFTER_S,
            ) from exc

    return call
