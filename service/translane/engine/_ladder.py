"""Layer: the truncation ladder: a translation cut at the output limit is tried again with the model's whole
output budget, then in halves; never a silent cut."""

from __future__ import annotations

from ..errors import OutputTruncated
from ..segment import split_text
from ..tasks import all_or_first_failure
from ..tokens import count_tokens
from ._layer import Layer
from ._parts import Parts
from ._work import Outcome, Step, Work, joined

__all__ = ["MAX_SPLIT_DEPTH", "Ladder"]

# A piece cut at the output limit is halved at most this many times before the segment fails.
MAX_SPLIT_DEPTH = 2


class Ladder(Layer):
    """What still cannot complete fails the segment, or comes back marked truncated when the caller allows it."""

    def __init__(self, inner: Step, parts: Parts) -> None:
        super().__init__(inner, parts)
        self.models = parts.config.models

    async def __call__(self, work: Work) -> Outcome:
        job = work.job
        model = self.models[job.model]
        budget = min(job.max_output_tokens or model.max_output_tokens, model.max_output_tokens)
        outcome = await self.inner(work.but(max_output_tokens=budget))
        if not outcome.truncated or job.allow_truncated:
            return outcome
        if work.sink is not None:
            # Deltas already reached the caller and cannot be taken back: say so, do not retry.
            raise OutputTruncated(
                f"segments[{work.index}]: the translation was cut at the model's output limit ({budget} tokens); "
                "send the segment in smaller pieces, or set allow_truncated"
            )
        if budget < model.max_output_tokens:
            work.stats.retries += 1
            outcome = await self.inner(work.but(max_output_tokens=model.max_output_tokens))
            if not outcome.truncated:
                return outcome
        text = work.text
        pieces = split_text(text, max(8, count_tokens(text) // 2), count_tokens) if work.depth < MAX_SPLIT_DEPTH else []
        if len(pieces) > 1:
            work.stats.retries += 1
            halves = [work.but(text=p.text, depth=work.depth + 1) for p in pieces]
            return joined(pieces, await all_or_first_failure([self(h) for h in halves]))
        raise OutputTruncated(
            f"segments[{work.index}]: the translation was cut at the model's output limit "
            f"({model.max_output_tokens} tokens) even in smaller pieces"
            + (" (the model spent its budget reasoning)" if not outcome.text.strip() else "")
            + "; set allow_truncated to accept a cut translation"
        )
