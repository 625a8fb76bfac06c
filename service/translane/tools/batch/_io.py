"""The output file: what is already answered, a torn last line cut away, and one flushed line per answer."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["Done", "open_output", "read_done"]


@dataclass(slots=True)
class Done:
    """custom_ids already answered, the lines that answer them, and whether the file needs rewriting."""

    ids: set[str] = field(default_factory=set)
    kept: list[bytes] = field(default_factory=list)
    # A torn last line (a kill mid-write) or failed lines (to be tried again): the file is rewritten.
    dirty: bool = False

    @property
    def torn(self) -> bool:
        return self.dirty


def read_done(path: str) -> Done:
    """The custom_ids an output file answers; failed lines and a torn tail do not count (a rerun tries again)."""
    done = Done()
    p = Path(path)
    if not p.exists():
        return done
    data = p.read_bytes()
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            done.dirty = True
            break
        raw = data[pos : end + 1]
        pos = end + 1
        try:
            line = json.loads(raw)
            custom_id = str(line["custom_id"])
        except (ValueError, KeyError, TypeError):
            done.dirty = True
            break
        if line.get("error") is None:
            done.ids.add(custom_id)
            done.kept.append(raw)
        else:
            done.dirty = True
    return done


def open_output(path: str, done: Done) -> IO[str]:
    """The output opened for appending; a torn tail and failed lines are dropped first (rewritten whole)."""
    if done.dirty:
        tmp = Path(path).with_name(Path(path).name + ".tmp")
        tmp.write_bytes(b"".join(done.kept))
        tmp.replace(path)
    return open(path, "a", encoding="utf-8")


def write_line(out: IO[str], line: dict[str, Any]) -> None:
    """One answer as one line, written and flushed whole (a kill leaves at most a torn tail, cut on rerun)."""
    out.write(json.dumps(line, ensure_ascii=False) + "\n")
    out.flush()
    os.fsync(out.fileno())
