"""With the governor shared through Redis, the cache and the daily budgets are shared there too."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import grpc
from translane.cache import Entry, open_cache
from translane.config import CacheConfig, Config, GovernorConfig
from translane.server import running_server
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..conftest import Sim, server_config
from ..helpers.redis_server import RedisServer

TR = "doubao-seed-translation-250915"


def replica(sim: Sim, redis_server: RedisServer, tmp_path: Path, name: str, **model: object) -> Config:
    cfg = server_config(sim)
    governor = GovernorConfig(kind="redis", redis_url=redis_server.url, redis_prefix="shared", replicas=2)
    # Each replica has a file of its own: only Redis can make them agree.
    cache = CacheConfig(kind="sqlite", path=str(tmp_path / name / "cache.sqlite3"))
    models = {**cfg.models, TR: dataclasses.replace(cfg.models[TR], **model)}  # type: ignore[arg-type]
    return dataclasses.replace(cfg, governor=governor, cache=cache, models=models)


async def translate(cfg: Config, text: str) -> tuple[pb.TranslateResponse, pb.ListModelsResponse]:
    async with running_server(cfg) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = pb_grpc.TranslatorStub(ch)
        resp = await stub.Translate(pb.TranslateRequest(segments=[text], target_language="zh"), timeout=10)
        return resp, await stub.ListModels(pb.ListModelsRequest(), timeout=5)


async def test_one_replica_pays_and_the_other_finds_it_in_the_shared_cache(
    sim: Sim, redis_server: RedisServer, tmp_path: Path
) -> None:
    first, _ = await translate(replica(sim, redis_server, tmp_path, "a"), "Shared between replicas.")
    second, _ = await translate(replica(sim, redis_server, tmp_path, "b"), "Shared between replicas.")
    assert not first.translations[0].cached and second.translations[0].cached
    assert second.translations[0].text == first.translations[0].text
    assert (await sim.stats())["models"][TR]["admitted"] == 1


async def test_a_budget_spent_on_one_replica_is_spent_on_all(
    sim: Sim, redis_server: RedisServer, tmp_path: Path
) -> None:
    a = replica(sim, redis_server, tmp_path, "a", daily_token_budget=20)
    first, _ = await translate(a, "This sentence alone spends the whole day's budget of the model.")
    assert first.model == TR
    b = replica(sim, redis_server, tmp_path, "b", daily_token_budget=20)
    second, models = await translate(b, "Another sentence, on another replica.")
    listed = {m.name: m for m in models.models}[TR]
    assert listed.daily_tokens_spent >= 20 and not listed.available
    assert second.model != TR  # served by a fallback


async def test_a_burst_of_reads_waits_for_a_connection_rather_than_taking_redis_for_down(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # A job's lines taken over by another replica all look in the shared cache at once: more reads at a time than
    # the client pools connections (100). Each waits its turn; none is a miss that pays again. (Twice the pool: a
    # read waits for one round of others, well within the 0.25 s a wait may take on a busy machine; redis-py's
    # default pool refused the 101st at once.)
    governor = GovernorConfig(kind="redis", redis_url=redis_server.url, redis_prefix="burst")
    cfg = CacheConfig(kind="sqlite", path=str(tmp_path / "cache.sqlite3"))
    entry = Entry("译文", TR, 3, 4, time.time())
    async with open_cache(cfg, governor) as writer:
        assert writer is not None
        for i in range(200):
            writer.put(f"key-{i}", entry)
    async with open_cache(cfg, governor) as reader:
        assert reader is not None
        found = await asyncio.gather(*(reader.get(f"key-{i}", 0.0) for i in range(200)))
    assert found == [entry] * 200
