"""What both wire formats reduce to: one translation call, its fake answer and the sim's errors."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

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
    """The simulated translation: the text copied, so placeholders survive, under a clear mark.

    With `pseudo`, each word becomes a word of the target language (a fixed small vocabulary),
    so language identification sees the target language, as it would in a real translation.
    """
    text = pseudo_text(call.text, call.target) if pseudo else call.text
    return f"[sim {call.source}->{call.target}] {text}"


_VOCABULARY = {
    "de": "das Haus ist und der Baum nicht mit eine Katze schnell über den Hund springt heute wir sind".split(),
    "fr": "le chat est et la maison avec une très rapide sur chien saute pas nous sommes aujourd'hui".split(),
    "es": "el gato es y la casa con una muy rápido sobre perro salta no nosotros somos hoy".split(),
    "it": "il gatto è e la casa con una molto veloce sopra cane salta non noi siamo oggi".split(),
    "zh": "的 是 不 了 在 人 有 我 他 这 中 大 来 上 国 个 到 说 们 为 子 和 你 地 出 道 也 时 年".split(),
    "ja": "これ は とても いい 日本語 の 文章 です そして 私 たち 今日 ここ".split(),
}
# Words, but not entity names (&amp;).
_WORDS = re.compile(r"(?<![&\w])[A-Za-z][A-Za-z']*")


def pseudo_text(text: str, target: str) -> str:
    """Every Latin word replaced by a target-language word chosen by the word; the rest (placeholders,
    digits, punctuation, spacing) kept. Targets without a vocabulary keep the text."""
    vocab = _VOCABULARY.get(target.split("-")[0].lower())
    if vocab is None:
        return text
    joiner = "" if target.startswith(("zh", "ja")) else None

    def swap(m: re.Match[str]) -> str:
        word = m.group()
        return vocab[sum(map(ord, word)) % len(vocab)]

    out = _WORDS.sub(swap, text)
    return out.replace(" ", "") if joiner == "" else out


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
