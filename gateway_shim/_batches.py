"""OpenAI Batches, /v1/batches (the files they read and write: _files), onto BatchTranslate and
google.longrunning.Operations.

A batch's input lines are read as the online chat route reads a body (translane.wire.parse_chat); the good
ones go to the service as BatchTranslate jobs at batch priority, a line that cannot be read becomes an error
line of the batch. The Batch object is the jobs' Operations shown as OpenAI shows a batch; once they are done,
its output and error files are written (answers rendered as the chat route renders them) and kept.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from google.longrunning import operations_pb2 as lro
from google.rpc import code_pb2
from translane.errors import quote, quote_id
from translane.v1 import translate_pb2 as pb
from translane.wire import ChatRequest, WireError, completion, from_status, parse_chat

from ._files import BATCHES, expiry, file_routes, not_found, page
from ._http import STATE, TENANT, json_response, read_json
from ._store import LineRow, new_id

__all__ = ["routes"]

ENDPOINT = "/v1/chat/completions"
WINDOW = "24h"
_WINDOW_S = 24 * 3600
# OpenAI's bounds.
MAX_METADATA_PAIRS, MAX_METADATA_KEY_CHARS, MAX_METADATA_VALUE_CHARS = 16, 64, 512
# A BatchTranslate call's requests stay under this many bytes, so the call and its finished operation (the
# results, somewhat larger than the requests) stay under the 32 MiB both ends take: a larger batch is several jobs.
_JOB_BYTES = 8 * 1024 * 1024
_ENDED = ("completed", "failed", "expired", "cancelled")
_CODES = {c.value[0]: c for c in grpc.StatusCode}
_UNNAMED_MODEL = "translane"
# How the service names a job's line in a failed line's message.
_PLACE = re.compile(r"requests\[[0-9]+\](?:\.|: )")


def routes() -> list[web.RouteDef]:
    """The Files + Batches handlers."""
    return [
        *file_routes(),
        web.post("/v1/batches", create_batch),
        web.get("/v1/batches", list_batches),
        web.get("/v1/batches/{batch_id}", retrieve_batch),
        web.post("/v1/batches/{batch_id}/cancel", cancel_batch),
    ]


# -- reading a batch's lines ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Line:
    """One input line as read: its request for the service, or an answer of our own (a connection check), or
    why it failed (`status` 0: not a request line at all)."""

    custom_id: str | None
    body: str | None = None
    request: pb.TranslateRequest | None = None
    status: int = 0
    error: dict[str, Any] | None = None


def _read_line(text: str, default_target: str, passthrough: str) -> _Line:
    try:
        line = json.loads(text)
    except ValueError as exc:
        return _Line(None, error={"code": "invalid_json", "message": f"the line is not valid JSON: {exc}"})
    if not isinstance(line, dict):
        return _Line(None, error={"code": "invalid_json", "message": "the line is not a JSON object"})
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return _Line(None, error={"code": "missing_custom_id", "message": "custom_id: expected a non-empty string"})
    method, url, body = line.get("method", "POST"), line.get("url", ENDPOINT), line.get("body")
    if method != "POST" or url != ENDPOINT:
        got = f"{quote(str(method)[:10])} {quote(str(url)[:80])}"
        message = f"method and url: expected POST {ENDPOINT} (the batch's endpoint), got {got}"
        return _Line(custom_id, error={"code": "invalid_url", "message": message})
    if not isinstance(body, dict):
        return _Line(custom_id, error={"code": "invalid_body", "message": "body: expected the request as an object"})
    try:
        chat = _chat(body, default_target)
        if chat.stream:
            raise WireError.unsupported("stream", "a batch line is answered whole: leave it out or send false", True)
        chat = chat.passthrough_to(passthrough)
    except WireError as exc:
        return _Line(custom_id, status=exc.status, error=json.loads(exc.body()))
    dumped = json.dumps(body, ensure_ascii=False)
    if chat.batch is None:
        return _Line(custom_id, body=dumped)  # a connection check: answered here, as online
    req = chat.grpc_request()
    req.priority = pb.PRIORITY_BATCH
    return _Line(custom_id, body=dumped, request=req)


def _chat(body: Mapping[str, Any], default_target: str) -> ChatRequest:
    task_id = body.get("task_id")
    return parse_chat(body, task_id if isinstance(task_id, str) else "", default_target)


def _read_lines(data: bytes, default_target: str, passthrough: str) -> list[_Line]:
    """Every non-blank line of the input, read (pure; run in a thread for a large file)."""
    out = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            out.append(_Line(None, error={"code": "invalid_json", "message": f"the line is not UTF-8: {exc.reason}"}))
            continue
        out.append(_read_line(text, default_target, passthrough))
    return out


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_METADATA_PAIRS:
        raise WireError.bad_field("metadata", f"an object of at most {MAX_METADATA_PAIRS} string pairs", value)
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY_CHARS or not isinstance(item, str) or len(item) > MAX_METADATA_VALUE_CHARS:
            raise WireError.bad_field(
                "metadata",
                f"keys of at most {MAX_METADATA_KEY_CHARS} characters, string values of at most "
                f"{MAX_METADATA_VALUE_CHARS}",
                {key: item},
            )
    return dict(value)


# -- batches --------------------------------------------------------------------------------------------------------


async def create_batch(request: web.Request) -> web.Response:
    """POST /v1/batches: read the input file's lines, submit the good ones as BatchTranslate jobs."""
    state = request.app[STATE]
    store = request.app[BATCHES].store
    body = await read_json(request, state.config.max_body_bytes, state.backend.timeout(request.headers, False))
    file_id = body.get("input_file_id")
    if not isinstance(file_id, str):
        raise WireError.bad_field("input_file_id", "the id of a file uploaded with purpose 'batch'", file_id)
    if body.get("endpoint") != ENDPOINT:
        raise WireError.bad_field(
            "endpoint", f"{quote(ENDPOINT)} (the one endpoint the shim batches)", body.get("endpoint")
        )
    if body.get("completion_window") != WINDOW:
        raise WireError.bad_field("completion_window", quote(WINDOW), body.get("completion_window"))
    metadata = _metadata(body.get("metadata"))
    output_keep_s = None
    policy = body.get("output_expires_after")
    if policy is not None:
        if not isinstance(policy, dict):
            raise WireError.bad_field("output_expires_after", "an object {anchor, seconds}", policy)
        output_keep_s = expiry(policy.get("anchor"), policy.get("seconds"), "output_expires_after")
    row = store.file(file_id, request.get(TENANT, ""))
    if row is None:
        raise not_found("file", file_id)
    if row.purpose != "batch":
        raise WireError(400, f"input_file_id: {quote_id(file_id)} is not a batch input", param="input_file_id")
    data = await asyncio.to_thread(store.path(file_id).read_bytes)
    config = state.config
    lines = await asyncio.to_thread(_read_lines, data, config.default_target_language, config.passthrough_model)
    if not lines:
        raise WireError(
            400,
            f"input_file_id: {quote_id(file_id)} holds no lines",
            param="input_file_id",
            code="empty_file",
        )
    seen: set[str] = set()
    for line in lines:
        if line.custom_id is not None and line.custom_id in seen:
            raise WireError(
                400,
                f"input_file_id: custom_id {quote(line.custom_id[:80])} appears more than once: one line each",
                param="input_file_id",
                code="duplicate_custom_id",
            )
        if line.custom_id is not None:
            seen.add(line.custom_id)
    batch_id = new_id("batch_")
    rows, jobs = _plan(lines)
    operations: list[str] = []
    try:
        for requests in jobs:
            op = await state.backend.batch_translate(
                pb.BatchTranslateRequest(
                    requests=requests,
                    completion_window=WINDOW,
                    priority=pb.PRIORITY_BATCH,
                    labels={"openai_batch": batch_id},
                )
            )
            operations.append(op.name)
    except BaseException:
        for name in operations:
            await _cancel(state.backend, name)
        raise
    now = int(time.time())
    obj = {
        "id": batch_id,
        "object": "batch",
        "endpoint": ENDPOINT,
        "model": None,
        "errors": None,
        "input_file_id": file_id,
        "completion_window": WINDOW,
        "status": "in_progress",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": now,
        "in_progress_at": now,
        "expires_at": now + _WINDOW_S,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
        "metadata": metadata,
        "usage": _usage(0, 0),
    }
    store.add_batch(obj, operations, rows, output_keep_s, request.get(TENANT, ""))
    return json_response(await _refresh(request, batch_id))


def _plan(lines: Sequence[_Line]) -> tuple[list[LineRow], list[list[pb.TranslateRequest]]]:
    """Each line's row (where its answer will come from), and the jobs that carry the requests."""
    rows: list[LineRow] = []
    jobs: list[list[pb.TranslateRequest]] = []
    job_bytes = 0
    for n, line in enumerate(lines):
        if line.request is None:
            error = None if line.error is None else json.dumps({"status": line.status, "error": line.error})
            rows.append(LineRow(n, line.custom_id, -1, -1, line.body, error))
            continue
        size = line.request.ByteSize() + 8
        if not jobs or job_bytes + size > _JOB_BYTES:
            jobs.append([])
            job_bytes = 0
        jobs[-1].append(line.request)
        job_bytes += size
        rows.append(LineRow(n, line.custom_id, len(jobs) - 1, len(jobs[-1]) - 1, line.body, None))
    return rows, jobs


def _usage(prompt: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion_tokens,
    }


async def _cancel(backend: Any, name: str) -> None:
    try:
        await backend.cancel_operation(name)
    except grpc.aio.AioRpcError as exc:
        if exc.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
            raise


async def retrieve_batch(request: web.Request) -> web.Response:
    """GET /v1/batches/{batch_id}."""
    return json_response(await _refresh(request, request.match_info["batch_id"]))


async def list_batches(request: web.Request) -> web.Response:
    """GET /v1/batches: newest first, `after`, `limit`; the batches shown are brought up to date."""
    store = request.app[BATCHES].store
    shown = page([{"id": ident} for ident in store.batch_ids(request.get(TENANT, ""))], request.query)
    shown["data"] = [await _refresh(request, item["id"]) for item in shown["data"]]
    return json_response(shown)


async def cancel_batch(request: web.Request) -> web.Response:
    """POST /v1/batches/{batch_id}/cancel: no new line starts; the batch ends `cancelled`."""
    batch_id = request.match_info["batch_id"]
    batches = request.app[BATCHES]
    row = batches.store.batch(batch_id, request.get(TENANT, ""))
    if row is None:
        raise not_found("batch", batch_id)
    status = row.object["status"]
    if status in ("completed", "failed", "expired"):
        raise WireError(409, f"the batch is {status}: only a batch in progress can be cancelled", code="conflict")
    if status == "in_progress":
        async with batches._lock:
            row.object["status"] = "cancelling"
            row.object["cancelling_at"] = int(time.time())
            batches.store.save_batch(row.object)
        for name in row.operations:
            await _cancel(request.app[STATE].backend, name)
    return json_response(await _refresh(request, batch_id))


async def _refresh(request: web.Request, batch_id: str) -> dict[str, Any]:
    """The Batch object as its jobs now stand; its result files written when they have ended."""
    batches = request.app[BATCHES]
    backend = request.app[STATE].backend
    async with batches._lock:
        row = batches.store.batch(batch_id, request.get(TENANT, ""))
        if row is None:
            raise not_found("batch", batch_id)
        obj = row.object
        if obj["status"] in _ENDED:
            return obj
        try:
            ops = [await backend.operation(name) for name in row.operations]
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            # The service no longer has the job (deleted, or kept in memory by a service since restarted).
            now = int(time.time())
            lost = {"code": "job_lost", "message": f"the service lost the batch's job: {exc.details()}"}
            obj["status"], obj["failed_at"] = "failed", now
            obj["errors"] = {"object": "list", "data": [{**lost, "param": None, "line": None}]}
            batches.store.save_batch(obj, drop_lines=True)
            return obj
        metas = []
        for op in ops:
            meta = pb.BatchTranslateMetadata()
            op.metadata.Unpack(meta)
            metas.append(meta)
        lines = batches.store.lines(batch_id)
        local_ok = sum(1 for line in lines if line.op < 0 and line.error is None)
        local_failed = sum(1 for line in lines if line.op < 0 and line.error is not None)
        obj["request_counts"] = {
            "total": len(lines),
            "completed": local_ok + sum(m.done for m in metas),
            "failed": local_failed + sum(m.failed for m in metas),
        }
        obj["usage"] = _usage(sum(m.usage.prompt_tokens for m in metas), sum(m.usage.completion_tokens for m in metas))
        if not all(op.done for op in ops):
            return obj
        now = int(time.time())
        obj["finalizing_at"] = now
        cancelled = obj["status"] == "cancelling" or any(op.error.code == code_pb2.CANCELLED for op in ops)
        out, errors = await asyncio.to_thread(_results, lines, ops, request.app[STATE].config.default_target_language)
        store = batches.store
        keep_s = row.output_keep_s or batches.keep_s
        if out:
            obj["output_file_id"] = store.write_file(
                new_id("file-"), f"{batch_id}_output.jsonl", "batch_output", out, keep_s, row.owner
            ).id
        if errors:
            obj["error_file_id"] = store.write_file(
                new_id("file-"), f"{batch_id}_error.jsonl", "batch_output", errors, keep_s, row.owner
            ).id
        if cancelled:
            obj["status"], obj["cancelled_at"] = "cancelled", now
        elif now > obj["expires_at"]:
            obj["status"], obj["expired_at"] = "expired", now
        else:
            obj["status"], obj["completed_at"] = "completed", now
        store.save_batch(obj, drop_lines=True)
        return obj


def _results(lines: Sequence[LineRow], ops: Sequence[lro.Operation], default_target: str) -> tuple[bytes, bytes]:
    """The output file's bytes (answered lines) and the error file's (failed lines), in input order."""
    answers: list[dict[int, pb.BatchResult]] = []
    for op in ops:
        found: dict[int, pb.BatchResult] = {}
        response = pb.BatchTranslateResponse()
        if op.HasField("response"):
            op.response.Unpack(response)
        else:
            # A cancelled job's answered lines ride in its error's details.
            for detail in op.error.details:
                if detail.Is(pb.BatchTranslateResponse.DESCRIPTOR):
                    detail.Unpack(response)
        found = {r.index: r for r in response.results}
        answers.append(found)
    out: list[bytes] = []
    errors: list[bytes] = []
    for line in lines:
        if line.error is not None:
            stored = json.loads(line.error)
            if stored["status"]:
                errors.append(_line_json(line.custom_id, stored["status"], stored["error"]))
            else:
                errors.append(_line_json(line.custom_id, 0, None, stored["error"]))
            continue
        assert line.body is not None
        chat = _chat(json.loads(line.body), default_target)
        if line.op < 0:
            out.append(_line_json(line.custom_id, 200, completion(chat.model or _UNNAMED_MODEL, "", None)))
            continue
        result = answers[line.op].get(line.idx)
        if result is None:
            # OpenAI's form for a line a cancelled batch never ran.
            gone = {"code": "batch_cancelled", "message": "the batch was cancelled before this line was answered"}
            errors.append(_line_json(line.custom_id, 0, None, gone))
        elif result.HasField("error"):
            # The service names the line by its place in the job ("requests[4].model: ..."); the caller's line is
            # its own request, whose field is `model`.
            message = _PLACE.match(result.error.message)
            text = result.error.message[message.end() :] if message else result.error.message
            error = from_status(_CODES.get(result.error.code, grpc.StatusCode.UNKNOWN), text)
            errors.append(_line_json(line.custom_id, error.status, json.loads(error.body())))
        else:
            resp = result.response
            chat = chat.passthrough_to(resp.requested_model)  # an unreadable line with an answer was passed through
            assert chat.batch is not None
            content = chat.batch.render([t.text for t in resp.translations])
            truncated = any(t.truncated for t in resp.translations)
            asked = chat.reply_model(resp.requested_model)
            body = completion(asked, content, resp.usage, resp.model, truncated, chat.stop)
            out.append(_line_json(line.custom_id, 200, body))
    return b"".join(out), b"".join(errors)


def _line_json(custom_id: str | None, status: int, body: Any, error: Any = None) -> bytes:
    response = None if not status else {"status_code": status, "request_id": uuid.uuid4().hex, "body": body}
    line = {"id": new_id("batch_req_"), "custom_id": custom_id, "response": response, "error": error}
    return json.dumps(line, ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n"
