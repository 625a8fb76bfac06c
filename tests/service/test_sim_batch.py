"""The simulated provider's batch routes: Ark Batch Chat and OpenAI Files + Batches, over loopback HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import aiohttp
import pytest
from translane.config import load_config
from translane.sim import SimConfig, SimModelLimits
from translane.sim._batch_chat import QUOTA, BatchChatModel
from translane.sim._limiter import CONCURRENCY

from ..conftest import Sim, start_sim

CHAT = "doubao-seed-1-6-flash-250828"
TR = "doubao-seed-translation-250915"


@pytest.fixture
def sim_config() -> SimConfig:
    # Echo answers, minutes of batch latency scaled to 50 ms, a 24h batch window of 0.24 s.
    return SimConfig.from_config(load_config(env={}), pseudo_translate=0.0, batch_latency_s=0.05, batch_hour_s=0.01)


def _chat(text: str, model: str = CHAT, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "system", "content": "Translate to zh"}, {"role": "user", "content": text}],
        **extra,
    }


async def _post(url: str, body: Any) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
        return r.status, await r.json(), r.headers


# Ark Batch Chat


async def test_batch_chat_answers_like_the_online_route_and_counts_apart(sim: Sim) -> None:
    online = await _post(f"{sim.url}/chat/completions", _chat("Hello"))
    status, body, _ = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello"))
    assert status == 200, body
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == online[1]["choices"][0]["message"]["content"]
    assert body["usage"]["total_tokens"] == online[1]["usage"]["total_tokens"]
    stats = await sim.stats()
    batch = stats["batch"][CHAT]
    assert batch["requests"] == 1
    assert batch["tokens"] == body["usage"]["total_tokens"]
    assert batch["quota_used"] == batch["tokens"]
    assert batch["quota_left"] == sim.config.batch_tpd - batch["tokens"]
    # The online route's counters saw only the online call.
    assert stats["models"][CHAT]["requests"] == 1


async def test_batch_chat_refuses_streaming_and_responses_only_models(sim: Sim) -> None:
    status, body, _ = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello", stream=True))
    assert (status, body["error"]["code"]) == (400, "InvalidParameter")
    status, body, _ = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello", model=TR))
    assert (status, body["error"]["code"]) == (400, "InvalidParameter")
    status, body, _ = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello", model="nope"))
    assert status == 404
    assert (await sim.stats())["batch"][CHAT]["requests"] == 0


async def test_batch_chat_has_no_concurrency_limit() -> None:
    # The online route takes two calls of this model at once; the batch route takes all twenty.
    limits = SimModelLimits(rpm=1000, tpm=10**6, max_concurrency=2, max_input_tokens=1000, api_style="chat_completions")
    runner, sim = await start_sim(SimConfig(models={CHAT: limits}, pseudo_translate=0.0, batch_latency_s=0.5))
    try:
        async with aiohttp.ClientSession() as s:

            async def one(i: int) -> int:
                async with s.post(f"{sim.url}/batch/chat/completions", json=_chat(f"line {i}")) as r:
                    await r.read()
                    return r.status

            statuses = await asyncio.gather(*(one(i) for i in range(20)))
        assert statuses == [200] * 20
        batch = (await sim.stats())["batch"][CHAT]
        assert batch["requests"] == 20
        assert batch["max_in_flight"] > limits.max_concurrency
    finally:
        await runner.cleanup()


async def test_batch_chat_quota_429_is_distinct_from_rate_limits_and_says_when_to_retry(sim: Sim) -> None:
    status, body, _ = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello"))
    one_call = body["usage"]["total_tokens"]
    await sim.reset()
    await sim.set(batch_tpd=one_call * 2)
    for _ in range(2):
        status, body, _ = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello"))
        assert status == 200, body
    status, body, headers = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello"))
    assert status == 429
    assert body["error"]["code"] == QUOTA
    assert body["error"]["code"] not in (CONCURRENCY, "RateLimitExceeded.EndpointRPMExceeded", "ServerOverloaded")
    # The quota refills when the simulated day (a real one by default) turns.
    assert 80_000 < int(headers["Retry-After"]) <= 86_400
    batch = (await sim.stats())["batch"][CHAT]
    assert (batch["requests"], batch["quota_rejected"], batch["quota_left"]) == (2, 1, 0)
    # The online route is unaffected by the batch quota.
    status, body, _ = await _post(f"{sim.url}/chat/completions", _chat("Hello"))
    assert status == 200


async def test_batch_chat_overload_429_carries_retry_after(sim: Sim) -> None:
    await sim.set(rate_limit_rate=1.0)
    status, body, headers = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello"))
    assert (status, body["error"]["code"], headers["Retry-After"]) == (429, "ServerOverloaded", "1")
    assert (await sim.stats())["batch"][CHAT]["rate_limited"] == 1


def test_the_batch_quota_refills_each_simulated_day() -> None:
    model = BatchChatModel(day_s=10.0, epoch=100.0)
    assert model.charge(100.0, 60, tpd=100) is None
    assert model.charge(105.0, 60, tpd=100) == pytest.approx(5.0)
    assert model.stats(105.0, 100)["quota_left"] == 40
    assert model.charge(110.0, 60, tpd=100) is None
    assert model.stats(121.0, 100)["quota_left"] == 100


def test_batch_knobs_are_checked() -> None:
    limits = SimModelLimits(rpm=1, tpm=1, max_concurrency=1, max_input_tokens=1, api_style="chat_completions")
    with pytest.raises(ValueError, match="batch_hour_s"):
        SimConfig(models={CHAT: limits}, batch_hour_s=0)
    with pytest.raises(ValueError, match="batch_latency_s"):
        SimConfig(models={CHAT: limits}).with_runtime({"batch_latency_s": -1})
    cfg = SimConfig(models={CHAT: limits}).with_runtime({"batch_tpd": 5, "batch_job_hours": 30})
    assert (cfg.batch_tpd, cfg.batch_job_hours) == (5, 30)
    assert dataclasses.replace(cfg, batch_file_max_lines=3).batch_file_max_lines == 3
    assert json.dumps(cfg.runtime())
