"""The record of one served RPC: what it asked, what it cost, how it ended; one set of facts that feeds its
metrics, its server span and its one log line (never text, never a key)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry import trace

from ..contract import MAX_TASK_ID_CHARS
from ..engine import Job, Stats
from ..metrics import EngineMetrics
from ..tracing import ATTR

__all__ = ["Recorder", "Served"]

log = logging.getLogger("translane.server")

# Each fact once: the log field's name and, where the span carries it, the span attribute's.
_FACTS: tuple[tuple[str, str], ...] = (
    ("model", ATTR.REQUEST_MODEL),
    ("served_by", ATTR.RESPONSE_MODEL),
    ("lane", ATTR.LANE),
    ("task_id", ATTR.TASK_ID),
    ("segments", ATTR.SEGMENTS),
    ("prompt_tokens", ATTR.INPUT_TOKENS),
    ("completion_tokens", ATTR.OUTPUT_TOKENS),
    ("cost", ATTR.COST),
    ("currency", ATTR.CURRENCY),
    ("calls", ATTR.CALLS),
    ("retries", ATTR.RETRIES),
    ("fallbacks", ATTR.FALLBACKS),
)


@dataclass(slots=True)
class Served:
    """What one RPC did: recorded when its `with` ends."""

    rpc: str
    task_id: str
    segments: int
    context: grpc.aio.ServicerContext[Any, Any]
    record: Callable[[Served], None]
    started: float = field(default_factory=time.perf_counter)
    job: Job | None = None
    stats: Stats = field(default_factory=Stats)
    status: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    first_token_s: float | None = None
    served_by: str = ""
    # The model the request asked for (the default's name when it named none), echoed on every answer.
    requested: str = ""

    def __enter__(self) -> Served:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if kind is not None and issubclass(kind, asyncio.CancelledError | GeneratorExit):
            remaining = self.context.time_remaining()
            expired = remaining is not None and remaining <= 0
            self.status = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
        self.record(self)

    def facts(self, lane_of: Callable[[str], str]) -> dict[str, Any]:
        """The RPC's facts by log field name (the keys of _FACTS)."""
        stats = self.stats
        model = self.job.model if self.job is not None else ""
        return {
            "model": model,
            "served_by": self.served_by,
            "lane": lane_of(model) if model else "",
            "task_id": self.task_id,
            "segments": self.segments,
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "cost": round(stats.cost, 8),
            "currency": stats.currency,
            "calls": stats.calls,
            "retries": stats.retries,
            "fallbacks": stats.fallbacks,
        }


class Recorder:
    """Opens records of RPCs and, when each ends, counts it, annotates its server span and logs it."""

    def __init__(self, metrics: EngineMetrics, lane_of: Callable[[str], str], tracing: bool) -> None:
        self.metrics = metrics
        self.lane_of = lane_of
        self.tracing = tracing

    def open(self, rpc: str, task_id: str, segments: int, context: grpc.aio.ServicerContext[Any, Any]) -> Served:
        """The record of an RPC starting now (in flight until it is recorded answered)."""
        self.metrics.started(rpc)
        # A caller-chosen id is echoed, never a caller-chosen amount of it (a refused one included).
        return Served(rpc, task_id[:MAX_TASK_ID_CHARS], segments, context, self.record)

    def record(self, served: Served) -> None:
        elapsed = time.perf_counter() - served.started
        status = served.status.name
        facts = served.facts(self.lane_of)
        self.metrics.answered(served.rpc, facts["model"], facts["lane"], status, elapsed)
        if served.first_token_s is not None:
            self.metrics.first_token(facts["model"], served.first_token_s)
        span = trace.get_current_span() if self.tracing else trace.INVALID_SPAN
        if span.is_recording():
            span.set_attributes({attr: facts[name] for name, attr in _FACTS})
            span.set_attribute(ATTR.FALLBACK, served.stats.fallbacks > 0)
            if served.first_token_s is not None:
                span.set_attribute(ATTR.TTFT_MS, served.first_token_s * 1000)
        if log.isEnabledFor(logging.INFO):
            ctx = span.get_span_context()
            facts.update(
                rpc=served.rpc,
                status=status,
                duration_ms=round(elapsed * 1000, 3),
                trace_id=format(ctx.trace_id, "032x") if ctx.is_valid else "",
            )
            log.info("%s %s", served.rpc, status, extra=facts)
