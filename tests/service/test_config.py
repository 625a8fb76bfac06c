"""The models file: validated once, errors name the field, keys come only from the environment."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from translane.config import ConfigError, default_models_text, load_config, parse_config

SLOW = "doubao-seed-translation-250915"


def shipped() -> dict[str, Any]:
    return tomllib.loads(default_models_text())


def test_shipped_file_describes_the_ark_models() -> None:
    cfg = load_config(env={})
    slow = cfg.models[SLOW]
    assert (slow.api_style, slow.lane, slow.rpm, slow.tpm, slow.max_concurrency) == ("responses", "slow", 5000,
                                                                                      500000, 80)
    assert (slow.max_input_tokens, slow.max_output_tokens, slow.context_tokens) == (1000, 3000, 4000)
    assert (slow.input_price_per_mtok, slow.output_price_per_mtok, slow.currency) == (1.2, 3.6, "CNY")
    assert cfg.lanes["slow"].max_concurrency == 80 and cfg.lanes["fast"].max_concurrency == 500
    fast = cfg.models["deepseek-v3-2-251201"]
    assert (fast.api_style, fast.lane, fast.rpm, fast.max_concurrency) == ("chat_completions", "fast", 30000, 500)
    assert slow.fallbacks  # a fallback order exists
    assert cfg.default_model == SLOW


def test_key_comes_from_the_named_variable_and_never_shows() -> None:
    cfg = load_config(env={"ARK_API_KEY": "sk-very-secret"})
    provider = cfg.providers["ark"]
    assert provider.api_key == "sk-very-secret" and provider.api_key_env == "ARK_API_KEY"
    assert "sk-very-secret" not in repr(cfg) and "sk-very-secret" not in str(provider)
    assert "sk-very-secret" not in default_models_text()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["models"][SLOW].update(rpm=-5), f"models.{SLOW}.rpm: must be > 0, got -5"),
        (lambda d: d["models"][SLOW].update(rpm="lots"), f"models.{SLOW}.rpm: expected int"),
        (lambda d: d["models"][SLOW].update(rmp=5), f"models.{SLOW}.rmp: unknown field"),
        (lambda d: d["models"][SLOW].pop("tpm"), f"models.{SLOW}.tpm: required field is missing"),
        (lambda d: d["models"][SLOW].update(api_style="soap"), f"models.{SLOW}.api_style: must be one of"),
        (lambda d: d["models"][SLOW].update(provider="acme"), f"models.{SLOW}.provider: unknown provider 'acme'"),
        (lambda d: d["models"][SLOW].update(lane="medium"), f"models.{SLOW}.lane: unknown lane 'medium'"),
        (lambda d: d["models"][SLOW].update(fallbacks=["nope"]), f"models.{SLOW}.fallbacks: 'nope'"),
        (lambda d: d["providers"]["ark"].update(base_url="ark.example"), "providers.ark.base_url: must start with"),
        (lambda d: d["lanes"]["slow"].update(max_concurrency=0), "lanes.slow.max_concurrency: must be > 0"),
        (lambda d: d.update(default_model="gpt-nope"), "default_model: 'gpt-nope' is not a configured model"),
        (lambda d: d["governor"].update(kind="redis"), "governor.redis_url: required"),
        (lambda d: d["models"][SLOW].update(tpm=2**60), f"models.{SLOW}.tpm: must be at most 9007199254740992"),
        (lambda d: d["models"][SLOW].update(max_concurrency=2**32), f"models.{SLOW}.max_concurrency: must be at most"),
        (lambda d: d["server"].update(interactive_max_queue_wait_s=0), "server.interactive_max_queue_wait_s: must be"),
        (lambda d: d["governor"].update(stale_after_s=0.15), "governor.stale_after_s: must be at least twice"),
        (lambda d: d["governor"].update(forget_after_s=0.5), "governor.forget_after_s: must be more than"),
    ],
)
def test_bad_config_names_the_field(mutate: Any, message: str) -> None:
    data = shipped()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    assert message in str(info.value)


def test_yaml_file_and_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(shipped()))
    env = {"TRANSLANE_GRPC_PORT": "6000", "TRANSLANE_UPSTREAM_URL": "http://127.0.0.1:9/v1/",
           "TRANSLANE_DEFAULT_MODEL": "deepseek-v3-2-251201", "TRANSLANE_GOVERNOR": "redis",
           "TRANSLANE_REDIS_URL": "redis://127.0.0.1:1/0", "TRANSLANE_REPLICAS": "3"}
    cfg = load_config(path, env=env)
    assert cfg.server.port == 6000
    assert cfg.providers["ark"].base_url == "http://127.0.0.1:9/v1"
    assert cfg.default_model == "deepseek-v3-2-251201"
    assert (cfg.governor.kind, cfg.governor.replicas) == ("redis", 3)


def test_the_command_fails_at_start_with_the_field(tmp_path: Path) -> None:
    data = shipped()
    data["models"][SLOW]["tpm"] = 0
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "-m", "translane.cli", "--models-file", str(path), "serve", "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"models.{SLOW}.tpm: must be > 0, got 0" in proc.stderr
    missing = subprocess.run([sys.executable, "-m", "translane.cli", "--models-file", str(tmp_path / "nope.toml"),
                              "serve"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
