"""Never a guess: a chat the shim cannot read as a translation is refused with a 400 that says what it could not
read (no provider call), or, with a passthrough model, sent to it as written; a target it cannot read is never
replaced by a default. The shim here runs with its defaults: no default target, no passthrough model."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest
from translane.wire import resolve

from gateway_shim import ShimConfig

from ..conftest import Sim

CHAT_PATH = "/v1/chat/completions"
CHAT_MODEL = "doubao-seed-1-6-flash-250828"  # a chat model: the passthrough's


async def provider_calls(sim: Sim) -> int:
    return sum(int(m.get("admitted", 0)) for m in (await sim.stats())["models"].values())


async def chat(
    http: aiohttp.ClientSession, messages: list[dict[str, str]], headers: dict[str, str] | None = None, **extra: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(CHAT_PATH, json={"messages": messages, **extra}, headers=headers or {}) as r:
        return r.status, await r.json()


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def shim_config() -> ShimConfig:
    return ShimConfig(port=0)


@pytest.mark.parametrize(
    ("messages", "named"),
    [
        (user("Translate to Klingon:\n\nHello there."), "Klingon"),
        (user("Translate into Elvish: Hello there."), "Elvish"),
        (user("请翻译成火星文：你好"), "火星文"),
        ([{"role": "system", "content": "Translate everything into Klingon."}, *user("Hello there.")], "Klingon"),
    ],
)
async def test_a_target_that_cannot_be_read_is_a_400_quoting_it_and_no_call(
    http: aiohttp.ClientSession, sim: Sim, messages: list[dict[str, str]], named: str
) -> None:
    before = await provider_calls(sim)
    status, body = await chat(http, messages)
    assert status == 400, body
    error = body["error"]
    assert error["code"] == "unreadable_prompt" and error["param"] == "messages"
    assert named in error["message"] and "X-Target-Language" in error["message"]
    assert await provider_calls(sim) == before


@pytest.mark.parametrize(
    "text",
    [
        # An order wrapped around the text, as an unknown client might write it.
        "Please translate the following into Japanese and keep the tone. It was a dark and stormy night.",
        "Hi! Can you translate this to French? The meeting moved to Monday.",
        "请帮我把下面这句话翻译成日语，只输出译文。The meeting moved to Monday.",
    ],
)
async def test_an_order_in_a_shape_the_shim_does_not_know_is_refused_not_translated(
    http: aiohttp.ClientSession, sim: Sim, text: str
) -> None:
    before = await provider_calls(sim)
    status, body = await chat(http, user(text))
    assert status == 400, body
    assert body["error"]["code"] == "unreadable_prompt"
    assert "instruction in a form the shim does not know" in body["error"]["message"]
    # Stating the target does not make the instruction text to translate.
    status, body = await chat(http, user(text), target_language="ja")
    assert status == 400 and body["error"]["code"] == "unreadable_prompt"
    assert await provider_calls(sim) == before


async def test_a_bare_text_with_no_target_anywhere_is_a_400_saying_how_to_name_one(
    http: aiohttp.ClientSession, sim: Sim
) -> None:
    status, body = await chat(http, user("The meeting moved to Monday."))
    assert status == 400
    message = body["error"]["message"]
    assert "does not say which language" in message and "target_language" in message
    assert "X-Target-Language" in message
    assert await provider_calls(sim) == 0


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ({"headers": {"X-Target-Language": "ja"}}, "ja"),
        ({"headers": {"X-Target-Language": "Japanese"}}, "ja"),
        ({"target_language": "pt-BR"}, "pt"),
        # The body's field wins over the header.
        ({"target_language": "ko", "headers": {"X-Target-Language": "ja"}}, "ko"),
        ({"system": "Translate the user's text into German."}, "de"),
        ({"system": "你是翻译引擎，请把用户的文字翻译成韩语。"}, "ko"),
    ],
)
async def test_a_bare_text_takes_the_target_the_request_states(
    http: aiohttp.ClientSession, how: dict[str, Any], expected: str
) -> None:
    how = dict(how)
    headers = how.pop("headers", None)
    system = how.pop("system", None)
    messages = ([{"role": "system", "content": system}] if system else []) + user("Translated by J. Smith, 1990.")
    status, body = await chat(http, messages, headers, **how)
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == f"[sim auto->{expected}] Translated by J. Smith, 1990."


async def test_an_unknown_header_language_is_a_400_naming_it(http: aiohttp.ClientSession) -> None:
    status, body = await chat(http, user("Hello"), {"X-Target-Language": "Klingon"})
    assert status == 400, body
    assert "Klingon" in body["error"]["message"]


async def test_the_custom_api_needs_a_target_it_can_read(http: aiohttp.ClientSession, sim: Sim) -> None:
    async with http.post("/translate", json={"text_list": ["Hi"]}) as r:
        assert r.status == 400
        error = (await r.json())["error"]
        assert error["param"] == "target_lang" and "X-Target-Language" in error["message"]
    assert await provider_calls(sim) == 0
    async with http.post("/translate", json={"text_list": ["Hi"]}, headers={"X-Target-Language": "zh-TW"}) as r:
        assert r.status == 200
        assert (await r.json())["translations"][0]["text"] == "[sim auto->zh-Hant] Hi"


# -- the plugin's batch templates name the target mid-sentence, as the plugin substitutes it -----------------

YAML_TEMPLATE = (
    "You will be given YAML with id and text fields.\n\n"
    "<yaml>\n{items}\n</yaml>\n\n"
    "For each item, translate the text field into {to}, write the translation back into the text field, "
    "and return the YAML only."
)


@pytest.mark.parametrize(
    ("to", "expected"),
    [("it", "it"), ("id", "id"), ("uk", "uk"), ("ms", "ms"), ("no", "nb"), ("hi", "hi"), ("he", "he"), ("pt-BR", "pt")],
)
async def test_yaml_templates_read_every_code_mid_sentence(http: aiohttp.ClientSession, to: str, expected: str) -> None:
    items = "- id: 1\n  text: Good morning\n- id: 2\n  text: See you"
    status, body = await chat(http, user(YAML_TEMPLATE.format(items=items, to=to)))
    assert status == 200, body
    reply = body["choices"][0]["message"]["content"]
    # The sim names the target as the model was asked for it: a code (translation model) or a name (a chat
    # model, a fallback for languages the translation model lacks); either must be the language sent.
    m = re.fullmatch(
        r"- id: 1\n  text: \[sim auto->(.+?)\] Good morning\n- id: 2\n  text: \[sim auto->\1\] See you", reply
    )
    assert m is not None, reply
    assert resolve(m.group(1)) == expected, reply


async def test_a_bare_yaml_list_then_more_instruction_keeps_the_instruction_out_of_the_last_item(
    http: aiohttp.ClientSession,
) -> None:
    prompt = (
        "Translate to Japanese:\n\n"
        "- id: 1\n  text: Good morning\n- id: 2\n  text: See you\n\n"
        "Return the YAML only, keep every id, and do not translate the keys."
    )
    status, body = await chat(http, user(prompt))
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == (
        "- id: 1\n  text: [sim auto->ja] Good morning\n- id: 2\n  text: [sim auto->ja] See you"
    )


# -- with a passthrough model: what cannot be read is sent as written -----------------------------------------


class TestPassthrough:
    @pytest.fixture
    def shim_config(self) -> ShimConfig:
        return ShimConfig(port=0, passthrough_model=CHAT_MODEL)

    async def test_an_unreadable_chat_goes_to_the_chat_model_as_written(
        self, http: aiohttp.ClientSession, sim: Sim
    ) -> None:
        text = "Please translate the following into German and keep the tone. It was a dark and stormy night."
        messages = [{"role": "system", "content": "You translate into German."}, *user(text)]
        status, body = await chat(http, messages)
        assert status == 200, body
        # The sim names the language the system message names, and echoes the user's message whole: both were
        # sent as the caller wrote them, not the shim's translation prompt around a text it picked out.
        assert body["choices"][0]["message"]["content"] == f"[sim auto->German] {text}"
        assert body["served_model"] == CHAT_MODEL
        assert body["model"] == CHAT_MODEL  # none asked for: the one that answered
        status, body = await chat(http, messages, model="doubao-seed-translation-250915")
        assert status == 200 and body["model"] == "doubao-seed-translation-250915"  # echoed as asked
        assert body["served_model"] == CHAT_MODEL
        stats = (await sim.stats())["models"]
        assert stats[CHAT_MODEL]["requests"] == 2
        assert body["usage"]["prompt_tokens"] > 0

    @pytest.mark.parametrize("stream", [False, True])
    async def test_a_batch_form_that_asks_for_more_than_a_translation_is_one_passthrough_reply(
        self, http: aiohttp.ClientSession, stream: bool
    ) -> None:
        """A YAML batch whose instruction asks for a rewrite goes whole to the chat model, and its reply comes
        back as the model wrote it (not split into items it was never asked to keep)."""
        prompt = (
            "Translate the YAML below into German, and put each part's translation after it in parentheses.\n\n"
            "<yaml>\n- id: 1\n  text: Good morning\n- id: 2\n  text: See you\n</yaml>"
        )
        async with http.post(CHAT_PATH, json={"messages": user(prompt), "stream": stream}) as r:
            assert r.status == 200
            raw = (await r.read()).decode()
        if stream:
            assert raw.rstrip().endswith("data: [DONE]") and "- id: 2" in raw
        else:
            content = json.loads(raw)["choices"][0]["message"]["content"]
            assert content.startswith("[sim ") and "- id: 2" in content  # the model's reply, as it wrote it

    async def test_a_passthrough_streams_too(self, http: aiohttp.ClientSession) -> None:
        text = "Translate to Klingon:\n\nHello there."
        async with http.post(CHAT_PATH, json={"messages": user(text), "stream": True}) as r:
            assert r.status == 200
            raw = (await r.read()).decode()
        assert raw.rstrip().endswith("data: [DONE]")
        assert "Hello there." in raw

    async def test_a_readable_chat_is_still_translated_not_passed_through(
        self, http: aiohttp.ClientSession, sim: Sim
    ) -> None:
        status, body = await chat(http, user("Translate to French:\n\nGood morning"))
        assert status == 200
        assert body["choices"][0]["message"]["content"] == "[sim auto->fr] Good morning"
        assert (await sim.stats())["models"][CHAT_MODEL]["requests"] == 0


class TestPassthroughToATranslationModel:
    @pytest.fixture
    def shim_config(self) -> ShimConfig:
        return ShimConfig(port=0, passthrough_model="doubao-seed-translation-250915")

    async def test_is_a_400_naming_the_model(self, http: aiohttp.ClientSession, sim: Sim) -> None:
        status, body = await chat(http, user("Translate to Klingon:\n\nHello there."))
        assert status == 400, body
        assert "doubao-seed-translation-250915" in body["error"]["message"]
        assert await provider_calls(sim) == 0


@pytest.mark.parametrize(
    "how", [{"target_language": "ja"}, {"headers": {"X-Target-Language": "ja"}}], ids=["field", "header"]
)
async def test_a_target_stated_by_the_caller_wins_over_one_the_prompt_names_unreadably(
    http: aiohttp.ClientSession, how: dict[str, Any]
) -> None:
    """The README's order: the body's field, then the header, then the prompt. The instruction line is still
    taken apart from the text, so only the text is translated."""
    how = dict(how)
    headers = how.pop("headers", None)
    status, body = await chat(http, user("Translate to Klingon:\n\nHello there."), headers, **how)
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == "[sim auto->ja] Hello there."


async def test_a_first_line_about_translation_that_names_no_target_is_text(http: aiohttp.ClientSession) -> None:
    status, body = await chat(http, user("Notes on translation:\n\nThe first rule is to read."), target_language="de")
    assert status == 200, body
    assert (
        body["choices"][0]["message"]["content"] == "[sim auto->de] Notes on translation:\n\nThe first rule is to read."
    )


async def test_a_paragraph_that_reads_like_an_order_but_names_no_language_is_text_when_the_target_is_stated(
    http: aiohttp.ClientSession,
) -> None:
    """A book's paragraph may begin "Translate …" (a language course): with the target named by the system prompt
    (Calibre's Ebook Translator) or the body, and no language of its own, it is the text."""
    text = "Translate the following sentences carefully. Then check your answers."
    system = [{"role": "system", "content": "Translate the given content from English to German only."}]
    status, body = await chat(http, [*system, *user(text)])
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == f"[sim en->de] {text}"
    status, body = await chat(http, user(text), target_language="fr")
    assert status == 200 and body["choices"][0]["message"]["content"] == f"[sim auto->fr] {text}"
    # Alone, with no target anywhere, it is still refused.
    status, body = await chat(http, user(text))
    assert status == 400
