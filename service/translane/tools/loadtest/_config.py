"""The load test's settings: one immutable value from flags and an optional TOML/JSON file."""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["ARRIVALS", "LADDERS", "LoadConfig", "LoadConfigError", "Target", "load_config_file"]

ARRIVALS = ("constant", "poisson", "gamma")
Arrival = Literal["constant", "poisson", "gamma"]
# What a ladder's values are: concurrencies (closed loop), or open-loop rates per second, per minute, in tokens.
LADDERS = ("concurrency", "rate", "rpm", "tpm")
Ladder = Literal["concurrency", "rate", "rpm", "tpm"]


class LoadConfigError(ValueError):
    """A bad setting; the message names it."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go: an OpenAI-compatible chat completions URL, or this service over gRPC."""

    name: str
    url: str = ""
    grpc: str = ""

    def __post_init__(self) -> None:
        if bool(self.url) == bool(self.grpc):
            raise LoadConfigError("target: give exactly one of --url or --grpc")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise LoadConfigError(f"url: must start with http:// or https://, got {self.url[:60]!r}")

    @property
    def label(self) -> str:
        return self.url or f"grpc://{self.grpc}"


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """Everything one run needs. Build with `LoadConfig.build` (validates), or directly in tests."""

    targets: tuple[Target, ...]
    model: str = ""
    # Shape: closed loop when `concurrency` is set, else open loop at `rate_per_s`.
    concurrency: int = 0
    rate_per_s: float = 0.0
    # Open loop in tokens per minute: the rate is planned from the prompts' size.
    tpm: float = 0.0
    arrival: Arrival = "constant"
    burstiness: float = 1.0
    # In open loop, an optional cap on requests in flight (0 = none).
    max_in_flight: int = 0
    duration_s: float = 0.0
    requests: int = 0
    # A ladder: one step per value, in the unit `steps_of` names. The values are the shape, so a ladder takes no
    # concurrency, rate_per_s or tpm of its own (they would be ignored: refused).
    steps: tuple[float, ...] = ()
    steps_of: Ladder = "concurrency"
    # Stop the remaining steps once a step's share of 429 / 5xx / timeouts passes this.
    stop_error_share: float = 1.0
    stream: bool = False
    timeout_s: float = 60.0
    max_tokens: int = 0
    target_language: str = "zh"
    priority: str = "interactive"
    # Requests: a data file (CSV / JSONL) filling {{column}} placeholders in the body, or synthetic prompts.
    data: str = ""
    body: Mapping[str, Any] | None = None
    prompt_tokens: int = 64
    prompt_tokens_spread: int = 0
    # Measure the service's segment cache on purpose: synthetic prompts repeat from run to run, and gRPC
    # requests may be served from the cache. Off (the default), every synthetic prompt is new to the cache
    # and gRPC requests skip it, so a run measures the provider path, not what an earlier run stored.
    cache: bool = False
    task_id_prefix: str = "loadtest"
    run_id: str = ""
    # Keys come from the environment variable named here, never from the file or the flags.
    api_key_env: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    # Prices per million tokens, for targets whose usage carries no cost.
    input_price_per_mtok: float = 0.0
    output_price_per_mtok: float = 0.0
    slo_ttft_ms: float = 0.0
    slo_e2e_ms: float = 0.0
    out: str = ""
    plot: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.targets:
            raise LoadConfigError("target: give --url or --grpc")
        if self.concurrency < 0 or self.max_in_flight < 0:
            raise LoadConfigError("concurrency: must be >= 0")
        if self.rate_per_s < 0 or self.tpm < 0:
            raise LoadConfigError("rate: must be >= 0")
        shapes = sum(bool(x) for x in (self.concurrency, self.rate_per_s, self.tpm))
        if shapes == 0 and not self.steps:
            raise LoadConfigError("shape: give --concurrency, --rate/--rpm or --tpm (or --steps)")
        if shapes > 1:
            raise LoadConfigError("shape: give only one of --concurrency, --rate/--rpm and --tpm")
        if self.steps_of not in LADDERS:
            raise LoadConfigError(f"steps_of: must be one of {', '.join(LADDERS)}, got {self.steps_of!r}")
        if self.steps and shapes:
            raise LoadConfigError(
                "steps: a ladder's values are its shape, in the unit --steps-of names (concurrency, the default; "
                "rate, rpm or tpm for an open loop): --concurrency, --rate/--rpm or --tpm beside --steps would be "
                "ignored; drop it (600 then 1200 RPM: --steps-of rpm --steps 600,1200)"
            )
        if self.steps_of != "concurrency" and not self.steps:
            raise LoadConfigError("steps_of: names the unit of --steps; give --steps too")
        if self.duration_s <= 0 and self.requests <= 0:
            raise LoadConfigError("duration: give --duration and/or --requests")
        if self.arrival not in ARRIVALS:
            raise LoadConfigError(f"arrival: must be one of {', '.join(ARRIVALS)}, got {self.arrival!r}")
        if not self.burstiness > 0 or not math.isfinite(self.burstiness):
            raise LoadConfigError("burstiness: must be > 0")
        if not 0 <= self.stop_error_share <= 1:
            raise LoadConfigError("stop_error_share: must be within [0, 1]")
        if not self.timeout_s > 0:
            raise LoadConfigError("timeout: must be > 0")
        if self.priority not in ("interactive", "batch"):
            raise LoadConfigError("priority: must be interactive or batch")
        if self.slo_ttft_ms and not self.stream:
            raise LoadConfigError("slo_ttft_ms: needs --stream (a whole answer has no first token to time)")
        if any(not s > 0 for s in self.steps):
            raise LoadConfigError("steps: every value must be > 0")

    @property
    def closed_loop(self) -> bool:
        return self.concurrency > 0 or (bool(self.steps) and self.steps_of == "concurrency")

    def api_key(self) -> str:
        """The key, read from the named environment variable at the moment it is needed."""
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    def __repr__(self) -> str:  # never a key, never a header value
        return f"LoadConfig(targets={[t.label for t in self.targets]}, model={self.model!r})"


def load_config_file(path: str) -> dict[str, Any]:
    """A TOML or JSON file's settings, keyed as LoadConfig's fields."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise LoadConfigError(f"config: cannot read {path!r}: {exc.strerror}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise LoadConfigError(f"config: cannot parse {path!r}: {exc}") from None
    if not isinstance(data, dict):
        raise LoadConfigError("config: expected a table of settings")
    known = set(LoadConfig.__dataclass_fields__) | {"url", "grpc", "compare"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise LoadConfigError(f"config.{unknown[0]}: unknown setting")
    return data
