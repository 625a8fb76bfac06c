"""The simulated provider's batch routes: Ark Batch Chat and OpenAI Files + Batches, over loopback HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio
from openai.types import Batch, FileObject
from openai.types.chat import ChatCompletion
from translane.config import load_config
from translane.sim import SimConfig, SimModelLimits
from translane.sim._batch_chat import QUOTA, BatchChatModel
from translane.sim._limiter import CONCURRENCY

from ..conftest import Sim, start_sim
from ..helpers.eventually import eventually

CHAT = "doubao-seed-1-6-flash-250828"
TR = "doubao-seed-translation-250915"


@pytest.fixture
def sim_config() -> SimConfig:
    # Echo answers, minutes of batch latency scaled to 50 ms, a 24h batch window of 0.24 s.
    return SimConfig.from_config(load_config(env={}), pseudo_translate=0.0, batch_latency_s=0.05, batch_hour_s=0.01)


def _chat(text: str, model: str = CHAT, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "system", "content": "Translate to zh"}, {"role": "user", "content": text}],
        **extra,
    }


async def _post(url: str, body: Any) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
        return r.status, await r.json(), r.headers


# Ark Batch Chat


async def test_batch_chat_answers_like_the_online_route_and_counts_apart(sim: Sim) -> None:
    online = await _post(f"{sim.url}/chat/completions", _chat("Hello"))
    status, body, _ = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello"))
    assert status == 200, body
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == online[1]["choices"][0]["message"]["content"]
    assert body["usage"]["total_tokens"] == online[1]["usage"]["total_tokens"]
    stats = await sim.stats()
    batch = stats["batch"][CHAT]
    assert batch["requests"] == 1
    assert batch["tokens"] == body["usage"]["total_tokens"]
    assert batch["quota_used"] == batch["tokens"]
    assert batch["quota_left"] == sim.config.batch_tpd - batch["tokens"]
    # The online route's counters saw only the online call.
    assert stats["models"][CHAT]["requests"] == 1


async def test_batch_chat_refuses_streaming_and_responses_only_models(sim: Sim) -> None:
    status, body, _ = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello", stream=True))
    assert (status, body["error"]["code"]) == (400, "InvalidParameter")
    status, body, _ = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello", model=TR))
    assert (status, body["error"]["code"]) == (400, "InvalidParameter")
    status, body, _ = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello", model="nope"))
    assert status == 404
    assert (await sim.stats())["batch"][CHAT]["requests"] == 0


async def test_batch_chat_has_no_concurrency_limit() -> None:
    # The online route takes two calls of this model at once; the batch route takes all twenty.
    limits = SimModelLimits(rpm=1000, tpm=10**6, max_concurrency=2, max_input_tokens=1000, api_style="chat_completions")
    runner, sim = await start_sim(SimConfig(models={CHAT: limits}, pseudo_translate=0.0, batch_latency_s=0.5))
    try:
        async with aiohttp.ClientSession() as s:

            async def one(i: int) -> int:
                async with s.post(f"{sim.url}/batch/chat/completions", json=_chat(f"line {i}")) as r:
                    await r.read()
                    return r.status

            statuses = await asyncio.gather(*(one(i) for i in range(20)))
        assert statuses == [200] * 20
        batch = (await sim.stats())["batch"][CHAT]
        assert batch["requests"] == 20
        assert batch["max_in_flight"] > limits.max_concurrency
    finally:
        await runner.cleanup()


async def test_batch_chat_quota_429_is_distinct_from_rate_limits_and_says_when_to_retry(sim: Sim) -> None:
    status, body, _ = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello"))
    one_call = body["usage"]["total_tokens"]
    await sim.reset()
    await sim.set(batch_tpd=one_call * 2)
    for _ in range(2):
        status, body, _ = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello"))
        assert status == 200, body
    status, body, headers = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello"))
    assert status == 429
    assert body["error"]["code"] == QUOTA
    assert body["error"]["code"] not in (CONCURRENCY, "RateLimitExceeded.EndpointRPMExceeded", "ServerOverloaded")
    # The quota refills when the simulated day (a real one by default) turns.
    assert 80_000 < int(headers["Retry-After"]) <= 86_400
    batch = (await sim.stats())["batch"][CHAT]
    assert (batch["requests"], batch["quota_rejected"], batch["quota_left"]) == (2, 1, 0)
    # The online route is unaffected by the batch quota.
    status, body, _ = await _post(f"{sim.url}/chat/completions", _chat("Hello"))
    assert status == 200


async def test_batch_chat_overload_429_carries_retry_after(sim: Sim) -> None:
    await sim.set(rate_limit_rate=1.0)
    status, body, headers = await _post(f"{sim.url}/batch/chat/completions", _chat("Hello"))
    assert (status, body["error"]["code"], headers["Retry-After"]) == (429, "ServerOverloaded", "1")
    assert (await sim.stats())["batch"][CHAT]["rate_limited"] == 1


def test_the_batch_quota_refills_each_simulated_day() -> None:
    model = BatchChatModel(day_s=10.0, epoch=100.0)
    assert model.charge(100.0, 60, tpd=100) is None
    assert model.charge(105.0, 60, tpd=100) == pytest.approx(5.0)
    assert model.stats(105.0, 100)["quota_left"] == 40
    assert model.charge(110.0, 60, tpd=100) is None
    assert model.stats(121.0, 100)["quota_left"] == 100


def test_batch_knobs_are_checked() -> None:
    limits = SimModelLimits(rpm=1, tpm=1, max_concurrency=1, max_input_tokens=1, api_style="chat_completions")
    with pytest.raises(ValueError, match="batch_hour_s"):
        SimConfig(models={CHAT: limits}, batch_hour_s=0)
    with pytest.raises(ValueError, match="batch_latency_s"):
        SimConfig(models={CHAT: limits}).with_runtime({"batch_latency_s": -1})
    cfg = SimConfig(models={CHAT: limits}).with_runtime({"batch_tpd": 5, "batch_job_hours": 30})
    assert (cfg.batch_tpd, cfg.batch_job_hours) == (5, 30)
    assert dataclasses.replace(cfg, batch_file_max_lines=3).batch_file_max_lines == 3
    assert json.dumps(cfg.runtime())


# OpenAI Files + Batches

DONE = ("completed", "failed", "expired", "cancelled")


def _line(custom_id: str, text: str, model: str = CHAT, **overrides: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": _chat(text, model),
        **overrides,
    }


def _jsonl(lines: Any) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


@pytest_asyncio.fixture
async def client(sim: Sim) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{sim.root}/v1", api_key="x", max_retries=0) as c:
        yield c


async def _submit(client: openai.AsyncOpenAI, data: bytes, **metadata: str) -> Batch:
    uploaded = await client.files.create(file=("in.jsonl", data), purpose="batch")
    return await client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata=metadata or None,
    )


async def _finished(client: openai.AsyncOpenAI, batch_id: str) -> Batch:
    async def done() -> Batch | None:
        batch = await client.batches.retrieve(batch_id)
        return batch if batch.status in DONE else None

    return await eventually(done, 10.0, f"batch {batch_id} to finish")


async def _lines(client: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    content = await client.files.content(file_id)
    return [json.loads(line) for line in content.content.splitlines()]


async def test_the_openai_sdk_flow_runs_end_to_end(sim: Sim, client: openai.AsyncOpenAI) -> None:
    lines = [_line(f"req-{i}", f"Sentence {i}.") for i in range(30)]
    uploaded = await client.files.create(file=("in.jsonl", _jsonl(lines)), purpose="batch")
    assert FileObject.model_validate(uploaded.model_dump()).purpose == "batch"
    assert (await client.files.retrieve(uploaded.id)).bytes == len(_jsonl(lines))
    assert (await client.files.content(uploaded.id)).content == _jsonl(lines)
    created = await client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "books"},
    )
    assert created.status == "validating"
    assert created.metadata == {"job": "books"}
    seen: set[str] = set()

    async def done() -> Batch | None:
        batch = await client.batches.retrieve(created.id)
        seen.add(batch.status)
        return batch if batch.status in DONE else None

    batch = await eventually(done, 10.0, "the batch to complete")
    assert batch.status == "completed"
    assert seen <= {"validating", "in_progress", "finalizing", "completed"}
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (30, 30, 0)
    assert batch.error_file_id is None
    assert batch.in_progress_at is not None and batch.completed_at is not None and batch.finalizing_at is not None
    assert batch.created_at <= batch.in_progress_at <= batch.finalizing_at <= batch.completed_at
    assert batch.expires_at == batch.created_at + 24 * 3600
    out = await _lines(client, batch.output_file_id)
    assert sorted(line["custom_id"] for line in out) == sorted(f"req-{i}" for i in range(30))
    for line in out:
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        answer = ChatCompletion.model_validate(line["response"]["body"])
        assert answer.choices[0].message.content == f"[sim auto->zh] Sentence {line['custom_id'][4:]}."
    stats = await sim.stats()
    assert stats["openai_batch"]["models"][CHAT]["requests"] == 30
    assert batch.usage is not None
    assert batch.usage.total_tokens == sum(line["response"]["body"]["usage"]["total_tokens"] for line in out)
    # Neither the online route's counters nor Ark Batch Chat's saw these lines.
    assert stats["models"][CHAT]["requests"] == 0
    assert stats["batch"][CHAT]["requests"] == 0
    assert (await client.files.retrieve(batch.output_file_id or "")).purpose == "batch_output"


async def test_bad_lines_become_error_lines_never_a_failed_batch(client: openai.AsyncOpenAI) -> None:
    lines = [
        _line("good", "Hello."),
        _line("wrong-url", "Hello.", url="/v1/embeddings"),
        _line("wrong-method", "Hello.", method="GET"),
        _line("no-body", "Hello.", body="text"),
        _line("unknown-model", "Hello.", model="nope"),
        _line("responses-only-model", "Hello.", model=TR),
        {"method": "POST", "url": "/v1/chat/completions", "body": _chat("Hello.")},
    ]
    batch = await _finished(client, (await _submit(client, _jsonl(lines))).id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 6)
    out = await _lines(client, batch.output_file_id)
    errors = await _lines(client, batch.error_file_id)
    assert [line["custom_id"] for line in out] == ["good"]
    by_id = {line["custom_id"]: line for line in errors}
    assert set(by_id) == {"wrong-url", "wrong-method", "no-body", "unknown-model", "responses-only-model", None}
    assert by_id["wrong-url"]["error"]["code"] == "invalid_url"
    assert by_id["unknown-model"]["response"]["status_code"] == 404
    assert by_id["responses-only-model"]["response"]["status_code"] == 400
    assert by_id["responses-only-model"]["error"] is None


async def test_cancel_stops_a_batch_and_keeps_what_was_done(sim: Sim, client: openai.AsyncOpenAI) -> None:
    # Four seconds of work (20 hours of 0.2 s) in steps of 0.2 s, inside the window (24 hours: 4.8 s).
    await sim.set(batch_hour_s=0.2, batch_job_hours=20)
    submitted = await _submit(client, _jsonl(_line(f"r{i}", "Hi.") for i in range(40)))

    async def progressing() -> Batch | None:
        batch = await client.batches.retrieve(submitted.id)
        counts = batch.request_counts
        return batch if batch.status == "in_progress" and counts is not None and counts.completed > 0 else None

    await eventually(progressing, 5.0, "the batch to have done some lines")
    cancelling = await client.batches.cancel(submitted.id)
    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at is not None
    batch = await _finished(client, submitted.id)
    assert batch.status == "cancelled"
    assert batch.cancelled_at is not None
    assert batch.request_counts is not None
    done = batch.request_counts.completed
    assert 0 < done < 40
    assert len(await _lines(client, batch.output_file_id)) == done
    with pytest.raises(openai.ConflictError):
        await client.batches.cancel(submitted.id)


async def test_a_batch_past_its_window_expires_with_the_rest_as_error_lines(
    sim: Sim, client: openai.AsyncOpenAI
) -> None:
    await sim.set(batch_job_hours=48)  # twice the window: half the lines get done
    batch = await _finished(client, (await _submit(client, _jsonl(_line(f"r{i}", "Hi.") for i in range(40)))).id)
    assert batch.status == "expired"
    assert batch.expired_at is not None
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (20, 20)
    out = await _lines(client, batch.output_file_id)
    errors = await _lines(client, batch.error_file_id)
    assert {line["error"]["code"] for line in errors} == {"batch_expired"}
    assert sorted(line["custom_id"] for line in out + errors) == sorted(f"r{i}" for i in range(40))


async def test_list_pages_newest_first(client: openai.AsyncOpenAI) -> None:
    ids = [(await _submit(client, _jsonl([_line("one", "Hi.")]))).id for _ in range(5)]
    first = await client.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2]
    assert first.has_more
    rest = await client.batches.list(limit=10, after=first.data[-1].id)
    assert [b.id for b in rest.data] == ids[::-1][2:]
    assert not rest.has_more
    assert [b.id async for b in client.batches.list(limit=2)] == ids[::-1]
    for batch in first.data:
        Batch.model_validate(batch.model_dump())


async def test_files_can_be_listed_and_deleted(client: openai.AsyncOpenAI) -> None:
    uploaded = await client.files.create(file=("in.jsonl", _jsonl([_line("one", "Hi.")])), purpose="batch")
    assert uploaded.id in [f.id async for f in client.files.list()]
    deleted = await client.files.delete(uploaded.id)
    assert deleted.deleted
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        await client.batches.retrieve("batch_nope")


@pytest.mark.parametrize(
    ("data", "purpose", "says"),
    [
        (b"not json\n", "batch", "JSONL"),
        (b"[1, 2]\n", "batch", "JSON object"),
        (b"\n", "batch", "empty"),
        (_jsonl([_line("same", "a"), _line("same", "b")]), "batch", "repeats custom_id"),
        (_jsonl([_line("one", "a")]), "fine-tune", "purpose"),
    ],
)
async def test_invalid_files_are_400s(client: openai.AsyncOpenAI, data: bytes, purpose: Any, says: str) -> None:
    with pytest.raises(openai.BadRequestError, match=says):
        await client.files.create(file=("in.jsonl", data), purpose=purpose)


async def test_invalid_batches_are_400s(client: openai.AsyncOpenAI) -> None:
    uploaded = await client.files.create(file=("in.jsonl", _jsonl([_line("one", "a")])), purpose="batch")
    bad: list[dict[str, Any]] = [
        {"endpoint": "/v1/embeddings"},
        {"completion_window": "48h"},
        {"metadata": {f"k{i}": "v" for i in range(17)}},
    ]
    for change in bad:
        params: dict[str, Any] = {
            "input_file_id": uploaded.id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            **change,
        }
        with pytest.raises(openai.BadRequestError):
            await client.batches.create(**params)
    with pytest.raises(openai.NotFoundError):
        await client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")


async def test_a_file_over_50000_lines_is_refused(client: openai.AsyncOpenAI) -> None:
    line = json.dumps(_line("x", "a")).encode() + b"\n"
    # Past the line count the upload stops checking lines, so the same line serves 50,001 times.
    with pytest.raises(openai.BadRequestError, match="50001 lines"):
        await client.files.create(file=("in.jsonl", line * 50_001), purpose="batch")


async def test_a_file_over_the_byte_limit_is_refused(sim: Sim) -> None:
    runner, small = await start_sim(dataclasses.replace(sim.config, batch_file_max_bytes=1000))
    try:
        async with openai.AsyncOpenAI(base_url=f"{small.root}/v1", api_key="x", max_retries=0) as client:
            fits = _jsonl([_line("one", "a")])
            assert (await client.files.create(file=("in.jsonl", fits), purpose="batch")).bytes == len(fits)
            with pytest.raises(openai.BadRequestError, match="1000 bytes"):
                await client.files.create(
                    file=("in.jsonl", _jsonl(_line(f"r{i}", "a") for i in range(20))), purpose="batch"
                )
    finally:
        await runner.cleanup()


async def test_reset_forgets_files_and_batches(sim: Sim, client: openai.AsyncOpenAI) -> None:
    await sim.set(batch_hour_s=1, batch_job_hours=20)
    submitted = await _submit(client, _jsonl([_line("one", "a")]))
    await sim.reset()
    with pytest.raises(openai.NotFoundError):
        await client.batches.retrieve(submitted.id)
    assert (await sim.stats())["openai_batch"] == {"files": 0, "uploads": 0, "batches": {}, "models": {}}


async def test_a_batch_may_fail_as_it_starts(sim: Sim, client: openai.AsyncOpenAI) -> None:
    await sim.set(batch_fail_rate=1.0)
    submitted = await _submit(client, _jsonl([_line("one", "a"), _line("two", "b")]))
    failed = await _finished(client, submitted.id)
    assert failed.status == "failed" and failed.failed_at is not None
    assert failed.errors is not None and failed.errors.data and failed.errors.data[0].code == "sim_failed"
    assert failed.output_file_id is None and failed.error_file_id is None
    stats = (await sim.stats())["openai_batch"]
    assert stats["batches"] == {"failed": 1} and stats["uploads"] == 1 and stats["models"] == {}
