"""Every failure comes back as OpenAI error JSON with the right HTTP status: auth, bad bodies, gRPC status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import grpc
import openai
import pytest
from translane.server import RunningServer
from translane.wire import from_rpc_error

from gateway_shim import RunningShim, ShimConfig, running_shim

from ..conftest import FullQueue, Sim
from .conftest import KEY

CHAT = "doubao-seed-1-6-251015"


def assert_openai_error(body: dict[str, object], status_type: str) -> None:
    error = body["error"]
    assert isinstance(error, dict)
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == status_type and error["message"]


class TestAuth:
    @pytest.fixture
    def shim_config(self) -> ShimConfig:
        return ShimConfig(port=0, default_target_language="zh", api_keys=frozenset({KEY, "sk-second"}))

    async def test_keys_are_required_except_on_healthz(self, shim: RunningShim) -> None:
        chat = {"messages": [{"role": "user", "content": "Hi"}]}
        async with aiohttp.ClientSession(shim.url) as s:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
                async with s.post("/v1/chat/completions", json=chat, headers=headers) as r:
                    assert r.status == 401
                    assert r.headers["WWW-Authenticate"] == "Bearer"
                    assert_openai_error(await r.json(), "invalid_request_error")
            async with s.get("/v1/models") as r:
                assert r.status == 401
            async with s.get("/healthz") as r:
                assert r.status == 200 and (await r.json())["status"] == "SERVING"
            async with s.post(
                "/translate", json={"text_list": ["Hi"]}, headers={"Authorization": "Bearer sk-second"}
            ) as r:
                assert r.status == 200

    async def test_sdk_sees_authentication_error(self, shim: RunningShim) -> None:
        async with openai.AsyncOpenAI(base_url=f"{shim.url}/v1", api_key="nope", max_retries=0) as c:
            with pytest.raises(openai.AuthenticationError):
                await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"messages": [', None),
        (b"\xff\xfe not utf-8", None),
        (b"[1, 2]", None),
        (b'{"messages": "Hi"}', "messages"),
        (b'{"messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
        (b'{"messages": [{"content": "Hi"}]}', "messages[0].role"),
        (b'{"messages": [{"role": "user", "content": "Hi"}], "stream": "yes"}', "stream"),
        (b'{"messages": [{"role": "user", "content": "Hi"}], "target_language": ["zh"]}', "target_language"),
        (b'{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": -1}', "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "Hi"}], "task_id": 12}', "task_id"),
        (b'{"messages": [{"role": "system", "content": "Translate to English."}]}', "messages"),
        # A field is checked whether or not it is the one used: its alias is set, or it does not apply.
        (
            b'{"messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 5, "max_tokens": "x"}',
            "max_tokens",
        ),
        (
            b'{"messages": [{"role": "user", "content": "Hi"}], "target_language": "fr", "target_lang": 5}',
            "target_lang",
        ),
        (
            b'{"messages": [{"role": "user", "content": "Hi"}], "stream_options": {"include_usage": 1}}',
            "stream_options.include_usage",
        ),
        (b'{"messages": [], "cache": "no"}', "cache"),
        # Only null stands for "absent": 0, false, [] are no model.
        (b'{"messages": [{"role": "user", "content": "Hi"}], "model": 0}', "model"),
        (b'{"messages": [], "model": false}', "model"),
    ],
)
async def test_malformed_bodies_are_400_with_a_message(
    http: aiohttp.ClientSession, body: bytes, field: str | None
) -> None:
    async with http.post("/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400
        payload = await r.json()
    assert_openai_error(payload, "invalid_request_error")
    assert payload["error"]["param"] == field
    assert "Traceback" not in payload["error"]["message"]


async def test_null_fields_are_absent(http: aiohttp.ClientSession) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "model": None, "cache": None, "max_tokens": None}
    async with http.post("/v1/chat/completions", json=body) as r:
        assert r.status == 200, await r.text()
    async with http.post("/translate", json={"text_list": ["Hi"], "model": None}) as r:
        assert r.status == 200, await r.text()


async def test_integral_numbers_are_integers(http: aiohttp.ClientSession) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 100.0}
    async with http.post("/v1/chat/completions", json=body) as r:
        assert r.status == 200, await r.text()


async def test_a_task_id_header_is_checked_beside_the_body_one(http: aiohttp.ClientSession) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "task_id": "job-1"}
    async with http.post("/v1/chat/completions", json=body, headers={"X-Task-Id": "x" * 300}) as r:
        assert r.status == 400
        assert (await r.json())["error"]["param"] == "X-Task-Id"


async def test_service_invalid_argument_is_400_naming_the_field(http: aiohttp.ClientSession) -> None:
    async with http.post(
        "/v1/chat/completions", json={"model": "no-such-model", "messages": [{"role": "user", "content": "Hi"}]}
    ) as r:
        assert r.status == 400
        error = (await r.json())["error"]
    assert error["param"] == "model" and "no-such-model" in error["message"]
    assert error["code"] == "invalid_argument"


async def test_unknown_route_and_method_are_json(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/nothing") as r:
        assert r.status == 404
        assert_openai_error(await r.json(), "invalid_request_error")
    async with http.get("/v1/chat/completions") as r:
        assert r.status == 405
        assert r.headers["Allow"] == "POST"
        assert_openai_error(await r.json(), "invalid_request_error")
    async with http.request("TRACE", "/healthz") as r:
        assert r.status == 405
        assert set(r.headers["Allow"].split(",")) == {"GET", "HEAD"}


class TestBodyLimit:
    @pytest.fixture
    def shim_config(self) -> ShimConfig:
        return ShimConfig(port=0, default_target_language="zh", max_body_bytes=1024)

    async def test_oversized_body_is_413(self, http: aiohttp.ClientSession) -> None:
        big = {"messages": [{"role": "user", "content": "x" * 2000}]}
        async with http.post("/v1/chat/completions", json=big) as r:
            assert r.status == 413
            error = (await r.json())["error"]
        assert error["code"] == "body_too_large" and "1024" in error["message"]

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: caught while reading
            for _ in range(4):
                yield b" " * 512

        async with http.post("/translate", data=chunks()) as r:
            assert r.status == 413


class TestQueueFull(FullQueue):
    async def test_resource_exhausted_is_429_with_retry_after(self, http: aiohttp.ClientSession) -> None:
        async def one(i: int) -> tuple[int, dict[str, str], dict[str, object]]:
            async with http.post(
                "/v1/chat/completions", json={"model": CHAT, "messages": [{"role": "user", "content": f"s{i}"}]}
            ) as r:
                return r.status, dict(r.headers), await r.json()

        results = await asyncio.gather(*(one(i) for i in range(4)))
        statuses = sorted(s for s, _, _ in results)
        assert statuses == [200, 200, 429, 429]
        for status, headers, body in results:
            if status == 429:
                assert int(headers["Retry-After"]) >= 1
                assert_openai_error(body, "rate_limit_error")


async def test_service_down_is_503_and_unhealthy() -> None:
    cfg = ShimConfig(port=0, default_target_language="zh", grpc_target="127.0.0.1:1", timeout_s=2)
    async with running_shim(cfg) as shim, aiohttp.ClientSession(shim.url) as s:
        async with s.get("/healthz") as r:
            assert r.status == 503
        async with s.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]}) as r:
            assert r.status == 503
            assert_openai_error(await r.json(), "service_unavailable_error")


# Every gRPC status, each on purpose: none falls through to a generic 500.
_EXPECTED_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_argument"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "out_of_range"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "unauthenticated"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_denied"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "already_exists"),
    grpc.StatusCode.ABORTED: (409, "aborted"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_exceeded"),
    grpc.StatusCode.INTERNAL: (500, "internal_error"),
    grpc.StatusCode.DATA_LOSS: (500, "data_loss"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "unimplemented"),
    grpc.StatusCode.UNKNOWN: (502, "unknown"),
    grpc.StatusCode.FAILED_PRECONDITION: (502, "failed_precondition"),
    grpc.StatusCode.CANCELLED: (503, "cancelled"),
    grpc.StatusCode.UNAVAILABLE: (503, "unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "deadline_exceeded"),
}


def test_every_grpc_status_has_a_deliberate_http_status() -> None:
    assert set(_EXPECTED_HTTP) == set(grpc.StatusCode) - {grpc.StatusCode.OK}


@pytest.mark.parametrize(("code", "expected"), list(_EXPECTED_HTTP.items()), ids=lambda v: str(v))
def test_grpc_status_mapping(code: grpc.StatusCode, expected: tuple[int, str]) -> None:
    status, error_code = expected
    trailers = grpc.aio.Metadata(("retry-after", "3"))
    exc = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, details="target_language: bad")
    err = from_rpc_error(exc)
    assert (err.status, err.code) == (status, error_code)
    if status in (429, 503):
        assert err.headers() == {"Retry-After": "3"}
    else:
        assert err.headers() == {}
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert err.param == "target_language"


async def test_stream_error_before_any_byte_keeps_its_status(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="no-such-model", stream=True, messages=[{"role": "user", "content": "Hi"}]
        )
    assert info.value.status_code == 400
    assert "no-such-model" in info.value.message


async def test_the_services_own_unavailable_is_not_retried_by_the_shim(
    http: aiohttp.ClientSession, sim: Sim, server: RunningServer
) -> None:
    """The provider failing is final once the service has tried: the shim's channel retries only
    transport failures (tests/test_rolling_restart.py), not this."""
    await sim.set(error_rate=1.0)
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Translate to German:\n\nHi"}]}
    async with http.post("/v1/chat/completions", json=body, headers={"Request-Timeout": "3"}) as r:
        assert r.status == 503, await r.text()
    requests = server.engine.metrics.requests.values
    answered = {k: v for k, v in requests.items() if k[0] == "Translate"}
    assert sum(answered.values()) == 1, answered
