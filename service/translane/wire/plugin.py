"""Immersive Translate's forms: paragraph batches inside one chat message, and its custom API.

The plugin fills a prompt template such as "Translate to {{to}}:\\n\\n{{text}}", where
{{text}} is either the paragraphs joined by "\\n\\n%%\\n\\n" or a YAML list built by raw
substitution into "- id: {{id}}\\n  text: {{text}}" (optionally inside <yaml></yaml>).
`split_message` takes such a message apart into its instruction and its paragraphs, and
the returned `Batch` puts translations back in the same form: N paragraphs in, N out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..languages import normalize_language
from ..v1 import translate_pb2 as pb
from .errors import WireError
from .languages import plugin_code, prompt_languages, resolve

__all__ = [
    "Batch",
    "CustomRequest",
    "custom_fields",
    "language_field",
    "paragraphs",
    "parse_custom",
    "render_custom",
    "split_message",
]

SEPARATOR = "\n\n%%\n\n"
SEPARATOR_LINE = "%%"
_YAML_TAGS = re.compile(r"<yaml>[ \t]*\n?(?P<body>.*?)\n?[ \t]*</yaml>", re.DOTALL)
# A fenced block: ```yaml … ``` (or a bare ``` fence) holding the items.
_YAML_FENCE = re.compile(r"^[ \t]*```[ \t]*(?:ya?ml)?[ \t]*\n(?P<body>.*?)\n[ \t]*```[ \t]*$", re.DOTALL | re.MULTILINE)
# The templates' worked example, which holds items of its own: part of the instruction, never the batch.
_EXAMPLE = re.compile(r"<example>.*?</example>", re.DOTALL | re.IGNORECASE)
_FIRST_ITEM = re.compile(r"^-[ \t]+id:", re.MULTILINE)
# After a blank line, an unindented line of instruction: what a template writes after its items.
_TRAILING_INSTRUCTION = re.compile(
    r"\n[ \t]*\n(?=[^\s-][^\n]*\b(?:translat\w*|return|output|reply|respond|yaml|keep|format|id|ids)\b)",
    re.IGNORECASE,
)
# "- id: 7" then an indented "text: ..." (or whatever the source field is called).
_YAML_ITEM = re.compile(
    r"^-[ \t]+id:[ \t]*(?P<id>[^\n]*?)[ \t]*\n(?P<indent>[ \t]+)(?P<field>[A-Za-z_][\w-]*):(?:[ \t]|$)",
    re.MULTILINE,
)
# The instruction a template puts before the text: "Translate to X (output translation only):",
# "翻译成 X：", or inline "Translate to French: Bonjour".
_INSTRUCTION = re.compile(r"\A[ \t]*(?P<instruction>[^\n:：]{1,300}[:：])[ \t]*(?P<newline>\n?)")
_IMPERATIVE = re.compile(r"(?:please\s+)?translate\b|请|請|将|將|把|翻译|翻譯", re.IGNORECASE)
# Where an instruction names its target, whether or not the name is one the shim reads.
_TARGET_MARKER = re.compile(
    r"\b(?:in)?to\s+\S|(?:翻译|翻譯|译|譯)(?:成|为|為|到)|(?:に|へ)(?:翻訳|訳)|로\s*번역", re.IGNORECASE
)
_TRANSLATE_VERB = re.compile(r"translat|tradu|перев|übersetz|翻译|翻譯|译|譯|翻訳|번역", re.IGNORECASE)
# The text in tags after the instruction, as users' own templates put it: "<text>\n{{text}}\n</text>".
_WRAPPED = re.compile(r"\A\s*<(?P<tag>text|source|input)>\n?(?P<body>.*?)\n?</(?P=tag)>\s*\Z", re.DOTALL)
# An older plugin template: "...\nSource Text: {{text}}\n\nTranslated Text:".
_LABELLED = re.compile(
    r"\A(?P<instruction>.*?)\n[ \t]*Source Text:[ \t]*(?P<body>.*?)\s*\n[ \t]*Translated Text:[ \t]*\Z",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class _Item:
    ident: str
    indent: str
    field: str


@dataclass(frozen=True, slots=True)
class Batch:
    """Paragraphs pulled out of one message, and how their translations go back in."""

    segments: tuple[str, ...]
    # "single", "separator" (%% lines) or "yaml" (- id: / text: items).
    form: str = "single"
    # The prompt text around the paragraphs: read for languages, never translated.
    instruction: str = ""
    # For the yaml form: each item's id, indentation and field name, to write back as they came.
    items: tuple[_Item, ...] = ()
    # For the separator form: the line between paragraphs ("%%", or a client's own such as "@@").
    separator: str = SEPARATOR_LINE

    def before(self, i: int) -> str:
        """What goes in front of translation `i`."""
        if self.form == "separator":
            return f"\n\n{self.separator}\n\n" if i else ""
        if self.form == "yaml":
            item = self.items[i]
            head = f"- id: {item.ident}\n{item.indent}{item.field}: "
            return "\n" + head if i else head
        return ""

    def render(self, texts: Sequence[str]) -> str:
        """The whole reply, in the form the paragraphs came in."""
        if len(texts) != len(self.segments):
            raise ValueError(f"{len(texts)} translations for {len(self.segments)} paragraphs")
        if self.form == "single":
            return texts[0]
        return "".join(self.before(i) + t for i, t in enumerate(texts))


def _yaml(body: str, instruction: str) -> Batch | None:
    body = body.strip("\n")
    heads = list(_YAML_ITEM.finditer(body))
    if not heads or heads[0].start() != 0:
        return None
    items: list[_Item] = []
    segments: list[str] = []
    for k, m in enumerate(heads):
        end = heads[k + 1].start() - 1 if k + 1 < len(heads) else len(body)
        # The value is raw, as the plugin substituted it: keep it byte for byte, quotes included.
        value = body[m.end() : end].rstrip("\n")
        items.append(_Item(m.group("id"), m.group("indent"), m.group("field")))
        segments.append(value)
    return Batch(tuple(segments), "yaml", instruction.strip(), tuple(items))


def _instruction(text: str) -> tuple[str, str]:
    """(instruction, the rest) when `text` opens with a translation instruction, else ("", text)."""
    labelled = _LABELLED.match(text)
    if labelled:
        return labelled.group("instruction").strip(), labelled.group("body")
    m = _INSTRUCTION.match(text)
    if m is None:
        return "", text
    instruction = m.group("instruction")
    # Only a line that asks for a translation into a language it names (read or not: "Translate to Klingon:"
    # is an instruction, whose target the caller may state elsewhere); and unless it stands on its own line,
    # only one that opens like an order ("Translate to French: Bonjour").
    if not _TRANSLATE_VERB.search(instruction):
        return "", text
    if not prompt_languages([instruction])[1] and not _TARGET_MARKER.search(instruction):
        return "", text
    if not m.group("newline") and not _IMPERATIVE.match(instruction.lstrip()):
        return "", text
    rest = text[m.end() :].lstrip("\n")
    return (instruction, rest) if rest.strip() else ("", text)


def _paragraphs(body: str, separator: str = SEPARATOR_LINE) -> list[str]:
    """The paragraphs between separator lines ("%%"), without the blank lines around each separator."""
    paragraphs: list[list[str]] = [[]]
    for line in body.split("\n"):
        if line.strip() == separator:
            paragraphs.append([])
        else:
            paragraphs[-1].append(line)
    out = []
    for lines in paragraphs:
        # Only the empty lines the separator brings; a paragraph of spaces stays what it was.
        while lines and not lines[0].strip("\r"):
            lines.pop(0)
        while lines and not lines[-1].strip("\r"):
            lines.pop()
        out.append("\n".join(lines))
    return out


def _yaml_anywhere(text: str) -> Batch | None:
    """A YAML batch in `<yaml>` tags, in a ```yaml fence, or bare after the instruction; None when there is none.

    The instruction is everything around the items (the template's `<example>` block included), so
    none of it is translated.
    """
    examples = [m.span() for m in _EXAMPLE.finditer(text)]

    def outside(start: int) -> bool:
        return not any(a <= start < b for a, b in examples)

    for pattern in (_YAML_TAGS, _YAML_FENCE):
        for m in pattern.finditer(text):
            if outside(m.start()):
                batch = _yaml(m.group("body"), text[: m.start()] + "\n" + text[m.end() :])
                if batch is not None:
                    return batch
    for m in _FIRST_ITEM.finditer(text):
        if outside(m.start()):
            end = min((a for a, _ in examples if a > m.start()), default=len(text))
            # Bare items end where the template's words resume: after a blank line, an unindented line that
            # is neither an item nor text of one ("Return the YAML only, ..."), never taken into the last item.
            tail = _TRAILING_INSTRUCTION.search(text, m.start(), end)
            if tail is not None:
                end = tail.start()
            return _yaml(text[m.start() : end], text[: m.start()] + "\n" + text[end:])
    return None


def split_message(text: str) -> Batch:
    """The paragraphs of a chat message, in whichever of the plugin's forms it uses."""
    batch = _yaml_anywhere(text)
    if batch is not None:
        return batch
    instruction, body = _instruction(text)
    wrapped = _WRAPPED.match(body) if instruction else None
    if wrapped is not None:
        body = wrapped.group("body")  # "<text>\n…\n</text>" after the instruction: the text is inside
    return paragraphs(body, instruction)


def paragraphs(body: str, instruction: str = "", separator: str = SEPARATOR_LINE) -> Batch:
    """`body` as one paragraph, or several when separator lines ("%%") stand between them."""
    if separator in body:
        parts = _paragraphs(body, separator)
        if len(parts) > 1:
            return Batch(tuple(parts), "separator", instruction, separator=separator)
    return Batch((body,), "single", instruction)


# -- the custom API: {"source_lang", "target_lang", "text_list"} -------------------------


@dataclass(frozen=True, slots=True)
class CustomRequest:
    """What a custom API body asks for; `source_as_sent` is the source language as the plugin spelled it."""

    texts: tuple[str, ...]
    target_language: str
    source_language: str
    source_as_sent: str
    model: str
    task_id: str

    def grpc_request(self) -> pb.TranslateRequest:
        """The one Translate call the request makes."""
        return pb.TranslateRequest(
            segments=self.texts,
            target_language=self.target_language,
            source_language=self.source_language,
            model=self.model,
            task_id=self.task_id,
            priority=pb.PRIORITY_INTERACTIVE,
        )


def language_field(body: Mapping[str, Any], *names: str) -> tuple[str, str]:
    """(our code, as sent) from the first of `names` present; ("", "") when none is. Each one present is checked."""
    found = []
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise WireError.bad_field(name, "a language code such as 'zh-CN' or 'en'", value)
        found.append(value)
    if not found:
        return "", ""
    return resolve(found[0]) or normalize_language(found[0]), found[0]


def parse_custom(
    body: Mapping[str, Any], default_target: str = "", task_id: str = "", header_target: str = ""
) -> CustomRequest:
    """The custom API's request; WireError names a missing or mistyped field. The target is `target_lang`, else
    the X-Target-Language header's, else `default_target`; none at all is an error, never a guess."""
    texts = body.get("text_list")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise WireError.bad_field("text_list", "a list of strings", texts)
    target, _ = language_field(body, "target_lang", "target_language")
    target = target or header_target  # the header's code, read by the shim
    target = target or default_target
    if not target:
        raise WireError(
            400,
            "target_lang: required (a language code such as 'zh-CN' or 'ja'), or an X-Target-Language header",
            param="target_lang",
            code="missing_target_language",
        )
    source, source_sent = language_field(body, "source_lang", "source_language")
    model = body.get("model")
    if model is None:
        model = ""
    if not isinstance(model, str):
        raise WireError.bad_field("model", "a string", model)
    return CustomRequest(tuple(texts), target, source, source_sent, model, task_id)


def render_custom(req: CustomRequest, resp: pb.TranslateResponse | None) -> dict[str, Any]:
    """The custom API's answer: one translation per text, with the source language in the plugin's spelling."""
    out = []
    translations = resp.translations if resp is not None else ()
    for t in translations:
        detected = t.detected_source_language
        if not detected:
            code = req.source_as_sent or "auto"
        elif detected == req.source_language and req.source_as_sent:
            code = req.source_as_sent  # as the plugin sent it: "zh-CN" stays "zh-CN"
        else:
            code = plugin_code(detected)
        out.append({"detected_source_lang": code, "text": t.text})
    return {"translations": out}


# The service's field names as the custom API's body usually has them, for the errors it quotes.
_CUSTOM_FIELDS = {"segments": "text_list", "target_language": "target_lang", "source_language": "source_lang"}


def custom_fields(body: Mapping[str, Any]) -> dict[str, str]:
    """The service's field names an error about this body names as the custom API does: those the body
    does not use itself (it may carry the service's own names too)."""
    return {name: alias for name, alias in _CUSTOM_FIELDS.items() if name not in body}
