"""What both wire formats reduce to: one translation call, its fake answer and the sim's errors."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

from ._pseudo import mark, pseudo_text, vocabulary_for

__all__ = [
    "PIECE",
    "Answer",
    "Call",
    "SimError",
    "answer",
    "error_body",
    "hint_languages",
    "piece_json",
    "pseudo_text",
    "split_pieces",
    "target_in_prompt",
    "template",
    "text_of",
    "translate",
]

# Stands where a piece of text goes in a frame template; no real text holds NULs.
PIECE = "\x00sim-piece\x00"
_MARK_JSON = json.dumps(PIECE)

# Error "type" per HTTP status, as Ark labels them.
_ERROR_TYPES = {
    400: "BadRequest",
    401: "Unauthorized",
    404: "NotFound",
    429: "TooManyRequests",
    500: "InternalServiceError",
}

# Roughly tiktoken's pre-tokenizer: a word with its leading space, up to three digits,
# one other character (each CJK character is about a token), or whitespace. The
# alternatives cover every character, so the pieces always join back to the input.
_PIECE = re.compile(r" ?[A-Za-z]+| ?\d{1,3}| ?[^\sA-Za-z\d]|\s+(?!\S)|\s")
# "... to Simplified Chinese", "into zh-CN": loose on purpose, the sim only echoes it.
_TARGET_IN_PROMPT = re.compile(r"\b(?:in)?to\s+([A-Za-z][\w-]*(?:\s+[A-Z][\w-]*)?)", re.IGNORECASE)


class SimError(Exception):
    """An error the simulated provider answers with: HTTP status plus Ark's error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(status: int, code: str, message: str) -> bytes:
    """Ark's error envelope, encoded."""
    err = {"code": code, "message": message, "type": _ERROR_TYPES.get(status, "Error")}
    return json.dumps({"error": err}).encode()


@dataclass(frozen=True, slots=True)
class Call:
    """One parsed request: the text to translate, its languages and prompt size."""

    model: str
    text: str
    source: str
    target: str
    prompt_tokens: int
    stream: bool
    include_usage: bool
    # The request's output cap (max_tokens / max_output_tokens); 0 when it sets none.
    max_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Answer:
    """The simulated reply to a Call, ready to render in either wire format."""

    ident: str
    created: int
    output: str
    # Output plus reasoning tokens, as providers bill them.
    completion_tokens: int
    # What a thinking model "thought" first, and its tokens (part of completion_tokens).
    reasoning: str = ""
    reasoning_tokens: int = 0
    # Cut at the output budget: finish_reason "length" / status "incomplete".
    truncated: bool = False
    # Reasoning inside `content` as <think>…</think> rather than in its own field.
    think_in_content: bool = False

    @property
    def content(self) -> str:
        """The chat `content`: the output, behind the reasoning when the model writes it there."""
        if not (self.think_in_content and self.reasoning):
            return self.output
        closed = "</think>\n" if self.output or not self.truncated else ""
        return f"<think>{self.reasoning}{closed}{self.output}"


def translate(call: Call, pseudo: bool = False) -> str:
    """The simulated translation, visibly marked as simulated.

    With `pseudo` (how the simulator runs unless told otherwise) each word becomes a common word of the
    target language, in its script, so a language identifier reads the target as in a real translation;
    placeholders, markup, numbers and spacing are kept byte for byte. The mark is then a bare "[sim] ",
    whose few Latin letters leave short Chinese or Russian answers readable as such. Without `pseudo`, or
    for a target it has no words for, the text comes back as sent under "[sim SRC->TGT] " (tests' echo mode).
    """
    vocabulary = vocabulary_for(call.target) if pseudo else None
    if vocabulary is None:
        return mark(call.text, f"[sim {call.source}->{call.target}] ")
    return mark(vocabulary.translate(call.text), "[sim] ")


_THOUGHT = " Let me consider how each phrase reads in the target language."


def answer(
    ident: str,
    created: int,
    output: str,
    reasoning_tokens: int,
    budget: int,
    think_in_content: bool,
    count: Callable[[str], int],
) -> Answer:
    """The reply to one call: `reasoning_tokens` spent thinking first, everything cut at `budget` tokens (0 = none).

    The cut goes by pieces of about a token; what is billed is `count` of what was produced.
    """
    if not reasoning_tokens and not budget:
        # The common case, kept cheap: this runs on every simulated call of every benchmark.
        return Answer(ident, created, output, count(output), think_in_content=think_in_content)
    reasoning = ""
    if reasoning_tokens:
        pieces = split_pieces(_THOUGHT * (reasoning_tokens // 10 + 1))
        reasoning = "".join(pieces[:reasoning_tokens])
    out_pieces = split_pieces(output)
    truncated = bool(budget) and reasoning_tokens + len(out_pieces) > budget
    if truncated:
        reasoning = "".join(split_pieces(reasoning)[:budget])
        out_pieces = out_pieces[: max(0, budget - reasoning_tokens)]
    thought = count(reasoning) if reasoning else 0
    text = "".join(out_pieces)
    return Answer(ident, created, text, thought + count(text), reasoning, thought, truncated, think_in_content)


def split_pieces(text: str) -> list[str]:
    """Split `text` into pieces of about one token each, which join back to `text`."""
    return _PIECE.findall(text)


def template(frame: Any) -> tuple[str, str]:
    """JSON of `frame` cut where the placeholder PIECE stands.

    Streaming then costs one string encode per piece instead of one dict dump.
    """
    head, tail = json.dumps(frame, ensure_ascii=False).split(_MARK_JSON)
    return head, tail


def piece_json(piece: str) -> str:
    """A piece of text as a JSON string, to put between a template's halves."""
    # The C string encoder json.dumps uses inside, without building an encoder per piece.
    return encode_basestring(piece)


def hint_languages(options: Any) -> tuple[str, str]:
    """(source, target) from a translation_options-like object; "" where absent."""
    if not isinstance(options, Mapping):
        return "", ""
    source = options.get("source_language")
    target = options.get("target_language")
    return (
        source if isinstance(source, str) else "",
        target if isinstance(target, str) else "",
    )


def target_in_prompt(prompt: str) -> str:
    """The language named after "to"/"into" in a system prompt, or ""."""
    match = _TARGET_IN_PROMPT.search(prompt)
    return match.group(1) if match else ""


def text_of(content: Any, part_type: str) -> tuple[str, Any]:
    """Text of a message's content (a string or a list of parts) and the first part's hints."""
    if isinstance(content, str):
        return content, None
    if content is None:
        return "", None
    if not isinstance(content, list):
        raise SimError(400, "InvalidParameter", "content must be a string or a list of parts")
    texts: list[str] = []
    options: Any = None
    for part in content:
        if not isinstance(part, Mapping) or part.get("type", part_type) != part_type:
            continue
        text = part.get("text")
        if not isinstance(text, str):
            raise SimError(400, "InvalidParameter", f"a {part_type} part needs a string text")
        texts.append(text)
        if options is None:
            options = part.get("translation_options")
    return "".join(texts), options
