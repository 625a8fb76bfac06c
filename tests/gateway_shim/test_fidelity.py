"""The plugin's forms and language values end to end, cut answers, thinking models and model names through the shim."""

from __future__ import annotations

import aiohttp
import openai
import pytest
from translane.config import Config
from translane.languages import language_name

from ..conftest import Sim, server_config
from ..wire.test_languages import PLUGIN_TARGETS

TR = "doubao-seed-translation-250915"
CHAT = "doubao-seed-1-6-251015"


@pytest.fixture
def config(sim: Sim) -> Config:
    return server_config(sim)


def forms(to: str) -> dict[str, tuple[str, int]]:
    """The plugin's three request forms with `to` in its instruction: message and paragraph count."""
    return {
        "single": (f"Translate to {to}:\n\nHello world.", 1),
        "separator": (f"Translate to {to}:\n\nHello.\n\n%%\n\nWorld.", 2),
        "yaml": (f"Translate to {to}:\n\n<yaml>\n- id: 1\n  text: Hello.\n- id: 2\n  text: World.\n</yaml>", 2),
    }


@pytest.mark.parametrize(("to", "code"), PLUGIN_TARGETS)
async def test_every_plugin_language_value_in_every_form(http: aiohttp.ClientSession, to: str, code: str) -> None:
    for form, (message, n) in forms(to).items():
        body = {"model": TR, "messages": [{"role": "user", "content": message}]}
        async with http.post("/v1/chat/completions", json=body) as r:
            assert r.status == 200, (form, await r.text())
            content = (await r.json())["choices"][0]["message"]["content"]
        # Translated into that language, the instruction never part of a paragraph, N in and N out.
        marks = (f"->{code}]", f"->{language_name(code)}]")
        assert content.count("[sim ") == n, (form, content)
        assert all(any(m in part for m in marks) for part in content.split("[sim ")[1:]), (form, content)
        assert "Translate to" not in content, (form, content)


async def test_a_capped_answer_that_was_cut_says_length(client: openai.AsyncOpenAI, sim: Sim) -> None:
    await sim.set(output_cap_tokens=9)
    long = "The first sentence is here. The second one follows it."
    capped = await client.chat.completions.create(
        model=TR, max_tokens=9, messages=[{"role": "user", "content": f"Translate to German:\n\n{long}"}]
    )
    assert capped.choices[0].finish_reason == "length"
    # Uncapped, the service tries harder and then refuses rather than hand back a cut text.
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model=TR, messages=[{"role": "user", "content": f"Translate to German:\n\n{long}"}]
        )
    assert "output limit" in info.value.message
    stream = await client.chat.completions.create(
        model=TR, max_tokens=9, stream=True, messages=[{"role": "user", "content": f"Translate to German:\n\n{long}"}]
    )
    finishes = [c.choices[0].finish_reason async for c in stream if c.choices]
    assert finishes[-1] == "length"


async def test_the_model_asked_for_is_named_everywhere_and_the_one_that_served_once(
    client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    # Hindi is not among the translation model's languages: a fallback serves it.
    messages = [{"role": "user", "content": "Translate to Hindi:\n\nHello"}]
    async with http.post("/v1/chat/completions", json={"model": TR, "messages": messages}) as r:
        body = await r.json()
    assert body["model"] == TR and body["served_model"] not in ("", TR)
    stream = await client.chat.completions.create(model=TR, stream=True, messages=messages)  # type: ignore[arg-type]
    chunks = [c async for c in stream]
    assert {c.model for c in chunks} == {TR}
    served = [c.model_extra.get("served_model") for c in chunks if c.model_extra and "served_model" in c.model_extra]
    assert served == [body["served_model"]]


async def test_reasoning_tokens_are_in_the_usage_and_never_in_the_text(client: openai.AsyncOpenAI, sim: Sim) -> None:
    await sim.set(reasoning_tokens=25, think_in_content=1)
    reply = await client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Translate to French:\n\nGood morning."}]
    )
    assert reply.choices[0].message.content == "[sim auto->French] Good morning."
    assert reply.usage is not None and reply.usage.completion_tokens_details is not None
    assert 20 <= (reply.usage.completion_tokens_details.reasoning_tokens or 0) <= 30


@pytest.mark.parametrize("stream", [False, True])
async def test_a_paragraph_of_spaces_survives_the_separator_form(client: openai.AsyncOpenAI, stream: bool) -> None:
    message = "Translate to German:\n\nHello\n\n%%\n\n   \n\n%%\n\nWorld"
    kwargs = {"model": TR, "messages": [{"role": "user", "content": message}]}
    if stream:
        chunks = await client.chat.completions.create(stream=True, **kwargs)  # type: ignore[call-overload]
        content = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    else:
        content = (await client.chat.completions.create(**kwargs)).choices[0].message.content  # type: ignore[call-overload]
    assert content.split("\n\n%%\n\n")[1] == "   "


@pytest.mark.parametrize("field", ["target_language", "source_language", "target_lang"])
async def test_an_unknown_language_in_a_field_is_a_400_naming_it(
    http: aiohttp.ClientSession, sim: Sim, field: str
) -> None:
    body = {"model": TR, "messages": [{"role": "user", "content": "Hello"}], field: "x" * 300}
    async with http.post("/v1/chat/completions", json=body) as r:
        assert r.status == 400
        error = (await r.json())["error"]
    assert error["param"] in (field, field.replace("_lang", "_language"))
    assert len(error["message"]) < 1000
    assert (await sim.stats())["models"][TR]["admitted"] == 0
