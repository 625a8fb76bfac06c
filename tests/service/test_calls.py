"""The one reader of a failed call's retry hint, as the tools wait it out and the shim passes it on."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from translane.calls import MAX_PAUSE_S, MIN_PAUSE_S, overload_pause, reason, retry_after_s
from translane.errors import BudgetSpent, Overloaded, TranslaneError
from translane.rpc.status import grpc_status_of, trailers
from translane.wire import from_rpc_error


def _retry_info(seconds: int, nanos: int = 0) -> bytes:
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="full")
    status.details.add().Pack(
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=seconds, nanos=nanos))
    )
    return status.SerializeToString()


def _failed(
    *trailers: tuple[str, str | bytes], code: grpc.StatusCode = grpc.StatusCode.RESOURCE_EXHAUSTED
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details="full")


@pytest.mark.parametrize(
    ("trailers", "seconds"),
    [
        ((("retry-after", "3"),), 3.0),
        ((("retry-after", "2.5"),), 2.5),
        ((("retry-after", "0"),), MIN_PAUSE_S),
        # The trailer wins over the detail; without a readable one the detail is read.
        ((("retry-after", "3"), ("grpc-status-details-bin", _retry_info(7))), 3.0),
        ((("grpc-status-details-bin", _retry_info(7, 500_000_000)),), 7.5),
        ((("retry-after", "soon"), ("grpc-status-details-bin", _retry_info(7))), 7.0),
        ((("retry-after", "inf"),), None),
        ((("retry-after", "nan"),), None),
        ((("grpc-status-details-bin", b"\xff not a status"),), None),
        ((("grpc-status-details-bin", status_pb2.Status(code=code_pb2.UNAVAILABLE).SerializeToString()),), None),
        ((), None),
    ],
)
def test_retry_after_s_reads_the_trailer_else_the_retry_info(
    trailers: tuple[tuple[str, str | bytes], ...], seconds: float | None
) -> None:
    assert retry_after_s(_failed(*trailers)) == seconds


def test_tools_wait_the_hint_out_within_bounds() -> None:
    assert overload_pause(_failed(("retry-after", "3"))) == 3.0
    assert overload_pause(_failed(("retry-after", "3600"))) == MAX_PAUSE_S
    assert overload_pause(_failed()) == 1.0
    assert overload_pause(_failed(("retry-after", "3"), code=grpc.StatusCode.UNAVAILABLE)) is None


@pytest.mark.parametrize(
    ("trailers", "header"),
    [
        ((("retry-after", "3"),), "3"),
        ((("retry-after", "0.2"),), "1"),
        ((("grpc-status-details-bin", _retry_info(7, 1)),), "8"),
        ((("grpc-status-details-bin", b"\xff not a status"),), "1"),
        ((), "1"),
    ],
)
def test_the_shim_passes_the_hint_on_in_whole_seconds(
    trailers: tuple[tuple[str, str | bytes], ...], header: str
) -> None:
    assert from_rpc_error(_failed(*trailers)).headers() == {"Retry-After": header}


def _as_answered(exc: TranslaneError) -> grpc.aio.AioRpcError:
    """The failed call a client sees when the service answers `exc` (its real status code and trailers)."""
    code = grpc_status_of(exc)
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers(exc, code)), details=exc.message)


def test_a_spent_budget_is_told_by_its_reason_not_its_wording() -> None:
    spent = _as_answered(BudgetSpent("model: worded any way at all", retry_after_s=3600))
    full = _as_answered(Overloaded("daily budget mentioned in passing, but a full queue", retry_after_s=2))
    assert (reason(spent), reason(full)) == ("BUDGET_SPENT", "OVERLOADED")
    # Both are RESOURCE_EXHAUSTED: the reason alone says which one a tool may wait out.
    assert overload_pause(spent) is None
    assert overload_pause(full) == 2.0
    assert reason(_failed(("retry-after", "3"))) == ""


def test_a_service_that_sends_no_reason_is_read_by_its_words() -> None:
    """Servers from before the ErrorInfo reason said a spent budget only in the message."""
    old = grpc.aio.AioRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(("retry-after", "3600")),
        details="model: daily budget of 20 tokens for m is spent (20 used)",
    )
    assert reason(old) == "" and overload_pause(old) is None
