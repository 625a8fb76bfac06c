"""OpenAI's Files and Batches APIs, served by the simulator: uploads, jobs on a compressed clock, result files."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from ._config import SimConfig

__all__ = ["ENDPOINTS", "Complete", "OpenAIBatches"]

# The endpoints a batch may target: the two wire formats the simulator speaks.
ENDPOINTS = ("/v1/chat/completions", "/v1/responses")
_WINDOW_HOURS = 24
_METADATA_PAIRS, _METADATA_KEY_CHARS, _METADATA_VALUE_CHARS = 16, 64, 512
_LIST_LIMIT_DEFAULT, _LIST_LIMIT_MAX = 20, 100
# A batch's progress advances in this many steps (fewer for fewer lines), each at its own due time.
_STEPS = 20
_CHUNK_BYTES = 1 << 16

# A line's request body and endpoint -> (HTTP status, response body, prompt tokens, completion tokens).
Complete = Callable[[Mapping[str, Any], str], tuple[int, bytes, int, int]]


class _ApiError(Exception):
    """An error answered in OpenAI's envelope."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def response(self) -> web.Response:
        kind = {401: "authentication_error", 404: "not_found_error"}.get(self.status, "invalid_request_error")
        err = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        return web.json_response({"error": err}, status=self.status)


@dataclass(slots=True)
class _File:
    id: str
    filename: str
    purpose: str
    created_at: int
    data: bytes

    def object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass(slots=True)
class _Job:
    """One batch: its request, its progress and its timestamps (on the compressed clock)."""

    id: str
    input_file_id: str
    endpoint: str
    metadata: dict[str, str] | None
    created_at: int
    # Loop time at creation, and the compressed clock's hour (real seconds) and processing time (real seconds).
    started: float
    hour_s: float
    job_s: float
    status: str = "validating"
    stamps: dict[str, int] = field(default_factory=dict)
    total: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)
    # Why the batch failed, in OpenAI's shape ({"object": "list", "data": [{code, message, ...}]}).
    errors: dict[str, Any] | None = None

    def now(self, loop_now: float) -> int:
        """The compressed clock: the Unix time a batch that started at created_at would show by now."""
        return self.created_at + round((loop_now - self.started) / self.hour_s * 3600)

    def enter(self, status: str, loop_now: float) -> None:
        self.status = status
        self.stamps[f"{status}_at"] = self.now(loop_now)

    def object(self) -> dict[str, Any]:
        stamp = self.stamps.get
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": None,
            "errors": self.errors,
            "input_file_id": self.input_file_id,
            "completion_window": f"{_WINDOW_HOURS}h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": stamp("in_progress_at"),
            "expires_at": self.created_at + _WINDOW_HOURS * 3600,
            "finalizing_at": stamp("finalizing_at"),
            "completed_at": stamp("completed_at"),
            "failed_at": stamp("failed_at"),
            "expired_at": stamp("expired_at"),
            "cancelling_at": stamp("cancelling_at"),
            "cancelled_at": stamp("cancelled_at"),
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
            "usage": {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + self.output_tokens,
            },
        }


def _page(items: list[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """A cursor page of `items` (newest first), after the id `after`, at most `limit` long."""
    try:
        limit = int(query.get("limit", _LIST_LIMIT_DEFAULT))
    except ValueError:
        raise _ApiError(400, "limit must be an integer", "limit") from None
    if not 1 <= limit <= _LIST_LIMIT_MAX:
        raise _ApiError(400, f"limit must be between 1 and {_LIST_LIMIT_MAX}", "limit")
    after = query.get("after")
    if after:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise _ApiError(400, f"No such object: {after}", "after")
        items = items[ids.index(after) + 1 :]
    data = items[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(items) > limit,
    }


def _error_line(line_id: str, custom_id: str | None, code: str, message: str) -> bytes:
    return json.dumps(
        {"id": line_id, "custom_id": custom_id, "response": None, "error": {"code": code, "message": message}},
        ensure_ascii=False,
    ).encode()


async def _wait(event: asyncio.Event, delay_s: float) -> bool:
    """Wait up to `delay_s` for `event`; whether it is set."""
    if delay_s > 0 and not event.is_set():
        try:
            await asyncio.wait_for(event.wait(), delay_s)
        except TimeoutError:
            pass
    return event.is_set()


class OpenAIBatches:
    """The files and batches one simulator holds, the tasks running its batches, and their handlers."""

    def __init__(self, config: Callable[[], SimConfig], complete: Complete) -> None:
        self._config = config
        self._complete = complete
        self._files: dict[str, _File] = {}
        self._jobs: dict[str, _Job] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._ids = itertools.count(1)
        # Lines run per model, and input files uploaded, for /_sim/stats.
        self._models: dict[str, dict[str, int]] = {}
        self._uploads = 0
        self._rng = random.Random(config().seed)

    def routes(self) -> list[web.RouteDef]:
        """The handlers, under /v1 as OpenAI serves them, and under /api/v3 too: the sim is one provider at one
        base URL, so a service pointed at it (`--upstream-url .../api/v3`, which moves a batch route's URL with
        the rest) finds the Files and Batches API there as well."""
        out: list[web.RouteDef] = []
        for prefix in ("/v1", "/api/v3"):
            out += [
                web.post(f"{prefix}/files", self.create_file),
                web.get(f"{prefix}/files", self.list_files),
                web.get(f"{prefix}/files/{{file_id}}", self.retrieve_file),
                web.get(f"{prefix}/files/{{file_id}}/content", self.file_content),
                web.delete(f"{prefix}/files/{{file_id}}", self.delete_file),
                web.post(f"{prefix}/batches", self.create_batch),
                web.get(f"{prefix}/batches", self.list_batches),
                web.get(f"{prefix}/batches/{{batch_id}}", self.retrieve_batch),
                web.post(f"{prefix}/batches/{{batch_id}}/cancel", self.cancel_batch),
            ]
        return out

    def stats(self) -> dict[str, Any]:
        """Files, batches by status and lines run per model, as /_sim/stats reports them."""
        statuses: dict[str, int] = {}
        for job in self._jobs.values():
            statuses[job.status] = statuses.get(job.status, 0) + 1
        return {
            "files": len(self._files),
            "uploads": self._uploads,
            "batches": statuses,
            "models": {name: dict(counts) for name, counts in self._models.items()},
        }

    async def close(self) -> None:
        """Stop every running batch and forget all files and batches."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._jobs.clear()
        self._files.clear()
        self._models.clear()
        self._uploads = 0

    def _authorize(self, request: web.Request) -> None:
        key = self._config().api_key
        if key and request.headers.get("Authorization") != f"Bearer {key}":
            raise _ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):012d}"

    def _file(self, file_id: str) -> _File:
        found = self._files.get(file_id)
        if found is None:
            raise _ApiError(404, f"No such File object: {file_id}", "id")
        return found

    def _job(self, batch_id: str) -> _Job:
        found = self._jobs.get(batch_id)
        if found is None:
            raise _ApiError(404, f"No batch found with id '{batch_id}'.", "batch_id")
        return found

    # Files

    async def create_file(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            stored = await self._upload(request)
        except _ApiError as exc:
            return exc.response()
        self._files[stored.id] = stored
        self._uploads += 1
        return web.json_response(stored.object())

    async def _upload(self, request: web.Request) -> _File:
        cfg = self._config()
        if not request.content_type.startswith("multipart/"):
            raise _ApiError(400, "Uploads must be multipart/form-data with `file` and `purpose`.")
        purpose: str | None = None
        filename = ""
        data: bytes | None = None
        oversized = False
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "purpose":
                purpose = (await part.text()).strip()
            elif part.name == "file":
                filename = part.filename or "file"
                data, oversized = await _read_capped(part, int(cfg.batch_file_max_bytes))
            else:
                await part.release()
        if data is None:
            raise _ApiError(400, "Missing required parameter: 'file'.", "file")
        if purpose is None:
            raise _ApiError(400, "Missing required parameter: 'purpose'.", "purpose")
        if purpose != "batch":
            raise _ApiError(400, f"The simulator keeps only purpose='batch' files, not {purpose!r}.", "purpose")
        if oversized:
            limit = int(cfg.batch_file_max_bytes)
            raise _ApiError(400, f"The file is larger than the {limit} bytes a batch input may hold.", "file")
        _check_batch_input(data, int(cfg.batch_file_max_lines))
        return _File(self._next_id("file-sim"), filename, purpose, int(time.time()), data)

    async def list_files(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            purpose = request.query.get("purpose")
            files = [f.object() for f in reversed(self._files.values()) if purpose is None or f.purpose == purpose]
            return web.json_response(_page(files, request.query))
        except _ApiError as exc:
            return exc.response()

    async def retrieve_file(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            return web.json_response(self._file(request.match_info["file_id"]).object())
        except _ApiError as exc:
            return exc.response()

    async def file_content(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            return web.Response(body=self._file(request.match_info["file_id"]).data, content_type="application/jsonl")
        except _ApiError as exc:
            return exc.response()

    async def delete_file(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            gone = self._file(request.match_info["file_id"])
        except _ApiError as exc:
            return exc.response()
        del self._files[gone.id]
        return web.json_response({"id": gone.id, "object": "file", "deleted": True})

    # Batches

    async def create_batch(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            job = self._new_job(await _json_object(request))
        except _ApiError as exc:
            return exc.response()
        self._jobs[job.id] = job
        self._tasks[job.id] = asyncio.create_task(self._run(job, self._files[job.input_file_id].data))
        return web.json_response(job.object())

    def _new_job(self, body: Mapping[str, Any]) -> _Job:
        input_file_id = body.get("input_file_id")
        if not isinstance(input_file_id, str):
            raise _ApiError(400, "Missing required parameter: 'input_file_id'.", "input_file_id")
        endpoint = body.get("endpoint")
        if endpoint not in ENDPOINTS:
            raise _ApiError(400, f"endpoint must be one of {', '.join(ENDPOINTS)}.", "endpoint")
        if body.get("completion_window") != f"{_WINDOW_HOURS}h":
            raise _ApiError(400, f"completion_window must be '{_WINDOW_HOURS}h'.", "completion_window")
        metadata = _metadata(body.get("metadata"))
        source = self._file(input_file_id)
        if source.purpose != "batch":
            raise _ApiError(400, f"File {input_file_id} has purpose {source.purpose!r}, not 'batch'.", "input_file_id")
        cfg = self._config()
        return _Job(
            id=self._next_id("batch_sim"),
            input_file_id=input_file_id,
            endpoint=str(endpoint),
            metadata=metadata,
            created_at=int(time.time()),
            started=asyncio.get_running_loop().time(),
            hour_s=cfg.batch_hour_s,
            job_s=cfg.batch_job_hours * cfg.batch_hour_s,
        )

    async def list_batches(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            return web.json_response(_page([j.object() for j in reversed(self._jobs.values())], request.query))
        except _ApiError as exc:
            return exc.response()

    async def retrieve_batch(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            return web.json_response(self._job(request.match_info["batch_id"]).object())
        except _ApiError as exc:
            return exc.response()

    async def cancel_batch(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            job = self._job(request.match_info["batch_id"])
            if job.status in ("validating", "in_progress"):
                job.enter("cancelling", asyncio.get_running_loop().time())
                job.cancel_requested.set()
            elif job.status != "cancelling":
                raise _ApiError(409, f"Cannot cancel a batch with status '{job.status}'.", code="batch_not_cancellable")
        except _ApiError as exc:
            return exc.response()
        return web.json_response(job.object())

    async def _run(self, job: _Job, data: bytes) -> None:
        """Run a batch's lines in steps due across its processing time, then write its result files."""
        loop = asyncio.get_running_loop()
        lines = [line for line in data.splitlines() if line.strip()]
        job.total = len(lines)
        out: list[bytes] = []
        errors: list[bytes] = []
        cfg = self._config()
        if cfg.batch_fail_rate and self._rng.random() < cfg.batch_fail_rate:
            message = "The simulator failed the batch (batch_fail_rate)."
            job.errors = {"object": "list", "data": [{"code": "sim_failed", "message": message, "line": None}]}
            job.enter("failed", loop.time())
            self._tasks.pop(job.id, None)
            return
        if job.status == "validating":
            job.enter("in_progress", loop.time())
        window_end = job.started + _WINDOW_HOURS * job.hour_s
        steps = max(1, min(_STEPS, len(lines)))
        done = 0
        expired = False
        for step in range(1, steps + 1):
            due = job.started + job.job_s * step / steps
            expired = due > window_end
            if await _wait(job.cancel_requested, min(due, window_end) - loop.time()):
                break
            upto = len(lines) * step // steps
            if expired:
                # Only the share of the work that fit in the window got done.
                upto = min(upto, int(len(lines) * _WINDOW_HOURS * job.hour_s / job.job_s))
            for index in range(done, upto):
                self._line(job, index, lines[index], out, errors)
            done = upto
            if expired:
                for index in range(done, len(lines)):
                    line_id = f"batch_req_{job.id}_{index}"
                    errors.append(_error_line(line_id, _custom_id(lines[index]), "batch_expired", "The batch expired."))
                    job.failed += 1
                break
        cancelled = job.cancel_requested.is_set()
        if not cancelled:
            job.enter("finalizing", loop.time())
            if not expired:
                # Finalizing lasts one step, so a poller can see it.
                await asyncio.sleep(job.job_s / steps)
        if out:
            job.output_file_id = self._store_output(job, "output", out)
        if errors:
            job.error_file_id = self._store_output(job, "error", errors)
        job.enter("cancelled" if cancelled else "expired" if expired else "completed", loop.time())
        self._tasks.pop(job.id, None)

    def _store_output(self, job: _Job, kind: str, lines: Iterable[bytes]) -> str:
        stored = _File(
            self._next_id("file-sim"),
            f"{job.id}_{kind}.jsonl",
            "batch_output",
            int(time.time()),
            b"".join(line + b"\n" for line in lines),
        )
        self._files[stored.id] = stored
        return stored.id

    def _line(self, job: _Job, index: int, raw: bytes, out: list[bytes], errors: list[bytes]) -> None:
        """Run one input line; its output line goes to `out` on a 200, else to `errors`."""
        line_id = f"batch_req_{job.id}_{index}"
        request: dict[str, Any] = json.loads(raw)  # the upload checked each line is a JSON object
        custom_id = request.get("custom_id")
        cid = custom_id if isinstance(custom_id, str) else None
        body = request.get("body")
        problem = _line_problem(request, cid, job.endpoint)
        if problem is not None or not isinstance(body, dict):
            code, message = problem or ("invalid_request", "body must be a JSON object.")
            errors.append(_error_line(line_id, cid, code, message))
            job.failed += 1
            return
        status, answer, prompt_tokens, completion_tokens = self._complete(body, job.endpoint)
        head = json.dumps({"id": line_id, "custom_id": cid}, ensure_ascii=False)[:-1]
        response = f'"response": {{"status_code": {status}, "request_id": "req_{job.id}_{index}", "body": '
        line = f"{head}, {response}".encode() + answer + b'}, "error": null}'
        if status == 200:
            out.append(line)
            job.completed += 1
            job.input_tokens += prompt_tokens
            job.output_tokens += completion_tokens
            model = body.get("model")
            counts = self._models.setdefault(str(model), {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0})
            counts["requests"] += 1
            counts["prompt_tokens"] += prompt_tokens
            counts["completion_tokens"] += completion_tokens
        else:
            errors.append(line)
            job.failed += 1


async def _read_capped(part: BodyPartReader, limit: int) -> tuple[bytes, bool]:
    """A part's bytes, up to `limit`; past it, the rest is read and dropped and the flag says so."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(_CHUNK_BYTES):
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        return b"", True
    return b"".join(chunks), False


def _check_batch_input(data: bytes, max_lines: int) -> None:
    """A batch input file must be JSONL of objects, not too many lines, each custom_id once."""
    lines = [line for line in data.splitlines() if line.strip()]
    if not lines:
        raise _ApiError(400, "The file is empty; a batch input needs at least one line.", "file")
    if len(lines) > max_lines:
        raise _ApiError(400, f"The file has {len(lines)} lines; a batch input may hold {max_lines}.", "file")
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        try:
            request = json.loads(line)
        except ValueError:
            raise _ApiError(400, f"Line {number} is not JSON: the file must be JSONL.", "file") from None
        if not isinstance(request, dict):
            raise _ApiError(400, f"Line {number} is not a JSON object: the file must be JSONL.", "file")
        custom_id = request.get("custom_id")
        if isinstance(custom_id, str):
            if custom_id in seen:
                raise _ApiError(400, f"Line {number} repeats custom_id {custom_id!r}.", "file")
            seen.add(custom_id)


def _line_problem(request: Mapping[str, Any], custom_id: str | None, endpoint: str) -> tuple[str, str] | None:
    """Why an input line is not a request the batch can run (error code, message), or None."""
    if custom_id is None:
        return "invalid_request", "custom_id must be a string."
    if request.get("method") != "POST":
        return "invalid_request", "method must be POST."
    if request.get("url") != endpoint:
        return "invalid_url", f"url must be the batch's endpoint, {endpoint}."
    return None


def _custom_id(raw: bytes) -> str | None:
    custom_id = json.loads(raw).get("custom_id")
    return custom_id if isinstance(custom_id, str) else None


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > _METADATA_PAIRS:
        raise _ApiError(400, f"metadata must be an object of at most {_METADATA_PAIRS} pairs.", "metadata")
    for key, item in value.items():
        if len(key) > _METADATA_KEY_CHARS or not isinstance(item, str) or len(item) > _METADATA_VALUE_CHARS:
            raise _ApiError(
                400,
                f"metadata keys are at most {_METADATA_KEY_CHARS} characters, values strings of at most "
                f"{_METADATA_VALUE_CHARS}.",
                "metadata",
            )
    return dict(value)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise _ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _ApiError(400, "The request body must be a JSON object.")
    return body
