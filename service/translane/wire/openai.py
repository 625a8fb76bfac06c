"""OpenAI chat completions and model listing: the requests parsed, the replies and stream chunks rendered."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..v1 import translate_pb2 as pb
from .errors import WireError
from .languages import prompt_languages
from .plugin import Batch, language_field, split_message

__all__ = [
    "MAX_OUTPUT_TOKENS",
    "ChatRequest",
    "Chunks",
    "completion",
    "error_event",
    "model_list",
    "parse_chat",
    "usage_json",
]

_DONE = b"data: [DONE]\n\n"
_SYSTEM_ROLES = ("system", "developer")
_TEXT_PARTS = ("text", "input_text")
# The service carries an output cap as an unsigned 32-bit integer.
MAX_OUTPUT_TOKENS = 2**32 - 1


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What a chat completions body asks for; `batch` is None for a connection check (no messages)."""

    model: str
    batch: Batch | None
    target_language: str
    source_language: str
    stream: bool
    include_usage: bool
    task_id: str
    max_output_tokens: int
    use_cache: bool = True

    def grpc_request(self) -> pb.TranslateRequest:
        assert self.batch is not None
        return pb.TranslateRequest(
            segments=self.batch.segments,
            target_language=self.target_language,
            source_language=self.source_language,
            model=self.model,
            task_id=self.task_id,
            priority=pb.PRIORITY_INTERACTIVE,
            max_output_tokens=self.max_output_tokens,
            # A caller that caps the output gets OpenAI's answer to a cut: the text, finish_reason "length".
            # One that does not gets a complete translation or an error, never a silent cut.
            allow_truncated=self.max_output_tokens > 0,
            no_cache=not self.use_cache,
        )


def _content(content: Any, where: str) -> str:
    """A message's text: a string, or the text parts of a list joined by newlines."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise WireError.bad_field(where, "a string or a list of content parts", content)
    texts = []
    for i, part in enumerate(content):
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, Mapping):
            if part.get("type", "text") not in _TEXT_PARTS:
                continue  # images and the like carry nothing to translate
            text = part.get("text")
            if not isinstance(text, str):
                raise WireError.bad_field(f"{where}[{i}].text", "a string", text)
            texts.append(text)
        else:
            raise WireError.bad_field(f"{where}[{i}]", "a content part object", part)
    return "\n".join(texts)


def _flag(body: Mapping[str, Any], name: str, where: str = "") -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise WireError.bad_field(f"{where}{name}", "true or false", value)
    return value


def _max_tokens(body: Mapping[str, Any]) -> int:
    """`max_completion_tokens`, else `max_tokens`, else 0; each one given is checked, the one used or not."""
    found = []
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 100.0 is the integer 100 in JSON (and in JSON Schema)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_OUTPUT_TOKENS:
            raise WireError.bad_field(name, f"an integer from 0 to {MAX_OUTPUT_TOKENS}", body.get(name))
        found.append(value)
    return found[0] if found else 0


def parse_chat(body: Mapping[str, Any], task_id: str, default_target: str) -> ChatRequest:
    """The ChatRequest in a chat completions body; WireError names a missing or mistyped field."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise WireError.bad_field("messages", "a list of messages", messages)
    model = body.get("model")
    if model is None:
        model = ""
    if not isinstance(model, str):
        raise WireError.bad_field("model", "a string", model)
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, Mapping):
        raise WireError.bad_field("stream_options", "an object", options)
    include_usage = options is not None and _flag(options, "include_usage", "stream_options.")
    include_usage = stream and include_usage  # checked whether it applies or not, like every field
    max_output_tokens = _max_tokens(body)
    target, _ = language_field(body, "target_language", "target_lang")
    source, _ = language_field(body, "source_language", "source_lang")
    use_cache = body.get("cache")
    if use_cache is None:
        use_cache = True
    if not isinstance(use_cache, bool):
        raise WireError.bad_field("cache", "true or false", use_cache)
    if not messages:
        return ChatRequest(model, None, target or default_target, source, stream, include_usage, task_id, 0)
    roles: list[str] = []
    texts: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise WireError.bad_field(f"messages[{i}]", "a message object", message)
        role = message.get("role")
        if not isinstance(role, str):
            raise WireError.bad_field(f"messages[{i}].role", "a string", role)
        roles.append(role)
        texts.append(_content(message.get("content"), f"messages[{i}].content"))
    last = max((i for i, r in enumerate(roles) if r == "user"), default=-1)
    if last < 0:
        raise WireError(
            400, "messages: no user message holds text to translate", param="messages", code="invalid_value"
        )
    batch = split_message(texts[last])
    if not (target and source):
        # The instruction next to the text says most; then the system prompt; then earlier user turns.
        prompts = [
            batch.instruction,
            *(t for t, r in zip(texts, roles, strict=True) if r in _SYSTEM_ROLES),
            *(texts[i] for i in range(last - 1, -1, -1) if roles[i] == "user"),
        ]
        found_source, found_target = prompt_languages(prompts)
        target = target or found_target
        source = source or found_source
    return ChatRequest(
        model, batch, target or default_target, source, stream, include_usage, task_id, max_output_tokens, use_cache
    )


# -- rendering ------------------------------------------------------------------------


def usage_json(usage: pb.Usage | None) -> dict[str, Any]:
    """OpenAI usage, plus the service's cost (`cost`, `currency`) and whether it was `estimated`."""
    if usage is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0.0}
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "cached_segments": usage.cached_segments,
        "cost": usage.cost,
        "currency": usage.currency,
        "estimated": usage.estimated,
    }


def completion(
    model: str, content: str, usage: pb.Usage | None, served: str = "", truncated: bool = False
) -> dict[str, Any]:
    """A chat.completion: `model` is the model asked for; `served_model` (ours) the one that answered."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "served_model": served or model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "length" if truncated else "stop",
                "logprobs": None,
            }
        ],
        "usage": usage_json(usage),
    }


class Chunks:
    """chat.completion.chunk frames of one stream, as server-sent events."""

    def __init__(self, model: str) -> None:
        self.ident = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def frame(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        """One chunk as an SSE event."""
        chunk = {
            "id": self.ident,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"

    def delta(self, delta: dict[str, str], finish_reason: str | None = None) -> bytes:
        """A chunk carrying `delta` (the role, or content)."""
        return self.frame([{"index": 0, "delta": delta, "finish_reason": finish_reason}])

    def closing(self, usage: pb.Usage | None, include_usage: bool, served: str = "", truncated: bool = False) -> bytes:
        """The finish chunk (naming the model that served, as `served_model`), the usage chunk, [DONE]."""
        finish = [{"index": 0, "delta": {}, "finish_reason": "length" if truncated else "stop"}]
        out = self.frame(finish, served_model=served or self.model)
        if include_usage:
            out += self.frame([], usage=usage_json(usage))
        return out + _DONE


def error_event(error: WireError) -> bytes:
    """A failure after a stream began, too late for a status code: an error event (the OpenAI SDK raises APIError)."""
    return b"data: " + error.body() + b"\n\n"


def model_list(resp: pb.ListModelsResponse) -> dict[str, Any]:
    """GET /v1/models' answer: OpenAI's model list, plus each model's lane, API style and rotation state."""
    data = [
        {
            "id": m.name,
            "object": "model",
            "created": 0,
            "owned_by": m.provider or "translane",
            "lane": m.lane,
            "api_style": m.api_style,
            "available": m.available,
            "default": m.name == resp.default_model,
        }
        for m in resp.models
    ]
    return {"object": "list", "data": data}
