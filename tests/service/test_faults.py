"""Provider faults against the real server: a clear status, retries within the deadline, and nothing leaked after."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from translane.config import Config, load_config
from translane.server import RunningServer, running_server
from translane.sim import SimConfig, create_app
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..conftest import Sim, server_config
from ..helpers.eventually import eventually
from ..helpers.processes import free_port

TR = "doubao-seed-translation-250915"


def quiet(cfg: Config, retries: int = 1, idle_s: float = 30.0) -> Config:
    """No fallbacks (one model to watch), fast retries, the given stream idle timeout."""
    models = {n: dataclasses.replace(m, fallbacks=()) for n, m in cfg.models.items()}
    providers = {
        n: dataclasses.replace(p, max_retries=retries, retry_base_s=0.05, retry_max_s=0.2, stream_idle_timeout_s=idle_s)
        for n, p in cfg.providers.items()
    }
    return dataclasses.replace(cfg, models=models, providers=providers)


@pytest.fixture
def config(sim: Sim) -> Config:
    return quiet(server_config(sim), idle_s=0.3)


async def assert_nothing_leaked(server: RunningServer) -> None:
    """Every lane soon holds no call, in flight or queued (a slot comes back as its call's handler ends)."""
    lanes = server.engine.lanes.values()

    def held() -> str:
        return "every lane empty; (in flight, queued) now: " + ", ".join(
            f"{lane.name} {(lane.in_flight, lane.queued)}" for lane in lanes if (lane.in_flight, lane.queued) != (0, 0)
        )

    await eventually(lambda: all((lane.in_flight, lane.queued) == (0, 0) for lane in lanes), 1.0, held)


@pytest.mark.parametrize(
    ("knobs", "code"),
    [
        ({"rate_limit_rate": 1.0}, grpc.StatusCode.RESOURCE_EXHAUSTED),  # a 429 storm, no Retry-After
        ({"error_rate": 1.0}, grpc.StatusCode.UNAVAILABLE),  # a 5xx burst
        ({"reset_rate": 1.0}, grpc.StatusCode.UNAVAILABLE),  # connections reset
        ({"garbage_rate": 1.0}, grpc.StatusCode.UNAVAILABLE),  # 200 with a body that is not JSON
    ],
)
async def test_a_faulty_provider_gets_a_clear_status_and_leaks_nothing(
    stub: pb_grpc.TranslatorStub, sim: Sim, server: RunningServer, knobs: dict[str, float], code: grpc.StatusCode
) -> None:
    await sim.set(**knobs)
    calls = [
        stub.Translate(pb.TranslateRequest(segments=[f"s{i}"], target_language="zh"), timeout=10) for i in range(8)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, grpc.aio.AioRpcError) and r.code() == code for r in results), results
    await assert_nothing_leaked(server)
    await sim.set(**dict.fromkeys(knobs, 0.0))
    ok = await stub.Translate(pb.TranslateRequest(segments=["after"], target_language="zh"), timeout=10)
    assert ok.translations[0].text.endswith("after")


async def test_a_stream_answered_with_a_body_that_is_not_json_is_unavailable(
    stub: pb_grpc.TranslatorStub, sim: Sim, server: RunningServer
) -> None:
    await sim.set(garbage_rate=1.0)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.TranslateStream(pb.TranslateRequest(segments=["x"], target_language="zh"), timeout=10):
            pass
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
    await assert_nothing_leaked(server)


async def test_a_stalled_stream_fails_at_the_idle_timeout_not_the_deadline(
    stub: pb_grpc.TranslatorStub, sim: Sim, server: RunningServer
) -> None:
    await sim.set(stall_rate=1.0, stall_s=20.0)
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.TranslateStream(pb.TranslateRequest(segments=["stall"], target_language="zh"), timeout=15):
            pass
    assert time.monotonic() - started < 5
    assert info.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
    await assert_nothing_leaked(server)


class TestProviderDown:
    @pytest_asyncio.fixture
    async def provider(self) -> AsyncIterator[tuple[int, SimConfig]]:
        yield free_port(), SimConfig.from_config(load_config(env={}), pseudo_translate=0.0)

    async def test_a_provider_down_then_back_is_waited_for_within_the_deadline(
        self, provider: tuple[int, SimConfig]
    ) -> None:
        port, sim_config = provider
        base = load_config(env={}).with_upstream_url(f"http://127.0.0.1:{port}/api/v3")
        cfg = quiet(dataclasses.replace(base, server=dataclasses.replace(base.server, port=0)), retries=40)
        cfg = dataclasses.replace(cfg, cache=dataclasses.replace(cfg.cache, kind="off"))
        async with running_server(cfg) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            stub = pb_grpc.TranslatorStub(ch)
            # Nobody listens: refused at once, said clearly.
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Translate(pb.TranslateRequest(segments=["x"], target_language="zh"), timeout=0.5)
            assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            # A caller with patience is served once the provider is back.
            waiting = asyncio.ensure_future(
                stub.Translate(pb.TranslateRequest(segments=["patient"], target_language="zh"), timeout=15)
            )
            await asyncio.sleep(1.0)  # the outage lasts a while: this is the test's scenario, not a wait for state
            runner = web.AppRunner(create_app(sim_config), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                resp = await waiting
                assert resp.translations[0].text.endswith("patient")
                await assert_nothing_leaked(server)
            finally:
                await runner.cleanup()


FLASH = "doubao-seed-1-6-flash-250828"


async def start_provider(port: int) -> web.AppRunner:
    runner = web.AppRunner(
        create_app(SimConfig.from_config(load_config(env={}), pseudo_translate=0.0)), access_log=None
    )
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_an_outage_of_the_primary_provider_is_served_by_the_fallback(sim: Sim) -> None:
    """The primary's provider refuses every connection; a fallback model on another provider is up.

    Callers see no failure: after a few failed calls the primary pauses, work goes to the fallback
    at once, and the primary serves again once it is back (the first call after each pause looks)."""
    primary_port = free_port()
    base = load_config(env={})
    ark = base.providers["ark"]
    providers = {
        "ark": dataclasses.replace(ark, base_url=f"http://127.0.0.1:{primary_port}/api/v3", retry_base_s=0.05),
        "backup": dataclasses.replace(ark, name="backup", base_url=sim.url),
    }
    models = {
        TR: dataclasses.replace(base.models[TR], fallbacks=(FLASH,)),
        FLASH: dataclasses.replace(base.models[FLASH], provider="backup", fallbacks=()),
    }
    governor = dataclasses.replace(base.governor, provider_down_pause_s=0.2, provider_down_max_pause_s=0.4)
    cfg = dataclasses.replace(
        base,
        default_model=TR,
        providers=providers,
        models=models,
        governor=governor,
        server=dataclasses.replace(base.server, port=0, grace_s=0.5),
        cache=dataclasses.replace(base.cache, kind="off"),
    )
    served: list[str] = []
    failed: list[BaseException] = []
    back = asyncio.Event()
    async with running_server(cfg) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = pb_grpc.TranslatorStub(ch)

        async def caller(i: int) -> None:
            n = 0
            while not (back.is_set() and served[-1:] == [TR]):
                n += 1
                req = pb.TranslateRequest(segments=[f"caller {i} line {n}"], target_language="zh")
                try:
                    resp = await stub.Translate(req, timeout=5)
                except grpc.aio.AioRpcError as exc:
                    failed.append(exc)
                    long_enough.set()
                    return
                served.append(resp.translations[0].model)
                if served.count(FLASH) >= 40:
                    long_enough.set()

        # The outage lasts until 40 answers came from the fallback.
        long_enough = asyncio.Event()
        callers = [asyncio.create_task(caller(i)) for i in range(4)]
        await asyncio.wait_for(long_enough.wait(), 20)
        runner = await start_provider(primary_port)
        back.set()
        try:
            await asyncio.wait_for(asyncio.gather(*callers), 20)
        finally:
            await runner.cleanup()
        await assert_nothing_leaked(server)
        outages = server.engine.governor.snapshot(asyncio.get_running_loop().time())[TR]["provider_outages"]
    assert not failed, failed[0]
    assert served.count(FLASH) >= 40 and served[-1] == TR
    assert outages == 1


async def test_a_failing_provider_is_unavailable_not_rate_limited_while_its_model_is_paused(
    stub: pb_grpc.TranslatorStub, sim: Sim, server: RunningServer
) -> None:
    """With no fallback, calls that meet the model's outage pause hear that the provider is failing
    (UNAVAILABLE with a retry hint), not that we are over a rate (RESOURCE_EXHAUSTED)."""
    await sim.set(error_rate=1.0)
    codes, details = [], []
    for i in range(8):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Translate(pb.TranslateRequest(segments=[f"s{i}"], target_language="zh"), timeout=0.5)
        codes.append(info.value.code())
        details.append(info.value.details() or "")
    assert set(codes) == {grpc.StatusCode.UNAVAILABLE}, list(zip(codes, details, strict=True))
    assert any("is failing" in d for d in details), details
    await assert_nothing_leaked(server)
