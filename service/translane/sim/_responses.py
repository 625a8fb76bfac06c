"""The Ark Responses wire format (translation_options included): parsing and rendering."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from translane.tokens import count_tokens

from ._call import PIECE, Answer, Call, SimError, hint_languages, piece_json, template, text_of

__all__ = ["parse", "render", "render_stream"]


def parse(body: Mapping[str, Any], model: str) -> Call:
    """The Call in a Responses request body; the last user item holds the text."""
    raw = body.get("input")
    part_options: Any = None
    if isinstance(raw, str):
        text = raw
    elif isinstance(raw, list):
        text = ""
        for item in raw:
            if not isinstance(item, Mapping):
                raise SimError(400, "InvalidParameter", "each input item must be an object")
            if item.get("role", "user") == "user":
                text, part_options = text_of(item.get("content"), "input_text")
    elif raw is None:
        raise SimError(400, "MissingParameter", "input is required")
    else:
        raise SimError(400, "InvalidParameter", "input must be a string or a list of items")
    # Per-part options as Ark documents them; a top-level object too, for plain-string input.
    source, target = hint_languages(part_options if part_options is not None else body.get("translation_options"))
    if not target:
        raise SimError(400, "MissingParameter", "translation_options.target_language is required")
    stream = body.get("stream") is True
    cap = body.get("max_output_tokens")
    max_tokens = cap if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 else 0
    # Responses streams always end with the full usage, so include_usage is implied.
    return Call(model, text, source or "auto", target, count_tokens(text), stream, True, max_tokens)


def _response(call: Call, answer: Answer, *, done: bool) -> dict[str, Any]:
    response: dict[str, Any] = {
        "id": answer.ident,
        "object": "response",
        "created_at": answer.created,
        "model": call.model,
        "status": ("incomplete" if answer.truncated else "completed") if done else "in_progress",
        "output": [],
    }
    if done:
        output: list[dict[str, Any]] = []
        if answer.reasoning:
            output.append({"type": "reasoning", "summary": [{"type": "summary_text", "text": answer.reasoning}]})
        output.append(
            {
                "type": "message",
                "role": "assistant",
                "status": "incomplete" if answer.truncated else "completed",
                "content": [{"type": "output_text", "text": answer.output}],
            }
        )
        response["output"] = output
        if answer.truncated:
            response["incomplete_details"] = {"reason": "max_output_tokens"}
        response["usage"] = {
            "input_tokens": call.prompt_tokens,
            "output_tokens": answer.completion_tokens,
            "total_tokens": call.prompt_tokens + answer.completion_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
        }
    return response


def render(call: Call, answer: Answer) -> bytes:
    """A non-streaming response body."""
    return json.dumps(_response(call, answer, done=True), ensure_ascii=False).encode()


def _event(kind: str, payload: str) -> bytes:
    return f"event: {kind}\ndata: {payload}\n\n".encode()


def render_stream(call: Call, answer: Answer, pieces: list[str]) -> tuple[bytes, list[bytes], bytes]:
    """SSE events: response.created, one output_text.delta per piece, response.completed."""
    created = {"type": "response.created", "response": _response(call, answer, done=False)}
    opening = _event("response.created", json.dumps(created, ensure_ascii=False))
    head, tail = template({"type": "response.output_text.delta", "delta": PIECE})
    before = "event: response.output_text.delta\ndata: " + head
    after = tail + "\n\n"
    frames = [f"{before}{piece_json(p)}{after}".encode() for p in pieces]
    kind = "response.incomplete" if answer.truncated else "response.completed"
    completed = {"type": kind, "response": _response(call, answer, done=True)}
    closing = _event(kind, json.dumps(completed, ensure_ascii=False))
    return opening, frames, closing
