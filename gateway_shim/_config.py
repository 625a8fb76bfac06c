"""The shim's configuration: one immutable value, built once from arguments and the environment.

Each setting is declared once on its field (default, check, environment variable) and read by the
service's own builder and environment reader (translane.settings), so a variable means the same in
both: a flag is 1/true/yes/on or 0/false/no/off, anything else an error naming it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from translane.config import is_loopback
from translane.settings import (
    DEFAULT_GRPC_TARGET,
    GRPC_TARGET_ENV,
    TENANTS_FILE_ENV,
    ConfigError,
    derived,
    non_negative,
    nonblank,
    positive,
    read,
    setting,
    text,
    validate,
    within,
)
from translane.tls import ClientTLS
from translane.wire.languages import resolve

__all__ = ["ShimConfig"]

# Keys one per line ('#' starts a comment), added to those of TRANSLANE_API_KEYS.
API_KEYS_FILE_ENV = "TRANSLANE_API_KEYS_FILE"


@dataclass(frozen=True, slots=True)
class ShimConfig:
    """Where the shim listens, the service it calls, who may call it, and its limits."""

    host: str = setting("127.0.0.1", env="TRANSLANE_SHIM_HOST")
    port: int = setting(8000, check=within(0, 65535), env="TRANSLANE_SHIM_PORT")
    grpc_target: str = setting(DEFAULT_GRPC_TARGET, check=nonblank(), env=GRPC_TARGET_ENV)
    # TLS (or mTLS) to the service; None = plaintext.
    backend_tls: ClientTLS | None = derived("TRANSLANE_CLIENT_TLS_* (ClientTLS.from_env)", None)
    # Bearer keys callers must present (comma-separated, plus TRANSLANE_API_KEYS_FILE); empty means anyone on
    # the listening interface may call.
    api_keys: frozenset[str] = setting(frozenset(), env="TRANSLANE_API_KEYS", repr=False)
    # The tenants file (README, "Tenants"): each caller's key names its tenant, which the shim names to the service
    # (x-translane-tenant) as a trusted gateway; TRANSLANE_API_KEYS's keys are the tenant "default".
    tenants_file: str = setting("", env=TENANTS_FILE_ENV)
    # The shim's own key at the service, of a tenant marked `gateway = true` there (or a gateway's client
    # certificate, TRANSLANE_CLIENT_TLS_CERT_FILE): what lets it name the tenant it acts for. Never printed.
    service_key: str = setting("", env="TRANSLANE_SHIM_SERVICE_KEY", repr=False)
    # Listen on a non-loopback host with no keys: only when asked for in so many words.
    allow_public: bool = setting(False, env="TRANSLANE_SHIM_ALLOW_PUBLIC")
    max_body_bytes: int = setting(2 * 1024 * 1024, check=positive, env="TRANSLANE_SHIM_MAX_BODY_BYTES")
    # Origins browsers may call from (comma-separated): exact ("chrome-extension://abc"), "scheme://*" or "*".
    cors_origins: tuple[str, ...] = setting((), env="TRANSLANE_SHIM_CORS_ORIGINS")
    # The target of a request that names none anywhere (no field, no X-Target-Language, no language in its
    # prompts, no order to translate): "" (the default) refuses such a request with a 400 saying how to name one.
    default_target_language: str = setting("", env="TRANSLANE_DEFAULT_TARGET_LANGUAGE")
    # A chat model of the service that answers, as written, the chats the shim cannot read as a translation
    # (docs/clients.md); "" (the default) refuses them with a 400 saying what could not be read.
    passthrough_model: str = setting("", env="TRANSLANE_SHIM_PASSTHROUGH_MODEL")
    # Deadline of a gRPC call when the caller sets none.
    timeout_s: float = setting(120.0, check=positive, env="TRANSLANE_SHIM_TIMEOUT_S")
    # On shutdown, how long requests in flight may take to finish.
    grace_s: float = setting(10.0, check=non_negative, env="TRANSLANE_SHIM_GRACE_S")
    # The kernel's send buffer (SO_SNDBUF) of a connection that carries a stream (and keeps it for the requests
    # that follow on it): what a slow reader can hold there before the shim's writes wait. 0 leaves it to the
    # kernel, which grows it to tcp_wmem's maximum (4 MiB on Linux) for a reader that does not keep up; a
    # translation's pace needs far less.
    stream_send_buffer_bytes: int = setting(
        64 * 1024, check=non_negative, env="TRANSLANE_SHIM_STREAM_SEND_BUFFER_BYTES"
    )

    # Where the Files + Batches API keeps uploaded files, result files and batches (a directory holding
    # batches.sqlite3 and files/): "" (the default) is a fresh temporary directory, gone with the process.
    data_dir: str = setting("", env="TRANSLANE_SHIM_DATA_DIR")
    # The largest file POST /v1/files takes (OpenAI's bound: 200 MB); read as it arrives, apart from max_body_bytes.
    max_file_bytes: int = setting(200 * 1000 * 1000, check=positive, env="TRANSLANE_SHIM_MAX_FILE_BYTES")
    # How long a file is kept when its upload or batch does not say (`expires_after`, `output_expires_after`):
    # OpenAI's default for batch files, 30 days. Then its bytes and its record are gone (404).
    file_keep_s: int = setting(30 * 86400, check=positive, env="TRANSLANE_SHIM_FILE_KEEP_S")

    def __post_init__(self) -> None:
        validate(self)
        if self.open_to_anyone and not self.allow_public and not is_loopback(self.host):
            raise ConfigError(
                f"the shim would listen on {self.host!r} with no API keys, open to anyone who can reach it: "
                f"set TRANSLANE_API_KEYS (or {API_KEYS_FILE_ENV}), listen on 127.0.0.1, "
                "or set TRANSLANE_SHIM_ALLOW_PUBLIC=1 to accept that"
            )
        if self.tenants_file and not self.service_key and not (self.backend_tls and self.backend_tls.cert_file):
            # The service would take no tenant the shim names (and refuse every call): say so now, not per call.
            raise ConfigError(
                f"{TENANTS_FILE_ENV} is set but the shim has no identity at the service to name tenants with: set "
                "TRANSLANE_SHIM_SERVICE_KEY to a key of a tenant with `gateway = true` (or give the shim a client "
                "certificate, TRANSLANE_CLIENT_TLS_CERT_FILE, that such a tenant names)"
            )

    @property
    def open_to_anyone(self) -> bool:
        """True when no key is required."""
        return not self.api_keys and not self.tenants_file

    @classmethod
    def from_env(
        cls,
        *,
        host: str | None = None,
        port: int | None = None,
        grpc_target: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ShimConfig:
        """Arguments where given, else TRANSLANE_SHIM_* and friends from `env` (default os.environ)."""
        env = os.environ if env is None else env
        args = {"host": host or None, "port": port, "grpc_target": grpc_target or None}
        given = {name: value for name, value in args.items() if value is not None}
        values = read(cls, None, "", env, **given)
        values["api_keys"] = values.get("api_keys", frozenset()) | _keys_file(text(env, API_KEYS_FILE_ENV))
        if values.get("default_target_language"):
            named = values["default_target_language"]
            code = resolve(named)
            if code is None:
                raise ConfigError(f"TRANSLANE_DEFAULT_TARGET_LANGUAGE: {named!r} is not a language the shim knows")
            values["default_target_language"] = code
        return cls(**values, backend_tls=ClientTLS.from_env(env))


def _keys_file(path: str) -> frozenset[str]:
    if not path:
        return frozenset()
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{API_KEYS_FILE_ENV}: cannot read {path!r}: {exc.strerror}") from None
    return frozenset(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
