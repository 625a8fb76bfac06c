"""translane.v1.Translator: each RPC validated into a Job, run by the engine, answered, and recorded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from google.longrunning import operations_pb2 as lro
from google.protobuf import empty_pb2
from opentelemetry import trace

from ..decoding import Undecodable, parser, streaming, unary
from ..engine import Engine, Job, JobResult, Stats
from ..errors import InvalidRequest, TranslaneError
from ..tenants import current_caller
from ..tracing import enabled as tracing_enabled
from ..usage import UsageQuery, UsageRow
from ..v1 import translate_pb2 as pb
from ..v1 import translate_pb2_grpc as pb_grpc
from .identity import caller, usage_tenant
from .record import Recorder, Served
from .status import grpc_status_of, trailers
from .validation import Validator

if TYPE_CHECKING:
    from .files import FilesService
    from .operations import OperationsService

__all__ = ["SERVICE_NAME", "TranslatorService", "add_translator", "translate_response"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Translator"].full_name


def _usage(stats: Stats) -> pb.Usage:
    return pb.Usage(
        prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens,
        total_tokens=stats.prompt_tokens + stats.completion_tokens,
        cached_tokens=stats.cached_tokens,
        cost=round(stats.cost, 8),
        currency=stats.currency,
        estimated=stats.estimated,
        reasoning_tokens=stats.reasoning_tokens,
        cached_segments=stats.cached_segments,
    )


def _usage_row(row: UsageRow) -> pb.UsageRow:
    k, t = row.key, row.tally
    return pb.UsageRow(
        tenant=k.tenant,
        model=k.model,
        day=k.day,
        task_id=k.task_id,
        requests=t.requests,
        prompt_tokens=t.prompt_tokens,
        completion_tokens=t.completion_tokens,
        total_tokens=t.prompt_tokens + t.completion_tokens,
        cached_tokens=t.cached_tokens,
        cost=round(t.cost, 8),
        currency=k.currency,
    )


def _timing(stats: Stats, started: float) -> pb.Timing:
    return pb.Timing(
        queued_ms=stats.queued_s * 1000,
        governed_ms=stats.governed_s * 1000,
        upstream_ms=stats.upstream_s * 1000,
        total_ms=(time.perf_counter() - started) * 1000,
    )


def translate_response(
    job: Job, result: JobResult, requested: str, task_id: str, started: float
) -> pb.TranslateResponse:
    """A translated job as Translate answers it (BatchTranslate's lines too)."""
    return pb.TranslateResponse(
        translations=[
            pb.Translation(text=t, model=m, detected_source_language=job.source_language, truncated=cut, cached=hit)
            for t, m, cut, hit in zip(result.texts, result.models, result.truncated, result.cached, strict=True)
        ],
        model=result.models[0],
        requested_model=requested,
        usage=_usage(result.stats),
        timing=_timing(result.stats, started),
        task_id=task_id,
    )


class TranslatorService(pb_grpc.TranslatorServicer):
    """translane.v1.Translator backed by an Engine; BatchTranslate is the job runner's (`operations`). The
    caller's tenant (translane.tenants) is charged for its calls and decides whose usage it may read."""

    def __init__(self, engine: Engine, operations: OperationsService | None = None) -> None:
        self.engine = engine
        self.operations = operations
        self.config = engine.config
        self._loop = asyncio.get_running_loop()
        self.validator = Validator(self.config, engine.rotation.chain)
        self.recorder = Recorder(engine.metrics, lambda model: self.config.models[model].lane, tracing_enabled())

    def _served(self, rpc: str, request: pb.TranslateRequest, context: grpc.aio.ServicerContext[Any, Any]) -> Served:
        return self.recorder.open(rpc, request.task_id, len(request.segments), context)

    def _start(self, served: Served, request: pb.TranslateRequest, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        job = self.validator.job(request, self._loop.time(), context.time_remaining())
        served.requested = request.model or self.config.default_model
        served.job = self.validator.for_tenant(job, served.requested, current_caller().tenant)

    async def refuse(self, rpc: str, request: Undecodable, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Answer a request whose bytes did not parse: INVALID_ARGUMENT saying what is wrong, counted like any."""
        with self.recorder.open(rpc, "", 0, context) as served:
            await self._abort(context, InvalidRequest(request.message), served)

    async def _abort(self, context: grpc.aio.ServicerContext[Any, Any], exc: TranslaneError, served: Served) -> None:
        code = served.status = grpc_status_of(exc)
        if context.done():
            return  # the caller is gone (cancelled or past its deadline): nobody to tell
        await context.abort(code, exc.message, trailing_metadata=trailers(exc, code))

    async def Translate(
        self, request: pb.TranslateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TranslateResponse:
        with self._served("Translate", request, context) as served:
            try:
                self._start(served, request, context)
                assert served.job is not None
                job = served.job
                result = await self.engine.translate(job, served.stats)
            except TranslaneError as exc:
                await self._abort(context, exc, served)
                raise AssertionError("unreachable") from exc
            served.status = grpc.StatusCode.OK
            served.served_by = result.models[0]
            return translate_response(job, result, served.requested, request.task_id, served.started)

    async def TranslateStream(
        self, request: pb.TranslateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.TranslateChunk]:
        with self._served("TranslateStream", request, context) as served:
            stats = served.stats
            try:
                self._start(served, request, context)
                assert served.job is not None
                async for d in self.engine.stream(served.job, stats):
                    if d.text and served.first_token_s is None:
                        served.first_token_s = time.perf_counter() - served.started
                        trace.get_current_span().add_event("first_token")
                    if d.model and not served.served_by:
                        served.served_by = d.model
                    yield pb.TranslateChunk(
                        segment_index=d.index,
                        delta=d.text,
                        model=d.model,
                        segment_done=d.done,
                        truncated=d.truncated,
                        usage=_usage(stats),
                        task_id=request.task_id,
                        requested_model=served.requested,
                    )
            except TranslaneError as exc:
                await self._abort(context, exc, served)
                return
            served.status = grpc.StatusCode.OK
            yield pb.TranslateChunk(
                final=True,
                usage=_usage(stats),
                timing=_timing(stats, served.started),
                task_id=request.task_id,
                segment_index=max(0, len(request.segments) - 1),
                requested_model=served.requested,
            )

    async def BatchTranslate(
        self, request: pb.BatchTranslateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lro.Operation:
        if self.operations is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "BatchTranslate: this server runs no jobs")
        assert self.operations is not None
        return await self.operations.BatchTranslate(request, context, caller().tenant)

    async def _files(self, context: grpc.aio.ServicerContext[Any, Any]) -> FilesService:
        files = self.operations.files if self.operations is not None else None
        if files is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this server keeps no files")
        assert files is not None
        return files

    async def UploadFile(
        self, request_iterator: AsyncIterator[pb.FileChunk | Undecodable], context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.File:
        return await (await self._files(context)).UploadFile(request_iterator, context)

    async def GetFile(self, request: pb.GetFileRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.File:
        return await (await self._files(context)).GetFile(request, context)

    async def ListFiles(
        self, request: pb.ListFilesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListFilesResponse:
        return await (await self._files(context)).ListFiles(request, context)

    async def DeleteFile(
        self, request: pb.DeleteFileRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> empty_pb2.Empty:
        return await (await self._files(context)).DeleteFile(request, context)

    async def GetUsage(
        self, request: pb.GetUsageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetUsageResponse:
        ledger = self.engine.ledger
        try:
            tenant = usage_tenant(caller(), request.tenant)
            query = UsageQuery.parse(tenant, request.start_day, request.end_day, request.group_by, ledger.today())
            rows = await ledger.usage(query)
        except TranslaneError as exc:
            code = grpc_status_of(exc)
            await context.abort(code, exc.message, trailing_metadata=trailers(exc, code))
            raise AssertionError("unreachable") from exc
        return pb.GetUsageResponse(
            rows=[_usage_row(r) for r in rows], start_day=query.start.isoformat(), end_day=query.end.isoformat()
        )

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListModelsResponse:
        now = self._loop.time()
        engine = self.engine
        tenant = current_caller().tenant
        return pb.ListModelsResponse(
            default_model=self.config.default_model,
            models=[
                pb.ModelInfo(
                    name=m.name,
                    lane=m.lane,
                    provider=m.provider,
                    api_style=m.api_style,
                    rpm=m.rpm,
                    tpm=m.tpm,
                    max_concurrency=m.max_concurrency,
                    max_input_tokens=m.max_input_tokens,
                    max_output_tokens=m.max_output_tokens,
                    context_tokens=m.context_tokens,
                    input_price_per_mtok=m.input_price_per_mtok,
                    output_price_per_mtok=m.output_price_per_mtok,
                    currency=m.currency,
                    fallbacks=list(m.fallbacks),
                    available=engine.rotation.available(m, now),
                    daily_token_budget=m.daily_token_budget,
                    daily_tokens_spent=engine.budgets.spent(m.name)[0],
                    daily_cost_budget=m.daily_cost_budget,
                    daily_cost_spent=engine.budgets.spent(m.name)[1],
                )
                for m in self.config.models.values()
                if tenant is None or tenant.may_use(m.name)
            ],
        )


def add_translator(service: TranslatorService, server: grpc.aio.Server) -> None:
    """Register `service` as pb_grpc.add_TranslatorServicer_to_server does, with our own request parsing:
    bytes that do not parse are INVALID_ARGUMENT naming what is wrong, not UNKNOWN."""
    translate = parser(pb.TranslateRequest)
    handlers = {
        "Translate": grpc.unary_unary_rpc_method_handler(
            unary("Translate", service.Translate, service.refuse),
            request_deserializer=translate,
            response_serializer=pb.TranslateResponse.SerializeToString,
        ),
        "TranslateStream": grpc.unary_stream_rpc_method_handler(
            streaming("TranslateStream", service.TranslateStream, service.refuse),
            request_deserializer=translate,
            response_serializer=pb.TranslateChunk.SerializeToString,
        ),
        "ListModels": grpc.unary_unary_rpc_method_handler(
            unary("ListModels", service.ListModels, service.refuse),
            request_deserializer=parser(pb.ListModelsRequest),
            response_serializer=pb.ListModelsResponse.SerializeToString,
        ),
        "BatchTranslate": grpc.unary_unary_rpc_method_handler(
            unary("BatchTranslate", service.BatchTranslate, service.refuse),
            request_deserializer=parser(pb.BatchTranslateRequest),
            response_serializer=lro.Operation.SerializeToString,
        ),
        "GetUsage": grpc.unary_unary_rpc_method_handler(
            unary("GetUsage", service.GetUsage, service.refuse),
            request_deserializer=parser(pb.GetUsageRequest),
            response_serializer=pb.GetUsageResponse.SerializeToString,
        ),
        # Chunks that do not parse reach UploadFile as Undecodable: it refuses them, naming what is wrong.
        "UploadFile": grpc.stream_unary_rpc_method_handler(
            service.UploadFile,
            request_deserializer=parser(pb.FileChunk),
            response_serializer=pb.File.SerializeToString,
        ),
        "GetFile": grpc.unary_unary_rpc_method_handler(
            unary("GetFile", service.GetFile, service.refuse),
            request_deserializer=parser(pb.GetFileRequest),
            response_serializer=pb.File.SerializeToString,
        ),
        "ListFiles": grpc.unary_unary_rpc_method_handler(
            unary("ListFiles", service.ListFiles, service.refuse),
            request_deserializer=parser(pb.ListFilesRequest),
            response_serializer=pb.ListFilesResponse.SerializeToString,
        ),
        "DeleteFile": grpc.unary_unary_rpc_method_handler(
            unary("DeleteFile", service.DeleteFile, service.refuse),
            request_deserializer=parser(pb.DeleteFileRequest),
            response_serializer=empty_pb2.Empty.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
