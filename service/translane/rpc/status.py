"""Our errors as gRPC statuses: the code, the retry hint, and the machine-readable reason, mapped here only."""

from __future__ import annotations

import math

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from ..errors import (
    ERROR_DOMAIN,
    BatchQuotaSpent,
    BudgetSpent,
    FileNotFound,
    InvalidRequest,
    JobNotFinished,
    JobNotFound,
    JobsUnavailable,
    ModelUnavailable,
    OutputTruncated,
    Overloaded,
    PermissionDenied,
    ProviderAuthError,
    ProviderError,
    ProviderModelNotFound,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    TranslaneError,
    Unauthenticated,
    UsageUnavailable,
    WindowPassed,
)

__all__ = ["NO_RETRY", "grpc_status_of", "rpc_status", "trailers"]

_GRPC_CODES: tuple[tuple[type[TranslaneError], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (BudgetSpent, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (OutputTruncated, grpc.StatusCode.OUT_OF_RANGE),
    (ModelUnavailable, grpc.StatusCode.UNAVAILABLE),
    (JobNotFound, grpc.StatusCode.NOT_FOUND),
    (FileNotFound, grpc.StatusCode.NOT_FOUND),
    (JobNotFinished, grpc.StatusCode.FAILED_PRECONDITION),
    (WindowPassed, grpc.StatusCode.DEADLINE_EXCEEDED),
    (UsageUnavailable, grpc.StatusCode.UNAVAILABLE),
    (JobsUnavailable, grpc.StatusCode.UNAVAILABLE),
    (ProviderRateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ProviderQuotaExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (BatchQuotaSpent, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ProviderRejected, grpc.StatusCode.INVALID_ARGUMENT),
    (ProviderAuthError, grpc.StatusCode.FAILED_PRECONDITION),
    (ProviderModelNotFound, grpc.StatusCode.FAILED_PRECONDITION),
    (ProviderTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (ProviderError, grpc.StatusCode.UNAVAILABLE),
)

# The service's own failures are final for a client's automatic retry policy (gRFC A6 pushback: a
# negative value stops it): the service has already retried the provider within the deadline, and
# UNAVAILABLE from it means "the provider is failing", which another replica would only repeat. A
# failure of the transport (a backend killed, or refusing calls while it stops) carries no such
# trailer, so the shim's channel retries it on another backend (gateway_shim/_app.py).
NO_RETRY = ("grpc-retry-pushback-ms", "-1")


def grpc_status_of(exc: TranslaneError) -> grpc.StatusCode:
    """The gRPC status code for one of our errors: the only place this mapping lives."""
    for kind, code in _GRPC_CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def rpc_status(exc: TranslaneError, message: str | None = None) -> status_pb2.Status:
    """One of our errors as a google.rpc.Status (`message`, or the error's): its code, and the details ErrorInfo
    with the reason, after RetryInfo when the error carries a hint."""
    code = grpc_status_of(exc)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=exc.message if message is None else message)
    if exc.retry_after_s is not None:
        delay = max(0.001, exc.retry_after_s)
        # RetryInfo first: the detail clients look for first when they were told to wait.
        status.details.add().Pack(
            error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(seconds=int(delay), nanos=int((delay % 1) * 1e9))
            )
        )
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=exc.reason(), domain=ERROR_DOMAIN))
    return status


def trailers(exc: TranslaneError, code: grpc.StatusCode) -> tuple[tuple[str, str | bytes], ...]:
    """The trailing metadata of a failed RPC: no-retry pushback, and the google.rpc.Status details (ErrorInfo
    with the reason; RetryInfo and `retry-after` in whole seconds when the error carries a hint)."""
    status = rpc_status(exc)
    status.code = getattr(code_pb2, code.name)
    if exc.retry_after_s is None:
        return (NO_RETRY, ("grpc-status-details-bin", status.SerializeToString()))
    delay = max(0.001, exc.retry_after_s)
    return (
        NO_RETRY,
        ("retry-after", str(math.ceil(delay))),
        ("grpc-status-details-bin", status.SerializeToString()),
    )
