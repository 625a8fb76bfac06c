"""POST /v1/chat/completions through the official OpenAI SDK, and the plugin's batch forms over raw HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from ..conftest import Sim

MODEL = "doubao-seed-translation-250915"  # Ark responses: the sim echoes the target code, "zh"
CHAT = "doubao-seed-1-6-251015"  # chat completions: the sim echoes the language named in our prompt

IMMERSIVE_SYSTEM = (
    "You are a professional Simplified Chinese native translator who needs to fluently translate text into "
    "Simplified Chinese.\n\n## Translation Rules\n1. Output only the translated content"
)


async def test_non_stream_translates_the_last_user_message(client: openai.AsyncOpenAI, sim: Sim) -> None:
    resp = await client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Translate the user's text into Japanese."},
            {"role": "user", "content": "Hello {0} <b0>world</b0>"},
        ],
    )
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.content == "[sim auto->ja] Hello {0} <b0>world</b0>"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == MODEL
    stats = (await sim.stats())["models"][MODEL]
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == stats["prompt_tokens"]
    assert resp.usage.completion_tokens == stats["completion_tokens"]
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    extra = resp.usage.model_extra or {}
    expected = (stats["prompt_tokens"] * 1.2 + stats["completion_tokens"] * 3.6) / 1e6
    assert extra["cost"] == pytest.approx(expected, rel=1e-6)
    assert extra["currency"] == "CNY"


async def test_stream_with_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model=CHAT,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Translate to German:\n\nGood morning, {0} friends."}],
    )
    text = ""
    finish = None
    usage = None
    models = set()
    async for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        models.add(chunk.model)
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    # The instruction line is prompt, not text: only the text is translated.
    assert text == "[sim auto->German] Good morning, {0} friends."
    assert finish == "stop"
    assert CHAT in models
    assert usage is not None and usage.completion_tokens > 0
    assert (usage.model_extra or {})["cost"] > 0


async def test_stream_without_usage_sends_no_usage_chunk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model=MODEL, stream=True, messages=[{"role": "user", "content": "Hi"}]
    )
    chunks = [c async for c in stream]
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "[sim auto->zh] Hi"


@pytest.mark.parametrize(
    ("extra", "messages", "expected"),
    [
        # Extension fields win over the prompt.
        (
            {"target_language": "zh-TW", "source_language": "en"},
            [{"role": "system", "content": "Translate into Japanese."}, {"role": "user", "content": "Hi"}],
            "[sim en->zh-Hant] Hi",
        ),
        ({"target_lang": "Korean"}, [{"role": "user", "content": "Hi"}], "[sim auto->ko] Hi"),
        # Immersive Translate's own prompts, English and Chinese.
        (
            {},
            [
                {"role": "system", "content": IMMERSIVE_SYSTEM},
                {"role": "user", "content": "Translate to Simplified Chinese (output translation only):\n\nHi"},
            ],
            "[sim auto->zh] Hi",
        ),
        ({}, [{"role": "user", "content": "翻译成 日本語（仅输出翻译）：\n\nHi"}], "[sim auto->ja] Hi"),
        (
            {},
            [{"role": "system", "content": "把英文翻译成繁體中文"}, {"role": "user", "content": "Hi"}],
            "[sim en->zh-Hant] Hi",
        ),
        (
            {},
            [
                {"role": "system", "content": "Translate from French into Deutsch"},
                {"role": "user", "content": [{"type": "text", "text": "Salut"}]},
            ],
            "[sim fr->de] Salut",
        ),
        # Nothing names a language: the configured default.
        ({}, [{"role": "user", "content": "Hi"}], "[sim auto->zh] Hi"),
    ],
)
async def test_target_language_sources(
    client: openai.AsyncOpenAI, extra: dict[str, Any], messages: list[Any], expected: str
) -> None:
    resp = await client.chat.completions.create(model=MODEL, messages=messages, extra_body=extra)
    assert resp.choices[0].message.content == expected


async def test_separator_batch_is_one_grpc_request_and_keeps_its_form(http: aiohttp.ClientSession, sim: Sim) -> None:
    paragraphs = ["First {0} paragraph.", "Second <b0>bold</b0> one.", "", "Fourth\nwith two lines."]
    content = "Translate to Japanese:\n\n" + "\n\n%%\n\n".join(paragraphs)
    async with http.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": content}]}
    ) as r:
        assert r.status == 200, await r.text()
        reply = (await r.json())["choices"][0]["message"]["content"]
    out = reply.split("\n\n%%\n\n")
    assert len(out) == len(paragraphs)
    assert out == [f"[sim auto->ja] {p}" if p else "" for p in paragraphs]
    # One request for each non-empty paragraph; the empty one costs nothing.
    assert (await sim.stats())["models"][MODEL]["requests"] == 3


async def test_yaml_batch_keeps_ids_fields_and_placeholders(http: aiohttp.ClientSession) -> None:
    items = "- id: 1\n  text: Hello {0}\n- id: 2\n  text: <b0>Bold</b0>: a colon\n- id: 7\n  text: two\nlines"
    content = (
        "You will receive YAML with id and text fields:\n\n<yaml>\n" + items + "\n</yaml>\n\n"
        "Translate the text of every item into Simplified Chinese and return the YAML only."
    )
    async with http.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": content}]}
    ) as r:
        assert r.status == 200, await r.text()
        reply = (await r.json())["choices"][0]["message"]["content"]
    assert reply == (
        "- id: 1\n  text: [sim auto->zh] Hello {0}\n"
        "- id: 2\n  text: [sim auto->zh] <b0>Bold</b0>: a colon\n"
        "- id: 7\n  text: [sim auto->zh] two\nlines"
    )


async def test_streamed_batch_keeps_its_form(client: openai.AsyncOpenAI) -> None:
    content = "Para one.\n\n%%\n\nPara two.\n\n%%\n\nPara three."
    stream = await client.chat.completions.create(
        model=CHAT, stream=True, extra_body={"target_language": "en"}, messages=[{"role": "user", "content": content}]
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.split("\n\n%%\n\n") == [f"[sim auto->English] Para {n}." for n in ("one", "two", "three")]


async def test_streamed_yaml_batch_with_an_empty_item(client: openai.AsyncOpenAI) -> None:
    content = "- id: 1\n  text: A\n- id: 2\n  text: \n- id: 3\n  text: C"
    stream = await client.chat.completions.create(
        model=MODEL, stream=True, messages=[{"role": "user", "content": content}]
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "- id: 1\n  text: [sim auto->zh] A\n- id: 2\n  text: \n- id: 3\n  text: [sim auto->zh] C"


async def test_task_id_travels_and_is_echoed(client: openai.AsyncOpenAI, http: aiohttp.ClientSession) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], extra_body={"task_id": "eval-42"}
    )
    assert raw.headers["x-task-id"] == "eval-42"
    assert raw.parse().choices[0].message.content == "[sim auto->zh] Hi"
    async with http.post(
        "/v1/chat/completions",
        headers={"X-Task-Id": "from-header"},
        json={"messages": [{"role": "user", "content": "Hi"}]},
    ) as r:
        assert r.status == 200 and r.headers["X-Task-Id"] == "from-header"
        body = await r.json()
        # A plain chat.completion, plus one documented extension: the model that served.
        assert set(body) == {"id", "object", "created", "model", "choices", "usage", "served_model"}


async def test_empty_messages_is_a_connection_check(client: openai.AsyncOpenAI, sim: Sim) -> None:
    resp = await client.chat.completions.create(model=MODEL, messages=[])
    assert resp.choices[0].message.content == ""
    stream = await client.chat.completions.create(model=MODEL, messages=[], stream=True)
    assert [c async for c in stream]
    stats = (await sim.stats())["models"]
    assert all(m["requests"] == 0 and m["rate_limited"] == 0 for m in stats.values())


async def test_models_list(client: openai.AsyncOpenAI) -> None:
    models = [m async for m in client.models.list()]
    names = [m.id for m in models]
    assert MODEL in names and CHAT in names
    assert all(m.object == "model" for m in models)
    default = [m for m in models if (m.model_extra or {}).get("default")]
    assert [m.id for m in default] == [MODEL]
