"""Tenants sharing a saturated model: a flooding tenant takes what the others leave, and no more.

Starts the simulated provider (sliding 60 s window; the slow model's limits: RPM 5,000,
TPM 500,000, 80 in flight; about 400 ms a call), `translane serve` and `translane shim` as
separate processes on loopback, one model and no fallbacks, both with the same tenants file;
the shim is a gateway tenant at the service and names each caller's tenant there. This
process is the client: open loop (requests leave on schedule whatever earlier ones do) to
POST /v1/chat/completions, each tenant with its own key, 30 s client timeout, no retries.
A tenant's "share" is the RPM divided by the tenants' weights. Three runs, each on fresh
processes, each measured for `--seconds` after a 10 s warm-up:

  alone     B and C send half their share each, A silent: the latency B and C see unloaded
  flood     the same B and C, A sends 10x its share, and D (its own `rpm` 60) sends 10x its rpm
  weighted  weights 3:1:1, A, B and C each send twice their share

It prints, per run, the provider's share of RPM (its own count) and its 429s, and per tenant
what it sent, got (200 / 429 by cause / other), its goodput in the measured window (answers
that arrived in it, per minute, and their tokens) and its accepted and refused latency.

    python bench/tenants.py [--seconds 60] [--runs alone flood weighted]

Targets (issue 23), printed as met or not: flood: provider >= 99% of RPM with 0 429s; B and C
>= 99% of their requests answered, accepted p99 within 1 s of the alone run's; A's goodput =
RPM - B - C - D within 2%; D's 429s name its rpm, answered within 50 ms p99. weighted: each
tenant's share of the tokens served within 3 points of 60/20/20.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SLOW_MODEL as MODEL
from _common import SLOW_RPM as RPM
from _common import free_port, machine, percentile, process, sim_stats, slow_models

WINDOW_S = 60.0
CLIENT_TIMEOUT_S = 30.0
WARM_UP_S = 10.0
D_RPM = 60  # tenant D's own limit: requests a minute
SHIM_KEY = "sk-bench-shim"

SYSTEM = "You are a professional translator. Output only the translation."
TEXT = "Tenant {t} shares the provider with other teams and must not crowd them out: sentence {i}."


@dataclass
class Tenant:
    """One tenant of a run: its weight, the rate it sends at (req/s), and what it got."""

    name: str
    weight: float
    rate: float
    rpm: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    ok_latency: list[float] = field(default_factory=list)
    refusal_latency: list[float] = field(default_factory=list)
    refused_at: list[float] = field(default_factory=list)  # the loop clock when each refusal arrived
    # (moment the answer arrived, loop clock; its total tokens; its latency) of every 200
    answered: list[tuple[float, int, float]] = field(default_factory=list)
    refusals_naming_limit: int = 0
    samples: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"sk-bench-{self.name.lower()}"

    def window(self, t0: float, t1: float) -> tuple[int, int]:
        """Answers that arrived in [t0, t1) and their tokens."""
        got = [tokens for at, tokens, _ in self.answered if t0 <= at < t1]
        return len(got), sum(got)


def busy_ticks(pids: list[int]) -> tuple[int, int]:
    """CPU ticks spent by the whole machine, and by the processes `pids` (this one included)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    ours = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ours += int(fields[11]) + int(fields[12])  # utime, stime
    return user + nice + system + irq + softirq + steal, ours


def tenants_file(tenants: list[Tenant]) -> str:
    lines = [f'[tenants.shim]\napi_keys = ["{SHIM_KEY}"]\ngateway = true\n']
    for t in tenants:
        lines.append(f'[tenants.{t.name}]\napi_keys = ["{t.key}"]\nweight = {t.weight:g}\n')
        if t.rpm:
            lines.append(f"rpm = {t.rpm}\n")
    return "\n".join(lines)


async def drive(t: Tenant, session: aiohttp.ClientSession, url: str, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {t.key}"}
    limit_said = f"tenant {t.name}: rpm {t.rpm}"

    async def one(i: int) -> None:
        body = {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "Translate to Chinese:\n\n" + TEXT.format(t=t.name, i=i)},
            ],
        }
        t0 = time.perf_counter()
        try:
            async with session.post(url, json=body, headers=headers) as resp:
                status = resp.status
                data = await resp.json(content_type=None)
        except TimeoutError:
            t.outcomes["timeout"] += 1
            return
        except aiohttp.ClientError as exc:
            t.outcomes[f"client error {type(exc).__name__}"] += 1
            return
        elapsed = time.perf_counter() - t0
        if status == 200:
            t.outcomes["200"] += 1
            t.ok_latency.append(elapsed)
            t.answered.append((loop.time(), int(data.get("usage", {}).get("total_tokens", 0)), elapsed))
        elif status == 429:
            message = str(data.get("error", {}).get("message", ""))
            cause = "429 own rpm" if t.rpm and limit_said in message else "429 model busy"
            t.outcomes[cause] += 1
            t.refusal_latency.append(elapsed)
            t.refused_at.append(loop.time())
            if cause == "429 own rpm":
                t.refusals_naming_limit += 1
            elif len(t.samples) < 1:
                t.samples.append(message[:160])
        else:
            t.outcomes["5xx" if status >= 500 else str(status)] += 1
            if len(t.samples) < 3:
                t.samples.append(f"{status} {str(data)[:160]}")

    tasks = []
    start = loop.time()
    for i in range(int(t.rate * seconds)):
        delay = start + i / t.rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)


@dataclass
class Result:
    name: str
    tenants: dict[str, Tenant]
    share_of_rpm: float
    provider_429s: float
    minutes: float  # the measured window
    t0: float
    t1: float
    ours_cores: float  # the CPU the benchmark's processes used in the measured window, in cores
    others_cores: float  # and what everything else on the machine used meanwhile


async def one_run(name: str, tenants: list[Tenant], seconds: float, tmp: Path) -> Result:
    models, tenants_path = tmp / "models.toml", tmp / f"tenants-{name}.toml"
    models.write_text(slow_models(WINDOW_S))
    tenants_path.write_text(tenants_file(tenants))
    sim_port, grpc_port, shim_port = free_port(), free_port(), free_port()
    common = ["--models-file", str(models)]
    sim = [*common, "sim", "--port", str(sim_port), "--window-s", str(WINDOW_S), "--ttft-s", "0.35"]
    sim += ["--tokens-per-s", "400"]
    serve = [*common, "serve", "--port", str(grpc_port), "--upstream-url", f"http://127.0.0.1:{sim_port}/api/v3"]
    shim = ["shim", "--port", str(shim_port), "--grpc-target", f"127.0.0.1:{grpc_port}"]
    env = {"TRANSLANE_TENANTS_FILE": str(tenants_path)}
    shim_env = {**env, "TRANSLANE_SHIM_SERVICE_KEY": SHIM_KEY}
    url = f"http://127.0.0.1:{shim_port}/v1/chat/completions"
    with (
        process(sim, sim_port) as p1,
        process(serve, grpc_port, env) as p2,
        process(shim, shim_port, shim_env) as p3,
    ):
        pids = [os.getpid(), p1.pid, p2.pid, p3.pid]
        loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            driving = asyncio.gather(*(drive(t, session, url, seconds + WARM_UP_S) for t in tenants if t.rate))
            await asyncio.sleep(WARM_UP_S)
            t0, a0 = loop.time(), (await asyncio.to_thread(sim_stats, sim_port))["admitted"]
            all0, ours0 = busy_ticks(pids)
            await asyncio.sleep(seconds)
            t1, a1 = loop.time(), (await asyncio.to_thread(sim_stats, sim_port))["admitted"]
            all1, ours1 = busy_ticks(pids)
            await driving
        rate_limited = (await asyncio.to_thread(sim_stats, sim_port))["rate_limited"]
    share = (a1 - a0) / (RPM / WINDOW_S * (t1 - t0))
    tick_s = os.sysconf("SC_CLK_TCK") * (t1 - t0)
    ours, others = (ours1 - ours0) / tick_s, (all1 - all0 - ours1 + ours0) / tick_s
    return Result(name, {t.name: t for t in tenants}, share, rate_limited, (t1 - t0) / 60, t0, t1, ours, others)


def report(r: Result) -> None:
    print(
        f"\n[{r.name}] provider: {r.share_of_rpm * 100:.2f}% of RPM measured, {r.provider_429s:.0f} 429s; "
        f"CPU meanwhile: the benchmark's processes {r.ours_cores:.2f} cores, everything else {r.others_cores:.2f}"
    )
    total_tokens = sum(t.window(r.t0, r.t1)[1] for t in r.tenants.values())
    for t in r.tenants.values():
        if not t.rate:
            continue
        o = t.outcomes
        sent = sum(o.values())
        answered, tokens = t.window(r.t0, r.t1)
        ms = [x * 1000 for x in t.ok_latency]
        rs = [x * 1000 for x in t.refusal_latency]
        ms_in = [x * 1000 for at, _, x in t.answered if r.t0 <= at < r.t1]
        rs_in = [x * 1000 for at, x in zip(t.refused_at, t.refusal_latency, strict=True) if r.t0 <= at < r.t1]
        others = ", ".join(f"{k} {v}" for k, v in sorted(o.items()) if k != "200")
        print(
            f"  {t.name} (weight {t.weight:g}{f', rpm {t.rpm}' if t.rpm else ''}; {t.rate * 60:.0f}/min offered): "
            f"sent {sent}, 200 {o['200']} ({o['200'] / max(sent, 1):.2%}){', ' + others if others else ''}"
        )
        print(
            f"    goodput {answered / r.minutes:.0f}/min ({answered / r.minutes / RPM:.2%} of RPM), "
            f"{tokens / max(total_tokens, 1):.2%} of the tokens served"
        )
        print(
            f"    accepted p50 / p99: {percentile(ms, 50):.0f} / {percentile(ms, 99):.0f} ms in all, "
            f"{percentile(ms_in, 50):.0f} / {percentile(ms_in, 99):.0f} ms in the measured window"
        )
        if rs:
            print(
                f"    refused p50 / p99: {percentile(rs, 50):.1f} / {percentile(rs, 99):.1f} ms in all, "
                f"{percentile(rs_in, 50):.1f} / {percentile(rs_in, 99):.1f} ms in the measured window"
            )
        for s in t.samples:
            print(f"    sample: {s}")


def verdict(results: dict[str, Result]) -> None:
    checks: list[tuple[str, bool]] = []
    flood, alone, weighted = results.get("flood"), results.get("alone"), results.get("weighted")
    if flood is not None:
        checks.append(("flood: provider >= 99% of RPM", flood.share_of_rpm >= 0.99))
        checks.append(("flood: 0 provider 429s", flood.provider_429s == 0))
        for n in ("B", "C"):
            t = flood.tenants[n]
            checks.append((f"flood: {n} >= 99% answered", t.outcomes["200"] >= 0.99 * sum(t.outcomes.values())))
            if alone is not None:
                base = percentile(alone.tenants[n].ok_latency, 99)
                p99 = percentile(t.ok_latency, 99)
                checks.append((f"flood: {n} p99 {p99:.2f} s within 1 s of alone's {base:.2f} s", p99 <= base + 1.0))
        per_min = {n: t.window(flood.t0, flood.t1)[0] / flood.minutes for n, t in flood.tenants.items()}
        left = RPM - per_min["B"] - per_min["C"] - per_min["D"]
        a = per_min["A"]
        within = abs(a - left) <= 0.02 * left
        checks.append((f"flood: A {a:.0f}/min vs what B, C, D leave {left:.0f}/min within 2%", within))
        d = flood.tenants["D"]
        d_p99 = percentile([x * 1000 for x in d.refusal_latency], 99)
        checks.append(("flood: D's 429s all name its rpm", d.refusals_naming_limit == len(d.refusal_latency) > 0))
        checks.append((f"flood: D's 429s p99 {d_p99:.1f} ms <= 50 ms", d_p99 <= 50))
    if weighted is not None:
        tokens = {n: t.window(weighted.t0, weighted.t1)[1] for n, t in weighted.tenants.items()}
        total = sum(tokens.values())
        for n, want in (("A", 0.6), ("B", 0.2), ("C", 0.2)):
            got = tokens[n] / max(total, 1)
            checks.append((f"weighted: {n} {got:.1%} of tokens within 3 points of {want:.0%}", abs(got - want) <= 0.03))
    print("\ntargets:")
    for name, ok in checks:
        print(f"  {name}: {'met' if ok else 'NOT met'}")


def run_tenants(name: str) -> list[Tenant]:
    share = RPM / 60 / 3  # req/s, equal weights
    if name == "alone":
        return [Tenant("A", 1, 0), Tenant("B", 1, share / 2), Tenant("C", 1, share / 2), Tenant("D", 1, 0, D_RPM)]
    if name == "flood":
        return [
            Tenant("A", 1, share * 10),
            Tenant("B", 1, share / 2),
            Tenant("C", 1, share / 2),
            Tenant("D", 1, D_RPM / 60 * 10, D_RPM),
        ]
    fifth = RPM / 60 / 5
    return [Tenant("A", 3, 2 * 3 * fifth), Tenant("B", 1, 2 * fifth), Tenant("C", 1, 2 * fifth)]


async def main_async(args: argparse.Namespace) -> None:
    print(
        f"bench/tenants.py on {machine()}, {time.strftime('%Y-%m-%d %H:%M')}: RPM {RPM}, runs {' '.join(args.runs)}, "
        f"{WARM_UP_S:g}s warm-up + {args.seconds:g}s measured each, client timeout {CLIENT_TIMEOUT_S:g}s, no retries"
    )
    # The client yields the CPU to the service: real clients do not share our two cores.
    os.nice(5)
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.runs:
            results[name] = await one_run(name, run_tenants(name), args.seconds, Path(tmp))
            report(results[name])
    verdict(results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="the measured window of each run, after the warm-up")
    p.add_argument("--runs", nargs="*", choices=("alone", "flood", "weighted"), default=["alone", "flood", "weighted"])
    uvloop.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
