"""OpenAI Files + Batches on the shim through the official OpenAI SDK, end to end: shim, service, simulated provider."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import aiohttp
import grpc
import openai
import pytest
from google.longrunning import operations_pb2 as lro
from google.longrunning import operations_pb2_grpc as lro_grpc
from openai.types import Batch
from openai.types.chat import ChatCompletion

from gateway_shim import RunningShim, ShimConfig, running_shim
from gateway_shim._http import STATE

from ..conftest import Sim
from ..helpers.eventually import eventually
from .conftest import KEY

MODEL = "doubao-seed-translation-250915"  # Ark responses: the sim echoes the target code


def _line(custom_id: str, content: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": MODEL, "messages": [{"role": "user", "content": content}], **body},
    }


def _jsonl(lines: list[Any]) -> bytes:
    return b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines)


async def _upload(client: openai.AsyncOpenAI, data: bytes) -> str:
    created = await client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    return created.id


async def _ended(client: openai.AsyncOpenAI, batch_id: str, timeout_s: float = 30.0) -> Batch:
    async def ended() -> Batch | None:
        batch = await client.batches.retrieve(batch_id)
        return batch if batch.status in ("completed", "failed", "expired", "cancelled") else None

    return await eventually(ended, timeout_s, f"batch {batch_id} ended")


async def _lines(client: openai.AsyncOpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    """The result file's lines by custom_id; each custom_id exactly once."""
    if file_id is None:
        return {}
    content = await client.files.content(file_id)
    out: dict[str, dict[str, Any]] = {}
    for raw in content.content.splitlines():
        line = json.loads(raw)
        assert line["custom_id"] not in out, line
        out[line["custom_id"]] = line
    return out


async def test_the_sdk_flow_answers_every_line_once(client: openai.AsyncOpenAI) -> None:
    good = [_line(f"req-{n}", f"Translate to Japanese:\n\nLine {n}.") for n in range(5)]
    separated = _line("plugin", "Translate to Japanese:\n\nFirst {0}.\n\n%%\n\nSecond <b0>one</b0>.")
    data = _jsonl([*good, separated])
    file_id = await _upload(client, data)
    listed = await client.files.retrieve(file_id)
    assert listed.bytes == len(data) and listed.purpose == "batch" and listed.filename == "in.jsonl"
    assert (await client.files.content(file_id)).content == data

    batch = await client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"job": "t1"}
    )
    assert batch.status in ("validating", "in_progress", "finalizing", "completed")
    assert batch.metadata == {"job": "t1"} and batch.input_file_id == file_id
    done = await _ended(client, batch.id)
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (6, 6, 0)
    assert done.completed_at is not None and done.error_file_id is None
    assert done.usage is not None and done.usage.input_tokens > 0
    out = await _lines(client, done.output_file_id)
    assert sorted(out) == sorted([f"req-{n}" for n in range(5)] + ["plugin"])
    for custom_id, line in out.items():
        assert line["error"] is None and line["response"]["status_code"] == 200
        completion = ChatCompletion.model_validate(line["response"]["body"])
        assert completion.model == MODEL
        if custom_id != "plugin":
            assert completion.choices[0].message.content == f"[sim auto->ja] Line {custom_id[4:]}."
    plugin = ChatCompletion.model_validate(out["plugin"]["response"]["body"]).choices[0].message.content
    assert plugin == "[sim auto->ja] First {0}.\n\n%%\n\n[sim auto->ja] Second <b0>one</b0>."
    # Retrieving again changes nothing: the result files are written once.
    again = await client.batches.retrieve(batch.id)
    assert again.output_file_id == done.output_file_id


async def test_bad_lines_and_unreadable_prompts_become_error_lines(client: openai.AsyncOpenAI) -> None:
    data = _jsonl(
        [
            _line("ok", "Translate to Japanese:\n\nHello."),
            b"{not json",
            {"custom_id": "no-body", "method": "POST", "url": "/v1/chat/completions"},
            _line("unreadable", "Translate to Klingon:\n\nHello there."),
            _line("bad-field", "Translate to Japanese:\n\nHello.", n=3),
            _line("streamed", "Translate to Japanese:\n\nHello.", stream=True),
        ]
    )
    batch = await client.batches.create(
        input_file_id=await _upload(client, data), endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = await _ended(client, batch.id)
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (6, 1, 5)
    out = await _lines(client, done.output_file_id)
    assert list(out) == ["ok"]
    errors = await _lines(client, done.error_file_id)
    assert set(errors) == {None, "no-body", "unreadable", "bad-field", "streamed"}
    assert errors[None]["response"] is None and errors[None]["error"]["code"] == "invalid_json"
    assert errors["no-body"]["error"]["code"] == "invalid_body"
    unreadable = errors["unreadable"]["response"]
    assert unreadable["status_code"] == 400 and unreadable["body"]["error"]["code"] == "unreadable_prompt"
    assert errors["bad-field"]["response"]["body"]["error"]["param"] == "n"
    assert errors["streamed"]["response"]["body"]["error"]["param"] == "stream"


async def test_a_batch_of_bad_lines_only_completes_at_once_with_its_error_file(client: openai.AsyncOpenAI) -> None:
    data = _jsonl([b"[1, 2]", _line("unreadable", "Translate to Klingon:\n\nHello there.")])
    batch = await client.batches.create(
        input_file_id=await _upload(client, data), endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "completed" and batch.output_file_id is None
    assert batch.request_counts is not None and batch.request_counts.failed == 2
    assert set(await _lines(client, batch.error_file_id)) == {None, "unreadable"}


async def test_a_line_the_service_fails_is_an_error_line_with_its_status(client: openai.AsyncOpenAI) -> None:
    data = _jsonl(
        [
            _line("ok", "Translate to Japanese:\n\nHello."),
            _line("no-model", "Translate to Japanese:\n\nHi.", model="no-such-model"),
        ]
    )
    batch = await client.batches.create(
        input_file_id=await _upload(client, data), endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = await _ended(client, batch.id)
    errors = await _lines(client, done.error_file_id)
    assert list(errors) == ["no-model"]
    response = errors["no-model"]["response"]
    assert response["status_code"] == 400 and "no-such-model" in response["body"]["error"]["message"]
    # Named as the caller's own request names it, not by its place in the service's job.
    assert response["body"]["error"]["param"] == "model", response
    assert not response["body"]["error"]["message"].startswith("requests[")
    assert list(await _lines(client, done.output_file_id)) == ["ok"]


async def test_cancel_ends_the_batch_cancelled(client: openai.AsyncOpenAI, sim: Sim) -> None:
    await sim.set(ttft_s=5.0)  # long enough to act on a batch in progress; the sim stops after it
    data = _jsonl([_line(f"c{n}", f"Translate to Japanese:\n\nLine {n}.") for n in range(3)])
    batch = await client.batches.create(
        input_file_id=await _upload(client, data), endpoint="/v1/chat/completions", completion_window="24h"
    )
    cancelling = await client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at is not None
    done = await _ended(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at is not None
    errors = await _lines(client, done.error_file_id)
    assert sorted(errors) == ["c0", "c1", "c2"]
    assert {e["error"]["code"] for e in errors.values()} == {"batch_cancelled"}
    # Cancelling a cancelled batch answers it as it is.
    assert (await client.batches.cancel(batch.id)).status == "cancelled"


async def test_a_cancelled_batch_keeps_the_lines_answered_before_it_stopped(
    client: openai.AsyncOpenAI, sim: Sim
) -> None:
    await sim.set(ttft_s=0.2)  # 64 lines, 16 at a time: four rounds, the cancel lands after the first
    ids = [f"p{n}" for n in range(64)]
    data = _jsonl([_line(i, f"Translate to Japanese:\n\nLine {i}.") for i in ids])
    batch = await client.batches.create(
        input_file_id=await _upload(client, data), endpoint="/v1/chat/completions", completion_window="24h"
    )

    async def some_answered() -> bool:
        return (await client.batches.retrieve(batch.id)).request_counts.completed > 0  # type: ignore[union-attr]

    await eventually(some_answered, 10.0, "a line answered")
    await client.batches.cancel(batch.id)
    done = await _ended(client, batch.id)
    assert done.status == "cancelled"
    out, errors = await _lines(client, done.output_file_id), await _lines(client, done.error_file_id)
    # Every line once: the answered ones in the output with their answers, the rest told they never ran.
    assert out and errors and sorted([*out, *errors]) == sorted(ids)
    assert all(
        line["response"]["body"]["choices"][0]["message"]["content"].endswith(f"Line {i}.") for i, line in out.items()
    )
    assert {e["error"]["code"] for e in errors.values()} == {"batch_cancelled"}
    assert done.request_counts is not None and done.request_counts.completed == len(out)


async def test_files_expire_as_asked_and_by_default_after_the_shims_keep_time(client: openai.AsyncOpenAI) -> None:
    data = _jsonl([_line("a", "Translate to Japanese:\n\nHi.")])
    default = await client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    assert default.expires_at == default.created_at + 30 * 86400
    asked = await client.files.create(
        file=("in.jsonl", io.BytesIO(data)), purpose="batch", expires_after={"anchor": "created_at", "seconds": 7200}
    )
    assert asked.expires_at == asked.created_at + 7200
    batch = await client.batches.create(
        input_file_id=asked.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        output_expires_after={"anchor": "created_at", "seconds": 3600},
    )
    done = await _ended(client, batch.id)
    assert done.output_file_id is not None
    output = await client.files.retrieve(done.output_file_id)
    assert output.expires_at == output.created_at + 3600
    for bad in ({"anchor": "created_at", "seconds": 60}, {"anchor": "last_active_at", "seconds": 7200}):
        with pytest.raises(openai.BadRequestError, match="expires_after"):
            await client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch", expires_after=bad)  # type: ignore[arg-type]
        with pytest.raises(openai.BadRequestError, match="output_expires_after"):
            await client.batches.create(
                input_file_id=asked.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                output_expires_after=bad,  # type: ignore[arg-type]
            )


async def test_a_batch_whose_job_the_service_lost_fails(
    client: openai.AsyncOpenAI, sim: Sim, channel: grpc.aio.Channel
) -> None:
    await sim.set(ttft_s=5.0)  # long enough to act on a batch in progress; the sim stops after it
    data = _jsonl([_line("a", "Translate to Japanese:\n\nHi.")])
    batch = await client.batches.create(
        input_file_id=await _upload(client, data), endpoint="/v1/chat/completions", completion_window="24h"
    )
    ops = lro_grpc.OperationsStub(channel)
    listed = await ops.ListOperations(lro.ListOperationsRequest())
    [name] = [op.name for op in listed.operations]
    await ops.CancelOperation(lro.CancelOperationRequest(name=name))
    await ops.DeleteOperation(lro.DeleteOperationRequest(name=name))
    failed = await client.batches.retrieve(batch.id)
    assert failed.status == "failed" and failed.failed_at is not None
    assert failed.errors is not None and failed.errors.data is not None
    assert failed.errors.data[0].code == "job_lost"


async def test_list_pages_newest_first(client: openai.AsyncOpenAI) -> None:
    file_id = await _upload(client, _jsonl([_line("a", "Translate to Japanese:\n\nHi.")]))
    made = [
        (
            await client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
        ).id
        for _ in range(3)
    ]
    first = await client.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more
    rest = await client.batches.list(limit=2, after=first.data[-1].id)
    assert [b.id for b in rest.data] == made[:1] and not rest.has_more
    every = [b.id async for b in await client.batches.list(limit=1)]
    assert every == made[::-1]
    files = await client.files.list()
    assert file_id in [f.id for f in files.data]
    deleted = await client.files.delete(file_id)
    assert deleted.deleted
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(file_id)


async def test_malformed_batches_are_400s(client: openai.AsyncOpenAI) -> None:
    file_id = await _upload(client, _jsonl([_line("a", "Translate to Japanese:\n\nHi.")]))
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        await client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    with pytest.raises(openai.BadRequestError, match="metadata"):
        metadata = {f"k{n}": "v" for n in range(17)}
        await client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h", metadata=metadata
        )
    with pytest.raises(openai.NotFoundError):
        await client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    twice = await _upload(client, _jsonl([_line("a", "x"), _line("a", "y")]))
    with pytest.raises(openai.BadRequestError, match="more than once"):
        await client.batches.create(input_file_id=twice, endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        await client.files.create(file=("x.jsonl", io.BytesIO(b"{}\n")), purpose="fine-tune")
    with pytest.raises(openai.NotFoundError):
        await client.batches.retrieve("batch_nope")


async def test_too_many_lines_is_a_400(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="50000"):
        await client.files.create(file=("big.jsonl", io.BytesIO(b"{}\n" * 50_001)), purpose="batch")


class TestFileBound:
    @pytest.fixture
    def shim_config(self) -> ShimConfig:
        # Past the body bound of the chat routes, within the files' own.
        return ShimConfig(port=0, default_target_language="zh", max_body_bytes=1000, max_file_bytes=10_000)

    async def test_an_upload_past_the_file_bound_is_a_400_and_one_within_it_passes(
        self, client: openai.AsyncOpenAI
    ) -> None:
        line = json.dumps(_line("a", "Translate to Japanese:\n\nHi.")).encode() + b"\n"
        ok = await client.files.create(file=("ok.jsonl", io.BytesIO(line * 50)), purpose="batch")
        assert ok.bytes == len(line) * 50 > 1000
        with pytest.raises(openai.BadRequestError, match="10000 bytes"):
            await client.files.create(file=("big.jsonl", io.BytesIO(b"x" * 10_001)), purpose="batch")


class TestDurable:
    @pytest.fixture
    def shim_config(self, tmp_path: Any) -> ShimConfig:
        return ShimConfig(port=0, default_target_language="zh", data_dir=str(tmp_path))

    async def test_files_and_batches_outlive_the_shim(
        self, shim: RunningShim, client: openai.AsyncOpenAI, shim_config: ShimConfig
    ) -> None:
        file_id = await _upload(client, _jsonl([_line("a", "Translate to Japanese:\n\nHi.")]))
        batch = await client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        # A second shim on the same data directory (as after a restart) finds the file and the batch.
        cfg = dataclasses.replace(shim_config, grpc_target=shim.app[STATE].config.grpc_target)
        async with running_shim(cfg) as second:
            async with openai.AsyncOpenAI(base_url=f"{second.url}/v1", api_key=KEY, max_retries=0) as other:
                assert (await other.files.retrieve(file_id)).id == file_id
                done = await _ended(other, batch.id)
                assert done.status == "completed"
                assert list(await _lines(other, done.output_file_id)) == ["a"]


class TestKeys:
    @pytest.fixture
    def shim_config(self) -> ShimConfig:
        return ShimConfig(port=0, default_target_language="zh", api_keys=frozenset({KEY}))

    async def test_the_routes_need_a_key(self, shim: RunningShim, client: openai.AsyncOpenAI) -> None:
        async with aiohttp.ClientSession(shim.url) as anonymous:
            for method, path in (("GET", "/v1/batches"), ("GET", "/v1/files"), ("POST", "/v1/files")):
                async with anonymous.request(method, path) as r:
                    assert r.status == 401, path
        assert (await client.batches.list()).data == []


class TestPassthrough:
    @pytest.fixture
    def shim_config(self) -> ShimConfig:
        return ShimConfig(port=0, default_target_language="zh", passthrough_model="doubao-seed-1-6-flash-250828")

    async def test_an_unreadable_line_is_answered_by_the_passthrough_model_as_one_reply(
        self, client: openai.AsyncOpenAI
    ) -> None:
        rewrite = (
            "Translate the YAML below into German, and put each part's translation after it in parentheses.\n\n"
            "<yaml>\n- id: 1\n  text: Good morning\n- id: 2\n  text: See you\n</yaml>"
        )
        file_id = await _upload(
            client, _jsonl([_line("rewrite", rewrite), _line("plain", "Translate to German:\n\nHi")])
        )
        batch = await client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        done = await _ended(client, batch.id)
        assert done.status == "completed" and done.error_file_id is None, done
        out = await _lines(client, done.output_file_id)
        reply = out["rewrite"]["response"]["body"]
        assert (
            reply["served_model"] == "doubao-seed-1-6-flash-250828"
            and "- id: 2" in reply["choices"][0]["message"]["content"]
        )
        assert out["plain"]["response"]["body"]["choices"][0]["message"]["content"] == "[sim auto->de] Hi"
