"""Every HTTP caller has a deadline: the one it states in a header, or the service's queue-wait cap.

A request that cannot start in time is refused at once with 429 and Retry-After,
never left to time out in the queue, and never sent to the provider.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import aiohttp
import pytest
from translane.config import Config, load_config
from translane.sim import SimConfig

from ..conftest import Sim, server_config, with_lanes
from ..helpers.eventually import eventually

MODEL = "doubao-seed-translation-250915"
QUEUE_WAIT_S = 0.3


def chat(text: str) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"Translate to Chinese:\n\n{text}"}]}


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig.from_config(load_config(env={}), ttft_s=1.0)


@pytest.fixture
def config(sim: Sim) -> Config:
    # One slot, so a second caller must queue behind a 1 s call; no fallbacks to run to.
    cfg = with_lanes(server_config(sim, interactive_max_queue_wait_s=QUEUE_WAIT_S), "slow", max_concurrency=1)
    model = dataclasses.replace(cfg.models[MODEL], fallbacks=())
    return dataclasses.replace(cfg, models={**cfg.models, MODEL: model})


async def admitted(sim: Sim) -> int:
    return int((await sim.stats())["models"][MODEL]["admitted"])


async def occupy(http: aiohttp.ClientSession, sim: Sim) -> asyncio.Task[int]:
    async def first() -> int:
        async with http.post("/v1/chat/completions", json=chat("first")) as r:
            return r.status

    task = asyncio.create_task(first())

    async def holding() -> bool:
        return await admitted(sim) == 1

    await eventually(holding, 1.0, "the first call at the provider, holding the lane's slot")
    return task


async def test_a_silent_caller_is_refused_at_the_queue_wait_cap_not_left_to_time_out(
    http: aiohttp.ClientSession, sim: Sim
) -> None:
    first = await occupy(http, sim)
    started = time.perf_counter()
    async with http.post("/v1/chat/completions", json=chat("second")) as r:
        waited = time.perf_counter() - started
        assert r.status == 429
        assert int(r.headers["Retry-After"]) >= 1
        error = (await r.json())["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
    # Refused when it could not start within the cap, long before the shim's own 120 s timeout.
    assert QUEUE_WAIT_S * 0.9 <= waited < QUEUE_WAIT_S + 0.5
    assert await first == 200
    assert await admitted(sim) == 1  # the refused call never reached the provider


@pytest.mark.parametrize("header", ["Request-Timeout", "X-Request-Timeout", "X-Stainless-Read-Timeout"])
async def test_a_stated_deadline_shorter_than_the_queue_is_refused_at_once(
    http: aiohttp.ClientSession, sim: Sim, header: str
) -> None:
    first = await occupy(http, sim)
    # Learn the call's length: the lane forecasts from it.
    assert await first == 200
    first = await occupy(http, sim)
    started = time.perf_counter()
    async with http.post("/v1/chat/completions", json=chat("second"), headers={header: "0.5"}) as r:
        waited = time.perf_counter() - started
        assert r.status == 429, await r.text()
        assert "Retry-After" in r.headers
    # A 1 s call ahead and a 0.5 s deadline: the forecast refuses it without queueing.
    assert waited < 0.25
    assert await first == 200
    assert await admitted(sim) == 2


@pytest.mark.parametrize("value", ["abc", "-1", "0", "1e-6", "nan", "inf", "9" * 400])
async def test_a_malformed_timeout_header_is_400_naming_it(http: aiohttp.ClientSession, sim: Sim, value: str) -> None:
    async with http.post("/v1/chat/completions", json=chat("x"), headers={"X-Request-Timeout": value}) as r:
        assert r.status == 400
        error = (await r.json())["error"]
    assert error["param"] == "X-Request-Timeout" and "X-Request-Timeout" in error["message"]
    assert len(error["message"]) < 200  # quotes a bounded prefix
    assert await admitted(sim) == 0
