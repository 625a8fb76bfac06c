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
from collections.abc import Iterator, Sequence
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
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    -- The Batch object as last shown (JSON); `operations` the service's operation names (JSON list).
    object TEXT NOT NULL,
    operations TEXT NOT NULL
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
            "expires_at": None,
            "status_details": None,
        }


@dataclass(frozen=True, slots=True)
class BatchRow:
    object: dict[str, Any]
    operations: list[str]


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

    def __init__(self, data_dir: str) -> None:
        self._temporary = not data_dir
        self.root = Path(data_dir or tempfile.mkdtemp(prefix="translane-shim-"))
        self.files_dir = self.root / "files"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / "batches.sqlite3", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
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

    def add_file(self, file_id: str, filename: str, purpose: str, size: int) -> FileRow:
        """Record a file whose bytes are already at path(file_id)."""
        row = FileRow(file_id, filename, purpose, size, int(time.time()))
        with self._transaction() as db:
            db.execute(
                "INSERT INTO files (id, filename, purpose, bytes, created_at) VALUES (?, ?, ?, ?, ?)",
                (row.id, row.filename, row.purpose, row.bytes, row.created_at),
            )
        return row

    def write_file(self, file_id: str, filename: str, purpose: str, data: bytes) -> FileRow:
        """Write `data` as a new file and record it."""
        tmp = self.path(file_id + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, self.path(file_id))
        return self.add_file(file_id, filename, purpose, len(data))

    def file(self, file_id: str) -> FileRow | None:
        found = self._db.execute(
            "SELECT id, filename, purpose, bytes, created_at FROM files WHERE id = ?", (file_id,)
        ).fetchone()
        return None if found is None else FileRow(*found)

    def files(self, purpose: str | None) -> list[FileRow]:
        """Every file, newest first."""
        sql = "SELECT id, filename, purpose, bytes, created_at FROM files"
        args: tuple[str, ...] = ()
        if purpose is not None:
            sql, args = sql + " WHERE purpose = ?", (purpose,)
        return [FileRow(*r) for r in self._db.execute(sql + " ORDER BY seq DESC", args)]

    def delete_file(self, file_id: str) -> bool:
        with self._transaction() as db:
            gone = db.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount > 0
        with contextlib.suppress(FileNotFoundError):
            self.path(file_id).unlink()
        return gone

    # -- batches

    def add_batch(self, obj: dict[str, Any], operations: Sequence[str], lines: Sequence[LineRow]) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO batches (id, object, operations) VALUES (?, ?, ?)",
                (obj["id"], json.dumps(obj), json.dumps(list(operations))),
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

    def batch(self, batch_id: str) -> BatchRow | None:
        found = self._db.execute("SELECT object, operations FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return None if found is None else BatchRow(json.loads(found[0]), json.loads(found[1]))

    def batch_ids(self) -> list[str]:
        """Every batch's id, newest first."""
        return [r[0] for r in self._db.execute("SELECT id FROM batches ORDER BY seq DESC")]

    def lines(self, batch_id: str) -> list[LineRow]:
        rows = self._db.execute(
            "SELECT line, custom_id, op, idx, body, error FROM lines WHERE batch = ? ORDER BY line", (batch_id,)
        )
        return [LineRow(*r) for r in rows]
