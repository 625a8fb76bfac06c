"""Three service processes, one Redis, one provider limit, at 3x overload: through a Redis outage, and through a
partition that cuts one replica off Redis while the others still reach it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..helpers.eventually import eventually_sync
from ..helpers.processes import accepts, free_port
from ..helpers.redis_server import RedisServer
from ..helpers.tcp_proxy import TcpProxy

MODEL = "doubao-seed-translation-250915"
WINDOW_S = 20.0
RPM = 1200  # per 20-second window: 60 calls/s across all replicas
REPLICAS = 3

MODELS = f"""
default_model = "{MODEL}"
[server]
grace_s = 1.0
[governor]
kind = "redis"
window_s = {WINDOW_S}
replicas = {REPLICAS}
[providers.ark]
base_url = "http://127.0.0.1:1/api/v3"
[lanes.slow]
max_concurrency = 80
[models."{MODEL}"]
provider = "ark"
api_style = "responses"
lane = "slow"
rpm = {RPM}
tpm = 100000000
max_concurrency = 80
max_input_tokens = 1000
max_output_tokens = 3000
context_tokens = 4000
"""


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "translane.cli", *args], env=env, stdout=subprocess.DEVNULL, stderr=out
        )


def sim_stats(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/stats", timeout=5) as r:
        return json.loads(r.read())["models"][MODEL]  # type: ignore[no-any-return]


@dataclasses.dataclass
class Cluster:
    sim_port: int
    ports: list[int]  # one per replica
    logs: list[Path]  # each replica's stderr (warnings, as JSON lines)
    procs: list[subprocess.Popen[bytes]]  # the simulated provider, then the replicas


@contextlib.contextmanager
def running_cluster(tmp_path: Path, redis_urls: list[str]) -> Iterator[Cluster]:
    """The simulated provider and one replica per Redis URL, all on one models file; stopped on exit."""
    models = tmp_path / "models.toml"
    models.write_text(MODELS)
    # The simulator reads the models file too, and a redis governor there needs a URL, used or not.
    env = dict(os.environ, TRANSLANE_LOG_LEVEL="WARNING", TRANSLANE_REDIS_URL=redis_urls[-1])
    sim_port = free_port()
    sim_args = ["sim", "--port", str(sim_port), "--window-s", str(WINDOW_S), "--ttft-s", "0.02", "--tokens-per-s", "0"]
    procs = [spawn(["--models-file", str(models), *sim_args], env, tmp_path / "sim.log")]
    ports = [free_port() for _ in redis_urls]
    logs = [tmp_path / f"replica-{i}.log" for i in range(len(redis_urls))]
    upstream = f"http://127.0.0.1:{sim_port}/api/v3"
    for port, url, log in zip(ports, redis_urls, logs, strict=True):
        args = ["--models-file", str(models), "serve", "--port", str(port), "--upstream-url", upstream]
        procs.append(spawn(args, env | {"TRANSLANE_REDIS_URL": url}, log))
    try:
        for port in [sim_port, *ports]:
            eventually_sync(functools.partial(accepts, port), 20.0, f"the simulator or a replica on port {port}")
        yield Cluster(sim_port, ports, logs, procs)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclasses.dataclass
class Run:
    stats: dict[str, float]  # the provider's, at the end of the load
    elapsed_s: float
    ok: dict[tuple[str, int], int]  # answers by (phase, replica)
    shed: int  # refused with a retry hint (the lanes' doing, not the provider's)
    late: list[str]  # DEADLINE_EXCEEDED
    failures: list[str]  # anything else
    limited: dict[str, float]  # the provider's 429s counted by the end of each phase

    @property
    def achieved(self) -> float:
        """Calls the provider admitted as a share of what the limit allows over the run."""
        return self.stats["admitted"] / (RPM * self.elapsed_s / WINDOW_S)


async def overload(cluster: Cluster, seconds: float, phases: list[tuple[float, str, Callable[[], None]]]) -> Run:
    """3x the limit spread over the replicas for `seconds`; each phase (start s, name, action) runs its action first."""
    rate = 3.0 * RPM / WINDOW_S
    loop = asyncio.get_running_loop()
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in cluster.ports]
    stubs = [pb_grpc.TranslatorStub(ch) for ch in channels]
    run = Run({}, 0.0, {}, 0, [], [], {})
    ahead = list(phases)
    phase = ""

    async def one(i: int, phase: str) -> None:
        replica = i % len(stubs)
        req = pb.TranslateRequest(segments=[f"call {i}"], target_language="zh")
        try:
            await stubs[replica].Translate(req, timeout=3.0)
            run.ok[phase, replica] = run.ok.get((phase, replica), 0) + 1
        except grpc.aio.AioRpcError as exc:
            what = f"{phase} replica {replica}: {exc.code().name}: {exc.details()}"
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "provider" not in (exc.details() or ""):
                run.shed += 1
            elif exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                run.late.append(what)
            else:
                run.failures.append(what)

    tasks = []
    start = loop.time()
    for i in range(int(rate * seconds)):
        t = start + i / rate
        delay = t - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # calls sent at a steady rate: the load is the scenario
        if ahead and t - start >= ahead[0][0]:
            if phase:
                run.limited[phase] = (await asyncio.to_thread(sim_stats, cluster.sim_port))["rate_limited"]
            _, phase, action = ahead.pop(0)
            await asyncio.to_thread(action)
        tasks.append(asyncio.create_task(one(i, phase)))
    run.stats = await asyncio.to_thread(sim_stats, cluster.sim_port)
    run.limited[phase] = run.stats["rate_limited"]
    run.elapsed_s = loop.time() - start
    await asyncio.gather(*tasks)
    for ch in channels:
        await ch.close()
    return run


def nothing() -> None:
    pass


async def test_three_replicas_stay_under_one_limit_through_a_redis_outage(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        with running_cluster(tmp_path, [redis.url] * REPLICAS) as cluster:
            phases = [(0.0, "shared", nothing), (14.0, "local", redis.stop), (28.0, "back", redis.start)]
            run = await overload(cluster, 42.0, phases)
            replicas_alive = [proc.poll() is None for proc in cluster.procs[1:]]
    finally:
        redis.stop()

    # The provider never saw more than the limit, and never answered 429.
    assert run.stats["rate_limited"] == 0, (run.stats["rejected"], run.limited)
    assert run.stats["max_window_requests"] <= RPM
    # It saw nearly all of it, across shared, local-fallback and shared-again phases.
    assert run.achieved >= 0.97, (run.achieved, run.ok, run.failures[:5])
    # Every replica kept answering in every phase; nothing failed but sheds with a retry hint.
    assert not run.failures, run.failures[:5]
    assert len(run.ok) == 3 * REPLICAS, run.ok
    # A few calls may still miss the caller's 3 s: one granted near its deadline's edge (with at least
    # engine.MIN_CALL_S left) is late when five processes share two cores and the answer waits for a turn
    # of a busy event loop (with two busy loops beside the test: 14 of ~2,450 calls, Redis up). The
    # provider's limit, the point of this test, is held exactly above.
    assert len(run.late) <= 0.01 * sum(run.ok.values()), run.late[:5]
    assert all(replicas_alive)  # no replica died with Redis


async def test_a_replica_cut_off_from_redis_spends_only_its_share(tmp_path: Path) -> None:
    """The others still share the full buckets in Redis, so the cut-off replica's local share must come out of them."""
    redis = RedisServer(tmp_path)
    redis.start()
    proxy = TcpProxy(redis.port)
    proxy.start()
    try:
        # Replica 0 reaches Redis through the proxy, the others directly.
        urls = [f"redis://127.0.0.1:{proxy.port}/0", redis.url, redis.url]
        with running_cluster(tmp_path, urls) as cluster:
            phases = [(0.0, "shared", nothing), (12.0, "cut", proxy.cut), (27.0, "healed", proxy.heal)]
            run = await overload(cluster, 39.0, phases)
            replicas_alive = [proc.poll() is None for proc in cluster.procs[1:]]
        logs = [log.read_text() for log in cluster.logs]
    finally:
        proxy.stop()
        redis.stop()

    # (Before the fix, three runs: 3 to 5 provider 429s, 2 during the cut and the rest after it, and
    # 0.91 of the limit, the 429s having cut every replica's rate.)
    figures = (run.stats["max_window_requests"], run.limited, run.stats["rejected"], run.achieved)
    assert run.stats["rate_limited"] == 0, figures
    assert run.stats["max_window_requests"] <= RPM, figures
    # Every replica answered in every phase, the cut-off one on its local share.
    assert not run.failures, run.failures[:5]
    assert len(run.ok) == 3 * REPLICAS, run.ok
    # A few calls may miss their deadline, partition or not: replica 0's slower link to Redis wins it
    # fewer grants from the shared buckets than its lane forecasts, so its queue runs to the deadline's
    # edge, where the lane still starts a call with half its usual time left (lanes.MIN_SERVICE_SHARE).
    assert len(run.late) <= 0.01 * sum(run.ok.values()), run.late[:5]
    assert all(replicas_alive)
    # The cut-off replica fell back to its own buckets and came back; the others never left Redis.
    assert "redis unreachable" in logs[0] and "redis is back" in logs[0], logs[0][-2000:]
    assert not any("redis unreachable" in log for log in logs[1:])
    # What the partition costs: the cut-off replica's pause until the others count it out.
    assert run.achieved >= 0.95, figures
