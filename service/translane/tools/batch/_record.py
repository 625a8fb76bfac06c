"""The local record of a submitted job: which input line each of its requests came from, to answer by custom_id.

The service answers a job's requests by position (BatchResult.index) and knows nothing of custom_ids or of
the chat form a line came in; `submit` keeps, in `<jobs dir>/<id>.jsonl` where it ran, each input line it
sent (in request order) and each it could not send (as the error line `download` writes for it), so that
`download` answers exactly as `batch run` would.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._lines import Line, parse_line

__all__ = ["DEFAULT_JOBS_DIR", "JobRecordFile", "NoRecord", "Sent"]

DEFAULT_JOBS_DIR = ".translane-jobs"


class NoRecord(LookupError):
    """No local record of the job (it was submitted elsewhere, or from another directory)."""


@dataclass(frozen=True, slots=True)
class Sent:
    """An input line sent as a request: its number in the input and its text, read again as `submit` read it."""

    number: int
    raw: str


@dataclass(slots=True)
class JobRecordFile:
    """What `submit` sent and refused, in input order: ("sent", Sent) or ("refused", its error line)."""

    default_target_language: str = ""
    input: str = ""
    items: list[tuple[str, Any]] = field(default_factory=list)

    def sent(self) -> list[Line]:
        """The sent lines, in request order (request i is the i-th)."""
        return [
            parse_line(item.raw, item.number, self.default_target_language)
            for kind, item in self.items
            if kind == "sent"
        ]

    def save(self, directory: str, job_id: str) -> Path:
        """Write the record whole (a temporary file renamed into place)."""
        path = Path(directory) / f"{job_id}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"input": self.input, "to": self.default_target_language}) + "\n")
            for kind, item in self.items:
                value = {"number": item.number, "raw": item.raw} if kind == "sent" else item
                f.write(json.dumps({kind: value}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, directory: str, job_id: str) -> JobRecordFile:
        """The record `submit` wrote; NoRecord when there is none."""
        path = Path(directory) / f"{job_id}.jsonl"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NoRecord(str(path)) from None
        head, *rest = text.splitlines()
        header = json.loads(head)
        record = cls(str(header.get("to", "")), str(header.get("input", "")))
        for raw in rest:
            entry = json.loads(raw)
            if "sent" in entry:
                record.items.append(("sent", Sent(int(entry["sent"]["number"]), str(entry["sent"]["raw"]))))
            else:
                record.items.append(("refused", entry["refused"]))
        return record
