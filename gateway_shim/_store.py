"""Where the Files + Batches API keeps its state: file bytes in a directory, files, batches and lines in SQLite.

One `Store` per shim, opened at start and closed at stop. Each change is one commit (WAL), so a shim that is
killed and started again on the same directory finds every file and batch as it left them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BatchRow", "FileRow", "LineRow", "Store", "new_id"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    -- When the file is forgotten (unix seconds); NULL: kept until deleted.
    expires_at INTEGER,
    -- The tenant whose file it is ('' without tenants): no other sees it.
    owner TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS files_expiry ON files (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    -- The Batch object as last shown (JSON); `operations` the service's operation names (JSON list).
    object TEXT NOT NULL,
    operations TEXT NOT NULL,
    -- How long its output and error files are kept, in seconds.
    output_keep_s INTEGER,
    -- The tenant whose batch it is ('' without tenants): no other sees it, its result files are that tenant's.
    owner TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS lines (
    batch TEXT NOT NULL,
    line INTEGER NOT NULL,
    custom_id TEXT,
    -- The line's place in the service's jobs: operations[op], request idx; op = -1 for a line answered here.
    op INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    -- The chat request body (JSON) to render the answer with, or the error (JSON) the line failed with.
    body TEXT,
    error TEXT,
    PRIMARY KEY (batch, line)
);
"""


def new_id(prefix: str) -> str:
    """A fresh object id such as `file-3f...` or `batch_9a...`."""
    return f"{prefix}{secrets.token_hex(12)}"


@dataclass(frozen=True, slots=True)
class FileRow:
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    expires_at: int | None = None

    def object(self) -> dict[str, Any]:
        """The OpenAI FileObject."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": self.expires_at,
            "status_details": None,
        }


@dataclass(frozen=True, slots=True)
class BatchRow:
    object: dict[str, Any]
    operations: list[str]
    # Seconds its output and error files are kept; None: the shim's default.
    output_keep_s: int | None = None
    owner: str = ""


@dataclass(frozen=True, slots=True)
class LineRow:
    line: int
    custom_id: str | None
    op: int
    idx: int
    body: str | None
    error: str | None


class Store:
    """Files and batches under `data_dir` ("" = a temporary directory removed on close)."""

    def __init__(self, data_dir: str, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self._temporary = not data_dir
        self.root = Path(data_dir or tempfile.mkdtemp(prefix="translane-shim-"))
        self.files_dir = self.root / "files"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / "batches.sqlite3", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A directory written before files could expire: its files are kept until deleted, its batches' outputs
        # kept for the shim's default time.
        for table, column, kind in (
            ("files", "expires_at", "INTEGER"),
            ("batches", "output_keep_s", "INTEGER"),
            ("files", "owner", "TEXT NOT NULL DEFAULT ''"),
            ("batches", "owner", "TEXT NOT NULL DEFAULT ''"),
        ):
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if columns and column not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database (and remove a temporary directory); idempotent."""
        self._db.close()
        if self._temporary:
            shutil.rmtree(self.root, ignore_errors=True)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- files

    def path(self, file_id: str) -> Path:
        """Where a file's bytes live (ids are ours: hex after a fixed prefix)."""
        return self.files_dir / file_id

    def add_file(
        self, file_id: str, filename: str, purpose: str, size: int, keep_s: int | None, owner: str = ""
    ) -> FileRow:
        """Record `owner`'s file whose bytes are already at path(file_id), forgotten `keep_s` seconds from now
        (None: kept until deleted)."""
        now = int(self.wall())
        row = FileRow(file_id, filename, purpose, size, now, None if keep_s is None else now + keep_s)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO files (id, filename, purpose, bytes, created_at, expires_at, owner) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row.id, row.filename, row.purpose, row.bytes, row.created_at, row.expires_at, owner),
            )
        return row

    def write_file(
        self, file_id: str, filename: str, purpose: str, data: bytes, keep_s: int | None, owner: str = ""
    ) -> FileRow:
        """Write `data` as a new file of `owner`'s and record it."""
        tmp = self.path(file_id + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, self.path(file_id))
        return self.add_file(file_id, filename, purpose, len(data), keep_s, owner)

    _FILE_COLUMNS = "id, filename, purpose, bytes, created_at, expires_at"
    # A file is there until the second it expires.
    _LIVE = "(expires_at IS NULL OR expires_at > ?)"

    def file(self, file_id: str, owner: str = "") -> FileRow | None:
        """`owner`'s file, None when unknown, another's or expired."""
        found = self._db.execute(
            f"SELECT {self._FILE_COLUMNS} FROM files WHERE id = ? AND owner = ? AND {self._LIVE}",
            (file_id, owner, int(self.wall())),
        ).fetchone()
        return None if found is None else FileRow(*found)

    def files(self, purpose: str | None, owner: str = "") -> list[FileRow]:
        """Every file of `owner`'s not expired, newest first."""
        sql = f"SELECT {self._FILE_COLUMNS} FROM files WHERE owner = ? AND {self._LIVE}"
        args: tuple[int | str, ...] = (owner, int(self.wall()))
        if purpose is not None:
            sql, args = sql + " AND purpose = ?", (*args, purpose)
        return [FileRow(*r) for r in self._db.execute(sql + " ORDER BY seq DESC", args)]

    def delete_file(self, file_id: str) -> bool:
        with self._transaction() as db:
            gone = db.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount > 0
        with contextlib.suppress(FileNotFoundError):
            self.path(file_id).unlink()
        return gone

    def sweep(self, now: float | None = None) -> int:
        """Forget the files expired by `now` (default: the time), bytes and all; how many."""
        when = int(self.wall() if now is None else now)
        ids = [r[0] for r in self._db.execute("SELECT id FROM files WHERE expires_at <= ?", (when,))]
        for file_id in ids:
            self.delete_file(file_id)
        return len(ids)

    def next_expiry(self) -> int | None:
        """When the next file expires (unix seconds), None when none will."""
        row = self._db.execute("SELECT min(expires_at) FROM files").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    # -- batches

    def add_batch(
        self,
        obj: dict[str, Any],
        operations: Sequence[str],
        lines: Sequence[LineRow],
        output_keep_s: int | None,
        owner: str = "",
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO batches (id, object, operations, output_keep_s, owner) VALUES (?, ?, ?, ?, ?)",
                (obj["id"], json.dumps(obj), json.dumps(list(operations)), output_keep_s, owner),
            )
            db.executemany(
                "INSERT INTO lines (batch, line, custom_id, op, idx, body, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(obj["id"], r.line, r.custom_id, r.op, r.idx, r.body, r.error) for r in lines],
            )

    def save_batch(self, obj: dict[str, Any], drop_lines: bool = False) -> None:
        """Store the Batch object as it now shows; `drop_lines` once its result files are written."""
        with self._transaction() as db:
            db.execute("UPDATE batches SET object = ? WHERE id = ?", (json.dumps(obj), obj["id"]))
            if drop_lines:
                db.execute("DELETE FROM lines WHERE batch = ?", (obj["id"],))

    def batch(self, batch_id: str, owner: str = "") -> BatchRow | None:
        """`owner`'s batch, None when unknown or another's."""
        found = self._db.execute(
            "SELECT object, operations, output_keep_s, owner FROM batches WHERE id = ? AND owner = ?",
            (batch_id, owner),
        ).fetchone()
        return None if found is None else BatchRow(json.loads(found[0]), json.loads(found[1]), found[2], found[3])

    def batch_ids(self, owner: str = "") -> list[str]:
        """Every batch's id of `owner`'s, newest first."""
        return [r[0] for r in self._db.execute("SELECT id FROM batches WHERE owner = ? ORDER BY seq DESC", (owner,))]

    def lines(self, batch_id: str) -> list[LineRow]:
        rows = self._db.execute(
            "SELECT line, custom_id, op, idx, body, error FROM lines WHERE batch = ? ORDER BY line", (batch_id,)
        )
        return [LineRow(*r) for r in rows]
