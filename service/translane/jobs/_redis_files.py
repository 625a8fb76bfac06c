"""Files of requests (UploadFile) in Redis beside the shared jobs, so a job any replica takes may come from a
file another replica took: a file's fields in one hash, its requests in another (line index -> bytes), both
written in one transaction and expiring `keep_s` after the upload; an index (a sorted set by upload number)
pages through them. Every key shares the `{prefix}` hash tag, as the jobs' do.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis

from ._files import FileRecord
from ._reachable import reachable
from ._redis_index import page_index, text

__all__ = ["RedisFileStore", "open_redis_file_store"]

# Requests go to Redis this many to a command (one transaction still).
_FIELDS_PER_COMMAND = 5000


class RedisFileStore:
    """The files under `{prefix}:files:` on `client`; each kept `keep_s` after its upload."""

    def __init__(self, client: aioredis.Redis, prefix: str, keep_s: float) -> None:
        # redis-py's replies are typed as unions of what every decoding could give; this client answers bytes.
        self.client: Any = client
        self.base = f"{{{prefix}}}:files:"
        self.keep_s = keep_s

    def _keys(self, file_id: str) -> tuple[str, str]:
        """The file's fields, its requests."""
        return self.base + "file:" + file_id, self.base + "req:" + file_id

    @reachable
    async def put(self, record: FileRecord, requests: Sequence[bytes]) -> FileRecord:
        """Store a file and its requests (in order) in one transaction; the record as stored."""
        seq = int(await self.client.incr(self.base + "seq"))
        stored = replace(record, seq=seq, expires=record.created + self.keep_s)
        meta, req = self._keys(record.id)
        fields = {
            "id": stored.id,
            "tenant": stored.tenant,
            "filename": stored.filename,
            "purpose": stored.purpose,
            "size_bytes": stored.size_bytes,
            "count": stored.count,
            "created": repr(stored.created),
            "seq": seq,
        }
        async with self.client.pipeline(transaction=True) as pipe:
            for start in range(0, len(requests), _FIELDS_PER_COMMAND):
                part = requests[start : start + _FIELDS_PER_COMMAND]
                pipe.hset(req, mapping={str(start + i): r for i, r in enumerate(part)})
            pipe.hset(meta, mapping=fields)
            pipe.zadd(self.base + "index", {stored.id: seq})
            if math.isfinite(self.keep_s):
                at_ms = int(stored.expires * 1000)
                pipe.pexpireat(meta, at_ms)
                pipe.pexpireat(req, at_ms)
            await pipe.execute()
        return stored

    def _record(self, raw: dict[bytes, bytes]) -> FileRecord | None:
        if not raw:
            return None
        f = {text(k): v for k, v in raw.items()}
        created = float(f["created"])
        return FileRecord(
            text(f["id"]),
            text(f["tenant"]),
            text(f["filename"]),
            text(f["purpose"]),
            int(f["size_bytes"]),
            int(f["count"]),
            created,
            created + self.keep_s,
            int(f["seq"]),
        )

    @reachable
    async def get(self, file_id: str) -> FileRecord | None:
        return self._record(await self.client.hgetall(self._keys(file_id)[0]))

    @reachable
    async def requests(self, file_id: str) -> list[bytes] | None:
        """The file's requests in order; None when there is no such file (or it expired)."""
        record = await self.get(file_id)
        if record is None:
            return None
        got = await self.client.hmget(self._keys(file_id)[1], [str(i) for i in range(record.count)])
        if any(r is None for r in got):
            return None  # it expired between the two reads
        return [bytes(r) for r in got]

    @reachable
    async def page(self, after_seq: int, limit: int) -> list[FileRecord]:
        """Up to `limit` files uploaded after the one numbered `after_seq`, oldest first (expired ones leave the
        index as they are met)."""
        return await page_index(
            self.client, self.base + "index", after_seq, limit, lambda ident: self._keys(ident)[0], self._record
        )

    @reachable
    async def delete(self, file_id: str) -> bool:
        """Forget the file and its requests; False when there was no such file."""
        meta, req = self._keys(file_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(meta, req)
            pipe.zrem(self.base + "index", file_id)
            deleted, _ = await pipe.execute()
        return int(deleted) > 0


@contextlib.asynccontextmanager
async def open_redis_file_store(redis_url: str, prefix: str, keep_s: float) -> AsyncIterator[RedisFileStore]:
    """The files in the Redis at `redis_url` under `prefix`, each kept `keep_s` after its upload."""
    client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2)
    try:
        yield RedisFileStore(client, prefix, keep_s)
    finally:
        await client.aclose()
