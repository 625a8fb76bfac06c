"""A file's translation state on disk: segments translated, leaks found and how often each was repaired.

One JSON line per event, flushed as it happens, beside the output (`book.de.epub.translane-state.jsonl`),
so a run killed at any point resumes without paying again for what it had: translations, leaks found and
repair attempts made. The first line records a digest of the source and the settings that cut it into
segments: a source edited since (or cut another way) starts afresh, never with text in the wrong place.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["KnownLeak", "State", "read_lines", "state_path"]


def state_path(output: Path) -> Path:
    """Where the state of `output` is kept."""
    return output.with_name(output.name + ".translane-state.jsonl")


@dataclass(frozen=True, slots=True)
class KnownLeak:
    """A segment whose translation was not accepted: why, the machine's last attempt (as the model answered,
    placeholders and all) and how many repairs were tried."""

    reason: str
    machine: str
    repairs: int = 0


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The state's JSON lines up to the first torn one (a write cut short by a kill)."""
    items: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            break
        if not isinstance(item, dict):
            break
        items.append(item)
    return items


class State:
    """Translations (`texts`) and leaks (`leaks`) of one file so far, by segment index; `done` once the output
    was written. The last line about a segment is what holds: a leak repaired (or fixed by a person) later
    is a translation."""

    def __init__(self, path: Path, source_digest: str | None) -> None:
        """Open the state at `path`: resumed when it was made from a source of `source_digest` (None: whatever
        source it was made from, as `apply` reads it), else started afresh."""
        self.path = path
        self.texts: dict[int, str] = {}
        self.leaks: dict[int, KnownLeak] = {}
        self.done = False
        items = read_lines(path) if path.exists() else []
        fresh = not items or (source_digest is not None and items[0].get("source") != source_digest)
        if not fresh:
            for item in items[1:]:
                self._apply(item)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out = path.open("w" if fresh else "a", encoding="utf-8")
        if fresh:
            self._write({"source": source_digest or ""})

    def _apply(self, item: dict[str, Any]) -> None:
        if item.get("done"):
            self.done = True
        elif "i" in item and "text" in item:
            index = int(item["i"])
            self.texts[index] = str(item["text"])
            self.leaks.pop(index, None)
        elif "i" in item and "leak" in item:
            index = int(item["i"])
            self.leaks[index] = KnownLeak(str(item["leak"]), str(item.get("machine", "")), int(item.get("repairs", 0)))
            self.texts.pop(index, None)

    def _write(self, item: dict[str, Any]) -> None:
        self._out.write(json.dumps(item, ensure_ascii=False) + "\n")
        self._out.flush()

    def add(self, index: int, text: str) -> None:
        """A segment's accepted translation."""
        item = {"i": index, "text": text}
        self._apply(item)
        self._write(item)

    def leak(self, index: int, leak: KnownLeak) -> None:
        """A segment's translation refused, after `leak.repairs` repairs."""
        item = {"i": index, "leak": leak.reason, "machine": leak.machine, "repairs": leak.repairs}
        self._apply(item)
        self._write(item)

    def finish(self) -> None:
        """The output is written: on disk for good before anything relies on it."""
        self._write({"done": True})
        os.fsync(self._out.fileno())
        self.done = True

    def close(self) -> None:
        self._out.close()

    def remove(self) -> None:
        """Nothing is left to resume or to apply: the state goes."""
        self.close()
        self.path.unlink(missing_ok=True)
