"""The shape every layer of the engine's stack shares: built once around the next step, when it applies."""

from __future__ import annotations

from ._parts import Parts
from ._work import Outcome, Step, Work

__all__ = ["Layer"]


class Layer:
    """One concern of the request path. `applies` says whether this stack needs it at all (the unary stack has
    no use for a stream's backpressure, a service without a cache none for it), so a layer that does not apply
    costs nothing per call: it is not built."""

    def __init__(self, inner: Step, parts: Parts) -> None:
        self.inner = inner
        self.parts = parts

    @staticmethod
    def applies(parts: Parts) -> bool:
        return True

    async def __call__(self, work: Work) -> Outcome:
        raise NotImplementedError
