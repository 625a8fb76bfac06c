"""A BatchTranslate job of mixed models on the simulated provider: wall time, cost, interactive latency, a crash.

The job (`--lines`, default 50,000) is two models, line by line in turn (`--mix`):
  translation  (the default, the mix of the 2026-12-05 figures) half lines for the translation model
               (Responses API: online only, Ark documents no batch route for it) and half for the flash chat
               model, which has an Ark Batch Chat route (`batch_api = "ark-batch-chat"`, half the online price)
  chat         half for the flash chat model and half for the DeepSeek chat model, both with that route: every
               line may take it
Every model gets the slow model's rate (RPM 5,000, TPM 500,000 per minute, scaled to the provider's and the
governor's sliding `--window-s`, as bench/batch.py does); each route takes 2,000 calls at once. The
interactive trickle goes to the mix's first model. The simulated provider answers online calls after
`--ttft-s` and batch calls after `--batch-latency-s` (Ark's "minutes", scaled down to seconds).
Every line's text is distinct and the provider echoes it (`--echo`), so each answer can be checked.

  baseline   a steady trickle of interactive Translate calls (`--trickle-rate`/s) to the mix's first model,
             no job: their p50/p99
  batch      the job with its window long enough for the batch route (24h), the trickle running on:
             wall time against the online floor (each half at its model's RPM, in parallel), cost, trickle
             p50/p99
  online     the same job with a window shorter than the route's batch_min_window_s (1h): all online;
             wall time against its floor (each half at its model's RPM, in parallel), cost
  kill       two `translane serve` replicas sharing a real redis-server (governor, jobs and segment cache
             there); the job goes to one, and the one that took it is SIGKILLed once `--kill-at` of the
             lines are answered; the other takes the dead one's lines over (`claim_idle_s` = --claim-idle-s).
             Every line must be in the results exactly once with its own answer; the provider's calls per
             model against the lines say how many were paid twice.

Each phase starts its own simulated provider and service processes, so the counts are the phase's own.
Run it under the shared lock: flock /work/wt/bench.lock python bench/jobs.py [--lines 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import uvloop
from google.longrunning import operations_pb2 as lro
from google.longrunning import operations_pb2_grpc as lro_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SLOW_MODEL, SLOW_RPM, SLOW_TPM, free_port, machine, percentile, process, wait_port
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

CHAT_MODEL = "doubao-seed-1-6-flash-250828"
DEEPSEEK_MODEL = "deepseek-v3-2-251201"
# Each mix's two models (line i goes to the model i % 2) and which of them have the batch route.
MIXES = {"translation": (SLOW_MODEL, CHAT_MODEL), "chat": (CHAT_MODEL, DEEPSEEK_MODEL)}
ROUTED = (CHAT_MODEL, DEEPSEEK_MODEL)
BATCH_WINDOW, ONLINE_WINDOW = "24h", "1h"
# A job at least this long goes to the batch route; the online run's window is shorter.
BATCH_MIN_WINDOW_S = 7200
# Each route's calls at once (the setting's default).
BATCH_MAX_CONCURRENCY = 2000
# The client reads a whole finished job's results in one reply.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 512 * 1024 * 1024), ("grpc.max_send_message_length", -1)]
TEXT = "Line {i} of the {run} job, which can wait for its answer."


def models_text(args: argparse.Namespace, tmp: Path) -> str:
    scale = args.window_s / 60
    rpm, tpm = round(SLOW_RPM * scale), round(SLOW_TPM * scale)
    jobs = f"max_concurrency_per_job = {args.per_job}\n" if args.per_job else ""
    jobs += f"max_lines_per_replica = {args.per_replica}\n" if args.per_replica else ""
    limits = f"rpm = {rpm}\ntpm = {tpm}\nmax_concurrency = 80\nmax_input_tokens = 1000\nmax_output_tokens = 3000"
    return f"""
default_model = "{SLOW_MODEL}"
[server]
grace_s = 1.0
[cache]
kind = "sqlite"
path = "{tmp / "cache.sqlite3"}"
[governor]
window_s = {args.window_s}
[jobs]
claim_idle_s = {args.claim_idle_s}
{jobs}
[providers.ark]
base_url = "http://127.0.0.1:1/api/v3"
[lanes.slow]
max_concurrency = 80
[lanes.fast]
max_concurrency = 80
[models."{SLOW_MODEL}"]
provider = "ark"
api_style = "responses"
lane = "slow"
{limits}
context_tokens = 4000
input_price_per_mtok = 1.2
output_price_per_mtok = 3.6
[models."{CHAT_MODEL}"]
provider = "ark"
api_style = "chat_completions"
lane = "fast"
{limits}
context_tokens = 256000
input_price_per_mtok = 0.15
output_price_per_mtok = 1.5
extra_body = {{ thinking = {{ type = "disabled" }} }}
batch_api = "ark-batch-chat"
batch_min_window_s = {BATCH_MIN_WINDOW_S}
batch_max_concurrency = {BATCH_MAX_CONCURRENCY}
[models."{DEEPSEEK_MODEL}"]
provider = "ark"
api_style = "chat_completions"
lane = "fast"
{limits}
context_tokens = 128000
input_price_per_mtok = 2.0
output_price_per_mtok = 3.0
batch_api = "ark-batch-chat"
batch_min_window_s = {BATCH_MIN_WINDOW_S}
batch_max_concurrency = {BATCH_MAX_CONCURRENCY}
"""


def job_requests(lines: int, run: str, mix: tuple[str, str]) -> list[pb.TranslateRequest]:
    """Even lines for the mix's first model, odd ones for its second; each text distinct (in the run too:
    the segment cache answers nothing a run before it paid for)."""
    return [
        pb.TranslateRequest(segments=[TEXT.format(i=i, run=run)], target_language="zh", model=mix[i % 2])
        for i in range(lines)
    ]


def sim_stats(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/stats", timeout=5) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def provider_calls(stats: dict[str, object], mix: tuple[str, str]) -> dict[str, int]:
    """Calls the provider answered or admitted, per model of the mix and route."""
    models: dict[str, dict[str, int]] = stats["models"]  # type: ignore[assignment]
    batch: dict[str, dict[str, int]] = stats["batch"]  # type: ignore[assignment]
    calls = {"online " + m: int(models[m]["admitted"]) for m in mix}
    calls.update({"batch " + m: int(batch[m]["requests"]) for m in mix if m in ROUTED})
    return calls


def provider_in_flight(stats: dict[str, object], mix: tuple[str, str]) -> int:
    """Calls the provider has taken and not answered yet, the mix's models on both routes."""
    models: dict[str, dict[str, int]] = stats["models"]  # type: ignore[assignment]
    batch: dict[str, dict[str, int]] = stats["batch"]  # type: ignore[assignment]
    return sum(int(models[m]["in_flight"]) for m in mix) + sum(int(batch[m]["in_flight"]) for m in mix if m in ROUTED)


def configure_sim(port: int, changes: dict[str, float]) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/_sim/config", data=json.dumps(changes).encode())
    with urllib.request.urlopen(req, timeout=5):
        pass


@contextlib.contextmanager
def simulated_provider(args: argparse.Namespace, models: Path) -> Iterator[int]:
    port = free_port()
    sim = ["--models-file", str(models), "sim", "--port", str(port), "--window-s", str(args.window_s)]
    with process([*sim, "--ttft-s", str(args.ttft_s), "--echo"], port):
        configure_sim(port, {"batch_latency_s": args.batch_latency_s})
        yield port


def serve_args(models: Path, port: int, sim_port: int) -> list[str]:
    return [
        "--models-file",
        str(models),
        "serve",
        "--port",
        str(port),
        "--upstream-url",
        f"http://127.0.0.1:{sim_port}/api/v3",
    ]


# --- the client's side --------------------------------------------------------------------------------------------


@dataclass
class Trickle:
    """Interactive Translate calls to `model` at a steady rate until stopped; their latencies (s) and failures."""

    stub: pb_grpc.TranslatorStub
    rate: float
    model: str
    latencies: list[float] = field(default_factory=list)
    # When each answered call was sent, in seconds from the trickle's start (beside `latencies`).
    sent_at: list[float] = field(default_factory=list)
    failures: int = 0
    sent: int = 0
    started: float = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        start = loop.time()
        self.started = time.perf_counter()
        while not stop.is_set():
            tasks.append(asyncio.create_task(self._one(self.sent)))
            self.sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, start + self.sent / self.rate - loop.time()))
        await asyncio.gather(*tasks)

    async def _one(self, i: int) -> None:
        request = pb.TranslateRequest(
            segments=[f"An interactive sentence {i} that a person waits for."],
            target_language="zh",
            model=self.model,
            no_cache=True,
        )
        t0 = time.perf_counter()
        try:
            await self.stub.Translate(request, timeout=30)
        except grpc.aio.AioRpcError:
            self.failures += 1
            return
        self.latencies.append(time.perf_counter() - t0)
        self.sent_at.append(t0 - self.started)

    def text(self) -> str:
        ms = [x * 1000 for x in self.latencies]
        slowest = sorted(zip(ms, self.sent_at, strict=True), reverse=True)[:3]
        return (
            f"{len(ms)} interactive calls ({self.failures} failed): p50 {percentile(ms, 50):.0f} ms, "
            f"p99 {percentile(ms, 99):.0f} ms; the slowest "
            + ", ".join(f"{x:.0f} ms (sent at {at:.1f}s)" for x, at in slowest)
        )


async def metadata(ops: lro_grpc.OperationsStub, name: str) -> pb.BatchTranslateMetadata:
    """The job's progress (the results are left on the server while it runs)."""
    op = await ops.GetOperation(lro.GetOperationRequest(name=name), timeout=30)
    meta = pb.BatchTranslateMetadata()
    op.metadata.Unpack(meta)
    return meta


async def wait_done(ops: lro_grpc.OperationsStub, name: str, until: float, progress: bool = True) -> lro.Operation:
    """Poll until the job ends (GetOperation then carries its results); progress on stderr."""
    while True:
        meta = await metadata(ops, name)
        if meta.state != pb.BatchTranslateMetadata.RUNNING:
            return await ops.GetOperation(lro.GetOperationRequest(name=name), timeout=120)
        if progress and sys.stderr.isatty():
            print(f"\r  {meta.done + meta.failed}/{meta.total} lines", end="", file=sys.stderr, flush=True)
        if time.monotonic() > until:
            raise TimeoutError(f"{name} still running: {meta.done + meta.failed} of {meta.total} lines")
        await asyncio.sleep(1.0)


def half_costs(op: lro.Operation) -> tuple[float, float]:
    """What the job's lines cost: the first model's half (even lines), the second model's (odd lines)."""
    answer = pb.BatchTranslateResponse()
    if op.HasField("response"):
        op.response.Unpack(answer)
    costs = [0.0, 0.0]
    for r in answer.results:
        costs[r.index % 2] += r.response.usage.cost
    return costs[0], costs[1]


def check(op: lro.Operation, lines: int, run: str) -> tuple[pb.BatchTranslateMetadata, int, int, int]:
    """The job's metadata, and its results' lines missing, duplicated and wrong (answers not their own line's)."""
    meta = pb.BatchTranslateMetadata()
    op.metadata.Unpack(meta)
    answer = pb.BatchTranslateResponse()
    if op.HasField("response"):
        op.response.Unpack(answer)
    seen: dict[int, int] = {}
    wrong = 0
    for r in answer.results:
        seen[r.index] = seen.get(r.index, 0) + 1
        # The provider echoes the text under a mark: each answer must be its own line's.
        if not r.HasField("response") or not r.response.translations[0].text.endswith(TEXT.format(i=r.index, run=run)):
            wrong += 1
    missing = sum(1 for i in range(lines) if i not in seen)
    duplicated = sum(n - 1 for n in seen.values())
    return meta, missing, duplicated, wrong


@dataclass
class JobRun:
    wall_s: float
    cost: float
    currency: str
    missing: int
    duplicated: int
    wrong: int
    failed: int
    calls: dict[str, int]
    halves: tuple[float, float]
    mix: tuple[str, str]

    def text(self, floor_s: float) -> str:
        return (
            f"  wall {self.wall_s:.1f}s = {self.wall_s / floor_s:.2f}x the online floor ({floor_s:.1f}s)\n"
            f"  cost {self.cost:.4f} {self.currency} ({self.mix[0]} half {self.halves[0]:.4f}, {self.mix[1]} half "
            f"{self.halves[1]:.4f}); lines failed {self.failed}, missing {self.missing}, "
            f"duplicated {self.duplicated}, wrong {self.wrong}\n"
            f"  provider calls {self.calls}"
        )


async def run_job(
    target: str, sim_port: int, lines: int, window: str, mix: tuple[str, str], trickle: Trickle | None = None
) -> tuple[JobRun, float]:
    """Submit the job, wait for it (the trickle running meanwhile); the run, and the submit call's time."""
    before = provider_calls(sim_stats(sim_port), mix)
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        stub, ops = pb_grpc.TranslatorStub(channel), lro_grpc.OperationsStub(channel)
        stop = asyncio.Event()
        trickling = asyncio.create_task(trickle.run(stop)) if trickle else None
        t0 = time.perf_counter()
        op = await stub.BatchTranslate(
            pb.BatchTranslateRequest(requests=job_requests(lines, window, mix), completion_window=window), timeout=120
        )
        submit_s = time.perf_counter() - t0
        done = await wait_done(ops, op.name, time.monotonic() + 4 * 3600)
        wall = time.perf_counter() - t0
        stop.set()
        if trickling:
            await trickling
    meta, missing, duplicated, wrong = check(done, lines, window)
    after = provider_calls(sim_stats(sim_port), mix)
    calls = {k: after[k] - before[k] for k in after}
    usage = meta.usage
    run = JobRun(
        wall, usage.cost, usage.currency, missing, duplicated, wrong, meta.failed, calls, half_costs(done), mix
    )
    return run, submit_s


def floor_s(lines: int, rpm_per_s: float) -> float:
    return lines / rpm_per_s


async def baseline(target: str, args: argparse.Namespace) -> Trickle:
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        trickle = Trickle(pb_grpc.TranslatorStub(channel), args.trickle_rate, MIXES[args.mix][0])
        stop = asyncio.Event()
        task = asyncio.create_task(trickle.run(stop))
        await asyncio.sleep(args.baseline_s)
        stop.set()
        await task
    return trickle


async def single_replica(args: argparse.Namespace, sim_port: int, grpc_port: int) -> None:
    target = f"127.0.0.1:{grpc_port}"
    mix = MIXES[args.mix]
    rate = SLOW_RPM / 60
    halves = ((args.lines + 1) // 2, args.lines // 2)
    # All online, each half at its model's RPM, the two in parallel.
    online_floor = max(floor_s(n, rate) for n in halves)
    # With the route on: the halves that have no route at their RPM; the routed ones at the routes' concurrency.
    unrouted = [floor_s(n, rate) for n, m in zip(halves, mix, strict=True) if m not in ROUTED]
    routed_lines = sum(n for n, m in zip(halves, mix, strict=True) if m in ROUTED)
    routes = sum(1 for m in mix if m in ROUTED)
    route_floor = routed_lines * args.batch_latency_s / (routes * BATCH_MAX_CONCURRENCY)
    trickle = await baseline(target, args)
    print(f"\n[baseline] no job, {args.baseline_s:g}s, interactive calls to {mix[0]}: {trickle.text()}")

    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        trickle = Trickle(pb_grpc.TranslatorStub(channel), args.trickle_rate, mix[0])
        batch, submit_s = await run_job(target, sim_port, args.lines, BATCH_WINDOW, mix, trickle)
    print(f"\n[batch] {args.lines} lines, window {BATCH_WINDOW}: {routed_lines} lines may take the batch route")
    print(
        f"  submit {submit_s:.1f}s; the online floor: each half / its model's RPM, in parallel; with the route "
        f"on, the floor is {max([route_floor, *unrouted]):.1f}s ({routed_lines} routed lines x "
        f"{args.batch_latency_s:g}s / ({routes} x {BATCH_MAX_CONCURRENCY}) = {route_floor:.1f}s"
        + (f"; unrouted lines / RPM = {max(unrouted):.1f}s)" if unrouted else ")")
    )
    print(batch.text(online_floor))
    print(f"  while it ran: {trickle.text()}")
    if args.skip_online:
        return
    online, submit_s = await run_job(target, sim_port, args.lines, ONLINE_WINDOW, mix)
    print(f"\n[online] the same job, window {ONLINE_WINDOW}: all online")
    print(f"  submit {submit_s:.1f}s; the online floor: each half / its model's RPM, in parallel")
    print(online.text(online_floor))
    ratio = batch.cost / online.cost if online.cost else float("nan")
    verdict = "met" if ratio <= 0.55 else "NOT met"
    print(f"\n  cost with the batch route / all online: {ratio:.3f}x (target <= 0.55x: {verdict})")
    for half, model in enumerate(mix):
        if model in ROUTED:
            share = batch.halves[half] / online.halves[half] if online.halves[half] else float("nan")
            print(f"  the {model} half alone (lines the route may take): {share:.3f}x")


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    port = free_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(10)


async def kill_mid_job(args: argparse.Namespace, models: Path, sim_port: int, tmp: Path) -> None:
    mix = MIXES[args.mix]
    with redis_server(tmp) as redis_url:
        env = {"TRANSLANE_GOVERNOR": "redis", "TRANSLANE_REDIS_URL": redis_url}
        port_a, port_b = free_port(), free_port()
        before = provider_calls(sim_stats(sim_port), mix)
        with (
            process(serve_args(models, port_a, sim_port), port_a, env) as replica_a,
            process(serve_args(models, port_b, sim_port), port_b, env),
        ):
            async with (
                grpc.aio.insecure_channel(f"127.0.0.1:{port_a}", options=CHANNEL_OPTIONS) as a,
                grpc.aio.insecure_channel(f"127.0.0.1:{port_b}", options=CHANNEL_OPTIONS) as b,
            ):
                t0 = time.perf_counter()
                requests = job_requests(args.lines, "kill", mix)
                op = await pb_grpc.TranslatorStub(a).BatchTranslate(
                    pb.BatchTranslateRequest(requests=requests, completion_window=BATCH_WINDOW), timeout=120
                )
                ops_b = lro_grpc.OperationsStub(b)
                while True:
                    meta = await metadata(ops_b, op.name)
                    if meta.done + meta.failed >= args.kill_at * args.lines:
                        break
                    await asyncio.sleep(0.2)
                in_flight = provider_in_flight(sim_stats(sim_port), mix)
                replica_a.send_signal(signal.SIGKILL)
                replica_a.wait(10)
                killed_at = meta.done + meta.failed
                print(
                    f"\n[kill] SIGKILLed replica A at {killed_at}/{args.lines} lines answered "
                    f"({in_flight} calls in flight at the provider from both replicas just before)",
                    file=sys.stderr,
                )
                done = await wait_done(ops_b, op.name, time.monotonic() + 4 * 3600)
                wall = time.perf_counter() - t0
    meta, missing, duplicated, wrong = check(done, args.lines, "kill")
    answer = pb.BatchTranslateResponse()
    done.response.Unpack(answer)
    # Lines the dead replica had an answer for but had not recorded: the survivor finds them in the shared cache.
    cached = sum(1 for r in answer.results if r.response.translations[0].cached)
    after = provider_calls(sim_stats(sim_port), mix)
    calls = {k: after[k] - before[k] for k in after}
    paid = sum(calls.values())
    print(
        f"\n[kill] {args.lines} lines, two replicas on one redis-server (claim_idle_s {args.claim_idle_s:g}s), "
        f"replica A SIGKILLed at {killed_at} lines answered; the job ended in {wall:.1f}s"
    )
    print(
        f"  results: {len(set(range(args.lines))) - missing} lines, missing {missing}, duplicated {duplicated}, "
        f"wrong {wrong}, failed {meta.failed}"
    )
    print(f"  provider calls {calls}: {paid} for {args.lines} lines, {paid - args.lines} paid twice")
    print(f"  {in_flight} calls were in flight at the provider (both replicas) just before the kill")
    print(f"  {cached} lines answered from the shared segment cache (paid once, by the dead replica)")
    print(f"  job usage: {meta.usage.prompt_tokens + meta.usage.completion_tokens} tokens, cost {meta.usage.cost:.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=50_000)
    p.add_argument(
        "--mix",
        choices=sorted(MIXES),
        default="translation",
        help="translation: the translation model (online only) and a chat model with the batch route; "
        "chat: two chat models, both with it",
    )
    p.add_argument("--window-s", type=float, default=10.0, help="the provider's and governor's sliding window")
    p.add_argument("--ttft-s", type=float, default=0.3, help="the provider's online answer time")
    p.add_argument("--batch-latency-s", type=float, default=5.0, help="the batch route's answer time (Ark: minutes)")
    p.add_argument("--trickle-rate", type=float, default=2.0, help="interactive calls a second")
    p.add_argument("--baseline-s", type=float, default=30.0)
    p.add_argument("--per-job", type=int, default=160, help="[jobs] max_concurrency_per_job (0: the default, 16)")
    p.add_argument("--per-replica", type=int, default=0, help="[jobs] max_lines_per_replica (0: the default)")
    p.add_argument("--claim-idle-s", type=float, default=5.0)
    p.add_argument("--kill-at", type=float, default=0.3, help="share of lines answered when replica A is killed")
    p.add_argument("--phases", default="single,kill", help="single (baseline, batch, online) and/or kill")
    p.add_argument("--skip-online", action="store_true")
    args = p.parse_args()
    print(
        f"bench/jobs.py on {machine()}, {time.strftime('%Y-%m-%d %H:%M')}: {args.lines} lines of "
        f"{' and '.join(MIXES[args.mix])} (--mix {args.mix}), each model at "
        f"RPM {SLOW_RPM} / TPM {SLOW_TPM} scaled to a {args.window_s:g}s window; online answers after "
        f"{args.ttft_s:g}s, batch-route answers after {args.batch_latency_s:g}s (Ark: minutes)"
    )
    phases = set(args.phases.split(","))
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        models = tmp / "models.toml"
        models.write_text(models_text(args, tmp))
        if "single" in phases:
            with simulated_provider(args, models) as sim_port:
                grpc_port = free_port()
                with process(serve_args(models, grpc_port, sim_port), grpc_port):
                    uvloop.run(single_replica(args, sim_port, grpc_port))
        if "kill" in phases:
            (tmp / "kill").mkdir()
            with simulated_provider(args, models) as sim_port:
                uvloop.run(kill_mid_job(args, models, sim_port, tmp / "kill"))


if __name__ == "__main__":
    main()
