"""Layer: settle: what a sent call cost is told to the ticket, the governor, the day's budget, the estimator,
the job's usage, the usage ledger and the metrics, whether it answered, failed or lost its caller."""

from __future__ import annotations

import asyncio
import logging
import time

from ..config import ModelConfig
from ..errors import (
    BatchQuotaSpent,
    BatchRouteFailed,
    ProviderConnectionError,
    ProviderEmptyAnswer,
    ProviderError,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderServerError,
)
from ..lanes import Ticket
from ..tokens import count_tokens
from ._layer import Layer
from ._work import Outcome, Work

__all__ = ["Settle"]

log = logging.getLogger("translane.engine")


class Settle(Layer):
    """From here down the call is sent: the ticket is marked so, and until it is charged the call counts
    against the day's budget at its reservation."""

    async def __call__(self, work: Work) -> Outcome:
        attempt = work.call
        model, ticket = attempt.model, attempt.ticket
        assert model is not None and ticket is not None
        parts = self.parts
        batch = attempt.batch
        # The batch route is paid at its share of the online prices, and is no business of the online governor.
        factor = model.batch_price_factor if batch else 1.0
        started = parts.clock()
        ticket.sent()
        release = parts.budgets.in_flight(model, ticket.reservation.tokens)
        timer = time.perf_counter()
        try:
            outcome = await self.inner(work)
        except ProviderError as exc:
            parts.metrics.called(model, time.perf_counter() - timer, None, exc, batch)
            self._failed(ticket, model, exc, batch)
            raise
        except BaseException as exc:
            parts.metrics.called(model, time.perf_counter() - timer, None, exc, batch)
            if isinstance(exc, asyncio.CancelledError):
                # The caller left mid-call: the provider counted the call and may finish generating it;
                # what was streamed is certainly spent.
                ticket.used = attempt.counted + count_tokens("".join(attempt.streamed))
                parts.metrics.orphaned(model)
                self._charge(model, max(ticket.used, ticket.reservation.tokens), factor)
            raise
        finally:
            release()
            work.stats.upstream_s = max(work.stats.upstream_s, parts.clock() - started)
        completion = outcome.completion
        assert completion is not None
        parts.metrics.called(model, time.perf_counter() - timer, completion, None, batch)
        used = completion.prompt_tokens + completion.completion_tokens
        ticket.settle(used)
        if not batch:
            parts.governor.on_success(model.name)
        work.stats.add(model, completion, factor)
        cost = model.cost(completion.prompt_tokens, completion.completion_tokens, completion.cached_tokens)
        parts.budgets.charge(model, used, cost * factor)
        # The bill: what the caller's usage says, call by call (no I/O here: the ledger writes behind the reply).
        job = work.job
        parts.ledger.record(
            job.tenant,
            model.name,
            job.task_id,
            model.currency,
            completion.prompt_tokens,
            completion.completion_tokens,
            completion.cached_tokens,
            cost * factor,
        )
        parts.metrics.billed(job.tenant, model, completion, cost * factor)
        if not completion.estimated and not completion.truncated:
            parts.estimators[model.name].learn(attempt.counted, completion.prompt_tokens, completion.completion_tokens)
        if not (completion.text.strip() or completion.truncated):
            # Paid for, but nothing to show (a thinking model that only reasoned, say): the retry layer tries again.
            raise ProviderEmptyAnswer(f"{model.name} answered with no translation")
        return outcome

    def _failed(self, ticket: Ticket, model: ModelConfig, exc: ProviderError, batch: bool) -> None:
        now = self.parts.clock()
        governor = self.parts.governor
        if isinstance(exc, BatchQuotaSpent):
            # The route's quota is spent for its day: its next calls go online or wait (batch_when_spent).
            ticket.settle(0)
            assert self.parts.batch is not None
            self.parts.batch.quota.close(model.name, exc.retry_after_s, now)
        elif isinstance(exc, BatchRouteFailed):
            # The provider's batch ended without answering the call (expired, failed, cancelled): not billed.
            ticket.settle(0)
        elif isinstance(exc, ProviderRateLimited):
            # Turned away: no tokens were used, but the request still counts.
            ticket.settle(0)
            if not batch:
                governor.on_rate_limited(model.name, exc.over_rate, exc.retry_after_s, now)
        elif isinstance(exc, ProviderQuotaExhausted):
            ticket.settle(0)
            governor.disable(model.name, now)
            log.error("model %s taken out of rotation: %s", model.name, exc.message)
        else:
            # Any other failure reached the provider, which may count all of it: the ticket keeps
            # its reservation when it closes, and the day's budget counts it as spent.
            self._charge(model, ticket.reservation.tokens, model.batch_price_factor if batch else 1.0)
            if (
                not batch
                and isinstance(exc, ProviderServerError | ProviderConnectionError)
                and not isinstance(exc, ProviderEmptyAnswer)
            ):
                # A run of these is a provider that is down: the model pauses and work falls back.
                governor.on_failure(model.name, now)

    def _charge(self, model: ModelConfig, tokens: int, factor: float = 1.0) -> None:
        """Count tokens the provider may have billed without an answer (a budget errs on the side of spent)."""
        self.parts.budgets.charge(model, tokens, model.cost(tokens, 0) * factor)
