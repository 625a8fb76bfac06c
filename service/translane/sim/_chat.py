"""The OpenAI chat completions wire format: request parsing and answer rendering."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from translane.tokens import count_tokens

from ._call import (
    PIECE,
    Answer,
    Call,
    SimError,
    hint_languages,
    piece_json,
    split_pieces,
    target_in_prompt,
    template,
    text_of,
)

__all__ = ["parse", "render", "render_stream"]

# The per-message overhead OpenAI-style tokenizers bill for role and separators.
_TOKENS_PER_MESSAGE = 4


def parse(body: Mapping[str, Any], model: str) -> Call:
    """The Call in a chat completions request body."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SimError(400, "InvalidParameter", "messages must be a non-empty list")
    prompt_tokens = 0
    system: list[str] = []
    text = ""
    part_options: Any = None
    for message in messages:
        if not isinstance(message, Mapping):
            raise SimError(400, "InvalidParameter", "each message must be an object")
        content, options = text_of(message.get("content"), "text")
        prompt_tokens += count_tokens(content) + _TOKENS_PER_MESSAGE
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(content)
        elif role == "user":
            text, part_options = content, options
    # Explicit hints win; else the prompt's "to <language>"; else a visible placeholder.
    options = body.get("translation_options", part_options)
    source, target = hint_languages(options)
    target = target or target_in_prompt("\n".join(system)) or "xx"
    stream = body.get("stream") is True
    stream_options = body.get("stream_options")
    include_usage = stream and isinstance(stream_options, Mapping) and stream_options.get("include_usage") is True
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = cap if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 else 0
    return Call(model, text, source or "auto", target, prompt_tokens, stream, include_usage, max_tokens)


def _usage(call: Call, answer: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": call.prompt_tokens + answer.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
    }


def _finish(answer: Answer) -> str:
    return "length" if answer.truncated else "stop"


def _message(answer: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.content}
    if answer.reasoning and not answer.think_in_content:
        message["reasoning_content"] = answer.reasoning
    return message


def render(call: Call, answer: Answer) -> bytes:
    """A non-streaming chat.completion body."""
    return json.dumps(
        {
            "id": answer.ident,
            "object": "chat.completion",
            "created": answer.created,
            "model": call.model,
            "choices": [
                {
                    "index": 0,
                    "message": _message(answer),
                    "finish_reason": _finish(answer),
                    "logprobs": None,
                }
            ],
            "usage": _usage(call, answer),
        },
        ensure_ascii=False,
    ).encode()


def _chunk(answer: Answer, call: Call, choices: list[Any]) -> dict[str, Any]:
    return {
        "id": answer.ident,
        "object": "chat.completion.chunk",
        "created": answer.created,
        "model": call.model,
        "choices": choices,
    }


def _sse(frame: Any) -> bytes:
    return b"data: " + json.dumps(frame, ensure_ascii=False).encode() + b"\n\n"


def render_stream(call: Call, answer: Answer, pieces: list[str]) -> tuple[bytes, list[bytes], bytes]:
    """SSE frames: the opening one, one per piece, and the closing ones up to [DONE]."""
    opening = _sse(_chunk(answer, call, [{"index": 0, "delta": {"role": "assistant", "content": ""}}]))
    head, tail = template(_chunk(answer, call, [{"index": 0, "delta": {"content": PIECE}, "finish_reason": None}]))
    before, after = f"data: {head}", f"{tail}\n\n"
    frames = [f"{before}{piece_json(p)}{after}".encode() for p in pieces]
    if answer.reasoning and not answer.think_in_content:
        # Reasoning first, in its own delta field, as DeepSeek-style thinking models stream it.
        head, tail = template(
            _chunk(answer, call, [{"index": 0, "delta": {"reasoning_content": PIECE}, "finish_reason": None}])
        )
        thought = [f"data: {head}{piece_json(p)}{tail}\n\n".encode() for p in split_pieces(answer.reasoning)]
        frames = thought + frames
    closing = _sse(_chunk(answer, call, [{"index": 0, "delta": {}, "finish_reason": _finish(answer)}]))
    if call.include_usage:
        closing += _sse({**_chunk(answer, call, []), "usage": _usage(call, answer)})
    return opening, frames, closing + b"data: [DONE]\n\n"
