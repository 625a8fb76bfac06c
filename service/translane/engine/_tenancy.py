"""The engine's door for a tenant's job: its own limits, reserved for the whole request before any segment
enters the stack, settled with what the request used when it ends.

At the door rather than a layer of the stack because a tenant's limits count requests, as its callers send
them (a request of 200 segments is one of its `rpm`, and is admitted or refused whole, never cut off halfway);
the stack's layers see segments, pieces and retries. Both ways in (whole and streamed) pass here, so do a
job's lines, and nothing reaches a lane before it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping

from ..config import Config
from ..errors import InvalidRequest
from ..estimate import TokenEstimator
from ..tenants import Tenant, TenantLimits, TenantsFile
from ..upstream import SegmentCall, prompt_tokens
from ._work import Job, Stats

__all__ = ["TenantGate"]

# What a job nothing limits passes through: stateless, so one serves every such job.
_UNLIMITED: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()


class TenantGate:
    """Admits a job against its tenant's limits (TenantLimited when past one); a job of no tenant, or of a
    tenant without limits, passes untouched."""

    def __init__(
        self,
        config: Config,
        tenants: TenantsFile,
        limits: TenantLimits,
        estimators: Mapping[str, TokenEstimator],
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.tenants = tenants
        self.limits = limits
        self.estimators = estimators
        self.clock = clock

    def estimate(self, job: Job) -> int:
        """The job's tokens as admission will reserve them on its model: prompt counted, output estimated."""
        model = self.config.models[job.model]
        estimator = self.estimators[model.name]
        total = 0
        for text in job.segments:
            call = SegmentCall(
                text, job.target_language, job.source_language, job.max_output_tokens, job.glossary, job.mime_type,
                job.messages,
            )  # fmt: skip
            total += estimator.estimate(prompt_tokens(model, call), job.max_output_tokens)
        return total

    def admit(self, job: Job, stats: Stats) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the tenant's request while the job runs; settle its real tokens and cost on the way out. A job
        that failed before any call reached the provider gives its request back."""
        tenant = self.tenants.current.get(job.tenant) if job.tenant else None
        if tenant is None or not tenant.limited:
            # Most jobs (no tenants file, or a tenant without limits): no generator-based context a call.
            return _UNLIMITED
        return self._held(tenant, job, stats)

    @contextlib.asynccontextmanager
    async def _held(self, tenant: Tenant, job: Job, stats: Stats) -> AsyncIterator[None]:
        tokens = self.estimate(job) if tenant.tpm else 0
        if tenant.tpm and tokens > tenant.tpm:
            # Never fits: a 429 would have its caller retry for ever.
            raise InvalidRequest(
                f"segments: this request needs about {tokens} tokens, more than tenant {tenant.name}'s whole tpm "
                f"of {tenant.tpm} can ever admit: send it in smaller requests"
            )
        # A slot is forgotten past the job's deadline even if this process dies holding it (shared store).
        hold = await self.limits.admit(tenant, tokens, max(1.0, job.deadline - self.clock()) + 5.0)
        # What this job adds to `stats` (a job's line that is tried again shares its stats with the try before).
        tokens0, cost0, calls0 = stats.prompt_tokens + stats.completion_tokens, stats.cost, stats.calls
        served = False
        try:
            yield
            served = True
        finally:
            used = stats.prompt_tokens + stats.completion_tokens - tokens0
            sent = served or stats.calls > calls0
            self.limits.settle(hold, tenant, used, stats.cost - cost0, sent=sent)
