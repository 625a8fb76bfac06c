"""Every field OpenAI documents for a chat completion, answered: honoured (`stop`), refused with a 400 naming it
(`n` > 1, JSON output, forced tool calls, audio, ...), or ignored by design (sampling controls, platform hints) —
unary and streamed, through the OpenAI SDK and raw HTTP, against the real shim, service and simulated provider.
The decision per field is the README's table and the OpenAPI document's; the last tests hold the three together."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import yaml
from openai.types.chat import completion_create_params
from translane.config import load_config
from translane.sim import SimConfig
from translane.wire import MAX_STOP_CHARS, StopScan, cut_at_stop

from ..conftest import Sim
from .test_bad_input import MAX_MESSAGE_CHARS, error_of, provider_calls

MODEL = "doubao-seed-translation-250915"  # Ark responses: the sim echoes the target code
CHAT = "doubao-seed-1-6-251015"  # chat completions: the sim echoes the language named in the prompt
HELLO = [{"role": "user", "content": "Hello {0} <b0>world</b0>, and good morning."}]
HELLO_OUT = "[sim auto->zh] Hello {0} <b0>world</b0>, and good morning."
BATCH = [{"role": "user", "content": "First paragraph.\n\n%%\n\nSecond paragraph.\n\n%%\n\nThird."}]
BATCH_OUT = "[sim auto->zh] First paragraph.\n\n%%\n\n[sim auto->zh] Second paragraph.\n\n%%\n\n[sim auto->zh] Third."


@pytest.fixture
def sim_config() -> SimConfig:
    """The simulated provider streams at a pace, so a stream's text arrives in many chunks (about a token each)."""
    return SimConfig.from_config(load_config(env={}), tokens_per_s=1000, pseudo_translate=0.0)


async def sse_events(http: aiohttp.ClientSession, body: dict[str, Any]) -> list[Any]:
    """POST a streamed request; its events, each parsed from JSON but the closing "[DONE]"."""
    async with http.post("/v1/chat/completions", json=body) as r:
        assert r.status == 200, await r.text()
        assert r.content_type == "text/event-stream"
        raw = (await r.read()).decode()
    events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]] + ["[DONE]"]


async def streamed(client: openai.AsyncOpenAI, **kwargs: Any) -> tuple[list[str], list[str]]:
    """A streamed completion through the SDK: the content of each chunk that had some, and the finish reasons."""
    stream = await client.chat.completions.create(stream=True, **kwargs)
    pieces: list[str] = []
    finishes: list[str] = []
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    return pieces, finishes


# -- stop: honoured ------------------------------------------------------------------------------------------------


STOPS = [
    ("world", "[sim auto->zh] Hello {0} <b0>"),
    (["good", "{0}"], "[sim auto->zh] Hello "),  # the first to occur, whichever is listed first
    (["nowhere", "morning"], "[sim auto->zh] Hello {0} <b0>world</b0>, and good "),
    ("[", ""),  # at the very start: nothing is left
    ("morning.", "[sim auto->zh] Hello {0} <b0>world</b0>, and good "),  # at the very end
]


@pytest.mark.parametrize(("stop", "expected"), STOPS)
async def test_stop_ends_the_reply_before_the_first_stop_sequence(
    client: openai.AsyncOpenAI, stop: str | list[str], expected: str
) -> None:
    resp = await client.chat.completions.create(model=MODEL, messages=HELLO, stop=stop)  # type: ignore[arg-type]
    assert resp.choices[0].message.content == expected
    assert resp.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(("stop", "expected"), STOPS)
async def test_stop_ends_a_stream_the_same(client: openai.AsyncOpenAI, stop: str | list[str], expected: str) -> None:
    pieces, finishes = await streamed(client, model=MODEL, messages=HELLO, stop=stop)
    assert "".join(pieces) == expected
    assert finishes == ["stop"]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_stop_sequence_that_never_occurs_changes_nothing(client: openai.AsyncOpenAI, stream: bool) -> None:
    # Each stop sequence's first characters occur, at chunk ends too: what was held back comes out in the end.
    stop = ["Hello {1}", "good evening", "morning!", ".X"]
    if stream:
        pieces, finishes = await streamed(client, model=MODEL, messages=HELLO, stop=stop)
        text = "".join(pieces)
    else:
        resp = await client.chat.completions.create(model=MODEL, messages=HELLO, stop=stop)
        text, finishes = resp.choices[0].message.content or "", [resp.choices[0].finish_reason]
    assert text == HELLO_OUT
    assert finishes == ["stop"]


async def test_a_stop_sequence_across_chunk_boundaries(client: openai.AsyncOpenAI) -> None:
    """A stop sequence made of the end of one streamed chunk and the start of the next stops the stream there,
    and the chunks before it never carried its first part."""
    messages = [{"role": "user", "content": "One two three four five six seven eight nine ten eleven twelve."}]
    pieces, _ = await streamed(client, model=MODEL, messages=messages)
    whole = "".join(pieces)
    assert len(pieces) >= 6, pieces  # the simulated provider streams about a token a chunk
    k = len(pieces) // 2
    stop = pieces[k][-3:] + pieces[k + 1][:2]
    assert stop not in "".join([*pieces[:k], pieces[k][:-1]]) and all(stop not in p for p in pieces)

    cut, finishes = await streamed(client, model=MODEL, messages=messages, stop=stop)
    assert "".join(cut) == whole[: whole.index(stop)]
    assert finishes == ["stop"]


@pytest.mark.parametrize("stream", [False, True])
async def test_stop_applies_to_a_batch_as_it_comes_back(client: openai.AsyncOpenAI, stream: bool) -> None:
    """The reply is the batch in its form: a stop sequence may be the separator itself."""
    for stop, expected in (("%%", "[sim auto->zh] First paragraph.\n\n"), ("Second", BATCH_OUT.split("Second")[0])):
        if stream:
            pieces, finishes = await streamed(client, model=MODEL, messages=BATCH, stop=stop)
            text = "".join(pieces)
        else:
            resp = await client.chat.completions.create(model=MODEL, messages=BATCH, stop=stop)
            text, finishes = resp.choices[0].message.content or "", [resp.choices[0].finish_reason]
        assert (text, finishes) == (expected, ["stop"])


@pytest.mark.parametrize("stream", [False, True])
async def test_stop_before_the_output_cap_is_a_stop_and_after_it_the_cut_stays_length(
    client: openai.AsyncOpenAI, stream: bool
) -> None:
    async def ask(stop: str) -> tuple[str, list[str]]:
        if stream:
            pieces, finishes = await streamed(client, model=MODEL, messages=HELLO, max_tokens=4, stop=stop)
            return "".join(pieces), finishes
        resp = await client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, stop=stop)
        return resp.choices[0].message.content or "", [resp.choices[0].finish_reason]

    capped, finishes = await ask("morning")  # beyond the cap: the cut text, cut for its length
    assert finishes == ["length"] and capped and HELLO_OUT.startswith(capped) and capped != HELLO_OUT
    assert await ask("sim") == ("[", ["stop"])  # within it: stopped


async def test_a_stopped_stream_still_ends_with_the_whole_usage(http: aiohttp.ClientSession) -> None:
    """The service translates the whole text: the usage chunk counts all of it, as the unary reply does."""
    body: dict[str, Any] = {"model": MODEL, "messages": HELLO, "stream_options": {"include_usage": True}}
    events = await sse_events(http, {**body, "stream": True, "stop": "Hello"})
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in events[:-2] if c["choices"]) == (
        "[sim auto->zh] "
    )
    assert [c["choices"][0]["finish_reason"] for c in events[:-2] if c["choices"][0]["finish_reason"]] == ["stop"]
    usage = events[-2]["usage"]
    async with http.post("/v1/chat/completions", json=body) as r:
        whole = (await r.json())["usage"]
    assert usage["completion_tokens"] == whole["completion_tokens"] > 0
    assert all(c["usage"] is None for c in events[:-2])


@pytest.mark.parametrize(
    ("stop", "param"),
    [
        (["a", "b", "c", "d", "e"], "stop"),
        (7, "stop"),
        ({"x": 1}, "stop"),
        ("", "stop"),
        (["ok", ""], "stop[1]"),
        (["ok", 3], "stop[1]"),
        ("x" * (MAX_STOP_CHARS + 1), "stop"),
        (["x" * 100_000], "stop[0]"),
    ],
)
async def test_a_malformed_stop_is_a_400_naming_it(
    http: aiohttp.ClientSession, sim: Sim, stop: Any, param: str
) -> None:
    before = await provider_calls(sim)
    for stream in (False, True):
        body = {"model": MODEL, "messages": HELLO, "stop": stop, "stream": stream}
        async with http.post("/v1/chat/completions", json=body) as r:
            assert r.status == 400
            error = error_of(await r.json())
        assert error["param"] == param and error["type"] == "invalid_request_error"
        assert len(str(error["message"])) <= MAX_MESSAGE_CHARS
    assert await provider_calls(sim) == before


def test_the_stop_scan_passes_what_cannot_begin_a_stop_sequence_at_once() -> None:
    scan = StopScan(["END", "xy"])
    assert scan.feed("abc E") == "abc "  # "E" may begin "END"
    assert scan.feed("N") == ""
    assert scan.feed("D!") == ""  # "END": stopped
    assert scan.stopped and scan.feed("more") == "" and scan.end() == ""
    scan = StopScan(["END"])
    assert scan.feed("EN") == "" and scan.feed("d") == "ENd" and scan.feed("EN") == "" and scan.end() == "EN"
    assert cut_at_stop("a b c", ["c", "b"]) == ("a ", True) and cut_at_stop("abc", []) == ("abc", False)


def test_the_stop_scan_agrees_with_cutting_the_whole_text_however_it_is_chunked() -> None:
    text = "aab aabab abba ba ab aab"
    for stop in (["aba"], ["abb", "ba "], ["b a", "aab a"], ["zz"], ["a"], ["ab", "aab", "b"]):
        expected = cut_at_stop(text, stop)[0]
        for size in (1, 2, 3, 5, 7, len(text)):
            scan = StopScan(stop)
            out = "".join(scan.feed(text[i : i + size]) for i in range(0, len(text), size)) + scan.end()
            assert out == expected, (stop, size)


# -- usage: null -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("messages", [HELLO, BATCH, []], ids=["text", "batch", "connection-check"])
async def test_with_include_usage_every_chunk_but_the_last_carries_usage_null(
    http: aiohttp.ClientSession, messages: list[Any]
) -> None:
    body = {"model": MODEL, "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
    events = await sse_events(http, body)
    *chunks, last, done = events
    assert done == "[DONE]" and len(chunks) >= 2
    assert all("usage" in c and c["usage"] is None for c in chunks), chunks
    assert last["choices"] == [] and last["usage"]["total_tokens"] >= 0


async def test_without_include_usage_no_chunk_carries_usage(http: aiohttp.ClientSession) -> None:
    for options in ({}, {"stream_options": {"include_usage": False}}):
        events = await sse_events(http, {"model": MODEL, "messages": HELLO, "stream": True, **options})
        assert all("usage" not in c for c in events[:-1])


# -- n ---------------------------------------------------------------------------------------------------------------


async def test_n_of_one_is_answered(client: openai.AsyncOpenAI, http: aiohttp.ClientSession) -> None:
    resp = await client.chat.completions.create(model=MODEL, messages=HELLO, n=1)
    assert [c.message.content for c in resp.choices] == [HELLO_OUT]
    pieces, _ = await streamed(client, model=MODEL, messages=HELLO, n=1)
    assert "".join(pieces) == HELLO_OUT
    async with http.post("/v1/chat/completions", json={"messages": HELLO, "n": 1.0}) as r:
        assert r.status == 200  # 1.0 is the number 1 in JSON


@pytest.mark.parametrize("n", [2, 0, -1, 1.5, True, "1", 10**30])
async def test_any_other_n_is_a_400_naming_it(http: aiohttp.ClientSession, sim: Sim, n: Any) -> None:
    before = await provider_calls(sim)
    for stream in (False, True):
        for messages in (HELLO, []):  # a connection check too: every field is checked, whether it applies or not
            body = {"model": MODEL, "messages": messages, "n": n, "stream": stream}
            async with http.post("/v1/chat/completions", json=body) as r:
                assert r.status == 400
                error = error_of(await r.json())
            assert (error["param"], error["type"]) == ("n", "invalid_request_error")
            assert error["code"] == "unsupported_value" and "1 choice" in str(error["message"])
    assert await provider_calls(sim) == before


async def test_n_through_the_sdk(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HELLO, n=2)
    assert caught.value.param == "n"
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model=MODEL, messages=HELLO, n=2, stream=True)


# -- response_format ---------------------------------------------------------------------------------------------------

JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "structured_output_probe",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"probe": {"type": "string", "enum": ["schema_ok"]}},
            "required": ["probe"],
            "additionalProperties": False,
        },
    },
}


async def test_response_format_text_is_answered(client: openai.AsyncOpenAI) -> None:
    resp = await client.chat.completions.create(model=MODEL, messages=HELLO, response_format={"type": "text"})
    assert resp.choices[0].message.content == HELLO_OUT
    pieces, _ = await streamed(client, model=MODEL, messages=HELLO, response_format={"type": "text"})
    assert "".join(pieces) == HELLO_OUT


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fmt", [{"type": "json_object"}, JSON_SCHEMA], ids=["json_object", "json_schema"])
async def test_json_output_is_a_400_naming_response_format(
    client: openai.AsyncOpenAI, sim: Sim, fmt: Any, stream: bool
) -> None:
    """bilingual_book_maker probes with exactly this schema, and takes a 400 for "no structured output" (its
    probe catches any error but authentication, permission and not-found ones), then translates with its
    delimiter method. It reads a 400 that mentions `temperature` as a refusal of its temperature instead: the
    message must not."""
    before = await provider_calls(sim)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Reply with the single word: ignored. Do not output JSON."}],
            response_format=fmt,
            stream=stream,
        )
    assert caught.value.param == "response_format" and caught.value.code == "unsupported_value"
    message = str(caught.value).lower()
    assert "translated text" in message and "json" in message and "temperature" not in message
    assert await provider_calls(sim) == before


@pytest.mark.parametrize(("fmt", "param"), [("json", "response_format"), ({}, "response_format.type")])
async def test_a_malformed_response_format_is_a_400(http: aiohttp.ClientSession, fmt: Any, param: str) -> None:
    async with http.post("/v1/chat/completions", json={"messages": HELLO, "response_format": fmt}) as r:
        assert r.status == 400
        assert error_of(await r.json())["param"] == param


# -- tools ---------------------------------------------------------------------------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {"name": "lookup", "description": "Look a word up", "parameters": {"type": "object"}},
    }
]
FUNCTIONS = [{"name": "lookup", "parameters": {"type": "object"}}]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "extra",
    [
        {"tools": TOOLS},
        {"tools": TOOLS, "tool_choice": "auto", "parallel_tool_calls": True},
        {"tools": TOOLS, "tool_choice": "none"},
        {"functions": FUNCTIONS, "function_call": "auto"},
        {"functions": FUNCTIONS, "function_call": "none"},
    ],
)
async def test_tools_the_model_may_leave_uncalled_are_ignored(
    client: openai.AsyncOpenAI, extra: dict[str, Any], stream: bool
) -> None:
    if stream:
        pieces, finishes = await streamed(client, model=MODEL, messages=HELLO, **extra)
        assert ("".join(pieces), finishes) == (HELLO_OUT, ["stop"])
        return
    resp = await client.chat.completions.create(model=MODEL, messages=HELLO, **extra)
    choice = resp.choices[0]
    assert (choice.message.content, choice.finish_reason) == (HELLO_OUT, "stop")
    assert not choice.message.tool_calls and not choice.message.function_call


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": TOOLS, "tool_choice": "required"}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "lookup"}}}, "tool_choice"),
        ({"functions": FUNCTIONS, "function_call": {"name": "lookup"}}, "function_call"),
    ],
)
async def test_a_forced_tool_call_is_a_400_naming_the_field(
    client: openai.AsyncOpenAI, sim: Sim, extra: dict[str, Any], param: str, stream: bool
) -> None:
    before = await provider_calls(sim)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HELLO, stream=stream, **extra)
    assert caught.value.param == param and caught.value.code == "unsupported_value"
    assert "never call" in str(caught.value)
    assert await provider_calls(sim) == before


async def test_a_malformed_tool_choice_is_a_400(http: aiohttp.ClientSession) -> None:
    for name in ("tool_choice", "function_call"):
        async with http.post("/v1/chat/completions", json={"messages": HELLO, name: "sometimes"}) as r:
            assert r.status == 400
            assert error_of(await r.json())["param"] == name


# -- the rest: refused when they ask for more than text, else ignored -------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("logprobs", True),
        ("modalities", ["text", "audio"]),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("web_search_options", {}),
        ("moderation", {"model": "omni-moderation-latest"}),
    ],
)
async def test_what_asks_for_more_than_text_is_a_400_naming_it(
    http: aiohttp.ClientSession, sim: Sim, field: str, value: Any
) -> None:
    before = await provider_calls(sim)
    for stream in (False, True):
        async with http.post(
            "/v1/chat/completions", json={"model": MODEL, "messages": HELLO, field: value, "stream": stream}
        ) as r:
            assert r.status == 400
            error = error_of(await r.json())
        assert (error["param"], error["code"]) == (field, "unsupported_value")
    assert await provider_calls(sim) == before


IGNORED = {
    "temperature": 0.2,
    "top_p": 0.9,
    "frequency_penalty": 0.5,
    "presence_penalty": -0.5,
    "logit_bias": {"50256": -100},
    "seed": 7,
    "top_logprobs": 3,
    "logprobs": False,
    "modalities": ["text"],
    "reasoning_effort": "minimal",
    "verbosity": "low",
    "prediction": {"type": "content", "content": "Hello"},
    "user": "user-1",
    "safety_identifier": "hash-1",
    "metadata": {"job": "docs"},
    "store": True,
    "service_tier": "flex",
    "prompt_cache_key": "k",
    "prompt_cache_retention": "24h",
    "parallel_tool_calls": False,
}


@pytest.mark.parametrize("stream", [False, True])
async def test_ignored_fields_leave_the_answer_as_it_would_be(http: aiohttp.ClientSession, stream: bool) -> None:
    body: dict[str, Any] = {"model": MODEL, "messages": HELLO, **IGNORED}
    if stream:
        body["stream_options"] = {"include_usage": True, "include_obfuscation": False}
        events = await sse_events(http, {**body, "stream": True})
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in events[:-2] if c["choices"]) == HELLO_OUT
        return
    async with http.post("/v1/chat/completions", json=body) as r:
        assert r.status == 200, await r.text()
        choice = (await r.json())["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"], choice["logprobs"]) == (HELLO_OUT, "stop", None)


# -- the decisions, written down -------------------------------------------------------------------------------------

DOCUMENT = yaml.safe_load(resources.files("gateway_shim").joinpath("openapi.yaml").read_text(encoding="utf-8"))
README = Path(__file__).resolve().parents[2] / "README.md"
DECISIONS = ("honoured", "refused", "ignored")


def _documented_fields() -> set[str]:
    """Every field of a chat completions request, as the installed OpenAI SDK declares them."""
    params = completion_create_params.CompletionCreateParamsBase
    return set(params.__required_keys__ | params.__optional_keys__) | {"stream"}


def _readme_table() -> dict[str, str]:
    """The README's table of OpenAI fields: field → its decision (the first word of the second column)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("| OpenAI field |")
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        field_cell, decision_cell = (cell.strip() for cell in line.strip("|").split("|")[:2])
        for field in re.findall(r"`([a-z_.]+)`", field_cell):
            rows[field] = decision_cell.split()[0].strip("*.:").lower()
    return rows


def test_the_readme_says_what_becomes_of_every_documented_field() -> None:
    table = _readme_table()
    assert _documented_fields() <= set(table), _documented_fields() - set(table)
    assert set(table.values()) <= set(DECISIONS), table


def test_the_openapi_document_describes_every_documented_field() -> None:
    properties = DOCUMENT["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert _documented_fields() <= set(properties), _documented_fields() - set(properties)
    undescribed = {f for f in _documented_fields() if not properties[f].get("description")}
    assert not undescribed, f"each field says what becomes of it: {undescribed}"


def test_ignored_fields_are_the_readme_s() -> None:
    table = _readme_table()
    assert {f for f in IGNORED if table[f] == "ignored"} == set(IGNORED) - {"logprobs", "modalities"}
