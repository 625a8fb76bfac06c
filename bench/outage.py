"""A 30 s outage of the primary provider under steady load, with a fallback model on another provider.

Starts two simulated providers (primary: the slow translation model; backup: the fast chat
model that is its fallback), `translane serve` and `translane shim` as separate processes on
loopback. This process is the client: open loop at --rate req/s to POST /v1/chat/completions,
each with a 30 s client timeout and no retries. After --before seconds the primary provider is
SIGKILLed (connections refused from then on); --outage seconds later it starts again on the same
port; the load goes on for --after seconds more.

For each phase it prints requests sent, answered 200 (and by which model, from `served_model`),
failed by status, and the success latency p50/p99; then the provider calls each provider saw.

    python bench/outage.py [--rate 40] [--before 10] [--outage 30] [--after 20] [--down-after-failures 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, TRANSLANE, free_port, machine, percentile, process, sim_stats, wait_port

PRIMARY, BACKUP = "doubao-seed-translation-250915", "doubao-seed-1-6-flash-250828"
CLIENT_TIMEOUT_S = 30.0
TEXT = "A provider that is down must not take the service down with it: sentence {i}."


def models_file(primary_port: int, backup_port: int, down_after: int) -> str:
    return f"""
default_model = "{PRIMARY}"
[server]
grace_s = 1.0
[governor]
provider_down_after_failures = {down_after}
[cache]
kind = "off"
[providers.ark]
base_url = "http://127.0.0.1:{primary_port}/api/v3"
[providers.backup]
base_url = "http://127.0.0.1:{backup_port}/api/v3"
[lanes.slow]
max_concurrency = 80
[lanes.fast]
max_concurrency = 500
[models."{PRIMARY}"]
provider = "ark"
api_style = "responses"
lane = "slow"
rpm = 5000
tpm = 500000
max_concurrency = 80
max_input_tokens = 1000
max_output_tokens = 3000
context_tokens = 4000
fallbacks = ["{BACKUP}"]
[models."{BACKUP}"]
provider = "backup"
api_style = "chat_completions"
lane = "fast"
rpm = 30000
tpm = 5000000
max_concurrency = 500
max_input_tokens = 32000
max_output_tokens = 4000
context_tokens = 64000
"""


@dataclass
class Phase:
    name: str
    outcomes: Counter[str] = field(default_factory=Counter)
    served_by: Counter[str] = field(default_factory=Counter)
    latency_ms: list[float] = field(default_factory=list)


async def drive(url: str, rate: float, seconds: float, phase_of: list[Phase], bounds: list[float]) -> None:
    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def one(i: int, phase: Phase) -> None:
            body = {
                "model": PRIMARY,
                "messages": [{"role": "user", "content": "Translate to Chinese:\n\n" + TEXT.format(i=i)}],
            }
            t0 = time.perf_counter()
            try:
                async with session.post(url, json=body) as resp:
                    status = resp.status
                    data = await resp.json(content_type=None)
            except TimeoutError:
                phase.outcomes["timeout"] += 1
                return
            except aiohttp.ClientError as exc:
                phase.outcomes[f"client error {type(exc).__name__}"] += 1
                return
            phase.outcomes[str(status)] += 1
            if status == 200:
                phase.served_by[str(data.get("served_model", "?"))] += 1
                phase.latency_ms.append((time.perf_counter() - t0) * 1000)

        tasks = []
        start = loop.time()
        for i in range(int(rate * seconds)):
            at = i / rate
            delay = start + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            phase = phase_of[sum(at >= b for b in bounds)]
            tasks.append(asyncio.create_task(one(i, phase)))
        await asyncio.gather(*tasks)


def start_sim(models: Path, port: int) -> subprocess.Popen[bytes]:
    args = ["--models-file", str(models), "sim", "--port", str(port), "--ttft-s", "0.2", "--tokens-per-s", "400"]
    env = dict(os.environ, TRANSLANE_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([*TRANSLANE, *args], env=env, cwd=ROOT)
    wait_port(port)
    return proc


async def main_async(args: argparse.Namespace) -> None:
    print(
        f"bench/outage.py on {machine()}, {time.strftime('%Y-%m-%d %H:%M')}: {args.rate:g} req/s through the shim, "
        f"primary provider down from {args.before:g}s for {args.outage:g}s, then {args.after:g}s more; "
        f"client timeout {CLIENT_TIMEOUT_S:g}s, no retries"
    )
    primary_port, backup_port, grpc_port, shim_port = free_port(), free_port(), free_port(), free_port()
    phases = [Phase("before"), Phase(f"primary down ({args.outage:g}s)"), Phase("after it is back")]
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models.toml"
        models.write_text(models_file(primary_port, backup_port, args.down_after_failures))
        common = ["--models-file", str(models)]
        primary = start_sim(models, primary_port)
        sim_args = [*common, "sim", "--port", str(backup_port), "--ttft-s", "0.2", "--tokens-per-s", "400"]
        try:
            with (
                process(sim_args, backup_port),
                process([*common, "serve", "--port", str(grpc_port)], grpc_port),
                process(["shim", "--port", str(shim_port), "--grpc-target", f"127.0.0.1:{grpc_port}"], shim_port),
            ):
                seconds = args.before + args.outage + args.after
                bounds = [args.before, args.before + args.outage]
                url = f"http://127.0.0.1:{shim_port}/v1/chat/completions"
                driving = asyncio.create_task(drive(url, args.rate, seconds, phases, bounds))
                await asyncio.sleep(args.before)
                before = await asyncio.to_thread(sim_stats, primary_port, PRIMARY)
                primary.kill()
                primary.wait()
                await asyncio.sleep(args.outage)
                primary = await asyncio.to_thread(start_sim, models, primary_port)
                await driving
                after = await asyncio.to_thread(sim_stats, primary_port, PRIMARY)
                backup = await asyncio.to_thread(sim_stats, backup_port, BACKUP)
        finally:
            primary.kill()
            primary.wait()
    for p in phases:
        sent = sum(p.outcomes.values())
        failed = sent - p.outcomes["200"]
        by = ", ".join(f"{m} {n}" for m, n in p.served_by.most_common())
        print(
            f"  {p.name}: {sent} sent, {p.outcomes['200']} ok ({by}), {failed} failed "
            f"{dict((k, v) for k, v in p.outcomes.items() if k != '200') or ''}; "
            f"latency p50 {percentile(p.latency_ms, 50):.0f} ms, p99 {percentile(p.latency_ms, 99):.0f} ms"
        )
    print(
        f"  provider calls: primary {before['admitted']:.0f} before the outage, {after['admitted']:.0f} after it was "
        f"back (a fresh process); backup {backup['admitted']:.0f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=40.0)
    p.add_argument("--before", type=float, default=10.0)
    p.add_argument("--outage", type=float, default=30.0)
    p.add_argument("--after", type=float, default=20.0)
    p.add_argument(
        "--down-after-failures",
        type=int,
        default=3,
        help="governor.provider_down_after_failures (a huge number: no model pause, retries only, as before)",
    )
    uvloop.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
