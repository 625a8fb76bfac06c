"""The provider's batch route: a job's line whose window allows it goes to its model's Ark Batch Chat route (a lane
of its own, its daily quota) at the batch price; a short window goes online; a spent quota (ours, or the provider's
429 QuotaExceeded) sends lines online or holds them for the next day, as configured; config errors name the field.
Real server, real jobs, the simulated provider (batch latency scaled down)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import tomllib
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.longrunning import operations_pb2 as lro
from google.longrunning import operations_pb2_grpc as lro_grpc
from google.protobuf import duration_pb2
from translane.batch_route import DailyQuota
from translane.budget import Budgets
from translane.config import Config, ConfigError, default_models_text, load_config, parse_config
from translane.governor import Reservation
from translane.sim import SimConfig
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..conftest import Sim, server_config

CHAT = "doubao-seed-1-6-flash-250828"
TR = "doubao-seed-translation-250915"


def with_batch(cfg: Config, **changes: Any) -> Config:
    """`cfg` with CHAT given an Ark Batch Chat route (and `changes` to its settings)."""
    model = dataclasses.replace(cfg.models[CHAT], batch_api="ark-batch-chat", **changes)
    return dataclasses.replace(cfg, models={**cfg.models, CHAT: model})


@pytest.fixture
def sim_config() -> SimConfig:
    # Echo answers; Ark's minutes of batch latency scaled down to 50 ms.
    return SimConfig.from_config(load_config(env={}), pseudo_translate=0.0, batch_latency_s=0.05)


@pytest.fixture
def ops(channel: grpc.aio.Channel) -> lro_grpc.OperationsStub:
    return lro_grpc.OperationsStub(channel)


def _timeout(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(timedelta(seconds=seconds))
    return out


async def _run(
    stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, n: int, window: str, wait_s: float = 20.0
) -> tuple[pb.BatchTranslateMetadata, list[pb.BatchTranslateResponse.Result]]:
    """A job of `n` lines on CHAT with `window`, waited for: its metadata and results."""
    requests = [pb.TranslateRequest(segments=[f"line {i}"], target_language="zh", model=CHAT) for i in range(n)]
    op = await stub.BatchTranslate(pb.BatchTranslateRequest(requests=requests, completion_window=window))
    done = await ops.WaitOperation(lro.WaitOperationRequest(name=op.name, timeout=_timeout(wait_s)))
    assert done.done, "the job did not end in time"
    meta, answer = pb.BatchTranslateMetadata(), pb.BatchTranslateResponse()
    assert done.metadata.Unpack(meta) and done.response.Unpack(answer), done
    return meta, list(answer.results)


def _calls(stats: dict[str, Any]) -> tuple[int, int]:
    """Answered calls of CHAT: (online, batch route)."""
    return stats["models"][CHAT]["requests"], stats["batch"][CHAT]["requests"]


def _online_cost(cfg: Config, results: list[pb.BatchTranslateResponse.Result]) -> float:
    model = cfg.models[CHAT]
    return sum(model.cost(r.response.usage.prompt_tokens, r.response.usage.completion_tokens) for r in results)


class TestBatchRoute:
    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return with_batch(server_config(sim), batch_min_window_s=3600.0)

    async def test_a_long_window_goes_to_the_batch_route_at_half_the_price(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim, config: Config
    ) -> None:
        meta, results = await _run(stub, ops, 6, "24h")
        assert (meta.done, meta.failed) == (6, 0)
        assert [r.response.translations[0].text for r in results] == [
            f"[sim auto->Simplified Chinese] line {i}" for i in range(6)
        ]
        assert _calls(await sim.stats()) == (0, 6)
        # Each line and the job are charged at the batch price: half of what the same tokens cost online.
        for r in results:
            usage = r.response.usage
            online = config.models[CHAT].cost(usage.prompt_tokens, usage.completion_tokens)
            assert usage.cost == pytest.approx(online * 0.5, rel=1e-6) and usage.cost > 0
        assert meta.usage.cost == pytest.approx(_online_cost(config, results) * 0.5, rel=1e-6)

    async def test_a_short_window_goes_online_at_the_online_price(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim, config: Config
    ) -> None:
        meta, results = await _run(stub, ops, 4, "30m")
        assert (meta.done, meta.failed) == (4, 0)
        assert _calls(await sim.stats()) == (4, 0)
        assert meta.usage.cost == pytest.approx(_online_cost(config, results), rel=1e-6)

    async def test_interactive_translate_never_takes_the_batch_route(
        self, stub: pb_grpc.TranslatorStub, sim: Sim
    ) -> None:
        got = await stub.Translate(pb.TranslateRequest(segments=["Hello"], target_language="zh", model=CHAT))
        assert got.translations[0].text == "[sim auto->Simplified Chinese] Hello"
        assert _calls(await sim.stats()) == (1, 0)


class TestRouteKeptBusy:
    """A job may have its lines in flight on the batch route beyond its own online bound (a batch answer takes
    minutes: at max_concurrency_per_job lines at once, a route would take days over a large job)."""

    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        cfg = with_batch(server_config(sim), batch_min_window_s=3600.0, batch_max_concurrency=30)
        return dataclasses.replace(cfg, jobs=dataclasses.replace(cfg.jobs, max_concurrency_per_job=2))

    async def test_a_long_window_has_the_routes_concurrency_on_top_of_the_jobs_bound(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim
    ) -> None:
        await sim.set(batch_latency_s=0.5)
        meta, _ = await _run(stub, ops, 40, "24h")
        assert (meta.done, meta.failed) == (40, 0)
        # 2 + 30 lines at once on the route: its own bound, not the job's 2.
        assert (await sim.stats())["batch"][CHAT]["max_in_flight"] == 30

    async def test_a_short_window_keeps_the_jobs_bound(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim
    ) -> None:
        await sim.set(ttft_s=0.2)
        meta, _ = await _run(stub, ops, 8, "30m")
        assert (meta.done, meta.failed) == (8, 0)
        assert (await sim.stats())["models"][CHAT]["max_in_flight"] == 2


class TestOurQuotaSpent:
    """batch_tpd holds about two lines' tokens: the rest of the job goes online."""

    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return with_batch(server_config(sim), batch_min_window_s=60.0, batch_tpd=150)

    async def test_lines_past_the_quota_go_online(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim, config: Config
    ) -> None:
        meta, results = await _run(stub, ops, 8, "1h")
        assert (meta.done, meta.failed) == (8, 0)
        online, batch = _calls(await sim.stats())
        assert online + batch == 8 and online >= 1 and batch >= 1, (online, batch)
        # What went batch paid half: the job's cost lies strictly between all-batch and all-online.
        full = _online_cost(config, results)
        assert full * 0.5 < meta.usage.cost < full


class TestProviderQuotaSpent:
    """The provider's batch quota is smaller than one call: every batch call is 429 QuotaExceeded."""

    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig.from_config(load_config(env={}), pseudo_translate=0.0, batch_latency_s=0.05, batch_tpd=1)

    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return with_batch(server_config(sim), batch_min_window_s=60.0)

    async def test_the_route_closes_and_the_lines_go_online(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim, config: Config
    ) -> None:
        meta, results = await _run(stub, ops, 5, "1h")
        assert (meta.done, meta.failed) == (5, 0)
        stats = await sim.stats()
        assert _calls(stats) == (5, 0)
        assert stats["batch"][CHAT]["quota_rejected"] >= 1
        # Paid online, at the online price.
        assert meta.usage.cost == pytest.approx(_online_cost(config, results), rel=1e-6)
        # The online model stayed in rotation: a spent batch quota is not the account's spending limit.
        got = await stub.Translate(pb.TranslateRequest(segments=["Hi"], target_language="zh", model=CHAT))
        assert got.model == CHAT


class TestProviderQuotaSpentWait:
    """batch_when_spent = "wait": the provider's day is 1.5 s and its quota about two lines; lines turned away
    wait for its next day on the batch route, none goes online."""

    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig.from_config(
            load_config(env={}), pseudo_translate=0.0, batch_latency_s=0.05, batch_tpd=150, batch_day_s=1.5
        )

    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return with_batch(server_config(sim), batch_min_window_s=60.0, batch_when_spent="wait")

    async def test_lines_wait_for_the_next_day_of_the_route(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim
    ) -> None:
        meta, _ = await _run(stub, ops, 4, "1h", wait_s=30.0)
        assert (meta.done, meta.failed) == (4, 0)
        stats = await sim.stats()
        assert _calls(stats) == (0, 4)
        assert stats["batch"][CHAT]["quota_rejected"] >= 1


# The quota as a lane's gate, on clocks the test owns.


def test_the_daily_quota_reserves_settles_and_turns_with_the_day() -> None:
    wall = [1_700_000_000.0]
    cfg = with_batch(load_config(env={}), batch_tpd=100)
    budgets = Budgets(cfg.models, "UTC", wall=lambda: wall[0])
    quota = DailyQuota({CHAT: cfg.models[CHAT]}, budgets)
    first = quota.try_reserve(CHAT, 60, 0.0)
    assert isinstance(first, Reservation)
    # 60 of 100 reserved: 50 more must wait for the next day.
    wait = quota.try_reserve(CHAT, 50, 0.0)
    assert isinstance(wait, float) and wait == pytest.approx(budgets.seconds_to_next_day())
    quota.settle(first, 30, 0.0)  # used less than reserved: the rest comes back
    assert quota.left(CHAT) == 70
    assert isinstance(quota.try_reserve(CHAT, 50, 0.0), Reservation)
    wall[0] += 86_400.0
    assert quota.left(CHAT) == 100
    # The provider says the route is spent for 5 s: closed that long, whatever is left.
    quota.close(CHAT, 5.0, 10.0)
    assert quota.try_reserve(CHAT, 1, 12.0) == pytest.approx(3.0)
    assert isinstance(quota.try_reserve(CHAT, 1, 15.0), Reservation)


# Config


def _shipped() -> dict[str, Any]:
    return tomllib.loads(default_models_text())


@pytest.mark.parametrize(
    ("model", "changes", "field", "says"),
    [
        (TR, {"batch_api": "ark-batch-chat"}, f"models.{TR}.batch_api", "chat completions only"),
        (CHAT, {"batch_api": "openai-files"}, "batch_api", "ark-batch-chat"),
        (CHAT, {"batch_tpd": 1000}, f"models.{CHAT}.batch_tpd", "batch_api"),
        (CHAT, {"batch_api": "ark-batch-chat", "batch_url": "ark.example/api/v3"}, "batch_url", "http"),
        (CHAT, {"batch_api": "ark-batch-chat", "batch_price_factor": 0}, "batch_price_factor", "> 0"),
        (CHAT, {"batch_api": "ark-batch-chat", "batch_when_spent": "later"}, "batch_when_spent", "wait"),
    ],
)
def test_a_bad_batch_route_is_a_config_error_naming_the_field(
    model: str, changes: dict[str, Any], field: str, says: str
) -> None:
    data = _shipped()
    data["models"][model].update(changes)
    with pytest.raises(ConfigError) as err:
        parse_config(data, {})
    assert field in str(err.value) and says in str(err.value), str(err.value)


def test_the_shipped_batch_route_follows_the_upstream_url() -> None:
    data = _shipped()
    data["models"][CHAT].update(batch_api="ark-batch-chat", batch_url="https://ark-batch.example/api/v3")
    assert parse_config(data, {}).models[CHAT].batch_url == "https://ark-batch.example/api/v3"
    moved = parse_config(data, {"TRANSLANE_UPSTREAM_URL": "http://127.0.0.1:9/api/v3"})
    assert moved.models[CHAT].batch_url == ""  # so it goes where the provider's base_url now points
    assert not math.isnan(moved.models[CHAT].batch_price_factor)


async def test_metrics_tell_the_batch_route_apart(sim: Sim) -> None:
    from translane.engine import Engine, Job

    cfg = with_batch(server_config(sim), batch_min_window_s=60.0)
    async with Engine.open(cfg) as engine:
        loop = asyncio.get_running_loop()
        now = loop.time()
        job = Job(("Hello",), "zh", CHAT, now + 30, completion_window_s=3600.0, window_end=now + 3600.0)
        result = await engine.translate(job)
        assert result.texts == ["[sim auto->Simplified Chinese] Hello"]
        text = "\n".join(f"{s.name} {s.labels} {s.value}" for m in engine.metrics.registry.collect() for s in m.samples)
        assert f"translane_batch_route_calls_total {{'model': '{CHAT}', 'outcome': 'ok'}} 1.0" in text
        assert f"'lane': 'batch/{CHAT}'" in text
    assert _calls(await sim.stats()) == (0, 1)


class TestBatchEndpoint:
    """Ark names the batch route by its batch inference endpoint's id, not the model's: batch_upstream_model."""

    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return with_batch(server_config(sim), batch_min_window_s=60.0, batch_upstream_model="deepseek-v3-2-251201")

    async def test_the_batch_route_sends_its_own_model_id(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim
    ) -> None:
        meta, _ = await _run(stub, ops, 2, "1h")
        assert (meta.done, meta.failed) == (2, 0)
        stats = await sim.stats()
        assert stats["batch"]["deepseek-v3-2-251201"]["requests"] == 2 and _calls(stats) == (0, 0)
