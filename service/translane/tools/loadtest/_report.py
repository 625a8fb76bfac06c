"""Reading a run back, the final table, and the plot (matplotlib, an optional extra)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ._config import LoadConfigError
from ._records import Record, Summary, percentile

__all__ = ["plot", "read_run", "table"]


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
            f"{_ms(s.ttft_ms, 'p50')}/{_ms(s.ttft_ms, 'p99')}",
            f"{_ms(s.e2e_ms, 'p50')}/{_ms(s.e2e_ms, 'p99')}",
            _ms(s.lateness_ms, "p99"),
            f"{s.cost:.6f}",
        )
    console = Console(width=200, record=True, force_terminal=False)
    with console.capture() as captured:
        console.print(t)
    return captured.get()


def plot(records: Sequence[Record], summaries: Sequence[Summary], path: str) -> None:
    """Latency percentiles, throughput and 429s over time: one panel per step and target."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LoadConfigError("plot: needs matplotlib (pip install 'translane[plot]')") from None
    panels = [(s.step, s.target) for s in summaries]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.2 * len(panels)), squeeze=False)
    for ax, (step, target) in zip(axes[:, 0], panels, strict=True):
        mine = [r for r in records if r.step == step and r.target == target]
        by_second: dict[int, list[Record]] = defaultdict(list)
        for r in mine:
            by_second[int(r.sent_s)].append(r)
        seconds = sorted(by_second)
        ok = [[r.e2e_ms for r in by_second[t] if r.ok] for t in seconds]
        ax.plot(seconds, [percentile(v, 50) for v in ok], label="e2e p50 (ms)")
        ax.plot(seconds, [percentile(v, 99) for v in ok], label="e2e p99 (ms)")
        ax.set_ylabel("latency (ms)")
        ax.set_xlabel("seconds into the step")
        ax2 = ax.twinx()
        ax2.plot(seconds, [len(v) for v in ok], color="green", alpha=0.6, label="ok per s")
        ax2.plot(
            seconds,
            [sum(r.outcome == "rate_limited" for r in by_second[t]) for t in seconds],
            color="red",
            alpha=0.6,
            label="429 per s",
        )
        ax2.set_ylabel("requests per second")
        shape = next(s.shape for s in summaries if s.step == step and s.target == target)
        ax.set_title(f"step {step} · {target} · {shape}")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
