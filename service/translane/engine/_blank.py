"""Layer: a segment with nothing to translate comes back as it was, on every path, with no other layer reached."""

from __future__ import annotations

from ._layer import Layer
from ._work import Outcome, Work

__all__ = ["Blank"]


class Blank(Layer):
    """Whitespace-only text is its own translation."""

    async def __call__(self, work: Work) -> Outcome:
        if work.text.strip():
            return await self.inner(work)
        if work.sink is not None and work.text:
            work.sink(work.text)
        return Outcome(work.text, work.job.model)
