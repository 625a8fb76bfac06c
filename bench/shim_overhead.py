"""What the HTTP shim adds to a call: p50/p99 at a fixed request rate, over a direct gRPC call.

Starts the simulated provider (zero latency), `translane serve` and `translane shim` as
separate processes on loopback, then at a fixed rate (open loop: requests go out on
schedule whatever the replies do) measures
  (a) a direct gRPC Translate call, and
  (b) the same translation as POST /v1/chat/completions through the shim, sent the way
      Immersive Translate sends it (its system prompt and instruction line),
and prints the difference. The model's limits are far above the load, so the governor
admits everything and the difference is the shim's own cost (HTTP parsing, prompt
parsing, one more gRPC hop), as an HTTP client sees it.

    python bench/shim_overhead.py [--rate 300] [--seconds 10] [--rounds 5] [--profile shim.txt]

--profile runs the shim under pyinstrument and writes its text report to the file given.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    BENCH_TEXT,
    UNTHROTTLED_MODELS,
    closed_loop,
    free_port,
    machine,
    open_loop,
    percentile,
    process,
    sim_and_serve_args,
)
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

SYSTEM = (
    "You are a professional Simplified Chinese native translator who needs to fluently translate text into "
    "Simplified Chinese.\n\n## Translation Rules\n"
    "1. Output only the translated content, without explanations or additional content\n"
    "2. The returned translation must maintain exactly the same number of paragraphs and format as the original\n"
    "3. If the text contains HTML tags, consider where the tags should be placed in the translation\n"
    "4. For content that should not be translated (such as proper nouns, code, etc.), keep the original text."
)
EXPECTED = f"[sim auto->zh] {BENCH_TEXT}"


def profiled_shim(args: list[str], port: int, report: Path) -> contextlib.AbstractContextManager[Any]:
    """`translane shim` under pyinstrument; the report is written when it stops."""
    pyinstrument = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(report), "-m", "translane.cli"]
    return process(args, port, command=pyinstrument)


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(name: str, lat: list[float], failures: int) -> None:
    ms = [x * 1000 for x in lat]
    print(
        f"  {name:34} n={len(ms):6d} fail={failures:3d}  p50={percentile(ms, 50):7.3f} ms  "
        f"p90={percentile(ms, 90):7.3f} ms  p99={percentile(ms, 99):7.3f} ms"
    )


async def run(args: argparse.Namespace, grpc_port: int, shim_port: int, shim_pid: int) -> None:
    url = f"http://127.0.0.1:{shim_port}/v1/chat/completions"
    body = {
        "model": "bench",
        "temperature": 0,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Translate to Simplified Chinese (output translation only):\n\n{BENCH_TEXT}"},
        ],
    }
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
    ):
        stub = pb_grpc.TranslatorStub(channel)
        req = pb.TranslateRequest(segments=[BENCH_TEXT], target_language="zh", model="bench")

        async def via_grpc() -> None:
            resp = await stub.Translate(req, timeout=10)
            assert resp.translations[0].text == EXPECTED

        async def via_shim() -> None:
            async with http.post(url, json=body) as r:
                assert r.status == 200, r.status
                reply = await r.json()
            assert reply["choices"][0]["message"]["content"] == EXPECTED

        # Warm both paths: connections, the tokenizer, the shim's prompt cache.
        await closed_loop(8, 1.0, via_grpc)
        await closed_loop(8, 1.0, via_shim)
        # Alternate the two in slices, so load from anything else on the machine falls on both alike.
        slice_s = args.seconds / args.rounds
        print(f"fixed rate {args.rate:.0f} req/s, open loop, {args.seconds:.0f}s per path in {args.rounds} slices:")
        lat_a: list[float] = []
        lat_b: list[float] = []
        fail_a = fail_b = 0
        shim_cpu = 0.0
        for _ in range(args.rounds):
            lat, fail = await open_loop(args.rate, slice_s, via_grpc)
            lat_a += lat
            fail_a += fail
            before = cpu_s(shim_pid)
            lat, fail = await open_loop(args.rate, slice_s, via_shim)
            after = cpu_s(shim_pid)
            lat_b += lat
            fail_b += fail
            if before is not None and after is not None:
                shim_cpu += after - before
        report("(a) direct gRPC Translate", lat_a, fail_a)
        report("(b) via the shim, chat completions", lat_b, fail_b)
        added50 = (percentile(lat_b, 50) - percentile(lat_a, 50)) * 1000
        added99 = (percentile(lat_b, 99) - percentile(lat_a, 99)) * 1000
        print(
            f"  added by the shim: p50 {added50:+.3f} ms, p99 {added99:+.3f} ms   (targets: p50 <= 2 ms, p99 <= 10 ms)"
        )
        if shim_cpu and lat_b:
            per_request_us = shim_cpu / len(lat_b) * 1e6
            print(f"  shim CPU: {per_request_us:.0f} us per request, {shim_cpu / args.seconds:.0%} of one core")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=300.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=5, help="slices each path's time is cut into, alternating")
    p.add_argument("--profile", type=Path, default=None, help="profile the shim; write the report here")
    args = p.parse_args()
    sim_port, grpc_port, shim_port = free_port(), free_port(), free_port()
    print(f"bench/shim_overhead.py on {machine()}, {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models.toml"
        models.write_text(UNTHROTTLED_MODELS)
        sim_args, serve_args = sim_and_serve_args(models, sim_port, grpc_port)
        shim_args = ["shim", "--host", "127.0.0.1", "--port", str(shim_port), "--grpc-target", f"127.0.0.1:{grpc_port}"]
        shim = (
            profiled_shim(shim_args, shim_port, args.profile)
            if args.profile
            else process(shim_args, shim_port, env={"TRANSLANE_API_KEYS": ""})
        )
        with process(sim_args, sim_port), process(serve_args, grpc_port), shim as shim_proc:
            uvloop.run(run(args, grpc_port, shim_port, shim_proc.pid))
    if args.profile:
        print(f"shim profile written to {args.profile}")


if __name__ == "__main__":
    main()
