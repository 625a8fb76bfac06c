"""Files of requests (UploadFile) in SQLite, beside the jobs: each file's fields and its requests, one row a line.

A file is written whole in one transaction once its upload has been read to the end and every line checked
(a refused or abandoned upload leaves nothing), and is forgotten `keep_s` after it was uploaded (not shown
from then on, deleted by the sweep at start and at each upload). Like the job store it holds the requests
as bytes the caller encodes and knows no protobuf; whose a file is (its tenant) is the caller's to judge.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ._sqlite import SqliteStore, open_db

__all__ = ["FileRecord", "FileStore", "open_file_store"]

log = logging.getLogger("translane.jobs")


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS files (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
    "tenant TEXT NOT NULL, filename TEXT NOT NULL, purpose TEXT NOT NULL, size_bytes INTEGER NOT NULL, "
    "count INTEGER NOT NULL, created REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS files_created ON files (created)",
    "CREATE TABLE IF NOT EXISTS file_lines (file TEXT NOT NULL, idx INTEGER NOT NULL, request BLOB NOT NULL, "
    "PRIMARY KEY (file, idx))",
)


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A stored file: its id, the tenant that uploaded it, its name and purpose, its size and lines, when it
    was uploaded and when it is forgotten; `seq` orders files for paging (set by the store)."""

    id: str
    tenant: str
    filename: str
    purpose: str
    size_bytes: int
    count: int
    created: float
    expires: float = math.inf
    seq: int = 0


class FileStore(SqliteStore):
    """Files in one SQLite connection; each write one transaction, finished even if its caller is cancelled."""

    async def put(self, record: FileRecord, requests: Sequence[bytes]) -> FileRecord:
        """Store a file and its requests (in order); the record as stored (its seq and expiry). Files past their
        keep go first."""
        since = self._kept_since()

        async def body() -> int:
            await self._sweep(since)
            cur = await self.db.execute(
                "INSERT INTO files (id, tenant, filename, purpose, size_bytes, count, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.tenant,
                    record.filename,
                    record.purpose,
                    record.size_bytes,
                    record.count,
                    record.created,
                ),
            )
            await self.db.executemany(
                "INSERT INTO file_lines (file, idx, request) VALUES (?, ?, ?)",
                ((record.id, i, r) for i, r in enumerate(requests)),
            )
            return int(cur.lastrowid or 0)

        seq = await self._tx(body)
        return replace(record, seq=seq, expires=record.created + self.keep_s)

    async def _sweep(self, since: float) -> int:
        await self.db.execute(
            "DELETE FROM file_lines WHERE file IN (SELECT id FROM files WHERE created <= ?)", (since,)
        )
        cur = await self.db.execute("DELETE FROM files WHERE created <= ?", (since,))
        return max(0, cur.rowcount)

    async def sweep(self) -> int:
        """Delete the files uploaded more than `keep_s` ago; how many."""
        since = self._kept_since()
        return await self._tx(lambda: self._sweep(since))

    _COLUMNS = "id, tenant, filename, purpose, size_bytes, count, created, seq"

    def _record(self, row: Any) -> FileRecord:
        file_id, tenant, filename, purpose, size, count, created, seq = row
        return FileRecord(file_id, tenant, filename, purpose, size, count, created, created + self.keep_s, seq)

    async def get(self, file_id: str) -> FileRecord | None:
        async with self.db.execute(
            f"SELECT {self._COLUMNS} FROM files WHERE id = ? AND created > ?", (file_id, self._kept_since())
        ) as cur:
            row = await cur.fetchone()
        return self._record(row) if row is not None else None

    async def requests(self, file_id: str) -> list[bytes] | None:
        """The file's requests in order; None when there is no such file (or it expired)."""
        if await self.get(file_id) is None:
            return None
        async with self.db.execute("SELECT request FROM file_lines WHERE file = ? ORDER BY idx", (file_id,)) as cur:
            return [bytes(row[0]) for row in await cur.fetchall()]

    async def page(self, after_seq: int, limit: int) -> list[FileRecord]:
        """Up to `limit` files uploaded after the one numbered `after_seq`, oldest first."""
        async with self.db.execute(
            f"SELECT {self._COLUMNS} FROM files WHERE seq > ? AND created > ? ORDER BY seq LIMIT ?",
            (after_seq, self._kept_since(), limit),
        ) as cur:
            return [self._record(row) for row in await cur.fetchall()]

    async def delete(self, file_id: str) -> bool:
        """Forget the file and its requests; False when there was no such file."""

        async def body() -> bool:
            cur = await self.db.execute("DELETE FROM files WHERE id = ?", (file_id,))
            await self.db.execute("DELETE FROM file_lines WHERE file = ?", (file_id,))
            return cur.rowcount == 1

        return await self._tx(body)


@contextlib.asynccontextmanager
async def open_file_store(path: str, keep_s: float = math.inf) -> AsyncIterator[FileStore]:
    """The file store in the SQLite file at `path` (":memory:": in memory), keeping a file `keep_s` after its
    upload (those past it deleted now); a file that cannot be opened falls back to memory, saying so."""
    store = FileStore(await open_db(path, _SCHEMA, "uploaded files are"), keep_s)
    try:
        if swept := await store.sweep():
            log.info("forgot %d file(s) uploaded more than %.0fs ago", swept, keep_s)
        yield store
    finally:
        await store.aclose()
