"""UploadFile, GetFile, ListFiles, DeleteFile: files of TranslateRequests that BatchTranslate takes by id
(`input_file_id`), for jobs too big for one gRPC message.

An upload is a stream of chunks, read as it comes: each complete line is parsed (JSONL of TranslateRequests
in the proto3 JSON mapping) and kept encoded; a line that is not one, a blank line, more than 50,000 lines
or more than `[jobs] max_file_bytes` refuses the whole upload, naming the line, and nothing is stored
(OpenAI's Files refuse a bad batch file at validation the same way). Whether a well-formed request can be
served (its target language, its model) is its line's to find out when it runs, as for inline requests. A
file is its uploader's tenant's: another tenant is told it does not exist.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, timestamp_pb2

from ..config import Config
from ..decoding import Undecodable
from ..errors import FileNotFound, InvalidRequest, TranslaneError, quote, quote_id
from ..jobs import FileControl, FileRecord
from ..v1 import translate_pb2 as pb
from .identity import caller
from .paging import page
from .status import grpc_status_of, trailers

__all__ = ["BATCH_PURPOSE", "FILE_ID_PREFIX", "MAX_FILE_LINES", "FilesService", "LineReader"]

BATCH_PURPOSE = "batch"
FILE_ID_PREFIX = "file-"
DEFAULT_FILENAME = "input.jsonl"
MAX_FILENAME_CHARS = 255
# A job's bound on its requests (rpc.operations.MAX_BATCH_REQUESTS), and OpenAI's on a batch file's lines.
MAX_FILE_LINES = 50_000
# What a refusal quotes of a parser's complaint.
_COMPLAINT_CHARS = 300


def _timestamp(wall: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(wall * 1e9))
    return stamp


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= _COMPLAINT_CHARS else line[: _COMPLAINT_CHARS - 3] + "..."


class LineReader:
    """JSONL of TranslateRequests read a chunk at a time: each complete line parsed and kept encoded;
    InvalidRequest naming the line (in `data`) for the first that is not one, or when a bound is passed."""

    def __init__(self, max_bytes: int, max_lines: int = MAX_FILE_LINES) -> None:
        self.max_bytes = max_bytes
        self.max_lines = max_lines
        self.size = 0
        self.requests: list[bytes] = []
        # The start of a line whose end has not arrived yet, in pieces (a long line is not copied per chunk).
        self._tail: list[bytes] = []

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the content."""
        self.size += len(data)
        if self.size > self.max_bytes:
            raise InvalidRequest(
                f"data: the file passes {self.max_bytes} bytes, the limit of a file ([jobs] max_file_bytes)"
            )
        if b"\n" not in data:
            self._tail.append(data)
            return
        *lines, last = data.split(b"\n")
        if self._tail:
            lines[0] = b"".join([*self._tail, lines[0]])
        self._tail = [last] if last else []
        for raw in lines:
            self._line(raw)

    def close(self) -> list[bytes]:
        """The requests, once the content has ended (its last line needs no newline)."""
        if self._tail:
            self._line(b"".join(self._tail))
            self._tail = []
        if not self.requests:
            raise InvalidRequest("data: the file holds no requests (one TranslateRequest a line, in proto3 JSON)")
        return self.requests

    def _line(self, raw: bytes) -> None:
        number = len(self.requests) + 1
        if number > self.max_lines:
            raise InvalidRequest(f"data: more than {self.max_lines} lines, the limit of a job's requests")
        where = f"data: line {number}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"{where}: not valid UTF-8 (byte {exc.start})") from None
        if not text.strip():
            raise InvalidRequest(f"{where} is blank (one TranslateRequest a line, in proto3 JSON)")
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InvalidRequest(f"{where} is not JSON: {_first_line(str(exc))}") from None
        if not isinstance(value, dict):
            raise InvalidRequest(f"{where} is a JSON {type(value).__name__}, not an object (a TranslateRequest)")
        try:
            request = json_format.ParseDict(value, pb.TranslateRequest())
        except (json_format.ParseError, RecursionError) as exc:
            raise InvalidRequest(f"{where} is not a TranslateRequest: {_first_line(str(exc))}") from None
        self.requests.append(request.SerializeToString())


def file_message(record: FileRecord) -> pb.File:
    """A stored file as the RPCs answer it."""
    return pb.File(
        id=record.id,
        filename=record.filename,
        purpose=record.purpose,
        size_bytes=record.size_bytes,
        request_count=record.count,
        create_time=_timestamp(record.created),
        expire_time=_timestamp(record.expires),
    )


class FilesService:
    """The file RPCs of translane.v1.Translator over `store`, and the requests of a file for BatchTranslate."""

    def __init__(self, store: FileControl, config: Config) -> None:
        self.store = store
        self.config = config

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: TranslaneError) -> None:
        code = grpc_status_of(exc)
        await context.abort(code, exc.message, trailing_metadata=trailers(exc, code))

    @staticmethod
    def _mine(record: FileRecord) -> bool:
        """Whether the caller may see the file: its uploader's tenant, or an admin (without tenants: all)."""
        who = caller()
        return who.admin or record.tenant == who.tenant

    def _not_found(self, field: str, file_id: str) -> FileNotFound:
        keep_s = self.config.jobs.keep_s
        keep = (
            f"{keep_s / 86400:g}d" if keep_s >= 86400 else f"{keep_s / 3600:g}h" if keep_s >= 3600 else f"{keep_s:g}s"
        )
        return FileNotFound(
            f"{field}: no file {quote_id(file_id)}: it expired (files are kept {keep} after their upload), "
            "was deleted, or never existed"
        )

    async def _record(self, field: str, file_id: str) -> FileRecord:
        """The caller's file of that id (another tenant's is not found: its existence is not told either)."""
        if not file_id:
            raise InvalidRequest(f"{field}: required (a file's id, as UploadFile answered it)")
        record = await self.store.get(file_id) if file_id.startswith(FILE_ID_PREFIX) else None
        if record is None or not self._mine(record):
            raise self._not_found(field, file_id)
        return record

    async def requests_of(self, field: str, file_id: str) -> tuple[FileRecord, list[bytes]]:
        """The caller's file and its requests, in order (FileNotFound naming `field` when there is none)."""
        record = await self._record(field, file_id)
        requests = await self.store.requests(record.id)
        if requests is None:
            raise self._not_found(field, file_id)
        return record, requests

    async def _read(self, chunks: AsyncIterator[pb.FileChunk | Undecodable], reader: LineReader) -> FileRecord:
        filename = purpose = ""
        first = True
        async for chunk in chunks:
            if isinstance(chunk, Undecodable):
                raise InvalidRequest(chunk.message)
            if first:
                first = False
                filename, purpose = chunk.filename or DEFAULT_FILENAME, chunk.purpose
                if purpose != BATCH_PURPOSE:
                    said = "required" if not purpose else f"{quote(purpose)} is not one"
                    raise InvalidRequest(f"purpose: {said}; the one accepted is {BATCH_PURPOSE!r}")
                if len(filename) > MAX_FILENAME_CHARS:
                    raise InvalidRequest(f"filename: {len(filename)} characters, over {MAX_FILENAME_CHARS}")
            elif chunk.filename or chunk.purpose:
                raise InvalidRequest("filename, purpose: only on the first chunk; later chunks carry data alone")
            if chunk.data:
                # Parsing a chunk takes a while (a MiB is about a thousand requests): off the event loop.
                await asyncio.to_thread(reader.feed, chunk.data)
        if first:
            raise InvalidRequest("purpose: required: the first chunk names the file ('batch')")
        requests = await asyncio.to_thread(reader.close)
        record = FileRecord(
            id=FILE_ID_PREFIX + secrets.token_hex(12),
            tenant=caller().tenant,
            filename=filename,
            purpose=purpose,
            size_bytes=reader.size,
            count=len(requests),
            created=time.time(),
        )
        return await self.store.put(record, requests)

    async def UploadFile(
        self, chunks: AsyncIterator[pb.FileChunk | Undecodable], context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.File:
        reader = LineReader(self.config.jobs.max_file_bytes)
        try:
            return file_message(await self._read(chunks, reader))
        except TranslaneError as exc:
            await self._drain(chunks, reader.max_bytes - reader.size)
            await self._abort(context, exc)
            raise AssertionError("unreachable") from exc

    @staticmethod
    async def _drain(chunks: AsyncIterator[pb.FileChunk | Undecodable], budget: int) -> None:
        """Read (and drop) what the caller still sends, within the bytes its upload was allowed, before refusing
        it: a grpc.aio client still writing when the call ends may report INTERNAL instead of our status
        (grpc/grpc#36066). Past the budget, or on bytes that do not parse, the refusal goes at once."""
        async for chunk in chunks:
            if isinstance(chunk, Undecodable):
                return
            budget -= len(chunk.data)
            if budget < 0:
                return

    async def GetFile(self, request: pb.GetFileRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.File:
        try:
            return file_message(await self._record("id", request.id))
        except TranslaneError as exc:
            await self._abort(context, exc)
            raise AssertionError("unreachable") from exc

    async def ListFiles(
        self, request: pb.ListFilesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListFilesResponse:
        """The caller's files, oldest first, a page at a time (a page may be short, or empty, with a token)."""
        try:
            after, size = page(request.page_size, request.page_token)
            records = await self.store.page(after, size + 1)
        except TranslaneError as exc:
            await self._abort(context, exc)
            raise AssertionError("unreachable") from exc
        more = len(records) > size
        records = records[:size]
        return pb.ListFilesResponse(
            files=[file_message(r) for r in records if self._mine(r)],
            next_page_token=str(records[-1].seq) if more else "",
        )

    async def DeleteFile(
        self, request: pb.DeleteFileRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> empty_pb2.Empty:
        try:
            record = await self._record("id", request.id)
            if not await self.store.delete(record.id):
                raise self._not_found("id", request.id)
        except TranslaneError as exc:
            await self._abort(context, exc)
        return empty_pb2.Empty()
