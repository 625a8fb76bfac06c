"""A run drawn (matplotlib, an optional extra): each step's latency and outcomes over time, compared targets on
the same axes, and for a ladder its throughput and latency against concurrency (or the offered rate)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._config import LoadConfigError
from ._records import Record, Summary, percentile

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["figure", "plot"]

# One colour per outcome, the same in every panel; every outcome is drawn (a stretch of timeouts is not blank).
OUTCOME_COLOURS = {
    "ok": "tab:green",
    "rate_limited": "tab:orange",
    "server_error": "tab:red",
    "timeout": "tab:purple",
    "client_error": "tab:brown",
    "connection_error": "tab:gray",
    "bad_answer": "tab:pink",
}
# Compared targets on the same axes: a colour each for their latencies, a line style each for their outcomes.
STYLES = ("-", "--", ":", "-.")
MARKERS = ("x", "+", "1", "2")


def _named(what: str, target: str, targets: Sequence[str]) -> str:
    return what if len(targets) == 1 else f"{what} · {target}"


def _by_second(records: Sequence[Record]) -> dict[int, list[Record]]:
    """Records by the second their answer (or failure) came."""
    seconds: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        seconds[int(r.end_s)].append(r)
    return seconds


def _latency(ax: Any, records: Sequence[Record], targets: Sequence[str], stream: bool) -> None:
    """e2e p50 and p99 per second of the answers, TTFT beside them when streaming, each failure a mark at its
    e2e (a timeout at the timeout): one colour a target."""
    for i, target in enumerate(targets):
        colour = f"C{i}"
        seconds = _by_second([r for r in records if r.target == target and r.ok])
        xs = sorted(seconds)
        e2e = [[r.e2e_ms for r in seconds[t]] for t in xs]
        for key, alpha in ((50, 1.0), (99, 0.45)):
            label = _named(f"e2e p{key}", target, targets)
            ax.plot(xs, [percentile(v, key) for v in e2e], color=colour, alpha=alpha, label=label)
        if stream:
            ttft = [[r.ttft_ms for r in seconds[t] if r.ttft_ms is not None] for t in xs]
            ax.plot(
                xs,
                [percentile(v, 50) for v in ttft],
                color=colour,
                linestyle="--",
                label=_named("TTFT p50", target, targets),
            )
        failed: dict[str, list[Record]] = defaultdict(list)
        for r in records:
            if r.target == target and not r.ok:
                failed[r.outcome].append(r)
        for outcome, rs in sorted(failed.items()):
            ax.scatter(
                [r.end_s for r in rs],
                [max(r.e2e_ms, 0.1) for r in rs],
                marker=MARKERS[i % len(MARKERS)],
                color=OUTCOME_COLOURS.get(outcome, "black"),
                s=14,
                label=_named(outcome, target, targets),
            )
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log)")
    ax.set_xlabel("seconds into the step (when answered)")
    ax.legend(loc="upper left", fontsize="x-small", ncol=2)


def _outcomes(ax: Any, records: Sequence[Record], targets: Sequence[str], offered_rps: float) -> None:
    """Answers per second by outcome, ok and every failure alike; one line style a target."""
    last = max((int(r.end_s) for r in records), default=0)
    xs = list(range(last + 1))
    for i, target in enumerate(targets):
        seconds = _by_second([r for r in records if r.target == target])
        kinds = sorted({r.outcome for r in records if r.target == target}, key=lambda k: (k != "ok", k))
        for outcome in kinds:
            ax.plot(
                xs,
                [sum(r.outcome == outcome for r in seconds.get(t, ())) for t in xs],
                color=OUTCOME_COLOURS.get(outcome, "black"),
                linestyle=STYLES[i % len(STYLES)],
                label=_named(outcome, target, targets),
            )
    if offered_rps:
        ax.axhline(offered_rps, color="black", alpha=0.3, linewidth=1, label=f"offered {offered_rps:g}/s")
    ax.set_ylabel("answers per second")
    ax.set_xlabel("seconds into the step (when answered)")
    ax.legend(loc="upper left", fontsize="x-small", ncol=2)


def _ladder(throughput: Any, latency: Any, summaries: Sequence[Summary], targets: Sequence[str]) -> None:
    """Per step of a ladder: achieved RPM and TPM, and e2e (TTFT when streaming) percentiles, against the step's
    concurrency, or the offered RPM of an open loop."""
    closed = any(s.concurrency for s in summaries)
    x_label = "concurrency (requests in flight)" if closed else "offered requests per minute"
    twin = throughput.twinx()
    for i, target in enumerate(targets):
        colour = f"C{i}"
        mine = sorted((s for s in summaries if s.target == target), key=lambda s: s.step)
        xs = [s.concurrency if closed else s.target_rpm for s in mine]
        throughput.plot(xs, [s.rpm for s in mine], "o-", color=colour, label=_named("RPM", target, targets))
        twin.plot(xs, [s.tpm for s in mine], "s--", color=colour, alpha=0.5, label=_named("TPM", target, targets))
        for key, style, alpha in (("p50", "o-", 1.0), ("p99", "o-", 0.45)):
            ys = [s.e2e_ms[key] if s.e2e_ms else float("nan") for s in mine]
            latency.plot(xs, ys, style, color=colour, alpha=alpha, label=_named(f"e2e {key}", target, targets))
        if any(s.stream for s in mine):
            ys = [s.ttft_ms["p50"] if s.ttft_ms else float("nan") for s in mine]
            latency.plot(xs, ys, "o--", color=colour, label=_named("TTFT p50", target, targets))
    throughput.set_title("throughput against load")
    throughput.set_xlabel(x_label)
    throughput.set_ylabel("answers per minute (RPM)")
    twin.set_ylabel("tokens per minute (TPM)")
    lines, labels = throughput.get_legend_handles_labels()
    lines2, labels2 = twin.get_legend_handles_labels()
    throughput.legend(lines + lines2, labels + labels2, loc="upper left", fontsize="x-small")
    latency.set_title("latency against load")
    latency.set_xlabel(x_label)
    latency.set_ylabel("latency (ms, log)")
    latency.set_yscale("log")
    latency.legend(loc="upper left", fontsize="x-small")


def figure(records: Sequence[Record], summaries: Sequence[Summary]) -> Figure:
    """The run's figure: a ladder's curves on top (when there are several steps), then per step its latency
    (left) and outcomes (right) over time."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LoadConfigError("plot: needs matplotlib (pip install 'translane[plot]')") from None
    steps = sorted({s.step for s in summaries})
    targets = list(dict.fromkeys(s.target for s in summaries))
    ladder = len(steps) > 1
    rows = len(steps) + ladder
    fig, axes = plt.subplots(rows, 2, figsize=(14, 3.8 * rows), squeeze=False)
    if ladder:
        _ladder(axes[0, 0], axes[0, 1], summaries, targets)
    for row, step in enumerate(steps, start=int(ladder)):
        mine = [r for r in records if r.step == step]
        first = next(s for s in summaries if s.step == step)
        _latency(axes[row, 0], mine, targets, any(s.stream for s in summaries if s.step == step))
        _outcomes(axes[row, 1], mine, targets, first.target_rpm / 60)
        axes[row, 0].set_title(f"step {step} · {first.shape}: latency")
        axes[row, 1].set_title(f"step {step} · {first.shape}: outcomes")
    fig.tight_layout()
    return fig


def plot(records: Sequence[Record], summaries: Sequence[Summary], path: str) -> None:
    """The run's figure written to `path` (PNG)."""
    fig = figure(records, summaries)
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise LoadConfigError(f"plot: cannot write {path!r}: {exc.strerror}") from None
    finally:
        plt.close(fig)
