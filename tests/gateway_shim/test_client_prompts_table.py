"""The client prompt table (client_prompts.py) is well-formed: no shim here, only the data checked against itself."""

from __future__ import annotations

import re

import pytest
from translane.languages import NAMES

from .client_prompts import BATCH_PROMPTS, CLIENT_PROBES, CLIENT_PROMPTS, BatchPrompt, ClientPrompt

PROMPTS = [*CLIENT_PROMPTS, *BATCH_PROMPTS]
TASKS = {"translate", "dictionary", "rewrite"}
# "owner/repo@<40 hex>[ (tag …)]:path" or a published package named with its version and checksum.
CITATION = re.compile(
    r"[\w.-]+/[\w.-]+@[0-9a-f]{40}( \([^)]*\))?:\S+"  # a repository file at a commit
    r"|\S+ \d+(\.\d+)+ on PyPI .*sha256 [0-9a-f]{64}.*:\S+"  # a file of a published package
)
TEXTS = ["First paragraph.", "Second: with a colon.", "Third, the last."]
TRANSLATIONS = ["第一段。", "第二段：带冒号。", "第三段，最后一段。"]


def _name(p: ClientPrompt | BatchPrompt) -> str:
    return f"{p.client} | {p.source.rsplit('/', 1)[-1][:60]}"


@pytest.mark.parametrize("prompt", PROMPTS, ids=_name)
def test_the_text_goes_in_exactly_one_place(prompt: ClientPrompt | BatchPrompt) -> None:
    holders = [template for _, template in prompt.messages if "{text}" in template]
    assert len(holders) == 1, prompt.messages
    assert holders[0].count("{text}") == 1


@pytest.mark.parametrize("prompt", [*PROMPTS, *CLIENT_PROBES], ids=_name)
def test_roles_tasks_and_citations(prompt: ClientPrompt | BatchPrompt) -> None:
    assert {role for role, _ in prompt.messages} <= {"system", "user", "assistant"}
    assert prompt.messages[-1][0] == "user"
    assert prompt.task in (TASKS | {"probe"} if prompt in CLIENT_PROBES else TASKS)
    assert CITATION.search(prompt.source), prompt.source


@pytest.mark.parametrize("prompt", PROMPTS, ids=_name)
def test_every_target_is_one_of_our_codes(prompt: ClientPrompt | BatchPrompt) -> None:
    for value, code in prompt.targets:
        assert value and code in NAMES, (value, code)
    if prompt.task == "translate":
        assert prompt.targets, "a translation request has a target"


@pytest.mark.parametrize("prompt", CLIENT_PROMPTS, ids=_name)
def test_single_forms_render_and_keep_a_plain_answer(prompt: ClientPrompt) -> None:
    to = prompt.targets[0][0] if prompt.targets else ""
    messages = prompt.render("Hello, world.", to)
    assert [m["role"] for m in messages] == [role for role, _ in prompt.messages]
    assert sum("Hello, world." in m["content"] for m in messages) == 1
    if any("{to}" in template for _, template in prompt.messages):
        assert any(to in m["content"] for m in messages)
    assert prompt.parse("Bonjour, le monde.") == "Bonjour, le monde."


@pytest.mark.parametrize("prompt", BATCH_PROMPTS, ids=_name)
def test_batch_forms_render_and_read_their_own_answer_back(prompt: BatchPrompt) -> None:
    to = prompt.targets[0][0] if prompt.targets else ""
    messages = prompt.render(TEXTS, to)
    body = "\n".join(m["content"] for m in messages)
    assert all(text in body for text in TEXTS)
    assert prompt.split(prompt.answer(TRANSLATIONS), TEXTS) == TRANSLATIONS


def test_the_plugin_forms_read_as_the_config_says() -> None:
    default = CLIENT_PROMPTS[0]
    assert default.render("Hi", "Japanese")[1]["content"] == "Translate to Japanese (output translation only):\n\nHi"
    batch = BATCH_PROMPTS[0]
    assert batch.render(["A", "B"], "it")[1]["content"] == "Translate to it:\n\nA\n\n%%\n\nB"
    assert batch.split("A'\n\n%%\n\nB'", ["A", "B"]) == ["A'", "B'"]
    assert batch.split("I'm sorry, but I cannot translate this.", ["A", "B"]) == ["A", "B"]
