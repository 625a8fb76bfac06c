"""A burst absorbed, a standing queue not: 600 interactive requests within one second, idle and under 3x load.

Starts the simulated provider (the slow model's published limits: sliding 60 s window, RPM 5,000,
TPM 500,000, 80 in flight; about 400 ms a call), `translane serve` and `translane shim` as separate
processes on loopback, with one model and no fallbacks. This process is the client (POST
/v1/chat/completions, no deadline stated, 30 s client timeout, no retries). Two phases, each on fresh
processes:

  idle    600 requests spread over one second into an idle service, nothing else running
  loaded  open-loop 3x the RPM for 40 s; at 20 s the same 600-request burst on top

For each it prints the client outcome (200 / 429 / timeout / 5xx), the provider's own count of 429s (the
limit never passed), the share of RPM the provider saw while loaded, and latency of answers and refusals.

    python bench/burst.py [--burst 600] [--load 3.0] [--seconds 40]

Targets (issue 19), printed as met or not: idle: all 600 served, none refused, 0 provider 429s; loaded:
>= 99% of RPM, 0 provider 429s, accepted p99 <= 2.5 s (the burst included).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SLOW_RPM as RPM
from _common import free_port, machine, percentile, process, sim_stats, slow_models
from overload_http import WINDOW_S, Run, drive

WARM_UP_S = 10.0


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


async def phase(name: str, models: Path, burst: int, load: float, seconds: float) -> None:
    sim_port, grpc_port, shim_port = free_port(), free_port(), free_port()
    common = ["--models-file", str(models)]
    sim = [*common, "sim", "--port", str(sim_port), "--window-s", str(WINDOW_S), "--ttft-s", "0.35"]
    sim += ["--tokens-per-s", "400"]
    serve = [*common, "serve", "--port", str(grpc_port), "--upstream-url", f"http://127.0.0.1:{sim_port}/api/v3"]
    shim = ["shim", "--port", str(shim_port), "--grpc-target", f"127.0.0.1:{grpc_port}"]
    spike, steady = Run("burst", {}), Run("sustained", {})
    with process(sim, sim_port), process(serve, grpc_port), process(shim, shim_port):
        loop = asyncio.get_running_loop()
        share = None
        if name == "idle":
            await drive(spike, shim_port, burst, 1.0)
        else:
            rate = load * RPM / WINDOW_S
            sustained = asyncio.create_task(drive(steady, shim_port, rate, seconds))
            await asyncio.sleep(WARM_UP_S)
            t0, a0 = loop.time(), (await asyncio.to_thread(sim_stats, sim_port))["admitted"]
            await asyncio.sleep(seconds / 2 - WARM_UP_S)
            await drive(spike, shim_port, burst, 1.0)
            await asyncio.sleep(max(0.0, t0 + seconds - WARM_UP_S - loop.time()))
            t1, a1 = loop.time(), (await asyncio.to_thread(sim_stats, sim_port))["admitted"]
            share = (a1 - a0) / (RPM / WINDOW_S * (t1 - t0))
            await sustained
        rate_limited = (await asyncio.to_thread(sim_stats, sim_port))["rate_limited"]
    print(f"\n[{name}] {burst} requests within 1 s" + (f" on top of {load:g}x RPM" if share is not None else ""))
    for run in (spike, steady) if share is not None else (spike,):
        o = run.outcomes
        ms = [x * 1000 for x in run.ok_latency]
        rs = [x * 1000 for x in run.refusal_latency]
        print(
            f"  {run.name}: 200 {o['200']}, 429 {o['429']}, timeout {o['timeout']}, 5xx {o['5xx']}; "
            f"answers p50 {percentile(ms, 50):.0f} ms p99 {percentile(ms, 99):.0f} ms; "
            f"refusals p50 {percentile(rs, 50):.1f} ms p99 {percentile(rs, 99):.1f} ms"
        )
    print(f"  provider: {rate_limited:.0f} provider 429s" + (f", {share:.2%} of RPM" if share is not None else ""))
    if share is None:
        served = spike.outcomes["200"]
        print(
            f"  targets: all {burst} served: {verdict(served == burst)}; none refused: "
            f"{verdict(spike.outcomes['429'] == 0)}; 0 provider 429s: {verdict(rate_limited == 0)}"
        )
    else:
        accepted = [x * 1000 for x in spike.ok_latency + steady.ok_latency]
        print(
            f"  targets: >= 99% of RPM: {verdict(share >= 0.99)}; 0 provider 429s: {verdict(rate_limited == 0)}; "
            f"accepted p99 {percentile(accepted, 99):.0f} ms <= 2.5 s: {verdict(percentile(accepted, 99) <= 2500)}"
        )


async def main_async(args: argparse.Namespace) -> None:
    print(f"bench/burst.py on {machine()}, {time.strftime('%Y-%m-%d %H:%M')}: the slow model's limits, via the shim")
    # The client yields the CPU to the service: a real provider and real clients do not share our two cores.
    os.nice(5)
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models.toml"
        models.write_text(slow_models(WINDOW_S))
        for name in args.phases:
            await phase(name, models, args.burst, args.load, args.seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--burst", type=int, default=600)
    p.add_argument("--load", type=float, default=3.0)
    p.add_argument("--seconds", type=float, default=40.0, help="the loaded phase's length (> 20 s)")
    p.add_argument("--phases", nargs="*", choices=("idle", "loaded"), default=["idle", "loaded"])
    uvloop.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
