"""Shared fixtures: a real simulated provider and a real gRPC server, both on loopback."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from translane.config import CacheConfig, Config, load_config
from translane.server import RunningServer, running_server
from translane.sim import SimConfig, create_app
from translane.v1 import translate_pb2_grpc as pb_grpc


@dataclasses.dataclass
class Sim:
    """A running simulated provider."""

    url: str  # base URL, e.g. http://127.0.0.1:PORT/api/v3
    root: str  # http://127.0.0.1:PORT
    config: SimConfig

    async def stats(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(f"{self.root}/_sim/stats") as r:
            return await r.json()  # type: ignore[no-any-return]

    async def set(self, **changes: float) -> None:
        async with aiohttp.ClientSession() as s, s.post(f"{self.root}/_sim/config", json=changes) as r:
            assert r.status == 200, await r.text()

    async def reset(self) -> None:
        async with aiohttp.ClientSession() as s, s.post(f"{self.root}/_sim/reset") as r:
            assert r.status == 200


async def start_sim(config: SimConfig) -> tuple[web.AppRunner, Sim]:
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    root = f"http://127.0.0.1:{port}"
    return runner, Sim(f"{root}/api/v3", root, config)


def server_config(sim: Sim, base: Config | None = None, **server: Any) -> Config:
    """The shipped config pointed at `sim`, on a free port, with no segment cache (tests count provider calls;
    the cache's own tests turn it on)."""
    cfg = (base or load_config(env={})).with_upstream_url(sim.url)
    server_cfg = dataclasses.replace(cfg.server, port=0, grace_s=0.5, **server)
    return dataclasses.replace(cfg, server=server_cfg, cache=CacheConfig(kind="off"))


def with_lanes(cfg: Config, *names: str, **changes: int) -> Config:
    """Copy of `cfg` with `changes` applied to the named lanes (all lanes when none are named)."""
    lanes = {
        n: dataclasses.replace(lane, **changes) if not names or n in names else lane for n, lane in cfg.lanes.items()
    }
    return dataclasses.replace(cfg, lanes=lanes)


class FullQueue:
    """Mixed into a test class: lanes of one slot and one queue place, in front of a provider that takes 0.3 s to
    answer, so of four calls at once two are served and two find the queue full."""

    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return with_lanes(server_config(sim), max_concurrency=1, max_queue=1)

    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig.from_config(load_config(env={}), ttft_s=0.3, pseudo_translate=0.0)


@pytest.fixture
def sim_config() -> SimConfig:
    """Override in a test module to change the simulated provider.

    Tests run it in echo mode ("[sim auto->zh] Hello"), so they can assert exact answers; users get the
    pseudo-translation by default (tests/service/test_sim_pseudo.py covers it).
    """
    return SimConfig.from_config(load_config(env={}), pseudo_translate=0.0)


@pytest_asyncio.fixture
async def sim(sim_config: SimConfig) -> AsyncIterator[Sim]:
    runner, handle = await start_sim(sim_config)
    try:
        yield handle
    finally:
        await runner.cleanup()


@pytest.fixture
def config(sim: Sim) -> Config:
    """Override in a test module to change the server's config."""
    return server_config(sim)


@pytest_asyncio.fixture
async def server(config: Config) -> AsyncIterator[RunningServer]:
    async with running_server(config) as running:
        yield running


@pytest_asyncio.fixture
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.TranslatorStub:
    return pb_grpc.TranslatorStub(channel)
