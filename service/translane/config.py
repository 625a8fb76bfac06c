"""The service's configuration: one immutable value built once from a models file and the environment."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

__all__ = [
    "CacheConfig",
    "Config",
    "ConfigError",
    "GovernorConfig",
    "LaneConfig",
    "ModelConfig",
    "ProviderConfig",
    "ServerConfig",
    "load_config",
    "parse_config",
]

ApiStyle = Literal["chat_completions", "responses"]
API_STYLES: tuple[str, ...] = ("chat_completions", "responses")
REASONING: tuple[str, ...] = ("", "disabled", "minimal", "low", "medium", "high")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending field."""


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    base_url: str
    api_key_env: str
    timeout_s: float = 120.0
    connect_timeout_s: float = 5.0
    # A stream that sends nothing for this long has stalled: the call fails (and may be retried).
    stream_idle_timeout_s: float = 30.0
    max_retries: int = 4
    retry_base_s: float = 0.2
    retry_max_s: float = 10.0
    # Resolved from the environment variable `api_key_env`; never printed.
    api_key: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class LaneConfig:
    name: str
    max_concurrency: int
    max_queue: int = 20000


@dataclass(frozen=True, slots=True)
class ModelConfig:
    name: str
    provider: str
    api_style: ApiStyle
    lane: str
    rpm: int
    tpm: int
    max_concurrency: int
    max_input_tokens: int
    max_output_tokens: int
    context_tokens: int
    input_price_per_mtok: float = 0.0
    output_price_per_mtok: float = 0.0
    cached_price_per_mtok: float = 0.0
    currency: str = "CNY"
    fallbacks: tuple[str, ...] = ()
    # The model id sent upstream (an Ark endpoint id, say); defaults to `name`.
    upstream_model: str = ""
    # Extra JSON fields merged into every upstream request body.
    extra_body: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # First guess of completion/prompt tokens, refined from real usage at run time.
    output_ratio: float = 1.3
    # Target languages the model accepts; empty means any language translane knows.
    languages: tuple[str, ...] = ()
    # How long a cached translation of this model is served; 0 = until evicted.
    cache_ttl_s: float = 0.0
    # What the model may spend in the provider's day (0 = no budget): past it, its work falls back.
    daily_token_budget: int = 0
    daily_cost_budget: float = 0.0
    # Thinking models (chat completions): "" leaves the provider's default; "disabled" sends
    # `thinking: {type: disabled}`; minimal/low/medium/high send `reasoning_effort`.
    reasoning: str = ""

    @property
    def wire_name(self) -> str:
        return self.upstream_model or self.name

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """Price of a call at this model's configured rates."""
        uncached = max(0, prompt_tokens - cached_tokens)
        return (
            uncached * self.input_price_per_mtok
            + cached_tokens * (self.cached_price_per_mtok or self.input_price_per_mtok)
            + completion_tokens * self.output_price_per_mtok
        ) / 1_000_000


@dataclass(frozen=True, slots=True)
class GovernorConfig:
    kind: Literal["local", "redis"] = "local"
    window_s: float = 60.0
    burst_fraction: float = 0.002
    jitter_allowance_s: float = 0.2
    # On a provider 429: multiply the admitted rate by this, pause for Retry-After.
    backoff_factor: float = 0.5
    min_rate_fraction: float = 0.1
    # Share of the full rate regained per second after a backoff.
    recover_per_s: float = 0.05
    default_pause_s: float = 1.0
    # Time a model stays out of rotation after the provider's spending-limit error.
    disable_s: float = 600.0
    # A provider that fails this many calls in a row (5xx, refused or reset connections) is taken
    # to be down: its model pauses, so work goes to the fallbacks at once instead of retrying into
    # the outage. The pause starts at provider_down_pause_s and doubles while the first call after
    # each pause fails again, up to provider_down_max_pause_s; a success ends it.
    provider_down_after_failures: int = 3
    provider_down_pause_s: float = 1.0
    provider_down_max_pause_s: float = 5.0
    redis_url: str = ""
    redis_prefix: str = "translane"
    # Replicas sharing the limit: each takes 1/replicas of it when Redis is unreachable.
    replicas: int = 1
    # Each replica on the shared buckets writes its liveness to Redis this often. One that has
    # not for stale_after_s (a replica cut off from Redis, spending its 1/replicas locally) has
    # its share taken out of the shared rate; one not seen for forget_after_s is forgotten. A
    # replica that loses Redis waits until the others must count it out before it spends, so
    # stale_after_s is also the pause every replica takes once when Redis goes down: short,
    # but several heartbeats long, so a busy event loop is not mistaken for a partition.
    heartbeat_s: float = 0.1
    stale_after_s: float = 0.5
    forget_after_s: float = 600.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    grace_s: float = 10.0
    max_segments: int = 1000
    max_segment_chars: int = 100_000
    # Deadline applied when a caller sets none.
    default_deadline_s: float = 300.0
    # The longest a call may wait in a lane before it starts, by priority, whatever
    # deadline the caller states: a request that cannot start within it is refused
    # at once with a retry hint. A web page's paragraph is worthless to its reader
    # after a few seconds, and 10 s of queue is still ~800 calls of the slow
    # model's 5,000 RPM, enough that the queue never runs dry between refills.
    interactive_max_queue_wait_s: float = 10.0
    # Batch work waits behind interactive work; its runner follows the retry hints.
    batch_max_queue_wait_s: float = 300.0
    # Text a stream may hold for a reader that is behind (its calls under way counted at their
    # input's length): past it the stream starts no new call until the reader catches up.
    # About 100 pages; the translation model's pieces are ~3,000 characters, so a fast reader's
    # stream still runs ~80 calls at once, as many as the slow lane has slots.
    stream_buffer_chars: int = 262_144
    # Prometheus metrics port; 0 disables the endpoint.
    metrics_port: int = 0
    # A glossary rides in every call's prompt: a few hundred terms, each a word or a phrase.
    max_glossary_entries: int = 200
    max_glossary_term_chars: int = 200
    # gRPC over TLS: the service's certificate chain and key (PEM files, read again on SIGHUP). With
    # tls_client_ca_file set, every caller must present a certificate signed by that CA (mTLS).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # Changed certificate files are noticed at the next handshake this long after the last look.
    tls_reload_check_s: float = 10.0
    # Plaintext on an address other than loopback only when asked for by name: whoever reaches the
    # port spends the provider's budget.
    allow_insecure: bool = False
    # A plaintext port that serves only grpc.health.v1, for probes that speak no TLS (the kubelet's
    # gRPC probes); 0 = none. It answers health and nothing else.
    health_port: int = 0

    def __post_init__(self) -> None:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("server.tls_cert_file and server.tls_key_file: set both or neither")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ConfigError("server.tls_client_ca_file: mTLS needs server.tls_cert_file and tls_key_file too")

    def check_listen(self) -> None:
        """ConfigError unless gRPC may be served where configured: plaintext only on loopback, unless asked.

        Checked when the server starts, after the command line's --host / --insecure, not when the file is
        read: the same models file also serves `translane sim`, `up` and the tools, which serve no gRPC from it.
        """
        if not self.tls and not self.allow_insecure and not is_loopback(self.host):
            raise ConfigError(
                f"server.host: {self.host[:64]!r} is not a loopback address and no TLS certificate is set "
                "(server.tls_cert_file / TRANSLANE_TLS_CERT_FILE); to serve plaintext there on purpose set "
                "server.allow_insecure = true (TRANSLANE_GRPC_INSECURE=1, or serve --insecure)"
            )

    @property
    def tls(self) -> bool:
        """True when the gRPC port speaks TLS."""
        return bool(self.tls_cert_file)


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach ("localhost", 127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class CacheConfig:
    # sqlite: an in-process LRU in front of a file that survives restarts; memory: the LRU alone; off.
    kind: Literal["sqlite", "memory", "off"] = "sqlite"
    # The SQLite file; default $TRANSLANE_DATA_DIR/cache.sqlite3 (TRANSLANE_DATA_DIR default ~/.cache/translane).
    path: str = ""
    max_entries: int = 100_000


@dataclass(frozen=True, slots=True)
class Config:
    default_model: str
    server: ServerConfig
    governor: GovernorConfig
    providers: Mapping[str, ProviderConfig]
    lanes: Mapping[str, LaneConfig]
    models: Mapping[str, ModelConfig]
    source: str = "<memory>"
    cache: CacheConfig = field(default_factory=CacheConfig)
    # The provider's day for daily budgets turns at midnight here (Ark: Beijing time).
    budget_timezone: str = "Asia/Shanghai"

    def model(self, name: str) -> ModelConfig | None:
        return self.models.get(name or self.default_model)

    def with_upstream_url(self, url: str) -> Config:
        """Copy with every provider pointed at `url` (the simulated provider, say)."""
        providers = {n: dataclasses.replace(p, base_url=url.rstrip("/")) for n, p in self.providers.items()}
        return dataclasses.replace(self, providers=MappingProxyType(providers))


T = TypeVar("T")
_UINT32_MAX = 2**32 - 1
# Far past any provider's limit, and exact as a float (the governor's arithmetic).
_LIMIT_MAX = 2**53


class _Table:
    """A dict from the file read field by field, so errors can name the field."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a table, got {type(data).__name__}")
        self.data: Mapping[str, Any] = data
        self.path = path
        self.seen: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type[T], default: T | None = None) -> T:
        self.seen.add(key)
        if key not in self.data:
            if default is None:
                raise ConfigError(f"{self._name(key)}: required field is missing")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{self._name(key)}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
        return value

    def positive(self, key: str, kind: type[T], default: T | None = None) -> T:
        value = self.get(key, kind, default)
        if value <= 0:  # type: ignore[operator]
            raise ConfigError(f"{self._name(key)}: must be > 0, got {value!r}")
        return value

    def non_negative(self, key: str, kind: type[T], default: T | None = None) -> T:
        value = self.get(key, kind, default)
        if value < 0:  # type: ignore[operator]
            raise ConfigError(f"{self._name(key)}: must be >= 0, got {value!r}")
        return value

    def choice(self, key: str, options: tuple[str, ...], default: str | None = None) -> str:
        value = self.get(key, str, default)
        if value not in options:
            raise ConfigError(f"{self._name(key)}: must be one of {', '.join(options)}; got {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list, [])
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self._name(key)}: expected a list of strings")
        return tuple(value)

    def table(self, key: str) -> _Table:
        self.seen.add(key)
        return _Table(self.data.get(key, {}), self._name(key))

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise ConfigError(f"{self._name(unknown[0])}: unknown field")


def _server(t: _Table, env: Mapping[str, str]) -> ServerConfig:
    d = ServerConfig()
    # Built once with the environment's overrides in: a file that binds 0.0.0.0 is valid with the
    # certificate the environment names.
    fields: dict[str, Any] = dict(
        host=t.get("host", str, d.host),
        port=t.non_negative("port", int, d.port),
        grace_s=t.non_negative("grace_s", float, d.grace_s),
        max_segments=t.positive("max_segments", int, d.max_segments),
        max_segment_chars=t.positive("max_segment_chars", int, d.max_segment_chars),
        default_deadline_s=t.positive("default_deadline_s", float, d.default_deadline_s),
        interactive_max_queue_wait_s=t.positive("interactive_max_queue_wait_s", float, d.interactive_max_queue_wait_s),
        batch_max_queue_wait_s=t.positive("batch_max_queue_wait_s", float, d.batch_max_queue_wait_s),
        stream_buffer_chars=t.positive("stream_buffer_chars", int, d.stream_buffer_chars),
        metrics_port=t.non_negative("metrics_port", int, d.metrics_port),
        max_glossary_entries=t.positive("max_glossary_entries", int, d.max_glossary_entries),
        max_glossary_term_chars=t.positive("max_glossary_term_chars", int, d.max_glossary_term_chars),
        tls_cert_file=t.get("tls_cert_file", str, d.tls_cert_file),
        tls_key_file=t.get("tls_key_file", str, d.tls_key_file),
        tls_client_ca_file=t.get("tls_client_ca_file", str, d.tls_client_ca_file),
        tls_reload_check_s=t.non_negative("tls_reload_check_s", float, d.tls_reload_check_s),
        allow_insecure=t.get("allow_insecure", bool, d.allow_insecure),
        health_port=t.non_negative("health_port", int, d.health_port),
    )
    t.finish()
    for var, name in (
        ("TRANSLANE_GRPC_HOST", "host"),
        ("TRANSLANE_TLS_CERT_FILE", "tls_cert_file"),
        ("TRANSLANE_TLS_KEY_FILE", "tls_key_file"),
        ("TRANSLANE_TLS_CLIENT_CA_FILE", "tls_client_ca_file"),
    ):
        if var in env:
            fields[name] = env[var]
    for var, name in (
        ("TRANSLANE_GRPC_PORT", "port"),
        ("TRANSLANE_METRICS_PORT", "metrics_port"),
        ("TRANSLANE_HEALTH_PORT", "health_port"),
    ):
        if var in env:
            fields[name] = _env_int(env, var)
    if "TRANSLANE_GRPC_INSECURE" in env:
        fields["allow_insecure"] = _env_flag(env, "TRANSLANE_GRPC_INSECURE")
    return ServerConfig(**fields)


def _env_flag(env: Mapping[str, str], var: str) -> bool:
    value = env[var].strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{var}: expected 1/0, true/false, yes/no or on/off, got {env[var][:20]!r}")


def _env_int(env: Mapping[str, str], var: str) -> int:
    try:
        value = int(env[var])
    except ValueError:
        raise ConfigError(f"{var}: expected an integer, got {env[var]!r}") from None
    if value < 0:
        raise ConfigError(f"{var}: must be >= 0, got {value}")
    return value


def _governor(t: _Table, env: Mapping[str, str]) -> GovernorConfig:
    d = GovernorConfig()
    kind = env.get("TRANSLANE_GOVERNOR") or t.choice("kind", ("local", "redis"), d.kind)
    t.seen.add("kind")
    if kind not in ("local", "redis"):
        raise ConfigError(f"TRANSLANE_GOVERNOR: must be local or redis, got {kind!r}")
    cfg = GovernorConfig(
        kind=cast(Literal["local", "redis"], kind),
        window_s=t.positive("window_s", float, d.window_s),
        burst_fraction=t.positive("burst_fraction", float, d.burst_fraction),
        jitter_allowance_s=t.non_negative("jitter_allowance_s", float, d.jitter_allowance_s),
        backoff_factor=t.positive("backoff_factor", float, d.backoff_factor),
        min_rate_fraction=t.positive("min_rate_fraction", float, d.min_rate_fraction),
        recover_per_s=t.positive("recover_per_s", float, d.recover_per_s),
        default_pause_s=t.non_negative("default_pause_s", float, d.default_pause_s),
        disable_s=t.positive("disable_s", float, d.disable_s),
        provider_down_after_failures=t.positive(
            "provider_down_after_failures", int, d.provider_down_after_failures
        ),
        provider_down_pause_s=t.positive("provider_down_pause_s", float, d.provider_down_pause_s),
        provider_down_max_pause_s=t.positive("provider_down_max_pause_s", float, d.provider_down_max_pause_s),
        redis_url=env.get("TRANSLANE_REDIS_URL") or t.get("redis_url", str, d.redis_url),
        redis_prefix=t.get("redis_prefix", str, d.redis_prefix),
        replicas=t.positive("replicas", int, d.replicas),
        heartbeat_s=t.positive("heartbeat_s", float, d.heartbeat_s),
        stale_after_s=t.positive("stale_after_s", float, d.stale_after_s),
        forget_after_s=t.positive("forget_after_s", float, d.forget_after_s),
    )
    t.seen.add("redis_url")
    t.finish()
    if "TRANSLANE_REPLICAS" in env:
        cfg = dataclasses.replace(cfg, replicas=max(1, _env_int(env, "TRANSLANE_REPLICAS")))
    if cfg.burst_fraction >= 0.5:
        raise ConfigError("governor.burst_fraction: must be < 0.5")
    if cfg.backoff_factor >= 1:
        raise ConfigError("governor.backoff_factor: must be < 1")
    if cfg.stale_after_s < 2 * cfg.heartbeat_s:
        raise ConfigError("governor.stale_after_s: must be at least twice governor.heartbeat_s")
    if cfg.forget_after_s <= cfg.stale_after_s:
        raise ConfigError("governor.forget_after_s: must be more than governor.stale_after_s")
    if cfg.kind == "redis" and not cfg.redis_url:
        raise ConfigError("governor.redis_url: required when governor.kind is redis (or set TRANSLANE_REDIS_URL)")
    return cfg


def _cache(t: _Table, env: Mapping[str, str]) -> CacheConfig:
    d = CacheConfig()
    kind = env.get("TRANSLANE_CACHE") or t.choice("kind", ("sqlite", "memory", "off"), d.kind)
    t.seen.add("kind")
    if kind not in ("sqlite", "memory", "off"):
        raise ConfigError(f"TRANSLANE_CACHE: must be sqlite, memory or off, got {kind[:20]!r}")
    path = t.get("path", str, "") or str(Path(env.get("TRANSLANE_DATA_DIR") or "~/.cache/translane") / "cache.sqlite3")
    cfg = CacheConfig(
        kind=cast(Literal["sqlite", "memory", "off"], kind),
        path=str(Path(path).expanduser()),
        max_entries=t.positive("max_entries", int, d.max_entries),
    )
    t.finish()
    return cfg


def _provider(name: str, t: _Table, env: Mapping[str, str]) -> ProviderConfig:
    d = ProviderConfig(name=name, base_url="", api_key_env="")
    base_url = t.get("base_url", str)
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{t.path}.base_url: must start with http:// or https://, got {base_url!r}")
    key_env = t.get("api_key_env", str, "")
    cfg = ProviderConfig(
        name=name,
        base_url=base_url.rstrip("/"),
        api_key_env=key_env,
        timeout_s=t.positive("timeout_s", float, d.timeout_s),
        connect_timeout_s=t.positive("connect_timeout_s", float, d.connect_timeout_s),
        stream_idle_timeout_s=t.positive("stream_idle_timeout_s", float, d.stream_idle_timeout_s),
        max_retries=t.non_negative("max_retries", int, d.max_retries),
        retry_base_s=t.positive("retry_base_s", float, d.retry_base_s),
        retry_max_s=t.positive("retry_max_s", float, d.retry_max_s),
        api_key=env.get(key_env, "") if key_env else "",
    )
    t.finish()
    return cfg


def _model(name: str, t: _Table) -> ModelConfig:
    extra = t.get("extra_body", dict, {})
    model = ModelConfig(
        name=name,
        provider=t.get("provider", str),
        api_style=cast(ApiStyle, t.choice("api_style", API_STYLES)),
        lane=t.get("lane", str),
        rpm=t.positive("rpm", int),
        tpm=t.positive("tpm", int),
        max_concurrency=t.positive("max_concurrency", int),
        max_input_tokens=t.positive("max_input_tokens", int),
        max_output_tokens=t.positive("max_output_tokens", int),
        context_tokens=t.positive("context_tokens", int),
        input_price_per_mtok=t.non_negative("input_price_per_mtok", float, 0.0),
        output_price_per_mtok=t.non_negative("output_price_per_mtok", float, 0.0),
        cached_price_per_mtok=t.non_negative("cached_price_per_mtok", float, 0.0),
        currency=t.get("currency", str, "CNY"),
        fallbacks=t.strings("fallbacks"),
        upstream_model=t.get("upstream_model", str, ""),
        extra_body=MappingProxyType(dict(extra)),
        output_ratio=t.positive("output_ratio", float, 1.3),
        languages=t.strings("languages"),
        reasoning=t.choice("reasoning", REASONING, ""),
        cache_ttl_s=t.non_negative("cache_ttl_s", float, 0.0),
        daily_token_budget=t.non_negative("daily_token_budget", int, 0),
        daily_cost_budget=t.non_negative("daily_cost_budget", float, 0.0),
    )
    t.finish()
    # The contract carries these as unsigned 32-bit (rpm and tpm: 64-bit) integers.
    for key in ("max_concurrency", "max_input_tokens", "max_output_tokens", "context_tokens"):
        if getattr(model, key) > _UINT32_MAX:
            raise ConfigError(f"{t.path}.{key}: must be at most {_UINT32_MAX}, got {getattr(model, key)}")
    for key in ("rpm", "tpm"):
        if getattr(model, key) > _LIMIT_MAX:
            raise ConfigError(f"{t.path}.{key}: must be at most {_LIMIT_MAX}, got {getattr(model, key)}")
    if model.max_input_tokens > model.context_tokens:
        raise ConfigError(f"{t.path}.max_input_tokens: larger than context_tokens")
    return model


def parse_config(data: Mapping[str, Any], env: Mapping[str, str], source: str = "<memory>") -> Config:
    """Validate a parsed models file plus environment into a Config."""
    root = _Table(data, "")
    server = _server(root.table("server"), env)
    governor = _governor(root.table("governor"), env)
    cache = _cache(root.table("cache"), env)
    providers_t = root.table("providers")
    providers = {n: _provider(n, providers_t.table(n), env) for n in providers_t.data}
    providers_t.seen.update(providers)
    lanes_t = root.table("lanes")
    lanes: dict[str, LaneConfig] = {}
    for n in lanes_t.data:
        lt = lanes_t.table(n)
        lanes[n] = LaneConfig(
            name=n,
            max_concurrency=lt.positive("max_concurrency", int),
            max_queue=lt.positive("max_queue", int, 20000),
        )
        lt.finish()
    models_t = root.table("models")
    models = {n: _model(n, models_t.table(n)) for n in models_t.data}
    if not models:
        raise ConfigError("models: at least one model is required")
    default_model = root.get("default_model", str, next(iter(models)))
    default_model = env.get("TRANSLANE_DEFAULT_MODEL") or default_model
    budget_timezone = root.get("budget_timezone", str, "Asia/Shanghai")
    try:
        ZoneInfo(budget_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"budget_timezone: unknown time zone {budget_timezone[:60]!r}") from None
    root.finish()
    if default_model not in models:
        raise ConfigError(f"default_model: {default_model!r} is not a configured model")
    for m in models.values():
        where = f"models.{m.name}"
        if m.provider not in providers:
            raise ConfigError(f"{where}.provider: unknown provider {m.provider!r}")
        if m.lane not in lanes:
            raise ConfigError(f"{where}.lane: unknown lane {m.lane!r}")
        for fb in m.fallbacks:
            if fb not in models or fb == m.name:
                raise ConfigError(f"{where}.fallbacks: {fb!r} is not another configured model")
    cfg = Config(
        default_model=default_model,
        server=server,
        governor=governor,
        providers=MappingProxyType(providers),
        lanes=MappingProxyType(lanes),
        models=MappingProxyType(models),
        source=source,
        cache=cache,
        budget_timezone=budget_timezone,
    )
    if env.get("TRANSLANE_UPSTREAM_URL"):
        cfg = cfg.with_upstream_url(env["TRANSLANE_UPSTREAM_URL"])
    return cfg


def _read(path: Path) -> Mapping[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from exc
    return cast(Mapping[str, Any], data or {})


def default_models_text() -> str:
    """The shipped default models file."""
    return resources.files("translane").joinpath("default_models.toml").read_text(encoding="utf-8")


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build the Config from `path` (or $TRANSLANE_MODELS_FILE, or the shipped default) and env."""
    env = os.environ if env is None else env
    chosen = path or env.get("TRANSLANE_MODELS_FILE")
    if chosen:
        p = Path(chosen)
        if not p.is_file():
            raise ConfigError(f"models file {str(p)!r} does not exist")
        return parse_config(_read(p), env, source=str(p))
    return parse_config(tomllib.loads(default_models_text()), env, source="<default>")
