"""What one request costs the server in CPU: translane's process against the bare relay's under the same load, and
the engine's own share, measured in one process against an instant provider.

Processes (as bench/overhead.py starts them): the simulated provider (zero latency, echo), the bare relay
(../shared/tools/bare_relay.py) and `translane serve` on the shipped default models file with its limits raised
far above the load, the cache as given; this process is the client. The relay and translane take turns in short
slices, `--workers` callers in a closed loop each (a new sentence a call: a cache miss); a slice's CPU is the
server process's user + system time (/proc/PID/stat) over it, divided by the requests answered. CPU time is
steadier than latency on a shared machine: another process's work slows a request but does not add to its CPU.

In process (--in-process): `Engine.translate` of one new sentence, the provider call replaced by an instant answer
(no network, no server): its CPU per call with one call at a time and with 64 at once.

    python bench/server_cpu.py [--seconds 4] [--rounds 3] [--workers 64] [--caches sqlite off] [--in-process]
                               [--in-process-only] [--calls 20000] [--relay PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_TEXT, closed_loop, free_port, machine, process
from overhead import MODEL, RELAY, default_models
from translane.config import load_config
from translane.engine import Engine, Job
from translane.upstream import Completion, SegmentCall
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """A process's user + system CPU so far (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


async def per_request(
    pid: int, workers: int, seconds: float, call: Callable[[], Awaitable[object]]
) -> tuple[int, float]:
    """Requests answered by `workers` callers in `seconds`, and the server's CPU they took."""
    before = cpu_s(pid)
    done, failed = await closed_loop(workers, seconds, call)
    assert not failed, f"{failed} calls failed"
    return done, cpu_s(pid) - before


async def servers(args: argparse.Namespace, ports: dict[str, int], pids: dict[str, int]) -> None:
    counter = itertools.count()
    run = f"{time.time_ns() % 10**9}"
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{ports['grpc']}") as channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{ports['relay']}") as relay_channel,
    ):
        stub = pb_grpc.TranslatorStub(channel)
        relay_call = relay_channel.unary_unary("/relay.Relay/Call")

        def sentence(path: str) -> str:
            return f"{BENCH_TEXT} ({path} {run}-{next(counter)})"

        async def relay() -> None:
            body = {
                "model": MODEL,
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "input_text",
                                "text": sentence("relay"),
                                "translation_options": {"target_language": "zh"},
                            }
                        ],
                    }
                ],
            }
            await relay_call(json.dumps(body).encode(), timeout=10)

        async def translane() -> None:
            text = sentence("grpc")
            resp = await stub.Translate(pb.TranslateRequest(segments=[text], target_language="zh"), timeout=10)
            assert resp.translations[0].text.endswith(text) and not resp.translations[0].cached

        calls = {"relay": relay, "translane": translane}
        for call in calls.values():  # connections, the tokenizer, the first cache rows
            await closed_loop(8, 1.0, call)
        for workers in args.workers:
            totals = {name: [0, 0.0] for name in calls}
            slice_s = args.seconds / args.rounds
            for _ in range(args.rounds):
                for name, call in calls.items():
                    done, cpu = await per_request(pids[name], workers, slice_s, call)
                    totals[name][0] += done
                    totals[name][1] += cpu
            print(f"  {workers} callers, {args.seconds:g}s each in {args.rounds} alternating slices:")
            for name, (done, cpu) in totals.items():
                print(f"    {name:9} {done / args.seconds:7.0f} req/s  server CPU {cpu / done * 1e6:6.0f} us a request")
            (rd, rc), (td, tc) = totals["relay"], totals["translane"]
            print(f"    translane adds {(tc / td - rc / rd) * 1e6:+.0f} us of CPU a request over the relay")


async def engine_calls(cache: str, calls: int, concurrency: int, tmp: str) -> float:
    """CPU seconds per `Engine.translate` of a new sentence, the provider answering at once."""
    models = Path(tmp) / "models.toml"
    models.write_text(default_models())
    env = {**os.environ, "TRANSLANE_CACHE": cache, "TRANSLANE_DATA_DIR": tmp}
    config = load_config(models, env)
    async with Engine.open(config) as engine:

        async def instant(model: object, call: SegmentCall, timeout_s: float) -> Completion:
            return Completion(call.text, 20, 20)

        engine.upstream.complete = instant  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        counter = itertools.count()

        async def one() -> None:
            job = Job((f"{BENCH_TEXT} {next(counter)}",), "zh", MODEL, loop.time() + 10, max_queue_wait_s=5.0)
            await engine.translate(job)

        async def worker(n: int) -> None:
            for _ in range(n):
                await one()

        await worker(500)  # warm
        t0 = time.process_time()
        await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
        return (time.process_time() - t0) / (calls // concurrency * concurrency)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=6.0, help="per server and load")
    p.add_argument("--rounds", type=int, default=3, help="slices each server's time is cut into, alternating")
    p.add_argument("--workers", type=int, nargs="*", default=[64])
    p.add_argument("--caches", nargs="*", choices=("sqlite", "memory", "off"), default=["sqlite", "off"])
    p.add_argument("--relay", type=Path, default=RELAY, help="the bare relay script (shared/tools/bare_relay.py)")
    p.add_argument("--in-process", action="store_true", help="also the engine alone, in this process")
    p.add_argument("--in-process-only", action="store_true", help="only the engine alone, in this process")
    p.add_argument("--calls", type=int, default=20_000, help="engine calls in process, per cache and concurrency")
    args = p.parse_args()
    print(f"bench/server_cpu.py on {machine()}, {time.strftime('%Y-%m-%d %H:%M')}; the default models file")
    for cache in args.caches:
        if not args.in_process_only:
            ports = {name: free_port() for name in ("sim", "relay", "grpc")}
            print(f"cache {cache}, server processes:")
            with tempfile.TemporaryDirectory() as tmp:
                models = Path(tmp) / "models.toml"
                models.write_text(default_models())
                common = ["--models-file", str(models)]
                sim = [*common, "sim", "--port", str(ports["sim"]), "--ttft-s", "0", "--tokens-per-s", "0", "--echo"]
                upstream = f"http://127.0.0.1:{ports['sim']}/api/v3"
                serve = [*common, "serve", "--port", str(ports["grpc"]), "--upstream-url", upstream]
                relay = [
                    str(args.relay),
                    "--provider",
                    f"{upstream}/responses",
                    "--serve",
                    "--port",
                    str(ports["relay"]),
                ]
                env = {"TRANSLANE_CACHE": cache, "TRANSLANE_DATA_DIR": tmp}
                with (
                    process(sim, ports["sim"]),
                    process(relay, ports["relay"], command=[sys.executable], quiet=True) as relay_proc,
                    process(serve, ports["grpc"], env=env) as serve_proc,
                ):
                    pids = {"relay": relay_proc.pid, "translane": serve_proc.pid}
                    uvloop.run(servers(args, ports, pids))
        if args.in_process or args.in_process_only:
            print(f"cache {cache}, the engine in this process (instant provider):")
            for concurrency in (1, 64):
                with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(sys.stdout):
                    per_call = uvloop.run(engine_calls(cache, args.calls, concurrency, tmp))
                print(f"    {concurrency:2d} at once: {per_call * 1e6:5.1f} us of CPU a call")


if __name__ == "__main__":
    main()
