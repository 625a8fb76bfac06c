"""Bad input at the shim is a 4xx in OpenAI error JSON naming the field: never a 5xx, never a hang, never a
provider call, and never an error that quotes more than a bounded prefix of what it rejects."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
import pytest_asyncio
from translane.wire import WireError

from gateway_shim import RunningShim
from gateway_shim._http import MAX_JSON_DEPTH

from ..conftest import Sim
from .conftest import KEY

MODEL = "doubao-seed-translation-250915"
CHAT = "doubao-seed-1-6-251015"
JSON = {"Content-Type": "application/json"}
# What any error message may quote of one rejected value, with room for the words around it.
MAX_MESSAGE_CHARS = 400


async def provider_calls(sim: Sim) -> int:
    """Calls the simulated provider admitted, over every model."""
    return sum(int(m.get("admitted", 0)) for m in (await sim.stats())["models"].values())


async def post(
    session: aiohttp.ClientSession, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    """POST raw bytes; the status and the body, which must be JSON."""
    async with session.post(path, data=body, headers={**JSON, **(headers or {})}) as r:
        return r.status, json.loads(await r.read())


def error_of(payload: dict[str, object]) -> dict[str, object]:
    error = payload["error"]
    assert isinstance(error, dict)
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


# -- lone surrogates ---------------------------------------------------------------------------------------

CHAT_HI = '"messages": [{"role": "user", "content": "Hi"}]'


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "a\\ud800b"}]}', "messages[0].content"),
        (
            "/v1/chat/completions",
            '{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udfff"}]}]}',
            "messages[0].content[0].text",
        ),
        ("/v1/chat/completions", '{"messages": [{"role": "\\ud800", "content": "Hi"}]}', "messages[0].role"),
        ("/v1/chat/completions", '{"model": "m\\udc00\\ud800", ' + CHAT_HI + "}", "model"),
        ("/v1/chat/completions", '{"target_language": "\\ud800", ' + CHAT_HI + "}", "target_language"),
        ("/v1/chat/completions", '{"source_language": "zh\\udbff", ' + CHAT_HI + "}", "source_language"),
        ("/v1/chat/completions", '{"task_id": "t\\ud800", ' + CHAT_HI + "}", "task_id"),
        # Mistyped as well: the error that would quote it back is the one that must still encode.
        ("/v1/chat/completions", '{"messages": "\\ud800"}', "messages"),
        ("/v1/chat/completions", '{"stream": "\\ud800", ' + CHAT_HI + "}", "stream"),
        ("/v1/chat/completions", '{"metadata": {"note": "\\ud800"}, ' + CHAT_HI + "}", "metadata.note"),
        ("/translate", '{"text_list": ["ok", "\\ud800"], "target_lang": "zh"}', "text_list[1]"),
        ("/translate", '{"text_list": ["Hi"], "model": "\\ud800"}', "model"),
        ("/translate", '{"text_list": ["Hi"], "target_lang": "\\ud800"}', "target_lang"),
        ("/translate", '{"text_list": ["Hi"], "source_lang": "\\ud800"}', "source_lang"),
        ("/translate", '{"text_list": ["Hi"], "task_id": "\\ud800"}', "task_id"),
    ],
)
async def test_a_lone_surrogate_anywhere_is_400_naming_the_field(
    http: aiohttp.ClientSession, sim: Sim, path: str, body: str, field: str
) -> None:
    status, payload = await post(http, path, body.encode())
    assert status == 400
    error = error_of(payload)
    assert error["param"] == field and error["code"] == "invalid_value"
    assert str(error["message"]).startswith(f"{field}: ") and "surrogate" in str(error["message"])
    assert await provider_calls(sim) == 0


async def test_a_lone_surrogate_in_a_key_is_400(http: aiohttp.ClientSession, sim: Sim) -> None:
    status, payload = await post(http, "/v1/chat/completions", ('{"\\ud800": 1, ' + CHAT_HI + "}").encode())
    assert status == 400
    assert "a key" in str(error_of(payload)["message"])
    status, payload = await post(
        http, "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "Hi", "\\udc00": 1}]}'
    )
    assert status == 400 and error_of(payload)["param"] == "messages[0]"
    assert await provider_calls(sim) == 0


async def test_surrogates_as_utf8_bytes_are_400(http: aiohttp.ClientSession, sim: Sim) -> None:
    # UTF-8 cannot carry a surrogate; Python's json would decode one anyway (surrogatepass): refused as not UTF-8.
    body = b'{"messages": [{"role": "user", "content": "\xed\xa0\x80"}]}'
    status, payload = await post(http, "/v1/chat/completions", body)
    assert status == 400 and error_of(payload)["code"] == "invalid_json"
    status, payload = await post(http, "/translate", '{"text_list": ["Hi"]}'.encode("utf-16"))
    assert status == 400 and "UTF-8" in str(error_of(payload)["message"])
    assert await provider_calls(sim) == 0


async def test_a_surrogate_pair_escaped_is_text(http: aiohttp.ClientSession, sim: Sim) -> None:
    body = b'{"model": "' + CHAT.encode() + b'", "messages": [{"role": "user", "content": "Hi \\ud83d\\ude00"}]}'
    status, payload = await post(http, "/v1/chat/completions", body)
    assert status == 200
    choices = payload["choices"]
    assert isinstance(choices, list) and choices[0]["message"]["content"].endswith("Hi \U0001f600")
    status, payload = await post(http, "/translate", b'{"text_list": ["\\ud83d\\ude00 ok"], "target_lang": "zh"}')
    assert status == 200 and await provider_calls(sim) == 2


def test_an_error_quoting_a_surrogate_still_encodes() -> None:
    # However a lone surrogate reaches a message, the error body is JSON (the surrogate as its escape).
    for error in (
        WireError.bad_field("model", "a string", ["\ud800" * 100]),
        WireError(400, "model: \udcff is unknown", param="model"),
    ):
        decoded = json.loads(error.body())
        assert decoded["error"]["param"] == "model"
        assert len(decoded["error"]["message"]) < 200


# -- integers past the contract ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [2**32, 2**64, 10**30])
async def test_max_tokens_past_uint32_is_400(http: aiohttp.ClientSession, sim: Sim, field: str, value: int) -> None:
    for stream in (False, True):
        body = {"messages": [{"role": "user", "content": "Hi"}], field: value, "stream": stream}
        status, payload = await post(http, "/v1/chat/completions", json.dumps(body).encode())
        assert status == 400
        error = error_of(payload)
        assert error["param"] == field and str(2**32 - 1) in str(error["message"])
        assert len(str(error["message"])) < MAX_MESSAGE_CHARS
    assert await provider_calls(sim) == 0


async def test_max_tokens_at_uint32_max_is_served(http: aiohttp.ClientSession) -> None:
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2**32 - 1}
    status, payload = await post(http, "/v1/chat/completions", json.dumps(body).encode())
    assert status == 200, payload


# -- nesting -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900, 100_000])
@pytest.mark.parametrize("where", ["messages", "metadata"])
async def test_deeply_nested_bodies_are_400(http: aiohttp.ClientSession, sim: Sim, depth: int, where: str) -> None:
    nested = "[" * depth + "]" * depth
    other = "" if where == "messages" else ", " + CHAT_HI
    body = f'{{"{where}": {nested}{other}}}'.encode()
    for path in ("/v1/chat/completions", "/translate"):
        status, payload = await post(http, path, body)
        assert status == 400
        error = error_of(payload)
        assert error["code"] == "invalid_json" and "nests deeper" in str(error["message"])
    assert await provider_calls(sim) == 0


async def test_nesting_within_the_limit_is_read(http: aiohttp.ClientSession) -> None:
    # An unknown field nested to the limit is ignored like any other.
    nested = "{" + '"a": {' * (MAX_JSON_DEPTH - 2) + "}" * (MAX_JSON_DEPTH - 2) + "}"
    status, payload = await post(http, "/translate", f'{{"x": {nested}, "text_list": ["Hi"]}}'.encode())
    assert status == 200, payload


# -- Content-Encoding ------------------------------------------------------------------------------------------

_TEXT = json.dumps({"text_list": ["Hello there. " * 40], "target_lang": "zh"}).encode()


def _corrupt(data: bytes, start: int) -> bytes:
    out = bytearray(data)
    out[start : start + 12] = b"\xff" * 12
    return bytes(out)


@pytest_asyncio.fixture
async def raw_http(shim: RunningShim) -> AsyncIterator[aiohttp.ClientSession]:
    """Bodies sent as they are (no decompression), one connection per request: aiohttp closes one after a bad body."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(
        shim.url, headers={"Authorization": f"Bearer {KEY}"}, auto_decompress=False, connector=connector
    ) as session:
        yield session


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"this is not gzip at all"),
        ("gzip", _corrupt(gzip.compress(_TEXT), 20)),
        ("deflate", b"\x78\x9c" + b"\xff" * 64),
        ("deflate", _corrupt(zlib.compress(_TEXT), 10)),
    ],
)
async def test_a_corrupt_compressed_body_is_400(
    raw_http: aiohttp.ClientSession, sim: Sim, encoding: str, body: bytes
) -> None:
    for path in ("/translate", "/v1/chat/completions"):
        status, payload = await post(raw_http, path, body, {"Content-Encoding": encoding})
        assert status == 400
        error = error_of(payload)
        assert error["code"] == "invalid_body" and encoding in str(error["message"])
    assert await provider_calls(sim) == 0


@pytest.mark.parametrize(("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)])
async def test_a_sound_compressed_body_is_read(
    raw_http: aiohttp.ClientSession, encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    status, payload = await post(raw_http, "/translate", compress(_TEXT), {"Content-Encoding": encoding})
    assert status == 200, payload


async def test_a_deflate_body_that_never_ends_is_400_json_however_it_arrives(
    raw_http: aiohttp.ClientSession, sim: Sim
) -> None:
    truncated = zlib.compress(_TEXT)[:-12]

    async def slowly() -> AsyncIterator[bytes]:
        yield truncated[:8]
        await asyncio.sleep(0.05)  # a client slow on purpose: the body arrives in two parts
        yield truncated[8:]

    headers = {**JSON, "Content-Encoding": "deflate", "Request-Timeout": "1"}
    async with asyncio.timeout(5):
        for data in (slowly(), truncated):  # in parts (chunked), and whole with its Content-Length
            async with raw_http.post("/translate", data=data, headers=headers) as r:
                assert r.status == 400
                error = error_of(await r.json())
            assert error["code"] == "invalid_body" and "does not end" in str(error["message"])
    assert await provider_calls(sim) == 0


@pytest.mark.parametrize(
    ("body", "encoding", "status", "code"),
    [
        (
            zlib.compress(b"{}" + b" " * 3_000_000),
            "deflate",
            413,
            "body_too_large",
        ),  # a small body that inflates past the limit
        (gzip.compress(_TEXT) + b"trailing", "gzip", 400, "invalid_body"),
        (_TEXT, "br", 415, "unsupported_encoding"),
        (_TEXT, "gzip, deflate", 415, "unsupported_encoding"),
    ],
)
async def test_compressed_bodies_are_bounded_after_inflating(
    raw_http: aiohttp.ClientSession, sim: Sim, body: bytes, encoding: str, status: int, code: str
) -> None:
    got, payload = await post(raw_http, "/v1/chat/completions", body, {"Content-Encoding": encoding})
    assert got == status, payload
    assert error_of(payload)["code"] == code
    assert await provider_calls(sim) == 0


async def test_raw_deflate_without_the_zlib_wrapper_is_read(raw_http: aiohttp.ClientSession) -> None:
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    status, payload = await post(
        raw_http, "/translate", raw.compress(_TEXT) + raw.flush(), {"Content-Encoding": "deflate"}
    )
    assert status == 200, payload


# -- unbounded values, quoted back by the service ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field", "body"),
    [
        ("/v1/chat/completions", "model", {"model": "m" * 20_000, "messages": [{"role": "user", "content": "Hi"}]}),
        (
            "/v1/chat/completions",
            "target_language",
            {"target_language": "x" * 20_000, "messages": [{"role": "user", "content": "Hi"}]},
        ),
        ("/translate", "model", {"model": "\n" * 20_000, "text_list": ["Hi"]}),
        ("/translate", "source_lang", {"source_lang": "q" * 20_000, "text_list": ["Hi"]}),
    ],
)
async def test_a_huge_value_is_400_quoting_a_bounded_prefix(
    http: aiohttp.ClientSession, sim: Sim, path: str, field: str, body: dict[str, object]
) -> None:
    status, payload = await post(http, path, json.dumps(body).encode())
    assert status == 400
    error = error_of(payload)
    assert error["param"] == field
    assert len(str(error["message"])) < MAX_MESSAGE_CHARS and "characters)" in str(error["message"])
    assert await provider_calls(sim) == 0
