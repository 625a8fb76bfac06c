"""What translane adds to a call: latency at a fixed rate, and the most requests/s one instance serves.

Starts the simulated provider (zero latency) and `translane serve` as separate
processes on loopback, then measures
  (a) a direct aiohttp call to the provider, and
  (b) the same translation through the gRPC server,
at a fixed rate (open loop), and finally (c) the server's throughput with the
throttle open (closed loop). The model used has limits far above the load, so
the governor admits everything and the figures are the server's own cost.

    python bench/overhead.py [--rate 300] [--seconds 10] [--workers 64] [--tracing]

--tracing runs the server with OTEL_TRACES_EXPORTER=otlp (OTLP/HTTP, default batching) to a
local receiver in a process of its own, and reports how many spans reached it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

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
    otlp_sink,
    percentile,
    process,
    sim_and_serve_args,
)
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc


def report(name: str, lat: list[float], failures: int) -> None:
    ms = [x * 1000 for x in lat]
    print(
        f"  {name:28} n={len(ms):6d} fail={failures:3d}  p50={percentile(ms, 50):7.3f} ms  "
        f"p90={percentile(ms, 90):7.3f} ms  p99={percentile(ms, 99):7.3f} ms"
    )


async def run(args: argparse.Namespace, sim_port: int, grpc_port: int) -> None:
    body = {
        "model": "bench",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": BENCH_TEXT, "translation_options": {"target_language": "zh"}}
                ],
            }
        ],
    }
    url = f"http://127.0.0.1:{sim_port}/api/v3/responses"
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
    ):
        stub = pb_grpc.TranslatorStub(channel)
        req = pb.TranslateRequest(segments=[BENCH_TEXT], target_language="zh")

        async def direct() -> None:
            async with http.post(url, json=body) as r:
                assert r.status == 200, r.status
                await r.read()

        async def via_grpc() -> None:
            await stub.Translate(req, timeout=10)

        # Warm both paths (connections, caches, tokenizer).
        await closed_loop(8, 1.0, direct)
        await closed_loop(8, 1.0, via_grpc)
        print(f"fixed rate {args.rate:.0f} req/s for {args.seconds:.0f}s, open loop:")
        lat_a, fail_a = await open_loop(args.rate, args.seconds, direct)
        report("(a) direct to provider", lat_a, fail_a)
        lat_b, fail_b = await open_loop(args.rate, args.seconds, via_grpc)
        report("(b) through translane gRPC", lat_b, fail_b)
        added50 = (percentile(lat_b, 50) - percentile(lat_a, 50)) * 1000
        added99 = (percentile(lat_b, 99) - percentile(lat_a, 99)) * 1000
        print(
            f"  added by translane: p50 {added50:+.3f} ms, p99 {added99:+.3f} ms   (targets: p50 <= 1 ms, p99 <= 5 ms)"
        )

        print(f"open throttle, {args.workers} concurrent callers for {args.seconds:.0f}s:")
        t0 = time.perf_counter()
        done, failed = await closed_loop(args.workers, args.seconds, via_grpc)
        elapsed = time.perf_counter() - t0
        print(f"  sustained {done / elapsed:8.0f} req/s through one server ({failed} failed)   (target >= 1,000)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=300.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--tracing", action="store_true", help="trace every request, OTLP to a local receiver")
    args = p.parse_args()
    sim_port, grpc_port = free_port(), free_port()
    tracing = "on (OTLP/HTTP to a local receiver)" if args.tracing else "off"
    print(f"bench/overhead.py on {machine()}, {time.strftime('%Y-%m-%d')}; tracing {tracing}")
    with tempfile.TemporaryDirectory() as tmp, otlp_sink() if args.tracing else contextlib.nullcontext() as sink:
        models = Path(tmp) / "models.toml"
        models.write_text(UNTHROTTLED_MODELS)
        sim_args, serve_args = sim_and_serve_args(models, sim_port, grpc_port)
        otel_env, spans = sink if sink is not None else ({}, None)
        with process(sim_args, sim_port), process(serve_args, grpc_port, env=otel_env):
            uvloop.run(run(args, sim_port, grpc_port))
        if spans is not None:
            # The server has stopped, so its last batch is flushed.
            got = spans()
            print(f"  spans received by the OTLP receiver: {got['spans']} in {got['requests']} exports")


if __name__ == "__main__":
    main()
