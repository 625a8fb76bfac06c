"""The service's metrics and its log line per request, through the real server and the simulated provider."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from translane.config import load_config
from translane.prometheus import Counts, Histograms
from translane.server import RunningServer
from translane.sim import SimConfig
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..helpers.eventually import eventually

MODEL = "doubao-seed-translation-250915"
FAST = "deepseek-v3-2-251201"


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_plain_number_families_render_as_prometheus_does() -> None:
    counts = Counts("t_calls", "calls", ["model"])
    hist = Histograms("t_wait_seconds", "waits", ["lane"], (0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 5.0):
        hist.observe(("slow",), v)
    counts.inc(("m",))
    counts.inc(("m",), 2.5)

    class Both:
        def collect(self):  # type: ignore[no-untyped-def]
            return [counts.family(), hist.family()]

    registry = CollectorRegistry()
    registry.register(Both())
    got = _samples(registry)
    assert got[("t_calls_total", (("model", "m"),))] == 3.5
    lane = ("lane", "slow")
    # Cumulative `le` buckets: a value equal to a bound counts in that bound's bucket.
    assert got[("t_wait_seconds_bucket", (lane, ("le", "0.1")))] == 2
    assert got[("t_wait_seconds_bucket", (lane, ("le", "1.0")))] == 3
    assert got[("t_wait_seconds_bucket", (lane, ("le", "+Inf")))] == 4
    assert got[("t_wait_seconds_count", (lane,))] == 4
    assert got[("t_wait_seconds_sum", (lane,))] == pytest.approx(5.65)


async def test_a_request_naming_no_valid_model_counts_without_one(
    stub: pb_grpc.TranslatorStub, server: RunningServer
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Translate(pb.TranslateRequest(segments=["hi"], target_language="zh", model="nope"), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    labels = (("lane", ""), ("model", ""), ("rpc", "Translate"), ("status", "INVALID_ARGUMENT"))

    # The server counts the RPC as its handler ends, which may be just after the caller heard the status.
    def counted() -> Samples | None:
        got = _samples(server.engine.metrics.registry)
        return got if ("translane_requests_total", labels) in got else None

    got = await eventually(counted, 2.0, "the refused request counted")
    assert got[("translane_requests_total", labels)] == 1
    # Every model's series exist from the start, at zero.
    assert got[("translane_upstream_calls_total", (("model", MODEL), ("outcome", "rate_limited")))] == 0


class TestDeadline:
    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig.from_config(load_config(env={}), ttft_s=2.0)

    async def test_a_caller_out_of_time_counts_as_deadline_exceeded(
        self, stub: pb_grpc.TranslatorStub, server: RunningServer
    ) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Translate(pb.TranslateRequest(segments=["hi"], target_language="zh"), timeout=0.3)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        requests = server.engine.metrics.requests.values
        assert requests[("Translate", MODEL, "slow", "DEADLINE_EXCEEDED")] == 1
        assert sum(server.engine.metrics.upstream_calls.values.values()) == 1


class TestAStreamInProgress:
    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig.from_config(load_config(env={}), answer_repeat=200)  # ~5,000 characters an answer

    async def test_counts_in_flight_with_the_text_its_reader_has_not_taken(self, server: RunningServer) -> None:
        metrics = server.engine.metrics

        def when(done: Callable[[Samples], bool]) -> Callable[[], Samples | None]:
            def probe() -> Samples | None:
                got = _samples(metrics.registry)
                return got if done(got) else None

            return probe

        in_flight = ("translane_requests_in_flight", (("rpc", "TranslateStream"),))
        unread = ("translane_stream_unread_chars", ())
        # A client that pulls nothing, its window left at 64 KiB: 40 answers fill it and more.
        options = [("grpc.http2.bdp_probe", 0)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=options) as channel:
            request = pb.TranslateRequest(segments=[f"hi {i}" for i in range(40)], target_language="zh", model=FAST)
            call = pb_grpc.TranslatorStub(channel).TranslateStream(request, timeout=10)
            got = await eventually(when(lambda got: got[unread] > 0), 5.0, "text the reader has not taken")
            assert got[in_flight] == 1 and got[("translane_requests_in_flight", (("rpc", "Translate"),))] == 0
            call.cancel()
            got = await eventually(when(lambda got: got[in_flight] == 0), 5.0, "the stream no longer in flight")
        assert got[unread] == 0


async def test_one_log_line_per_request_with_no_text(
    stub: pb_grpc.TranslatorStub, server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    text = "A sentence that must not reach the logs."
    with caplog.at_level(logging.INFO, logger="translane.server"):
        resp = await stub.Translate(
            pb.TranslateRequest(segments=[text, "and another"], target_language="zh", task_id="job-7"), timeout=10
        )
    (record,) = [r for r in caplog.records if getattr(r, "task_id", None) == "job-7"]
    fields = record.__dict__
    assert record.levelno == logging.INFO and record.getMessage() == "Translate OK"
    assert fields["model"] == fields["served_by"] == MODEL and fields["lane"] == "slow"
    assert fields["segments"] == 2 and fields["calls"] == 2 and fields["retries"] == 0
    assert fields["prompt_tokens"] == resp.usage.prompt_tokens
    assert fields["completion_tokens"] == resp.usage.completion_tokens
    assert fields["cost"] == pytest.approx(resp.usage.cost) and fields["currency"] == "CNY"
    assert fields["trace_id"] == ""  # tracing is off
    assert not any(text in str(v) or "another" in str(v) for v in fields.values())
