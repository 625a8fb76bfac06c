"""Errors as OpenAI error JSON with their HTTP status, and the one mapping from gRPC status to HTTP status.

WireError                  an HTTP error with an OpenAI-style body
├── raised by the parsers  a missing or mistyped field (400: translane.wire.openai, .plugin)
├── raised by the shim     bad JSON (400), no or wrong key (401),
│                          body too large (413), no such route (404/405),
│                          a Content-Encoding other than gzip or deflate (415)
└── from_rpc_error()       the service's gRPC status, mapped by _HTTP_STATUS (from_status)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import grpc

from ..calls import retry_after_s

__all__ = ["WireError", "from_rpc_error", "from_status"]

# gRPC status → (HTTP status, OpenAI error type, error code): every status, chosen on purpose.
_HTTP_STATUS: dict[grpc.StatusCode, tuple[int, str, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error", "invalid_argument"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error", "out_of_range"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error", "unauthenticated"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error", "permission_denied"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error", "not_found"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "conflict_error", "already_exists"),
    grpc.StatusCode.ABORTED: (409, "conflict_error", "aborted"),
    # What OpenAI clients (and their retry logic) expect of a rate limit.
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error", "rate_limit_exceeded"),
    grpc.StatusCode.UNKNOWN: (502, "upstream_error", "unknown"),
    # The service uses it for a provider that refuses our key or model: the gateway's upstream is misconfigured.
    grpc.StatusCode.FAILED_PRECONDITION: (502, "upstream_error", "failed_precondition"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "server_error", "unimplemented"),
    grpc.StatusCode.INTERNAL: (500, "server_error", "internal_error"),
    grpc.StatusCode.DATA_LOSS: (500, "server_error", "data_loss"),
    # Cancelled by the service (shutting down, say) while the caller still waits: try again shortly.
    grpc.StatusCode.CANCELLED: (503, "service_unavailable_error", "cancelled"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable_error", "unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout_error", "deadline_exceeded"),
}
_SERVER_ERROR = (500, "server_error", "internal_error")
# The service's INVALID_ARGUMENT messages open with the field they are about: "target_language: ...".
_FIELD = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")


class WireError(Exception):
    """An HTTP error answered as `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s

    @classmethod
    def bad_field(cls, field: str, expected: str, got: Any) -> WireError:
        """400 for a field of the wrong type or value."""
        shown = "missing" if got is None else f"got {type(got).__name__} {_short(got)}"
        return cls(400, f"{field}: expected {expected}, {shown}", code="invalid_type", param=field)

    @classmethod
    def unsupported(cls, field: str, why: str, got: Any) -> WireError:
        """400 for a field whose value asks for what the shim does not do (`why` says what it does instead)."""
        return cls(400, f"{field}: {why}; got {_short(got)}", code="unsupported_value", param=field)

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        # A lone surrogate that reached a message becomes its JSON escape: the error body always encodes.
        return json.dumps({"error": error}, ensure_ascii=False).encode("utf-8", "backslashreplace")

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}


def _short(value: Any) -> str:
    """`value` as JSON for a message: at most 60 characters, and escaped where it is not Unicode text."""
    if isinstance(value, str) and len(value) > 60:
        value = value[:60]  # no need to dump a megabyte to show 57 characters of it
    text = json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 60 else text[:57] + "..."


def from_rpc_error(exc: grpc.aio.AioRpcError, fields: Mapping[str, str] | None = None) -> WireError:
    """The HTTP error for a failed gRPC call: the only place gRPC status becomes HTTP status.

    `fields` renames the request message's fields the service names to the body's (`segments` is `text_list`
    in the custom API), so `param` names what the caller sent.
    """
    code = exc.code()
    error = from_status(code, exc.details() or "", fields)
    status = error.status
    if status in (429, 503):
        hint = retry_after_s(exc)
        # Retry-After takes whole seconds: at least 1, and 1 when the answer names no wait.
        error.retry_after_s = 1 if hint is None else max(1, math.ceil(hint))
    return error


def from_status(code: grpc.StatusCode, details: str, fields: Mapping[str, str] | None = None) -> WireError:
    """The HTTP error for a gRPC status code and its message (a failed call's, or a batch line's google.rpc.Status).

    `fields` as for from_rpc_error."""
    status, kind, error_code = _HTTP_STATUS.get(code, _SERVER_ERROR)
    message = details or code.name.lower()
    param = None
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        m = _FIELD.match(message)
        param = m.group(1) if m else None
        if param is not None and fields:
            root = re.match(r"[A-Za-z_]\w*", param)
            if root is not None and root.group() in fields:
                param = fields[root.group()] + param[root.end() :]
                message = param + message[m.end(1) :] if m else message
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) and not details:
        message = "the translation service is unavailable"
    return WireError(status, message, kind=kind, code=error_code, param=param)
