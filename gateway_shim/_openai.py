"""OpenAI chat completions and model listing, POST /v1/chat/completions and GET /v1/models, onto Translate /
TranslateStream / ListModels (their format: translane.wire.openai)."""

from __future__ import annotations

import contextlib
import socket
import time

import grpc
from aiohttp import web
from translane.v1 import translate_pb2 as pb
from translane.wire import (
    ChatRequest,
    Chunks,
    StopScan,
    completion,
    error_event,
    from_rpc_error,
    model_list,
    parse_chat,
)

from ._http import CLIENT_GONE, STATE, json_response, read_json, target_header, task_id_of

__all__ = ["chat_completions", "list_models"]

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Shown as `model` in stream chunks until the service names the model that serves.
_UNNAMED_MODEL = "translane"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions."""
    state = request.app[STATE]
    arrived = time.monotonic()  # one deadline for the whole request: reading the body spends it too
    body = await read_json(request, state.config.max_body_bytes, state.backend.timeout(request.headers, False))
    config = state.config
    chat = parse_chat(body, task_id_of(request, body), config.default_target_language, target_header(request))
    if chat.batch is None:
        # A connection check: answer without calling the service, let alone the provider.
        if chat.stream:
            return await _connection_check_stream(request, chat)
        return json_response(completion(chat.model or _UNNAMED_MODEL, "", None))
    chat = chat.passthrough_to(config.passthrough_model)
    grpc_request = chat.grpc_request()
    if chat.stream:
        return await _stream(request, chat, grpc_request, time.monotonic() - arrived)
    resp = await state.backend.translate(grpc_request, request.headers, time.monotonic() - arrived)
    assert chat.batch is not None
    content = chat.batch.render([t.text for t in resp.translations])
    truncated = any(t.truncated for t in resp.translations)
    asked = chat.reply_model(resp.requested_model)
    return json_response(completion(asked, content, resp.usage, resp.model, truncated, chat.stop))


async def _open_sse(request: web.Request) -> web.StreamResponse:
    send_buffer = request.app[STATE].config.stream_send_buffer_bytes
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if send_buffer and sock is not None:
        # A stream goes at its reader's pace: past this, the writes below wait, and so the call's reads.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    response = web.StreamResponse(headers=_SSE_HEADERS)
    response.content_type = "text/event-stream"
    await response.prepare(request)
    return response


async def _connection_check_stream(request: web.Request, chat: ChatRequest) -> web.StreamResponse:
    chunks = Chunks(chat.model or _UNNAMED_MODEL, chat.include_usage)
    response = await _open_sse(request)
    await response.write(chunks.delta({"role": "assistant", "content": ""}) + chunks.closing(None))
    await response.write_eof()
    return response


async def _stream(
    request: web.Request, chat: ChatRequest, grpc_request: pb.TranslateRequest, spent_s: float
) -> web.StreamResponse:
    """Relay TranslateStream as SSE chunks, putting the batch's separators between segments and ending the
    text at the first stop sequence."""
    assert chat.batch is not None
    batch = chat.batch
    call = request.app[STATE].backend.stream(grpc_request, request.headers, spent_s)
    try:
        # Wait for the first message before answering, so an error can still get its HTTP status.
        message = await call.read()
        # Every chunk names the model asked for; the one that served is named once, at the finish.
        requested = chat.reply_model(message.requested_model if message is not grpc.aio.EOF else "")
        chunks = Chunks(requested or chat.model or _UNNAMED_MODEL, chat.include_usage)
        scan = StopScan(chat.stop)
        response = await _open_sse(request)
        try:
            await response.write(chunks.delta({"role": "assistant", "content": ""}))
            opened = -1
            usage: pb.Usage | None = None
            served = ""
            truncated = False
            while message is not grpc.aio.EOF:
                served = served or message.model
                truncated = truncated or message.truncated
                if message.final:
                    usage = message.usage
                    # Read the stream's end too: the call (and its trace span) ends now, not when collected.
                    await call.read()
                    break
                if not scan.stopped:
                    parts = []
                    while opened < message.segment_index:
                        opened += 1
                        parts.append(batch.before(opened))
                    parts.append(message.delta)
                    text = scan.feed("".join(parts))
                    if text:
                        await response.write(chunks.delta({"content": text}))
                    if scan.stopped:
                        # The answer ends here; the call runs on only for the usage it will report.
                        await response.write(chunks.finish(served))
                        if not chat.include_usage:
                            break
                message = await call.read()
            out = b""
            if not scan.stopped:
                # The separators of segments that sent nothing, then what the scan held back.
                rest = scan.feed("".join(batch.before(i) for i in range(opened + 1, len(batch.segments))))
                rest += scan.end()
                if rest:
                    out += chunks.delta({"content": rest})
                out += chunks.finish(served, truncated and not scan.stopped)
            await response.write(out + chunks.end(usage))
            await response.write_eof()
        except grpc.aio.AioRpcError as exc:
            # Too late for a status code: an error event, which the OpenAI SDK raises as APIError.
            await response.write(error_event(from_rpc_error(exc)))
        except ConnectionResetError:
            request[CLIENT_GONE] = True  # the client left: a 499 in the metrics; `finally` cancels the call
        return response
    finally:
        call.cancel()


async def list_models(request: web.Request) -> web.Response:
    """GET /v1/models, from ListModels."""
    resp = await request.app[STATE].backend.models(request.headers)
    return json_response(model_list(resp))
