"""The choice of governor: the one the configuration asks for (in-process, or through Redis), opened and closed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from .config import Config
from .governor import Governor
from .redis_governor import RedisGovernor, connect

__all__ = ["open_governor"]


@contextlib.asynccontextmanager
async def open_governor(config: Config) -> AsyncIterator[Governor]:
    """The configured governor on the running loop's clock; a Redis one's client is closed on exit."""
    now = asyncio.get_running_loop().time()
    if config.governor.kind != "redis":
        yield Governor(config.models, config.governor, now)
        return
    shared = RedisGovernor(config.models, config.governor, now, connect(config.governor.redis_url))
    try:
        yield shared
    finally:
        await shared.aclose()
