"""The usage ledger: every answered call charged to its tenant, model, day and task, exactly as the responses'
usage says (unary, stream, passthrough, job lines); kept in SQLite across a restart, shared through Redis by
replicas; read back with GetUsage (grouped, ranged, validated, a tenant's own unless admin); written behind the
reply, so a slow or closed store never holds a reply up."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import json
import os
import sqlite3
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.longrunning import operations_pb2 as lro
from google.longrunning import operations_pb2_grpc as lro_grpc
from google.protobuf import duration_pb2
from prometheus_client import generate_latest
from translane.config import CacheConfig, Config, GovernorConfig
from translane.engine import Engine, Job
from translane.errors import InvalidRequest
from translane.server import RunningServer, running_server
from translane.usage import Ledger, SqliteLedger, UsageQuery
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..conftest import Sim, server_config
from ..helpers.eventually import eventually
from ..helpers.redis_server import RedisServer

TR = "doubao-seed-translation-250915"
CHAT = "doubao-seed-1-6-flash-250828"
ADMIN = "ops"


TENANTS = ("acme", "other", "a", "b", "zeta", ADMIN)


def write_tenants(folder: Path) -> Path:
    """A tenants file: each tenant's key is `key-NAME`; "ops" is an admin."""
    path = folder / "tenants.toml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            f'[tenants.{name}]\napi_keys = ["key-{name}"]\n' + ("admin = true\n" if name == ADMIN else "")
            for name in TENANTS
        )
    )
    return path


def with_tenants(cfg: Config, folder: Path) -> Config:
    return dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, tenants_file=str(write_tenants(folder))))


def md(tenant: str) -> tuple[tuple[str, str], ...]:
    """The call's identity: the tenant's key."""
    return (("authorization", f"Bearer key-{tenant}"),)


@pytest.fixture
def config(sim: Sim, tmp_path: Path) -> Config:
    return with_tenants(server_config(sim), tmp_path)


def usage_of(rows: Any) -> list[tuple[str, str, str, int, int, int, int]]:
    return [
        (r.tenant, r.model, r.task_id, r.requests, r.prompt_tokens, r.completion_tokens, r.cached_tokens) for r in rows
    ]


async def test_every_kind_of_call_is_charged_to_its_tenant_as_its_usage_says(
    stub: pb_grpc.TranslatorStub, channel: grpc.aio.Channel
) -> None:
    unary = await stub.Translate(
        pb.TranslateRequest(segments=["One.", "Two, longer."], target_language="zh", task_id="u"),
        metadata=md("acme"),
        timeout=10,
    )
    chunks = [
        c
        async for c in stub.TranslateStream(
            pb.TranslateRequest(segments=["Streamed.", "Also."], target_language="de", task_id="s"),
            metadata=md("acme"),
            timeout=10,
        )
    ]
    streamed = chunks[-1].usage
    chat = await stub.Translate(
        pb.TranslateRequest(messages=[pb.ChatMessage(role="user", content="Into French: hi")], model=CHAT, task_id="p"),
        metadata=md("acme"),
        timeout=10,
    )
    op = await stub.BatchTranslate(
        pb.BatchTranslateRequest(
            requests=[pb.TranslateRequest(segments=[f"line {i}"], target_language="ja", task_id="j") for i in range(3)]
        ),
        metadata=md("acme"),
    )
    wait = duration_pb2.Duration()
    wait.FromTimedelta(timedelta(seconds=20))
    done = await lro_grpc.OperationsStub(channel).WaitOperation(
        lro.WaitOperationRequest(name=op.name, timeout=wait), metadata=md("acme")
    )
    assert done.done
    job = pb.BatchTranslateMetadata()
    done.metadata.Unpack(job)
    # Another tenant's call is not acme's.
    await stub.Translate(
        pb.TranslateRequest(segments=["Elsewhere."], target_language="zh", task_id="u"),
        metadata=md("other"),
        timeout=10,
    )

    got = await stub.GetUsage(pb.GetUsageRequest(group_by=["model", "task"]), metadata=md("acme"))
    expect = [
        ("acme", CHAT, "p", 1, chat.usage.prompt_tokens, chat.usage.completion_tokens, chat.usage.cached_tokens),
        ("acme", TR, "j", 3, job.usage.prompt_tokens, job.usage.completion_tokens, job.usage.cached_tokens),
        ("acme", TR, "s", 2, streamed.prompt_tokens, streamed.completion_tokens, streamed.cached_tokens),
        ("acme", TR, "u", 2, unary.usage.prompt_tokens, unary.usage.completion_tokens, unary.usage.cached_tokens),
    ]
    assert usage_of(got.rows) == expect
    costs = {r.task_id: r.cost for r in got.rows}
    assert costs == pytest.approx(
        {"u": unary.usage.cost, "s": streamed.cost, "p": chat.usage.cost, "j": job.usage.cost}
    )
    assert all(r.currency == "CNY" and r.total_tokens == r.prompt_tokens + r.completion_tokens for r in got.rows)
    assert got.start_day == got.end_day[:8] + "01"  # the month so far

    # Grouped by nothing: one row for the tenant; by day: today's.
    whole = await stub.GetUsage(pb.GetUsageRequest(), metadata=md("acme"))
    assert [(r.tenant, r.model, r.day, r.task_id, r.requests) for r in whole.rows] == [("acme", "", "", "", 8)]
    assert whole.rows[0].prompt_tokens == sum(e[4] for e in expect)
    daily = await stub.GetUsage(pb.GetUsageRequest(group_by=["day"]), metadata=md("acme"))
    assert [(r.day, r.requests) for r in daily.rows] == [(got.end_day, 8)]


async def test_a_tenant_reads_its_own_usage_and_an_admin_reads_anyones(stub: pb_grpc.TranslatorStub) -> None:
    for tenant in ("a", "b"):
        await stub.Translate(pb.TranslateRequest(segments=["x"], target_language="zh"), metadata=md(tenant))
    own = await stub.GetUsage(pb.GetUsageRequest(), metadata=md("a"))
    assert [r.tenant for r in own.rows] == ["a"]
    assert [r.tenant for r in (await stub.GetUsage(pb.GetUsageRequest(tenant="a"), metadata=md("a"))).rows] == ["a"]
    for asked, message in (("b", "tenant: 'b' is not yours"), ("*", "tenant: every tenant's usage is for admins")):
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.GetUsage(pb.GetUsageRequest(tenant=asked), metadata=md("a"))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert message in str(denied.value.details())
    every = await stub.GetUsage(pb.GetUsageRequest(tenant="*"), metadata=md(ADMIN))
    assert [r.tenant for r in every.rows] == ["a", "b"]
    assert [r.tenant for r in (await stub.GetUsage(pb.GetUsageRequest(tenant="b"), metadata=md(ADMIN))).rows] == ["b"]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.GetUsageRequest(start_day="2026-13-01"), "start_day: '2026-13-01' is not a date"),
        (pb.GetUsageRequest(end_day="yesterday"), "end_day: 'yesterday' is not a date"),
        (pb.GetUsageRequest(start_day="2026-02-02", end_day="2026-02-01"), "start_day: 2026-02-02 is after end_day"),
        (pb.GetUsageRequest(start_day="2025-01-01", end_day="2026-02-04"), "start_day: the range is 400 days"),
        (pb.GetUsageRequest(group_by=["model", "tenant"]), "group_by: unknown value 'tenant'"),
    ],
)
async def test_a_bad_query_is_invalid_naming_the_field(
    stub: pb_grpc.TranslatorStub, request_: pb.GetUsageRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.GetUsage(request_, metadata=md("a"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in str(bad.value.details())


async def test_the_metrics_count_per_tenant_under_bounded_labels(sim: Sim, tmp_path: Path) -> None:
    async with Engine.open(with_tenants(server_config(sim), tmp_path)) as engine:
        loop = asyncio.get_running_loop()
        for tenant in ("acme", "made-up-by-a-caller", ""):
            job = Job(("Hello.",), "zh", TR, deadline=loop.time() + 10, tenant=tenant)
            await engine.translate(job)
        text = generate_latest(engine.metrics.registry).decode()
    assert f'translane_tenant_requests_total{{model="{TR}",tenant="acme"}} 1.0' in text
    # A name the file does not hold is never a label value: it counts as the default tenant.
    assert f'translane_tenant_requests_total{{model="{TR}",tenant="default"}} 2.0' in text
    assert "made-up" not in text
    assert 'translane_tenant_tokens_total{model="' + TR + '",tenant="acme",type="input"}' in text
    assert 'translane_tenant_cost_total{currency="CNY",model="' + TR + '",tenant="acme"}' in text


# -- kept durably --------------------------------------------------------------


def on_disk(sim: Sim, tmp_path: Path, **cache: Any) -> Config:
    cfg = with_tenants(server_config(sim), tmp_path)
    return dataclasses.replace(
        cfg, cache=CacheConfig(kind="sqlite", path=str(tmp_path / "data" / "cache.sqlite3"), **cache)
    )


_texts = itertools.count()


async def call(server: RunningServer, tenant: str, task_id: str, n: int = 1) -> list[pb.TranslateResponse]:
    """`n` calls of texts never sent before (the cache is on: a text sent again would make no provider call)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = pb_grpc.TranslatorStub(ch)
        return [
            await stub.Translate(
                pb.TranslateRequest(segments=[f"{task_id} {next(_texts)}"], target_language="zh", task_id=task_id),
                metadata=md(tenant),
                timeout=10,
            )
            for i in range(n)
        ]


async def usage(server: RunningServer, **fields: Any) -> pb.GetUsageResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        got: pb.GetUsageResponse = await pb_grpc.TranslatorStub(ch).GetUsage(
            pb.GetUsageRequest(**fields), metadata=md(ADMIN)
        )
        return got


async def test_sqlite_keeps_the_usage_across_a_restart(sim: Sim, tmp_path: Path) -> None:
    cfg = on_disk(sim, tmp_path)
    async with running_server(cfg) as first:
        answers = await call(first, "acme", "t", 3)
    assert (tmp_path / "data" / "usage.sqlite3").exists()
    async with running_server(cfg) as second:
        got = await usage(second, tenant="*", group_by=["task"])
        await call(second, "acme", "t")
        again = await usage(second, tenant="*", group_by=["task"])
    assert usage_of(got.rows) == [
        (
            "acme",
            "",
            "t",
            3,
            sum(a.usage.prompt_tokens for a in answers),
            sum(a.usage.completion_tokens for a in answers),
            0,
        )
    ]
    assert again.rows[0].requests == 4


async def test_replicas_sharing_redis_share_one_ledger(sim: Sim, redis_server: RedisServer, tmp_path: Path) -> None:
    def replica(name: str) -> Config:
        governor = GovernorConfig(kind="redis", redis_url=redis_server.url, redis_prefix="usage", replicas=2)
        return dataclasses.replace(on_disk(sim, tmp_path / name), governor=governor)

    async with (
        running_server(replica("a")) as a,
        running_server(replica("b")) as b,
    ):
        on_a = await call(a, "acme", "t", 2)
        on_b = await call(b, "acme", "t", 3) + await call(b, "zeta", "z")
        both = on_a + on_b[:3]
        expect = [
            (
                "acme",
                TR,
                "t",
                5,
                sum(r.usage.prompt_tokens for r in both),
                sum(r.usage.completion_tokens for r in both),
                0,
            ),
            ("zeta", TR, "z", 1, on_b[3].usage.prompt_tokens, on_b[3].usage.completion_tokens, 0),
        ]
        # Each replica flushes its own buffer before reading: what the other wrote is read from Redis.
        await b.engine.ledger.flush()
        assert usage_of((await usage(a, tenant="*", group_by=["model", "task"])).rows) == expect
        await a.engine.ledger.flush()
        assert usage_of((await usage(b, tenant="*", group_by=["model", "task"])).rows) == expect
        cost = (await usage(a, tenant="acme")).rows[0].cost
        assert cost == pytest.approx(sum(r.usage.cost for r in both))
    # Nothing of it went to the replicas' files.
    assert not (tmp_path / "a" / "data" / "usage.sqlite3").exists()


# -- off the reply path --------------------------------------------------------


async def test_a_locked_usage_file_delays_no_reply(sim: Sim, tmp_path: Path) -> None:
    cfg = on_disk(sim, tmp_path, flush_s=0.0)
    async with running_server(cfg) as server:
        path = tmp_path / "data" / "usage.sqlite3"

        def written() -> int | None:
            with sqlite3.connect(path) as db:
                row = db.execute("SELECT SUM(requests) FROM usage WHERE task_id = 'slow'").fetchone()
            return row[0] if row and row[0] == 4 else None

        blocker = sqlite3.connect(path, timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")  # every commit of the ledger now waits out SQLite's busy timeout (5 s)
        try:
            started = time.perf_counter()
            answers = await call(server, "acme", "slow", 4)
            # Four replies, each after a commit, would take 20 s; behind the reply they take the provider's time.
            assert time.perf_counter() - started < 2.0
            assert written() is None  # the ledger could not write meanwhile
        finally:
            blocker.rollback()
            blocker.close()
        await eventually(written, 15.0, "the usage written once the file is free")
        got = await usage(server, tenant="acme")
        assert got.rows[0].requests == 4
        assert got.rows[0].prompt_tokens == sum(a.usage.prompt_tokens for a in answers)


async def test_a_closed_store_fails_no_call_and_a_query_says_it_cannot_read(sim: Sim, tmp_path: Path) -> None:
    async with running_server(on_disk(sim, tmp_path, flush_s=0.0)) as server:
        ledger = server.engine.ledger
        store = ledger.store
        assert isinstance(store, SqliteLedger)
        await store.db.close()
        answers = await call(server, "acme", "t", 2)
        assert len(answers) == 2 and all(a.usage.completion_tokens for a in answers)
        # Kept in the buffer for the next try (a store that comes back gets it).
        await eventually(lambda: ledger.pending == 1, 5.0, "the failed write back in the buffer")
        with pytest.raises(grpc.aio.AioRpcError) as unreadable:
            await usage(server, tenant="acme")
        assert unreadable.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "usage cannot be read now" in str(unreadable.value.details())


# -- the ledger and its queries, on an owned clock -------------------------------------------------------------


async def test_the_day_is_the_budget_day_and_a_range_reads_only_its_days() -> None:
    now = [dt.datetime(2026, 3, 31, 15, 59, tzinfo=dt.UTC).timestamp()]  # 23:59 in Shanghai
    ledger = Ledger("Asia/Shanghai", wall=lambda: now[0])
    ledger.record("acme", TR, "t", "CNY", 10, 20, 0, 0.5)
    now[0] += 120  # 00:01 on April 1st in Shanghai, still March 31st in UTC
    ledger.record("acme", TR, "t", "CNY", 1, 2, 0, 0.25)
    ledger.record("acme", TR, "u", "CNY", 1, 2, 1, 0.25)
    assert ledger.today() == dt.date(2026, 4, 1)

    by_day = await ledger.usage(UsageQuery.parse("acme", "2026-03-01", "", ["day"], ledger.today()))
    assert [(r.key.day, r.tally.requests, r.tally.prompt_tokens, r.tally.cost) for r in by_day] == [
        ("2026-03-31", 1, 10, 0.5),
        ("2026-04-01", 2, 2, 0.5),
    ]
    # April alone (the default range is the month of its end), and by task.
    april = await ledger.usage(UsageQuery.parse("acme", "", "", ["task", "task"], ledger.today()))
    assert [(r.key.task_id, r.key.day, r.tally.requests, r.tally.cached_tokens) for r in april] == [
        ("t", "", 1, 0),
        ("u", "", 1, 1),
    ]
    assert await ledger.usage(UsageQuery.parse("other", "", "", [], ledger.today())) == []


@pytest.mark.parametrize(
    ("zone", "moments"),
    [
        # Midnight in Shanghai, to the millisecond either side.
        ("Asia/Shanghai", [(2026, 3, 31, 15, 59, 59.999), (2026, 3, 31, 16, 0, 0.0), (2026, 3, 31, 16, 0, 0.001)]),
        # Santiago: clocks go from 00:00 to 01:00 (no midnight) in September, back from 24:00 to 23:00 in April.
        ("America/Santiago", [(2026, 9, 6, 3, 59, 59.5), (2026, 9, 6, 4, 0, 0.0), (2026, 9, 6, 4, 0, 0.5)]),
        (
            "America/Santiago",
            [(2026, 4, 5, 2, 59, 59.5), (2026, 4, 5, 3, 0, 0.25), (2026, 4, 5, 3, 59, 59.75), (2026, 4, 5, 4, 0, 0.0)],
        ),
    ],
)
async def test_each_call_is_recorded_on_the_zones_date_at_its_moment(
    zone: str, moments: list[tuple[int, int, int, int, int, float]]
) -> None:
    now = [0.0]
    ledger = Ledger(zone, wall=lambda: now[0])
    expected = []
    for i, (y, mo, d, h, mi, s) in enumerate(moments):
        now[0] = dt.datetime(y, mo, d, h, mi, tzinfo=dt.UTC).timestamp() + s
        ledger.record("acme", TR, f"t{i}", "CNY", 1, 1, 0, 0.0)
        expected.append((f"t{i}", dt.datetime.fromtimestamp(now[0], ZoneInfo(zone)).date().isoformat()))
    rows = await ledger.usage(UsageQuery.parse("acme", "2026-01-01", "2026-12-31", ["task", "day"], ledger.today()))
    assert sorted((r.key.task_id, r.key.day) for r in rows) == expected
    assert len({day for _, day in expected}) == 2  # each case crosses one change of date


def test_a_query_parses_its_fields_once() -> None:
    today = dt.date(2026, 2, 10)
    q = UsageQuery.parse("t", "", "", [" Model ", "DAY"], today)
    assert (q.start, q.end, q.group_by) == (dt.date(2026, 2, 1), today, ("model", "day"))
    assert UsageQuery.parse("t", "2025-02-10", "2026-02-10", [], today).days()[0] == "2025-02-10"  # 366 days
    with pytest.raises(InvalidRequest, match="start_day: the range is 367 days"):
        UsageQuery.parse("t", "2025-02-09", "2026-02-10", [], today)


# -- the command line ------------------------------------------------------------------------------------------


async def translane(*args: str, key: str = "") -> tuple[int, str, str]:
    """`translane ARGS` in a process of its own, as a user runs it (with TRANSLANE_API_KEY=`key` when given):
    (exit code, stdout, stderr)."""
    code = f"import sys\nfrom translane.cli import main\nsys.exit(main({list(args)!r}))"
    env = {k: v for k, v in os.environ.items() if k != "TRANSLANE_API_KEY"}
    if key:
        env["TRANSLANE_API_KEY"] = key
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_commands_present_the_key_in_translane_api_key(server: RunningServer) -> None:
    answers = await call(server, "acme", "cli", 2)
    target = f"127.0.0.1:{server.port}"
    code, out, err = await translane("usage", "--json", "--target", target, key="key-acme")
    assert code == 0, err
    [row] = json.loads(out)["rows"]
    assert (row["tenant"], row["requests"]) == ("acme", 2)
    assert row["prompt_tokens"] == sum(a.usage.prompt_tokens for a in answers)
    code, out, err = await translane("usage", "--target", target)
    assert code == 1 and "UNAUTHENTICATED" in err and "Bearer" in err


async def test_the_key_goes_with_every_kind_of_call(server: RunningServer, tmp_path: Path) -> None:
    """A streamed reply and a client-streamed upload bear the key as a unary call does."""
    target = f"127.0.0.1:{server.port}"
    code, out, err = await translane(
        "translate", "stream me", "--to", "de", "--stream", "--target", target, key="key-a"
    )
    assert code == 0 and "stream me" in out, err
    source = tmp_path / "in.jsonl"
    source.write_text('{"custom_id": "x", "text": "Hello"}\n')
    jobs = str(tmp_path / "jobs")
    args = ("batch", "submit", str(source), "--to", "zh", "--upload", "always", "--jobs-dir", jobs, "--target", target)
    code, out, err = await translane(*args, key="key-a")
    assert code == 0 and out.startswith("operations/"), err


async def test_translane_usage_prints_a_table_or_json(sim: Sim) -> None:
    async with running_server(server_config(sim)) as server:  # no tenants: every call is the default tenant's
        await translane_usage_prints_a_table_or_json(server)


async def translane_usage_prints_a_table_or_json(server: RunningServer) -> None:
    answers = await call(server, "", "cli", 2)
    target = f"127.0.0.1:{server.port}"
    code, out, err = await translane("usage", "--group-by", "model,task", "--target", target)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("usage from ") and lines[1].split() == [
        "tenant",
        "model",
        "task",
        "requests",
        "prompt",
        "completion",
        "cached",
        "cost",
    ]
    prompt = sum(a.usage.prompt_tokens for a in answers)
    assert lines[2].split()[:5] == ["(default)", TR, "cli", "2", str(prompt)]

    code, out, err = await translane("usage", "--json", "--group-by", "day", "--target", target)
    assert code == 0, err
    got = json.loads(out)
    [row] = got["rows"]
    assert (row["tenant"], row["day"], row["requests"], row["prompt_tokens"]) == ("", got["end"], 2, prompt)
    assert row["cost"] == pytest.approx(sum(a.usage.cost for a in answers))

    code, out, err = await translane("usage", "--start", "someday", "--target", target)
    assert code == 1 and "INVALID_ARGUMENT: start_day: 'someday' is not a date" in err


async def test_a_full_buffer_drops_new_rows_and_counts_them_never_waiting() -> None:
    ledger = Ledger("UTC", flush_s=60.0, max_pending=2)
    for task in ("a", "b", "c"):
        ledger.record("t", TR, task, "CNY", 1, 1, 0, 0.1)
    ledger.record("t", TR, "a", "CNY", 1, 1, 0, 0.1)  # a row already waiting still sums
    assert (ledger.pending, ledger.dropped) == (2, 1)
    rows = await ledger.usage(UsageQuery.parse("t", "", "", ["task"], ledger.today()))
    assert [(r.key.task_id, r.tally.requests) for r in rows] == [("a", 2), ("b", 1)]
    await ledger.aclose()
