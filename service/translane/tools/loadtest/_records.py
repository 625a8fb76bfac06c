"""One request's record and one step's summary, as they are written to RUN.jsonl."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ERROR_KINDS", "Record", "Summary", "percentile", "span_s", "spread", "summarize"]

# Outcomes that count toward the early stop: the target is past what it can take.
ERROR_KINDS = ("rate_limited", "server_error", "timeout")


@dataclass(slots=True)
class Record:
    """One request as the caller saw it. Times are seconds from the run's start, or milliseconds."""

    target: str
    step: int
    n: int
    task_id: str
    scheduled_s: float
    sent_s: float = 0.0
    # "ok", or why not: rate_limited, server_error, client_error, timeout, connection_error, bad_answer.
    outcome: str = "ok"
    status: str = ""
    error: str = ""
    retry_after_s: float | None = None
    ttft_ms: float | None = None
    e2e_ms: float = 0.0
    itl_ms: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    # Segments the target says it served from its own cache (translane's `cached_segments`).
    cached_segments: int = 0
    reasoning_tokens: int = 0
    # True when the target sent no usage and the tokens were counted here.
    estimated: bool = False
    cost: float = 0.0
    # Streaming: content chunks received; whether reasoning came back, and when it first did.
    chunks: int = 0
    reasoning: bool = False
    first_reasoning_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def chunk(self, t0: float, last: float) -> float:
        """A chunk of the answer arrived (perf_counter time; `t0` the send, `last` the previous chunk): its
        TTFT or inter-token latency noted; returns its arrival, the next call's `last`."""
        now = time.perf_counter()
        self.chunks += 1
        if self.ttft_ms is None:
            self.ttft_ms = (now - t0) * 1000
        else:
            self.itl_ms.append((now - last) * 1000)
        return now

    @property
    def end_s(self) -> float:
        """When the answer (or the failure) came, in seconds from the step's start."""
        return self.sent_s + self.e2e_ms / 1000

    @property
    def lateness_ms(self) -> float:
        return max(0.0, (self.sent_s - self.scheduled_s) * 1000)

    @property
    def tpot_ms(self) -> float | None:
        """Time per output token after the first; None for a whole answer (no first token to time from)."""
        if self.ttft_ms is None or self.completion_tokens < 2:
            return None
        return (self.e2e_ms - self.ttft_ms) / (self.completion_tokens - 1)

    def json(self) -> dict[str, Any]:
        out = asdict(self)
        out["type"] = "request"
        out["lateness_ms"] = round(self.lateness_ms, 3)
        out["tpot_ms"] = self.tpot_ms
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def spread(values: Iterable[float]) -> dict[str, float] | None:
    """min, mean, median, stdev and percentiles of `values`; None when there are none."""
    v = list(values)
    if not v:
        return None
    return {
        "min": min(v),
        "mean": statistics.fmean(v),
        "median": statistics.median(v),
        "stdev": statistics.stdev(v) if len(v) > 1 else 0.0,
        **{f"p{p}": percentile(v, p) for p in (50, 90, 95, 99)},
        "max": max(v),
    }


@dataclass(slots=True)
class Summary:
    """One step against one target."""

    target: str
    step: int
    shape: str
    requests: int
    ok: int
    outcomes: dict[str, int]
    statuses: dict[str, int]
    # This target's own span, from its first send to its last answer: its rates are over it (in a comparison,
    # not over the slower target's).
    duration_s: float
    # What the schedule offered (open loop), per minute; 0 for a closed loop.
    target_rpm: float
    rpm: float
    tpm: float
    window_rpm: dict[str, float] | None
    window_tpm: dict[str, float] | None
    # TTFT, ITL and TPOT: None (null in JSON, n/a in the table) for whole answers, which have no first token.
    ttft_ms: dict[str, float] | None
    e2e_ms: dict[str, float] | None
    itl_ms: dict[str, float] | None
    tpot_ms: dict[str, float] | None
    lateness_ms: dict[str, float] | None
    goodput: float | None
    cost: float
    cost_per_request: float
    cache_hit_share: float
    stopped_early: bool = False
    # The step's place on a ladder: its concurrency (closed loop; 0 for an open loop, whose is target_rpm).
    concurrency: int = 0
    # Streamed answers: TTFT, ITL and TPOT apply.
    stream: bool = False

    def json(self) -> dict[str, Any]:
        return {"type": "summary", **asdict(self)}

    @property
    def error_share(self) -> float:
        return sum(self.outcomes.get(k, 0) for k in ERROR_KINDS) / self.requests if self.requests else 0.0


def _windows(records: Sequence[Record], window_s: float, weight: str) -> dict[str, float] | None:
    """Best and worst sliding windows of `window_s` over the finished requests (by end time), per minute."""
    ends = sorted(((r.end_s, r) for r in records if r.ok), key=lambda pair: pair[0])
    if not ends or ends[-1][0] - ends[0][0] < window_s:
        return None
    amounts = [1.0 if weight == "requests" else float(r.prompt_tokens + r.completion_tokens) for _, r in ends]
    times = [t for t, _ in ends]
    best, worst, total, j = 0.0, math.inf, 0.0, 0
    for i, t in enumerate(times):
        total += amounts[i]
        while times[j] <= t - window_s:
            total -= amounts[j]
            j += 1
        if t - times[0] >= window_s:
            best, worst = max(best, total), min(worst, total)
    scale = 60.0 / window_s
    return {"best": best * scale, "worst": worst * scale}


def span_s(records: Sequence[Record]) -> float:
    """From the first send to the last answer (or failure), in seconds; 0 for no records."""
    if not records:
        return 0.0
    return max(r.end_s for r in records) - min(r.sent_s for r in records)


def summarize(
    records: Sequence[Record],
    target: str,
    step: int,
    shape: str,
    target_rpm: float = 0.0,
    slo_ttft_ms: float = 0.0,
    slo_e2e_ms: float = 0.0,
    window_s: float = 60.0,
    *,
    concurrency: int = 0,
    stream: bool = False,
) -> Summary:
    """One target's figures for a step from its records, its rates over its own span."""
    duration_s = span_s(records)
    ok = [r for r in records if r.ok]
    outcomes: dict[str, int] = {}
    statuses: dict[str, int] = {}
    for r in records:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
        statuses[r.status or "none"] = statuses.get(r.status or "none", 0) + 1
    minutes = duration_s / 60 if duration_s > 0 else math.nan
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in ok)
    goodput = None
    if slo_ttft_ms or slo_e2e_ms:
        good = [
            r
            for r in ok
            if (not slo_ttft_ms or (r.ttft_ms is not None and r.ttft_ms <= slo_ttft_ms))
            and (not slo_e2e_ms or r.e2e_ms <= slo_e2e_ms)
        ]
        goodput = len(good) / len(records) if records else 0.0
    cost = sum(r.cost for r in records)
    return Summary(
        target=target,
        step=step,
        shape=shape,
        requests=len(records),
        ok=len(ok),
        outcomes=outcomes,
        statuses=statuses,
        duration_s=duration_s,
        target_rpm=target_rpm,
        rpm=len(ok) / minutes,
        tpm=tokens / minutes,
        window_rpm=_windows(records, window_s, "requests"),
        window_tpm=_windows(records, window_s, "tokens"),
        ttft_ms=spread(r.ttft_ms for r in ok if r.ttft_ms is not None),
        e2e_ms=spread(r.e2e_ms for r in ok),
        itl_ms=spread(g for r in ok for g in r.itl_ms),
        tpot_ms=spread(t for r in ok if (t := r.tpot_ms) is not None),
        lateness_ms=spread(r.lateness_ms for r in records),
        goodput=goodput,
        cost=cost,
        cost_per_request=cost / len(ok) if ok else 0.0,
        # As the answers say: served from the service's segment cache, or from the provider's prompt cache.
        cache_hit_share=sum(1 for r in ok if r.cached_segments or r.cached_tokens) / len(ok) if ok else 0.0,
        concurrency=concurrency,
        stream=stream,
    )
