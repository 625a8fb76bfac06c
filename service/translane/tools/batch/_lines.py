"""Input lines: the OpenAI Batch form (a chat completions request) or the simple form, each to one Translate."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from translane.languages import normalize_language
from translane.wire import Batch, WireError, parse_chat

__all__ = ["Line", "LineError", "parse_line"]


class LineError(ValueError):
    """A line that cannot be sent; `custom_id` is the line's own or `line-N`."""

    def __init__(self, custom_id: str, message: str) -> None:
        super().__init__(message)
        self.custom_id = custom_id
        self.message = message


@dataclass(frozen=True, slots=True)
class Line:
    """One request of the job."""

    custom_id: str
    segments: tuple[str, ...]
    target_language: str
    source_language: str
    model: str
    # "chat": answer as a chat.completion (the plugin's batch forms put back together); "simple": translations.
    form: str
    batch: Batch | None = None
    max_output_tokens: int = 0
    # The chat form's stop sequences: its answer is cut before the first of them.
    stop: tuple[str, ...] = ()


def _custom_id(data: dict[str, Any], number: int) -> str:
    value = data.get("custom_id")
    if isinstance(value, str) and value and len(value) <= 512:
        return value
    raise LineError(f"line-{number}", "custom_id: required, a non-empty string of at most 512 characters")


# What a line that is JSON but no object holds, in words.
_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true or false"}
# json's words for what it expected, in plain ones.
_PLAIN = {
    "Expecting value": "a value was expected",
    "Expecting ',' delimiter": "a comma was expected",
    "Expecting ':' delimiter": "a colon was expected",
    "Expecting property name enclosed in double quotes": "a key in double quotes was expected",
    "Invalid control character at": "a raw control character inside a string (escape it, as \\n or \\t)",
    "Invalid \\escape": "a backslash escape JSON does not know",
}


def _not_json(raw: str, exc: json.JSONDecodeError, number: int) -> str:
    """What is wrong with a line that is not JSON, in words that name the line, not json's own line and column
    (which count within the line: a torn line read "Expecting value: line 2 column 1")."""
    text = raw.rstrip()
    if exc.msg.startswith("Unterminated string") or exc.pos >= len(text):
        return f"line {number} is not whole JSON: it ends before its object does (a torn or cut line?)"
    if exc.msg == "Extra data":
        return f"line {number} goes on after its JSON object ends, at character {exc.pos + 1}: one object a line"
    near = text[exc.pos : exc.pos + 24]
    return f"line {number} is not JSON: {_PLAIN.get(exc.msg, exc.msg)} at character {exc.pos + 1} ({near!r})"


# Fields only an OpenAI Batch request has: a line with any of them is read as one, and must have a body.
_BATCH_FIELDS = ("body", "method", "url")


def parse_line(raw: str, number: int, default_target: str) -> Line:
    """The Line on input line `number` (from 1); LineError says what is wrong with it."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise LineError(f"line-{number}", _not_json(raw, exc, number)) from None
    if not isinstance(data, dict):
        kind = _KINDS.get(type(data), "null")
        raise LineError(f"line-{number}", f"line {number}: expected a JSON object, got {kind}")
    cid = _custom_id(data, number)
    given = [name for name in _BATCH_FIELDS if name in data]
    if given:
        if "body" not in data:
            raise LineError(
                cid,
                f"body: required for a line with {'/'.join(given)} (an OpenAI Batch request: custom_id, method, "
                "url, body with the chat messages)",
            )
        body = data["body"]
        if not isinstance(body, dict):
            raise LineError(cid, "body: expected an object")
        url = data.get("url", "/v1/chat/completions")
        if url not in ("/v1/chat/completions", "/chat/completions"):
            raise LineError(cid, f"url: only /v1/chat/completions is served, got {str(url)[:60]!r}")
        try:
            chat = parse_chat(body, "", default_target)
        except WireError as exc:
            raise LineError(cid, exc.message) from None
        if chat.batch is None:
            raise LineError(cid, "body.messages: nothing to translate")
        if chat.unreadable:
            # Never a guess: not the instruction translated, nor into --to's language in place of the one named.
            raise LineError(cid, f"body.messages: {chat.unreadable}")
        return Line(
            cid,
            chat.batch.segments,
            chat.target_language,
            chat.source_language,
            chat.model,
            "chat",
            chat.batch,
            chat.max_output_tokens,
            chat.stop,
        )
    texts = data.get("segments", [data.get("text")] if "text" in data else None)
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise LineError(cid, "text or segments: required, a string or a non-empty list of strings")
    target = data.get("target_language", default_target)
    if target == "":
        raise LineError(cid, "target_language: required (a code such as 'zh' or 'ja'), or run with --to LANG")
    source = data.get("source_language", "")
    model = data.get("model", "")
    for name, value in (("target_language", target), ("source_language", source), ("model", model)):
        if not isinstance(value, str):
            raise LineError(cid, f"{name}: expected a string")
    return Line(cid, tuple(texts), normalize_language(target), normalize_language(source), model, "simple")
