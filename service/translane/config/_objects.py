"""The service's configuration as value objects, each setting declared once on its field.

A field's annotation is its type, `setting(...)` its default, checks and environment variable
(translane.settings); a field without a default must be in the models file. What relates fields to
each other is checked in `_load.py`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..settings import (
    DEFAULT_GRPC_PORT,
    TABLE_KEY,
    TENANTS_FILE_ENV,
    ConfigError,
    at_most,
    below,
    derived,
    non_negative,
    positive,
    setting,
    starts_with,
    within,
)

__all__ = [
    "API_STYLES",
    "BATCH_APIS",
    "CacheConfig",
    "Config",
    "GovernorConfig",
    "JobsConfig",
    "LaneConfig",
    "ModelConfig",
    "ProviderConfig",
    "ServerConfig",
    "is_loopback",
]

ApiStyle = Literal["chat_completions", "responses"]
API_STYLES: tuple[str, ...] = get_args(ApiStyle)
# The provider's batch route of a model: "" none; "ark-batch-chat" Volcengine Ark's Batch Chat (the chat request
# unchanged, POSTed to {batch_url}/batch/chat/completions, no streaming, answers in minutes, a daily token quota);
# "openai-batch" OpenAI's Batch API (calls gathered into a JSONL file POSTed to {batch_url}/files, run as one
# {batch_url}/batches batch with a 24h window, each answered from the batch's result files by its custom_id).
BatchApi = Literal["", "ark-batch-chat", "openai-batch"]
BATCH_APIS: tuple[str, ...] = get_args(BatchApi)
# When a batch route's daily quota is spent: go on through the online lanes, or wait for the next day (within
# the job's completion window).
WhenSpent = Literal["online", "wait"]
# When an openai-batch upstream batch ends (expired, failed, cancelled) without answering a call: the call goes
# on through the online lanes, or fails naming the batch.
WhenFailed = Literal["online", "fail"]
# OpenAI's limits on a batch input file.
_OPENAI_BATCH_LINES = 50_000
_OPENAI_BATCH_BYTES = 200 * 1024 * 1024
# Thinking models (chat completions): "" leaves the provider's default; "disabled" sends
# `thinking: {type: disabled}`; minimal/low/medium/high send `reasoning_effort`.
Reasoning = Literal["", "disabled", "minimal", "low", "medium", "high"]
# The contract carries these as unsigned 32-bit integers (rpm and tpm: 64-bit).
_UINT32_MAX = 2**32 - 1
# Far past any provider's limit, and exact as a float (the governor's arithmetic).
_LIMIT_MAX = 2**53


def _no_fields() -> Mapping[str, Any]:
    return MappingProxyType({})


def _url_or_empty(value: str) -> str | None:
    return None if not value else starts_with("http://", "https://")(value)


def _time_zone(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name[:60]!r}"
    return None


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str = derived(TABLE_KEY)
    base_url: str = setting(check=starts_with("http://", "https://"))
    # The environment variable holding the key; the file never holds the key itself.
    api_key_env: str = setting("")
    timeout_s: float = setting(120.0, check=positive)
    connect_timeout_s: float = setting(5.0, check=positive)
    # A stream that sends nothing for this long has stalled: the call fails (and may be retried).
    stream_idle_timeout_s: float = setting(30.0, check=positive)
    max_retries: int = setting(4, check=non_negative)
    retry_base_s: float = setting(0.2, check=positive)
    retry_max_s: float = setting(10.0, check=positive)
    # Never printed.
    api_key: str = derived("the environment variable api_key_env names", "", repr=False)


@dataclass(frozen=True, slots=True)
class LaneConfig:
    name: str = derived(TABLE_KEY)
    max_concurrency: int = setting(check=positive)
    max_queue: int = setting(20000, check=positive)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    name: str = derived(TABLE_KEY)
    provider: str = setting()
    api_style: ApiStyle = setting()
    lane: str = setting()
    rpm: int = setting(check=(positive, at_most(_LIMIT_MAX)))
    tpm: int = setting(check=(positive, at_most(_LIMIT_MAX)))
    max_concurrency: int = setting(check=(positive, at_most(_UINT32_MAX)))
    max_input_tokens: int = setting(check=(positive, at_most(_UINT32_MAX)))
    max_output_tokens: int = setting(check=(positive, at_most(_UINT32_MAX)))
    context_tokens: int = setting(check=(positive, at_most(_UINT32_MAX)))
    input_price_per_mtok: float = setting(0.0, check=non_negative)
    output_price_per_mtok: float = setting(0.0, check=non_negative)
    cached_price_per_mtok: float = setting(0.0, check=non_negative)
    currency: str = setting("CNY")
    fallbacks: tuple[str, ...] = setting(())
    # The model id sent upstream (an Ark endpoint id, say); defaults to `name`.
    upstream_model: str = setting("")
    # Extra JSON fields merged into every upstream request body.
    extra_body: Mapping[str, Any] = setting(factory=_no_fields)
    # First guess of completion/prompt tokens, refined from real usage at run time.
    output_ratio: float = setting(1.3, check=positive)
    # Target languages the model accepts; empty means any language translane knows.
    languages: tuple[str, ...] = setting(())
    # How long a cached translation of this model is served; 0 = until evicted.
    cache_ttl_s: float = setting(0.0, check=non_negative)
    # What the model may spend in the provider's day (0 = no budget): past it, its work falls back.
    daily_token_budget: int = setting(0, check=non_negative)
    daily_cost_budget: float = setting(0.0, check=non_negative)
    # See Reasoning.
    reasoning: Reasoning = setting("")
    # The provider's batch route (see BatchApi; chat_completions models only). A job's line whose completion
    # window is at least batch_min_window_s goes there instead of the online lanes, in a lane of its own
    # (batch_max_concurrency calls at once, each given batch_timeout_s), never under the online RPM/TPM.
    batch_api: BatchApi = setting("")
    # The route's base URL ("" = the provider's base_url).
    batch_url: str = setting("", check=_url_or_empty)
    # The model id sent on the route ("" = the one sent online): Ark's batch inference endpoint id (ep-bi-...).
    batch_upstream_model: str = setting("")
    # What the route costs, as a share of the online prices (Ark and OpenAI: half).
    batch_price_factor: float = setting(0.5, check=(positive, at_most(1.0)))
    # The route's daily token quota (prompt + completion; 0 = none), a bucket reserved before each call
    # and settled after it; the provider's 429 QuotaExceeded on the route spends it too.
    batch_tpd: int = setting(0, check=(non_negative, at_most(_LIMIT_MAX)))
    batch_max_concurrency: int = setting(2000, check=(positive, at_most(_UINT32_MAX)))
    # Ark tells its batch clients to allow more than 30 minutes.
    batch_timeout_s: float = setting(3600.0, check=positive)
    batch_min_window_s: float = setting(3600.0, check=non_negative)
    batch_when_spent: WhenSpent = setting("online")
    # openai-batch: the calls that arrive within batch_gather_s of the first (at most batch_file_max_lines lines and
    # batch_file_max_bytes bytes) go up as one input file and one upstream batch, whose status is polled every
    # batch_poll_min_s at first, growing to batch_poll_max_s; batch_timeout_s bounds each request to the Files and
    # Batches API, and a call waits for its batch until its job's window ends. See WhenFailed.
    batch_gather_s: float = setting(2.0, check=positive)
    batch_file_max_lines: int = setting(_OPENAI_BATCH_LINES, check=(positive, at_most(_OPENAI_BATCH_LINES)))
    batch_file_max_bytes: int = setting(_OPENAI_BATCH_BYTES, check=(positive, at_most(_OPENAI_BATCH_BYTES)))
    batch_poll_min_s: float = setting(5.0, check=positive)
    batch_poll_max_s: float = setting(60.0, check=positive)
    batch_when_failed: WhenFailed = setting("online")

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
    kind: Literal["local", "redis"] = setting("local", env="TRANSLANE_GOVERNOR")
    window_s: float = setting(60.0, check=positive)
    burst_fraction: float = setting(0.002, check=(positive, below(0.5)))
    jitter_allowance_s: float = setting(0.2, check=non_negative)
    # On a provider 429: multiply the admitted rate by this, pause for Retry-After.
    backoff_factor: float = setting(0.5, check=(positive, below(1)))
    min_rate_fraction: float = setting(0.1, check=positive)
    # Share of the full rate regained per second after a backoff.
    recover_per_s: float = setting(0.05, check=positive)
    default_pause_s: float = setting(1.0, check=non_negative)
    # Time a model stays out of rotation after the provider's spending-limit error.
    disable_s: float = setting(600.0, check=positive)
    # A provider that fails this many calls in a row (5xx, refused or reset connections) is taken
    # to be down: its model pauses, so work goes to the fallbacks at once instead of retrying into
    # the outage. The pause starts at provider_down_pause_s and doubles while the first call after
    # each pause fails again, up to provider_down_max_pause_s; a success ends it.
    provider_down_after_failures: int = setting(3, check=positive)
    provider_down_pause_s: float = setting(1.0, check=positive)
    provider_down_max_pause_s: float = setting(5.0, check=positive)
    redis_url: str = setting("", env="TRANSLANE_REDIS_URL")
    redis_prefix: str = setting("translane")
    # Replicas sharing the limit: each takes 1/replicas of it when Redis is unreachable.
    replicas: int = setting(1, check=positive, env="TRANSLANE_REPLICAS")
    # Each replica on the shared buckets writes its liveness to Redis this often. One that has
    # not for stale_after_s (a replica cut off from Redis, spending its 1/replicas locally) has
    # its share taken out of the shared rate; one not seen for forget_after_s is forgotten. A
    # replica that loses Redis waits until the others must count it out before it spends, so
    # stale_after_s is also the pause every replica takes once when Redis goes down: short,
    # but several heartbeats long, so a busy event loop is not mistaken for a partition.
    heartbeat_s: float = setting(0.1, check=positive)
    stale_after_s: float = setting(0.5, check=positive)
    forget_after_s: float = setting(600.0, check=positive)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = setting("127.0.0.1", env="TRANSLANE_GRPC_HOST")
    port: int = setting(DEFAULT_GRPC_PORT, check=within(0, 65535), env="TRANSLANE_GRPC_PORT")
    grace_s: float = setting(10.0, check=non_negative)
    max_segments: int = setting(1000, check=positive)
    max_segment_chars: int = setting(100_000, check=positive)
    # Deadline applied when a caller sets none.
    default_deadline_s: float = setting(300.0, check=positive)
    # The longest a call may wait in a lane before it starts, by priority, whatever
    # deadline the caller states: a request that cannot start within it is refused
    # at once with a retry hint. A web page's paragraph is worthless to its reader
    # after a few seconds, and 10 s of queue is still ~800 calls of the slow
    # model's 5,000 RPM, enough that the queue never runs dry between refills.
    interactive_max_queue_wait_s: float = setting(10.0, check=positive)
    # Batch work waits behind interactive work; its runner follows the retry hints.
    batch_max_queue_wait_s: float = setting(300.0, check=positive)
    # Controlled delay (CoDel as "Fail at Scale", ACM Queue 2015, applies it to server queues): a model's
    # queue of one priority that has not been empty for standing_queue_after_s is a standing queue, not a
    # burst; while it stands, a newcomer is taken only when it is forecast to start within its priority's
    # target, and refused at once otherwise. A burst into an idle lane still fills it up to the max waits
    # above; sustained overload keeps the wait near the target while the provider stays saturated. The
    # interactive target is a second: a paragraph still worth showing, and ~80 calls of the slow model's
    # 5,000 RPM queued, so the provider never runs dry between refills. 1.1 s: a burst arriving within a
    # second is taken whole (with a tenth for the way in), while at the onset of 3x overload no newcomer
    # is forecast past ~2.2 s before the queue counts as standing (bench/burst.py, bench/overload_http.py).
    interactive_queue_target_s: float = setting(1.0, check=positive)
    batch_queue_target_s: float = setting(30.0, check=positive)
    standing_queue_after_s: float = setting(1.1, check=positive)
    # Text a stream may hold for a reader that is behind (its calls under way counted at their
    # input's length): past it the stream starts no new call until the reader catches up.
    # About 100 pages; the translation model's pieces are ~3,000 characters, so a fast reader's
    # stream still runs ~80 calls at once, as many as the slow lane has slots.
    stream_buffer_chars: int = setting(262_144, check=positive)
    # Prometheus metrics port; 0 disables the endpoint.
    metrics_port: int = setting(0, check=within(0, 65535), env="TRANSLANE_METRICS_PORT")
    # A glossary rides in every call's prompt: a few hundred terms, each a word or a phrase.
    max_glossary_entries: int = setting(200, check=positive)
    max_glossary_term_chars: int = setting(200, check=positive)
    # gRPC over TLS: the service's certificate chain and key (PEM files, read again on SIGHUP). With
    # tls_client_ca_file set, every caller must present a certificate signed by that CA (mTLS).
    tls_cert_file: str = setting("", env="TRANSLANE_TLS_CERT_FILE")
    tls_key_file: str = setting("", env="TRANSLANE_TLS_KEY_FILE")
    tls_client_ca_file: str = setting("", env="TRANSLANE_TLS_CLIENT_CA_FILE")
    # Changed certificate files are noticed at the next handshake this long after the last look.
    tls_reload_check_s: float = setting(10.0, check=non_negative)
    # Plaintext on an address other than loopback only when asked for by name: whoever reaches the
    # port spends the provider's budget.
    allow_insecure: bool = setting(False, env="TRANSLANE_GRPC_INSECURE")
    # A plaintext port that serves only grpc.health.v1, for probes that speak no TLS (the kubelet's
    # gRPC probes); 0 = none. It answers health and nothing else.
    health_port: int = setting(0, check=within(0, 65535), env="TRANSLANE_HEALTH_PORT")
    # Who may call and each caller's own limits: a TOML file of [tenants.NAME] tables (README, "Tenants").
    # "" : no tenants, anyone who reaches the port may call (as TLS and the listening address allow).
    tenants_file: str = setting("", env=TENANTS_FILE_ENV)
    # A changed tenants file is read again this long (server clock) after the last look, at most; SIGHUP at once.
    tenants_reload_check_s: float = setting(5.0, check=positive)

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
    kind: Literal["sqlite", "memory", "off"] = setting("sqlite", env="TRANSLANE_CACHE")
    # The SQLite file; "" in the file: $TRANSLANE_DATA_DIR/cache.sqlite3 (TRANSLANE_DATA_DIR default
    # ~/.cache/translane).
    path: str = setting("")
    max_entries: int = setting(100_000, check=positive)
    # Entries reach the store behind the reply, one transaction a batch: at the latest this long after they
    # were put, or as soon as flush_entries wait. A killed process loses at most the last interval's entries.
    flush_s: float = setting(0.25, check=non_negative)
    flush_entries: int = setting(512, check=positive)


@dataclass(frozen=True, slots=True)
class JobsConfig:
    # BatchTranslate jobs: lines of one job in flight at once (each a Translate call at the job's
    # priority, inside the same lanes, limits and budgets as any call); a job whose window takes a
    # batch route may have that route's batch_max_concurrency more.
    max_concurrency_per_job: int = setting(16, check=(positive, at_most(10_000)))
    # An ended job (its results too) is forgotten this long after it ended.
    keep_s: float = setting(7 * 86400.0, check=positive)
    # Jobs shared in Redis (governor.kind = "redis"): the lines one replica runs at once, all jobs together
    # (plus every batch route's batch_max_concurrency)...
    max_lines_per_replica: int = setting(64, check=(positive, at_most(10_000)))
    # ...and how long a line claimed by a replica may go without word from it (a live replica renews its
    # claims every third of this) before another replica takes it over.
    claim_idle_s: float = setting(30.0, check=positive)
    # A file of requests UploadFile takes for BatchTranslate's input_file_id: at most this many bytes (OpenAI's
    # bound on a batch file; its lines, at most 50,000, are bounded as a job's requests are).
    max_file_bytes: int = setting(200 * 1000 * 1000, check=(positive, at_most(1 << 31)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration; each table of the models file is a field (a missing table: its defaults)."""

    # "" in the file: the first model.
    default_model: str = setting("", env="TRANSLANE_DEFAULT_MODEL")
    server: ServerConfig
    governor: GovernorConfig
    providers: Mapping[str, ProviderConfig]
    lanes: Mapping[str, LaneConfig]
    models: Mapping[str, ModelConfig]
    source: str = derived("the models file's path (load_config)", "<memory>")
    cache: CacheConfig = setting(factory=CacheConfig)
    jobs: JobsConfig = setting(factory=JobsConfig)
    # The provider's day for daily budgets turns at midnight here (Ark: Beijing time).
    budget_timezone: str = setting("Asia/Shanghai", check=_time_zone)

    def model(self, name: str) -> ModelConfig | None:
        return self.models.get(name or self.default_model)

    def with_upstream_url(self, url: str) -> Config:
        """Copy with every provider pointed at `url` (the simulated provider, say)."""
        providers = {n: dataclasses.replace(p, base_url=url.rstrip("/")) for n, p in self.providers.items()}
        # A model's batch route goes there too (it follows its provider's base URL).
        models = {n: dataclasses.replace(m, batch_url="") if m.batch_url else m for n, m in self.models.items()}
        return dataclasses.replace(self, providers=MappingProxyType(providers), models=MappingProxyType(models))
