"""A chat request read as a translation, or found unreadable: never guessed.

The shim translates a chat only when it can tell, with confidence, which text to translate and into which
language. It knows the prompt shapes of the clients people point at an OpenAI endpoint (docs/clients.md):
the Immersive Translate plugin's forms (translane.wire.plugin), and the fixed templates of other clients,
matched here exactly (`CLIENT_SHAPES`). A message in any other shape that still gives an order to
translate, or a target language named in a way the shim cannot read, makes the request *unreadable*:
`Reading.problem` says why, and the shim then sends the chat as written to a chat model, or refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import quote
from .languages import prompt_languages, resolve, template_target
from .plugin import Batch, paragraphs, split_message

__all__ = ["CLIENT_SHAPES", "ClientShape", "Reading", "read_chat"]

_SYSTEM_ROLES = ("system", "developer")


@dataclass(frozen=True, slots=True)
class ClientShape:
    """A client's fixed prompt template: `pattern` matches its user message whole, with named groups `text`
    (what to translate) and, where the template names them, `to` and `src` (the languages as written).
    `separator` is the line the client puts between paragraphs when it sends several in one text."""

    client: str
    pattern: re.Pattern[str]
    separator: str = "%%"


_PLACEHOLDERS = {
    "{text}": r"(?P<text>.*)",
    "{to}": r"(?P<to>[^\n]{1,60}?)",
    "{from}": r"(?P<src>[^\n]{1,60}?)",
    "{n}": r"\d{1,6}",
}


def _shape(client: str, template: str, separator: str = "%%", preamble: bool = False) -> ClientShape:
    """A shape from the client's template as it writes it, {text} / {to} / {from} / {n} where it fills them in;
    with `preamble`, any paragraphs of instruction the client may put in front."""
    pattern = re.escape(template)
    for placeholder, group in _PLACEHOLDERS.items():
        escaped = re.escape(placeholder)
        pattern = pattern.replace(escaped, group, 1)
        # A placeholder used twice: the second time it must say the same.
        name = group[4 : group.index(">")] if group.startswith("(?P<") else ""
        pattern = pattern.replace(escaped, f"(?P={name})" if name else group)
    head = r"\A(?:.*?\n\n)??" if preamble else r"\A"
    return ClientShape(client, re.compile(head + pattern + r"\s*\Z", re.DOTALL), separator)


# Each from the client's published source; docs/clients.md cites the file and version, and
# tests/gateway_shim/client_prompts.py holds the client's own requests they are tested with.
CLIENT_SHAPES: tuple[ClientShape, ...] = (
    # bilingual_book_maker 1.3.1: the paragraph between backticks inside the order, after any of its preambles
    # (markup kept, placeholders kept, "Translate the following N text segments …" for its '@@' groups).
    _shape(
        "bilingual_book_maker",
        "Please help me to translate,`{text}` to {to}, please return only translated content not include the "
        "origin text",
        separator="@@",
        preamble=True,
    ),
    # openai-translator 0.4, translate mode.
    _shape(
        "openai-translator",
        "You are a professional translator.\n\nOnly reply the result and nothing else. Please translate to {to}:"
        "\n\n{text}",
    ),
    # pot 3.0.7, its OpenAI service.
    _shape("pot", 'Translate into {to}:\n"""\n{text}\n"""'),
    # Easydict 2.21.
    _shape("Easydict", 'Translate the following {from} text into {to} text: """{text}"""'),
    # Translate for Zotero 2.4.6, with and without the paper's context inside the markers (context is not text).
    _shape(
        "zotero-pdf-translate",
        "As an academic expert with specialized knowledge in various fields, please provide a proficient and "
        "precise translation from {from} to {to} of the academic text enclosed in 🔤. It is crucial to "
        "maintaining the original phrase or sentence and ensure accuracy while utilizing the appropriate "
        "language. The text is as follows:  🔤 {text} 🔤  Please provide the translated result without any "
        "additional explanation and remove 🔤.",
    ),
    # Immersive Translate's prompts for Hunyuan-MT models, one paragraph or several ("%%").
    _shape("Immersive Translate (Hunyuan-MT)", "把下面的文本翻译成 {to} 语言，不要额外解释\n\n{text}"),
    _shape("Immersive Translate (Hunyuan-MT)", "把下面的多行文本翻译成 {to} 语言，不要额外解释，注意换行符\n\n{text}"),
)
# Zotero's "attach paper context": the paper's title and abstract before the text, inside the markers.
_ZOTERO_CONTEXT = re.compile(r"\AContext from the academic paper:\n.*?\n\nText to translate: ", re.DOTALL)
# What asks for more than a translation: a dictionary entry, a rewrite in a dialect or register, parts with
# their translations in parentheses.
_BEYOND = re.compile(
    r"\bdictionary\b|\bphonetic|\betymolog|\bparaphras|\bword[- ]by[- ]word\b|\bin parenthes"
    r"|\bbanmal\b|口吻|文言文|白话文|白話文|方言",
    re.IGNORECASE,
)

# An order to translate that the shim did not take apart: "Translate …", "Please help me to translate …",
# "请翻译…", "…翻译成…", "…に翻訳…", at the start of a sentence or line.
_ORDER = re.compile(
    r"(?:\A|[.!?。！？:：]\s*|\n\s*)(?:please\s+|kindly\s+)?(?:(?:help\s+me|can\s+you|could\s+you)\s+(?:to\s+)?)?"
    r"translate\b"
    r"|(?:请|請|帮我|幫我|麻烦|麻煩)[^\n。]{0,12}?(?:翻译|翻譯)"
    r"|(?:翻译|翻譯|译|譯)(?:成|为|為|到)"
    r"|(?:に|へ)(?:翻訳|訳)"
    r"|(?:으로|로)\s*번역",
    re.IGNORECASE,
)
# A target the order names, read loosely to quote it back when it is not a language the shim knows.
_NAMED_TARGET = re.compile(
    r"\b(?i:in)?(?i:to)\s+(?i:the\s+)?(?P<name>[^\s,.:;!?()\"'`]{1,40}(?:\s+[A-Z][^\s,.:;!?()\"'`]{0,40})?)"
    r"|(?:翻译|翻譯|译|譯)(?:成|为|為|到)\s*(?P<cjk>[^\s，。,.:：；;！!？?]{1,12})"
)
_HOW = (
    "state the target language with `target_language` in the request body (over HTTP, an X-Target-Language "
    "header does too): a code such as 'ja' or a name such as 'Japanese'"
)


@dataclass(frozen=True, slots=True)
class Reading:
    """What a chat asks for: the text (as a Batch) and its languages; or, in `problem`, why it cannot be read."""

    batch: Batch
    target_language: str = ""
    source_language: str = ""
    # "" when the request was read with confidence; else what the shim could not read, for the caller.
    problem: str = ""
    # The known client template the message matched ("" for the plugin's forms or a bare text).
    client: str = ""


def _client_shape(text: str) -> tuple[ClientShape, re.Match[str]] | None:
    for shape in CLIENT_SHAPES:
        m = shape.pattern.match(text)
        if m is not None:
            return shape, m
    return None


def _unread_target(prompt: str) -> str:
    """The target an order in `prompt` names, as written, when the order is there; "" when there is none."""
    if not _ORDER.search(prompt):
        return ""
    m = _NAMED_TARGET.search(prompt)
    if m is None:
        return ""
    return m.group("name") or m.group("cjk") or ""


def read_chat(
    roles: Sequence[str],
    texts: Sequence[str],
    target: str = "",
    source: str = "",
    default_target: str = "",
) -> Reading:
    """The translation a chat asks for. `target` / `source` are what the request states outside the prompt
    (body fields, a header), our codes; `default_target` applies only to a bare text whose prompts name no
    target and give no order at all."""
    last = max(i for i, r in enumerate(roles) if r == "user")
    message = texts[last]
    system = [t for t, r in zip(texts, roles, strict=True) if r in _SYSTEM_ROLES]
    earlier = [texts[i] for i in range(last - 1, -1, -1) if roles[i] == "user"]
    matched = _client_shape(message)
    if matched is not None:
        shape, m = matched
        text = _ZOTERO_CONTEXT.sub("", m.group("text"), count=1)
        batch = paragraphs(text, message, shape.separator)
        named = m.groupdict().get("to") or ""
        if not target and named:
            target = resolve(named) or ""
            if not target:
                return Reading(
                    batch,
                    problem=f"the prompt asks for {quote(named)}, which is not a language the shim knows; {_HOW}",
                    client=shape.client,
                )
        if not source and m.groupdict().get("src"):
            source = resolve(m.group("src")) or ""
        return _languages(Reading(batch, target, source, client=shape.client), system, earlier, default_target)
    batch = split_message(message)
    beyond = _BEYOND.search(batch.instruction)
    if beyond is not None:
        return Reading(
            batch,
            problem=f"the instruction asks for more than a translation ({quote(beyond.group(), 40)}: "
            f"{quote(batch.instruction, 60)}), which a translation model does not give; send a plain translation "
            f"request, and {_HOW}",
        )
    ordered = batch.form == "single" and not batch.instruction and _ORDER.search(message) is not None
    if ordered and _NAMED_TARGET.search(message) is None and (target or prompt_languages(system)[1]):
        # "Translate the following sentences carefully." as a paragraph of a book whose target the system prompt
        # or the request names: an order that names no language of its own is text.
        ordered = False
    if ordered:
        # The message gives its own order in a shape the shim does not know: it cannot tell the text from it.
        named = _unread_target(message.split("\n", 1)[0][:300])
        if named and resolve(named) is None:
            return Reading(
                batch,
                problem=f"the prompt asks for a translation into {quote(named)}, which the shim "
                f"cannot read as a language; {_HOW}",
            )
        return Reading(
            batch,
            problem=(
                f"the message {quote(message, 60)} holds an instruction in a form the shim does not know, so it "
                f"cannot tell the text to translate from it; send the text alone (the instruction in the system "
                f"message, or as a first line such as 'Translate to Japanese:'), and {_HOW}"
            ),
        )
    return _languages(Reading(batch, target, source), system, earlier, default_target)


def _languages(reading: Reading, system: list[str], earlier: list[str], default_target: str) -> Reading:
    """The reading with its languages filled in from the prompts: the instruction next to the text, then the
    system prompts, then earlier user turns; a target named there but not readable is a problem, not a default."""
    target, source = reading.target_language, reading.source_language
    batch = reading.batch
    prompts = [batch.instruction, *system, *earlier]
    if not source:
        source = prompt_languages(prompts)[0]
    if not target:
        for prompt in prompts:
            if not prompt:
                continue
            target = prompt_languages([prompt])[1]
            if not target and batch.form != "single" and prompt is batch.instruction:
                # The plugin's batch templates put its {{to}} mid-sentence, as sent: "into it, write …".
                target = template_target(prompt)
            if target:
                break
            named = _unread_target(prompt)
            if named:
                return Reading(
                    batch,
                    problem=f"the prompt asks for a translation into {quote(named)}, which the shim cannot read "
                    f"as a language; {_HOW}",
                    client=reading.client,
                )
    if not target:
        target = default_target
    if not target:
        return Reading(
            batch,
            problem=f"the request does not say which language to translate into; {_HOW}, or name it in the prompt",
            client=reading.client,
        )
    return Reading(batch, target, source, client=reading.client)
