"""The simulated provider's HTTP server: routes, admission, fault injection and pacing."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from translane.tokens import count_tokens, warm_up

from . import _chat, _responses
from ._batch_chat import QUOTA, BatchChatModel
from ._call import Answer, Call, SimError, error_body, split_pieces, translate
from ._call import answer as make_answer
from ._config import SimConfig
from ._limiter import ModelLimiter
from ._openai_batch import OpenAIBatches

__all__ = ["create_app", "run_sim"]

_log = logging.getLogger(__name__)

_PREFIXES = ("/api/v3", "/v1")
_TRACEPARENTS_KEPT = 200
# Long enough for a paced stream to finish its current write, short enough that
# stopping never waits out a stalled call.
_SHUTDOWN_TIMEOUT_S = 1.0
_SSE_HEADERS = {"Cache-Control": "no-cache"}


@dataclass(frozen=True, slots=True)
class _Wire:
    """One API style: how its requests parse and its answers render."""

    api_style: str
    id_prefix: str
    parse: Callable[[Mapping[str, Any], str], Call]
    render: Callable[[Call, Answer], bytes]
    render_stream: Callable[[Call, Answer, list[str]], tuple[bytes, list[bytes], bytes]]


_CHAT = _Wire("chat_completions", "chatcmpl-sim", _chat.parse, _chat.render, _chat.render_stream)
_RESPONSES = _Wire("responses", "resp_sim", _responses.parse, _responses.render, _responses.render_stream)


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=error_body(status, code, message),
        content_type="application/json",
        headers=headers,
    )


def _drop(request: web.Request) -> web.Response:
    # Closing the transport before any byte of an answer is what a reset looks like to
    # the client; aiohttp then finds nothing to write the returned response to.
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)


def _json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object; SimError otherwise."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise SimError(400, "InvalidParameter", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise SimError(400, "InvalidParameter", "The request body must be a JSON object.")
    return body


class _Simulator:
    """The provider's state: current config, one limiter per model, counters and the RNG."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._limiters = {name: ModelLimiter(limits, config.window_s) for name, limits in config.models.items()}
        self._rng = random.Random(config.seed)
        self._traceparents: deque[str] = deque(maxlen=_TRACEPARENTS_KEPT)
        self._ids = itertools.count(1)
        # Ark Batch Chat's days run on the monotonic clock, from the simulator's start (or last reset).
        start = time.monotonic()
        self._batch_chat = {name: BatchChatModel(config.batch_day_s, start) for name in config.models}
        self.openai_batches = OpenAIBatches(lambda: self.config, self._complete)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, _CHAT)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, _RESPONSES)

    async def _serve(self, request: web.Request, wire: _Wire) -> web.StreamResponse:
        traceparent = request.headers.get("traceparent")
        if traceparent is not None:
            self._traceparents.append(traceparent)
        # One snapshot per call: a /_sim/config change applies to calls that arrive after it.
        cfg = self.config
        if cfg.api_key and request.headers.get("Authorization") != f"Bearer {cfg.api_key}":
            return _error(401, "AuthenticationError", "The API key is missing or invalid.")
        try:
            limiter, call, answer = self._prepare(_json_object(await request.read()), wire, cfg)
        except SimError as exc:
            return _error(exc.status, exc.code, exc.message)
        completion_tokens = answer.completion_tokens
        rng = self._rng
        if cfg.rate_limit_rate and rng.random() < cfg.rate_limit_rate:
            limiter.rate_limited += 1
            return _error(429, "ServerOverloaded", "The service is overloaded (simulated).")
        if cfg.spend_limit_rate and rng.random() < cfg.spend_limit_rate:
            limiter.errors += 1
            return _error(429, "SetLimitExceeded", "The account's spending limit is reached (simulated).")
        now = asyncio.get_running_loop().time()
        rejection = limiter.admit(now, call.prompt_tokens + completion_tokens)
        if rejection is not None:
            limiter.rate_limited += 1
            limiter.rejected[rejection.code] = limiter.rejected.get(rejection.code, 0) + 1
            headers = None
            if cfg.retry_after:
                headers = {"Retry-After": str(max(1, math.ceil(rejection.wait_s)))}
            return _error(429, rejection.code, rejection.message, headers)
        try:
            if cfg.error_rate and rng.random() < cfg.error_rate:
                limiter.errors += 1
                return _error(500, "InternalServiceError", "Internal service error (simulated).")
            if cfg.reset_rate and rng.random() < cfg.reset_rate:
                limiter.errors += 1
                return _drop(request)
            if cfg.garbage_rate and rng.random() < cfg.garbage_rate:
                limiter.errors += 1
                return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
            if cfg.stall_rate and rng.random() < cfg.stall_rate:
                await asyncio.sleep(cfg.stall_s)
            response, delivered = await (self._stream if call.stream else self._reply)(request, wire, call, answer, cfg)
            if delivered:
                limiter.requests += 1
                limiter.prompt_tokens += call.prompt_tokens
                limiter.completion_tokens += completion_tokens
            return response
        finally:
            limiter.release()

    async def batch_chat(self, request: web.Request) -> web.Response:
        """Ark Batch Chat: the chat call unstreamed, slow, with no concurrency limit and a daily token quota."""
        cfg = self.config
        if cfg.api_key and request.headers.get("Authorization") != f"Bearer {cfg.api_key}":
            return _error(401, "AuthenticationError", "The API key is missing or invalid.")
        try:
            body = _json_object(await request.read())
            if body.get("stream") is True:
                raise SimError(400, "InvalidParameter", "Batch chat does not stream: `stream` must be false.")
            _, call, answer = self._prepare(body, _CHAT, cfg)
        except SimError as exc:
            return _error(exc.status, exc.code, exc.message)
        batch = self._batch_chat[call.model]
        retry_after = {"Retry-After": "1"} if cfg.retry_after else None
        rng = self._rng
        if cfg.rate_limit_rate and rng.random() < cfg.rate_limit_rate:
            batch.rate_limited += 1
            return _error(429, "ServerOverloaded", "The service is overloaded (simulated).", retry_after)
        wait_s = batch.charge(time.monotonic(), call.prompt_tokens + answer.completion_tokens, int(cfg.batch_tpd))
        if wait_s is not None:
            headers = {"Retry-After": str(max(1, math.ceil(wait_s)))} if cfg.retry_after else None
            message = f"The model's batch token quota for the day ({int(cfg.batch_tpd)} tokens) is used up."
            return _error(429, QUOTA, message, headers)
        if cfg.error_rate and rng.random() < cfg.error_rate:
            batch.errors += 1
            return _error(500, "InternalServiceError", "Internal service error (simulated).")
        batch.enter()
        try:
            if cfg.batch_latency_s > 0:
                await asyncio.sleep(cfg.batch_latency_s)
        finally:
            batch.leave()
        batch.requests += 1
        batch.prompt_tokens += call.prompt_tokens
        batch.completion_tokens += answer.completion_tokens
        return web.Response(body=_CHAT.render(call, answer), content_type="application/json")

    def _complete(self, body: Mapping[str, Any], endpoint: str) -> tuple[int, bytes, int, int]:
        """One line of an OpenAI batch, answered as the online route would: status, body and tokens."""
        wire = _CHAT if endpoint.endswith("/chat/completions") else _RESPONSES
        try:
            if body.get("stream") is True:
                raise SimError(400, "InvalidParameter", "A batch request does not stream: `stream` must be false.")
            _, call, answer = self._prepare(body, wire, self.config)
        except SimError as exc:
            return exc.status, error_body(exc.status, exc.code, exc.message), 0, 0
        return 200, wire.render(call, answer), call.prompt_tokens, answer.completion_tokens

    def _prepare(self, body: Mapping[str, Any], wire: _Wire, cfg: SimConfig) -> tuple[ModelLimiter, Call, Answer]:
        """A request body's model, call and simulated answer; SimError if the provider would refuse it."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise SimError(400, "MissingParameter", "The parameter `model` is required.")
        limiter = self._limiters.get(model)
        if limiter is None:
            raise SimError(404, "InvalidEndpointOrModel.NotFound", f"The model or endpoint {model} is not found.")
        limits = limiter.limits
        # Ark serves Responses-only models (the translation model) on nothing else.
        if wire is _CHAT and limits.api_style == "responses":
            raise SimError(400, "InvalidParameter", f"The model {model} serves only /responses.")
        call = wire.parse(body, model)
        if call.prompt_tokens > limits.max_input_tokens:
            raise SimError(
                400,
                "InvalidParameter",
                f"The input has {call.prompt_tokens} tokens; the limit is {limits.max_input_tokens}.",
            )
        caps = [int(c) for c in (call.max_tokens, cfg.output_cap_tokens) if c]
        ident = f"{wire.id_prefix}{next(self._ids):010d}"
        leak = bool(cfg.untranslated_rate) and self._rng.random() < cfg.untranslated_rate
        output = call.text if leak else translate(call, bool(cfg.pseudo_translate))
        if cfg.answer_repeat >= 2:
            output = " ".join([output] * int(cfg.answer_repeat))
        answer = make_answer(
            ident,
            int(time.time()),
            output,
            int(cfg.reasoning_tokens),
            min(caps) if caps else 0,
            bool(cfg.think_in_content),
            count_tokens,
        )
        return limiter, call, answer

    async def _reply(
        self, request: web.Request, wire: _Wire, call: Call, answer: Answer, cfg: SimConfig
    ) -> tuple[web.StreamResponse, bool]:
        delay = cfg.ttft_s
        if cfg.tokens_per_s:
            delay += answer.completion_tokens / cfg.tokens_per_s
        if delay > 0:
            await asyncio.sleep(delay)
        return web.Response(body=wire.render(call, answer), content_type="application/json"), True

    async def _stream(
        self, request: web.Request, wire: _Wire, call: Call, answer: Answer, cfg: SimConfig
    ) -> tuple[web.StreamResponse, bool]:
        """The answer as SSE, paced by ttft_s and tokens_per_s; False if the client left early."""
        opening, frames, closing = wire.render_stream(call, answer, split_pieces(answer.content))
        if cfg.ttft_s == 0 and cfg.tokens_per_s == 0:
            # Nothing to pace: one plain body (no chunked writes) keeps the zero-latency sim cheap.
            body = b"".join((opening, *frames, closing))
            return web.Response(body=body, content_type="text/event-stream", headers=_SSE_HEADERS), True
        response = web.StreamResponse(headers=_SSE_HEADERS)
        response.content_type = "text/event-stream"
        loop = asyncio.get_running_loop()
        first_at = loop.time() + cfg.ttft_s
        interval = 1.0 / cfg.tokens_per_s if cfg.tokens_per_s else 0.0
        try:
            await response.prepare(request)
            await response.write(opening)
            for i, frame in enumerate(frames):
                # Deadlines count from the start, so pacing doesn't drift with wake-up delays.
                delay = first_at + i * interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await response.write(frame)
            await response.write(closing)
            await response.write_eof()
        except ConnectionResetError:
            # The client hung up mid-stream: not an error of ours, and aiohttp copes with
            # being handed the half-written response.
            return response, False
        return response, True

    async def stats(self, request: web.Request) -> web.Response:
        now, tpd = time.monotonic(), int(self.config.batch_tpd)
        return web.json_response(
            {
                "window_s": self.config.window_s,
                "models": {name: lim.stats() for name, lim in self._limiters.items()},
                "traceparents": list(self._traceparents),
                "batch": {name: b.stats(now, tpd) for name, b in self._batch_chat.items()},
                "openai_batch": self.openai_batches.stats(),
            }
        )

    async def reset(self, request: web.Request) -> web.Response:
        for limiter in self._limiters.values():
            limiter.reset()
        now = time.monotonic()
        for batch in self._batch_chat.values():
            batch.reset(now)
        await self.openai_batches.close()
        self._traceparents.clear()
        # Reseeded too, so a test that resets sees the same fault sequence every run.
        self._rng.seed(self.config.seed)
        return web.json_response({"reset": True})

    async def configure(self, request: web.Request) -> web.Response:
        try:
            changes = json.loads(await request.read())
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            self.config = self.config.with_runtime(changes)
        except ValueError as exc:
            return _error(400, "InvalidParameter", str(exc))
        return web.json_response(self.config.runtime())


def create_app(config: SimConfig) -> web.Application:
    """The simulated provider as an aiohttp application."""
    # A stall on the first call would bunch up arrivals and skew the windows.
    warm_up()
    sim = _Simulator(config)
    app = web.Application()
    for prefix in _PREFIXES:
        app.router.add_post(f"{prefix}/chat/completions", sim.chat)
        app.router.add_post(f"{prefix}/responses", sim.responses)
    app.router.add_post("/api/v3/batch/chat/completions", sim.batch_chat)
    app.router.add_routes(sim.openai_batches.routes())

    async def stop_batches(app: web.Application) -> None:
        await sim.openai_batches.close()

    app.on_cleanup.append(stop_batches)
    app.router.add_get("/_sim/stats", sim.stats)
    app.router.add_post("/_sim/reset", sim.reset)
    app.router.add_post("/_sim/config", sim.configure)
    return app


async def run_sim(config: SimConfig, host: str = "127.0.0.1", port: int = 8900) -> None:
    """Serve the simulated provider on host:port until cancelled."""
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        _log.info("simulated provider listening on http://%s:%d", host, port)
        await asyncio.Event().wait()  # until the caller cancels us
    finally:
        await runner.cleanup()
