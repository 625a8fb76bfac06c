"""Which models a job may try, in what order, and whether a model can take a call now: decided here only."""

from __future__ import annotations

from collections.abc import Mapping

from ..budget import Budgets
from ..config import ModelConfig
from ..errors import ModelUnavailable, TranslaneError
from ..governor import Governor
from ..lanes import Clock

__all__ = ["Rotation"]


def _chain(models: Mapping[str, ModelConfig], model: str) -> tuple[ModelConfig, ...]:
    out: list[ModelConfig] = []
    todo = [model]
    while todo:
        m = models[todo.pop(0)]
        if m not in out:
            out.append(m)
            todo.extend(m.fallbacks)
    return tuple(out)


class Rotation:
    """The fallback chains (built once) and each model's standing: in rotation, not paused, budget left."""

    def __init__(self, models: Mapping[str, ModelConfig], governor: Governor, budgets: Budgets, clock: Clock) -> None:
        self.governor = governor
        self.budgets = budgets
        self._clock = clock
        self._chains = {name: _chain(models, name) for name in models}
        # A passthrough chat goes only to models that answer a chat as written.
        self._chat_chains = {
            name: tuple(m for m in chain if m.api_style == "chat_completions") for name, chain in self._chains.items()
        }

    def chain(self, model: str, chat: bool = False) -> tuple[ModelConfig, ...]:
        """The model and its fallbacks, in order, each once (with `chat`, only the chat models among them)."""
        return self._chat_chains[model] if chat else self._chains[model]

    def available(self, model: ModelConfig, now: float) -> bool:
        """In rotation today: not taken out by the provider's spending limit, and its daily budget not spent."""
        return self.governor.is_available(model.name, now) and not self.budgets.exhausted(model)

    def usable(self, model: ModelConfig, now: float) -> bool:
        """Can take a call now: available, and not paused by rate limits or an outage."""
        return self.available(model, now) and not self.governor.is_paused(model.name, now)

    def usable_after(self, chain: tuple[ModelConfig, ...], i: int, now: float) -> bool:
        """Whether a model after chain[i] could take a call now."""
        return any(self.usable(m, now) for m in chain[i + 1 :])

    def skip(self, chain: tuple[ModelConfig, ...], i: int, now: float) -> TranslaneError | None:
        """Why chain[i] is passed over before its lane is even asked (None: ask it). A paused model is
        passed over only when a later one can take the call; the last of a chain keeps its callers."""
        model = chain[i]
        refusal = self.budgets.refusal(model)
        if refusal is not None:
            return refusal
        if not self.governor.is_available(model.name, now):
            return ModelUnavailable(f"model {model.name} is out of rotation (provider spending limit)")
        if self.governor.is_paused(model.name, now) and self.usable_after(chain, i, now):
            return ModelUnavailable(f"model {model.name} is paused (provider rate limits or outage)")
        return None

    def fallback_ready(self, asked: str, failed: ModelConfig, chat: bool = False) -> bool:
        """True when the failed model is now paused or out, and another model of the chain can take the retry."""
        now = self._clock()
        if self.governor.is_available(failed.name, now) and not self.governor.is_paused(failed.name, now):
            return False
        return any(m is not failed and self.usable(m, now) for m in self.chain(asked, chat))
