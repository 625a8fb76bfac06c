"""The segment cache: a sentence once paid for is not paid for again — across requests, in flight, and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from pathlib import Path

import aiohttp
import grpc
import pytest
from translane.config import CacheConfig, Config, load_config
from translane.server import RunningServer, running_server
from translane.sim import SimConfig
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from gateway_shim import ShimConfig, running_shim

from ..conftest import Sim, server_config
from ..helpers.eventually import eventually
from ..helpers.processes import clean_env, free_port, translane

TR = "doubao-seed-translation-250915"


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig.from_config(load_config(env={}), ttft_s=0.2)


@pytest.fixture
def config(sim: Sim, tmp_path: Path) -> Config:
    cfg = server_config(sim)
    return dataclasses.replace(cfg, cache=CacheConfig(kind="sqlite", path=str(tmp_path / "cache.sqlite3")))


async def calls(sim: Sim) -> int:
    return int((await sim.stats())["models"][TR]["admitted"])


def req(*segments: str, **kw: object) -> pb.TranslateRequest:
    return pb.TranslateRequest(segments=list(segments), target_language="zh", **kw)  # type: ignore[arg-type]


async def test_a_repeated_segment_costs_nothing_and_is_marked(
    stub: pb_grpc.TranslatorStub, sim: Sim, server: RunningServer
) -> None:
    first = await stub.Translate(req("Hello there.", "Fresh words."), timeout=10)
    assert first.usage.cost > 0 and first.usage.cached_segments == 0
    again = await stub.Translate(req("Hello there.", "New words."), timeout=10)
    assert again.translations[0].text == first.translations[0].text
    assert [t.cached for t in again.translations] == [True, False]
    assert again.usage.cached_segments == 1
    # Usage and cost count only the segment the provider was paid for.
    assert 0 < again.usage.prompt_tokens < first.usage.prompt_tokens
    assert await calls(sim) == 3
    hits = server.engine.metrics.cache_lookups.values
    assert hits[(TR, "hit")] == 1 and hits[(TR, "miss")] == 3
    assert server.engine.metrics.cache_saved_tokens.values[(TR,)] > 0
    # Served wholly from the cache: nothing paid, and the currency still named.
    cached = await stub.Translate(req("Hello there."), timeout=10)
    assert cached.usage.cached_segments == 1 and cached.usage.cost == 0
    assert cached.usage.currency == first.usage.currency != ""


async def test_identical_segments_in_flight_call_the_provider_once(stub: pb_grpc.TranslatorStub, sim: Sim) -> None:
    results = await asyncio.gather(*(stub.Translate(req("Same sentence, same moment."), timeout=10) for _ in range(5)))
    assert await calls(sim) == 1
    assert len({r.translations[0].text for r in results}) == 1
    assert sum(r.translations[0].cached for r in results) == 4


async def test_a_caller_may_skip_the_cache(stub: pb_grpc.TranslatorStub, sim: Sim) -> None:
    await stub.Translate(req("Skip me."), timeout=10)
    resp = await stub.Translate(req("Skip me.", no_cache=True), timeout=10)
    assert not resp.translations[0].cached and await calls(sim) == 2


async def test_a_cut_translation_is_never_cached(stub: pb_grpc.TranslatorStub, sim: Sim) -> None:
    await sim.set(output_cap_tokens=9)
    for _ in range(2):
        resp = await stub.Translate(req("The first sentence is here.", allow_truncated=True), timeout=10)
        assert resp.translations[0].truncated and not resp.translations[0].cached
    assert await calls(sim) >= 2


async def test_the_cache_survives_a_restart(config: Config, sim: Sim) -> None:
    for _ in range(2):  # a server on the file, stopped; then another on the same file
        async with running_server(config) as running, grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            resp = await pb_grpc.TranslatorStub(ch).Translate(req("Remember me."), timeout=10)
    assert resp.translations[0].cached and await calls(sim) == 1


async def test_the_shim_shows_cached_segments_and_honours_cache_false(server: RunningServer, sim: Sim) -> None:
    body = {"model": TR, "messages": [{"role": "user", "content": "Translate to Chinese:\n\nA\n\n%%\n\nB"}]}
    async with (
        running_shim(ShimConfig(port=0, default_target_language="zh", grpc_target=f"127.0.0.1:{server.port}")) as shim,
        aiohttp.ClientSession(shim.url) as http,
    ):
        for _ in range(2):
            async with http.post("/v1/chat/completions", json=body) as r:
                usage = (await r.json())["usage"]
        assert usage["cached_segments"] == 2 and usage["cost"] == 0
        async with http.post("/v1/chat/completions", json={**body, "cache": False}) as r:
            assert (await r.json())["usage"]["cached_segments"] == 0
        async with http.post("/v1/chat/completions", json={**body, "cache": "no"}) as r:
            assert r.status == 400
    assert await calls(sim) == 4


async def test_writes_go_behind_the_reply_and_a_killed_server_loses_at_most_the_last_batch(
    sim: Sim, tmp_path: Path
) -> None:
    """The default cache (SQLite) as `translane serve` runs it: entries reach the file in batches without a
    clean stop; SIGKILL loses at most what was put in the last flush interval, and a restart serves the rest."""
    path = tmp_path / "cache.sqlite3"
    env = clean_env(TRANSLANE_CACHE="sqlite", TRANSLANE_DATA_DIR=str(tmp_path))
    port = free_port()
    args = ["serve", "--port", str(port), "--upstream-url", sim.url]
    sentences = [f"Sentence number {i} is kept." for i in range(20)]

    def rows() -> int:
        if not path.exists():
            return 0
        with contextlib.closing(sqlite3.connect(path)) as db:
            return int(db.execute("SELECT count(*) FROM segments").fetchone()[0])

    with translane(args, port, tmp_path / "serve1.log", env) as proc:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.TranslatorStub(ch)
            for s in sentences:
                await stub.Translate(req(s), timeout=10)
            # No stop, no flush asked for: the batch lands on its own, within the flush interval.
            await eventually(lambda: rows() == len(sentences), 5.0, "the 20 entries in the file")
            await stub.Translate(req("The last one, killed with its batch."), timeout=10)
        proc.kill()
        proc.wait(5)
    paid = await calls(sim)
    assert paid == len(sentences) + 1
    with translane(args, port, tmp_path / "serve2.log", env):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            again = await pb_grpc.TranslatorStub(ch).Translate(req(*sentences), timeout=10)
    assert all(t.cached for t in again.translations)
    assert await calls(sim) == paid


async def test_a_cap_holds_on_a_hit_as_on_a_fresh_call(stub: pb_grpc.TranslatorStub, sim: Sim) -> None:
    text = "A sentence translated once, whole, then asked for again under a cap of three tokens."
    whole = await stub.Translate(req(text), timeout=10)
    assert not whole.translations[0].truncated
    capped = await stub.Translate(req(text, max_output_tokens=3, allow_truncated=True), timeout=10)
    assert not capped.translations[0].cached and capped.translations[0].truncated
    assert len(capped.translations[0].text) < len(whole.translations[0].text)
    again = await stub.Translate(req(text, max_output_tokens=4000), timeout=10)
    assert again.translations[0].cached  # a cap the cached answer fits in is served from the cache
    assert await calls(sim) == 2
