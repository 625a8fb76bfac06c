"""Layer: identical work in flight at the same moment runs once; the twins share the leader's outcome."""

from __future__ import annotations

import dataclasses

from ..cache import cache_key
from ..errors import BudgetSpent, InvalidRequest, OutputTruncated
from ..flights import Flights
from ._layer import Layer
from ._parts import Parts
from ._work import Outcome, Step, Work

__all__ = ["Dedup", "key_of"]


def key_of(work: Work, parts: Parts) -> str:
    """The segment cache's key for the work's text on the model the job asked for."""
    job = work.job
    model = parts.config.models[job.model]
    return cache_key(model, job.source_language, job.target_language, job.glossary, job.mime_type, work.text)


class Dedup(Layer):
    """Unary work with the cache on: the leader runs the layers below (the cache first, so a late twin finds
    the stored entry rather than a finished flight); the twins wait for it. A stream's deltas are its own, so
    streams never share. Interactive twins never wait on batch work (or the reverse): the priority, like
    every other field that changes the answer, is part of the flight."""

    def __init__(self, inner: Step, parts: Parts) -> None:
        super().__init__(inner, parts)
        # Failures that would recur for every twin are handed on, not paid for again by each.
        self.flights: Flights[Outcome] = Flights((OutputTruncated, InvalidRequest, BudgetSpent))

    @staticmethod
    def applies(parts: Parts) -> bool:
        return parts.cache is not None and not parts.streaming

    async def __call__(self, work: Work) -> Outcome:
        job = work.job
        if not job.use_cache:
            return await self.inner(work)
        work = work.but(key=key_of(work, self.parts))
        flight = f"{work.key}:{job.priority}:{job.allow_truncated}:{job.max_output_tokens}"
        outcome, shared = await self.flights.join(flight, lambda: self.inner(work))
        if not shared:
            return outcome
        work.stats.cached_segments += 1
        return dataclasses.replace(outcome, cached=True)
