"""The batch routes' daily quota shared through Redis: two engines on one real redis-server spend `batch_tpd` once
between them, not once each; a lost Redis leaves each its 1/replicas share. The simulated provider over loopback
HTTP plays Ark Batch Chat (its latency scaled down)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
import redis.asyncio as aioredis
from translane.budget import Budgets
from translane.config import Config, GovernorConfig, load_config
from translane.engine import Engine, Job
from translane.governor import Reservation
from translane.shared_batch_quota import SharedDailyQuota, quota_key
from translane.sim import SimConfig

from ..conftest import Sim, server_config
from ..helpers.eventually import eventually
from ..helpers.redis_server import RedisServer

CHAT = "doubao-seed-1-6-flash-250828"
TPD = 600


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig.from_config(load_config(env={}), pseudo_translate=0.0, batch_latency_s=0.05)


def _shared(sim: Sim, redis_server: RedisServer, **route: Any) -> Config:
    cfg = server_config(sim)
    model = dataclasses.replace(
        cfg.models[CHAT], batch_api="ark-batch-chat", batch_min_window_s=60.0, batch_tpd=TPD, **route
    )
    governor = GovernorConfig(kind="redis", redis_url=redis_server.url, redis_prefix="bq", replicas=2)
    return dataclasses.replace(cfg, models={**cfg.models, CHAT: model}, governor=governor)


def _job(n: int, tag: str) -> Job:
    now = asyncio.get_running_loop().time()
    lines = tuple(f"{tag} line {i}" for i in range(n))
    return Job(lines, "zh", CHAT, now + 60, completion_window_s=3600.0, window_end=now + 3600.0)


async def test_two_engines_share_one_quota(sim: Sim, redis_server: RedisServer) -> None:
    cfg = _shared(sim, redis_server)
    async with Engine.open(cfg) as a, Engine.open(cfg) as b:
        # Each engine alone would spend nearly the whole quota on these lines.
        first, second = await asyncio.gather(a.translate(_job(10, "a")), b.translate(_job(10, "b")))
        assert first.texts == [f"[sim auto->Simplified Chinese] a line {i}" for i in range(10)]
        assert second.texts == [f"[sim auto->Simplified Chinese] b line {i}" for i in range(10)]
        stats = await sim.stats()
        batch, online = stats["batch"][CHAT], stats["models"][CHAT]["requests"]
        assert batch["requests"] + online == 20 and batch["requests"] >= 2, (batch, online)
        # Both together stayed under the one quota: what the route really used, and what Redis counts.
        assert batch["tokens"] <= TPD, batch
        day = a.budgets.day()
        client = aioredis.Redis.from_url(redis_server.url)
        try:

            async def counted() -> bool:
                # The last settlements are written behind the answers.
                return int(await client.get(quota_key("bq", CHAT, day)) or 0) == batch["tokens"]

            await eventually(counted, 5.0, "Redis counting what the route used")
        finally:
            await client.aclose()


async def test_without_redis_each_replica_counts_its_share(sim: Sim, redis_server: RedisServer) -> None:
    cfg = _shared(sim, redis_server)
    loop = asyncio.get_running_loop()
    budgets = Budgets(cfg.models, cfg.budget_timezone)
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=0.25, socket_connect_timeout=0.25)
    quota = SharedDailyQuota({CHAT: cfg.models[CHAT]}, budgets, client, "bq", 2, loop.time)
    woken = asyncio.Event()
    quota.subscribe(woken.set)
    try:
        # The first ask goes to Redis: "wait", then a grant parked for the next ask.
        assert quota.try_reserve(CHAT, 100, loop.time()) == pytest.approx(1.0)
        await asyncio.wait_for(woken.wait(), 5.0)
        granted = quota.try_reserve(CHAT, 100, loop.time())
        assert isinstance(granted, Reservation) and granted.shared
        quota.settle(granted, 40, loop.time())
        await eventually(lambda: quota.left(CHAT) == TPD - 40, 5.0, "the settlement counted in Redis")
        redis_server.stop()
        woken.clear()
        assert not isinstance(quota.try_reserve(CHAT, 100, loop.time()), Reservation)
        await asyncio.wait_for(woken.wait(), 5.0)
        # Redis is gone: this replica spends at most its half of the quota, on its own count.
        local = quota.try_reserve(CHAT, TPD // 2, loop.time())
        assert isinstance(local, Reservation) and not local.shared
        assert quota.try_reserve(CHAT, 1, loop.time()) == pytest.approx(budgets.seconds_to_next_day(), abs=2.0)
    finally:
        await quota.aclose()
