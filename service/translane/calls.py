"""Calling the service as its own clients do: the retry hint of a failed call read (for the tools and the shim),
overload waited out as the service asks, passing failures tried again, the rest raised."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from .errors import ERROR_DOMAIN, BudgetSpent

__all__ = [
    "MAX_PAUSE_S",
    "MIN_PAUSE_S",
    "overload_pause",
    "persist",
    "reach_hint",
    "reason",
    "report_failure",
    "retry_after_s",
]

T = TypeVar("T")
# The longest single wait: a hint longer than this is waited out in steps, each a fresh try.
MAX_PAUSE_S = 30.0
# The shortest wait a hint asks for: a hint of 0 is no reason to try again at once.
MIN_PAUSE_S = 0.05


def _status(exc: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The google.rpc.Status a failed call's answer carries in its trailers, when it carries a readable one."""
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a malformed detail is none (and must not turn the shim's 429 into a 500)
                return None
    return None


def retry_after_s(exc: grpc.aio.AioRpcError) -> float | None:
    """The wait a failed call's answer asks for, in seconds (at least MIN_PAUSE_S): its `retry-after` trailer,
    else the RetryInfo detail of its status; None when it carries no readable one.

    The one reader of the hint: the tools wait it out, the shim passes it on as Retry-After.
    """
    for key, value in exc.trailing_metadata() or ():
        if key == "retry-after":
            with contextlib.suppress(TypeError, ValueError):
                seconds = float(value)
                if math.isfinite(seconds):
                    return max(MIN_PAUSE_S, seconds)
    status = _status(exc)
    info = error_details_pb2.RetryInfo()
    for detail in status.details if status is not None else ():
        if detail.Unpack(info):
            delay: float = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
            return max(MIN_PAUSE_S, delay)
    return None


def reason(exc: grpc.aio.AioRpcError) -> str:
    """Why the service failed the call, as its ErrorInfo detail names it (BUDGET_SPENT, OVERLOADED, ...; see
    translane.errors); "" when the answer names no reason of ours."""
    status = _status(exc)
    info = error_details_pb2.ErrorInfo()
    for detail in status.details if status is not None else ():
        if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
            return str(info.reason)
    return ""


def overload_pause(exc: grpc.aio.AioRpcError) -> float | None:
    """Seconds to wait before trying again when the service is full; None when it is not (a spent daily
    budget is RESOURCE_EXHAUSTED too, but no overload: waiting a day is no retry)."""
    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    why = reason(exc)
    # A service from before the reasons were sent says it only in words; the reason rules wherever it is given.
    if why == BudgetSpent.reason() or (not why and "daily budget" in (exc.details() or "")):
        return None
    hint = retry_after_s(exc)
    return min(1.0 if hint is None else hint, MAX_PAUSE_S)


async def persist(
    call: Callable[[], Awaitable[T]],
    retry: Collection[grpc.StatusCode],
    max_attempts: int,
    on_wait: Callable[[], None] = lambda: None,
) -> T:
    """`call()` until it answers: overload waited out without limit (`on_wait` each time), codes in `retry`
    tried again with backoff up to `max_attempts` in all; any other failure, or the last, raised."""
    attempts = 0
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            pause = overload_pause(exc)
            if pause is not None:
                on_wait()
                await asyncio.sleep(pause)
                continue
            attempts += 1
            if exc.code() in retry and attempts < max_attempts:
                await asyncio.sleep(min(MAX_PAUSE_S, 0.5 * 2**attempts))
                continue
            raise


def reach_hint(exc: grpc.aio.AioRpcError, target: str) -> str:
    """What to check when a call did not reach the service at `target`, in one line; "" when it did (the
    service's own answers carry its no-retry trailer) or failed some other way.

    grpc says only "failed to connect to all addresses ... Socket closed" when a TLS service closes the
    handshake: with TLS set up, that is the service refusing this caller's certificate, or its absence (mTLS).
    """
    answered = any(key == "grpc-retry-pushback-ms" for key, _ in (exc.trailing_metadata() or ()))
    if exc.code() != grpc.StatusCode.UNAVAILABLE or answered:
        return ""
    details = (exc.details() or "").lower()
    with_tls = bool(os.environ.get("TRANSLANE_CLIENT_TLS_CA_FILE"))
    presented = bool(os.environ.get("TRANSLANE_CLIENT_TLS_CERT_FILE"))
    if not with_tls:
        return (
            f"is the service running at {target} (--target, $TRANSLANE_GRPC_TARGET)? If it serves TLS, "
            "set TRANSLANE_CLIENT_TLS_CA_FILE (and for mTLS TRANSLANE_CLIENT_TLS_CERT_FILE / _KEY_FILE)"
        )
    if "wrong_version_number" in details:
        return f"the service at {target} answers without TLS: unset TRANSLANE_CLIENT_TLS_CA_FILE (and _CERT/_KEY_FILE)"
    if "certificate_verify_failed" in details or "verification check failed" in details:
        return (
            "the TLS handshake failed on the service's certificate: TRANSLANE_CLIENT_TLS_CA_FILE must be the CA "
            f"that signed it, and it must name the host in {target} (or TRANSLANE_CLIENT_TLS_SERVER_NAME)"
        )
    if "socket closed" in details:
        if not presented:
            return (
                "the service closed the TLS handshake: it likely requires a client certificate (mTLS); set "
                "TRANSLANE_CLIENT_TLS_CERT_FILE and TRANSLANE_CLIENT_TLS_KEY_FILE"
            )
        return (
            "the service closed the TLS handshake: it likely does not trust TRANSLANE_CLIENT_TLS_CERT_FILE "
            "(mTLS: its tls_client_ca_file must be the CA that signed it)"
        )
    return f"is the service running at {target} (--target, $TRANSLANE_GRPC_TARGET)?"


def report_failure(exc: grpc.aio.AioRpcError, target: str) -> int:
    """Say why a call to the service at `target` failed, in a line (no traceback), and what to check when the
    service was not reached; the exit code a command returns for it (1)."""
    print(f"translane: {exc.code().name}: {exc.details()}", file=sys.stderr)
    hint = reach_hint(exc, target)
    if hint:
        print(f"translane: {hint}", file=sys.stderr)
    elif exc.code() == grpc.StatusCode.UNAUTHENTICATED:
        print("translane: the commands send the key in TRANSLANE_API_KEY (or a client certificate)", file=sys.stderr)
    else:
        wait = retry_after_s(exc)
        if wait is not None and exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            print(f"translane: the service says to try again in {wait:g} s", file=sys.stderr)
    return 1
