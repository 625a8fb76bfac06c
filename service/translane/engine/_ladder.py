"""Layer: the truncation ladder: a translation cut at the output limit is tried again with the model's whole
output budget, then in halves; never a silent cut, and never a refusal of a later rung in place of the cut.

What a segment may cost: its first call, the whole budget once when the caller's cap was lower, then two
halves and four quarters, each a ladder of its own: at most 7 calls (14 under a cap below the model's
limit), each with its own retries of provider failures."""

from __future__ import annotations

from ..errors import ModelUnavailable, OutputTruncated, Overloaded
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
        try:
            return await self._climb(work, model.max_output_tokens, budget, outcome)
        except (Overloaded, ModelUnavailable) as exc:
            # A later rung that could not be sent (its queue wait, a paused model, a spent budget) does not
            # replace the news: the segment was cut, and that is what the caller must hear.
            raise OutputTruncated(
                f"segments[{work.index}]: the translation was cut at the model's output limit ({budget} tokens), "
                f"and trying it again in smaller pieces could not go on ({exc.message}); send the segment in "
                "smaller pieces, or set allow_truncated"
            ) from exc

    async def _climb(self, work: Work, most: int, budget: int, outcome: Outcome) -> Outcome:
        """The rungs after a cut: the model's whole output budget, then halves (each a ladder of its own)."""
        if budget < most:
            work.stats.retries += 1
            outcome = await self.inner(work.but(max_output_tokens=most))
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
            f"({most} tokens) even in smaller pieces"
            + (" (the model spent its budget reasoning)" if not outcome.text.strip() else "")
            + "; set allow_truncated to accept a cut translation"
        )
