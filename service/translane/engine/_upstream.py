"""The innermost step: one call to the provider, whole or streamed into the caller's sink, or whole on the model's
batch route when admission put the call there."""

from __future__ import annotations

from ..upstream import Completion
from ._parts import Parts
from ._work import Outcome, Work

__all__ = ["Upstream"]


class Upstream:
    """Sends the work to the model admission chose, within what is left of the job's deadline."""

    def __init__(self, parts: Parts) -> None:
        self.upstream = parts.upstream
        self.clock = parts.clock

    async def __call__(self, work: Work) -> Outcome:
        attempt = work.call
        model, request = attempt.model, attempt.request
        assert model is not None and request is not None
        timeout = work.job.deadline - self.clock()
        if attempt.batch:
            completion = await self.upstream.batch_complete(model, request, timeout)
        elif work.sink is None:
            completion = await self.upstream.complete(model, request, timeout)
        else:
            last: Completion | None = None
            async for item in self.upstream.stream(model, request, timeout):
                if isinstance(item, str):
                    attempt.streamed.append(item)
                    work.sink(item)
                else:
                    last = item
            assert last is not None
            completion = last
        return Outcome(
            completion.text,
            model.name,
            completion.truncated,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            completion=completion,
        )
