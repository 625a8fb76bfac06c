"""translane's one error tree, and the mapping of provider answers into it.

No transport lives here: the gRPC status of each error is chosen in rpc/status.py. What an error
quotes of the input goes through `quote`, so no input can swell or break the message.

TranslaneError
├── InvalidRequest              the caller asked for something we cannot do
│   └── UnknownModel
├── OutputTruncated             the translation would not fit the model's output limit
├── Unauthenticated             no valid identity (a tenants file is in force)
├── PermissionDenied            the caller's tenant may not do this (a model, a tenant it names)
├── Overloaded                  shed before reaching the provider (queue full,
│   │                           deadline cannot be met); carries retry_after_s
│   └── TenantLimited           the caller's tenant is past one of its own limits
├── ModelUnavailable            every candidate model is paused or disabled
│   └── BudgetSpent             the model's daily budget is spent; retry_after_s is the next day
├── JobNotFound                 no job (long-running operation) of that name
├── FileNotFound                no uploaded file of that id (the caller's)
├── JobNotFinished              the job is still running (it cannot be deleted yet)
├── WindowPassed                a job's completion window passed before its line started
├── PermissionDenied            the caller may not see what it asked for (another tenant's usage)
├── UsageUnavailable            the usage ledger's store cannot be read now
└── ProviderError               the provider answered with an error, or not at all
    ├── ProviderRateLimited     429 that a retry may cure
    ├── ProviderQuotaExhausted  spending limit reached (SetLimitExceeded): fatal
    ├── BatchQuotaSpent         429 QuotaExceeded on a model's batch route: its daily quota is
    │                           spent; the work goes online or waits (the model's batch_when_spent)
    ├── BatchRouteFailed        the provider's batch holding the call (openai-batch) expired, failed or
    │                           was cancelled without answering it; the call goes online or fails (the
    │                           model's batch_when_failed)
    ├── ProviderRejected        400: the request itself is wrong, never retried
    ├── ProviderAuthError       401/403: our key or account is wrong
    ├── ProviderModelNotFound   404: model not opened / no such endpoint
    ├── ProviderServerError     5xx: retried
    │   └── ProviderEmptyAnswer 200 with no translation in it (all reasoning): retried
    ├── ProviderConnectionError reset, refused, truncated stream: retried
    └── ProviderTimeout         no answer in time
"""

from __future__ import annotations

import re

__all__ = [
    "ERROR_DOMAIN",
    "RATE_CODES",
    "BatchQuotaSpent",
    "BatchRouteFailed",
    "BudgetSpent",
    "FileNotFound",
    "InvalidRequest",
    "JobNotFinished",
    "JobNotFound",
    "ModelUnavailable",
    "OutputTruncated",
    "Overloaded",
    "PermissionDenied",
    "ProviderAuthError",
    "ProviderConnectionError",
    "ProviderEmptyAnswer",
    "ProviderError",
    "ProviderModelNotFound",
    "ProviderQuotaExhausted",
    "ProviderRateLimited",
    "ProviderRejected",
    "ProviderServerError",
    "ProviderTimeout",
    "TenantLimited",
    "TranslaneError",
    "Unauthenticated",
    "UnknownModel",
    "UsageUnavailable",
    "WindowPassed",
    "provider_error",
    "quote",
    "quote_id",
]

# Characters of a rejected value an error message shows: a gRPC status message travels in a
# header, which a 20,000-character model name would push past the metadata limit.
QUOTED_CHARS = 40
# An id or resource name is quoted whole up to this many characters, so that it can be copied from the message.
QUOTED_ID_CHARS = 80


# google.rpc.ErrorInfo's domain for the reasons the service sends with a failed call (TranslaneError.reason).
ERROR_DOMAIN = "translane"


class TranslaneError(Exception):
    """Base of every error translane raises on purpose."""

    retry_after_s: float | None = None

    @classmethod
    def reason(cls) -> str:
        """The kind of error as google.rpc.ErrorInfo names reasons, sent with it: BudgetSpent → BUDGET_SPENT."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).upper()

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


class InvalidRequest(TranslaneError):
    pass


class UnknownModel(InvalidRequest):
    pass


class Unauthenticated(TranslaneError):
    pass


class PermissionDenied(TranslaneError):
    pass


class Overloaded(TranslaneError):
    pass


class TenantLimited(Overloaded):
    """A tenant past its own rpm, tpm, concurrency or daily budget; the message names the limit."""


class OutputTruncated(TranslaneError):
    pass


class ModelUnavailable(TranslaneError):
    pass


class BudgetSpent(ModelUnavailable):
    pass


class JobNotFound(TranslaneError):
    pass


class FileNotFound(TranslaneError):
    pass


class JobNotFinished(TranslaneError):
    pass


class UsageUnavailable(TranslaneError):
    pass


class JobsUnavailable(TranslaneError):
    """The store of jobs and files (Redis) cannot be reached now."""


class WindowPassed(TranslaneError):
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
    """A 429 that a retry may cure; `over_rate` when it says we went past the rate (not just busy)."""

    retryable = True

    @property
    def over_rate(self) -> bool:
        return self.code in RATE_CODES or not self.code


class ProviderQuotaExhausted(ProviderError):
    pass


class BatchQuotaSpent(ProviderError):
    """The batch route's quota is spent for its day; `retry_after_s` is the provider's word on when it turns."""

    retryable = True


class BatchRouteFailed(ProviderError):
    """The provider's batch that held the call ended without answering it; `code` is how it ended (`expired`,
    `failed`, `cancelled`, or the result line's error code)."""

    retryable = True


class ProviderRejected(ProviderError):
    pass


class ProviderAuthError(ProviderError):
    pass


class ProviderModelNotFound(ProviderError):
    pass


class ProviderServerError(ProviderError):
    retryable = True


class ProviderEmptyAnswer(ProviderServerError):
    pass


class ProviderConnectionError(ProviderError):
    retryable = True


class ProviderTimeout(ProviderError):
    retryable = True


# Ark's (and OpenAI's) 429 codes that mean "you went past the rate": these lower
# the admitted rate. Others (overload, burst, in-flight batch) only pause or retry.
RATE_CODES = frozenset(
    {
        "RateLimitExceeded.EndpointRPMExceeded",
        "RateLimitExceeded.EndpointTPMExceeded",
        "ModelAccountRpmRateLimitExceeded",
        "ModelAccountTpmRateLimitExceeded",
        "APIAccountRpmRateLimitExceeded",
        "AccountRateLimitExceeded",
        "rate_limit_exceeded",
    }
)


def provider_error(
    status: int, code: str, message: str, retry_after_s: float | None = None, *, batch: bool = False
) -> ProviderError:
    """Map a provider's HTTP status and error code (Ark or OpenAI style) into our tree; `batch`: the answer came
    from a model's batch route, where a spent quota is the route's day, not the account's."""
    text = f"provider answered {status} {code}: {message}".strip()
    kind: type[ProviderError]
    if batch and status == 429 and code == "QuotaExceeded":
        kind = BatchQuotaSpent
    elif code == "SetLimitExceeded":
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


def quote_id(value: str) -> str:
    """An id or resource name for an error message: whole, so it can be copied, up to QUOTED_ID_CHARS."""
    return quote(value, QUOTED_ID_CHARS)


def quote(value: str, limit: int = QUOTED_CHARS) -> str:
    """`value` for an error message: a bounded prefix, escaped, so no input can swell or break the message."""
    # repr escapes what is not printable (newlines, controls, lone surrogates) and keeps the rest readable.
    return repr(value[:limit]) + (f" (+{len(value) - limit} characters)" if len(value) > limit else "")
