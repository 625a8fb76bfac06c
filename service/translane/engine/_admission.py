"""Layer: admission: the first model of the chain that can start in time gets a lane ticket (its slot and its
governor reservation), checked against the day's budget at the grant; held until the layers below return."""

from __future__ import annotations

import time
from typing import Any

from ..config import ModelConfig
from ..errors import ModelUnavailable, Overloaded, TranslaneError
from ..lanes import INTERACTIVE, Ticket
from ..tracing import ATTR, record_span
from ..upstream import SegmentCall, prompt_tokens
from ._layer import Layer
from ._work import Job, Outcome, Work

__all__ = ["MIN_CALL_S", "Admission", "wait_attrs"]

# A call granted with less time than this before its deadline is shed, not sent.
MIN_CALL_S = 0.05


def wait_attrs(job: Job, model: ModelConfig) -> dict[str, Any]:
    return {
        ATTR.MODEL: model.name,
        ATTR.LANE: model.lane,
        ATTR.PRIORITY: "interactive" if job.priority == INTERACTIVE else "batch",
        ATTR.FALLBACK: model.name != job.model,
    }


class Admission(Layer):
    """Leaving this layer closes the ticket: a call that never reached the provider is refunded, one that did
    keeps its reservation (the settle layer below says which)."""

    async def __call__(self, work: Work) -> Outcome:
        attempt = work.call
        ticket, model, counted, request, batch = await self._grant(work)
        try:
            stats = work.stats
            stats.queued_s = max(stats.queued_s, ticket.queued_s)
            stats.governed_s = max(stats.governed_s, ticket.governed_s)
            if work.job.deadline - self.parts.clock() < MIN_CALL_S:
                raise Overloaded(f"no time left to call {model.name} before the deadline", retry_after_s=1.0)
            attempt.model, attempt.ticket, attempt.counted, attempt.request = model, ticket, counted, request
            attempt.batch = batch
            return await self.inner(work)
        finally:
            ticket.close()  # what `async with lane.admit(...)` does on exit: refunded unless sent

    async def _grant(self, work: Work) -> tuple[Ticket, ModelConfig, int, SegmentCall, bool]:
        """An open ticket (the caller closes it) on the first model of the chain that can start in time, on its
        batch route (True) when the work may take it and the route can start it in time, else online."""
        job, parts = work.job, self.parts
        call = work.request()
        chain = parts.rotation.chain(job.model, bool(job.messages))
        last: TranslaneError | None = None
        for i, model in enumerate(chain):
            now = parts.clock()
            refusal = parts.rotation.skip(chain, i, now)
            if refusal is not None:
                last = refusal
                continue
            counted = prompt_tokens(model, call)
            tokens = parts.estimators[model.name].estimate(counted, job.max_output_tokens)
            if work.batch:
                ticket = await self._batch_ticket(work, model, tokens, now)
                if ticket is not None:
                    refusal = parts.budgets.refusal(model, with_in_flight=True)
                    if refusal is None:
                        return ticket, model, counted, call, True
                    ticket.close()  # never sent: refunded
                    last = refusal
                    continue
            waited_from = time.time_ns()
            admission = parts.lanes[model.lane].admit(
                model,
                tokens,
                job.priority,
                start_by=min(job.deadline, now + job.max_queue_wait_s),
                deadline=job.deadline,
                may_leave=parts.rotation.usable_after(chain, i, now),
                tenant=job.tenant,
            )
            try:
                ticket = await admission.__aenter__()
            except (Overloaded, ModelUnavailable) as exc:
                last = self._refused(job, model, exc, waited_from)
                continue
            # Checked again at the grant, counting the calls in flight: while this one queued, others may
            # have spent the day's budget, or be about to. The ticket is closed before the next model is
            # tried, so its slot is free for it.
            refusal = parts.budgets.refusal(model, with_in_flight=True)
            if refusal is not None:
                ticket.close()  # never sent: refunded
                last = refusal
                continue
            parts.metrics.admitted(model, ticket.queued_s, ticket.governed_s)
            if parts.tracer is not None and (ticket.queued_s or ticket.governed_s):
                self._record_waits(job, model, ticket, waited_from)
            if i:
                work.stats.fallbacks += 1
                parts.metrics.fell_back(job.model, model.name)
            return ticket, model, counted, call, False
        assert last is not None
        raise last

    async def _batch_ticket(self, work: Work, model: ModelConfig, tokens: int, now: float) -> Ticket | None:
        """A ticket on `model`'s batch route, or None: the call goes online (no route for this work, its quota
        spent and the model sends such work online, or the route cannot start it within the window)."""
        assert self.parts.batch is not None  # the route layer marks work only when there are routes
        job = work.job
        lane = self.parts.batch.lane_for(model, job.completion_window_s, tokens, now)
        if lane is None:
            return None
        # "wait": the route may hold the call until its quota's next day, within the window.
        start_by = job.deadline if model.batch_when_spent == "wait" else min(job.deadline, now + job.max_queue_wait_s)
        # "online": a call queued on the route leaves for the online lanes when the route finds its quota spent.
        leave = model.batch_when_spent == "online"
        try:
            admission = lane.admit(
                model, tokens, job.priority, start_by=start_by, deadline=job.deadline, may_leave=leave
            )
            return await admission.__aenter__()
        except (Overloaded, ModelUnavailable):
            return None

    def _refused(self, job: Job, model: ModelConfig, exc: TranslaneError, waited_from: int) -> TranslaneError:
        parts = self.parts
        if parts.tracer is not None:
            waited = (time.time_ns() - waited_from) / 1e9
            record_span(parts.tracer, "translane.lane.wait", waited_from, waited, wait_attrs(job, model), exc)
        down = parts.governor.down_for(model.name, parts.clock())
        if isinstance(exc, Overloaded) and down > 0:
            # The queue is long because the provider is failing, not because of our rate: say so.
            return ModelUnavailable(
                f"the provider of {model.name} is failing (failed calls in a row): paused for {down:.1f}s",
                retry_after_s=down,
            )
        return exc

    def _record_waits(self, job: Job, model: ModelConfig, ticket: Ticket, waited_from: int) -> None:
        """The lane wait, then the governor wait, as spans of the intervals the ticket measured.

        Only waits that happened: most calls are admitted at once, a span costs more than such an
        admission, and the call span carries both waits (0 or not) as attributes anyway.
        """
        assert self.parts.tracer is not None
        attrs = wait_attrs(job, model)
        if ticket.queued_s:
            record_span(self.parts.tracer, "translane.lane.wait", waited_from, ticket.queued_s, attrs)
        if ticket.governed_s:
            attrs[ATTR.RESERVED_TOKENS] = ticket.reservation.tokens
            governed_from = waited_from + int(ticket.queued_s * 1e9)
            record_span(self.parts.tracer, "translane.governor.wait", governed_from, ticket.governed_s, attrs)
