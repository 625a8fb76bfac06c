"""The provider's batch route over OpenAI's Batch API (`batch_api = "openai-batch"`): a job's lines gathered into
upstream files and batches on the simulated provider (its compressed clock short), each line answered by its
custom_id at the batch price; a batch that expires or fails sends its lines online or fails them, as configured; a
cancelled job cancels its upstream batch. Real server, real jobs, the simulated provider over loopback HTTP."""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.longrunning import operations_pb2 as lro
from google.longrunning import operations_pb2_grpc as lro_grpc
from google.protobuf import duration_pb2
from translane.config import Config, ConfigError, default_models_text, load_config, parse_config
from translane.sim import SimConfig
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..conftest import Sim, server_config
from ..helpers.eventually import eventually

CHAT = "doubao-seed-1-6-flash-250828"
TR = "doubao-seed-translation-250915"


def with_openai_batch(cfg: Config, sim: Sim, **changes: Any) -> Config:
    """`cfg` with CHAT given an openai-batch route on the simulator's /v1, gathering for 0.3 s and polling every
    20 ms to 100 ms, and jobs that run all their lines at once (a batch route wants them all in flight)."""
    settings: dict[str, Any] = {
        "batch_api": "openai-batch",
        "batch_url": f"{sim.root}/v1",
        "batch_min_window_s": 3600.0,
        "batch_gather_s": 0.3,
        "batch_poll_min_s": 0.02,
        "batch_poll_max_s": 0.1,
        **changes,
    }
    model = dataclasses.replace(cfg.models[CHAT], **settings)
    jobs = dataclasses.replace(cfg.jobs, max_concurrency_per_job=200)
    return dataclasses.replace(cfg, models={**cfg.models, CHAT: model}, jobs=jobs)


@pytest.fixture
def sim_config() -> SimConfig:
    # Echo answers; OpenAI's 24h window compressed to 0.24 s, a batch done in 10 ms.
    return SimConfig.from_config(load_config(env={}), pseudo_translate=0.0, batch_hour_s=0.01, batch_job_hours=1.0)


@pytest.fixture
def ops(channel: grpc.aio.Channel) -> lro_grpc.OperationsStub:
    return lro_grpc.OperationsStub(channel)


def _timeout(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(timedelta(seconds=seconds))
    return out


async def _submit(stub: pb_grpc.TranslatorStub, n: int, window: str = "24h") -> str:
    requests = [pb.TranslateRequest(segments=[f"line {i}"], target_language="zh", model=CHAT) for i in range(n)]
    op = await stub.BatchTranslate(pb.BatchTranslateRequest(requests=requests, completion_window=window))
    return op.name


async def _run(
    stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, n: int, window: str = "24h", wait_s: float = 20.0
) -> tuple[pb.BatchTranslateMetadata, list[pb.BatchResult]]:
    """A job of `n` lines on CHAT, waited for: its metadata and results."""
    name = await _submit(stub, n, window)
    done = await ops.WaitOperation(lro.WaitOperationRequest(name=name, timeout=_timeout(wait_s)))
    assert done.done, "the job did not end in time"
    meta, answer = pb.BatchTranslateMetadata(), pb.BatchTranslateResponse()
    assert done.metadata.Unpack(meta) and done.response.Unpack(answer), done
    return meta, list(answer.results)


def _online_cost(cfg: Config, results: list[pb.BatchResult]) -> float:
    model = cfg.models[CHAT]
    return sum(model.cost(r.response.usage.prompt_tokens, r.response.usage.completion_tokens) for r in results)


def _texts(results: list[pb.BatchResult]) -> list[str]:
    return [r.response.translations[0].text for r in results]


def _echo(n: int) -> list[str]:
    return [f"[sim auto->Simplified Chinese] line {i}" for i in range(n)]


class TestOpenAIBatchRoute:
    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return with_openai_batch(server_config(sim), sim)

    async def test_a_job_goes_up_as_one_file_and_batch_at_half_the_price(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim, config: Config
    ) -> None:
        meta, results = await _run(stub, ops, 12)
        assert (meta.done, meta.failed) == (12, 0)
        # Each line's answer is its own (resolved by custom_id), in the job's order.
        assert _texts(results) == _echo(12)
        stats = await sim.stats()
        batches = stats["openai_batch"]
        assert batches["uploads"] == 1 and batches["batches"] == {"completed": 1}
        assert batches["models"][CHAT]["requests"] == 12
        # The input and result files were deleted once read; nothing went online.
        assert batches["files"] == 0
        assert stats["models"][CHAT]["requests"] == 0
        for r in results:
            usage = r.response.usage
            online = config.models[CHAT].cost(usage.prompt_tokens, usage.completion_tokens)
            assert usage.cost == pytest.approx(online * 0.5, rel=1e-6) and usage.cost > 0
        assert meta.usage.cost == pytest.approx(_online_cost(config, results) * 0.5, rel=1e-6)
        # The usage the batch reported is the usage the job counted.
        assert meta.usage.prompt_tokens == batches["models"][CHAT]["prompt_tokens"]

    async def test_a_short_window_goes_online(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim
    ) -> None:
        meta, _ = await _run(stub, ops, 3, "30m")
        assert (meta.done, meta.failed) == (3, 0)
        stats = await sim.stats()
        assert stats["openai_batch"]["uploads"] == 0 and stats["models"][CHAT]["requests"] == 3


class TestFileLimit:
    """At most 5 lines a file: a job of 12 lines goes up as three files and three batches."""

    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return with_openai_batch(server_config(sim), sim, batch_file_max_lines=5)

    async def test_lines_past_the_limit_start_another_batch(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim
    ) -> None:
        meta, results = await _run(stub, ops, 12)
        assert (meta.done, meta.failed) == (12, 0)
        assert _texts(results) == _echo(12)
        batches = (await sim.stats())["openai_batch"]
        assert batches["uploads"] == 3 and batches["batches"] == {"completed": 3}
        assert batches["models"][CHAT]["requests"] == 12


class TestExpired:
    """The upstream batch needs 48 of its 24 hours: the lines it did not reach expire, and go online."""

    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig.from_config(load_config(env={}), pseudo_translate=0.0, batch_hour_s=0.01, batch_job_hours=48)

    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return with_openai_batch(server_config(sim), sim)

    async def test_expired_lines_go_online_at_the_online_price(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim, config: Config
    ) -> None:
        meta, results = await _run(stub, ops, 10)
        assert (meta.done, meta.failed) == (10, 0)
        assert _texts(results) == _echo(10)
        stats = await sim.stats()
        assert stats["openai_batch"]["batches"] == {"expired": 1}
        by_batch = stats["openai_batch"]["models"][CHAT]["requests"]
        online = stats["models"][CHAT]["requests"]
        assert by_batch + online == 10 and by_batch >= 1 and online >= 1, (by_batch, online)
        full = _online_cost(config, results)
        assert full * 0.5 < meta.usage.cost < full


class TestFailedFails:
    """batch_when_failed = "fail": a batch the provider fails fails its lines, saying why."""

    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig.from_config(load_config(env={}), pseudo_translate=0.0, batch_hour_s=0.01, batch_fail_rate=1.0)

    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return with_openai_batch(server_config(sim), sim, batch_when_failed="fail")

    async def test_the_lines_fail_naming_the_batch(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim
    ) -> None:
        meta, results = await _run(stub, ops, 3)
        assert (meta.done, meta.failed) == (0, 3)
        for r in results:
            assert r.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
            assert "upstream batch" in r.error.message and "failed" in r.error.message, r.error.message
            assert "sim_failed" in r.error.message
        stats = await sim.stats()
        assert stats["openai_batch"]["batches"] == {"failed": 1} and stats["models"][CHAT]["requests"] == 0


class TestFailedGoesOnline:
    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig.from_config(load_config(env={}), pseudo_translate=0.0, batch_hour_s=0.01, batch_fail_rate=1.0)

    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return with_openai_batch(server_config(sim), sim)

    async def test_the_lines_go_online(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim, config: Config
    ) -> None:
        meta, results = await _run(stub, ops, 4)
        assert (meta.done, meta.failed) == (4, 0)
        assert _texts(results) == _echo(4)
        stats = await sim.stats()
        assert stats["openai_batch"]["batches"] == {"failed": 1} and stats["models"][CHAT]["requests"] == 4
        assert meta.usage.cost == pytest.approx(_online_cost(config, results), rel=1e-6)


class TestRouteNotFound:
    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        # A batch URL where no Files API answers (404): the route fails, its lines go online.
        return with_openai_batch(server_config(sim), sim, batch_url=f"{sim.root}/no-such-api")

    async def test_the_lines_go_online(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim, config: Config
    ) -> None:
        meta, results = await _run(stub, ops, 3)
        assert (meta.done, meta.failed) == (3, 0)
        assert _texts(results) == _echo(3)
        assert (await sim.stats())["models"][CHAT]["requests"] == 3


class TestRouteNotFoundFails:
    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return with_openai_batch(server_config(sim), sim, batch_url=f"{sim.root}/no-such-api", batch_when_failed="fail")

    async def test_the_lines_fail_naming_the_route_and_its_url(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim
    ) -> None:
        meta, results = await _run(stub, ops, 2)
        assert (meta.done, meta.failed) == (0, 2)
        assert all(f"the openai-batch route at {sim.root}/no-such-api failed" in r.error.message for r in results)


class TestUnderTheUpstreamURL:
    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        # As `serve --upstream-url .../api/v3` leaves it: the route's URL is the provider's, the sim's /api/v3.
        return with_openai_batch(server_config(sim), sim, batch_url=sim.url)

    async def test_the_sim_serves_the_batch_api_there_too(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim
    ) -> None:
        meta, results = await _run(stub, ops, 3)
        assert (meta.done, meta.failed) == (3, 0) and _texts(results) == _echo(3)
        assert (await sim.stats())["openai_batch"]["batches"] == {"completed": 1}


class TestCancel:
    """A batch that takes 10 simulated hours of 0.2 s: the job is cancelled while it runs."""

    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig.from_config(load_config(env={}), pseudo_translate=0.0, batch_hour_s=0.2, batch_job_hours=10)

    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return with_openai_batch(server_config(sim), sim, batch_gather_s=0.1)

    async def test_a_cancelled_job_cancels_its_upstream_batch(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim
    ) -> None:
        name = await _submit(stub, 4)

        async def running() -> bool:
            return (await sim.stats())["openai_batch"]["batches"] == {"in_progress": 1}

        await eventually(running, 10.0, "the upstream batch running")
        await ops.CancelOperation(lro.CancelOperationRequest(name=name))

        async def cancelled() -> bool:
            return (await sim.stats())["openai_batch"]["batches"] == {"cancelled": 1}

        await eventually(cancelled, 10.0, "the upstream batch cancelled")
        done = await ops.WaitOperation(lro.WaitOperationRequest(name=name, timeout=_timeout(10.0)))
        assert done.done
        # Nothing of it ran online instead.
        assert (await sim.stats())["models"][CHAT]["requests"] == 0


# Config


def _shipped() -> dict[str, Any]:
    return tomllib.loads(default_models_text())


@pytest.mark.parametrize(
    ("model", "changes", "field", "says"),
    [
        (TR, {"batch_api": "openai-batch"}, f"models.{TR}.batch_api", "chat completions only"),
        (CHAT, {"batch_api": "openai-batches"}, "batch_api", "openai-batch"),
        (CHAT, {"batch_api": "openai-batch", "batch_file_max_lines": 50_001}, "batch_file_max_lines", "50000"),
        (CHAT, {"batch_api": "openai-batch", "batch_file_max_bytes": 0}, "batch_file_max_bytes", "> 0"),
        (CHAT, {"batch_api": "openai-batch", "batch_gather_s": 0}, "batch_gather_s", "> 0"),
        (
            CHAT,
            {"batch_api": "openai-batch", "batch_poll_min_s": 90, "batch_poll_max_s": 60},
            f"models.{CHAT}.batch_poll_min_s",
            "batch_poll_max_s",
        ),
        (CHAT, {"batch_api": "openai-batch", "batch_when_failed": "retry"}, "batch_when_failed", "fail"),
    ],
)
def test_a_bad_openai_batch_route_is_a_config_error_naming_the_field(
    model: str, changes: dict[str, Any], field: str, says: str
) -> None:
    data = _shipped()
    data["models"][model].update(changes)
    with pytest.raises(ConfigError) as err:
        parse_config(data, {})
    assert field in str(err.value) and says in str(err.value), str(err.value)
