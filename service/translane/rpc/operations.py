"""BatchTranslate and google.longrunning.Operations: jobs (translane.jobs) as the Google API convention shows them.

A job's requests come inline (`requests`) or as a file UploadFile stored (`input_file_id`, rpc.files: the
job takes its own copy). A job is named `operations/<id>`; its Operation carries a BatchTranslateMetadata
(state, counts, usage, times) and, once every line is answered, a BatchTranslateResponse with one result per
request in order (a TranslateResponse, or the google.rpc.Status the line failed with). A cancelled job's
Operation is done with the error CANCELLED, whose details hold a BatchTranslateResponse of the lines answered
before it stopped.
Each line runs as Translate would run it (`BatchLines`), at the job's priority.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from typing import Any

import grpc
from google.longrunning import operations_pb2 as lro
from google.protobuf import empty_pb2, timestamp_pb2
from google.rpc import code_pb2, status_pb2

from ..config import Config
from ..decoding import Undecodable, parser, unary
from ..engine import Engine, Stats
from ..errors import (
    InvalidRequest,
    JobNotFinished,
    JobNotFound,
    Overloaded,
    TranslaneError,
    WindowPassed,
    quote,
    quote_id,
)
from ..jobs import CANCELLED, RUNNING, SUCCEEDED, JobControl, JobRecord, LineResult
from ..v1 import translate_pb2 as pb
from .files import FilesService
from .identity import caller
from .paging import page
from .servicer import translate_response
from .status import grpc_status_of, rpc_status, trailers
from .validation import Validator

__all__ = [
    "DEFAULT_WINDOW",
    "MAX_BATCH_REQUESTS",
    "OPERATIONS_SERVICE",
    "BatchLines",
    "OperationsService",
    "add_operations",
    "window_seconds",
]

OPERATIONS_SERVICE = "google.longrunning.Operations"
NAME_PREFIX = "operations/"
# OpenAI's bound on a batch, and ours.
MAX_BATCH_REQUESTS = 50_000
DEFAULT_WINDOW = "24h"
_WINDOW = re.compile(r"([1-9][0-9]{0,6})([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# From a minute (a test, a small job) to a week.
_WINDOW_BOUNDS_S = (60, 7 * 86400)
MAX_LABELS = 64
MAX_LABEL_CHARS = 256
_STATES = {
    RUNNING: pb.BatchTranslateMetadata.RUNNING,
    SUCCEEDED: pb.BatchTranslateMetadata.SUCCEEDED,
    CANCELLED: pb.BatchTranslateMetadata.CANCELLED,
}
# How long a line waits, at most, before trying again after being refused for load (its hint, when shorter).
_OVERLOAD_WAIT_MAX_S = 30.0


def window_seconds(window: str) -> float:
    """A completion window ("30m", "24h", "7d") in seconds; InvalidRequest naming the field when it is not one."""
    match = _WINDOW.fullmatch(window)
    low, high = _WINDOW_BOUNDS_S
    if match is None:
        raise InvalidRequest(
            f"completion_window: {quote(window)} is not a duration such as '30m', '24h' or '7d' "
            "(a whole number and one of s, m, h, d)"
        )
    seconds = int(match[1]) * _UNIT_S[match[2]]
    if not low <= seconds <= high:
        raise InvalidRequest(f"completion_window: {quote(window)} is outside 1m to 7d")
    return float(seconds)


def _timestamp(wall: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(wall * 1e9))
    return stamp


class BatchLines:
    """Answers a job's line as Translate would (validated, then through the engine at the job's priority);
    a line that cannot be answered fails alone, with the status Translate would have answered."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.config = engine.config
        self.validator = Validator(engine.config, engine.rotation.chain)

    async def __call__(self, record: JobRecord, index: int, data: bytes) -> LineResult:
        spec = pb.BatchTranslateRequest.FromString(record.spec)
        request = pb.TranslateRequest.FromString(data)
        request.priority = spec.priority
        where = f"requests[{index}]"
        started = time.perf_counter()
        stats = Stats()
        loop = asyncio.get_running_loop()
        expires = record.created + record.window_s
        try:
            while True:
                if time.time() > expires:
                    raise WindowPassed(
                        f"the job's completion window of {spec.completion_window} passed before this line started"
                    )
                now = loop.time()
                job = self.validator.job(request, now, None)
                # The window goes with the line: one long enough may take the model's batch route.
                end = now + expires - time.time()
                job = dataclasses.replace(job, completion_window_s=record.window_s, window_end=end)
                if spec.tenant:
                    # The line is served and charged as the tenant that submitted the job (its models, its limits).
                    tenant = self.engine.tenants.current.get(spec.tenant)
                    requested = request.model or self.config.default_model
                    job = (
                        self.validator.for_tenant(job, requested, tenant)
                        if tenant is not None
                        else dataclasses.replace(job, tenant=spec.tenant)
                    )
                try:
                    result = await self.engine.translate(job, stats)
                    break
                except Overloaded as exc:
                    # Batch work waits out the load that refused it (interactive work comes first), in its window.
                    hint = exc.retry_after_s if exc.retry_after_s is not None else 1.0
                    await asyncio.sleep(min(_OVERLOAD_WAIT_MAX_S, max(0.05, hint), max(0.0, expires - time.time())))
        except TranslaneError as exc:
            # A request's own fault names its field ("requests[3].target_language: ..."); others say what happened.
            sep = "." if isinstance(exc, InvalidRequest) else ": "
            status = rpc_status(exc, f"{where}{sep}{exc.message}")
            return self._line(False, status.SerializeToString(), stats)
        requested = request.model or self.config.default_model
        response = translate_response(job, result, requested, request.task_id, started)
        return self._line(True, response.SerializeToString(), stats)

    @staticmethod
    def _line(ok: bool, result: bytes, stats: Stats) -> LineResult:
        return LineResult(ok, result, stats.prompt_tokens, stats.completion_tokens, stats.cost, stats.currency)


class OperationsService:
    """google.longrunning.Operations over `jobs`, and BatchTranslate's submission."""

    def __init__(self, jobs: JobControl, config: Config, files: FilesService | None = None) -> None:
        self.jobs = jobs
        self.config = config
        # The files a job may be submitted from (UploadFile); None: only inline requests.
        self.files = files

    async def refuse(self, rpc: str, request: Undecodable, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Answer a request whose bytes did not parse: INVALID_ARGUMENT saying what is wrong."""
        await self._abort(context, InvalidRequest(request.message))

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: TranslaneError) -> None:
        code = grpc_status_of(exc)
        await context.abort(code, exc.message, trailing_metadata=trailers(exc, code))

    def _validate(self, request: pb.BatchTranslateRequest) -> tuple[pb.BatchTranslateRequest, float]:
        """The job's own fields (window, priority, labels) as stored, and its window in seconds."""
        count = len(request.requests)
        if count and request.input_file_id:
            raise InvalidRequest(
                f"requests, input_file_id: give the requests inline or as a file, not both ({count} requests "
                f"and the file {quote(request.input_file_id)})"
            )
        if not count and not request.input_file_id:
            raise InvalidRequest(
                "requests: at least one request is required (or input_file_id: a file of them UploadFile stored)"
            )
        if request.input_file_id and self.files is None:
            raise InvalidRequest("input_file_id: this server keeps no files; send the requests inline")
        if count > MAX_BATCH_REQUESTS:
            raise InvalidRequest(f"requests: {count} requests, over the limit of {MAX_BATCH_REQUESTS} a job")
        window = request.completion_window or DEFAULT_WINDOW
        window_s = window_seconds(window)
        if request.priority not in pb.Priority.values():
            accepted = ", ".join(pb.Priority.keys())
            raise InvalidRequest(f"priority: unknown value {request.priority}; accepted: {accepted}")
        if len(request.labels) > MAX_LABELS:
            raise InvalidRequest(f"labels: {len(request.labels)} labels, over the limit of {MAX_LABELS}")
        for key, value in request.labels.items():
            if not key or len(key) > MAX_LABEL_CHARS or len(value) > MAX_LABEL_CHARS:
                raise InvalidRequest(
                    f"labels: {quote(key)}: keys of 1 to {MAX_LABEL_CHARS} characters, values of at most as many"
                )
        priority = request.priority or pb.PRIORITY_BATCH
        spec = pb.BatchTranslateRequest(
            completion_window=window,
            priority=priority,
            labels=dict(request.labels),
            input_file_id=request.input_file_id,
        )
        return spec, window_s

    async def BatchTranslate(
        self, request: pb.BatchTranslateRequest, context: grpc.aio.ServicerContext[Any, Any], tenant: str = ""
    ) -> lro.Operation:
        """Store the job, charged to `tenant` (the caller's), and answer its Operation."""
        try:
            spec, window_s = self._validate(request)
            spec.tenant = tenant
            if request.input_file_id and self.files is not None:
                # The caller's file only (another tenant's is not found); the job keeps its own copy.
                _, requests = await self.files.requests_of("input_file_id", request.input_file_id)
            else:
                requests = [r.SerializeToString() for r in request.requests]
            record = await self.jobs.submit(spec.SerializeToString(), window_s, requests)
            return await self.operation(record)
        except TranslaneError as exc:
            await self._abort(context, exc)
            raise AssertionError("unreachable") from exc

    async def operation(self, record: JobRecord, results: bool = True) -> lro.Operation:
        """The job as an Operation: its metadata, and (`results`) its response once succeeded."""
        spec = pb.BatchTranslateRequest.FromString(record.spec)
        p = record.progress
        metadata = pb.BatchTranslateMetadata(
            state=_STATES[record.state],
            total=p.total,
            done=p.done,
            failed=p.failed,
            usage=pb.Usage(
                prompt_tokens=p.prompt_tokens,
                completion_tokens=p.completion_tokens,
                total_tokens=p.prompt_tokens + p.completion_tokens,
                cost=round(p.cost, 8),
                currency=p.currency,
            ),
            create_time=_timestamp(record.created),
            update_time=_timestamp(record.updated),
            completion_window=spec.completion_window,
            priority=spec.priority,
            labels=dict(spec.labels),
            input_file_id=spec.input_file_id,
        )
        if record.ended:
            metadata.end_time.CopyFrom(_timestamp(record.ended))
        op = lro.Operation(name=NAME_PREFIX + record.id, done=record.state != RUNNING)
        op.metadata.Pack(metadata)
        if record.state == CANCELLED:
            op.error.CopyFrom(
                status_pb2.Status(
                    code=code_pb2.CANCELLED,
                    message=f"cancelled: {p.done + p.failed} of {p.total} lines answered before it stopped",
                )
            )
            if results:
                # What was answered stays the caller's: a BatchTranslateResponse of those lines in the details.
                op.error.details.add().Pack(await self._answers(record))
        elif record.state == SUCCEEDED and results:
            op.response.Pack(await self._answers(record))
        return op

    async def _answers(self, record: JobRecord) -> pb.BatchTranslateResponse:
        """The job's answered lines, in order."""
        answer = pb.BatchTranslateResponse()
        for index, ok, data in await self.jobs.results(record.id):
            line = answer.results.add(index=index)
            if ok:
                line.response.ParseFromString(data)
            else:
                line.error.ParseFromString(data)
        return answer

    async def _record(self, name: str) -> JobRecord:
        """The caller's job of that name (another tenant's is not found: its existence is not told either)."""
        record = await self.jobs.get(self._id(name))
        if record is None or not self._mine(record):
            raise self._not_found(name)
        return record

    @staticmethod
    def _mine(record: JobRecord) -> bool:
        """Whether the caller may see the job: the tenant that submitted it, or an admin (without tenants: all)."""
        who = caller()
        return who.admin or pb.BatchTranslateRequest.FromString(record.spec).tenant == who.tenant

    def _not_found(self, name: str) -> JobNotFound:
        keep_s = self.config.jobs.keep_s
        keep = (
            f"{keep_s / 86400:g}d" if keep_s >= 86400 else f"{keep_s / 3600:g}h" if keep_s >= 3600 else f"{keep_s:g}s"
        )
        return JobNotFound(
            f"name: no operation {quote_id(name)}: it expired (ended jobs are kept {keep}) or never existed"
        )

    @staticmethod
    def _id(name: str) -> str:
        if not name.startswith(NAME_PREFIX) or not name[len(NAME_PREFIX) :]:
            raise InvalidRequest(f"name: {quote_id(name)} is not an operation's name (operations/ID)")
        return name[len(NAME_PREFIX) :]

    async def GetOperation(
        self, request: lro.GetOperationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lro.Operation:
        try:
            return await self.operation(await self._record(request.name))
        except TranslaneError as exc:
            await self._abort(context, exc)
            raise AssertionError("unreachable") from exc

    async def ListOperations(
        self, request: lro.ListOperationsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lro.ListOperationsResponse:
        """Every job, oldest first, a page at a time; without their results (GetOperation has them)."""
        try:
            if request.filter:
                raise InvalidRequest("filter: not supported; every operation is listed, a page at a time")
            if request.name not in ("", "operations"):
                raise InvalidRequest(f"name: {quote_id(request.name)}: the one collection is 'operations'")
            after, size = page(request.page_size, request.page_token)
            records = await self.jobs.page(after, size + 1)
        except TranslaneError as exc:
            await self._abort(context, exc)
            raise AssertionError("unreachable") from exc
        more = len(records) > size
        records = records[:size]
        # A tenant's page holds its own jobs only (it may be short, or empty, with a token for the next).
        return lro.ListOperationsResponse(
            operations=[await self.operation(r, results=False) for r in records if self._mine(r)],
            next_page_token=str(records[-1].seq) if more else "",
        )

    async def CancelOperation(
        self, request: lro.CancelOperationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> empty_pb2.Empty:
        """No new line starts, those in flight are stopped; the job ends CANCELLED (an ended job stays as it is)."""
        try:
            record = await self._record(request.name)
            if await self.jobs.cancel(record.id) is None:
                raise self._not_found(request.name)
        except TranslaneError as exc:
            await self._abort(context, exc)
        return empty_pb2.Empty()

    async def DeleteOperation(
        self, request: lro.DeleteOperationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> empty_pb2.Empty:
        """Forget an ended job and its results; a running one is FAILED_PRECONDITION (cancel it first)."""
        try:
            record = await self.jobs.delete((await self._record(request.name)).id)
            if record is None:
                raise self._not_found(request.name)
            if record.state == RUNNING:
                raise JobNotFinished(f"name: {quote_id(request.name)} is still running; cancel it first")
        except TranslaneError as exc:
            await self._abort(context, exc)
        return empty_pb2.Empty()

    async def WaitOperation(
        self, request: lro.WaitOperationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lro.Operation:
        """The operation once done, or as it is when the timeout (or the caller's deadline, a little before it;
        without either, the server's default deadline) passes."""
        budget = self.config.server.default_deadline_s
        if request.HasField("timeout"):
            budget = request.timeout.ToTimedelta().total_seconds()
        remaining = context.time_remaining()
        if remaining is not None:
            # Answer before the caller's deadline, so it hears the state rather than DEADLINE_EXCEEDED.
            budget = min(budget, remaining - min(0.5, remaining / 10))
        try:
            record = await self._record(request.name)
            if record.state == RUNNING:
                waited = await self.jobs.wait(record.id, budget)
                record = waited if waited is not None else record
            return await self.operation(record)
        except TranslaneError as exc:
            await self._abort(context, exc)
            raise AssertionError("unreachable") from exc


def add_operations(service: OperationsService, server: grpc.aio.Server) -> None:
    """Serve google.longrunning.Operations with our own request parsing (bytes that do not parse are
    INVALID_ARGUMENT naming what is wrong)."""
    methods: tuple[tuple[str, Any, type[Any], type[Any]], ...] = (
        ("GetOperation", service.GetOperation, lro.GetOperationRequest, lro.Operation),
        ("ListOperations", service.ListOperations, lro.ListOperationsRequest, lro.ListOperationsResponse),
        ("CancelOperation", service.CancelOperation, lro.CancelOperationRequest, empty_pb2.Empty),
        ("DeleteOperation", service.DeleteOperation, lro.DeleteOperationRequest, empty_pb2.Empty),
        ("WaitOperation", service.WaitOperation, lro.WaitOperationRequest, lro.Operation),
    )
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            unary(name, method, service.refuse),
            request_deserializer=parser(request),
            response_serializer=response.SerializeToString,
        )
        for name, method, request, response in methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(OPERATIONS_SERVICE, handlers),))
    server.add_registered_method_handlers(OPERATIONS_SERVICE, handlers)
