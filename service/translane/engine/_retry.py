"""Layer: retries and fallback: a failed call is tried again, at once on another model of the chain when the
failed one is now paused, else after a backoff; within the provider's retry count and the job's deadline."""

from __future__ import annotations

import dataclasses
import logging

from ..config import ModelConfig
from ..errors import (
    BatchQuotaSpent,
    BatchRouteFailed,
    ModelUnavailable,
    Overloaded,
    ProviderError,
    ProviderQuotaExhausted,
)
from ._layer import Layer
from ._work import Attempt, Job, Outcome, Work

__all__ = ["Retry"]

log = logging.getLogger("translane.engine")


class Retry(Layer):
    """Each try is an `Attempt` the layers below fill in (the model admission chose, what was streamed)."""

    async def __call__(self, work: Work) -> Outcome:
        job = work.job
        failure: ProviderError | None = None
        number = 0
        while True:
            attempt = Attempt(number)
            try:
                return await self.inner(work.but(attempt=attempt))
            except (Overloaded, ModelUnavailable):
                # No slot, no time or no budget after failed attempts: the provider's failure is the news.
                if failure is not None:
                    raise failure from None
                raise
            except ProviderError as exc:
                failure = exc
            model = attempt.model
            assert model is not None  # a provider failed: admission chose a model
            number += 1
            if not self._should_retry(failure, number, work.job, bool(attempt.streamed)):
                raise failure
            if isinstance(failure, BatchRouteFailed):
                # The provider's batch ended without answering: the work goes online now, or fails as it is.
                if model.batch_when_failed != "online":
                    raise failure
                work = dataclasses.replace(work, batch=False)
            # A batch route whose quota is spent: the next try goes online, or waits in the route's lane, at once.
            ready = isinstance(failure, BatchQuotaSpent | BatchRouteFailed) or self.parts.rotation.fallback_ready(
                job.model, model, bool(job.messages)
            )
            delay = 0.0 if ready else self._backoff(model, number, failure)
            if self.parts.clock() + delay >= job.deadline:
                raise failure
            work.stats.retries += 1
            self.parts.metrics.retried(model)
            log.debug("retrying %s after %s in %.2fs", model.name, failure.code or failure.status, delay)
            await self.parts.sleep(delay)

    def _should_retry(self, exc: ProviderError, number: int, job: Job, streamed: bool) -> bool:
        config = self.parts.config
        provider = config.providers[config.models[job.model].provider]
        if streamed or number > provider.max_retries:
            return False
        if isinstance(exc, ProviderQuotaExhausted):
            # Another model in the chain may still serve.
            return len(self.parts.rotation.chain(job.model, bool(job.messages))) > 1
        return exc.retryable

    def _backoff(self, model: ModelConfig, number: int, exc: ProviderError) -> float:
        p = self.parts.config.providers[model.provider]
        if exc.retry_after_s is not None:
            return min(exc.retry_after_s, p.retry_max_s)
        # Full jitter keeps retries from arriving together.
        return self.parts.rng.uniform(0, min(p.retry_max_s, p.retry_base_s * 2 ** (number - 1)))
