"""Layer: a stream whose reader is behind holds its next call back here, before the call takes a lane slot."""

from __future__ import annotations

import math

from ._layer import Layer
from ._parts import Parts
from ._work import Outcome, Step, Work

__all__ = ["Room"]


class Room(Layer):
    """Asks the stream for room for the expected answer: as long as the text, or as many times longer as the
    model answers."""

    def __init__(self, inner: Step, parts: Parts) -> None:
        super().__init__(inner, parts)
        self.estimators = parts.estimators

    @staticmethod
    def applies(parts: Parts) -> bool:
        return parts.streaming

    async def __call__(self, work: Work) -> Outcome:
        assert work.sink is not None
        ratio = max(1.0, self.estimators[work.job.model].output_ratio)
        async with work.sink.room(math.ceil(len(work.text) * ratio)):
            return await self.inner(work)
