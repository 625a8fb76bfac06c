"""The translation engine: segments → pieces → lane → governor → provider, with retries and fallback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.trace import SpanKind

from .budget import Budgets, open_budgets
from .cache import Entry, Flights, SegmentCache, cache_key, open_cache
from .config import Config, ModelConfig
from .errors import (
    BudgetSpent,
    InvalidRequest,
    ModelUnavailable,
    OutputTruncated,
    Overloaded,
    ProviderConnectionError,
    ProviderEmptyAnswer,
    ProviderError,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderServerError,
    TranslaneError,
)
from .estimate import TokenEstimator
from .governor import Governor
from .governor_choice import open_governor
from .lanes import INTERACTIVE, CallAt, Clock, Lane, Ticket
from .metrics import EngineMetrics, call_outcome
from .outbox import Outbox
from .segment import Piece, join_pieces, split_text
from .tasks import all_or_first_failure
from .tokens import count_tokens, warm_up
from .tracing import ATTR, end_span, record_span, tracer, using
from .upstream import Completion, SegmentCall, UpstreamClient, prompt_tokens

__all__ = ["Engine", "Job", "JobResult", "SegmentDelta", "Stats"]

log = logging.getLogger("translane.engine")

# Share of a model's input limit a piece may fill: our tokenizer is not the
# provider's, and the provider rejects over-long input outright.
INPUT_HEADROOM = 0.85
# A call granted with less time than this before its deadline is shed, not sent.
MIN_CALL_S = 0.05
# A piece cut at the output limit is halved at most this many times before the segment fails.
MAX_SPLIT_DEPTH = 2


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


@dataclass(slots=True)
class _Outcome:
    text: str
    model: str
    truncated: bool = False
    cached: bool = False
    # What the provider counted for this text (summed over pieces and retries that completed).
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Sink(Protocol):
    """Where a streamed segment's text goes, and what a call asks for room before it starts."""

    def __call__(self, text: str) -> None: ...

    def room(self, expected_chars: int) -> contextlib.AbstractAsyncContextManager[None]: ...


def _wait_attrs(job: Job, model: ModelConfig) -> dict[str, Any]:
    return {
        ATTR.MODEL: model.name,
        ATTR.LANE: model.lane,
        ATTR.PRIORITY: "interactive" if job.priority == INTERACTIVE else "batch",
        ATTR.FALLBACK: model.name != job.model,
    }


def _call_attrs(job: Job, model: ModelConfig, attempt: int, ticket: Ticket) -> dict[str, Any]:
    return {
        ATTR.OPERATION: "chat",
        ATTR.PROVIDER: model.provider,
        ATTR.REQUEST_MODEL: model.wire_name,
        ATTR.MAX_TOKENS: min(job.max_output_tokens or model.max_output_tokens, model.max_output_tokens),
        ATTR.MODEL: model.name,
        ATTR.LANE: model.lane,
        ATTR.ATTEMPT: attempt,
        ATTR.FALLBACK: model.name != job.model,
        ATTR.QUEUED_MS: ticket.queued_s * 1000,
        ATTR.GOVERNED_MS: ticket.governed_s * 1000,
    }


class Engine:
    """Runs jobs through lanes and the governor to the provider. Build with `Engine.open`."""

    def __init__(
        self,
        config: Config,
        upstream: UpstreamClient,
        governor: Governor,
        *,
        clock: Clock | None = None,
        call_at: CallAt | None = None,
        cache: SegmentCache | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        """`clock` and `call_at` default to the running loop's (tests pass their own to own the time)."""
        self.config = config
        self.cache = cache
        self.budgets = budgets
        self._flights: Flights[_Outcome] = Flights((OutputTruncated, InvalidRequest, BudgetSpent))
        self.upstream = upstream
        self.governor = governor
        loop = asyncio.get_running_loop()
        self._clock: Clock = clock or loop.time
        self._call_at: CallAt = call_at or loop.call_at
        self.lanes = {
            name: Lane(lc, governor, clock=self._clock, call_at=self._call_at) for name, lc in config.lanes.items()
        }
        self.estimators = {n: TokenEstimator(m.output_ratio, m.max_output_tokens) for n, m in config.models.items()}
        self._rng = random.Random()
        self.metrics = EngineMetrics(config, self.lanes, governor, self._clock)
        self.metrics.budgets = budgets
        self._streams: set[Outbox[_Outcome]] = set()
        self.metrics.streams = self._streams
        # None when tracing is off: then no span work at all on the hot path.
        self._tracer = tracer("translane.engine")

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, config: Config, governor: Governor | None = None) -> AsyncIterator[Engine]:
        """Build the engine, its governor (unless given) and its upstream session; close them on exit."""
        warm_up()  # not inside the first request, where it would stall the loop
        async with contextlib.AsyncExitStack() as stack:
            gov = governor if governor is not None else await stack.enter_async_context(open_governor(config))
            cache = await stack.enter_async_context(open_cache(config.cache, config.governor))
            budgets = await stack.enter_async_context(open_budgets(config))
            upstream = await stack.enter_async_context(UpstreamClient(config))
            engine = cls(config, upstream, gov, cache=cache, budgets=budgets)
            stack.callback(engine.close)
            yield engine

    def close(self) -> None:
        """Stop listening to the governor (it may outlive this engine)."""
        for lane in self.lanes.values():
            self.governor.unsubscribe(lane.kick)

    # -- public ---------------------------------------------------------------

    async def translate(self, job: Job, stats: Stats | None = None) -> JobResult:
        """Translate every segment; results come back in request order. `stats` fills in as calls end."""
        stats = Stats() if stats is None else stats
        outcomes = await all_or_first_failure(
            [self._segment(job, i, text, stats, None) for i, text in enumerate(job.segments)]
        )
        self._price_in(job, stats)
        return JobResult(
            [o.text for o in outcomes],
            [o.model for o in outcomes],
            stats,
            [o.truncated for o in outcomes],
            [o.cached for o in outcomes],
        )

    async def stream(self, job: Job, stats: Stats) -> AsyncIterator[SegmentDelta]:
        """Stream deltas in segment order; all segments run at once, later ones are buffered (see Outbox:
        within `server.stream_buffer_chars`, so a slow reader holds new calls back rather than the text piling up).
        """
        outbox: Outbox[_Outcome] = Outbox(len(job.segments), self.config.server.stream_buffer_chars)

        async def run(i: int, text: str) -> None:
            try:
                outbox.finish(i, await self._segment(job, i, text, stats, outbox.sink(i)))
            except BaseException as exc:  # handed to the reader, which re-raises it
                outbox.finish(i, exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise

        tasks = [asyncio.create_task(run(i, t)) for i, t in enumerate(job.segments)]
        self._streams.add(outbox)
        try:
            for i in range(len(job.segments)):
                while True:
                    item = await outbox.take(i)
                    if isinstance(item, str):
                        yield SegmentDelta(i, item, "")
                    elif isinstance(item, BaseException):
                        raise item
                    else:
                        yield SegmentDelta(i, "", item.model, done=True, truncated=item.truncated)
                        break
            self._price_in(job, stats)
        finally:
            self._streams.discard(outbox)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def chain(self, model: str) -> list[ModelConfig]:
        """The model and its fallbacks, in order, each once."""
        out: list[ModelConfig] = []
        todo = [model]
        while todo:
            name = todo.pop(0)
            m = self.config.models[name]
            if m not in out:
                out.append(m)
                todo.extend(m.fallbacks)
        return out

    # -- one segment ----------------------------------------------------------

    async def _segment(self, job: Job, index: int, text: str, stats: Stats, sink: Sink | None) -> _Outcome:
        model = self.config.models[job.model]
        if not text.strip():
            # Nothing to translate: the segment comes back as it was, on every path.
            if sink is not None and text:
                sink(text)
            return _Outcome(text, model.name)
        if self.cache is None or not job.use_cache:
            return await self._translate(job, index, text, stats, sink)
        key = cache_key(model, job.source_language, job.target_language, job.glossary, job.mime_type, text)
        if sink is not None:
            # A stream's deltas are its own: it looks up and translates for itself, and fills the cache.
            return await self._cached(job, index, text, stats, sink, model, key)
        # Identical work at the same moment runs once; the leader looks the cache up again inside its
        # flight and stores before the flight ends, so a late twin finds the entry, not a finished flight.
        # Interactive twins never wait on batch work (or the reverse): the priority is part of the flight.
        flight = f"{key}:{job.priority}:{job.allow_truncated}:{job.max_output_tokens}"
        outcome, shared = await self._flights.join(
            flight, lambda: self._cached(job, index, text, stats, None, model, key)
        )
        if shared:
            stats.cached_segments += 1
            return dataclasses.replace(outcome, cached=True)
        return outcome

    async def _cached(
        self, job: Job, index: int, text: str, stats: Stats, sink: Sink | None, model: ModelConfig, key: str
    ) -> _Outcome:
        """From the cache when it holds the segment; else translated, and stored when complete."""
        assert self.cache is not None
        entry = await self.cache.get(key, model.cache_ttl_s)
        if entry is not None:
            served = self.config.models.get(entry.model, model)
            self.metrics.cache_hit(served, entry.prompt_tokens, entry.completion_tokens)
            stats.cached_segments += 1
            if sink is not None:
                sink(entry.text)
            return _Outcome(entry.text, entry.model, cached=True)
        self.metrics.cache_miss(model)
        outcome = await self._translate(job, index, text, stats, sink)
        # A cut answer is never stored, nor one that came back as it was sent (an untranslated leak, likely).
        if not outcome.truncated and outcome.text.strip() != text.strip():
            await self._store(job, model, key, text, outcome)
        return outcome

    async def _store(self, job: Job, model: ModelConfig, key: str, text: str, outcome: _Outcome) -> None:
        """Keep a complete translation under the key of the model that served it (never a cut or failed one)."""
        assert self.cache is not None
        served = self.config.models.get(outcome.model, model)
        if served is not model:
            key = cache_key(served, job.source_language, job.target_language, job.glossary, job.mime_type, text)
        entry = Entry(outcome.text, served.name, outcome.prompt_tokens, outcome.completion_tokens, time.time())
        try:
            await self.cache.put(key, entry, served.cache_ttl_s)
        except Exception as exc:  # a cache that cannot write never fails a translation
            log.warning("segment cache write failed: %s", exc)

    async def _translate(self, job: Job, index: int, text: str, stats: Stats, sink: Sink | None) -> _Outcome:
        model = self.config.models[job.model]
        overhead = prompt_tokens(
            model,
            SegmentCall("", job.target_language, job.source_language, glossary=job.glossary, mime_type=job.mime_type),
        )
        limit = max(16, int(model.max_input_tokens * INPUT_HEADROOM) - overhead)
        pieces = split_text(text, limit, count_tokens)
        if len(pieces) == 1:
            return await self._complete(job, index, text, limit, stats, sink)
        if sink is not None:
            # Streaming keeps order by running a long segment's pieces one after another.
            outs: list[_Outcome] = []
            for p in pieces:
                outs.append(await self._complete(job, index, p.text, limit, stats, sink))
                if p.sep:
                    sink(p.sep)
            return self._joined(pieces, outs)
        return self._joined(
            pieces, await all_or_first_failure([self._complete(job, index, p.text, limit, stats, None) for p in pieces])
        )

    async def _complete(
        self, job: Job, index: int, text: str, limit: int, stats: Stats, sink: Sink | None, depth: int = 0
    ) -> _Outcome:
        """One piece translated to the end: a cut answer is retried with the model's whole output budget,
        then in smaller pieces; what still cannot complete fails the segment, or comes back marked
        truncated when the caller allows it. Never a silent cut."""
        model = self.config.models[job.model]
        budget = min(job.max_output_tokens or model.max_output_tokens, model.max_output_tokens)
        outcome = await self._call(job, text, stats, sink, budget)
        if not outcome.truncated or job.allow_truncated:
            return outcome
        if sink is not None:
            # Deltas already reached the caller and cannot be taken back: say so, do not retry.
            raise OutputTruncated(
                f"segments[{index}]: the translation was cut at the model's output limit ({budget} tokens); "
                "send the segment in smaller pieces, or set allow_truncated"
            )
        if budget < model.max_output_tokens:
            stats.retries += 1
            outcome = await self._call(job, text, stats, None, model.max_output_tokens)
            if not outcome.truncated:
                return outcome
        pieces = split_text(text, max(8, count_tokens(text) // 2), count_tokens) if depth < MAX_SPLIT_DEPTH else []
        if len(pieces) > 1:
            stats.retries += 1
            outs = await all_or_first_failure(
                [self._complete(job, index, p.text, limit, stats, None, depth + 1) for p in pieces]
            )
            return self._joined(pieces, outs)
        raise OutputTruncated(
            f"segments[{index}]: the translation was cut at the model's output limit "
            f"({model.max_output_tokens} tokens) even in smaller pieces"
            + (" (the model spent its budget reasoning)" if not outcome.text.strip() else "")
            + "; set allow_truncated to accept a cut translation"
        )

    @staticmethod
    def _joined(pieces: list[Piece], outs: list[_Outcome]) -> _Outcome:
        text = join_pieces(pieces, [o.text for o in outs])
        return _Outcome(
            text,
            outs[0].model,
            any(o.truncated for o in outs),
            prompt_tokens=sum(o.prompt_tokens for o in outs),
            completion_tokens=sum(o.completion_tokens for o in outs),
        )

    async def _admit(
        self, job: Job, call: SegmentCall, stats: Stats, stack: contextlib.AsyncExitStack
    ) -> tuple[Ticket, ModelConfig, int]:
        """A ticket, owned by `stack`, on the first model of the chain that can start in time."""
        chain = self.chain(job.model)
        last: TranslaneError | None = None
        for i, model in enumerate(chain):
            now = self._clock()
            spent = self.budgets.exhausted(model) if self.budgets is not None else ""
            if spent:
                assert self.budgets is not None
                last = BudgetSpent(f"model: {spent}", retry_after_s=self.budgets.seconds_to_next_day())
                continue
            if not self.governor.is_available(model.name, now):
                last = ModelUnavailable(f"model {model.name} is out of rotation (provider spending limit)")
                continue
            if self.governor.is_paused(model.name, now) and self._usable_after(chain, i, now):
                last = ModelUnavailable(f"model {model.name} is paused (provider rate limits or outage)")
                continue
            counted = prompt_tokens(model, call)
            tokens = self.estimators[model.name].estimate(counted, job.max_output_tokens)
            lane = self.lanes[model.lane]
            waited_from = time.time_ns()
            # A stack of its own, so a ticket given back below frees its slot before the next model is tried.
            admission = contextlib.AsyncExitStack()
            try:
                ticket = await admission.enter_async_context(
                    lane.admit(
                        model,
                        tokens,
                        job.priority,
                        start_by=min(job.deadline, now + job.max_queue_wait_s),
                        deadline=job.deadline,
                        may_leave=self._usable_after(chain, i, now),
                    )
                )
            except (Overloaded, ModelUnavailable) as exc:
                if self._tracer is not None:
                    waited = (time.time_ns() - waited_from) / 1e9
                    record_span(self._tracer, "translane.lane.wait", waited_from, waited, _wait_attrs(job, model), exc)
                down = self.governor.down_for(model.name, self._clock())
                if isinstance(exc, Overloaded) and down > 0:
                    # The queue is long because the provider is failing, not because of our rate: say so.
                    exc = ModelUnavailable(
                        f"the provider of {model.name} is failing (failed calls in a row): paused for {down:.1f}s",
                        retry_after_s=down,
                    )
                last = exc
                continue
            # Checked again at the grant, counting the calls in flight: while this one queued, others may
            # have spent the day's budget, or be about to.
            if self.budgets is not None:
                refusal = self._budget_refusal(model)
                if refusal is not None:
                    await admission.aclose()  # never sent: refunded
                    last = refusal
                    continue
            await stack.enter_async_context(admission)
            self.metrics.admitted(model, ticket.queued_s, ticket.governed_s)
            if self._tracer is not None and (ticket.queued_s or ticket.governed_s):
                self._record_waits(job, model, ticket, waited_from)
            if i:
                stats.fallbacks += 1
                self.metrics.fell_back(job.model, model.name)
            return ticket, model, counted
        assert last is not None
        raise last

    async def _call(self, job: Job, text: str, stats: Stats, sink: Sink | None, budget: int) -> _Outcome:
        call = SegmentCall(text, job.target_language, job.source_language, budget, job.glossary, job.mime_type)
        attempt = 0
        failure: ProviderError | None = None
        while True:
            streamed: list[str] = []
            async with contextlib.AsyncExitStack() as stack:
                if sink is not None:
                    # A stream whose reader is behind holds the call back here, before it takes a slot. Its
                    # answer is expected as long as its text, or as many times longer as the model answers.
                    ratio = max(1.0, self.estimators[job.model].output_ratio)
                    await stack.enter_async_context(sink.room(math.ceil(len(text) * ratio)))
                # Leaving this block closes the ticket: a call that never reached the
                # provider is refunded, one that did keeps its reservation.
                try:
                    ticket, model, counted = await self._admit(job, call, stats, stack)
                except (Overloaded, ModelUnavailable):
                    if failure is not None:
                        raise failure from None  # the provider's failure is the news, not the queue
                    raise
                stats.queued_s = max(stats.queued_s, ticket.queued_s)
                stats.governed_s = max(stats.governed_s, ticket.governed_s)
                started = self._clock()
                if job.deadline - started < MIN_CALL_S:
                    # Out of time: after failed attempts, their failure is the news (a provider that is down).
                    if failure is not None:
                        raise failure
                    raise Overloaded(f"no time left to call {model.name} before the deadline", retry_after_s=1.0)
                ticket.sent()
                if self.budgets is not None:
                    # Until it is charged, counted against the day's budget at its reservation.
                    stack.callback(self.budgets.in_flight(model, ticket.reservation.tokens))
                try:
                    completion = await self._attempt(model, call, job, sink, streamed, attempt, ticket)
                except ProviderError as exc:
                    self._on_error(ticket, model, exc)
                    failure = exc
                except asyncio.CancelledError:
                    # The caller left mid-call: the provider counted the call and may
                    # finish generating it; what was streamed is certainly spent.
                    ticket.used = counted + count_tokens("".join(streamed))
                    self.metrics.orphaned(model)
                    self._charge_budget(model, max(ticket.used, ticket.reservation.tokens))
                    raise
                else:
                    ticket.settle(completion.prompt_tokens + completion.completion_tokens)
                    self.governor.on_success(model.name)
                    stats.add(model, completion)
                    if self.budgets is not None:
                        cost = model.cost(
                            completion.prompt_tokens, completion.completion_tokens, completion.cached_tokens
                        )
                        self.budgets.charge(model, completion.prompt_tokens + completion.completion_tokens, cost)
                    if not completion.estimated and not completion.truncated:
                        self.estimators[model.name].learn(
                            counted, completion.prompt_tokens, completion.completion_tokens
                        )
                    if completion.text.strip() or completion.truncated:
                        return _Outcome(
                            completion.text,
                            model.name,
                            completion.truncated,
                            prompt_tokens=completion.prompt_tokens,
                            completion_tokens=completion.completion_tokens,
                        )
                    # Paid for, but nothing to show (a thinking model that only reasoned, say): try again.
                    failure = ProviderEmptyAnswer(f"{model.name} answered with no translation")
                finally:
                    stats.upstream_s = max(stats.upstream_s, self._clock() - started)
            # The slot is free again while a retry waits out its backoff.
            attempt += 1
            if not self._should_retry(failure, attempt, job, bool(streamed)):
                raise failure
            delay = 0.0 if self._fallback_ready(job, model) else self._backoff(model, attempt, failure)
            if self._clock() + delay >= job.deadline:
                raise failure
            stats.retries += 1
            self.metrics.retried(model)
            log.debug("retrying %s after %s in %.2fs", model.name, failure.code or failure.status, delay)
            await asyncio.sleep(delay)

    async def _attempt(
        self,
        model: ModelConfig,
        call: SegmentCall,
        job: Job,
        sink: Sink | None,
        streamed: list[str],
        attempt: int,
        ticket: Ticket,
    ) -> Completion:
        """One upstream call, timed and counted; with tracing, a span of its own (a retry is another)."""
        span = None
        if self._tracer is not None:
            span = self._tracer.start_span(
                f"chat {model.wire_name}", kind=SpanKind.CLIENT, attributes=_call_attrs(job, model, attempt, ticket)
            )
        started = time.perf_counter()
        try:
            with using(span):
                completion = await self._request(model, call, job, sink, streamed)
        except BaseException as exc:
            self.metrics.called(model, time.perf_counter() - started, None, exc)
            if span is not None:
                if isinstance(exc, ProviderError) and exc.status:
                    span.set_attribute(ATTR.HTTP_STATUS, exc.status)
                error_type = exc.code if isinstance(exc, ProviderError) and exc.code else call_outcome(exc)
                end_span(span, exc, error_type)
            raise
        self.metrics.called(model, time.perf_counter() - started, completion, None)
        if span is not None:
            span.set_attribute(ATTR.INPUT_TOKENS, completion.prompt_tokens)
            span.set_attribute(ATTR.OUTPUT_TOKENS, completion.completion_tokens)
            end_span(span)
        return completion

    def _record_waits(self, job: Job, model: ModelConfig, ticket: Ticket, waited_from: int) -> None:
        """The lane wait, then the governor wait, as spans of the intervals the ticket measured.

        Only waits that happened: most calls are admitted at once, a span costs more than such an
        admission, and the call span carries both waits (0 or not) as attributes anyway.
        """
        assert self._tracer is not None
        attrs = _wait_attrs(job, model)
        if ticket.queued_s:
            record_span(self._tracer, "translane.lane.wait", waited_from, ticket.queued_s, attrs)
        if ticket.governed_s:
            attrs[ATTR.RESERVED_TOKENS] = ticket.reservation.tokens
            governed_from = waited_from + int(ticket.queued_s * 1e9)
            record_span(self._tracer, "translane.governor.wait", governed_from, ticket.governed_s, attrs)

    async def _request(
        self, model: ModelConfig, call: SegmentCall, job: Job, sink: Sink | None, streamed: list[str]
    ) -> Completion:
        timeout = job.deadline - self._clock()
        if sink is None:
            return await self.upstream.complete(model, call, timeout)
        completion: Completion | None = None
        async for item in self.upstream.stream(model, call, timeout):
            if isinstance(item, str):
                streamed.append(item)
                sink(item)
            else:
                completion = item
        assert completion is not None
        return completion

    def _on_error(self, ticket: Ticket, model: ModelConfig, exc: ProviderError) -> None:
        now = self._clock()
        if isinstance(exc, ProviderRateLimited):
            # Turned away: no tokens were used, but the request still counts.
            ticket.settle(0)
            self.governor.on_rate_limited(model.name, exc.over_rate, exc.retry_after_s, now)
        elif isinstance(exc, ProviderQuotaExhausted):
            ticket.settle(0)
            self.governor.disable(model.name, now)
            log.error("model %s taken out of rotation: %s", model.name, exc.message)
        else:
            # Any other failure reached the provider, which may count all of it: the ticket keeps
            # its reservation when it closes, and the day's budget counts it as spent.
            self._charge_budget(model, ticket.reservation.tokens)
            if isinstance(exc, ProviderServerError | ProviderConnectionError) and not isinstance(
                exc, ProviderEmptyAnswer
            ):
                # A run of these is a provider that is down: the model pauses and work falls back.
                self.governor.on_failure(model.name, now)

    def _usable_after(self, chain: list[ModelConfig], i: int, now: float) -> bool:
        """Whether a model after chain[i] could take a call now (in rotation, not paused, budget left)."""
        return any(
            self.governor.is_available(m.name, now)
            and not self.governor.is_paused(m.name, now)
            and not (self.budgets is not None and self.budgets.exhausted(m))
            for m in chain[i + 1 :]
        )

    def _price_in(self, job: Job, stats: Stats) -> None:
        """When the job is done: a job no call was paid for (served from the cache, cost 0) still names a
        currency, the model's it asked for; otherwise the first model that served sets it (Stats.add)."""
        model = self.config.models.get(job.model)
        if model is not None and not stats.currency:
            stats.currency = model.currency

    def _budget_refusal(self, model: ModelConfig) -> TranslaneError | None:
        """Why a granted call of `model` may not go, by the day's budget: spent (until the next day), or
        committed by calls in flight (briefly: their reservations are estimates, settled when they end)."""
        assert self.budgets is not None
        spent = self.budgets.exhausted(model)
        if spent:
            return BudgetSpent(f"model: {spent}", retry_after_s=self.budgets.seconds_to_next_day())
        committed = self.budgets.exhausted(model, with_in_flight=True)
        if committed:
            return Overloaded(f"model: {committed}; wait for them to settle", retry_after_s=1.0)
        return None

    def _charge_budget(self, model: ModelConfig, tokens: int) -> None:
        """Count tokens the provider may have billed without an answer (a budget errs on the side of spent)."""
        if self.budgets is not None:
            self.budgets.charge(model, tokens, model.cost(tokens, 0))

    def _should_retry(self, exc: ProviderError, attempt: int, job: Job, streamed: bool) -> bool:
        provider = self.config.providers[self.config.models[job.model].provider]
        if streamed or attempt > provider.max_retries:
            return False
        if isinstance(exc, ProviderQuotaExhausted):
            # Another model in the chain may still serve.
            return len(self.chain(job.model)) > 1
        return exc.retryable

    def _fallback_ready(self, job: Job, failed: ModelConfig) -> bool:
        """True when the failed model is now paused and a later model in the chain can take the retry."""
        now = self._clock()
        if not self.governor.is_paused(failed.name, now) and self.governor.is_available(failed.name, now):
            return False
        return any(
            m is not failed and self.governor.is_available(m.name, now) and not self.governor.is_paused(m.name, now)
            for m in self.chain(job.model)
        )

    def _backoff(self, model: ModelConfig, attempt: int, exc: ProviderError) -> float:
        p = self.config.providers[model.provider]
        if exc.retry_after_s is not None:
            return min(exc.retry_after_s, p.retry_max_s)
        # Full jitter keeps retries from arriving together.
        return self._rng.uniform(0, min(p.retry_max_s, p.retry_base_s * 2 ** (attempt - 1)))
