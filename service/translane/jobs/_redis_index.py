"""What the jobs' Redis stores (jobs, uploaded files) share: an index of records by their number, paged in order,
the records that expired meanwhile dropped from it as they are met."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["page_index", "text"]

_R = TypeVar("_R")


def text(value: Any) -> str:
    """A value read from Redis as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


async def page_index(
    client: Any,  # redis.asyncio.Redis (its stubs type replies loosely)
    index: str,
    after_seq: int,
    limit: int,
    key_of: Callable[[str], str],
    record: Callable[[dict[bytes, bytes]], _R | None],
) -> list[_R]:
    """Up to `limit` records numbered after `after_seq` in the sorted set `index` (id → number), oldest first: each
    read from the hash `key_of(id)`; one that `record` finds gone (its keys expired) leaves the index."""
    out: list[_R] = []
    while len(out) < limit:
        found = await client.zrangebyscore(
            index, f"({after_seq}", "+inf", start=0, num=limit - len(out), withscores=True
        )
        if not found:
            break
        async with client.pipeline(transaction=False) as pipe:
            for raw_id, _ in found:
                pipe.hgetall(key_of(text(raw_id)))
            got = await pipe.execute()
        for (raw_id, _), raw in zip(found, got, strict=True):
            item = record(raw)
            if item is None:
                await client.zrem(index, raw_id)
            else:
                out.append(item)
        after_seq = int(found[-1][1])
    return out
