"""Every client shape of client_prompts.py (docs/clients.md) through the shim with its default configuration.

A translation request in a known shape: the provider is sent the text alone (never the instruction), into the
target the prompt names, and the answer comes back in the shape the client reads, so the client's own rule
(`parse`, `split`) gives back one translation per text. The simulated provider echoes what it was sent under a
mark naming the languages it was asked for ("[sim en->ja] TEXT"), which is what makes "the text alone" and "the
right target" checkable. A request that is not a plain translation (a dictionary lookup, a dialect or style
rewrite, a target the request does not name) is never translated as if it were: a 400 saying what the shim
could not read, with no provider call.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
from translane.wire import resolve

from gateway_shim import ShimConfig

from ..conftest import Sim
from .client_prompts import BATCH_PROMPTS, CLIENT_PROMPTS, BatchPrompt, ClientPrompt

CHAT_PATH = "/v1/chat/completions"
TEXT = "The meeting moved to Monday, and the report is due on Friday."
TEXTS = ["The meeting moved to Monday.", "The report is due on Friday.", "See you at the station."]
_MARK = re.compile(r"\[sim ([^\]\s]+?)->([^\]]+?)\] ")


@pytest.fixture
def shim_config() -> ShimConfig:
    return ShimConfig(port=0)  # the defaults: no default target, no passthrough model


def _name(p: ClientPrompt | BatchPrompt) -> str:
    return f"{p.client.split(' (')[0]} | {p.note[:70]}"


async def _admitted(sim: Sim) -> int:
    return sum(int(m["admitted"]) for m in (await sim.stats())["models"].values())


async def _send(http: aiohttp.ClientSession, messages: list[dict[str, str]], fields: Any) -> tuple[int, Any]:
    body = {**{k: v for k, v in fields.items() if k != "stream"}, "messages": messages}
    async with http.post(CHAT_PATH, json=body) as r:
        return r.status, await r.json()


def _unmarked(content: str) -> tuple[str, set[str], set[str]]:
    """The answer without the sim's marks, and the sources and targets the marks name (as our codes)."""
    marks = _MARK.findall(content)
    return _MARK.sub("", content), {s for s, _ in marks}, {resolve(t) or t for _, t in marks}


def _sources(prompt: ClientPrompt | BatchPrompt) -> set[str]:
    """The source the sim must have been asked for: the one the prompt names, or "auto"."""
    code = resolve(prompt.source_value) if prompt.source_value else None
    return {code or "auto"}


TRANSLATIONS = [p for p in CLIENT_PROMPTS if p.task == "translate" and p.target_named]
BATCH_TRANSLATIONS = [p for p in BATCH_PROMPTS if p.task == "translate" and p.target_named]
NOT_TRANSLATIONS = [p for p in [*CLIENT_PROMPTS, *BATCH_PROMPTS] if p.task != "translate" or not p.target_named]


@pytest.mark.parametrize("prompt", TRANSLATIONS, ids=_name)
async def test_a_single_text_is_sent_alone_into_the_target_named(
    http: aiohttp.ClientSession, prompt: ClientPrompt
) -> None:
    for value, code in prompt.targets:
        status, body = await _send(http, prompt.render(TEXT, value), prompt.fields)
        assert status == 200, (value, body)
        content = body["choices"][0]["message"]["content"]
        text, sources, targets = _unmarked(content)
        assert targets == {code}, (value, content)
        assert sources <= _sources(prompt) | {"auto"}, (value, content)
        # What the provider was sent is the text alone; the client reads back the translation of it.
        assert prompt.parse(text) == prompt.parse(TEXT), (value, content)
        assert prompt.parse(content).endswith(prompt.parse(TEXT)), (value, content)


@pytest.mark.parametrize("prompt", BATCH_TRANSLATIONS, ids=_name)
async def test_a_batch_comes_back_in_the_shape_the_client_splits(
    http: aiohttp.ClientSession, prompt: BatchPrompt
) -> None:
    for value, code in prompt.targets:
        status, body = await _send(http, prompt.render(TEXTS, value), prompt.fields)
        assert status == 200, (value, body)
        content = body["choices"][0]["message"]["content"]
        text, _, targets = _unmarked(content)
        assert targets == {code}, (value, content)
        # The client takes the answer apart into one translation per text, in order, each of its own text alone.
        # (Without the sim's marks: "[sim …]" at the start of a YAML value would read as a YAML list.)
        parts = prompt.split(text, TEXTS)
        assert [p.strip() for p in parts] == [p.strip() for p in prompt.split(prompt.answer(TEXTS), TEXTS)], content


@pytest.mark.parametrize("prompt", NOT_TRANSLATIONS, ids=_name)
async def test_what_is_not_a_plain_translation_is_never_translated_as_one(
    http: aiohttp.ClientSession, sim: Sim, prompt: ClientPrompt | BatchPrompt
) -> None:
    before = await _admitted(sim)
    for value, _ in prompt.targets or [("", "")]:
        messages = prompt.render(TEXTS, value) if isinstance(prompt, BatchPrompt) else prompt.render("cat", value)
        status, body = await _send(http, messages, prompt.fields)
        assert status == 400, (value, body)
        assert body["error"]["code"] == "unreadable_prompt", body
    assert await _admitted(sim) == before
