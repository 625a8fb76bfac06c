"""Lanes, governor and fallback through the real server and the simulated provider."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest
from translane.config import Config, load_config
from translane.lanes import Lane
from translane.server import RunningServer
from translane.sim import SimConfig
from translane.tokens import count_tokens
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..conftest import Sim, server_config, with_lanes
from ..helpers.eventually import eventually

MODEL = "doubao-seed-translation-250915"
FALLBACK = "doubao-seed-1-6-flash-250828"


def sim_with(model: str, **limits: int) -> SimConfig:
    cfg = SimConfig.from_config(load_config(env={}), ttft_s=0.05, pseudo_translate=0.0)
    models = dict(cfg.models)
    models[model] = dataclasses.replace(models[model], **limits)
    return dataclasses.replace(cfg, models=models)


class TestBurstAboveConcurrency:
    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return sim_with(MODEL, max_concurrency=5)

    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return with_lanes(server_config(sim), "slow", max_concurrency=5)

    async def test_provider_never_sees_more_than_the_lane_in_flight(
        self, stub: pb_grpc.TranslatorStub, sim: Sim
    ) -> None:
        calls = [
            stub.Translate(pb.TranslateRequest(segments=[f"text {i}", f"more {i}"], target_language="zh"), timeout=20)
            for i in range(30)
        ]
        results = await asyncio.gather(*calls)
        assert all(r.translations[1].text.endswith(f"more {i}") for i, r in enumerate(results))
        stats = (await sim.stats())["models"][MODEL]
        assert stats["requests"] == 60
        assert stats["max_in_flight"] == 5  # the lane filled up, and never went past
        assert stats["rate_limited"] == 0


class TestFallbackWhenPaused:
    @pytest.fixture
    def sim_config(self) -> SimConfig:
        # The provider allows this account far less than the models file claims.
        return sim_with(MODEL, rpm=2)

    async def test_429_pauses_the_model_and_the_retry_goes_to_the_fallback(
        self, stub: pb_grpc.TranslatorStub, sim: Sim, server: RunningServer
    ) -> None:
        served = []
        for i in range(4):
            r = await stub.Translate(pb.TranslateRequest(segments=[f"hello {i}"], target_language="zh"), timeout=10)
            served.append(r.model)
        assert served == [MODEL, MODEL, FALLBACK, FALLBACK]
        stats = (await sim.stats())["models"]
        assert stats[MODEL]["rate_limited"] == 1  # one 429 taught the governor; no storm followed
        gov = server.engine.governor
        loop_now = asyncio.get_running_loop().time()
        assert gov.is_paused(MODEL, loop_now)
        assert gov.budgets[MODEL].rate_factor(loop_now) < 1.0


class TestSpendingLimit:
    async def test_set_limit_exceeded_takes_models_out_of_rotation(
        self, stub: pb_grpc.TranslatorStub, sim: Sim, server: RunningServer
    ) -> None:
        await sim.set(spend_limit_rate=1.0)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Translate(pb.TranslateRequest(segments=["hi"], target_language="zh"), timeout=10)
        assert info.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)
        models = {m.name: m.available for m in (await stub.ListModels(pb.ListModelsRequest(), timeout=5)).models}
        assert models[MODEL] is False and models[FALLBACK] is False
        calls_before = sum(m["errors"] for m in (await sim.stats())["models"].values())
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await stub.Translate(pb.TranslateRequest(segments=["hi"], target_language="zh"), timeout=10)
        assert again.value.code() == grpc.StatusCode.UNAVAILABLE
        # Out of rotation means the provider is not called at all.
        assert sum(m["errors"] for m in (await sim.stats())["models"].values()) == calls_before
        await sim.set(spend_limit_rate=0.0)
        server.engine.governor.enable_all()  # what SIGHUP does
        r = await stub.Translate(pb.TranslateRequest(segments=["hi"], target_language="zh"), timeout=10)
        assert r.model == MODEL


class TestCancellation:
    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig.from_config(load_config(env={}), ttft_s=2.0)

    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        # A token budget that refills slowly enough (10 tokens/s) to read what a call kept.
        cfg = server_config(sim)
        models = dict(cfg.models)
        models[MODEL] = dataclasses.replace(models[MODEL], tpm=600)
        return dataclasses.replace(cfg, models=models)

    async def test_cancelled_call_releases_its_slot_and_keeps_what_the_provider_counted(
        self, stub: pb_grpc.TranslatorStub, server: RunningServer, sim: Sim
    ) -> None:
        budget = server.engine.governor.budgets[MODEL]
        lane = server.engine.lanes["slow"]
        loop = asyncio.get_running_loop()
        start = budget.snapshot(loop.time())["token_level"]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Translate(pb.TranslateRequest(segments=["word " * 200], target_language="zh"), timeout=0.3)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await eventually(lambda: lane.in_flight == 0, 1.0, "the slot back at once")
        # The provider counted the call on arrival, so the reservation stands: not refunded, not doubled.
        admitted_tokens = (await sim.stats())["models"][MODEL]["admitted_tokens"]
        spent = start - budget.snapshot(loop.time())["token_level"]
        reserved = server.engine.estimators[MODEL].estimate(count_tokens("word " * 200))
        assert admitted_tokens <= reserved
        assert reserved - 10 <= spent <= reserved


class TestQueuedCancellation:
    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig.from_config(load_config(env={}), ttft_s=1.0)

    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return with_lanes(server_config(sim), "slow", max_concurrency=1)

    async def occupy(self, stub: pb_grpc.TranslatorStub, lane: Lane) -> asyncio.Future[pb.TranslateResponse]:
        """A 1 s call holding the lane's one slot."""
        first = asyncio.ensure_future(
            stub.Translate(pb.TranslateRequest(segments=["first"], target_language="zh"), timeout=10)
        )
        await eventually(lambda: lane.in_flight == 1, 2.0, "the first call holding the lane's slot")
        return first

    async def test_cancelled_while_queued_is_refunded_and_never_sent(
        self, stub: pb_grpc.TranslatorStub, server: RunningServer, sim: Sim
    ) -> None:
        lane = server.engine.lanes["slow"]
        first = await self.occupy(stub, lane)
        second = stub.Translate(pb.TranslateRequest(segments=["second"], target_language="zh"), timeout=10)
        await eventually(lambda: lane.queued == 1, 2.0, "the second call queued")
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        # It left the queue when its caller did.
        await eventually(lambda: lane.queued == 0, 2.0, "the cancelled call out of the queue")
        await first
        stats = (await sim.stats())["models"][MODEL]
        assert stats["admitted"] == 1  # the provider never saw the second call
        assert lane.in_flight == 0

    async def test_a_queued_call_that_cannot_start_in_time_is_refused_before_the_deadline(
        self, stub: pb_grpc.TranslatorStub, server: RunningServer, sim: Sim
    ) -> None:
        lane = server.engine.lanes["slow"]
        first = await self.occupy(stub, lane)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Translate(pb.TranslateRequest(segments=["second"], target_language="zh"), timeout=0.3)
        # Refused by the service with a retry hint, not left to time out.
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert lane.queued == 0 and lane.expired == 1
        await first
        stats = (await sim.stats())["models"][MODEL]
        assert stats["admitted"] == 1  # the provider never saw the second call
