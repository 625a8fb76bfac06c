"""translane's one error tree, and its mapping to gRPC status codes.

TranslaneError
├── InvalidRequest              the caller asked for something we cannot do
│   └── UnknownModel
├── Overloaded                  shed before reaching the provider (queue full,
│                               deadline cannot be met); carries retry_after_s
├── ModelUnavailable            every candidate model is paused or disabled
└── ProviderError               the provider answered with an error, or not at all
    ├── ProviderRateLimited     429 that a retry may cure
    ├── ProviderQuotaExhausted  spending limit reached (SetLimitExceeded): fatal
    ├── ProviderRejected        400: the request itself is wrong, never retried
    ├── ProviderAuthError       401/403: our key or account is wrong
    ├── ProviderModelNotFound   404: model not opened / no such endpoint
    ├── ProviderServerError     5xx: retried
    ├── ProviderConnectionError reset, refused, truncated stream: retried
    └── ProviderTimeout         no answer in time
"""

from __future__ import annotations

import grpc

__all__ = [
    "InvalidRequest",
    "ModelUnavailable",
    "Overloaded",
    "ProviderAuthError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderModelNotFound",
    "ProviderQuotaExhausted",
    "ProviderRateLimited",
    "ProviderRejected",
    "ProviderServerError",
    "ProviderTimeout",
    "TranslaneError",
    "UnknownModel",
    "grpc_status_of",
    "provider_error",
]


class TranslaneError(Exception):
    """Base of every error translane raises on purpose."""

    retry_after_s: float | None = None

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


class InvalidRequest(TranslaneError):
    pass


class UnknownModel(InvalidRequest):
    pass


class Overloaded(TranslaneError):
    pass


class ModelUnavailable(TranslaneError):
    pass


class ProviderError(TranslaneError):
    """An error from the provider: `status` is its HTTP status (0 when none), `code` its error code."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.status = status
        self.code = code


class ProviderRateLimited(ProviderError):
    retryable = True


class ProviderQuotaExhausted(ProviderError):
    pass


class ProviderRejected(ProviderError):
    pass


class ProviderAuthError(ProviderError):
    pass


class ProviderModelNotFound(ProviderError):
    pass


class ProviderServerError(ProviderError):
    retryable = True


class ProviderConnectionError(ProviderError):
    retryable = True


class ProviderTimeout(ProviderError):
    retryable = True


def provider_error(status: int, code: str, message: str, retry_after_s: float | None = None) -> ProviderError:
    """Map a provider's HTTP status and error code (Ark or OpenAI style) into our tree."""
    text = f"provider answered {status} {code}: {message}".strip()
    kind: type[ProviderError]
    if code == "SetLimitExceeded":
        kind = ProviderQuotaExhausted
    elif status == 429:
        # Ark uses 429 for RPM/TPM, burst, overload and quota codes alike; an
        # account whose quota is spent is as fatal as its spending limit.
        kind = ProviderQuotaExhausted if code == "QuotaExceeded" else ProviderRateLimited
    elif status in (400, 413, 422):
        kind = ProviderRejected
    elif status in (401, 403):
        kind = ProviderAuthError
    elif status == 404:
        kind = ProviderModelNotFound
    elif status == 408:
        kind = ProviderTimeout
    elif status >= 500 or status == 0:
        kind = ProviderServerError
    else:
        kind = ProviderRejected
    return kind(text, status=status, code=code, retry_after_s=retry_after_s)


_GRPC_CODES: tuple[tuple[type[TranslaneError], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ModelUnavailable, grpc.StatusCode.UNAVAILABLE),
    (ProviderRateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ProviderQuotaExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ProviderRejected, grpc.StatusCode.INVALID_ARGUMENT),
    (ProviderAuthError, grpc.StatusCode.FAILED_PRECONDITION),
    (ProviderModelNotFound, grpc.StatusCode.FAILED_PRECONDITION),
    (ProviderTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (ProviderError, grpc.StatusCode.UNAVAILABLE),
)


def grpc_status_of(exc: TranslaneError) -> grpc.StatusCode:
    """The gRPC status code for one of our errors: the only place this mapping lives."""
    for kind, code in _GRPC_CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL
