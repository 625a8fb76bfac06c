"""The upstream client: one pooled aiohttp session, both API styles, streaming or not.

One call here is one HTTP request: retries, rate limits and fallbacks are the
engine's business, because every retry must pass the governor again.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from .config import Config, ModelConfig, ProviderConfig
from .errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderServerError,
    ProviderTimeout,
    provider_error,
)
from .languages import language_name
from .openai_batch import OpenAIBatches
from .tokens import count_tokens
from .tracing import aiohttp_client_trace_configs

__all__ = ["Completion", "SegmentCall", "ThinkFilter", "UpstreamClient", "prompt_tokens", "strip_think"]


@dataclass(frozen=True, slots=True)
class SegmentCall:
    """What one upstream call translates."""

    text: str
    target_language: str
    source_language: str = ""
    max_output_tokens: int = 0
    glossary: tuple[tuple[str, str], ...] = ()
    mime_type: str = "text/plain"
    # A passthrough chat: these (role, content) messages are sent as written, in place of our prompt.
    messages: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    # True when the provider sent no usage and the figures were counted here.
    estimated: bool = False
    # Cut at the output budget: chat `finish_reason: "length"`, Responses `status: "incomplete"`.
    truncated: bool = False
    # Of completion_tokens, those a thinking model spent reasoning.
    reasoning_tokens: int = 0


class ThinkFilter:
    """Drops a leading `<think>…</think>` block from a reply, whole or fed in deltas.

    Some thinking models put their reasoning inside `content` this way; it must never reach a
    translation. Text before the block's end is held back, so a tag split across deltas is caught.
    """

    __slots__ = ("_held", "_state")
    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._held = ""
        self._state = "start"  # start → (thinking →) text

    def feed(self, delta: str) -> str:
        """The part of `delta` that is translation."""
        if self._state == "text":
            return delta
        self._held += delta
        if self._state == "start":
            head = self._held.lstrip()
            if head.startswith(self.OPEN):
                self._state = "thinking"
            elif self.OPEN.startswith(head):
                return ""  # maybe the tag, still arriving
            else:
                self._state, out, self._held = "text", self._held, ""
                return out
        end = self._held.find(self.CLOSE)
        if end < 0:
            return ""
        self._state, rest, self._held = "text", self._held[end + len(self.CLOSE) :].lstrip(), ""
        return rest

    def finish(self) -> str:
        """What was held back when the reply ends: reasoning that never closed is dropped."""
        out = self._held if self._state == "start" else ""
        self._held = ""
        return out


def strip_think(text: str) -> str:
    """`text` without a leading `<think>…</think>` block."""
    f = ThinkFilter()
    return f.feed(text) + f.finish()


def _system_prompt(call: SegmentCall) -> str:
    src = f" from {language_name(call.source_language)}" if call.source_language else ""
    lines = [
        f"You are a professional translator. Translate the user's text{src} into "
        f"{language_name(call.target_language)}. Reply with the translation only, no notes. "
        "Keep placeholders such as {0} and <b0></b0> exactly as they are."
    ]
    if call.mime_type == "text/html":
        lines.append("The text is HTML: translate only the text, keep every tag and attribute.")
    if call.glossary:
        lines.append("Use these translations for these terms:")
        lines.extend(f"- {s} => {t}" for s, t in call.glossary)
    return "\n".join(lines)


def _messages(call: SegmentCall) -> list[dict[str, str]]:
    if call.messages:
        return [{"role": role, "content": content} for role, content in call.messages]
    return [
        {"role": "system", "content": _system_prompt(call)},
        {"role": "user", "content": call.text},
    ]


def prompt_tokens(model: ModelConfig, call: SegmentCall) -> int:
    """Prompt tokens of the request we would send, counted locally."""
    if model.api_style == "responses":
        return count_tokens(call.text)
    return sum(count_tokens(m["content"]) + 4 for m in _messages(call))


def _body(model: ModelConfig, call: SegmentCall, stream: bool) -> dict[str, Any]:
    max_out = min(call.max_output_tokens or model.max_output_tokens, model.max_output_tokens)
    body: dict[str, Any]
    if model.api_style == "responses":
        options = {"target_language": call.target_language}
        if call.source_language:
            options["source_language"] = call.source_language
        body = {
            "model": model.wire_name,
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_text", "text": call.text, "translation_options": options}],
                }
            ],
            "max_output_tokens": max_out,
        }
    else:
        body = {"model": model.wire_name, "messages": _messages(call), "max_tokens": max_out}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if model.reasoning == "disabled":
            body["thinking"] = {"type": "disabled"}
        elif model.reasoning:
            body["reasoning_effort"] = model.reasoning
    if stream:
        body["stream"] = True
    body.update(model.extra_body)
    return body


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _detail(details: Any, key: str) -> int:
    value = details.get(key, 0) if isinstance(details, dict) else 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _usage(model: ModelConfig, call: SegmentCall, text: str, usage: Any, truncated: bool) -> Completion:
    if isinstance(usage, dict):
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        if isinstance(prompt, int) and isinstance(completion, int):
            cached = _detail(usage.get("prompt_tokens_details") or usage.get("input_tokens_details"), "cached_tokens")
            reasoning = _detail(
                usage.get("completion_tokens_details") or usage.get("output_tokens_details"), "reasoning_tokens"
            )
            return Completion(text, prompt, completion, cached, truncated=truncated, reasoning_tokens=reasoning)
    return Completion(text, prompt_tokens(model, call), count_tokens(text), 0, estimated=True, truncated=truncated)


def _response_text(data: Any) -> str:
    # Ark Responses: the text is in the output message's output_text parts.
    for item in data.get("output") or []:
        if item.get("type", "message") == "message":
            parts = [
                c.get("text", "") for c in item.get("content") or [] if c.get("type", "output_text") == "output_text"
            ]
            return "".join(parts)
    return str(data.get("output_text", ""))


def _completion(model: ModelConfig, call: SegmentCall, data: Any) -> Completion:
    """A whole (unstreamed) answer's text and usage."""
    if not isinstance(data, dict):
        raise ProviderServerError(f"{model.name}: answer is not a JSON object")
    if model.api_style == "responses":
        text = _response_text(data)
        truncated = data.get("status") == "incomplete"
    else:
        choices = data.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        # Reasoning arrives in `reasoning_content` (never read) or as a <think> block in `content`.
        text = strip_think(str((choice.get("message") or {}).get("content") or ""))
        truncated = choice.get("finish_reason") == "length"
    return _usage(model, call, text, data.get("usage"), truncated)


class UpstreamClient:
    """Pooled HTTP client for every configured provider. Use as an async context manager."""

    def __init__(self, config: Config, trace_configs: Sequence[aiohttp.TraceConfig] | None = None) -> None:
        """`trace_configs` default: the process's tracing (a span and a `traceparent` per call when it is on)."""
        self._config = config
        self._trace_configs = aiohttp_client_trace_configs() if trace_configs is None else list(trace_configs)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._headers = {name: self._provider_headers(p) for name, p in config.providers.items()}
        self._timeouts: dict[tuple[str, bool], aiohttp.ClientTimeout] = {}
        # The openai-batch routes' upstream batches (gathering, polled).
        self._openai_batches = OpenAIBatches(
            self._open_session, config.providers, functools.partial(self._raise_for, batch=True)
        )

    @staticmethod
    def _provider_headers(p: ProviderConfig) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if p.api_key:
            headers["Authorization"] = f"Bearer {p.api_key}"
        return headers

    async def __aenter__(self) -> UpstreamClient:
        if self._closed:
            raise RuntimeError("UpstreamClient cannot be reopened once closed")
        if self._session is None:
            # Lanes bound concurrency; the pool must not add a second, hidden limit.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                trace_configs=self._trace_configs or None,
                json_serialize=json.dumps,
                auto_decompress=True,
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("UpstreamClient is not open")
        return self._session

    async def aclose(self) -> None:
        """Cancel the upstream batches still running, close the pooled session (idempotent)."""
        self._closed = True
        await self._openai_batches.aclose()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _post(self, model: ModelConfig, body: dict[str, Any], timeout_s: float, stream: bool = False) -> Any:
        if self._session is None:
            raise RuntimeError("UpstreamClient is not open")
        provider = self._config.providers[model.provider]
        path = "/responses" if model.api_style == "responses" else "/chat/completions"
        return self._session.post(
            provider.base_url + path,
            data=json.dumps(body, ensure_ascii=False).encode(),
            headers=self._headers[model.provider],
            timeout=self._timeout(provider, timeout_s, stream),
        )

    def _timeout(self, provider: ProviderConfig, timeout_s: float, stream: bool) -> aiohttp.ClientTimeout:
        """The call's bounds: the caller's time left, at most the provider's timeout (that common case built once)."""
        key = (provider.name, stream)
        if timeout_s >= provider.timeout_s and key in self._timeouts:
            return self._timeouts[key]
        timeout = aiohttp.ClientTimeout(
            total=max(0.001, min(timeout_s, provider.timeout_s)),
            sock_connect=provider.connect_timeout_s,
            # A stream's bytes come as they are made: a silence this long is a stall. (A whole answer
            # arrives at once, after however long it takes, so no such bound on the others.)
            sock_read=provider.stream_idle_timeout_s if stream else None,
        )
        if timeout_s >= provider.timeout_s:
            self._timeouts[key] = timeout
        return timeout

    @staticmethod
    async def _raise_for(resp: aiohttp.ClientResponse, batch: bool = False) -> None:
        if resp.status < 400:
            return
        code, message = "", resp.reason or ""
        try:
            data = await resp.json(content_type=None)
            err = data.get("error") if isinstance(data, dict) else None
            if isinstance(err, dict):
                code = str(err.get("code") or err.get("type") or "")
                message = str(err.get("message") or message)
        except (ValueError, aiohttp.ClientError):
            pass
        raise provider_error(resp.status, code, message, _retry_after(resp.headers), batch=batch)

    async def complete(self, model: ModelConfig, call: SegmentCall, timeout_s: float) -> Completion:
        """One non-streaming call."""
        body = _body(model, call, stream=False)
        with _transport_errors(model, timeout_s):
            async with self._post(model, body, timeout_s) as resp:
                await self._raise_for(resp)
                data = await resp.json(content_type=None)
        return _completion(model, call, data)

    async def batch_complete(self, model: ModelConfig, call: SegmentCall, timeout_s: float) -> Completion:
        """One call on the model's batch route, the chat request as online, unstreamed: Ark Batch Chat POSTs it to
        {batch_url}/batch/chat/completions, given up to the route's long timeout; openai-batch sends it as a line
        of an upstream batch (translane.openai_batch) and waits for its answer up to `timeout_s`."""
        if self._session is None:
            raise RuntimeError("UpstreamClient is not open")
        provider = self._config.providers[model.provider]
        body = _body(model, call, stream=False)
        if model.batch_upstream_model:
            body["model"] = model.batch_upstream_model
        if model.batch_api == "openai-batch":
            return _completion(model, call, await self._openai_batches.call(model, body, timeout_s))
        timeout_s = min(timeout_s, model.batch_timeout_s)
        timeout = aiohttp.ClientTimeout(total=max(0.001, timeout_s), sock_connect=provider.connect_timeout_s)
        with _transport_errors(model, timeout_s):
            async with self._session.post(
                (model.batch_url or provider.base_url).rstrip("/") + "/batch/chat/completions",
                data=json.dumps(body, ensure_ascii=False).encode(),
                headers=self._headers[model.provider],
                timeout=timeout,
            ) as resp:
                await self._raise_for(resp, batch=True)
                data = await resp.json(content_type=None)
        return _completion(model, call, data)

    async def stream(self, model: ModelConfig, call: SegmentCall, timeout_s: float) -> AsyncIterator[str | Completion]:
        """One streaming call: yields text deltas, then one Completion with the usage."""
        body = _body(model, call, stream=True)
        parts: list[str] = []
        usage: Any = None
        truncated = False
        think = ThinkFilter()
        with _transport_errors(model, timeout_s):
            async with self._post(model, body, timeout_s, stream=True) as resp:
                await self._raise_for(resp)
                async for event, data in _sse(resp):
                    if data == "[DONE]":
                        break
                    payload = json.loads(data)
                    kind = payload.get("type") or event
                    if model.api_style == "responses":
                        if kind == "response.output_text.delta":
                            delta = str(payload.get("delta", ""))
                        elif kind in ("response.completed", "response.incomplete"):
                            usage = (payload.get("response") or {}).get("usage")
                            truncated = kind == "response.incomplete"
                            continue
                        elif kind in ("response.failed", "error"):
                            err = payload.get("error") or (payload.get("response") or {}).get("error") or {}
                            raise provider_error(
                                500, str(err.get("code", "")), str(err.get("message", "stream failed"))
                            )
                        else:
                            continue
                    else:
                        if payload.get("error"):
                            err = payload["error"]
                            raise provider_error(500, str(err.get("code", "")), str(err.get("message", "")))
                        if payload.get("usage"):
                            usage = payload["usage"]
                        choices = payload.get("choices") or []
                        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
                        truncated = truncated or choice.get("finish_reason") == "length"
                        delta = think.feed(str((choice.get("delta") or {}).get("content") or ""))
                    if delta:
                        parts.append(delta)
                        yield delta
                rest = think.finish()
                if rest:
                    parts.append(rest)
                    yield rest
        yield _usage(model, call, "".join(parts), usage, truncated)


@contextlib.contextmanager
def _transport_errors(model: ModelConfig, timeout_s: float) -> Iterator[None]:
    """Map what aiohttp raises (timeouts, resets, truncated bodies, bad JSON) into our error tree."""
    try:
        yield
    except ProviderError:
        raise
    except TimeoutError as exc:
        raise ProviderTimeout(f"no answer from {model.name} within {timeout_s:.1f}s") from exc
    except (aiohttp.ClientError, ValueError) as exc:
        raise ProviderConnectionError(f"{model.name}: {type(exc).__name__}: {exc}") from exc


async def _sse(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str]]:
    """Server-sent events as (event, data) pairs."""
    event, data = "", list[str]()
    async for raw in resp.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "", []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        elif line.startswith("event:"):
            event = line[6:].strip()
    if data:
        yield event, "\n".join(data)
