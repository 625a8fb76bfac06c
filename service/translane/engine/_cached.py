"""Layer: the segment cache: a hit is answered here, a complete translation of a miss is stored."""

from __future__ import annotations

import time

from ..cache import Entry, cache_key
from ._dedup import key_of
from ._layer import Layer
from ._parts import Parts
from ._work import Outcome, Step, Work

__all__ = ["Cached"]


class Cached(Layer):
    """From the cache when it holds the segment; else translated below, and stored when complete."""

    def __init__(self, inner: Step, parts: Parts) -> None:
        super().__init__(inner, parts)
        self.models = parts.config.models
        assert parts.cache is not None
        self.cache = parts.cache

    @staticmethod
    def applies(parts: Parts) -> bool:
        return parts.cache is not None

    async def __call__(self, work: Work) -> Outcome:
        cache = self.cache
        if not work.job.use_cache:
            return await self.inner(work)
        if not work.key:
            work = work.but(key=key_of(work, self.parts))
        model = self.models[work.job.model]
        entry = await cache.get(work.key, model.cache_ttl_s)
        cap = work.job.max_output_tokens
        if entry is not None and cap and entry.completion_tokens > cap:
            # The caller's cap holds on a hit as on a fresh call: an answer longer than the cap is not served
            # whole; the call goes to the provider and comes back cut at the cap (or fails, as a fresh one would).
            entry = None
        if entry is not None:
            served = self.models.get(entry.model, model)
            self.parts.metrics.cache_hit(served, entry.prompt_tokens, entry.completion_tokens)
            work.stats.cached_segments += 1
            if work.sink is not None:
                work.sink(entry.text)
            return Outcome(entry.text, entry.model, cached=True)
        self.parts.metrics.cache_miss(model)
        outcome = await self.inner(work)
        # A cut answer is never stored, nor one that came back as it was sent (an untranslated leak, likely).
        if not outcome.truncated and outcome.text.strip() != work.text.strip():
            self._store(work, outcome)
        return outcome

    def _store(self, work: Work, outcome: Outcome) -> None:
        """Keep a complete translation under the key of the model that served it."""
        job = work.job
        asked = self.models[job.model]
        served = self.models.get(outcome.model, asked)
        key = work.key
        if served is not asked:
            key = cache_key(served, job.source_language, job.target_language, job.glossary, job.mime_type, work.text)
        entry = Entry(outcome.text, served.name, outcome.prompt_tokens, outcome.completion_tokens, time.time())
        # Behind the reply: memory now, the store with the next batch (a store that fails never fails a call).
        self.cache.put(key, entry, served.cache_ttl_s)
