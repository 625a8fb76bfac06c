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


def parse_line(raw: str, number: int, default_target: str) -> Line:
    """The Line on input line `number` (from 1); LineError says what is wrong with it."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise LineError(f"line-{number}", f"not JSON: {str(exc)[:120]}") from None
    if not isinstance(data, dict):
        raise LineError(f"line-{number}", "expected a JSON object")
    cid = _custom_id(data, number)
    if "body" in data:
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
    source = data.get("source_language", "")
    model = data.get("model", "")
    for name, value in (("target_language", target), ("source_language", source), ("model", model)):
        if not isinstance(value, str):
            raise LineError(cid, f"{name}: expected a string")
    return Line(cid, tuple(texts), normalize_language(target), normalize_language(source), model, "simple")
