"""The segment cache: a translation once paid for is never paid for again.

An in-process LRU sits in front of an optional store: a SQLite file (so a restart or a
rerun does not pay again), or Redis when the governor is shared there (one cache for
every replica). Keys hash everything that shapes a translation: the model and
how it is prompted, the languages, the glossary, the mime type and the NFC-normalised
text. Only complete, successful translations are written (the engine's business).
Identical segments in flight at the same moment are translated once (`Flights`).
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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import aiosqlite
import redis.asyncio as aioredis

from .config import CacheConfig, GovernorConfig, ModelConfig
from .redis_governor import connect

__all__ = ["CACHE_VERSION", "Entry", "Flights", "RedisStore", "SegmentCache", "SqliteStore", "cache_key", "open_cache"]

log = logging.getLogger("translane.cache")

T = TypeVar("T")

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

    async def load(self, key: str) -> Entry | None: ...

    async def save(self, key: str, entry: Entry, ttl_s: float) -> None: ...


class SqliteStore:
    """Entries in a SQLite file: a restart or a rerun does not pay again."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def load(self, key: str) -> Entry | None:
        async with self.db.execute(
            "SELECT text, model, prompt_tokens, completion_tokens, created FROM segments WHERE key = ?", (key,)
        ) as cur:
            row = await cur.fetchone()
        return Entry(*row) if row is not None else None

    async def save(self, key: str, entry: Entry, ttl_s: float) -> None:
        await self.db.execute(
            "INSERT OR REPLACE INTO segments (key, text, model, prompt_tokens, completion_tokens, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (key, entry.text, entry.model, entry.prompt_tokens, entry.completion_tokens, entry.created),
        )
        await self.db.commit()


class RedisStore:
    """Entries in Redis, one cache for every replica (when the governor is shared there too)."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    async def load(self, key: str) -> Entry | None:
        raw = await self.client.get(f"{self.prefix}:seg:{key}")
        if raw is None:
            return None
        data = json.loads(raw)
        return Entry(data["text"], data["model"], data["prompt_tokens"], data["completion_tokens"], data["created"])

    async def save(self, key: str, entry: Entry, ttl_s: float) -> None:
        value = json.dumps(dataclasses.asdict(entry), ensure_ascii=False)
        await self.client.set(f"{self.prefix}:seg:{key}", value, ex=max(1, math.ceil(ttl_s)) if ttl_s else None)


# After a store fails, how long the cache runs on its LRU alone before trying the store again.
STORE_PAUSE_S = 5.0


class SegmentCache:
    """LRU in memory in front of an optional store (SQLite or Redis).

    A store that fails is skipped for STORE_PAUSE_S, so an outage costs one failed call, not one per
    segment: the cache then answers from memory and translations go on at full speed.
    """

    def __init__(self, max_entries: int, store: Store | None = None) -> None:
        self.max_entries = max_entries
        self._lru: OrderedDict[str, Entry] = OrderedDict()
        self._store = store
        self._store_down_until = 0.0

    def _store_up(self) -> bool:
        return self._store is not None and time.monotonic() >= self._store_down_until

    def _store_failed(self, doing: str, exc: BaseException) -> None:
        if time.monotonic() >= self._store_down_until:
            log.warning("segment cache %s failed (%s): memory only for %.0fs", doing, exc, STORE_PAUSE_S)
        self._store_down_until = time.monotonic() + STORE_PAUSE_S

    async def get(self, key: str, ttl_s: float) -> Entry | None:
        entry = self._lru.get(key)
        if entry is None and self._store is not None and self._store_up():
            try:
                entry = await self._store.load(key)
            except Exception as exc:  # an unreachable store is a miss, never a failed translation
                self._store_failed("read", exc)
            if entry is not None:
                self._remember(key, entry)
        if entry is None:
            return None
        if ttl_s and time.time() - entry.created > ttl_s:
            self._lru.pop(key, None)
            return None
        self._lru.move_to_end(key)
        return entry

    async def put(self, key: str, entry: Entry, ttl_s: float = 0.0) -> None:
        self._remember(key, entry)
        if self._store is not None and self._store_up():
            try:
                await self._store.save(key, entry, ttl_s)
            except Exception as exc:
                self._store_failed("write", exc)

    def _remember(self, key: str, entry: Entry) -> None:
        self._lru[key] = entry
        self._lru.move_to_end(key)
        while len(self._lru) > self.max_entries:
            self._lru.popitem(last=False)


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


async def _sqlite(path: str) -> aiosqlite.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute(
        "CREATE TABLE IF NOT EXISTS segments (key TEXT PRIMARY KEY, text TEXT NOT NULL, model TEXT NOT NULL, "
        "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, created REAL NOT NULL)"
    )
    await db.commit()
    return db


@contextlib.asynccontextmanager
async def open_cache(cfg: CacheConfig, governor: GovernorConfig | None = None) -> AsyncIterator[SegmentCache | None]:
    """The configured cache (None when off). With a shared (Redis) governor the entries live in the same Redis,
    one cache for all replicas; a SQLite file that cannot be opened falls back to memory."""
    if cfg.kind == "off":
        yield None
        return
    if governor is not None and governor.kind == "redis" and cfg.kind != "memory":
        client = connect(governor.redis_url)
        try:
            yield SegmentCache(cfg.max_entries, RedisStore(client, f"{{{governor.redis_prefix}}}:cache"))
        finally:
            await client.aclose()
        return
    db: aiosqlite.Connection | None = None
    if cfg.kind == "sqlite":
        try:
            db = await _sqlite(cfg.path)
        except (OSError, aiosqlite.Error) as exc:
            log.warning("cache file %s cannot be opened (%s): caching in memory only", cfg.path, exc)
    try:
        yield SegmentCache(cfg.max_entries, SqliteStore(db) if db is not None else None)
    finally:
        if db is not None:
            await db.close()
