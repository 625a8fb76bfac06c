"""Reading a run back, and the final table."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from ._config import LoadConfigError
from ._records import Record, Summary

__all__ = ["read_run", "table"]


def read_run(path: str) -> tuple[list[Record], list[Summary]]:
    """The records and summaries of a saved RUN.jsonl."""
    records: list[Record] = []
    summaries: list[Summary] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LoadConfigError(f"report: cannot read {path!r}: {exc.strerror}") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            raise LoadConfigError(f"report: {path}:{i} is not JSON") from None
        kind = data.pop("type", None)
        if kind == "request":
            records.append(Record.from_json(data))
        elif kind == "summary":
            summaries.append(Summary(**{k: v for k, v in data.items() if k in Summary.__dataclass_fields__}))
    if not summaries:
        raise LoadConfigError(f"report: {path!r} holds no summary line")
    return records, summaries


def _ms(stats: dict[str, float] | None, key: str) -> str:
    if not stats or math.isnan(stats.get(key, math.nan)):
        return "-"
    return f"{stats[key]:.1f}"


def _ttft(s: Summary) -> str:
    """TTFT p50/p99, or n/a for whole answers (unary gRPC, HTTP without --stream): they have no first token."""
    if not s.stream and s.ttft_ms is None:
        return "n/a"
    return f"{_ms(s.ttft_ms, 'p50')}/{_ms(s.ttft_ms, 'p99')}"


def table(summaries: Sequence[Summary]) -> str:
    """The summaries as a table (rich's rendering, plain text when not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title="translane loadtest")
    for col in (
        "step",
        "target",
        "shape",
        "ok/sent",
        "errors",
        "RPM",
        "TPM",
        "TTFT p50/p99 ms",
        "e2e p50/p99 ms",
        "late p99 ms",
        "cost",
    ):
        t.add_column(col, justify="right" if col not in ("target", "shape") else "left")
    for s in summaries:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(s.outcomes.items()) if k != "ok") or "0"
        t.add_row(
            str(s.step),
            s.target,
            s.shape + (" (stopped after)" if s.stopped_early else ""),
            f"{s.ok}/{s.requests}",
            errors,
            f"{s.rpm:,.0f}",
            f"{s.tpm:,.0f}",
            _ttft(s),
            f"{_ms(s.e2e_ms, 'p50')}/{_ms(s.e2e_ms, 'p99')}",
            _ms(s.lateness_ms, "p99"),
            f"{s.cost:.6f}",
        )
    console = Console(width=200, record=True, force_terminal=False)
    with console.capture() as captured:
        console.print(t)
    return captured.get()
