"""Jobs and their lines in SQLite: what a restart needs to run every unfinished job on, each line once.

A line is `pending` until a runner claims it (`running`, committed before its call is sent), then `done`
or `failed` with its result, in one statement that only a `running` line passes: a line's result is
recorded once. An ended job and its lines are forgotten `keep_s` after it ended (not shown from then on,
deleted by `sweep`). A restart finds the lines a killed process left `running` and runs them again (their
calls may have been paid for: that, at most the job's concurrency of lines, is what a crash costs). The
store holds requests, results and the job's own fields as bytes the caller encodes; it knows no protobuf.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._sqlite import SqliteStore, open_db

__all__ = ["CANCELLED", "RUNNING", "SUCCEEDED", "JobRecord", "JobStore", "LineResult", "Progress", "open_store"]

log = logging.getLogger("translane.jobs")

# A job's states.
RUNNING = "running"
SUCCEEDED = "succeeded"
CANCELLED = "cancelled"
# A line's states.
PENDING = "pending"
CLAIMED = "running"
DONE = "done"
FAILED = "failed"


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
    "state TEXT NOT NULL, spec BLOB NOT NULL, window_s REAL NOT NULL, total INTEGER NOT NULL, "
    "done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, "
    "prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0, "
    "cost REAL NOT NULL DEFAULT 0, currency TEXT NOT NULL DEFAULT '', "
    "created REAL NOT NULL, updated REAL NOT NULL, ended REAL NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS lines (job TEXT NOT NULL, idx INTEGER NOT NULL, state TEXT NOT NULL, "
    "request BLOB NOT NULL, result BLOB, prompt_tokens INTEGER NOT NULL DEFAULT 0, "
    "completion_tokens INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0, currency TEXT NOT NULL DEFAULT '', "
    "PRIMARY KEY (job, idx)) WITHOUT ROWID",
)


@dataclass(slots=True)
class Progress:
    """A job's lines answered and failed, and what they cost, so far."""

    total: int
    done: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    currency: str = ""

    def add(self, ok: bool, prompt_tokens: int, completion_tokens: int, cost: float, currency: str) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost += cost
        self.currency = self.currency or currency


@dataclass(slots=True)
class JobRecord:
    """A job as stored: its id, state, the caller's fields (`spec`), its window and its progress."""

    id: str
    seq: int
    state: str
    spec: bytes
    window_s: float
    created: float
    updated: float
    ended: float
    progress: Progress = field(default_factory=lambda: Progress(0))


@dataclass(frozen=True, slots=True)
class LineResult:
    """One answered line: `ok` (done) or failed, its encoded result, and what it cost."""

    ok: bool
    result: bytes
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    currency: str = ""


class JobStore(SqliteStore):
    """Jobs and lines in one SQLite connection; each write is one transaction, finished even if its caller
    is cancelled mid-way (so a line's result and its job's counters are never split)."""

    async def create(self, job_id: str, spec: bytes, window_s: float, requests: Sequence[bytes], now: float) -> None:
        """Store a new job with every line pending."""

        async def body() -> None:
            await self.db.execute(
                "INSERT INTO jobs (id, state, spec, window_s, total, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, RUNNING, spec, window_s, len(requests), now, now),
            )
            await self.db.executemany(
                "INSERT INTO lines (job, idx, state, request) VALUES (?, ?, ?, ?)",
                ((job_id, i, PENDING, r) for i, r in enumerate(requests)),
            )

        await self._tx(body)

    async def recover(self) -> list[str]:
        """The unfinished jobs, oldest first, with the lines a killed process left running pending again."""

        async def body() -> list[str]:
            await self.db.execute(
                "UPDATE lines SET state = ? WHERE state = ? AND job IN (SELECT id FROM jobs WHERE state = ?)",
                (PENDING, CLAIMED, RUNNING),
            )
            async with self.db.execute("SELECT id FROM jobs WHERE state = ? ORDER BY seq", (RUNNING,)) as cur:
                return [str(row[0]) for row in await cur.fetchall()]

        return await self._tx(body)

    async def pending(self, job_id: str) -> list[int]:
        """The job's lines not yet claimed, in order."""
        async with self.db.execute(
            "SELECT idx FROM lines WHERE job = ? AND state = ? ORDER BY idx", (job_id, PENDING)
        ) as cur:
            return [int(row[0]) for row in await cur.fetchall()]

    async def claim(self, job_id: str, index: int) -> bytes | None:
        """Mark a pending line running (committed before its call goes) and return its request; None when it
        was not pending."""

        async def body() -> bytes | None:
            cur = await self.db.execute(
                "UPDATE lines SET state = ? WHERE job = ? AND idx = ? AND state = ?", (CLAIMED, job_id, index, PENDING)
            )
            if cur.rowcount != 1:
                return None
            async with self.db.execute("SELECT request FROM lines WHERE job = ? AND idx = ?", (job_id, index)) as c:
                row = await c.fetchone()
            return bytes(row[0]) if row is not None else None

        return await self._tx(body)

    async def finish(self, job_id: str, index: int, line: LineResult, now: float) -> bool:
        """Record a running line's result and count it on its job; False (nothing written) when the line was not
        running, so a result is recorded once."""

        async def body() -> bool:
            cur = await self.db.execute(
                "UPDATE lines SET state = ?, result = ?, prompt_tokens = ?, completion_tokens = ?, cost = ?, "
                "currency = ? WHERE job = ? AND idx = ? AND state = ?",
                (
                    DONE if line.ok else FAILED,
                    line.result,
                    line.prompt_tokens,
                    line.completion_tokens,
                    line.cost,
                    line.currency,
                    job_id,
                    index,
                    CLAIMED,
                ),
            )
            if cur.rowcount != 1:
                return False
            await self.db.execute(
                "UPDATE jobs SET done = done + ?, failed = failed + ?, prompt_tokens = prompt_tokens + ?, "
                "completion_tokens = completion_tokens + ?, cost = cost + ?, "
                "currency = CASE WHEN currency = '' THEN ? ELSE currency END, updated = ? WHERE id = ?",
                (
                    int(line.ok),
                    int(not line.ok),
                    line.prompt_tokens,
                    line.completion_tokens,
                    line.cost,
                    line.currency,
                    now,
                    job_id,
                ),
            )
            return True

        return await self._tx(body)

    async def release(self, job_id: str) -> None:
        """Put the job's running lines back to pending (their calls were stopped)."""

        async def body() -> None:
            await self.db.execute("UPDATE lines SET state = ? WHERE job = ? AND state = ?", (PENDING, job_id, CLAIMED))

        await self._tx(body)

    async def end(self, job_id: str, state: str, now: float) -> None:
        """Mark the job ended in `state` at `now`."""

        async def body() -> None:
            await self.db.execute(
                "UPDATE jobs SET state = ?, updated = ?, ended = ? WHERE id = ?", (state, now, now, job_id)
            )

        await self._tx(body)

    async def delete(self, job_id: str) -> bool:
        """Forget the job and its lines; False when there was no such job."""

        async def body() -> bool:
            cur = await self.db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            await self.db.execute("DELETE FROM lines WHERE job = ?", (job_id,))
            return cur.rowcount == 1

        return await self._tx(body)

    async def sweep(self) -> int:
        """Delete the jobs (and their lines) that ended more than `keep_s` ago; how many."""
        since = self._kept_since()

        async def body() -> int:
            await self.db.execute(
                "DELETE FROM lines WHERE job IN (SELECT id FROM jobs WHERE ended > 0 AND ended <= ?)", (since,)
            )
            cur = await self.db.execute("DELETE FROM jobs WHERE ended > 0 AND ended <= ?", (since,))
            return max(0, cur.rowcount)

        return await self._tx(body)

    _COLUMNS = (
        "id, seq, state, spec, window_s, created, updated, ended, total, done, failed, prompt_tokens, "
        "completion_tokens, cost, currency"
    )

    @staticmethod
    def _record(row: Any) -> JobRecord:
        job_id, seq, state, spec, window_s, created, updated, ended, total, done, failed, *usage = row
        prompt, completion, cost, currency = usage
        return JobRecord(
            job_id,
            seq,
            state,
            bytes(spec),
            window_s,
            created,
            updated,
            ended,
            Progress(total, done, failed, prompt, completion, cost, currency),
        )

    async def get(self, job_id: str) -> JobRecord | None:
        async with self.db.execute(
            f"SELECT {self._COLUMNS} FROM jobs WHERE id = ? AND (ended = 0 OR ended > ?)", (job_id, self._kept_since())
        ) as cur:
            row = await cur.fetchone()
        return self._record(row) if row is not None else None

    async def page(self, after_seq: int, limit: int) -> list[JobRecord]:
        """Up to `limit` jobs created after the one numbered `after_seq`, oldest first."""
        async with self.db.execute(
            f"SELECT {self._COLUMNS} FROM jobs WHERE seq > ? AND (ended = 0 OR ended > ?) ORDER BY seq LIMIT ?",
            (after_seq, self._kept_since(), limit),
        ) as cur:
            return [self._record(row) for row in await cur.fetchall()]

    async def results(self, job_id: str) -> list[tuple[int, bool, bytes]]:
        """The job's answered lines as (index, ok, result), in order."""
        async with self.db.execute(
            "SELECT idx, state, result FROM lines WHERE job = ? AND state IN (?, ?) ORDER BY idx",
            (job_id, DONE, FAILED),
        ) as cur:
            return [(int(i), s == DONE, bytes(r)) for i, s, r in await cur.fetchall()]

    async def line_states(self, job_id: str) -> dict[str, int]:
        """How many of the job's lines are in each state."""
        async with self.db.execute("SELECT state, count(*) FROM lines WHERE job = ? GROUP BY state", (job_id,)) as cur:
            return {str(s): int(n) for s, n in await cur.fetchall()}


@contextlib.asynccontextmanager
async def open_store(path: str, keep_s: float = math.inf) -> AsyncIterator[JobStore]:
    """The job store in the SQLite file at `path` (":memory:": in memory, gone with the process), keeping ended
    jobs `keep_s`; a file that cannot be opened falls back to memory, saying so."""
    store = JobStore(await open_db(path, _SCHEMA, "jobs are"), keep_s)
    try:
        yield store
    finally:
        await store.aclose()
