"""Sending one request to a target and timing it: OpenAI-compatible HTTP (stream or not) or this service's gRPC."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import grpc

from translane import tls
from translane.calls import retry_after_s
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ._config import LoadConfig, Target
from ._data import Prompt, fill
from ._records import Record

__all__ = ["Client", "GrpcClient", "HttpClient", "open_client"]


class Client(Protocol):
    async def send(self, record: Record, prompt: Prompt, clock0: float) -> None: ...

    async def aclose(self) -> None: ...


def _default_body(cfg: LoadConfig) -> dict[str, Any]:
    # An instruction any chat endpoint reads, the shim included (which translates nothing it cannot read).
    message = {"role": "user", "content": "Translate to Simplified Chinese:\n\n{{prompt}}"}
    body: dict[str, Any] = {"model": cfg.model, "messages": [message]}
    if cfg.max_tokens:
        body["max_tokens"] = cfg.max_tokens
    return body


def _outcome_of_status(status: int) -> str:
    if status == 429:
        return "rate_limited"
    return "server_error" if status >= 500 else "client_error"


class HttpClient:
    """POST /chat/completions (the URL as given), one pooled session for the run."""

    def __init__(self, cfg: LoadConfig, target: Target) -> None:
        self.cfg = cfg
        self.url = target.url
        headers = {"Content-Type": "application/json", **cfg.headers}
        key = cfg.api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._headers = headers
        self._template = dict(cfg.body) if cfg.body is not None else _default_body(cfg)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=cfg.timeout_s)
        )

    async def aclose(self) -> None:
        await self._session.close()

    def _body(self, record: Record, prompt: Prompt) -> dict[str, Any]:
        body: dict[str, Any] = fill(self._template, {**prompt, "task_id": record.task_id})
        body.setdefault("task_id", record.task_id)
        if self.cfg.stream:
            body["stream"] = True
            body.setdefault("stream_options", {"include_usage": True})
        return body

    async def send(self, record: Record, prompt: Prompt, clock0: float) -> None:
        body = self._body(record, prompt)
        t0 = time.perf_counter()
        record.sent_s = t0 - clock0
        try:
            async with self._session.post(self.url, json=body, headers=self._headers) as resp:
                record.status = str(resp.status)
                if resp.status != 200:
                    await self._failed(record, resp)
                elif self.cfg.stream:
                    await self._read_stream(record, resp, t0)
                else:
                    # A whole answer has no first token: TTFT (and TPOT) stay None, not e2e again.
                    data = await resp.json(content_type=None)
                    choices = data.get("choices") if isinstance(data, dict) else None
                    message = (choices[0].get("message") or {}) if choices and isinstance(choices[0], dict) else {}
                    record.reasoning = bool(message.get("reasoning_content"))
                    self._usage(record, data.get("usage") if isinstance(data, dict) else None, 0)
        except TimeoutError:
            record.outcome, record.error = "timeout", f"no answer within {self.cfg.timeout_s:g}s"
        except (aiohttp.ClientError, ValueError) as exc:
            record.outcome, record.error = "connection_error", type(exc).__name__
        record.e2e_ms = (time.perf_counter() - t0) * 1000

    async def _failed(self, record: Record, resp: aiohttp.ClientResponse) -> None:
        record.outcome = _outcome_of_status(resp.status)
        retry = resp.headers.get("Retry-After")
        if retry:
            try:
                record.retry_after_s = float(retry)
            except ValueError:
                pass
        try:
            data = await resp.json(content_type=None)
            err = data.get("error") if isinstance(data, dict) else None
            record.error = str((err or {}).get("code") or (err or {}).get("type") or resp.reason or "")
        except (ValueError, aiohttp.ClientError):
            record.error = resp.reason or ""

    async def _read_stream(self, record: Record, resp: aiohttp.ClientResponse, t0: float) -> None:
        last = 0.0
        deltas = 0
        usage: Any = None
        async for raw in resp.content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            chunk = json.loads(data)
            if chunk.get("error"):
                record.outcome, record.error = "server_error", str(chunk["error"].get("code", "stream error"))
                return
            usage = chunk.get("usage") or usage
            choices = chunk.get("choices") or []
            delta = (choices[0].get("delta") or {}) if choices else {}
            if delta.get("reasoning_content"):
                # Reasoning is timed apart: TTFT is the first piece of the answer itself.
                record.reasoning = True
                if record.first_reasoning_ms is None:
                    record.first_reasoning_ms = (time.perf_counter() - t0) * 1000
            content = delta.get("content")
            if content:
                last = record.chunk(t0, last)
                deltas += 1
        self._usage(record, usage, deltas)

    def _usage(self, record: Record, usage: Any, deltas: int) -> None:
        if isinstance(usage, Mapping):
            record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            record.completion_tokens = int(usage.get("completion_tokens") or 0)
            details = usage.get("prompt_tokens_details") or {}
            record.cached_tokens = int(details.get("cached_tokens") or 0) if isinstance(details, Mapping) else 0
            segments = usage.get("cached_segments")
            record.cached_segments = segments if isinstance(segments, int) and not isinstance(segments, bool) else 0
            out_details = usage.get("completion_tokens_details") or {}
            if isinstance(out_details, Mapping):
                record.reasoning_tokens = int(out_details.get("reasoning_tokens") or 0)
            if isinstance(usage.get("cost"), int | float):
                record.cost = float(usage["cost"])
                return
        else:
            record.completion_tokens = deltas  # no usage sent: about a token a delta
            record.estimated = True
        record.cost = _priced(self.cfg, record)


def _priced(cfg: LoadConfig, r: Record) -> float:
    return (r.prompt_tokens * cfg.input_price_per_mtok + r.completion_tokens * cfg.output_price_per_mtok) / 1e6


_GRPC_OUTCOMES = {
    grpc.StatusCode.RESOURCE_EXHAUSTED: "rate_limited",
    grpc.StatusCode.DEADLINE_EXCEEDED: "timeout",
    grpc.StatusCode.UNAVAILABLE: "server_error",
    grpc.StatusCode.INTERNAL: "server_error",
    grpc.StatusCode.UNKNOWN: "server_error",
}


class GrpcClient:
    """translane.v1.Translator: Translate, or TranslateStream with --stream."""

    def __init__(self, cfg: LoadConfig, target: Target) -> None:
        self.cfg = cfg
        self._channel = tls.channel(target.grpc, tls=tls.ClientTLS.from_env(), api_key=tls.client_api_key())
        self._stub = pb_grpc.TranslatorStub(self._channel)
        self._priority = pb.PRIORITY_BATCH if cfg.priority == "batch" else pb.PRIORITY_INTERACTIVE

    async def aclose(self) -> None:
        await self._channel.close()

    async def send(self, record: Record, prompt: Prompt, clock0: float) -> None:
        text = prompt.get("prompt") or prompt.get("text") or next(iter(prompt.values()), "")
        req = pb.TranslateRequest(
            segments=[text],
            target_language=self.cfg.target_language,
            model=self.cfg.model,
            task_id=record.task_id,
            priority=self._priority,
            max_output_tokens=self.cfg.max_tokens,
            no_cache=not self.cfg.cache,
        )
        t0 = time.perf_counter()
        record.sent_s = t0 - clock0
        try:
            if self.cfg.stream:
                usage = await self._stream(record, req, t0)
            else:
                # Unary: the answer comes whole, so TTFT (and TPOT) do not apply; they stay None.
                resp = await self._stub.Translate(req, timeout=self.cfg.timeout_s)
                usage = resp.usage
            record.status = "OK"
            record.prompt_tokens, record.completion_tokens = usage.prompt_tokens, usage.completion_tokens
            record.cached_tokens = usage.cached_tokens
            record.cached_segments = usage.cached_segments
            record.reasoning_tokens = usage.reasoning_tokens
            record.estimated = usage.estimated
            record.cost = usage.cost or _priced(self.cfg, record)
        except grpc.aio.AioRpcError as exc:
            record.status = exc.code().name
            record.outcome = _GRPC_OUTCOMES.get(exc.code(), "client_error")
            record.error = (exc.details() or "")[:200]
            record.retry_after_s = retry_after_s(exc)
        record.e2e_ms = (time.perf_counter() - t0) * 1000

    async def _stream(self, record: Record, req: pb.TranslateRequest, t0: float) -> pb.Usage:
        usage = pb.Usage()
        last = 0.0
        async for chunk in self._stub.TranslateStream(req, timeout=self.cfg.timeout_s):
            if chunk.delta:
                last = record.chunk(t0, last)
            usage = chunk.usage
        return usage


def open_client(cfg: LoadConfig, target: Target) -> Client:
    """The client for `target` (its session or channel opens now; close with aclose)."""
    return HttpClient(cfg, target) if target.url else GrpcClient(cfg, target)


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
