"""OpenAI chat completions and model listing: the requests parsed, the replies and stream chunks rendered."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..v1 import translate_pb2 as pb
from .errors import WireError
from .plugin import Batch, language_field
from .prompts import read_chat

__all__ = [
    "MAX_OUTPUT_TOKENS",
    "MAX_STOP_CHARS",
    "MAX_STOP_SEQUENCES",
    "ChatRequest",
    "Chunks",
    "StopScan",
    "completion",
    "cut_at_stop",
    "error_event",
    "model_list",
    "parse_chat",
    "usage_json",
]

_DONE = b"data: [DONE]\n\n"
_TEXT_PARTS = ("text", "input_text")
# The service carries an output cap as an unsigned 32-bit integer.
MAX_OUTPUT_TOKENS = 2**32 - 1
# OpenAI's bound on `stop`; and ours on each sequence's length, which bounds what a stream holds back.
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 1000
_TEXT_ONLY = "the shim's models answer with translated text only"


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
    # Stop sequences: the reply is cut before the first occurrence of any of them.
    stop: tuple[str, ...] = ()
    # Why the prompt could not be read as a translation ("" when it was): then only a passthrough may answer.
    unreadable: str = ""
    # The caller's messages as (role, text), for a passthrough.
    messages: tuple[tuple[str, str], ...] = ()
    # The chat model the messages go to as written (set by passthrough_to; "" when the request was read).
    passthrough_model: str = ""

    def passthrough_to(self, model: str) -> ChatRequest:
        """The request as the shim sends it: as read, or, when it could not be read, the chat as written to the
        chat `model` (one reply, whatever form the message had); a 400 saying what could not be read when there
        is no such model. Never a guess."""
        if not self.unreadable:
            return self
        if not model:
            raise WireError(400, f"messages: {self.unreadable}", param="messages", code="unreadable_prompt")
        last = next(text for role, text in reversed(self.messages) if role == "user")
        return dataclasses.replace(self, batch=Batch((last,), "single"), passthrough_model=model)

    def reply_model(self, requested: str) -> str:
        """The `model` a reply names: the one the service was asked for, or, for a passthrough, the caller's."""
        return (self.model if self.passthrough_model else "") or requested

    def grpc_request(self) -> pb.TranslateRequest:
        """The Translate call: the segments read from the prompt, or (a passthrough) the chat as written."""
        assert self.batch is not None
        if self.passthrough_model:
            return pb.TranslateRequest(
                messages=[pb.ChatMessage(role=role, content=text) for role, text in self.messages],
                target_language=self.target_language,
                source_language=self.source_language,
                model=self.passthrough_model,
                task_id=self.task_id,
                priority=pb.PRIORITY_INTERACTIVE,
                max_output_tokens=self.max_output_tokens,
            )
        assert not self.unreadable, self.unreadable
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


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    """`stop`: a string or a list of up to MAX_STOP_SEQUENCES, each non-empty and at most MAX_STOP_CHARS long."""
    value = body.get("stop")
    if value is None:
        return ()
    sequences = [value] if isinstance(value, str) else value
    if not isinstance(sequences, list) or len(sequences) > MAX_STOP_SEQUENCES:
        raise WireError.bad_field("stop", f"a string or a list of up to {MAX_STOP_SEQUENCES} strings", value)
    for i, sequence in enumerate(sequences):
        where = "stop" if isinstance(value, str) else f"stop[{i}]"
        if not isinstance(sequence, str) or not 1 <= len(sequence) <= MAX_STOP_CHARS:
            raise WireError.bad_field(where, f"a string of 1 to {MAX_STOP_CHARS} characters", sequence)
    return tuple(sequences)


def _check_unsupported(body: Mapping[str, Any]) -> None:
    """Refuse what asks for more than translated text: several choices, JSON, tool calls, audio, log
    probabilities, web search, moderation. What may be ignored without changing the answer's meaning
    (sampling, caching hints, metadata, tools the model may leave uncalled) is ignored; README.md lists each."""
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int | float) or n != 1):
        raise WireError.unsupported("n", "only 1 choice is answered (a translation has one text)", n)
    fmt = body.get("response_format")
    if fmt is not None:
        if not isinstance(fmt, Mapping):
            raise WireError.bad_field("response_format", 'an object such as {"type": "text"}', fmt)
        kind = fmt.get("type")
        if kind in ("json_object", "json_schema"):
            raise WireError.unsupported(
                "response_format",
                f"{_TEXT_ONLY}, never JSON (no JSON mode, no structured output): send "
                '{"type": "text"} or leave it out',
                kind,
            )
        if kind != "text":
            raise WireError.bad_field("response_format.type", '"text"', kind)
    for name, what in (("tool_choice", "a tool"), ("function_call", "a function")):
        choice = body.get(name)
        if choice is None or choice in ("none", "auto"):
            continue  # "auto" lets the model answer with text, which it does
        if choice == "required" or isinstance(choice, Mapping):
            raise WireError.unsupported(name, f'{_TEXT_ONLY} and never call {what}: send "none" or "auto"', choice)
        raise WireError.bad_field(name, '"none", "auto", "required" or an object naming ' + what, choice)
    modalities = body.get("modalities")
    if modalities is not None:
        if not isinstance(modalities, list):
            raise WireError.bad_field("modalities", 'a list such as ["text"]', modalities)
        if any(m != "text" for m in modalities):
            raise WireError.unsupported("modalities", f'{_TEXT_ONLY}: send ["text"] or leave it out', modalities)
    logprobs = body.get("logprobs")
    if logprobs is not None and logprobs is not False:
        if logprobs is not True:
            raise WireError.bad_field("logprobs", "true or false", logprobs)
        raise WireError.unsupported("logprobs", "the shim has no token log probabilities to give: send false", True)
    for name, why in (
        ("audio", f"{_TEXT_ONLY}, never audio"),
        ("web_search_options", "the shim translates the text given and searches nothing"),
        ("moderation", "the shim runs no moderation of its own"),
    ):
        if body.get(name) is not None:
            raise WireError.unsupported(name, f"{why}: leave it out", body.get(name))


def parse_chat(body: Mapping[str, Any], task_id: str, default_target: str = "", header_target: str = "") -> ChatRequest:
    """The ChatRequest in a chat completions body; WireError names a missing or mistyped field.

    The target is the body's `target_language`, else `header_target` (X-Target-Language), else what the prompt
    names; `default_target` only for a bare text whose prompts name none. A prompt that cannot be read with
    confidence gives a ChatRequest whose `unreadable` says why (translane.wire.prompts)."""
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
    target = target or header_target  # the header's code, read by the shim
    source, _ = language_field(body, "source_language", "source_lang")
    use_cache = body.get("cache")
    if use_cache is None:
        use_cache = True
    if not isinstance(use_cache, bool):
        raise WireError.bad_field("cache", "true or false", use_cache)
    stop = _stop(body)
    _check_unsupported(body)
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
    if "user" not in roles:
        raise WireError(
            400, "messages: no user message holds text to translate", param="messages", code="invalid_value"
        )
    reading = read_chat(roles, texts, target, source, default_target)
    return ChatRequest(
        model,
        reading.batch,
        reading.target_language,
        reading.source_language,
        stream,
        include_usage,
        task_id,
        max_output_tokens,
        use_cache,
        stop,
        reading.problem,
        tuple(zip(roles, texts, strict=True)),
    )


# -- rendering ------------------------------------------------------------------------


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` up to (not including) the first occurrence of any stop sequence, and whether one occurred."""
    ends = [i for sequence in stop if (i := text.find(sequence)) >= 0]
    return (text[: min(ends)], True) if ends else (text, False)


class StopScan:
    """A stream's text with its stop sequences applied across chunk boundaries.

    Text that could be the start of a stop sequence is held back until what follows shows whether it is;
    everything else passes at once. After a stop sequence, nothing passes.
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = tuple(stop)
        self.stopped = False
        self._held = ""

    def feed(self, text: str) -> str:
        """What of the stream so far may be sent now, given the next `text`."""
        if self.stopped or not self.stop:
            return "" if self.stopped else text
        text = self._held + text
        self._held = ""
        cut, self.stopped = cut_at_stop(text, self.stop)
        if self.stopped:
            return cut
        start = min(self._partial(text, sequence) for sequence in self.stop)
        self._held = text[start:]
        return text[:start]

    def end(self) -> str:
        """What was held back, once the stream has ended without it becoming a stop sequence."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    @staticmethod
    def _partial(text: str, sequence: str) -> int:
        """Where the longest end of `text` that begins `sequence` (but is not all of it) starts; len(text) if none."""
        start = max(0, len(text) - len(sequence) + 1)
        while (start := text.find(sequence[0], start)) >= 0:
            if sequence.startswith(text[start:]):
                return start
            start += 1
        return len(text)


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
    model: str,
    content: str,
    usage: pb.Usage | None,
    served: str = "",
    truncated: bool = False,
    stop: Sequence[str] = (),
) -> dict[str, Any]:
    """A chat.completion: `model` is the model asked for; `served_model` (ours) the one that answered.

    `content` is cut before the first of the `stop` sequences in it; a cut text then ends for that reason,
    "stop", whether or not the output cap cut it later.
    """
    content, stopped = cut_at_stop(content, stop)
    truncated = truncated and not stopped
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
    """chat.completion.chunk frames of one stream, as server-sent events.

    With `include_usage`, as OpenAI documents it: every chunk carries `usage`, null but in the last, which has
    no choices and the whole request's usage.
    """

    def __init__(self, model: str, include_usage: bool = False) -> None:
        self.ident = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage

    def frame(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        """One chunk as an SSE event."""
        chunk = {
            "id": self.ident,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **({"usage": None} if self.include_usage else {}),
            **extra,
        }
        return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"

    def delta(self, delta: dict[str, str], finish_reason: str | None = None) -> bytes:
        """A chunk carrying `delta` (the role, or content)."""
        return self.frame([{"index": 0, "delta": delta, "finish_reason": finish_reason}])

    def finish(self, served: str = "", truncated: bool = False) -> bytes:
        """The finish chunk, naming the model that served (as `served_model`)."""
        finish = [{"index": 0, "delta": {}, "finish_reason": "length" if truncated else "stop"}]
        return self.frame(finish, served_model=served or self.model)

    def end(self, usage: pb.Usage | None) -> bytes:
        """The usage chunk (with `include_usage`), then [DONE]."""
        return (self.frame([], usage=usage_json(usage)) if self.include_usage else b"") + _DONE

    def closing(self, usage: pb.Usage | None, served: str = "", truncated: bool = False) -> bytes:
        """The finish chunk, the usage chunk, [DONE]."""
        return self.finish(served, truncated) + self.end(usage)


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
