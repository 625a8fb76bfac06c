"""What flows through the engine's stack: the job a caller asked for, the unit of work every layer takes, and
the outcome every layer returns."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import ModelConfig
from ..lanes import INTERACTIVE, Ticket
from ..segment import Piece, join_pieces
from ..upstream import Completion, SegmentCall

__all__ = ["Attempt", "Job", "JobResult", "Outcome", "SegmentDelta", "Sink", "Stats", "Step", "Work", "joined"]


@dataclass(frozen=True, slots=True)
class Job:
    """One validated translation request."""

    segments: tuple[str, ...]
    target_language: str
    model: str
    # Loop-clock moment every call must finish by.
    deadline: float
    # The longest each call may wait in its lane before it starts (a retry or a piece of a
    # segment waits afresh); never past the deadline.
    max_queue_wait_s: float = float("inf")
    source_language: str = ""
    task_id: str = ""
    priority: int = INTERACTIVE
    max_output_tokens: int = 0
    glossary: tuple[tuple[str, str], ...] = ()
    mime_type: str = "text/plain"
    # Return a translation cut at the output limit (marked) instead of failing the segment.
    allow_truncated: bool = False
    # Consult and fill the segment cache (when the service has one).
    use_cache: bool = True
    # A passthrough chat (role, content), sent as written; its one segment stands for it in the layers that count.
    messages: tuple[tuple[str, str], ...] = ()
    tenant: str = ""


@dataclass(slots=True)
class Stats:
    """Usage and timing of a job, summed over its calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cached_segments: int = 0
    cost: float = 0.0
    currency: str = ""
    estimated: bool = False
    queued_s: float = 0.0
    governed_s: float = 0.0
    upstream_s: float = 0.0
    calls: int = 0
    retries: int = 0
    fallbacks: int = 0

    def add(self, model: ModelConfig, c: Completion) -> None:
        self.prompt_tokens += c.prompt_tokens
        self.completion_tokens += c.completion_tokens
        self.cached_tokens += c.cached_tokens
        self.reasoning_tokens += c.reasoning_tokens
        self.cost += model.cost(c.prompt_tokens, c.completion_tokens, c.cached_tokens)
        self.currency = self.currency or model.currency
        self.estimated = self.estimated or c.estimated
        self.calls += 1


@dataclass(slots=True)
class JobResult:
    texts: list[str]
    models: list[str]
    stats: Stats
    # Per segment: cut at the output limit (only with Job.allow_truncated).
    truncated: list[bool]
    # Per segment: served from the cache or shared with identical work in flight.
    cached: list[bool]


@dataclass(frozen=True, slots=True)
class SegmentDelta:
    """A streamed piece of segment `index`; `done` marks the segment's end."""

    index: int
    text: str
    model: str
    done: bool = False
    truncated: bool = False


class Sink(Protocol):
    """Where a streamed segment's text goes, and what a call asks for room before it starts."""

    def __call__(self, text: str) -> None: ...

    def room(self, expected_chars: int) -> contextlib.AbstractAsyncContextManager[None]: ...


@dataclass(slots=True)
class Attempt:
    """One try at the provider, as the retry layer opened it and the admission layer filled it in."""

    number: int
    # Deltas already handed to the caller: a call that streamed cannot be taken back, or retried.
    streamed: list[str] = field(default_factory=list)
    model: ModelConfig | None = None
    ticket: Ticket | None = None
    # The prompt's tokens as counted here before the call (what the estimator learns against).
    counted: int = 0
    # The provider call as admission counted it, sent as it is.
    request: SegmentCall | None = None


@dataclass(frozen=True, slots=True)
class Work:
    """The unit every layer takes: text of one segment of `job` (or a piece of it), and where it is in the stack."""

    job: Job
    index: int
    text: str
    stats: Stats
    # Streams only: where the deltas go.
    sink: Sink | None = None
    # The segment cache's key for `text` (set by the first layer that needs it).
    key: str = ""
    # The output budget of the call (set by the truncation ladder).
    max_output_tokens: int = 0
    # How many times the ladder has halved this text.
    depth: int = 0
    # Set by the retry layer for the layers below it.
    attempt: Attempt | None = None

    def but(
        self,
        *,
        text: str | None = None,
        key: str | None = None,
        max_output_tokens: int | None = None,
        depth: int | None = None,
        attempt: Attempt | None = None,
    ) -> Work:
        """A copy with the given fields changed (dataclasses.replace, at a quarter of its cost: on every call)."""
        return Work(
            self.job,
            self.index,
            self.text if text is None else text,
            self.stats,
            self.sink,
            self.key if key is None else key,
            self.max_output_tokens if max_output_tokens is None else max_output_tokens,
            self.depth if depth is None else depth,
            self.attempt if attempt is None else attempt,
        )

    def request(self) -> SegmentCall:
        """The provider call this work makes: its text, languages, output budget and prompt options."""
        job = self.job
        return SegmentCall(
            self.text,
            job.target_language,
            job.source_language,
            self.max_output_tokens,
            job.glossary,
            job.mime_type,
            job.messages,
        )

    @property
    def call(self) -> Attempt:
        """The attempt under way (below the retry layer), with its model and ticket (below admission)."""
        assert self.attempt is not None, "a layer below retry was reached without an attempt"
        return self.attempt


@dataclass(slots=True)
class Outcome:
    """What a layer returns: a translation of the work's text and what it cost."""

    text: str
    model: str
    truncated: bool = False
    cached: bool = False
    # What the provider counted for this text (summed over pieces and retries that completed).
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Below the settle layer: the provider's own answer, with its usage as it reported it.
    completion: Completion | None = None


# The one interface of every layer (a coroutine, so pieces can run as tasks side by side).
Step = Callable[[Work], Coroutine[Any, Any, Outcome]]


def joined(pieces: list[Piece], outs: list[Outcome]) -> Outcome:
    """The outcomes of a text's pieces as one outcome of the whole text."""
    return Outcome(
        join_pieces(pieces, [o.text for o in outs]),
        outs[0].model,
        any(o.truncated for o in outs),
        prompt_tokens=sum(o.prompt_tokens for o in outs),
        completion_tokens=sum(o.completion_tokens for o in outs),
    )
