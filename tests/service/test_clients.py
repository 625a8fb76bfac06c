"""Clients that misbehave, against the service as a process: callers that leave (in the queue, mid-stream) by
the thousand, and readers too slow for their stream. The simulated provider and the service run as child
processes on loopback with the shipped models file; what the tests check they read from outside (the service's
Prometheus endpoint and /proc)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..helpers.stack import Stack, arrived, dropping_plan, leave_the_queue, rss_bytes, running_stack

MODEL = "doubao-seed-translation-250915"  # the default model, slow lane as shipped: 80 slots, 5,000 RPM, 500,000 TPM
FAST = "deepseek-v3-2-251201"  # fast lane as shipped: 500 slots, 30,000 RPM, 5,000,000 TPM
# The service's bound on a stream's unread text, small here so a stream many times longer runs in seconds.
BUFFER_CHARS = 16_384
SENTENCE = "Internationalization, standardization and interoperability require considerable coordination. "


def segments(count: int, chars: int, tag: str = "") -> list[str]:
    """`count` segments of about `chars` characters of whole sentences, each telling which it is."""
    body = SENTENCE * max(1, chars // len(SENTENCE))
    return [f"{tag}{i}. {body}" for i in range(count)]


def small_stream_buffer(data: dict[str, Any]) -> None:
    """A models file's change: the service's bound on a stream's unread text at BUFFER_CHARS."""
    data["server"]["stream_buffer_chars"] = BUFFER_CHARS


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    # A provider that answers at once, so the test is bound by what the service does, not by pacing.
    with running_stack(tmp_path, change=small_stream_buffer, sim_args=("--ttft-s", "0", "--tokens-per-s", "0")) as s:
        yield s


async def _read_all(call: Any) -> dict[int, str]:
    texts: dict[int, str] = {}
    final = False
    async for chunk in call:
        texts[chunk.segment_index] = texts.get(chunk.segment_index, "") + chunk.delta
        final = chunk.final
    assert final
    return texts


# -- callers that leave ------------------------------------------------------------------------


async def test_a_thousand_streams_opened_and_dropped_leave_nothing_behind(stack: Stack) -> None:
    streams = 1000
    # Answers of ~40 pieces paced at 200 a second: a stream lasts ~0.25 s, long enough to leave in the middle.
    await stack.sim_set(ttft_s=0.05, tokens_per_s=200)
    text = "the quick brown fox jumps over the lazy dog and keeps on running " * 3
    fates, leave_after = dropping_plan(streams, seed=1000)
    got = [0] * streams
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        stub = pb_grpc.TranslatorStub(channel)
        await _read_all(stub.TranslateStream(pb.TranslateRequest(segments=["warm"], target_language="de"), timeout=10))
        start = await stack.service()

        async def caller(i: int) -> grpc.StatusCode:
            # Batch priority: every one of them may wait its turn in the lane (none is refused for the queue).
            req = pb.TranslateRequest(segments=[f"{i}: {text}"], target_language="de", priority=pb.PRIORITY_BATCH)
            call = stub.TranslateStream(req, timeout=60)
            final = False
            try:
                async for chunk in call:
                    got[i] += 1
                    if fates[i] == "mid" and got[i] == leave_after[i]:
                        call.cancel()
                        break
                    final = chunk.final
            except asyncio.CancelledError:
                call.cancel()  # its caller left (below): the call goes with it
                raise
            assert final or fates[i] == "mid", (i, fates[i])
            code: grpc.StatusCode = await call.code()
            return code

        opened = time.monotonic()
        tasks = [asyncio.create_task(caller(i)) for i in range(streams)]
        queued = await leave_the_queue(stack, start, tasks, fates)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        dropped = time.monotonic() - opened
        quiet = await stack.quiet()
        settled = time.monotonic() - opened

        # A caller that left after its answer was complete (its client had it all) saw OK, like the service.
        codes = [r if isinstance(r, grpc.StatusCode) else grpc.StatusCode.CANCELLED for r in results]
        assert all(c == grpc.StatusCode.OK for c, f in zip(codes, fates, strict=True) if f == "full")
        assert all(isinstance(r, grpc.StatusCode | asyncio.CancelledError) for r in results), results
        left = codes.count(grpc.StatusCode.CANCELLED)
        assert left >= 700
        started_queue = sum(1 for i in range(streams) if fates[i] == "queue" and got[i])

        def delta(name: str, **labels: str) -> float:
            return quiet.get(name, **labels) - start.get(name, **labels)

        calls = delta("translane_upstream_calls_total")
        orphaned = delta("translane_upstream_orphaned_total")
        print(
            f"\n{streams} streams opened ({queued:.0f} in the lane's queue once all had arrived) and dropped "
            f"({left} left: {fates.count('queue')} in the queue, "
            f"{started_queue} of them already streaming, {fates.count('mid')} after 1-5 chunks): all ended in "
            f"{dropped:.1f} s, the service idle {settled - dropped:.2f} s later; {calls:.0f} provider calls, "
            f"{orphaned:.0f} orphaned"
        )
        # Nothing left behind: no slot, no queue entry, no RPC, no unread text.
        assert quiet.get("translane_lane_in_flight") == quiet.get("translane_lane_queued") == 0
        assert quiet.get("translane_requests_in_flight") == quiet.get("translane_stream_unread_chars") == 0
        # Every stream is counted once, as cancelled unless the service had finished it when its caller left.
        cancelled = delta("translane_requests_total", rpc="TranslateStream", status="CANCELLED")
        ok = delta("translane_requests_total", rpc="TranslateStream", status="OK")
        assert cancelled + ok == streams
        assert left - 20 <= cancelled <= left
        # Every slot granted went to one provider call, ended or cancelled (a closed ticket: its reservation
        # settled or, for a call never sent, refunded); a call cut short is counted as orphaned.
        assert delta("translane_lane_granted_total") - delta("translane_lane_refunded_total") == calls
        assert delta("translane_upstream_calls_total", outcome="cancelled") == orphaned
        # Provider calls for callers gone are bounded: those that had started when their caller left (the
        # queue's leavers that streamed, the mid-stream ones, at most a lane's worth about to stream).
        assert calls <= fates.count("full") + fates.count("mid") + started_queue + 80
        assert orphaned <= left
        # No provider trouble to explain any of it, and the model's rate untouched.
        assert delta("translane_upstream_retries_total") == delta("translane_upstream_rate_limited_total") == 0
        assert quiet.get("translane_governor_rate_factor", model=MODEL) == 1
        assert quiet.get("translane_governor_paused_seconds", model=MODEL) == 0

        # And the service answers as before, at once.
        asked = time.monotonic()
        resp = await stub.Translate(pb.TranslateRequest(segments=["after"], target_language="de"), timeout=5)
        after = pb.TranslateRequest(segments=["after"], target_language="de")
        texts = await _read_all(stub.TranslateStream(after, timeout=5))
        answered = time.monotonic() - asked
        assert resp.translations[0].text.endswith("after") and texts[0].endswith("after")
        print(f"then a request and a stream answered in {answered * 1000:.0f} ms")
        assert answered < 5.0  # not stuck behind what the dropped callers left (it is ~0.2 s)


# -- a slow reader ----------------------------------------------------------------------------


async def test_slow_readers_pause_the_work_and_hold_bounded_memory(stack: Stack) -> None:
    readers, count, repeat = 8, 200, 20
    # Short questions, long answers: each stream's answer is 20 times its request (1.6 M characters).
    await stack.sim_set(answer_repeat=repeat)
    request = pb.TranslateRequest(segments=segments(count, 400), target_language="de", model=FAST)
    short = pb.TranslateRequest(segments=segments(12, 400, "short "), target_language="de", model=FAST)
    # A reader that pulls nothing. Without BDP probing the client's window stays at grpc's 64 KiB (with it
    # grpc grows a reader's window to ~4 MiB per stream), so the service's writes wait once it is full.
    options = [("grpc.http2.bdp_probe", 0)]
    async with grpc.aio.insecure_channel(stack.grpc_target, options=options) as channel:
        stub = pb_grpc.TranslatorStub(channel)
        # Warm up: a stream read at once, so the figures start from a service that has served (and learned
        # how long this model's answers run).
        await _read_all(stub.TranslateStream(short, timeout=30))
        start = await stack.service()
        before = rss_bytes(stack.service_pid)

        calls = [stub.TranslateStream(short if i == 0 else request, timeout=60) for i in range(readers)]
        # Every stream reached the service before "quiet" means anything.
        await stack.until(lambda now: arrived(start, now) >= readers, f"all {readers} streams at the service")
        quiet = await stack.quiet()
        held = rss_bytes(stack.service_pid)
        made = quiet.get("translane_upstream_calls_total") - start.get("translane_upstream_calls_total")
        unread = quiet.get("translane_stream_unread_chars")
        print(
            f"\n{readers} readers pulling nothing, answers of {count} x ~8,000 characters each: "
            f"{made:.0f} of {12 + (readers - 1) * count} provider calls made, then none; "
            f"{unread:,.0f} characters unread in the service; RSS {before / 2**20:.1f} -> {held / 2**20:.1f} MiB"
        )
        # The work paused at the bound: each stream made the calls whose answers fill its reader's window
        # (64 KiB, ~8 answers) and the service's bound (16 Ki characters, ~2), of its 200; it holds no lane
        # slot while it waits for its reader.
        assert readers <= made <= readers * 20  # each stream started, and stopped at the bound
        assert quiet.get("translane_lane_in_flight") == 0
        assert 0 < unread <= readers * 3 * BUFFER_CHARS
        # Read ahead, the answers would hold 7 x 1.6 M characters; the service holds its requests
        # (7 x 80 KB) and a bounded buffer per stream.
        assert held - before < 24 * 2**20

        # A reader that catches up gets its whole translation, in order: the work resumes for it.
        texts = await _read_all(calls[0])
        assert [texts[i].endswith(s) for i, s in enumerate(short.segments)] == [True] * len(short.segments)
        for call in calls[1:]:
            call.cancel()
    after = await stack.quiet()
    assert after.get("translane_lane_in_flight") == after.get("translane_lane_queued") == 0
    assert after.get("translane_requests_in_flight") == after.get("translane_stream_unread_chars") == 0
