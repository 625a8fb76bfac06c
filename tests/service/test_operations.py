"""BatchTranslate and google.longrunning.Operations on a real server, with the simulated provider: results in
order with usage, progress in the metadata, list / cancel / delete / wait, bad lines failing alone, the bounds,
and a job that survives its server being SIGKILLed."""

from __future__ import annotations

import dataclasses
import signal
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.longrunning import operations_pb2 as lro
from google.longrunning import operations_pb2_grpc as lro_grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from translane.config import Config
from translane.jobs import CANCELLED, SUCCEEDED, open_store
from translane.rpc.operations import MAX_BATCH_REQUESTS
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..conftest import Sim, server_config
from ..helpers.eventually import eventually
from ..helpers.processes import clean_env, free_port, translane


@pytest.fixture
def ops(channel: grpc.aio.Channel) -> lro_grpc.OperationsStub:
    return lro_grpc.OperationsStub(channel)


def _requests(n: int, task_id: str = "") -> list[pb.TranslateRequest]:
    return [pb.TranslateRequest(segments=[f"line {i}"], target_language="zh", task_id=task_id) for i in range(n)]


def _metadata(op: lro.Operation) -> pb.BatchTranslateMetadata:
    meta = pb.BatchTranslateMetadata()
    assert op.metadata.Unpack(meta)
    return meta


def _response(op: lro.Operation) -> pb.BatchTranslateResponse:
    assert op.done and op.WhichOneof("result") == "response", op
    answer = pb.BatchTranslateResponse()
    assert op.response.Unpack(answer)
    return answer


def _timeout(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(timedelta(seconds=seconds))
    return out


async def test_a_job_answers_every_request_in_order_with_its_usage(
    stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim
) -> None:
    op = await stub.BatchTranslate(
        pb.BatchTranslateRequest(requests=_requests(20, task_id="t"), completion_window="1h", labels={"team": "docs"})
    )
    assert op.name.startswith("operations/")
    meta = _metadata(op)
    assert meta.total == 20 and meta.completion_window == "1h" and meta.priority == pb.PRIORITY_BATCH
    assert dict(meta.labels) == {"team": "docs"}

    done = await ops.WaitOperation(lro.WaitOperationRequest(name=op.name, timeout=_timeout(20)))
    results = _response(done).results
    assert [r.index for r in results] == list(range(20))
    assert [r.response.translations[0].text for r in results] == [f"[sim auto->zh] line {i}" for i in range(20)]
    assert all(r.response.usage.total_tokens > 0 and r.response.task_id == "t" for r in results)
    meta = _metadata(done)
    assert meta.state == pb.BatchTranslateMetadata.SUCCEEDED
    assert (meta.done, meta.failed, meta.total) == (20, 0, 20)
    assert meta.usage.prompt_tokens == sum(r.response.usage.prompt_tokens for r in results)
    assert meta.usage.cost == pytest.approx(sum(r.response.usage.cost for r in results))
    assert meta.end_time.seconds >= meta.create_time.seconds > 0
    # One provider call a line, and GetOperation answers the same.
    assert sum(m["admitted"] for m in (await sim.stats())["models"].values()) == 20
    assert _response(await ops.GetOperation(lro.GetOperationRequest(name=op.name))) == _response(done)


class TestProgress:
    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        cfg = server_config(sim)
        return dataclasses.replace(cfg, jobs=dataclasses.replace(cfg.jobs, max_concurrency_per_job=1))

    async def test_the_metadata_counts_lines_as_they_are_answered(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim
    ) -> None:
        await sim.set(ttft_s=0.1)
        op = await stub.BatchTranslate(pb.BatchTranslateRequest(requests=_requests(6)))

        async def partly() -> pb.BatchTranslateMetadata | None:
            got = await ops.GetOperation(lro.GetOperationRequest(name=op.name))
            meta = _metadata(got)
            return meta if 0 < meta.done < meta.total and not got.done else None

        meta = await eventually(partly, 10.0, "a job part done")
        assert meta.state == pb.BatchTranslateMetadata.RUNNING and meta.usage.total_tokens > 0
        done = await ops.WaitOperation(lro.WaitOperationRequest(name=op.name, timeout=_timeout(20)))
        assert _metadata(done).done == 6

    async def test_a_cancelled_job_keeps_the_lines_answered_before_it_stopped(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim
    ) -> None:
        await sim.set(ttft_s=0.1)
        op = await stub.BatchTranslate(pb.BatchTranslateRequest(requests=_requests(30)))

        async def partly() -> bool:
            return _metadata(await ops.GetOperation(lro.GetOperationRequest(name=op.name))).done >= 2

        await eventually(partly, 10.0, "two lines answered")
        await ops.CancelOperation(lro.CancelOperationRequest(name=op.name))
        got = await ops.GetOperation(lro.GetOperationRequest(name=op.name))
        assert got.done and got.error.code == code_pb2.CANCELLED
        meta = _metadata(got)
        [detail] = got.error.details
        kept = pb.BatchTranslateResponse()
        assert detail.Unpack(kept)
        # One line at a time, in order: the answered lines are the first ones, each with its translation.
        assert 2 <= meta.done < 30 and [r.index for r in kept.results] == list(range(meta.done))
        assert all(r.response.translations[0].text == f"[sim auto->zh] line {r.index}" for r in kept.results)
        # Listing shows no results (GetOperation has them).
        listed = await ops.ListOperations(lro.ListOperationsRequest())
        assert [o.error.details for o in listed.operations if o.name == op.name] == [[]]

    async def test_wait_returns_the_running_job_when_its_timeout_passes(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim
    ) -> None:
        await sim.set(ttft_s=5.0)
        op = await stub.BatchTranslate(pb.BatchTranslateRequest(requests=_requests(2)))
        waited = await ops.WaitOperation(lro.WaitOperationRequest(name=op.name, timeout=_timeout(0.2)), timeout=3.0)
        assert not waited.done and _metadata(waited).state == pb.BatchTranslateMetadata.RUNNING
        # The caller's deadline bounds it too: the state comes back before it, not DEADLINE_EXCEEDED.
        waited = await ops.WaitOperation(lro.WaitOperationRequest(name=op.name), timeout=1.0)
        assert not waited.done

    async def test_cancel_stops_the_job_and_delete_forgets_it(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub, sim: Sim
    ) -> None:
        # Long enough that no line is answered before the cancel; short, because the sim's calls cut off by the
        # cancel still run to their end before the fixture's sim can stop.
        await sim.set(ttft_s=5.0)
        op = await stub.BatchTranslate(pb.BatchTranslateRequest(requests=_requests(3)))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ops.DeleteOperation(lro.DeleteOperationRequest(name=op.name))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "cancel it first" in (refused.value.details() or "")

        await ops.CancelOperation(lro.CancelOperationRequest(name=op.name))
        got = await ops.GetOperation(lro.GetOperationRequest(name=op.name))
        assert got.done and got.error.code == code_pb2.CANCELLED
        meta = _metadata(got)
        assert meta.state == pb.BatchTranslateMetadata.CANCELLED and meta.done == 0 and meta.end_time.seconds > 0
        # Cancelling again changes nothing.
        await ops.CancelOperation(lro.CancelOperationRequest(name=op.name))

        await ops.DeleteOperation(lro.DeleteOperationRequest(name=op.name))
        for call in (
            ops.GetOperation(lro.GetOperationRequest(name=op.name)),
            ops.DeleteOperation(lro.DeleteOperationRequest(name=op.name)),
            ops.CancelOperation(lro.CancelOperationRequest(name=op.name)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as gone:
                await call
            assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_pages_through_every_job(stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub) -> None:
    names = [(await stub.BatchTranslate(pb.BatchTranslateRequest(requests=_requests(1)))).name for _ in range(3)]
    first = await ops.ListOperations(lro.ListOperationsRequest(page_size=2))
    assert [o.name for o in first.operations] == names[:2] and first.next_page_token
    second = await ops.ListOperations(lro.ListOperationsRequest(page_size=2, page_token=first.next_page_token))
    assert [o.name for o in second.operations] == names[2:] and not second.next_page_token
    assert all(_metadata(o).total == 1 for o in [*first.operations, *second.operations])
    for bad in (
        lro.ListOperationsRequest(filter="done=true"),
        lro.ListOperationsRequest(page_token="not-a-token"),
        lro.ListOperationsRequest(page_size=-1),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ops.ListOperations(bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_bad_lines_fail_alone_naming_the_field(
    stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub
) -> None:
    requests = _requests(4)
    requests[1].target_language = ""
    requests[2].model = "no-such-model"
    op = await stub.BatchTranslate(pb.BatchTranslateRequest(requests=requests))
    done = await ops.WaitOperation(lro.WaitOperationRequest(name=op.name, timeout=_timeout(20)))
    results = _response(done).results
    assert [r.WhichOneof("result") for r in results] == ["response", "error", "error", "response"]
    assert results[1].error.code == code_pb2.INVALID_ARGUMENT
    assert results[1].error.message.startswith("requests[1].target_language: required")
    assert results[2].error.code == code_pb2.INVALID_ARGUMENT
    assert results[2].error.message.startswith("requests[2].model: unknown model")
    meta = _metadata(done)
    assert (meta.state, meta.done, meta.failed) == (pb.BatchTranslateMetadata.SUCCEEDED, 2, 2)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.BatchTranslateRequest(), "requests: at least one"),
        (pb.BatchTranslateRequest(requests=_requests(1), completion_window="soon"), "completion_window: 'soon'"),
        (pb.BatchTranslateRequest(requests=_requests(1), completion_window="30d"), "completion_window: '30d'"),
        (pb.BatchTranslateRequest(requests=_requests(1), priority=7), "priority: unknown value 7"),  # type: ignore[arg-type]
    ],
)
async def test_a_bad_job_is_refused_naming_the_field(
    stub: pb_grpc.TranslatorStub, request_: pb.BatchTranslateRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.BatchTranslate(request_)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith(field)


async def test_a_job_past_the_request_bound_is_refused(stub: pb_grpc.TranslatorStub) -> None:
    one = pb.TranslateRequest(segments=["x"], target_language="zh")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.BatchTranslate(pb.BatchTranslateRequest(requests=[one] * (MAX_BATCH_REQUESTS + 1)))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == f"requests: {MAX_BATCH_REQUESTS + 1} requests, over the limit of 50000 a job"


async def test_operations_are_served_with_health_and_reflection(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    resp = await health.Check(health_pb2.HealthCheckRequest(service="google.longrunning.Operations"), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING

    async def asks() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        yield reflection_pb2.ServerReflectionRequest(file_containing_symbol="google.longrunning.Operations")
        yield reflection_pb2.ServerReflectionRequest(file_containing_symbol="translane.v1.BatchTranslateMetadata")

    answers = [a async for a in reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(asks())]
    assert "google.longrunning.Operations" in [s.name for s in answers[0].list_services_response.service]
    # A client that reflects (grpcurl) finds both files, so it can decode an Operation and its metadata.
    assert all(a.file_descriptor_response.file_descriptor_proto for a in answers[1:])


# --- durability: a job outlives its server process ---------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def served(sim: Sim, data_dir: Path) -> tuple[int, dict[str, str], list[str]]:
    """How to start `translane serve` on `sim` with its files in `data_dir` (the port, env and arguments)."""
    port = free_port()
    env = clean_env(TRANSLANE_CACHE="sqlite", TRANSLANE_DATA_DIR=str(data_dir))
    return port, env, ["serve", "--port", str(port), "--upstream-url", sim.url]


def _line_states(data_dir: Path) -> dict[str, int]:
    with sqlite3.connect(data_dir / "jobs.sqlite3") as db:
        return {str(s): int(n) for s, n in db.execute("SELECT state, count(*) FROM lines GROUP BY state")}


async def _admitted(sim: Sim) -> int:
    return sum(int(m["admitted"]) for m in (await sim.stats())["models"].values())


async def test_a_job_survives_its_server_being_killed(
    sim: Sim, served: tuple[int, dict[str, str], list[str]], data_dir: Path, tmp_path: Path
) -> None:
    port, env, args = served
    lines = 200
    # Slow enough that the kill lands mid-job; no_cache, so every line run is a provider call to count.
    await sim.set(ttft_s=0.1)
    requests = [pb.TranslateRequest(segments=[f"line {i}"], target_language="zh", no_cache=True) for i in range(lines)]
    with translane(args, port, tmp_path / "serve1.log", env) as first:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            op = await pb_grpc.TranslatorStub(ch).BatchTranslate(pb.BatchTranslateRequest(requests=requests))
            ops = lro_grpc.OperationsStub(ch)

            async def some_done() -> bool:
                meta = _metadata(await ops.GetOperation(lro.GetOperationRequest(name=op.name)))
                return meta.done >= 10

            await eventually(some_done, 20.0, "10 lines answered before the kill")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    states = _line_states(data_dir)
    done_before, running_before = states.get("done", 0), states.get("running", 0)
    assert 10 <= done_before < lines, states
    asked_before = await _admitted(sim)
    # Every call sent was for a line claimed (committed running) first; done lines are recorded, the rest may be lost.
    assert asked_before <= done_before + running_before

    with translane(args, port, tmp_path / "serve2.log", env):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            done = await lro_grpc.OperationsStub(ch).WaitOperation(
                lro.WaitOperationRequest(name=op.name, timeout=_timeout(30)), timeout=40
            )
    results = _response(done).results
    assert [r.index for r in results] == list(range(lines))
    assert [r.response.translations[0].text for r in results] == [f"[sim auto->zh] line {i}" for i in range(lines)]
    assert _metadata(done).done == lines
    # The restart asked the provider for exactly the lines not recorded done: none twice that was done.
    assert await _admitted(sim) - asked_before == lines - done_before


# --- expiry: an ended job is forgotten keep_s after it ended -------------------------------------------------------


class TestExpiry:
    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        cfg = server_config(sim)
        return dataclasses.replace(cfg, jobs=dataclasses.replace(cfg.jobs, keep_s=1.0))

    async def test_an_ended_job_is_not_found_once_its_keep_passes(
        self, stub: pb_grpc.TranslatorStub, ops: lro_grpc.OperationsStub
    ) -> None:
        op = await stub.BatchTranslate(pb.BatchTranslateRequest(requests=_requests(2)))
        done = await ops.WaitOperation(lro.WaitOperationRequest(name=op.name, timeout=_timeout(20)))
        assert len(_response(done).results) == 2

        async def expired() -> grpc.aio.AioRpcError | None:
            try:
                await ops.GetOperation(lro.GetOperationRequest(name=op.name))
            except grpc.aio.AioRpcError as exc:
                return exc
            return None

        gone = await eventually(expired, 5.0, "the ended job forgotten")
        assert gone.code() == grpc.StatusCode.NOT_FOUND
        assert (gone.details() or "").endswith(": it expired (ended jobs are kept 1s) or never existed")
        assert (gone.details() or "").startswith("name: no operation 'operations/")
        assert not (await ops.ListOperations(lro.ListOperationsRequest())).operations


async def test_the_sweep_deletes_only_jobs_ended_longer_ago_than_the_keep(tmp_path: Path) -> None:
    now = [1000.0]
    async with open_store(str(tmp_path / "jobs.sqlite3"), keep_s=60.0) as store:
        store.wall = lambda: now[0]
        for job_id in ("old", "recent", "running"):
            await store.create(job_id, b"", 60.0, [b"r0", b"r1"], now[0])
        await store.end("old", SUCCEEDED, 1000.0)
        await store.end("recent", CANCELLED, 1050.0)
        now[0] = 1080.0
        assert await store.get("old") is None and [r.id for r in await store.page(0, 10)] == ["recent", "running"]
        assert await store.sweep() == 1
        assert await store.line_states("old") == {} and await store.line_states("recent") == {"pending": 2}
        now[0] = 10**9
        assert await store.sweep() == 1 and [r.id for r in await store.page(0, 10)] == ["running"]


async def test_an_unknown_operation_is_named_whole_in_its_not_found(ops: lro_grpc.OperationsStub) -> None:
    name = "operations/" + "0123456789abcdef" * 2  # as long as the ids the service gives
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await ops.GetOperation(lro.GetOperationRequest(name=name))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    assert f"no operation {name!r}: it expired" in (gone.value.details() or "")
