"""Jobs shared in Redis by every replica (governor.kind = "redis"), against a real redis-server: a job submitted
to one replica is seen, waited for and cancelled from another; its lines run on both; a replica SIGKILLed
mid-job has its lines taken over, every line recorded once; an ended job expires."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from google.longrunning import operations_pb2 as lro
from google.longrunning import operations_pb2_grpc as lro_grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2
from translane.config import Config, JobsConfig, default_models_text
from translane.jobs import SUCCEEDED, JobRecord, LineResult, RedisJobStore, open_shared_jobs
from translane.server import RunningServer, running_server
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..conftest import Sim, server_config
from ..helpers.eventually import eventually
from ..helpers.processes import clean_env, free_port, translane
from ..helpers.redis_server import RedisServer


def _timeout(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(timedelta(seconds=seconds))
    return out


def _metadata(op: lro.Operation) -> pb.BatchTranslateMetadata:
    meta = pb.BatchTranslateMetadata()
    assert op.metadata.Unpack(meta)
    return meta


def _response(op: lro.Operation) -> pb.BatchTranslateResponse:
    assert op.done and op.WhichOneof("result") == "response", op
    answer = pb.BatchTranslateResponse()
    assert op.response.Unpack(answer)
    return answer


def _requests(n: int) -> list[pb.TranslateRequest]:
    return [pb.TranslateRequest(segments=[f"line {i}"], target_language="zh", no_cache=True) for i in range(n)]


async def _admitted(sim: Sim) -> int:
    return sum(int(m["admitted"]) for m in (await sim.stats())["models"].values())


def shared_config(sim: Sim, redis_server: RedisServer, prefix: str, **jobs: float) -> Config:
    cfg = server_config(sim)
    governor = dataclasses.replace(cfg.governor, kind="redis", redis_url=redis_server.url, redis_prefix=prefix)
    return dataclasses.replace(cfg, governor=governor, jobs=dataclasses.replace(cfg.jobs, **jobs))


@contextlib.asynccontextmanager
async def replicas(*configs: Config) -> AsyncIterator[list[tuple[RunningServer, grpc.aio.Channel]]]:
    async with contextlib.AsyncExitStack() as stack:
        out = []
        for cfg in configs:
            server = await stack.enter_async_context(running_server(cfg))
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))
            out.append((server, channel))
        yield out


async def test_a_job_submitted_to_one_replica_is_seen_and_waited_for_from_another(
    sim: Sim, redis_server: RedisServer
) -> None:
    cfg = shared_config(sim, redis_server, "seen", claim_idle_s=3.0)
    await sim.set(ttft_s=0.05)
    async with replicas(cfg, cfg) as [(_, a), (_, b)]:
        op = await pb_grpc.TranslatorStub(a).BatchTranslate(pb.BatchTranslateRequest(requests=_requests(40)))
        ops_b = lro_grpc.OperationsStub(b)
        assert _metadata(await ops_b.GetOperation(lro.GetOperationRequest(name=op.name))).total == 40
        listed = await ops_b.ListOperations(lro.ListOperationsRequest())
        assert [o.name for o in listed.operations] == [op.name]

        done = await ops_b.WaitOperation(lro.WaitOperationRequest(name=op.name, timeout=_timeout(20)), timeout=30)
        results = _response(done).results
        assert [r.index for r in results] == list(range(40))
        assert [r.response.translations[0].text for r in results] == [f"[sim auto->zh] line {i}" for i in range(40)]
        meta = _metadata(done)
        assert (meta.state, meta.done, meta.failed) == (pb.BatchTranslateMetadata.SUCCEEDED, 40, 0)
        assert meta.usage.prompt_tokens == sum(r.response.usage.prompt_tokens for r in results)
        # One provider call a line, however the replicas shared them.
        assert await _admitted(sim) == 40
        same = await lro_grpc.OperationsStub(a).GetOperation(lro.GetOperationRequest(name=op.name))
        assert _response(same) == _response(done)
        await ops_b.DeleteOperation(lro.DeleteOperationRequest(name=op.name))
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await lro_grpc.OperationsStub(a).GetOperation(lro.GetOperationRequest(name=op.name))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def _lines_in_redis(redis_server: RedisServer, prefix: str) -> int:
    """Entries in the jobs' stream, plus those claimed and not yet acknowledged."""
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        stream = f"{{{prefix}}}:jobs:stream"
        pending = await client.xpending(stream, "runners")
        return int(pending["pending"]) + int(await client.xlen(stream))
    finally:
        await client.aclose()


async def test_a_job_is_cancelled_from_another_replica_and_its_lines_stop_everywhere(
    sim: Sim, redis_server: RedisServer
) -> None:
    cfg = shared_config(sim, redis_server, "cancel", claim_idle_s=3.0)
    # Long enough that no line is answered before the cancel.
    await sim.set(ttft_s=3.0)
    async with replicas(cfg, cfg) as [(_, a), (_, b)]:
        op = await pb_grpc.TranslatorStub(a).BatchTranslate(pb.BatchTranslateRequest(requests=_requests(8)))

        async def sent() -> bool:
            return await _admitted(sim) > 0

        await eventually(sent, 10.0, "lines sent to the provider")
        await lro_grpc.OperationsStub(b).CancelOperation(lro.CancelOperationRequest(name=op.name))
        for ch in (a, b):
            got = await lro_grpc.OperationsStub(ch).GetOperation(lro.GetOperationRequest(name=op.name))
            assert got.done and got.error.code == code_pb2.CANCELLED
            meta = _metadata(got)
            assert meta.state == pb.BatchTranslateMetadata.CANCELLED and meta.done == 0 and meta.end_time.seconds
        waited = await lro_grpc.OperationsStub(a).WaitOperation(lro.WaitOperationRequest(name=op.name))
        assert waited.done

        # Every replica stops the job's lines within a renewal; none is recorded, none is left to run.
        async def stopped() -> bool:
            return await _lines_in_redis(redis_server, "cancel") == 0

        await eventually(stopped, 5.0, "no line of the cancelled job left in the stream")
        got = await lro_grpc.OperationsStub(b).GetOperation(lro.GetOperationRequest(name=op.name))
        assert (_metadata(got).done, _metadata(got).failed) == (0, 0)
        assert await _admitted(sim) <= 8


async def test_an_ended_job_expires_after_keep_s(sim: Sim, redis_server: RedisServer) -> None:
    cfg = shared_config(sim, redis_server, "expiry", keep_s=1.0)
    async with replicas(cfg) as [(_, a)]:
        op = await pb_grpc.TranslatorStub(a).BatchTranslate(pb.BatchTranslateRequest(requests=_requests(3)))
        ops = lro_grpc.OperationsStub(a)
        done = await ops.WaitOperation(lro.WaitOperationRequest(name=op.name, timeout=_timeout(20)), timeout=30)
        assert len(_response(done).results) == 3

        async def expired() -> grpc.aio.AioRpcError | None:
            try:
                await ops.GetOperation(lro.GetOperationRequest(name=op.name))
            except grpc.aio.AioRpcError as exc:
                return exc
            return None

        gone = await eventually(expired, 5.0, "the ended job forgotten")
        assert gone.code() == grpc.StatusCode.NOT_FOUND
        assert "it expired (ended jobs are kept 1s) or never existed" in (gone.details() or "")
        assert not (await ops.ListOperations(lro.ListOperationsRequest())).operations
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            assert not await client.keys("{expiry}:jobs:job:*") and not await client.keys("{expiry}:jobs:res:*")
        finally:
            await client.aclose()


# --- a replica SIGKILLed mid-job ----------------------------------------------------------------------------------


async def test_a_replica_killed_mid_job_has_its_lines_taken_over_each_recorded_once(
    sim: Sim, redis_server: RedisServer, tmp_path: Path
) -> None:
    lines, per_job = 300, 16
    models = tmp_path / "models.toml"
    models.write_text(default_models_text() + f"\n[jobs]\nclaim_idle_s = 1.0\nmax_concurrency_per_job = {per_job}\n")
    env = clean_env(TRANSLANE_MODELS_FILE=str(models), TRANSLANE_GOVERNOR="redis", TRANSLANE_REDIS_URL=redis_server.url)
    # A few seconds of work at 16 lines at once; no_cache, so every line run is a provider call to count.
    await sim.set(ttft_s=0.15)
    ports = free_port(), free_port()
    args = [["serve", "--port", str(p), "--upstream-url", sim.url] for p in ports]
    with (
        translane(args[0], ports[0], tmp_path / "a.log", env) as replica_a,
        translane(args[1], ports[1], tmp_path / "b.log", env),
    ):
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{ports[0]}") as a,
            grpc.aio.insecure_channel(f"127.0.0.1:{ports[1]}") as b,
        ):
            op = await pb_grpc.TranslatorStub(a).BatchTranslate(pb.BatchTranslateRequest(requests=_requests(lines)))

            async def some_done() -> bool:
                meta = _metadata(await lro_grpc.OperationsStub(b).GetOperation(lro.GetOperationRequest(name=op.name)))
                return meta.done >= 40

            await eventually(some_done, 20.0, "40 lines answered before the kill")
            replica_a.send_signal(signal.SIGKILL)
            replica_a.wait(10)
            done = await lro_grpc.OperationsStub(b).WaitOperation(
                lro.WaitOperationRequest(name=op.name, timeout=_timeout(40)), timeout=50
            )
    results = _response(done).results
    assert [r.index for r in results] == list(range(lines))
    assert [r.response.translations[0].text for r in results] == [f"[sim auto->zh] line {i}" for i in range(lines)]
    meta = _metadata(done)
    assert (meta.done, meta.failed, meta.total) == (lines, 0, lines)
    # Each line counted once in the job's usage...
    assert meta.usage.prompt_tokens == sum(r.response.usage.prompt_tokens for r in results)
    assert meta.usage.completion_tokens == sum(r.response.usage.completion_tokens for r in results)
    # ...and sent again only if it was in flight on the killed replica (at most the job's bound).
    asked = await _admitted(sim)
    assert lines <= asked <= lines + per_job, asked
    assert "took over" in (tmp_path / "b.log").read_text()


async def test_a_slow_line_is_not_taken_from_the_live_replica_running_it(sim: Sim, redis_server: RedisServer) -> None:
    # Each call outlasts claim_idle_s twice over: only the renewal of the claim keeps the other replica off it.
    cfg = shared_config(sim, redis_server, "renew", claim_idle_s=0.6)
    await sim.set(ttft_s=1.5)
    async with replicas(cfg, cfg) as [(_, a), (_, b)]:
        op = await pb_grpc.TranslatorStub(a).BatchTranslate(pb.BatchTranslateRequest(requests=_requests(4)))
        done = await lro_grpc.OperationsStub(b).WaitOperation(
            lro.WaitOperationRequest(name=op.name, timeout=_timeout(20)), timeout=30
        )
        assert _metadata(done).done == 4
        assert await _admitted(sim) == 4


async def test_a_line_two_replicas_raced_for_is_recorded_once(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        store = RedisJobStore(client, "race", keep_s=60.0)
        await store.ensure_group()
        await store.create("j", b"spec", 60.0, [b"r0", b"r1"], 1000.0, feed=1)
        [first] = await store.read("a", 10, 100)
        assert first[1:] == ("j", 0) and await store.read("a", 10, 100) == []  # the job's feed is one line
        # Replica b takes the line over (as if a had gone quiet) and both answer it.
        [taken] = await store.take_over("b", 0, 10)
        assert taken == first
        assert await store.finish(taken, LineResult(True, b"from b", 3, 4, 0.5, "CNY"), 1001.0) == 1
        assert await store.finish(first, LineResult(True, b"from a", 3, 4, 0.5, "CNY"), 1002.0) == 0
        assert await store.results("j") == [(0, True, b"from b")]
        # Recording line 0 fed line 1; recording it ends the job, its requests dropped, its keys set to expire.
        [second] = await store.read("a", 10, 100)
        assert second[1:] == ("j", 1)
        assert await store.finish(second, LineResult(False, b"status", 1, 0, 0.0, "CNY"), 1003.0) == 2
        record = await store.get("j")
        assert record is not None and (record.state, record.ended) == ("succeeded", 1003.0)
        p = record.progress
        assert (p.done, p.failed, p.prompt_tokens, p.completion_tokens, p.cost) == (1, 1, 4, 4, 0.5)
        assert await store.request("j", 1) is None and 0 < await client.pttl("{race}:jobs:job:j") <= 60_000
        pending = await client.xpending(store.stream, "runners")
        assert pending["pending"] == 0 and await client.xlen(store.stream) == 0
    finally:
        await client.aclose()


async def test_consumers_gone_are_forgotten_those_with_claims_are_not(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        store = RedisJobStore(client, "ghosts", keep_s=60.0)
        await store.ensure_group()
        await store.create("j", b"spec", 60.0, [b"r0"], 1000.0, feed=1)
        # "gone" read the line and died; "holder" took it over.
        assert len(await store.read("gone", 10, 100)) == 1
        assert len(await store.take_over("holder", 0, 10)) == 1

        async def idle() -> bool:
            return all(int(c["idle"]) > 50 for c in await client.xinfo_consumers(store.stream, "runners"))

        await eventually(idle, 5.0, "both consumers idle 50 ms")
        assert await store.forget_idle(50) == 1
        assert [c["name"] for c in await client.xinfo_consumers(store.stream, "runners")] == [b"holder"]
    finally:
        await client.aclose()


# --- many lines in flight -----------------------------------------------------------------------------------------


async def test_hundreds_of_lines_in_flight_share_the_replicas_redis_connections(redis_server: RedisServer) -> None:
    # A job whose window takes a batch route has that route's room on top of its own bound (here 10 + 290): all
    # 300 lines are in flight at once, and they start and are recorded at once, far more Redis steps at a time
    # than a connection pool of redis-py's default 100 gives (which refuses the rest: lines run again).
    lines, runs = 300, Counter[int]()
    everyone_in = asyncio.Event()

    async def run_line(record: JobRecord, index: int, request: bytes) -> LineResult:
        runs[index] += 1
        if len(runs) == lines:
            everyone_in.set()
        await everyone_in.wait()
        return LineResult(True, request, 1, 1, 0.0, "CNY")

    config = JobsConfig(max_concurrency_per_job=10, max_lines_per_replica=10, claim_idle_s=30.0)
    room = lambda window_s: 290 if window_s >= 3600 else 0  # noqa: E731
    async with open_shared_jobs(redis_server.url, "many", run_line, config, room) as jobs:
        record = await jobs.submit(b"", 86400.0, [str(i).encode() for i in range(lines)])
        done = await jobs.wait(record.id, 30.0)
        assert done is not None and done.state == SUCCEEDED, done
        results = await jobs.results(record.id)
    assert [(i, ok, r) for i, ok, r in results] == [(i, True, str(i).encode()) for i in range(lines)]
    # Every line ran once: none failed a Redis step and went back to run again.
    assert runs == Counter(range(lines))


async def test_while_redis_is_down_the_job_rpcs_are_unavailable_and_answer_again_after(
    sim: Sim, redis_server: RedisServer
) -> None:
    cfg = shared_config(sim, redis_server, "down", claim_idle_s=3.0)
    async with replicas(cfg) as [(_, ch)]:
        stub, ops = pb_grpc.TranslatorStub(ch), lro_grpc.OperationsStub(ch)
        op = await stub.BatchTranslate(pb.BatchTranslateRequest(requests=_requests(2)))
        await ops.WaitOperation(lro.WaitOperationRequest(name=op.name, timeout=_timeout(20)), timeout=30)
        redis_server.stop()
        try:
            for call in (
                ops.GetOperation(lro.GetOperationRequest(name=op.name), timeout=10),
                ops.ListOperations(lro.ListOperationsRequest(), timeout=10),
                stub.BatchTranslate(pb.BatchTranslateRequest(requests=_requests(1)), timeout=10),
                stub.ListFiles(pb.ListFilesRequest(), timeout=10),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as down:
                    await call
                # Not UNKNOWN: the caller is told to try again, and when.
                assert down.value.code() == grpc.StatusCode.UNAVAILABLE, down.value
                assert "job store (Redis) cannot be reached" in (down.value.details() or "")
                assert dict(down.value.trailing_metadata() or ())["retry-after"] == "1"
        finally:
            redis_server.start()

        # This Redis keeps nothing across its restart; the service takes jobs again and runs them.
        async def runs_a_job() -> bool:
            try:
                again = await stub.BatchTranslate(pb.BatchTranslateRequest(requests=_requests(2)), timeout=5)
                done = await ops.WaitOperation(lro.WaitOperationRequest(name=again.name, timeout=_timeout(5)))
            except grpc.aio.AioRpcError:
                return False
            return _metadata(done).done == 2

        await eventually(runs_a_job, 30.0, "a job run once Redis is back")
