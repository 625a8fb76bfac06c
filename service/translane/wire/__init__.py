"""The formats the service's HTTP callers write, parsed and rendered: OpenAI chat completions, Immersive
Translate's batches and custom API, and errors as OpenAI error JSON.

Pure: no I/O, no aiohttp, no gRPC calls (a request becomes a translate_pb2 message, a reply is rendered from
one). The shim's handlers (gateway_shim) and the batch tool (translane.tools.batch) both read and write
these formats through this package, so each format has one owner.

    openai     ChatRequest, parse_chat; completion, Chunks, StopScan, cut_at_stop, usage_json, model_list,
               error_event
    plugin     Batch, split_message (the plugin's batches in a chat message); CustomRequest,
               parse_custom, render_custom (its custom API)
    languages  languages as clients name them, in fields and in prompts
    errors     WireError, from_rpc_error, from_status (the one mapping from gRPC status to HTTP status)
    usage      usage_row_json (a usage ledger row as JSON)
"""

from __future__ import annotations

from .errors import WireError, from_rpc_error, from_status
from .languages import plugin_code, prompt_languages, resolve
from .openai import (
    MAX_OUTPUT_TOKENS,
    MAX_STOP_CHARS,
    MAX_STOP_SEQUENCES,
    ChatRequest,
    Chunks,
    StopScan,
    completion,
    cut_at_stop,
    error_event,
    model_list,
    parse_chat,
    usage_json,
)
from .plugin import Batch, CustomRequest, custom_fields, language_field, parse_custom, render_custom, split_message
from .usage import usage_row_json

__all__ = [
    "MAX_OUTPUT_TOKENS",
    "MAX_STOP_CHARS",
    "MAX_STOP_SEQUENCES",
    "Batch",
    "ChatRequest",
    "Chunks",
    "CustomRequest",
    "StopScan",
    "WireError",
    "completion",
    "custom_fields",
    "cut_at_stop",
    "error_event",
    "from_rpc_error",
    "from_status",
    "language_field",
    "model_list",
    "parse_chat",
    "parse_custom",
    "plugin_code",
    "prompt_languages",
    "render_custom",
    "resolve",
    "split_message",
    "usage_json",
    "usage_row_json",
]
