"""The shim's file store on an owned wall clock: a file is gone the second it expires (404), its bytes with it once
swept; a directory written before files could expire keeps its files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway_shim._store import Store


class Wall:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_file_is_gone_when_it_expires_and_its_bytes_once_swept(tmp_path: Path) -> None:
    wall = Wall()
    store = Store(str(tmp_path), wall)
    try:
        short = store.write_file("file-a", "a.jsonl", "batch", b"a\n", 3600)
        kept = store.write_file("file-b", "b.jsonl", "batch", b"b\n", None)
        assert short.expires_at == 1_000_000 + 3600 and kept.expires_at is None
        assert store.next_expiry() == short.expires_at
        wall.now += 3599
        assert store.file("file-a") == short and store.sweep() == 0
        wall.now += 1
        # Expired: not found, not listed, even before a sweep removes it.
        assert store.file("file-a") is None and [f.id for f in store.files(None)] == ["file-b"]
        assert store.path("file-a").exists()
        assert store.sweep() == 1 and not store.path("file-a").exists()
        assert store.next_expiry() is None and store.file("file-b") == kept
    finally:
        store.close()


def test_a_directory_from_before_expiry_keeps_its_files(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "batches.sqlite3") as db:
        db.execute(
            "CREATE TABLE files (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, "
            "filename TEXT NOT NULL, purpose TEXT NOT NULL, bytes INTEGER NOT NULL, created_at INTEGER NOT NULL)"
        )
        db.execute(
            "CREATE TABLE batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, "
            "object TEXT NOT NULL, operations TEXT NOT NULL)"
        )
        db.execute(
            "INSERT INTO files (id, filename, purpose, bytes, created_at) VALUES ('file-old', 'o', 'batch', 2, 1)"
        )
    store = Store(str(tmp_path))
    try:
        old = store.file("file-old")
        assert old is not None and old.expires_at is None and store.sweep() == 0
    finally:
        store.close()
