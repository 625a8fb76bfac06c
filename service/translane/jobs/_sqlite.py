"""What the jobs' SQLite stores (jobs and lines, uploaded files) share: one connection each, every write one
transaction that a cancelled caller does not cut short, a file that falls back to memory when it cannot be
opened, and a close that waits for the write in flight."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import aiosqlite

__all__ = ["SqliteStore", "open_db"]

log = logging.getLogger("translane.jobs")

_T = TypeVar("_T")


class SqliteStore:
    """One SQLite connection whose writes are one transaction each, alone on it, finished even if their caller
    is cancelled mid-way; what is older than `keep_s` (wall seconds) is forgotten."""

    def __init__(
        self, db: aiosqlite.Connection, keep_s: float = math.inf, wall: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.keep_s = keep_s
        self.wall = wall
        self._lock = asyncio.Lock()

    def _kept_since(self) -> float:
        """What ended (or was made) before this wall time is forgotten."""
        return self.wall() - self.keep_s

    async def _locked(self, body: Callable[[], Awaitable[_T]]) -> _T:
        async with self._lock:
            try:
                out = await body()
                await self.db.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    await self.db.rollback()
                raise
            return out

    def _tx(self, body: Callable[[], Awaitable[_T]]) -> Awaitable[_T]:
        """Run `body` and commit, alone on the connection; a cancelled caller does not cut it short."""
        return asyncio.shield(self._locked(body))

    async def aclose(self) -> None:
        """Close the connection once the transaction a cancelled caller left running has ended."""
        async with self._lock:
            await self.db.close()


async def _connect(path: str, schema: Sequence[str]) -> aiosqlite.Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path)
    try:
        # WAL with synchronous=NORMAL: a commit survives a killed process (a power cut: up to the last checkpoint).
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        for statement in schema:
            await db.execute(statement)
        await db.commit()
    except BaseException:
        await db.close()
        raise
    return db


async def open_db(path: str, schema: Sequence[str], what: str) -> aiosqlite.Connection:
    """The SQLite file at `path` with `schema` made (":memory:": in memory, gone with the process); a file that
    cannot be opened falls back to memory, saying so (`what`: "jobs are", say, kept in memory only)."""
    try:
        return await _connect(path, schema)
    except (OSError, aiosqlite.Error) as exc:
        if path == ":memory:":
            raise
        log.warning("%s cannot be opened (%s): %s kept in memory only", path, exc, what)
        return await _connect(":memory:", schema)
