"""The segment cache: a translation once paid for is never paid for again.

An in-process LRU sits in front of an optional SQLite file (so a restart or a rerun
does not pay again). Keys hash everything that shapes a translation: the model and
how it is prompted, the languages, the glossary, the mime type and the NFC-normalised
text. Only complete, successful translations are written (the engine's business).
Identical segments in flight at the same moment are translated once (`Flights`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import unicodedata
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import aiosqlite

from .config import CacheConfig, ModelConfig

__all__ = ["CACHE_VERSION", "Entry", "Flights", "SegmentCache", "cache_key", "open_cache"]

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


class SegmentCache:
    """LRU in memory; with a SQLite connection, every entry is also on disk."""

    def __init__(self, max_entries: int, db: aiosqlite.Connection | None = None) -> None:
        self.max_entries = max_entries
        self._lru: OrderedDict[str, Entry] = OrderedDict()
        self._db = db

    async def get(self, key: str, ttl_s: float) -> Entry | None:
        entry = self._lru.get(key)
        if entry is None and self._db is not None:
            async with self._db.execute(
                "SELECT text, model, prompt_tokens, completion_tokens, created FROM segments WHERE key = ?", (key,)
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                entry = Entry(*row)
                self._remember(key, entry)
        if entry is None:
            return None
        if ttl_s and time.time() - entry.created > ttl_s:
            self._lru.pop(key, None)
            return None
        self._lru.move_to_end(key)
        return entry

    async def put(self, key: str, entry: Entry) -> None:
        self._remember(key, entry)
        if self._db is not None:
            await self._db.execute(
                "INSERT OR REPLACE INTO segments (key, text, model, prompt_tokens, completion_tokens, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, entry.text, entry.model, entry.prompt_tokens, entry.completion_tokens, entry.created),
            )
            await self._db.commit()

    def _remember(self, key: str, entry: Entry) -> None:
        self._lru[key] = entry
        self._lru.move_to_end(key)
        while len(self._lru) > self.max_entries:
            self._lru.popitem(last=False)


class Flights(Generic[T]):
    """Identical work in flight at once runs once: later callers wait for the first one's result."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[T]] = {}

    async def join(self, key: str, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """(`work()`'s result, whether it was shared from another caller). A leader that fails or is
        cancelled hands its failure to no one: followers then run the work themselves."""
        while (running := self._running.get(key)) is not None:
            try:
                return await asyncio.shield(running), True
            except asyncio.CancelledError:
                if not running.cancelled():
                    raise  # we were cancelled, not the leader
            except Exception:
                pass  # the leader failed: try ourselves
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
async def open_cache(cfg: CacheConfig) -> AsyncIterator[SegmentCache | None]:
    """The configured cache (None when off); a SQLite file that cannot be opened falls back to memory."""
    if cfg.kind == "off":
        yield None
        return
    db: aiosqlite.Connection | None = None
    if cfg.kind == "sqlite":
        try:
            db = await _sqlite(cfg.path)
        except (OSError, aiosqlite.Error) as exc:
            log.warning("cache file %s cannot be opened (%s): caching in memory only", cfg.path, exc)
    try:
        yield SegmentCache(cfg.max_entries, db)
    finally:
        if db is not None:
            await db.close()
