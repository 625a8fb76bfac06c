"""The simulated provider, driven over loopback HTTP like the real Ark endpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from translane.config import load_config
from translane.sim import SimConfig, SimModelLimits, create_app
from translane.sim._limiter import CONCURRENCY, RPM, TPM, ModelLimiter
from translane.tokens import count_tokens

TR = "doubao-seed-translation-250915"
CHAT = "doubao-seed-1-6-flash-250828"
TEXT = "Hello {0}, <b0>world</b0>! 你好，世界。"


def _limits(
    api_style: str, *, rpm: int = 1000, tpm: int = 1_000_000, conc: int = 100, max_in: int = 1000
) -> SimModelLimits:
    return SimModelLimits(rpm=rpm, tpm=tpm, max_concurrency=conc, max_input_tokens=max_in, api_style=api_style)


def _config(**kw: Any) -> SimConfig:
    models = kw.pop("models", {TR: _limits("responses"), CHAT: _limits("chat_completions")})
    # Echo mode, so answers can be asserted exactly; the pseudo-translation has tests of its own.
    kw.setdefault("pseudo_translate", 0.0)
    return SimConfig(models=models, **kw)


class Sim:
    """A running simulator and a session pointed at it."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def post(
        self, path: str, body: Any, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any, Mapping[str, str]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.session.post(self.base + path, data=data, headers=headers) as resp:
            raw = await resp.read()
            return resp.status, json.loads(raw) if raw else None, resp.headers

    async def sse(self, path: str, body: Any) -> list[tuple[str | None, str]]:
        """(event, data) pairs of a streamed answer."""
        async with self.session.post(self.base + path, json=body) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/event-stream"
            raw = (await resp.read()).decode()
        events: list[tuple[str | None, str]] = []
        for block in raw.split("\n\n"):
            if not block:
                continue
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((fields.get("event"), fields["data"]))
        return events

    async def stats(self, model: str) -> dict[str, Any]:
        async with self.session.get(self.base + "/_sim/stats") as resp:
            data: dict[str, Any] = await resp.json()
        return {**data["models"][model], "traceparents": data["traceparents"]}

    async def configure(self, **changes: Any) -> tuple[int, Any, Mapping[str, str]]:
        return await self.post("/_sim/config", changes)


@asynccontextmanager
async def serving(config: SimConfig) -> AsyncIterator[Sim]:
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession() as session:
            yield Sim(session, f"http://{host}:{port}")
    finally:
        await runner.cleanup()


def _responses_body(text: str = TEXT, stream: bool = False, **options: str) -> dict[str, Any]:
    opts = options or {"source_language": "en", "target_language": "zh"}
    part = {"type": "input_text", "text": text, "translation_options": opts}
    return {"model": TR, "input": [{"role": "user", "content": [part]}], "stream": stream}


def _chat_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": CHAT,
        "messages": [
            {"role": "system", "content": "You translate text to German. Keep placeholders."},
            {"role": "user", "content": [{"type": "text", "text": TEXT}]},
        ],
        **extra,
    }


def _chat_prompt_tokens() -> int:
    return count_tokens("You translate text to German. Keep placeholders.") + count_tokens(TEXT) + 8


async def test_responses_non_stream() -> None:
    async with serving(_config()) as sim:
        status, body, _ = await sim.post("/api/v3/responses", _responses_body())
    assert status == 200
    out = f"[sim en->zh] {TEXT}"
    assert body["object"] == "response" and body["status"] == "completed" and body["model"] == TR
    assert body["output"][0]["content"][0] == {"type": "output_text", "text": out}
    assert body["usage"] == {
        "input_tokens": count_tokens(TEXT),
        "output_tokens": count_tokens(out),
        "total_tokens": count_tokens(TEXT) + count_tokens(out),
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


async def test_responses_stream() -> None:
    async with serving(_config()) as sim:
        events = await sim.sse("/v1/responses", _responses_body(stream=True, target_language="ja"))
    kinds = [e for e, _ in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    deltas = [json.loads(d) for e, d in events if e == "response.output_text.delta"]
    assert len(deltas) > 10  # about a token each
    assert all(d["type"] == "response.output_text.delta" for d in deltas)
    out = f"[sim auto->ja] {TEXT}"
    assert "".join(d["delta"] for d in deltas) == out
    final = json.loads(events[-1][1])["response"]
    assert final["output"][0]["content"][0]["text"] == out
    assert final["usage"]["output_tokens"] == count_tokens(out)


async def test_responses_plain_string_input_and_missing_target() -> None:
    async with serving(_config()) as sim:
        plain = {"model": TR, "input": "hi", "translation_options": {"target_language": "fr"}}
        status, body, _ = await sim.post("/api/v3/responses", plain)
        assert status == 200
        assert body["output"][0]["content"][0]["text"] == "[sim auto->fr] hi"
        status, body, _ = await sim.post("/api/v3/responses", {"model": TR, "input": "hi"})
        assert (status, body["error"]["code"]) == (400, "MissingParameter")
        assert set(body["error"]) == {"code", "message", "type"}


async def test_chat_non_stream_reads_target_from_system_prompt() -> None:
    async with serving(_config()) as sim:
        status, body, _ = await sim.post("/api/v3/chat/completions", _chat_body())
    assert status == 200 and body["object"] == "chat.completion"
    out = f"[sim auto->German] {TEXT}"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": out}
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] == _chat_prompt_tokens()
    assert usage["completion_tokens"] == count_tokens(out)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}


async def test_chat_hints_and_fallback_target() -> None:
    async with serving(_config()) as sim:
        hinted = _chat_body(translation_options={"source_language": "en", "target_language": "ko"})
        _, body, _ = await sim.post("/v1/chat/completions", hinted)
        assert body["choices"][0]["message"]["content"] == f"[sim en->ko] {TEXT}"
        bare = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}]}
        _, body, _ = await sim.post("/v1/chat/completions", bare)
        assert body["choices"][0]["message"]["content"] == "[sim auto->xx] hi"
        assert body["usage"]["prompt_tokens"] == count_tokens("hi") + 4


async def test_chat_stream_with_and_without_usage() -> None:
    async with serving(_config()) as sim:
        body = _chat_body(stream=True, stream_options={"include_usage": True})
        events = await sim.sse("/api/v3/chat/completions", body)
        plain = await sim.sse("/v1/chat/completions", _chat_body(stream=True))
    assert events[-1] == (None, "[DONE]") and plain[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    out = f"[sim auto->German] {TEXT}"
    assert text == out
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == _chat_prompt_tokens()
    assert chunks[-1]["usage"]["completion_tokens"] == count_tokens(out)
    assert not any("usage" in json.loads(d) for _, d in plain[:-1])


async def test_request_errors() -> None:
    small = _config(models={TR: _limits("responses", max_in=5), CHAT: _limits("chat_completions")})
    async with serving(small) as sim:
        cases = [
            ("/api/v3/responses", b"{not json", 400, "InvalidParameter"),
            ("/api/v3/responses", {**_responses_body(), "model": "nope"}, 404, "InvalidEndpointOrModel.NotFound"),
            ("/api/v3/responses", _responses_body("one two three four five six seven"), 400, "InvalidParameter"),
            ("/api/v3/chat/completions", {**_chat_body(), "model": TR}, 400, "InvalidParameter"),
            ("/api/v3/chat/completions", {"model": CHAT, "messages": []}, 400, "InvalidParameter"),
        ]
        for path, body, status, code in cases:
            got_status, got, _ = await sim.post(path, body)
            assert (got_status, got["error"]["code"]) == (status, code), (path, body)
        stats = await sim.stats(TR)
    assert stats["requests"] == 0 and stats["rate_limited"] == 0


async def test_rpm_limit_and_window_expiry() -> None:
    cfg = _config(models={TR: _limits("responses", rpm=3)}, window_s=0.3)
    async with serving(cfg) as sim:
        for _ in range(3):
            assert (await sim.post("/api/v3/responses", _responses_body()))[0] == 200
        status, body, headers = await sim.post("/api/v3/responses", _responses_body())
        assert (status, body["error"]["code"]) == (429, RPM)
        assert headers["Retry-After"] == "1"  # ceil of < 0.3 s, at least 1
        stats = await sim.stats(TR)
        assert stats["requests"] == 3 and stats["rate_limited"] == 1
        assert stats["max_window_requests"] == 3
        # The simulator's window runs on its event loop's clock: the 0.3 s passing is the scenario.
        await asyncio.sleep(0.3)
        assert (await sim.post("/api/v3/responses", _responses_body()))[0] == 200


async def test_tpm_limit() -> None:
    per_call = count_tokens(TEXT) + count_tokens(f"[sim en->zh] {TEXT}")
    cfg = _config(models={TR: _limits("responses", tpm=2 * per_call + 1)}, retry_after=False)
    async with serving(cfg) as sim:
        for _ in range(2):
            assert (await sim.post("/api/v3/responses", _responses_body()))[0] == 200
        status, body, headers = await sim.post("/api/v3/responses", _responses_body())
        assert (status, body["error"]["code"]) == (429, TPM)
        assert "Retry-After" not in headers
        stats = await sim.stats(TR)
        # The rejected call is not charged.
        assert stats["max_window_tokens"] == 2 * per_call
        assert stats["prompt_tokens"] == 2 * count_tokens(TEXT)


async def test_concurrency_limit() -> None:
    cfg = _config(models={TR: _limits("responses", conc=1)}, ttft_s=0.2)
    async with serving(cfg) as sim:
        url = sim.base + "/api/v3/responses"
        # Headers arrive before the first token, so the first call is in flight here.
        async with sim.session.post(url, json=_responses_body(stream=True)) as first:
            assert first.status == 200
            status, body, _ = await sim.post("/api/v3/responses", _responses_body())
            assert (status, body["error"]["code"]) == (429, CONCURRENCY)
            assert (await sim.stats(TR))["in_flight"] == 1
            await first.read()
        stats = await sim.stats(TR)
    assert stats["in_flight"] == 0 and stats["max_in_flight"] == 1 and stats["requests"] == 1


async def test_injected_faults() -> None:
    async with serving(_config()) as sim:
        status, now, _ = await sim.configure(error_rate=1.0)
        assert status == 200 and now["error_rate"] == 1.0
        status, body, _ = await sim.post("/api/v3/responses", _responses_body())
        assert (status, body["error"]["code"]) == (500, "InternalServiceError")

        await sim.configure(error_rate=0.0, rate_limit_rate=1.0)
        status, body, headers = await sim.post("/api/v3/responses", _responses_body())
        assert (status, body["error"]["code"]) == (429, "ServerOverloaded")
        assert "Retry-After" not in headers

        await sim.configure(rate_limit_rate=0.0, reset_rate=1.0)
        with pytest.raises(aiohttp.ClientError):
            await sim.post("/api/v3/responses", _responses_body())

        await sim.configure(reset_rate=0.0, stall_rate=1.0, stall_s=0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert (await sim.post("/api/v3/responses", _responses_body()))[0] == 200
        assert loop.time() - started >= 0.1

        stats = await sim.stats(TR)
        assert (stats["errors"], stats["rate_limited"], stats["requests"]) == (2, 1, 1)
        assert stats["in_flight"] == 0
        status, body, _ = await sim.configure(bogus=1)
        assert (status, body["error"]["code"]) == (400, "InvalidParameter")
        assert (await sim.configure(error_rate=2))[0] == 400


async def test_latency_paces_the_stream() -> None:
    async with serving(_config(ttft_s=0.05, tokens_per_s=400.0)) as sim:
        loop = asyncio.get_running_loop()
        started = loop.time()
        events = await sim.sse("/api/v3/responses", _responses_body(stream=True))
        elapsed = loop.time() - started
    pieces = sum(1 for e, _ in events if e == "response.output_text.delta")
    assert elapsed >= 0.05 + (pieces - 1) / 400.0


async def test_answer_repeat_makes_a_long_answer_to_a_short_question() -> None:
    async with serving(_config()) as sim:
        assert (await sim.configure(answer_repeat=3))[1]["answer_repeat"] == 3.0
        status, body, _ = await sim.post("/api/v3/responses", _responses_body())
        text = body["output"][0]["content"][0]["text"]
        once = f"[sim en->zh] {TEXT}"
        assert (status, text) == (200, " ".join([once] * 3))
        assert body["usage"]["output_tokens"] == count_tokens(text)
        events = await sim.sse("/api/v3/responses", _responses_body(stream=True))
        deltas = [json.loads(d)["delta"] for e, d in events if e == "response.output_text.delta"]
        assert "".join(deltas) == text


async def test_stats_reset_and_traceparent() -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with serving(_config()) as sim:
        await sim.post("/api/v3/responses", _responses_body(), headers={"traceparent": tp})
        stats = await sim.stats(TR)
        assert stats["requests"] == 1 and stats["traceparents"] == [tp]
        assert stats["prompt_tokens"] == count_tokens(TEXT)
        assert (await sim.post("/_sim/reset", {}))[0] == 200
        stats = await sim.stats(TR)
    assert stats["traceparents"] == [] and stats["rejected"] == {}
    assert all(v == 0 for k, v in stats.items() if k not in ("traceparents", "rejected"))


async def test_auth() -> None:
    async with serving(_config(api_key="sk-test")) as sim:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            status, body, _ = await sim.post("/api/v3/responses", _responses_body(), headers)
            assert (status, body["error"]["code"]) == (401, "AuthenticationError")
        ok = {"Authorization": "Bearer sk-test"}
        assert (await sim.post("/api/v3/responses", _responses_body(), ok))[0] == 200


def test_from_config_keys_by_wire_name_and_scales() -> None:
    cfg = load_config(env={})
    sim = SimConfig.from_config(cfg, limit_scale=0.001, window_s=1.0)
    assert sim.window_s == 1.0
    for model in cfg.models.values():
        limits = sim.models[model.wire_name]
        assert limits.rpm == max(1, round(model.rpm * 0.001))
        assert limits.tpm == max(1, round(model.tpm * 0.001))
        assert limits.api_style == model.api_style
        assert limits.max_input_tokens == model.max_input_tokens
    with pytest.raises(ValueError):
        SimConfig.from_config(cfg, error_rate=1.5)


def test_limiter_waits_with_owned_clock() -> None:
    by_rpm = ModelLimiter(_limits("responses", rpm=2), window_s=60.0)
    assert by_rpm.admit(0.0, 1) is None and by_rpm.admit(10.0, 1) is None
    rejected = by_rpm.admit(15.0, 1)
    assert rejected is not None and rejected.code == RPM
    assert rejected.wait_s == pytest.approx(45.0)
    assert by_rpm.admit(60.0, 1) is None  # the call at t=0 has left the window

    by_tpm = ModelLimiter(_limits("responses", tpm=100), window_s=60.0)
    for t in (0.0, 10.0, 20.0):
        assert by_tpm.admit(t, 30) is None
    rejected = by_tpm.admit(30.0, 50)  # 90 in the window: room once two calls leave
    assert rejected is not None and rejected.code == TPM
    assert rejected.wait_s == pytest.approx(40.0)
    never = by_tpm.admit(30.0, 101)
    assert never is not None and never.wait_s == 60.0
    assert by_tpm.max_window_requests == 3 and by_tpm.max_window_tokens == 90
    for _ in range(3):
        by_tpm.release()
    assert by_tpm.in_flight == 0 and by_tpm.max_in_flight == 3
