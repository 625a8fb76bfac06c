"""A models file plus the environment read into a Config: the one builder, then what relates fields to each other."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import yaml

from ..settings import ConfigError, build, text
from ._objects import CacheConfig, Config, GovernorConfig, ModelConfig, ProviderConfig

__all__ = ["default_models_text", "load_config", "parse_config"]

MODELS_FILE_ENV = "TRANSLANE_MODELS_FILE"
# Every provider's calls go here instead (the simulated provider, a local vLLM...).
UPSTREAM_URL_ENV = "TRANSLANE_UPSTREAM_URL"
# Where the cache's SQLite file goes when `cache.path` is not set.
DATA_DIR_ENV = "TRANSLANE_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/translane"


def _check_governor(g: GovernorConfig) -> None:
    if g.stale_after_s < 2 * g.heartbeat_s:
        raise ConfigError("governor.stale_after_s: must be at least twice governor.heartbeat_s")
    if g.forget_after_s <= g.stale_after_s:
        raise ConfigError("governor.forget_after_s: must be more than governor.stale_after_s")
    if g.kind == "redis" and not g.redis_url:
        raise ConfigError("governor.redis_url: required when governor.kind is redis (or set TRANSLANE_REDIS_URL)")


def _check_models(cfg: Config) -> None:
    if not cfg.models:
        raise ConfigError("models: at least one model is required")
    if cfg.default_model not in cfg.models:
        raise ConfigError(f"default_model: {cfg.default_model!r} is not a configured model")
    for m in cfg.models.values():
        where = f"models.{m.name}"
        if m.max_input_tokens > m.context_tokens:
            raise ConfigError(f"{where}.max_input_tokens: larger than context_tokens")
        if m.provider not in cfg.providers:
            raise ConfigError(f"{where}.provider: unknown provider {m.provider!r}")
        if m.lane not in cfg.lanes:
            raise ConfigError(f"{where}.lane: unknown lane {m.lane!r}")
        for fb in m.fallbacks:
            if fb not in cfg.models or fb == m.name:
                raise ConfigError(f"{where}.fallbacks: {fb!r} is not another configured model")
        _check_batch_route(m, where)


def _check_batch_route(m: ModelConfig, where: str) -> None:
    if m.batch_api and m.api_style != "chat_completions":
        # Ark's translation model speaks only the Responses API, and batch use is not documented for it.
        raise ConfigError(
            f"{where}.batch_api: {m.batch_api!r} carries chat completions only; {m.name} speaks the "
            f"{m.api_style!r} API (remove batch_api, or set it on a chat_completions model)"
        )
    if m.batch_poll_min_s > m.batch_poll_max_s:
        raise ConfigError(f"{where}.batch_poll_min_s: larger than batch_poll_max_s ({m.batch_poll_max_s:g})")
    if not m.batch_api:
        tuned = [f for f in ("batch_url", "batch_upstream_model", "batch_tpd") if getattr(m, f)]
        if tuned:
            raise ConfigError(f"{where}.{tuned[0]}: set only with batch_api (the model has no batch route)")


def _provider(p: ProviderConfig, env: Mapping[str, str]) -> ProviderConfig:
    key = env.get(p.api_key_env, "") if p.api_key_env else ""
    return dataclasses.replace(p, base_url=p.base_url.rstrip("/"), api_key=key)


def _cache(c: CacheConfig, env: Mapping[str, str]) -> CacheConfig:
    path = c.path or str(Path(text(env, DATA_DIR_ENV, DEFAULT_DATA_DIR)) / "cache.sqlite3")
    return dataclasses.replace(c, path=str(Path(path).expanduser()))


def parse_config(data: Mapping[str, Any], env: Mapping[str, str], source: str = "<memory>") -> Config:
    """Validate a parsed models file plus environment into a Config."""
    cfg = build(Config, data, "", env, source=source)
    _check_governor(cfg.governor)
    first: ModelConfig | None = next(iter(cfg.models.values()), None)
    cfg = dataclasses.replace(
        cfg,
        default_model=cfg.default_model or (first.name if first else ""),
        providers=MappingProxyType({n: _provider(p, env) for n, p in cfg.providers.items()}),
        cache=_cache(cfg.cache, env),
    )
    _check_models(cfg)
    upstream = text(env, UPSTREAM_URL_ENV)
    return cfg.with_upstream_url(upstream) if upstream else cfg


def _read(path: Path) -> Mapping[str, Any]:
    raw = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(raw)
        else:
            data = tomllib.loads(raw)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from exc
    return cast(Mapping[str, Any], data or {})


def default_models_text() -> str:
    """The shipped default models file."""
    return resources.files("translane").joinpath("default_models.toml").read_text(encoding="utf-8")


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build the Config from `path` (or $TRANSLANE_MODELS_FILE, or the shipped default) and env."""
    env = os.environ if env is None else env
    chosen = path or text(env, MODELS_FILE_ENV)
    if chosen:
        p = Path(chosen)
        if not p.is_file():
            raise ConfigError(f"models file {str(p)!r} does not exist")
        return parse_config(_read(p), env, source=str(p))
    return parse_config(tomllib.loads(default_models_text()), env, source="<default>")
