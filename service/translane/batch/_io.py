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
    """custom_ids already answered, and where the last complete line ends."""

    ids: set[str] = field(default_factory=set)
    good_bytes: int = 0
    torn: bool = False


def read_done(path: str) -> Done:
    """The answered custom_ids of an output file; a last line without its newline (a kill mid-write) is torn."""
    done = Done()
    p = Path(path)
    if not p.exists():
        return done
    data = p.read_bytes()
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            done.torn = True
            break
        try:
            line = json.loads(data[pos:end])
            done.ids.add(str(line["custom_id"]))
        except (ValueError, KeyError, TypeError):
            done.torn = True
            break
        pos = end + 1
        done.good_bytes = pos
    return done


def open_output(path: str, done: Done) -> IO[str]:
    """The output opened for appending, with any torn tail cut off first."""
    if done.torn:
        with open(path, "r+b") as f:
            f.truncate(done.good_bytes)
    return open(path, "a", encoding="utf-8")


def write_line(out: IO[str], line: dict[str, Any]) -> None:
    """One answer as one line, written and flushed whole (a kill leaves at most a torn tail, cut on rerun)."""
    out.write(json.dumps(line, ensure_ascii=False) + "\n")
    out.flush()
    os.fsync(out.fileno())
