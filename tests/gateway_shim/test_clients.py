"""HTTP clients that misbehave, against the shim as a process in front of the service: streams dropped by the
thousand, and readers too slow for their stream. The simulated provider, the service and the shim run as child
processes on loopback with the shipped models file; the test reads both Prometheus endpoints and /proc."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ..helpers.stack import Stack, arrived, dropping_plan, ensure_open_files, leave_the_queue, rss_bytes, running_stack
from ..service.test_clients import FAST, MODEL, segments, small_stream_buffer

CHAT = "/v1/chat/completions"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    # A thousand connections end in this process and a thousand in the shim, which inherits the limit.
    ensure_open_files(4096)
    sim_args = ("--ttft-s", "0", "--tokens-per-s", "0")
    with running_stack(tmp_path, change=small_stream_buffer, sim_args=sim_args, shim=True) as s:
        yield s


def _body(texts: list[str], model: str = "") -> bytes:
    body: dict[str, Any] = {
        "stream": True,
        "target_language": "zh",
        "messages": [{"role": "user", "content": "\n%%\n".join(texts)}],
    }
    if model:
        body["model"] = model
    return json.dumps(body).encode()


async def _read_sse(response: aiohttp.ClientResponse) -> str:
    """The content of a whole SSE answer, which must end with [DONE]."""
    content = []
    async for line in response.content:
        if line.startswith(b"data: {"):
            for choice in json.loads(line[6:])["choices"]:
                content.append(choice["delta"].get("content") or "")
        elif line.startswith(b"data: [DONE]"):
            return "".join(content)
    raise AssertionError("the stream ended without [DONE]")


# -- callers that leave ------------------------------------------------------------------------


async def test_a_thousand_sse_streams_dropped_are_counted_499_and_leave_nothing_behind(stack: Stack) -> None:
    streams = 1000
    await stack.sim_set(ttft_s=0.05, tokens_per_s=200)
    text = "the quick brown fox jumps over the lazy dog and keeps on running " * 3
    fates, leave_after = dropping_plan(streams, seed=499)
    # Those that hang up mid-stream ask for ~1 s of answer (200 tokens/s), not ~0.25 s: they leave after 1-5
    # chunks, so the service is still generating it when they go (with the short answer, a test client behind
    # on 1,000 streams had left 22 after the service had finished theirs: a 499 in the shim, OK in the service).
    texts = [text * 4 if fate == "mid" else text for fate in fates]
    events = [0] * streams
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(stack.shim, connector=connector) as session:
        async with session.post(CHAT, data=_body(["warm"])) as r:
            await _read_sse(r)
        start, shim_start = await stack.service(), await stack.shim_metrics()

        async def caller(i: int) -> int:
            async with session.post(CHAT, data=_body([f"{i}: {texts[i]}"])) as r:
                assert r.status == 200
                if fates[i] != "mid":
                    await _read_sse(r)
                    return 200
                async for line in r.content:
                    events[i] += line.startswith(b"data: ")
                    if events[i] == leave_after[i]:
                        r.close()  # hang up mid-stream
                        return 499
            raise AssertionError(f"stream {i} ended before its caller left")

        opened = time.monotonic()
        tasks = [asyncio.create_task(caller(i)) for i in range(streams)]
        queued = await leave_the_queue(stack, start, tasks, fates)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        dropped = time.monotonic() - opened
        quiet = await stack.quiet()
        shim = await stack.shim_metrics()
        settled = time.monotonic() - opened

    assert all(r == 200 for r, f in zip(results, fates, strict=True) if f == "full")
    assert all(isinstance(r, int | asyncio.CancelledError) for r in results), results
    left = sum(1 for r in results if r != 200)
    started_queue = sum(1 for r, f in zip(results, fates, strict=True) if f == "queue" and r == 200)

    def delta(name: str, **labels: str) -> float:
        return quiet.get(name, **labels) - start.get(name, **labels)

    def shim_delta(status: str) -> float:
        labels = {"route": CHAT, "status": status}
        return shim.get("translane_shim_requests_total", **labels) - shim_start.get(
            "translane_shim_requests_total", **labels
        )

    calls, orphaned = delta("translane_upstream_calls_total"), delta("translane_upstream_orphaned_total")
    cancelled = delta("translane_requests_total", rpc="TranslateStream", status="CANCELLED")
    print(
        f"\n{streams} SSE streams opened ({queued:.0f} in the lane's queue once all had reached the service) and "
        f"dropped ({left} left): all ended in {dropped:.1f} s, both processes idle {settled - dropped:.2f} s "
        f"later; the shim counted {shim_delta('499'):.0f} 499s, the service {cancelled:.0f} cancelled; "
        f"{calls:.0f} provider calls, {orphaned:.0f} orphaned"
    )
    # The shim counts a caller that hung up as 499, unless it had the whole answer already (then 200).
    assert shim_delta("499") + shim_delta("200") == streams
    assert left - 20 <= shim_delta("499") <= left
    assert shim.get("translane_shim_requests_in_flight") == 1  # the scrape itself
    # Its calls to the service went with them: nothing left there either.
    assert quiet.get("translane_lane_in_flight") == quiet.get("translane_lane_queued") == 0
    assert quiet.get("translane_requests_in_flight") == quiet.get("translane_stream_unread_chars") == 0
    assert cancelled + delta("translane_requests_total", rpc="TranslateStream", status="OK") == streams
    # (A caller that hung up as the shim wrote the end of an answer the service had finished is a 499 in the
    # shim and OK in the service: 0-2 on a quiet machine, 26 of 542 once on a fresh clone's run beside busy
    # neighbours; bounded at 5% of those that hung up.)
    assert shim_delta("499") - max(20, left // 20) <= cancelled <= shim_delta("499")
    assert delta("translane_lane_granted_total") - delta("translane_lane_refunded_total") == calls
    assert calls <= fates.count("full") + fates.count("mid") + started_queue + 80
    assert orphaned <= left
    assert delta("translane_upstream_retries_total") == delta("translane_upstream_rate_limited_total") == 0
    assert quiet.get("translane_governor_rate_factor", model=MODEL) == 1


# -- a slow reader ----------------------------------------------------------------------------


class _SlowReader:
    """A raw HTTP client with a tiny receive buffer that reads a few bytes at a time."""

    def __init__(self, url: str, body: bytes) -> None:
        host, port = url.removeprefix("http://").split(":")
        self._address = (host, int(port))
        self._request = (
            f"POST {CHAT} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._sock.setblocking(False)
        self.received = bytearray()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self._sock, self._address)
        await loop.sock_sendall(self._sock, self._request)

    async def trickle(self, stop: asyncio.Event, size: int = 64, every_s: float = 0.02) -> None:
        """Read `size` bytes every `every_s` until `stop`."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self.received += await loop.sock_recv(self._sock, size)
            await asyncio.sleep(every_s)  # a reader slow on purpose: the scenario

    async def read_to_end(self) -> str:
        """Read the rest at once: the answer's content, which must end with [DONE]."""
        loop = asyncio.get_running_loop()
        while not self.received.endswith(b"data: [DONE]\r\n\r\n") and b"\r\n0\r\n\r\n" not in self.received:
            data = await loop.sock_recv(self._sock, 65536)
            assert data, "the shim closed the connection before the end"
            self.received += data
        head, _, chunked = bytes(self.received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        body = bytearray()
        while chunked:
            size, _, rest = chunked.partition(b"\r\n")
            body += rest[: int(size, 16)]
            chunked = rest[int(size, 16) + 2 :]
        lines = body.decode().split("\n")
        assert "data: [DONE]" in lines
        frames = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
        return "".join(c["delta"].get("content") or "" for f in frames for c in f["choices"])

    def close(self) -> None:
        self._sock.close()


async def test_slow_http_readers_pause_the_chain_and_hold_bounded_memory(stack: Stack) -> None:
    readers, count, repeat = 8, 400, 20
    await stack.sim_set(answer_repeat=repeat)  # short questions, long answers (each stream 3.2 M characters)
    body = _body(segments(count, 400), FAST)
    short = segments(12, 400, "short ")
    async with aiohttp.ClientSession(stack.shim) as session, session.post(CHAT, data=_body(short, FAST)) as r:
        await _read_sse(r)  # warm up both processes
    start = await stack.service()
    before = rss_bytes(stack.shim_pid), rss_bytes(stack.service_pid)

    slow = [_SlowReader(stack.shim, _body(short, FAST) if i == 0 else body) for i in range(readers)]
    stop = asyncio.Event()
    try:
        for reader in slow:
            await reader.open()
        trickling = [asyncio.create_task(reader.trickle(stop)) for reader in slow]
        # Every stream reached the service before "quiet" means anything.
        await stack.until(lambda now: arrived(start, now) >= readers, f"all {readers} streams at the service")
        quiet = await stack.quiet()
        held = rss_bytes(stack.shim_pid), rss_bytes(stack.service_pid)
        made = quiet.get("translane_upstream_calls_total") - start.get("translane_upstream_calls_total")
        print(
            f"\n{readers} HTTP readers taking 64 bytes every 20 ms, answers of {count} x ~8,000 characters: "
            f"{made:.0f} of {12 + (readers - 1) * count} provider calls made, then none; "
            f"{quiet.get('translane_stream_unread_chars'):,.0f} characters unread in the service; shim RSS "
            f"{before[0] / 2**20:.1f} -> {held[0] / 2**20:.1f} MiB, service RSS {before[1] / 2**20:.1f} -> "
            f"{held[1] / 2**20:.1f} MiB"
        )
        # Each step of the chain waits for the one after it: the socket, the shim's writes, its gRPC reads,
        # the service's writes, its provider calls. The work paused at what the buffers between hold, per
        # stream: the socket's (2 x 64 KiB), aiohttp's (~128 KiB), the gRPC window (64 KiB), the service's
        # (~3 x 16 Ki characters): ~50 answers of ~8,000 characters, of 400.
        assert readers <= made <= readers * 56  # each stream started, and stopped at the bound
        assert quiet.get("translane_stream_unread_chars") > 0
        assert quiet.get("translane_lane_in_flight") == 0
        # Read ahead, each stream's answer would hold 3.2 M characters in the shim or the service.
        assert held[0] - before[0] < 16 * 2**20
        assert held[1] - before[1] < 24 * 2**20

        stop.set()
        await asyncio.gather(*trickling)
        content = await slow[0].read_to_end()
        assert all(s in content for s in short)
    finally:
        for reader in slow:
            reader.close()
    after = await stack.quiet()
    assert after.get("translane_lane_in_flight") == after.get("translane_requests_in_flight") == 0
    shim = await stack.shim_metrics()
    assert shim.get("translane_shim_requests_in_flight") == 1  # this scrape
    assert shim.get("translane_shim_requests_total", route=CHAT, status="499") == readers - 1
