"""Three service processes, one Redis, one provider limit: 3x overload, then Redis dies and comes back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..helpers.redis_server import RedisServer, free_port

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


def wait_port(port: int, timeout_s: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing on port {port}")


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "translane.cli", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def sim_stats(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/stats", timeout=5) as r:
        return json.loads(r.read())["models"][MODEL]  # type: ignore[no-any-return]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RedisServer, int, list[int], list[subprocess.Popen[bytes]]]]:
    redis = RedisServer(tmp_path)
    redis.start()
    models = tmp_path / "models.toml"
    models.write_text(MODELS)
    env = dict(os.environ, TRANSLANE_LOG_LEVEL="WARNING", TRANSLANE_REDIS_URL=redis.url)
    sim_port = free_port()
    procs = [
        spawn(
            [
                "--models-file",
                str(models),
                "sim",
                "--port",
                str(sim_port),
                "--window-s",
                str(WINDOW_S),
                "--ttft-s",
                "0.02",
                "--tokens-per-s",
                "0",
            ],
            env,
        )
    ]
    ports = [free_port() for _ in range(REPLICAS)]
    for p in ports:
        procs.append(
            spawn(
                [
                    "--models-file",
                    str(models),
                    "serve",
                    "--port",
                    str(p),
                    "--upstream-url",
                    f"http://127.0.0.1:{sim_port}/api/v3",
                ],
                env,
            )
        )
    try:
        for port in [sim_port, *ports]:
            wait_port(port)
        yield redis, sim_port, ports, procs
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis.stop()


async def test_three_replicas_stay_under_one_limit_through_a_redis_outage(
    cluster: tuple[RedisServer, int, list[int], list[subprocess.Popen[bytes]]],
) -> None:
    redis, sim_port, ports, procs = cluster
    rate = 3.0 * RPM / WINDOW_S  # 3x overload, spread over the replicas
    seconds = 42.0
    outcomes: dict[str, dict[str, int]] = {p: {"ok": 0, "shed": 0, "failed": 0} for p in ("shared", "local", "back")}
    failures: list[str] = []
    loop = asyncio.get_running_loop()
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in ports]
    stubs = [pb_grpc.TranslatorStub(ch) for ch in channels]
    start = loop.time()

    def phase(t: float) -> str:
        return "shared" if t < 14 else "local" if t < 28 else "back"

    async def one(i: int) -> None:
        ph = phase(loop.time() - start)
        req = pb.TranslateRequest(segments=[f"call {i}"], target_language="zh")
        try:
            await stubs[i % REPLICAS].Translate(req, timeout=3.0)
            outcomes[ph]["ok"] += 1
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "provider" not in (exc.details() or ""):
                outcomes[ph]["shed"] += 1
            else:
                outcomes[ph]["failed"] += 1
                failures.append(f"{exc.code().name}: {exc.details()}")

    tasks = []
    killed = restarted = False
    limited: dict[str, float] = {}  # provider 429s seen by the end of each phase
    for i in range(int(rate * seconds)):
        t = start + i / rate
        delay = t - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if not killed and t - start >= 14:
            limited["shared"] = (await asyncio.to_thread(sim_stats, sim_port))["rate_limited"]
            redis.stop()
            killed = True
        if not restarted and t - start >= 28:
            limited["local"] = (await asyncio.to_thread(sim_stats, sim_port))["rate_limited"]
            redis.start()
            restarted = True
        tasks.append(asyncio.create_task(one(i)))
    stats = await asyncio.to_thread(sim_stats, sim_port)
    elapsed = loop.time() - start
    await asyncio.gather(*tasks)
    for ch in channels:
        await ch.close()

    # The provider never saw more than the limit, and never answered 429.
    assert stats["rate_limited"] == 0, (stats["rejected"], limited)
    assert stats["max_window_requests"] <= RPM
    # It saw nearly all of it, across shared, local-fallback and shared-again phases.
    achieved = stats["admitted"] / (RPM * elapsed / WINDOW_S)
    assert achieved >= 0.97, (achieved, outcomes, failures[:5])
    # Every phase kept answering; nothing failed but sheds with a retry hint.
    assert not failures, failures[:5]
    assert all(o["ok"] > 0 for o in outcomes.values()), outcomes
    for proc in procs[1:]:
        assert proc.poll() is None  # no replica died with Redis
