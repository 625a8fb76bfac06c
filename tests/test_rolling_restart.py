"""A rolling restart or a SIGKILL of one of two service processes behind one shim, under load: no request fails."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway_shim import ShimConfig, running_shim

from .helpers.eventually import eventually
from .helpers.processes import clean_env, free_port, translane

MODELS = """
default_model = "m"
[server]
grace_s = 3.0
[providers.p]
base_url = "http://127.0.0.1:1/v1"
[lanes.l]
max_concurrency = 100
[models.m]
provider = "p"
api_style = "chat_completions"
lane = "l"
rpm = 600000
tpm = 600000000
max_concurrency = 100
max_input_tokens = 1000
max_output_tokens = 1000
context_tokens = 4000
"""


def served(log: Path) -> int:
    """How many calls the service logging to `log` has answered OK (it logs one JSON line a request)."""
    whole = [x for x in log.read_text(encoding="utf-8").splitlines() if x.startswith("{") and x.endswith("}")]
    return sum(1 for x in whole if json.loads(x).get("status") == "OK")


def serving(log: Path, calls: int) -> Callable[[], bool]:
    """Whether the service logging to `log` has answered `calls` calls OK yet (a condition to wait for)."""
    return lambda: served(log) >= calls


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(MODELS, encoding="utf-8")
    return path


@pytest.fixture
def sim(models: Path, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    args = ["--models-file", str(models), "sim", "--port", str(port), "--ttft-s", "0.05", "--tokens-per-s", "0"]
    with translane(args, port, tmp_path / "sim.log", clean_env()):
        yield port


async def test_restarting_each_service_in_turn_fails_no_request(models: Path, sim: int, tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    env = clean_env()
    upstream = ["--upstream-url", f"http://127.0.0.1:{sim}/v1"]

    logs = [tmp_path / f"serve{i}.log" for i in range(2)]

    def serve(i: int) -> object:
        args = ["--models-file", str(models), "serve", "--port", str(ports[i]), *upstream]
        return translane(args, ports[i], logs[i], env)

    running = [serve(0), serve(1)]
    procs = [cm.__enter__() for cm in running]  # type: ignore[attr-defined]
    outcomes: dict[str, int] = {}
    target = f"ipv4:127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
    try:
        async with (
            running_shim(ShimConfig(port=0, default_target_language="zh", grpc_target=target)) as shim,
            aiohttp.ClientSession(shim.url) as s,
        ):
            stop = asyncio.Event()

            async def load() -> None:
                n = 0
                while not stop.is_set():
                    text = f"Translate to German:\n\nLine {n}"
                    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
                    n += 1
                    async with s.post("/v1/chat/completions", json=body) as r:
                        key = str(r.status) if r.status == 200 else f"{r.status} {(await r.text())[:120]}"
                        outcomes[key] = outcomes.get(key, 0) + 1

            workers = [asyncio.create_task(load()) for _ in range(8)]
            # Steady load, served by both, before the first restart (25 calls each: the load is real, not a trickle).
            steady = 25
            await eventually(lambda: all(served(log) >= steady for log in logs), 10.0, f"{steady} calls served by each")
            for i in range(2):
                # SIGTERM: health goes NOT_SERVING, new calls are refused, in-flight ones finish.
                procs[i].send_signal(signal.SIGTERM)
                await asyncio.to_thread(procs[i].wait, 15)
                running[i].__exit__(None, None, None)  # type: ignore[attr-defined]
                running[i] = serve(i)
                procs[i] = running[i].__enter__()  # type: ignore[attr-defined]
                # Both serving again before the next one goes.
                await eventually(serving(logs[i], steady), 10.0, f"{steady} calls served by the restarted service")
            stop.set()
            await asyncio.gather(*workers)
    finally:
        for cm in running:
            cm.__exit__(None, None, None)  # type: ignore[attr-defined]
    assert set(outcomes) == {"200"}, outcomes
    assert outcomes["200"] > 100


async def test_a_killed_service_fails_no_request(models: Path, sim: int, tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    env = clean_env()
    upstream = ["--upstream-url", f"http://127.0.0.1:{sim}/v1"]
    running = [
        translane(["--models-file", str(models), "serve", "--port", str(p), *upstream], p, tmp_path / f"s{i}.log", env)
        for i, p in enumerate(ports)
    ]
    procs = [cm.__enter__() for cm in running]
    after_kill = {"ok": 0, "failed": 0}
    before_kill = {"ok": 0, "failed": 0}
    killed = asyncio.Event()
    target = f"ipv4:127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
    try:
        async with (
            running_shim(ShimConfig(port=0, default_target_language="zh", grpc_target=target)) as shim,
            aiohttp.ClientSession(shim.url) as s,
        ):
            stop = asyncio.Event()

            async def load() -> None:
                while not stop.is_set():
                    body = {"model": "m", "messages": [{"role": "user", "content": "Translate to German:\n\nHi"}]}
                    async with s.post("/v1/chat/completions", json=body) as r:
                        # Tallied when the answer comes: a call in flight at the kill ends after it.
                        tally = after_kill if killed.is_set() else before_kill
                        tally["ok" if r.status == 200 else "failed"] += 1
                        if before_kill["ok"] >= 8:
                            steady.set()

            # The service's own failures first (a provider outage): they must not use up the shim's retries
            # (grpc's retry throttle would count them, and too few successes follow before the kill to
            # earn its tokens back).
            sim_config = f"http://127.0.0.1:{sim}/_sim/config"
            async with s.post(sim_config, json={"error_rate": 1.0}) as r:
                assert r.status == 200
            for _ in range(60):
                body = {"model": "m", "messages": [{"role": "user", "content": "Translate to German:\n\nHi"}]}
                async with s.post("/v1/chat/completions", json=body, headers={"Request-Timeout": "2"}) as r:
                    assert r.status == 503, await r.text()
            async with s.post(sim_config, json={"error_rate": 0.0}) as r:
                assert r.status == 200
            # The provider is back once each backend's pause ends: patient calls are served (round robin:
            # consecutive calls go to both backends).
            for _ in range(4):
                body = {"model": "m", "messages": [{"role": "user", "content": "Translate to German:\n\nback?"}]}
                async with s.post("/v1/chat/completions", json=body, headers={"Request-Timeout": "10"}) as r:
                    assert r.status == 200, await r.text()
            steady = asyncio.Event()
            workers = [asyncio.create_task(load()) for _ in range(8)]
            await asyncio.wait_for(steady.wait(), 10)
            procs[0].send_signal(signal.SIGKILL)
            killed.set()
            await asyncio.sleep(2.0)  # the load runs on for 2 s after the kill: the scenario, not a wait for state
            stop.set()
            await asyncio.gather(*workers)
    finally:
        for cm in running:
            cm.__exit__(None, None, None)
    assert before_kill["failed"] == 0 and before_kill["ok"] >= 8
    # The calls that were on the killed process when it died are tried again on the other (the
    # shim's channel retries transport failures), which serves the rest.
    assert after_kill["failed"] == 0 and after_kill["ok"] > 50
