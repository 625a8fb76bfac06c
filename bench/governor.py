"""Run at the provider's limit, never past it: the governor under 3x overload.

Three scenarios, each with its own `translane serve` and
simulated provider (separate processes on loopback) configured with the slow
lane's limits (doubao-seed-translation: 80 concurrent, RPM 5,000, TPM 500,000):

  requests  short segments, so RPM binds; 3x the RPM offered (1/6 interactive, 5/6 batch)
  tokens    long segments (~800 tokens), so TPM binds; 3x the TPM offered
  faults    short segments at 0.8x RPM while the provider answers 5% of calls with 429

The three run side by side.
It prints the rate achieved as a share of the binding limit (from the
provider's own count in /_sim/stats), the provider's 429s, and queue-wait
(lane + governor wait, from each response's timing) p50/p99 per priority.

    python bench/governor.py [--seconds 90] [--window-s 60] [--scale 1.0]

`--window-s 20 --scale 0.3333` runs the same rates against a 20 s window; `--tracing` runs the
servers with OTEL_TRACES_EXPORTER=otlp (OTLP/HTTP, default batching) to a local receiver in a
process of its own, so the figures include what tracing every request costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, machine, otlp_sink, percentile, process, sim_stats, slow_models
from translane.tokens import count_tokens
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

SHORT = "Rate limits are per account, not per pod: sentence {i}."
LONG_SENTENCE = "The governor reserves tokens before each call and settles them with real usage after it. "


@dataclass
class Outcome:
    waits: dict[str, list[float]] = field(default_factory=lambda: {"interactive": [], "batch": []})
    ok: int = 0
    shed: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0


@dataclass
class Scenario:
    name: str
    rpm: int
    tpm: int
    load: float  # offered load as a multiple of the binding limit
    text: str
    binding: str  # "requests" or "tokens"
    faults: dict[str, float] = field(default_factory=dict)
    interactive_share: float = 1 / 6


async def drive(
    sc: Scenario, port: int, sim_port: int, seconds: float, window_s: float, per_call_tokens: int
) -> Outcome:
    out = Outcome()
    if sc.binding == "requests":
        rate = sc.load * sc.rpm / window_s
    else:
        rate = sc.load * sc.tpm / window_s / per_call_tokens
    loop = asyncio.get_running_loop()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.TranslatorStub(channel)

        async def one(i: int) -> None:
            interactive = (i % round(1 / sc.interactive_share)) == 0
            prio = "interactive" if interactive else "batch"
            req = pb.TranslateRequest(
                segments=[sc.text.format(i=i)],
                target_language="zh",
                task_id=f"{sc.name}-{i}",
                priority=pb.PRIORITY_INTERACTIVE if interactive else pb.PRIORITY_BATCH,
            )
            try:
                resp = await stub.Translate(req, timeout=10.0 if interactive else 30.0)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "provider" not in (exc.details() or ""):
                    out.shed += 1  # turned away before the provider: the overload's expected answer
                else:
                    key = f"{exc.code().name}: {(exc.details() or '')[:80]}"
                    out.failed[key] = out.failed.get(key, 0) + 1
                return
            out.ok += 1
            out.waits[prio].append(resp.timing.queued_ms + resp.timing.governed_ms)

        tasks = []
        start = loop.time()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        # The provider's count is taken when the offered load ends; what is
        # still queued then is cancelled, not counted.
        out.stats = sim_stats(sim_port)
        out.elapsed = loop.time() - start
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return out


def sim_control(port: int, settings: dict[str, float]) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/_sim/config",
        data=json.dumps(settings).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=5).read()


def report(sc: Scenario, out: Outcome, stats: dict[str, float], elapsed: float, window_s: float) -> None:
    windows = elapsed / window_s
    # The provider's own count of calls it admitted, at their arrival (as it counts its windows).
    req_share = stats["admitted"] / (sc.rpm * windows)
    tok_share = stats["admitted_tokens"] / (sc.tpm * windows)
    binding = req_share if sc.binding == "requests" else tok_share
    print(f"\n[{sc.name}] {sc.load:.1f}x the {sc.binding} limit for {elapsed:.0f}s (window {window_s:g}s)")
    print(
        f"  provider admitted {stats['admitted']:.0f} calls: {stats['admitted'] / windows:.0f} per window "
        f"= {req_share * 100:.2f}% of RPM; {tok_share * 100:.2f}% of TPM"
    )
    print(
        f"  binding limit achieved: {binding * 100:.2f}%   provider 429s: {stats['rate_limited']:.0f}"
        f"   max in any window: {stats['max_window_requests']:.0f} req / {stats['max_window_tokens']:.0f} tok"
        f" (limits {sc.rpm} / {sc.tpm})"
    )
    print(
        f"  client: {out.ok} ok, {out.shed} shed with retry-after, {sum(out.failed.values())} failed {out.failed or ''}"
    )
    for prio in ("interactive", "batch"):
        w = out.waits[prio]
        print(
            f"  queue wait {prio:11}: p50 {percentile(w, 50):8.1f} ms   p99 {percentile(w, 99):8.1f} ms   (n={len(w)})"
        )
    wi, wb = out.waits["interactive"], out.waits["batch"]
    if wi and wb:
        print(f"  batch p99 / interactive p99 = {percentile(wb, 99) / max(percentile(wi, 99), 0.001):.1f}x")


async def main_async(args: argparse.Namespace) -> None:
    rpm, tpm = round(5000 * args.scale), round(500_000 * args.scale)
    long_text = LONG_SENTENCE * 40
    long_tokens = count_tokens(long_text)
    # The simulated provider answers with the text plus a short marker.
    per_long_call = 2 * long_tokens + 8
    scenarios = [
        Scenario("requests", rpm, tpm, 3.0, SHORT, "requests"),
        Scenario("tokens", rpm, tpm, 3.0, long_text, "tokens"),
        Scenario("faults", rpm, tpm, 0.8, SHORT, "requests", faults={"rate_limit_rate": 0.05}),
    ]
    if args.only:
        scenarios = [sc for sc in scenarios if sc.name in args.only]
    print(
        f"bench/governor.py on {machine()}, {time.strftime('%Y-%m-%d %H:%M')}; limits per window: "
        f"RPM {rpm}, TPM {tpm}; long segment {long_tokens} tokens; tracing {'on' if args.tracing else 'off'}"
    )
    with tempfile.TemporaryDirectory() as tmp, otlp_sink() if args.tracing else contextlib.nullcontext() as sink:
        otel_env, spans = sink if sink is not None else ({}, None)
        models = Path(tmp) / "models.toml"
        models.write_text(slow_models(args.window_s, rpm, tpm))
        ports = [(free_port(), free_port()) for _ in scenarios]
        with_procs = []
        for sim_port, grpc_port in ports:
            common = ["--models-file", str(models)]
            with_procs.append(
                process(
                    [
                        *common,
                        "sim",
                        "--port",
                        str(sim_port),
                        "--window-s",
                        str(args.window_s),
                        "--ttft-s",
                        "0.05",
                        "--tokens-per-s",
                        "400",
                    ],
                    sim_port,
                )
            )
            with_procs.append(
                process(
                    [
                        *common,
                        "serve",
                        "--port",
                        str(grpc_port),
                        "--upstream-url",
                        f"http://127.0.0.1:{sim_port}/api/v3",
                    ],
                    grpc_port,
                    env=otel_env,
                )
            )
        entered = []
        try:
            for p in with_procs:
                entered.append(p)
                p.__enter__()
            # The load generator yields the CPU to the server and the provider:
            # a real provider does not share our two cores.
            os.nice(10)
            for sc, (sim_port, _) in zip(scenarios, ports, strict=True):
                if sc.faults:
                    sim_control(sim_port, sc.faults)
            # All three share the machine, so the whole benchmark takes one run's time.
            runs = list(zip(scenarios, ports, strict=True))
            outs = await asyncio.gather(
                *(
                    drive(sc, grpc_port, sim_port, args.seconds, args.window_s, per_long_call)
                    for sc, (sim_port, grpc_port) in runs
                )
            )
            for (sc, _), out in zip(runs, outs, strict=True):
                report(sc, out, out.stats, out.elapsed, args.window_s)
        finally:
            for p in reversed(entered):
                p.__exit__(None, None, None)
        if spans is not None:
            got = spans()
            print(f"\nspans received by the OTLP receiver: {got['spans']} in {got['requests']} exports")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=90.0, help="how long load is offered")
    p.add_argument("--window-s", type=float, default=60.0, help="the provider's counting window")
    p.add_argument("--scale", type=float, default=1.0, help="scale RPM/TPM (with --window-s for short windows)")
    p.add_argument("--only", nargs="*", choices=("requests", "tokens", "faults"), help="run only these scenarios")
    p.add_argument("--tracing", action="store_true", help="trace every request, OTLP to a local receiver")
    uvloop.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
