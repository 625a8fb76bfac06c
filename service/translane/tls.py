"""TLS on the gRPC port: the service's certificates read from files (again on SIGHUP), and its callers' channels.

The server's credentials are grpc's dynamic ones: grpc asks `ServerCertificates` before each new
handshake whether the configuration changed, so a reload takes effect for the next connection while
established connections keep theirs, and nothing is restarted. Files are read again on SIGHUP, and
when they change on disk (checked at most every `server.tls_reload_check_s` at a handshake): a
Secret mounted in Kubernetes is updated in place, with nobody there to send a signal. A reload that
fails (a file missing or half written, a key that does not match its certificate) keeps the
certificates in use and logs why.

Callers (the shim, `translane translate|batch|file|loadtest`) build their channel with
`channel(target, ...)`: TLS when `TRANSLANE_CLIENT_TLS_CA_FILE` names the CA that signed the
service's certificate, mTLS when `TRANSLANE_CLIENT_TLS_CERT_FILE` / `_KEY_FILE` name their own; with an
`api_key` (the commands: `TRANSLANE_API_KEY`), every call bears it (`authorization: Bearer KEY`).
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from .config import ConfigError, ServerConfig
from .settings import API_KEY_ENV, text

__all__ = ["ClientTLS", "ServerCertificates", "bearer_key", "channel", "client_api_key"]

log = logging.getLogger("translane.tls")


def _read(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path[:200]!r}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{what}: {path[:200]!r} is not PEM")
    return data


def _check_pair(cert_file: str, key_file: str, what: str) -> None:
    """ConfigError naming both files unless they are a certificate chain and its key: grpc would only find a
    mismatched pair at the first handshake, as a failed connection with nothing said why."""
    try:
        ssl.create_default_context().load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"{what}: {cert_file[:200]!r} and {key_file[:200]!r} are not a certificate chain and its key ({exc})"
        ) from None


def _ca(path: str, what: str) -> bytes:
    """A CA bundle's PEM; ConfigError naming the file when it holds no certificate (a key, say): grpc would
    only log that it could not load it, and fail every handshake."""
    data = _read(path, what)
    try:
        # From the file, as grpc reads it: a bundle may have text outside its PEM blocks in any encoding.
        ssl.create_default_context().load_verify_locations(cafile=path)
    except (ssl.SSLError, ValueError, OSError) as exc:
        raise ConfigError(f"{what}: {path[:200]!r} holds no CA certificate ({exc})") from None
    return data


_Signature = tuple[tuple[int, int, int], ...] | None


def _signature(*paths: str) -> _Signature:
    """(inode, mtime, size) of each file named, to notice a change (a Secret volume swaps files in); None when
    one cannot be read."""
    try:
        stats = [os.stat(p) for p in paths if p]
    except OSError:
        return None
    return tuple((st.st_ino, st.st_mtime_ns, st.st_size) for st in stats)


class ServerCertificates:
    """The service's certificate, key and (for mTLS) client CA, read from files; `reload()` reads them again."""

    def __init__(self, server: ServerConfig) -> None:
        self._server = server
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self.reloads = 0
        self._seen = self._signature()
        self._checked = time.monotonic()
        self._initial = self._load()

    @property
    def mutual(self) -> bool:
        """True when callers must present a certificate (mTLS)."""
        return bool(self._server.tls_client_ca_file)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        s = self._server
        cert = _read(s.tls_cert_file, "server.tls_cert_file")
        key = _read(s.tls_key_file, "server.tls_key_file")
        _check_pair(s.tls_cert_file, s.tls_key_file, "server.tls_cert_file / tls_key_file")
        roots = _ca(s.tls_client_ca_file, "server.tls_client_ca_file") if s.tls_client_ca_file else None
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=roots)

    def _signature(self) -> _Signature:
        s = self._server
        return _signature(s.tls_cert_file, s.tls_key_file, s.tls_client_ca_file)

    def reload(self) -> bool:
        """Read the files again; new connections use them. False (and the old ones kept) when they are unusable."""
        self._seen = self._signature()
        try:
            loaded = self._load()
        except ConfigError as exc:
            log.error("TLS reload failed, keeping the certificates in use: %s", exc)
            return False
        except Exception:  # called on grpc's handshake threads too: nothing may escape
            log.exception("TLS reload failed, keeping the certificates in use")
            return False
        with self._lock:
            self._pending = loaded
        self.reloads += 1
        log.info("TLS certificates read again from %s", self._server.tls_cert_file)
        return True

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by grpc on its own threads before each handshake: None means "no change".
        now = time.monotonic()
        if now - self._checked >= self._server.tls_reload_check_s:
            self._checked = now
            if self._signature() != self._seen:
                self.reload()
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that pick up every `reload()`."""
        return grpc.dynamic_ssl_server_credentials(
            self._initial, self._fetch, require_client_authentication=self.mutual
        )


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """How a caller checks the service's certificate and, for mTLS, which certificate it presents."""

    ca_file: str
    cert_file: str = ""
    key_file: str = ""
    # The name the service's certificate is checked against when the target's host is not it
    # (an IP address, a headless Service's per-pod addresses behind one DNS name).
    server_name: str = ""
    # A long-running caller (the shim) looks this often whether the files changed, and if so opens
    # a new channel with them: a renewed certificate is used before the old one expires.
    reload_check_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientTLS | None:
        """From TRANSLANE_CLIENT_TLS_CA_FILE / _CERT_FILE / _KEY_FILE / _SERVER_NAME; None when no CA is named."""
        env = os.environ if env is None else env
        ca = text(env, "TRANSLANE_CLIENT_TLS_CA_FILE")
        cert = text(env, "TRANSLANE_CLIENT_TLS_CERT_FILE")
        key = text(env, "TRANSLANE_CLIENT_TLS_KEY_FILE")
        if not ca:
            if cert or key:
                raise ConfigError("TRANSLANE_CLIENT_TLS_CERT_FILE / _KEY_FILE need TRANSLANE_CLIENT_TLS_CA_FILE too")
            return None
        if bool(cert) != bool(key):
            raise ConfigError("TRANSLANE_CLIENT_TLS_CERT_FILE and TRANSLANE_CLIENT_TLS_KEY_FILE: set both or neither")
        return cls(ca, cert, key, text(env, "TRANSLANE_CLIENT_TLS_SERVER_NAME"))

    def signature(self) -> _Signature:
        """What the files are now, to notice a change."""
        return _signature(self.ca_file, self.cert_file, self.key_file)

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials read from the files now; ConfigError, naming the file, when they are unusable
        (grpc would only fail each handshake, saying nothing about why)."""
        ca = _ca(self.ca_file, "TRANSLANE_CLIENT_TLS_CA_FILE")
        cert = _read(self.cert_file, "TRANSLANE_CLIENT_TLS_CERT_FILE") if self.cert_file else None
        key = _read(self.key_file, "TRANSLANE_CLIENT_TLS_KEY_FILE") if self.key_file else None
        if self.cert_file:
            _check_pair(self.cert_file, self.key_file, "TRANSLANE_CLIENT_TLS_CERT_FILE / _KEY_FILE")
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def client_api_key(env: Mapping[str, str] | None = None) -> str:
    """The key the commands present to the service: $TRANSLANE_API_KEY, "" (none) when unset."""
    return text(os.environ if env is None else env, API_KEY_ENV, "")


class _Key:
    """Adds `authorization: Bearer KEY` to a call's metadata (unless the call sets its own)."""

    def __init__(self, key: str) -> None:
        self._header = ("authorization", f"Bearer {key}")

    def _with_key(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if "authorization" not in metadata:
            metadata.add(*self._header)
        return details._replace(metadata=metadata)


# One class a kind of call: grpc.aio files an interceptor under the first kind it is an instance of, so one
# class of all four would only ever see unary calls.
class _UnaryUnary(_Key, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_key(details), request)


class _UnaryStream(_Key, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_key(details), request)


class _StreamUnary(_Key, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._with_key(details), requests)


class _StreamStream(_Key, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._with_key(details), requests)


def bearer_key(key: str) -> list[Any]:
    """Client interceptors that make every call of a channel, of every kind, bear `key`."""
    return [kind(key) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]


def channel(
    target: str,
    *,
    tls: ClientTLS | None = None,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[Any] | None = None,
    api_key: str = "",
) -> grpc.aio.Channel:
    """A channel to the service: TLS with `tls`, plaintext without; each call bearing `api_key` when given."""
    if api_key:
        interceptors = [*(interceptors or ()), *bearer_key(api_key)]
    if tls is None:
        return grpc.aio.insecure_channel(target, options=list(options), interceptors=interceptors)
    opts = list(options)
    if tls.server_name:
        opts.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.aio.secure_channel(target, tls.credentials(), options=opts, interceptors=interceptors)
