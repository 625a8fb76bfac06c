"""The simulated provider's configuration: per-model limits plus latency and fault knobs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from translane.config import API_STYLES, Config

__all__ = ["RUNTIME_FIELDS", "SimConfig", "SimModelLimits"]

# Shares of calls (0..1), and the knobs that POST /_sim/config may change while the simulator runs.
_RATES = (
    "error_rate",
    "rate_limit_rate",
    "spend_limit_rate",
    "reset_rate",
    "garbage_rate",
    "stall_rate",
    "untranslated_rate",
    "batch_fail_rate",
)
RUNTIME_FIELDS: tuple[str, ...] = (
    "ttft_s",
    "tokens_per_s",
    *_RATES,
    "stall_s",
    "reasoning_tokens",
    "think_in_content",
    "output_cap_tokens",
    "pseudo_translate",
    "answer_repeat",
    "batch_latency_s",
    "batch_tpd",
    "batch_hour_s",
    "batch_job_hours",
)
_DURATIONS = (
    "window_s",
    "ttft_s",
    "tokens_per_s",
    "stall_s",
    "reasoning_tokens",
    "output_cap_tokens",
    "answer_repeat",
    "batch_latency_s",
    "batch_tpd",
    "batch_job_hours",
)
# Must be > 0: they divide time.
_POSITIVE = ("window_s", "batch_day_s", "batch_hour_s", "batch_file_max_bytes", "batch_file_max_lines")


@dataclass(frozen=True, slots=True)
class SimModelLimits:
    """What the simulated provider enforces for one model."""

    rpm: int
    tpm: int
    max_concurrency: int
    max_input_tokens: int
    api_style: str

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "max_concurrency", "max_input_tokens"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"SimModelLimits.{name}: must be >= 1, got {value!r}")
        if self.api_style not in API_STYLES:
            raise ValueError(f"SimModelLimits.api_style: must be one of {API_STYLES}")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Limits per model id (as the client sends it), latency and fault injection."""

    models: Mapping[str, SimModelLimits]
    window_s: float = 60.0
    ttft_s: float = 0.0
    tokens_per_s: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    # Share of calls answered 429 SetLimitExceeded: the account's spending limit.
    spend_limit_rate: float = 0.0
    reset_rate: float = 0.0
    # Share of calls answered 200 with a body that is not JSON (a proxy's HTML error page, say).
    garbage_rate: float = 0.0
    stall_rate: float = 0.0
    stall_s: float = 30.0
    # Thinking models: tokens spent reasoning before each answer (billed as output), and whether the
    # reasoning comes inside `content` as <think>…</think> (1) or in `reasoning_content` (0).
    reasoning_tokens: float = 0.0
    think_in_content: float = 0.0
    # The model's own output limit, whatever the request asks (0 = none): past it, answers are cut.
    output_cap_tokens: float = 0.0
    # 1: answer in pseudo-target-language words a language identifier reads as the target (as a real
    # provider would); 0: the text as sent, marked "[sim SRC->TGT]" (an echo, for tests that assert exact text).
    pseudo_translate: float = 1.0
    # Share of calls answered with the input as it came, untranslated and unmarked (a leak to find).
    untranslated_rate: float = 0.0
    # Each answer holds its translation this many times over (whole times, at least once): a long answer
    # to a short question, for tests of what a long stream costs without an input as long.
    answer_repeat: float = 1.0
    # Ark Batch Chat (/api/v3/batch/chat/completions): each answer takes this long (Ark's "minutes",
    # scaled down), and each model may spend this many tokens (prompt + completion) per simulated day
    # of `batch_day_s` seconds before its calls get 429 QuotaExceeded (Ark's default TPD is 10B).
    batch_latency_s: float = 3.0
    batch_tpd: float = 10_000_000_000.0
    batch_day_s: float = 86_400.0
    # OpenAI Batches (/v1/batches) run on a compressed clock: one simulated hour lasts `batch_hour_s`
    # seconds, and a batch takes `batch_job_hours` simulated hours to process (past its 24h window it
    # expires). Defaults: a batch done in 0.1 s, a window of 2.4 s.
    batch_hour_s: float = 0.1
    batch_job_hours: float = 1.0
    # Share of OpenAI batches that fail as they start (status `failed`, no line run).
    batch_fail_rate: float = 0.0
    # OpenAI's limits on a batch input file.
    batch_file_max_bytes: int = 200 * 1024 * 1024
    batch_file_max_lines: int = 50_000
    retry_after: bool = True
    api_key: str = field(default="", repr=False)
    seed: int = 0

    def __post_init__(self) -> None:
        # Frozen, so callers can't mutate the mapping they handed in behind our back.
        object.__setattr__(self, "models", MappingProxyType(dict(self.models)))
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise ValueError(f"SimConfig.{name}: must be > 0, got {getattr(self, name)!r}")
        for name in _DURATIONS:
            if getattr(self, name) < 0:
                raise ValueError(f"SimConfig.{name}: must be >= 0, got {getattr(self, name)!r}")
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SimConfig.{name}: must be within [0, 1], got {value!r}")

    @classmethod
    def from_config(cls, cfg: Config, *, limit_scale: float = 1.0, **overrides: Any) -> SimConfig:
        """Limits from a translane models file, RPM/TPM scaled by `limit_scale`."""
        if limit_scale <= 0:
            raise ValueError(f"limit_scale: must be > 0, got {limit_scale!r}")
        # Keyed by wire_name: that is the model id translane puts on the wire.
        models = {
            m.wire_name: SimModelLimits(
                rpm=max(1, round(m.rpm * limit_scale)),
                tpm=max(1, round(m.tpm * limit_scale)),
                max_concurrency=m.max_concurrency,
                max_input_tokens=m.max_input_tokens,
                api_style=m.api_style,
            )
            for m in cfg.models.values()
        }
        return cls(models=models, **overrides)

    def with_runtime(self, changes: Mapping[str, Any]) -> SimConfig:
        """Copy with some RUNTIME_FIELDS changed; ValueError names a bad key or value."""
        clean: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in RUNTIME_FIELDS:
                known = ", ".join(RUNTIME_FIELDS)
                raise ValueError(f"{key}: not a runtime setting (one of {known})")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key}: expected a number, got {value!r}")
            clean[key] = float(value)
        return dataclasses.replace(self, **clean)

    def runtime(self) -> dict[str, float]:
        """The current RUNTIME_FIELDS values."""
        return {name: float(getattr(self, name)) for name in RUNTIME_FIELDS}
