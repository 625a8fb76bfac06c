"""UploadFile / GetFile / ListFiles / DeleteFile and BatchTranslate(input_file_id) on a real server with the
simulated provider: a job from a file answers as the same job inline; bad uploads and bad ids are refused naming
the field (and the line); a file is its tenant's; it expires after keep_s and survives a restart (SQLite); with
two replicas sharing a real redis-server, a file one took is run by a job submitted to the other."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.longrunning import operations_pb2 as lro
from google.longrunning import operations_pb2_grpc as lro_grpc
from google.protobuf import duration_pb2, json_format
from google.rpc import code_pb2
from translane.config import CacheConfig, Config
from translane.server import running_server
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..conftest import Sim, server_config
from ..helpers.eventually import eventually
from ..helpers.redis_server import RedisServer
from .test_shared_jobs import replicas, shared_config
from .test_tenants import KEY_A, KEY_B, TENANTS, bearer, with_tenants, write


def _timeout(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(timedelta(seconds=seconds))
    return out


def _requests(n: int) -> list[pb.TranslateRequest]:
    return [pb.TranslateRequest(segments=[f"line {i}"], target_language="zh", task_id=f"t{i}") for i in range(n)]


def jsonl(requests: Iterable[pb.TranslateRequest]) -> bytes:
    return b"".join(json_format.MessageToJson(r, indent=None).encode() + b"\n" for r in requests)


async def _chunks(data: bytes, size: int, first: pb.FileChunk) -> AsyncIterator[pb.FileChunk]:
    yield first
    for start in range(0, len(data), size):
        yield pb.FileChunk(data=data[start : start + size])


async def upload(
    stub: pb_grpc.TranslatorStub,
    data: bytes,
    size: int = 1 << 20,
    first: pb.FileChunk | None = None,
    metadata: tuple[tuple[str, str], ...] = (),
) -> pb.File:
    head = first if first is not None else pb.FileChunk(filename="in.jsonl", purpose="batch")
    answer: pb.File = await stub.UploadFile(_chunks(data, size, head), timeout=30, metadata=metadata)
    return answer


def _metadata(op: lro.Operation) -> pb.BatchTranslateMetadata:
    meta = pb.BatchTranslateMetadata()
    assert op.metadata.Unpack(meta)
    return meta


def _response(op: lro.Operation) -> pb.BatchTranslateResponse:
    assert op.done and op.WhichOneof("result") == "response", op
    answer = pb.BatchTranslateResponse()
    assert op.response.Unpack(answer)
    return answer


def _comparable(answer: pb.BatchTranslateResponse) -> list[tuple[int, str, str, int]]:
    """Each result without what differs from run to run (timings)."""
    out = []
    for r in answer.results:
        if r.WhichOneof("result") == "response":
            out.append((r.index, r.response.translations[0].text, r.response.task_id, r.response.usage.total_tokens))
        else:
            out.append((r.index, r.error.message, "", r.error.code))
    return out


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call  # type: ignore[misc]
    return refused.value


async def test_a_job_from_a_file_answers_as_the_same_job_inline(
    stub: pb_grpc.TranslatorStub, channel: grpc.aio.Channel
) -> None:
    ops = lro_grpc.OperationsStub(channel)
    requests = _requests(30)
    requests[4].target_language = ""  # a request that cannot be served fails alone, at run time, as inline
    data = jsonl(requests)
    # Small chunks: lines cut across chunks are read whole.
    got = await upload(stub, data, size=37)
    assert got.id.startswith("file-") and (got.filename, got.purpose) == ("in.jsonl", "batch")
    assert (got.size_bytes, got.request_count) == (len(data), 30)
    assert got.expire_time.seconds - got.create_time.seconds == 7 * 86400
    assert await stub.GetFile(pb.GetFileRequest(id=got.id)) == got
    assert list((await stub.ListFiles(pb.ListFilesRequest())).files) == [got]

    from_file = await stub.BatchTranslate(pb.BatchTranslateRequest(input_file_id=got.id, labels={"k": "v"}))
    meta = _metadata(from_file)
    assert (meta.total, meta.input_file_id, dict(meta.labels)) == (30, got.id, {"k": "v"})
    inline = await stub.BatchTranslate(pb.BatchTranslateRequest(requests=requests))
    assert _metadata(inline).input_file_id == ""
    done_file = await ops.WaitOperation(lro.WaitOperationRequest(name=from_file.name, timeout=_timeout(20)))
    done_inline = await ops.WaitOperation(lro.WaitOperationRequest(name=inline.name, timeout=_timeout(20)))
    results = _response(done_file).results
    assert [r.index for r in results] == list(range(30))
    assert results[0].response.translations[0].text == "[sim auto->zh] line 0"
    assert results[4].error.code == code_pb2.INVALID_ARGUMENT
    assert results[4].error.message.startswith("requests[4].target_language: required")
    assert _comparable(_response(done_file)) == _comparable(_response(done_inline))

    # The job keeps its own copy: the file deleted, it is answered still; the file is gone everywhere.
    await stub.DeleteFile(pb.DeleteFileRequest(id=got.id))
    assert _comparable(_response(await ops.GetOperation(lro.GetOperationRequest(name=from_file.name)))) == (
        _comparable(_response(done_inline))
    )
    for call in (
        stub.GetFile(pb.GetFileRequest(id=got.id)),
        stub.DeleteFile(pb.DeleteFileRequest(id=got.id)),
        stub.BatchTranslate(pb.BatchTranslateRequest(input_file_id=got.id)),
    ):
        gone = await _refused(call)
        assert gone.code() == grpc.StatusCode.NOT_FOUND
    assert not (await stub.ListFiles(pb.ListFilesRequest())).files


async def test_files_are_listed_a_page_at_a_time(stub: pb_grpc.TranslatorStub) -> None:
    ids = [(await upload(stub, jsonl(_requests(1)))).id for _ in range(3)]
    first = await stub.ListFiles(pb.ListFilesRequest(page_size=2))
    assert [f.id for f in first.files] == ids[:2] and first.next_page_token
    second = await stub.ListFiles(pb.ListFilesRequest(page_size=2, page_token=first.next_page_token))
    assert [f.id for f in second.files] == ids[2:] and not second.next_page_token
    for bad in (pb.ListFilesRequest(page_size=-1), pb.ListFilesRequest(page_token="x")):
        assert (await _refused(stub.ListFiles(bad))).code() == grpc.StatusCode.INVALID_ARGUMENT


GOOD = b'{"segments": ["Hello"], "targetLanguage": "zh"}\n'


@pytest.mark.parametrize(
    ("first", "data", "said"),
    [
        (None, GOOD + b"{not json\n" + GOOD, "data: line 2 is not JSON: "),
        (None, GOOD * 2 + b'{"segments": ["x"], "target_lang": "zh"}\n', "data: line 3 is not a TranslateRequest: "),
        (None, GOOD + b'{"segments": "x"}', "data: line 2 is not a TranslateRequest: "),
        (None, GOOD + b"[1, 2]\n", "data: line 2 is a JSON list, not an object (a TranslateRequest)"),
        (None, GOOD + b"\n" + GOOD, "data: line 2 is blank"),
        (None, GOOD + b'{"segments": ["\xff"]}\n', "data: line 2: not valid UTF-8"),
        (None, b"", "data: the file holds no requests"),
        (pb.FileChunk(filename="x.jsonl"), GOOD, "purpose: required; the one accepted is 'batch'"),
        (pb.FileChunk(purpose="fine-tune"), GOOD, "purpose: 'fine-tune' is not one; the one accepted is 'batch'"),
        (pb.FileChunk(purpose="batch", filename="x" * 256), GOOD, "filename: 256 characters, over 255"),
    ],
)
async def test_a_bad_upload_is_refused_naming_the_field_and_line(
    stub: pb_grpc.TranslatorStub, first: pb.FileChunk | None, data: bytes, said: str
) -> None:
    refused = await _refused(upload(stub, data, size=16, first=first))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.details() or "").startswith(said), refused.details()
    # Nothing of a refused upload is kept.
    assert not (await stub.ListFiles(pb.ListFilesRequest())).files


async def test_a_refusal_reaches_a_client_still_sending_chunks(stub: pb_grpc.TranslatorStub) -> None:
    # Refused at its first chunk with more to come: a grpc.aio client whose write fails as the call ends may
    # report INTERNAL instead of the status (grpc/grpc#36066; one upload in a hundred or so), unless the server
    # reads what it still sends first.
    codes = set()
    for _ in range(200):
        refused = await _refused(upload(stub, GOOD * 4, size=16, first=pb.FileChunk(purpose="fine-tune")))
        codes.add((refused.code(), refused.details()))
    assert codes == {(grpc.StatusCode.INVALID_ARGUMENT, "purpose: 'fine-tune' is not one; the one accepted is 'batch'")}


async def test_names_on_a_later_chunk_and_no_chunk_at_all_are_refused(stub: pb_grpc.TranslatorStub) -> None:
    async def renamed() -> AsyncIterator[pb.FileChunk]:
        yield pb.FileChunk(purpose="batch", data=GOOD)
        yield pb.FileChunk(filename="other.jsonl", data=GOOD)

    async def nothing() -> AsyncIterator[pb.FileChunk]:
        return
        yield

    refused = await _refused(stub.UploadFile(renamed(), timeout=10))
    assert (refused.code(), refused.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "filename, purpose: only on the first chunk; later chunks carry data alone",
    )
    refused = await _refused(stub.UploadFile(nothing(), timeout=10))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.details() or "").startswith("purpose: required")


async def test_more_than_50000_lines_is_refused(stub: pb_grpc.TranslatorStub) -> None:
    refused = await _refused(upload(stub, b"{}\n" * 50_001))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.details() == "data: more than 50000 lines, the limit of a job's requests"


class TestSmallFiles:
    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        cfg = server_config(sim)
        return dataclasses.replace(cfg, jobs=dataclasses.replace(cfg.jobs, max_file_bytes=100))

    async def test_a_file_past_max_file_bytes_is_refused(self, stub: pb_grpc.TranslatorStub) -> None:
        assert (await upload(stub, GOOD * 2)).size_bytes == 2 * len(GOOD)  # 96 bytes: under the bound
        refused = await _refused(upload(stub, GOOD * 3, size=1000))
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.details() == "data: the file passes 100 bytes, the limit of a file ([jobs] max_file_bytes)"


@pytest.mark.parametrize(
    ("request_", "code", "said"),
    [
        (
            pb.BatchTranslateRequest(input_file_id="file-0123", requests=_requests(2)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "requests, input_file_id: give the requests inline or as a file, not both (2 requests and the file "
            "'file-0123')",
        ),
        (
            pb.BatchTranslateRequest(completion_window="1h"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "requests: at least one request is required (or input_file_id: a file of them UploadFile stored)",
        ),
        (
            pb.BatchTranslateRequest(input_file_id="file-0123"),
            grpc.StatusCode.NOT_FOUND,
            "input_file_id: no file 'file-0123': it expired (files are kept 7d after their upload), was deleted, "
            "or never existed",
        ),
        (
            pb.BatchTranslateRequest(input_file_id="operations/x"),
            grpc.StatusCode.NOT_FOUND,
            "input_file_id: no file 'operations/x'",
        ),
    ],
)
async def test_a_job_naming_a_file_badly_is_refused_naming_the_field(
    stub: pb_grpc.TranslatorStub, request_: pb.BatchTranslateRequest, code: grpc.StatusCode, said: str
) -> None:
    refused = await _refused(stub.BatchTranslate(request_))
    assert refused.code() == code
    assert (refused.details() or "").startswith(said), refused.details()


async def test_an_undecodable_chunk_is_refused_naming_the_field(channel: grpc.aio.Channel) -> None:
    # A FileChunk whose `filename` (field 1) is not UTF-8, sent as raw bytes.
    upload_raw = channel.stream_unary("/translane.v1.Translator/UploadFile")

    async def raw() -> AsyncIterator[bytes]:
        yield b"\x0a\x02\xff\xfe"

    refused = await _refused(upload_raw(raw(), timeout=10))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.details() or "").startswith("filename: not valid UTF-8")


class TestTenants:
    @pytest.fixture
    def config(self, sim: Sim, tmp_path: Path) -> Config:
        return with_tenants(server_config(sim), write(tmp_path / "tenants.toml", TENANTS))

    async def test_a_file_is_its_tenants_alone(self, stub: pb_grpc.TranslatorStub, channel: grpc.aio.Channel) -> None:
        got = await upload(stub, jsonl(_requests(2)), metadata=bearer(KEY_A))
        as_b = bearer(KEY_B)
        for call in (
            stub.GetFile(pb.GetFileRequest(id=got.id), timeout=10, metadata=as_b),
            stub.DeleteFile(pb.DeleteFileRequest(id=got.id), timeout=10, metadata=as_b),
            stub.BatchTranslate(pb.BatchTranslateRequest(input_file_id=got.id), timeout=10, metadata=as_b),
        ):
            refused = await _refused(call)
            assert refused.code() == grpc.StatusCode.NOT_FOUND
            assert f"no file '{got.id}'" in (refused.details() or "")
        assert not (await stub.ListFiles(pb.ListFilesRequest(), timeout=10, metadata=as_b)).files
        assert (await _refused(upload(stub, GOOD))).code() == grpc.StatusCode.UNAUTHENTICATED
        # Its own tenant runs a job from it, charged to that tenant.
        op = await stub.BatchTranslate(
            pb.BatchTranslateRequest(input_file_id=got.id), timeout=10, metadata=bearer(KEY_A)
        )
        done = await lro_grpc.OperationsStub(channel).WaitOperation(
            lro.WaitOperationRequest(name=op.name, timeout=_timeout(20)), timeout=30, metadata=bearer(KEY_A)
        )
        assert [r.response.translations[0].text for r in _response(done).results] == [
            "[sim auto->zh] line 0",
            "[sim auto->zh] line 1",
        ]


class TestExpiry:
    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        cfg = server_config(sim)
        return dataclasses.replace(cfg, jobs=dataclasses.replace(cfg.jobs, keep_s=1.0))

    async def test_a_file_is_not_found_once_its_keep_passes(self, stub: pb_grpc.TranslatorStub) -> None:
        got = await upload(stub, jsonl(_requests(1)))

        async def expired() -> grpc.aio.AioRpcError | None:
            try:
                await stub.GetFile(pb.GetFileRequest(id=got.id))
            except grpc.aio.AioRpcError as exc:
                return exc
            return None

        gone = await eventually(expired, 5.0, "the file forgotten")
        assert gone.code() == grpc.StatusCode.NOT_FOUND
        assert "files are kept 1s after their upload" in (gone.details() or "")
        assert not (await stub.ListFiles(pb.ListFilesRequest())).files


async def test_a_file_survives_a_restart_on_the_same_data_dir(sim: Sim, tmp_path: Path) -> None:
    cfg = dataclasses.replace(server_config(sim), cache=CacheConfig(kind="sqlite", path=str(tmp_path / "cache.db")))
    async with running_server(cfg) as first, grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as ch:
        got = await upload(pb_grpc.TranslatorStub(ch), jsonl(_requests(3)))
    assert (tmp_path / "files.sqlite3").exists()
    async with running_server(cfg) as second, grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as ch:
        stub = pb_grpc.TranslatorStub(ch)
        assert await stub.GetFile(pb.GetFileRequest(id=got.id)) == got
        op = await stub.BatchTranslate(pb.BatchTranslateRequest(input_file_id=got.id))
        done = await lro_grpc.OperationsStub(ch).WaitOperation(
            lro.WaitOperationRequest(name=op.name, timeout=_timeout(20)), timeout=30
        )
        assert [r.response.task_id for r in _response(done).results] == ["t0", "t1", "t2"]


async def test_a_file_one_replica_took_is_run_by_a_job_submitted_to_another(
    sim: Sim, redis_server: RedisServer
) -> None:
    cfg = shared_config(sim, redis_server, "files", claim_idle_s=3.0)
    async with replicas(cfg, cfg) as [(_, a), (_, b)]:
        got = await upload(pb_grpc.TranslatorStub(a), jsonl(_requests(40)), size=1000)
        stub_b = pb_grpc.TranslatorStub(b)
        assert await stub_b.GetFile(pb.GetFileRequest(id=got.id)) == got
        assert [f.id for f in (await stub_b.ListFiles(pb.ListFilesRequest())).files] == [got.id]
        op = await stub_b.BatchTranslate(pb.BatchTranslateRequest(input_file_id=got.id))
        done = await lro_grpc.OperationsStub(a).WaitOperation(
            lro.WaitOperationRequest(name=op.name, timeout=_timeout(20)), timeout=30
        )
        results = _response(done).results
        assert [r.response.translations[0].text for r in results] == [f"[sim auto->zh] line {i}" for i in range(40)]
        assert _metadata(done).input_file_id == got.id
        await pb_grpc.TranslatorStub(a).DeleteFile(pb.DeleteFileRequest(id=got.id))
        assert (await _refused(stub_b.GetFile(pb.GetFileRequest(id=got.id)))).code() == grpc.StatusCode.NOT_FOUND


async def test_a_shared_file_expires_after_keep_s(sim: Sim, redis_server: RedisServer) -> None:
    cfg = shared_config(sim, redis_server, "files-keep", keep_s=1.0)
    async with replicas(cfg) as [(_, a)]:
        stub = pb_grpc.TranslatorStub(a)
        got = await upload(stub, jsonl(_requests(2)))

        async def expired() -> bool:
            try:
                await stub.GetFile(pb.GetFileRequest(id=got.id))
            except grpc.aio.AioRpcError as exc:
                return exc.code() == grpc.StatusCode.NOT_FOUND
            return False

        await eventually(expired, 5.0, "the shared file expired")
        assert not (await stub.ListFiles(pb.ListFilesRequest())).files
