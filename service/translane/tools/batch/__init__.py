"""`translane batch`: OpenAI Batch JSONL through the service: `run` here (at batch priority, resumable), or `submit` as
a job the service runs (`status`, `wait`, `cancel`, `download`, `list`).

`run` is a client of the service, never of its internals: every line becomes one Translate call at
batch priority; overload is waited out (RESOURCE_EXHAUSTED retry hints), never written as
a failure; each answer is appended and flushed as one line, so a rerun skips what is done
and a kill loses at most what was in flight.
"""

from __future__ import annotations

from ._cli import add_parser
from ._io import Done, open_output, read_done
from ._lines import Line, parse_line
from ._runner import BatchSettings, BatchSummary, run_batch

__all__ = [
    "BatchSettings",
    "BatchSummary",
    "Done",
    "Line",
    "add_parser",
    "open_output",
    "parse_line",
    "read_done",
    "run_batch",
]
