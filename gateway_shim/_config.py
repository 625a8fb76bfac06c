"""The shim's configuration: one immutable value, built once from arguments and the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from translane.config import ConfigError, is_loopback
from translane.languages import normalize_language
from translane.tls import ClientTLS

from ._languages import resolve

__all__ = ["ShimConfig"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_GRPC_TARGET = "127.0.0.1:50051"
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_GRACE_S = 10.0
DEFAULT_STREAM_SEND_BUFFER_BYTES = 64 * 1024
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class ShimConfig:
    """Where the shim listens, the service it calls, who may call it, and its limits."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    grpc_target: str = DEFAULT_GRPC_TARGET
    # TLS (or mTLS) to the service: TRANSLANE_CLIENT_TLS_*; None = plaintext.
    backend_tls: ClientTLS | None = None
    # Bearer keys callers must present; empty means anyone on the listening interface may call.
    api_keys: frozenset[str] = field(default=frozenset(), repr=False)
    # Listen on a non-loopback host with no keys: only when asked for in so many words.
    allow_public: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Origins browsers may call from: exact ("chrome-extension://abc"), "scheme://*" or "*".
    cors_origins: tuple[str, ...] = ()
    default_target_language: str = "zh"
    # Deadline of a gRPC call when the caller sets none.
    timeout_s: float = DEFAULT_TIMEOUT_S
    # On shutdown, how long requests in flight may take to finish.
    grace_s: float = DEFAULT_GRACE_S
    # The kernel's send buffer (SO_SNDBUF) of a connection that carries a stream (and keeps it for the requests
    # that follow on it): what a slow reader can hold there before the shim's writes wait. 0 leaves it to the
    # kernel, which grows it to tcp_wmem's maximum (4 MiB on Linux) for a reader that does not keep up; a
    # translation's pace needs far less.
    stream_send_buffer_bytes: int = DEFAULT_STREAM_SEND_BUFFER_BYTES

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"TRANSLANE_SHIM_PORT: must be within 0..65535, got {self.port}")
        if self.max_body_bytes <= 0:
            raise ConfigError(f"TRANSLANE_SHIM_MAX_BODY_BYTES: must be > 0, got {self.max_body_bytes}")
        if not self.timeout_s > 0:
            raise ConfigError(f"TRANSLANE_SHIM_TIMEOUT_S: must be > 0, got {self.timeout_s}")
        if self.grace_s < 0:
            raise ConfigError(f"TRANSLANE_SHIM_GRACE_S: must be >= 0, got {self.grace_s}")
        if self.stream_send_buffer_bytes < 0:
            raise ConfigError(
                f"TRANSLANE_SHIM_STREAM_SEND_BUFFER_BYTES: must be >= 0, got {self.stream_send_buffer_bytes}"
            )
        if not self.default_target_language:
            raise ConfigError("TRANSLANE_DEFAULT_TARGET_LANGUAGE: must name a language, e.g. zh")
        if not self.grpc_target:
            raise ConfigError("TRANSLANE_GRPC_TARGET: must not be empty")
        if not self.api_keys and not self.allow_public and not is_loopback(self.host):
            raise ConfigError(
                f"the shim would listen on {self.host!r} with no API keys, open to anyone who can reach it: "
                "set TRANSLANE_API_KEYS (or TRANSLANE_API_KEYS_FILE), listen on 127.0.0.1, "
                "or set TRANSLANE_SHIM_ALLOW_PUBLIC=1 to accept that"
            )

    @property
    def open_to_anyone(self) -> bool:
        """True when no key is required."""
        return not self.api_keys

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
        default_target = env.get("TRANSLANE_DEFAULT_TARGET_LANGUAGE", "").strip() or "zh"
        return cls(
            host=host or env.get("TRANSLANE_SHIM_HOST") or DEFAULT_HOST,
            port=port if port is not None else _int(env, "TRANSLANE_SHIM_PORT", DEFAULT_PORT),
            grpc_target=grpc_target or env.get("TRANSLANE_GRPC_TARGET") or DEFAULT_GRPC_TARGET,
            backend_tls=ClientTLS.from_env(env),
            api_keys=_keys(env),
            allow_public=env.get("TRANSLANE_SHIM_ALLOW_PUBLIC", "").strip().lower() in _TRUE,
            max_body_bytes=_int(env, "TRANSLANE_SHIM_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            cors_origins=tuple(o.strip() for o in env.get("TRANSLANE_SHIM_CORS_ORIGINS", "").split(",") if o.strip()),
            default_target_language=resolve(default_target) or normalize_language(default_target),
            timeout_s=_float(env, "TRANSLANE_SHIM_TIMEOUT_S", DEFAULT_TIMEOUT_S),
            grace_s=_float(env, "TRANSLANE_SHIM_GRACE_S", DEFAULT_GRACE_S),
            stream_send_buffer_bytes=_int(
                env, "TRANSLANE_SHIM_STREAM_SEND_BUFFER_BYTES", DEFAULT_STREAM_SEND_BUFFER_BYTES
            ),
        )


def _int(env: Mapping[str, str], var: str, default: int) -> int:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{var}: expected an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], var: str, default: float) -> float:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{var}: expected a number, got {raw!r}") from None


def _keys(env: Mapping[str, str]) -> frozenset[str]:
    keys = {k.strip() for k in env.get("TRANSLANE_API_KEYS", "").split(",") if k.strip()}
    path = env.get("TRANSLANE_API_KEYS_FILE", "").strip()
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"TRANSLANE_API_KEYS_FILE: cannot read {path!r}: {exc.strerror}") from None
        keys.update(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return frozenset(keys)
