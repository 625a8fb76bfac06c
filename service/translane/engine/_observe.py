"""Layer: with tracing on, each call to the provider is a client span of its own (a retry is another)."""

from __future__ import annotations

from opentelemetry.trace import SpanKind, Tracer

from ..errors import ProviderError
from ..metrics import call_outcome
from ..tracing import ATTR, end_span, using
from ._layer import Layer
from ._parts import Parts
from ._work import Outcome, Step, Work

__all__ = ["Observe"]


class Observe(Layer):
    """A GenAI client span around the call: model, lane, attempt, waits, then tokens or the error's type. Built
    only when tracing is on: with it off, nothing at all on the hot path."""

    def __init__(self, inner: Step, parts: Parts) -> None:
        super().__init__(inner, parts)
        assert parts.tracer is not None
        self.tracer: Tracer = parts.tracer

    @staticmethod
    def applies(parts: Parts) -> bool:
        return parts.tracer is not None

    async def __call__(self, work: Work) -> Outcome:
        job, attempt = work.job, work.call
        model, ticket = attempt.model, attempt.ticket
        assert model is not None and ticket is not None
        span = self.tracer.start_span(
            f"chat {model.wire_name}",
            kind=SpanKind.CLIENT,
            attributes={
                ATTR.OPERATION: "chat",
                ATTR.PROVIDER: model.provider,
                ATTR.REQUEST_MODEL: model.wire_name,
                # What the request carried: the ladder's budget, clamped to the model that serves it.
                ATTR.MAX_TOKENS: min(work.max_output_tokens or model.max_output_tokens, model.max_output_tokens),
                ATTR.MODEL: model.name,
                ATTR.LANE: ticket.lane.name,
                ATTR.ROUTE: "batch" if attempt.batch else "online",
                ATTR.ATTEMPT: attempt.number,
                ATTR.FALLBACK: model.name != job.model,
                ATTR.QUEUED_MS: ticket.queued_s * 1000,
                ATTR.GOVERNED_MS: ticket.governed_s * 1000,
            },
        )
        try:
            with using(span):
                outcome = await self.inner(work)
        except BaseException as exc:
            if isinstance(exc, ProviderError) and exc.status:
                span.set_attribute(ATTR.HTTP_STATUS, exc.status)
            end_span(span, exc, exc.code if isinstance(exc, ProviderError) and exc.code else call_outcome(exc))
            raise
        span.set_attribute(ATTR.INPUT_TOKENS, outcome.prompt_tokens)
        span.set_attribute(ATTR.OUTPUT_TOKENS, outcome.completion_tokens)
        end_span(span)
        return outcome
