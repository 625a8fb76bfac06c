"""Layer: text over the model's input limit is cut into pieces that fit, translated, and joined in order."""

from __future__ import annotations

from ..segment import split_text
from ..tasks import all_or_first_failure
from ..tokens import count_tokens
from ..upstream import SegmentCall, prompt_tokens
from ._layer import Layer
from ._parts import Parts
from ._work import Outcome, Step, Work, joined

__all__ = ["INPUT_HEADROOM", "Split"]

# Share of a model's input limit a piece may fill: our tokenizer is not the
# provider's, and the provider rejects over-long input outright.
INPUT_HEADROOM = 0.85


class Split(Layer):
    """Pieces under the limit (counting the prompt around them): all at once, or one after another in a stream,
    which keeps its deltas in order."""

    def __init__(self, inner: Step, parts: Parts) -> None:
        super().__init__(inner, parts)
        self.models = parts.config.models

    def limit(self, work: Work) -> int:
        """Tokens of text one call of the job's model may carry."""
        job = work.job
        model = self.models[job.model]
        around = prompt_tokens(
            model,
            SegmentCall("", job.target_language, job.source_language, glossary=job.glossary, mime_type=job.mime_type),
        )
        return max(16, int(model.max_input_tokens * INPUT_HEADROOM) - around)

    async def __call__(self, work: Work) -> Outcome:
        if work.job.messages:
            return await self.inner(work)  # a chat as written is never cut up (validation bounds its size)
        pieces = split_text(work.text, self.limit(work), count_tokens)
        if len(pieces) == 1:
            return await self.inner(work)
        if work.sink is None:
            return joined(
                pieces,
                await all_or_first_failure([self.inner(work.but(text=p.text)) for p in pieces]),
            )
        outs: list[Outcome] = []
        for p in pieces:
            outs.append(await self.inner(work.but(text=p.text)))
            if p.sep:
                work.sink(p.sep)
        return joined(pieces, outs)
