"""Estimating a call's tokens before it is made, and learning the estimate from real usage."""

from __future__ import annotations

import math

__all__ = ["TokenEstimator"]


class TokenEstimator:
    """Per-model guess of prompt and completion tokens, corrected by settled usage.

    The guess errs high on purpose: an over-estimate is refunded when the call
    settles, an under-estimate becomes debt the next calls wait for.
    """

    __slots__ = ("max_output_tokens", "output_ratio", "prompt_ratio", "samples")

    # Headroom over the learned ratios, and how fast they follow new usage.
    MARGIN = 1.1
    ALPHA = 0.05
    WARM_SAMPLES = 10
    # One call's ratio counts as at most STEP times (or 1/STEP of) the ratio learned so far, and
    # never below FLOOR: an abnormal answer (a runaway generation, a provider's miscount) nudges
    # the estimate instead of swinging it, while a real shift still wins over the calls that follow.
    STEP = 2.0
    FLOOR = 0.01

    def __init__(self, output_ratio: float, max_output_tokens: int) -> None:
        self.output_ratio = output_ratio
        self.prompt_ratio = 1.0
        self.max_output_tokens = max_output_tokens
        self.samples = 0

    def estimate(self, counted_prompt: int, max_output: int = 0) -> int:
        """Tokens to reserve for a call whose prompt counts `counted_prompt` locally."""
        cap = min(max_output or self.max_output_tokens, self.max_output_tokens)
        # Once the ratios are learned the headroom shrinks: every token of
        # over-estimate on a call in flight is a token the refund hands back
        # while the provider still counts the call (see governor.py).
        if self.learned:
            prompt_margin, output_margin, extra = 1.02, 1.05, 4
        else:
            prompt_margin, output_margin, extra = self.MARGIN, self.MARGIN, 16
        prompt = math.ceil(counted_prompt * max(1.0, self.prompt_ratio) * prompt_margin)
        output = min(cap, math.ceil(counted_prompt * self.output_ratio * output_margin) + extra)
        return prompt + output

    @property
    def learned(self) -> bool:
        """True once enough real usage has been seen for the ratios to be trusted."""
        return self.samples >= self.WARM_SAMPLES

    def learn(self, counted_prompt: int, prompt_tokens: int, completion_tokens: int) -> None:
        """Fold one call's real usage into the ratios."""
        if counted_prompt <= 0:
            return
        a = self.ALPHA if self.learned else 1.0 / (self.samples + 1)
        self.samples += 1
        self.prompt_ratio += a * (self._bounded(prompt_tokens / counted_prompt, self.prompt_ratio) - self.prompt_ratio)
        self.output_ratio += a * (
            self._bounded(completion_tokens / counted_prompt, self.output_ratio) - self.output_ratio
        )

    def _bounded(self, observed: float, learned: float) -> float:
        return min(max(observed, learned / self.STEP, self.FLOOR), max(learned, self.FLOOR) * self.STEP)
