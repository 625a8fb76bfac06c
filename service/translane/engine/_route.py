"""Layer: a job's line whose completion window is long enough for a batch route of its chain may take it: it is
marked so, and its deadline becomes the window's end (a batch answer may take many minutes)."""

from __future__ import annotations

import dataclasses

from ..batch_route import BatchRoutes
from ._layer import Layer
from ._parts import Parts
from ._work import Outcome, Step, Work

__all__ = ["Route"]


class Route(Layer):
    """Which route a call takes is admission's choice, per attempt (the route's quota may be spent by then); this
    layer only opens the way, above the retries, so that they too count to the window's end."""

    def __init__(self, inner: Step, parts: Parts) -> None:
        super().__init__(inner, parts)
        self.models = parts.config.models

    @staticmethod
    def applies(parts: Parts) -> bool:
        # Batch routes do not stream.
        return parts.batch is not None and not parts.streaming

    async def __call__(self, work: Work) -> Outcome:
        job = work.job
        if not job.window_end or work.batch:
            return await self.inner(work)
        chain = self.parts.rotation.chain(job.model, bool(job.messages))
        if not any(BatchRoutes.takes(m, job.completion_window_s) for m in chain):
            return await self.inner(work)
        job = dataclasses.replace(job, deadline=max(job.deadline, job.window_end))
        w = work
        routed = Work(job, w.index, w.text, w.stats, w.sink, w.key, w.max_output_tokens, w.depth, batch=True)
        return await self.inner(routed)
