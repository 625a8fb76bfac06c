"""The segment cache: a translation once paid for is never paid for again.

An in-process LRU sits in front of an optional store: a SQLite file (so a restart or a
rerun does not pay again), or Redis when the governor is shared there (one cache for
every replica). Keys hash everything that shapes a translation: the model and
how it is prompted, the languages, the glossary, the mime type and the NFC-normalised
text. Only complete, successful translations are written (the engine's business).
Writes go behind the reply, in batches (`SegmentCache.put`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import time
import unicodedata
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiosqlite
import redis.asyncio as aioredis

from .config import CacheConfig, GovernorConfig, ModelConfig
from .redis_governor import connect

__all__ = ["CACHE_VERSION", "Entry", "RedisStore", "SegmentCache", "SqliteStore", "cache_key", "open_cache"]

log = logging.getLogger("translane.cache")


# Bump when the prompt or the request shape changes what a model answers: old entries then miss.
CACHE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached translation and what it cost when it was paid for."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    created: float


def cache_key(
    model: ModelConfig,
    source: str,
    target: str,
    glossary: tuple[tuple[str, str], ...],
    mime_type: str,
    text: str,
) -> str:
    """The key of one segment's translation by `model`."""
    parts = [
        CACHE_VERSION,
        model.wire_name,
        model.api_style,
        model.reasoning,
        dict(model.extra_body),
        source,
        target,
        [list(g) for g in glossary],
        mime_type,
        unicodedata.normalize("NFC", text),
    ]
    raw = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class Store(Protocol):
    """Where entries live behind the in-process LRU."""

    def may_hold(self, key: str) -> bool:
        """False only when the store certainly lacks `key` (a miss that costs no I/O)."""
        ...

    async def load(self, key: str) -> Entry | None: ...

    async def save_many(self, entries: list[tuple[str, Entry, float]]) -> None:
        """Write (key, entry, ttl_s) triples at once."""
        ...


def _short(key: str) -> int:
    """The first 64 bits of a key (a sha256 hex digest): what the SQLite index keeps in memory."""
    return int(key[:16], 16)


class SqliteStore:
    """Entries in a SQLite file: a restart or a rerun does not pay again. An index of the keys the file holds
    (their first 64 bits: ~70 bytes of memory an entry) answers most misses without reading the file. The
    file is the service's own: entries another process writes to it after this one opened it are seen
    after the next start (until then such a segment is a miss, paid for again, never a wrong answer)."""

    def __init__(self, db: aiosqlite.Connection, keys: set[int]) -> None:
        self.db = db
        self._keys = keys

    def may_hold(self, key: str) -> bool:
        return _short(key) in self._keys

    async def load(self, key: str) -> Entry | None:
        async with self.db.execute(
            "SELECT text, model, prompt_tokens, completion_tokens, created FROM segments WHERE key = ?", (key,)
        ) as cur:
            row = await cur.fetchone()
        return Entry(*row) if row is not None else None

    async def save_many(self, entries: list[tuple[str, Entry, float]]) -> None:
        # One transaction for the batch: one commit (WAL, synchronous=NORMAL) however many entries.
        try:
            await self.db.executemany(
                "INSERT OR REPLACE INTO segments (key, text, model, prompt_tokens, completion_tokens, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(k, e.text, e.model, e.prompt_tokens, e.completion_tokens, e.created) for k, e, _ in entries],
            )
            await self.db.commit()
        except BaseException:
            # Nothing of a failed batch stays half-written for the next batch's commit to carry along.
            with contextlib.suppress(Exception):
                await self.db.rollback()
            raise
        self._keys.update(_short(k) for k, _, _ in entries)


class RedisStore:
    """Entries in Redis, one cache for every replica (when the governor is shared there too)."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def may_hold(self, key: str) -> bool:
        return True  # other replicas write too: only Redis knows

    async def load(self, key: str) -> Entry | None:
        raw = await self.client.get(f"{self.prefix}:seg:{key}")
        if raw is None:
            return None
        data = json.loads(raw)
        return Entry(data["text"], data["model"], data["prompt_tokens"], data["completion_tokens"], data["created"])

    async def save_many(self, entries: list[tuple[str, Entry, float]]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for key, entry, ttl_s in entries:
                value = json.dumps(dataclasses.asdict(entry), ensure_ascii=False)
                pipe.set(f"{self.prefix}:seg:{key}", value, ex=max(1, math.ceil(ttl_s)) if ttl_s else None)
            await pipe.execute()


# After a store fails, how long the cache runs on its LRU alone before trying the store again.
STORE_PAUSE_S = 5.0


class SegmentCache:
    """LRU in memory in front of an optional store (SQLite or Redis), written behind the reply.

    `put` costs the caller no I/O: the entry goes to memory at once and to the store in the next batch,
    `flush_s` later or as soon as `flush_entries` wait, one transaction a batch; `aclose` writes what is left.
    A process killed without closing loses at most the entries put in the last `flush_s` and the batch
    being written, never a translation already returned (it was paid for; a later request pays again).
    A store that fails is skipped for STORE_PAUSE_S, so an outage costs one failed call, not one per
    segment: the cache then answers from memory and translations go on at full speed.
    """

    def __init__(
        self, max_entries: int, store: Store | None = None, *, flush_s: float = 0.25, flush_entries: int = 512
    ) -> None:
        self.max_entries = max_entries
        self.flush_s = flush_s
        self.flush_entries = flush_entries
        self._lru: OrderedDict[str, Entry] = OrderedDict()
        self._store = store
        self._store_down_until = 0.0
        # Put and not yet handed to the store, by key (with its ttl_s).
        self._pending: dict[str, tuple[Entry, float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None

    def _store_up(self) -> bool:
        return self._store is not None and time.monotonic() >= self._store_down_until

    def _store_failed(self, doing: str, exc: BaseException) -> None:
        if time.monotonic() >= self._store_down_until:
            log.warning("segment cache %s failed (%s): memory only for %.0fs", doing, exc, STORE_PAUSE_S)
        self._store_down_until = time.monotonic() + STORE_PAUSE_S

    async def get(self, key: str, ttl_s: float) -> Entry | None:
        entry = self._lru.get(key)
        if entry is None:
            pending = self._pending.get(key)
            if pending is not None:
                entry = pending[0]
            elif self._store is not None and self._store_up() and self._store.may_hold(key):
                try:
                    entry = await self._store.load(key)
                except Exception as exc:  # an unreachable store is a miss, never a failed translation
                    self._store_failed("read", exc)
            if entry is None:
                return None
            self._remember(key, entry)
        if ttl_s and time.time() - entry.created > ttl_s:
            self._lru.pop(key, None)
            return None
        self._lru.move_to_end(key)
        return entry

    def put(self, key: str, entry: Entry, ttl_s: float = 0.0) -> None:
        """Keep `entry` now in memory, and in the store with the next batch."""
        self._remember(key, entry)
        if self._store is None or not self._store_up():
            return
        self._pending[key] = (entry, ttl_s)
        if len(self._pending) >= self.flush_entries:
            self._flush_soon()
        elif self._timer is None and self._writing is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_s, self._flush_soon)

    def _flush_soon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writing is None and self._pending:
            self._writing = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        try:
            while self._pending:
                batch = [(k, e, ttl) for k, (e, ttl) in self._pending.items()]
                self._pending = {}
                assert self._store is not None
                try:
                    await self._store.save_many(batch)
                except Exception as exc:  # memory still has them; the store is skipped for a while
                    self._store_failed("write", exc)
                    return
                if len(self._pending) < self.flush_entries:
                    break  # the rest waits for the timer
        finally:
            self._writing = None
            if self._pending and self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self.flush_s, self._flush_soon)

    async def flush(self) -> None:
        """Write every pending entry now (and wait for a batch already being written)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._writing is not None or self._pending:
            if self._writing is None:
                self._writing = asyncio.get_running_loop().create_task(self._write())
            await asyncio.shield(self._writing)
            if self._pending and not self._store_up():
                self._pending.clear()  # the store is down: nothing more to do
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _remember(self, key: str, entry: Entry) -> None:
        self._lru[key] = entry
        self._lru.move_to_end(key)
        while len(self._lru) > self.max_entries:
            self._lru.popitem(last=False)


async def _sqlite(path: str) -> tuple[aiosqlite.Connection, set[int]]:
    """The file opened for write-behind (WAL; synchronous=NORMAL: a commit is durable against a killed process,
    and against a power cut up to the last checkpoint), and the index of the keys it holds."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path)
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute(
            "CREATE TABLE IF NOT EXISTS segments (key TEXT PRIMARY KEY, text TEXT NOT NULL, model TEXT NOT NULL, "
            "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, created REAL NOT NULL)"
        )
        await db.commit()
        keys: set[int] = set()
        async with db.execute("SELECT key FROM segments") as cur:
            while rows := await cur.fetchmany(10_000):  # the index alone in memory, never every key at once
                keys.update(_short(row[0]) for row in rows)
    except BaseException:
        await db.close()
        raise
    return db, keys


@contextlib.asynccontextmanager
async def open_cache(cfg: CacheConfig, governor: GovernorConfig | None = None) -> AsyncIterator[SegmentCache | None]:
    """The configured cache (None when off). With a shared (Redis) governor the entries live in the same Redis,
    one cache for all replicas; a SQLite file that cannot be opened falls back to memory."""
    if cfg.kind == "off":
        yield None
        return
    if governor is not None and governor.kind == "redis" and cfg.kind != "memory":
        client = connect(governor.redis_url)
        # Other replicas look for what this one paid for: written at once, still behind the reply.
        redis_store = RedisStore(client, f"{{{governor.redis_prefix}}}:cache")
        shared = SegmentCache(cfg.max_entries, redis_store, flush_s=0.0, flush_entries=cfg.flush_entries)
        try:
            yield shared
        finally:
            try:
                await shared.flush()
            finally:
                await client.aclose()
        return
    db: aiosqlite.Connection | None = None
    store: SqliteStore | None = None
    if cfg.kind == "sqlite":
        try:
            db, keys = await _sqlite(cfg.path)
            store = SqliteStore(db, keys)
        except (OSError, aiosqlite.Error) as exc:
            log.warning("cache file %s cannot be opened (%s): caching in memory only", cfg.path, exc)
    cache = SegmentCache(cfg.max_entries, store, flush_s=cfg.flush_s, flush_entries=cfg.flush_entries)
    try:
        yield cache
    finally:
        try:
            await cache.flush()
        finally:
            if db is not None:
                await db.close()
