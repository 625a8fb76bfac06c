"""HTTP plumbing the handlers share: the app's state, JSON bodies within the size limit, task ids, JSON answers."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._backend import Backend
from ._config import ShimConfig
from ._errors import ShimError

__all__ = ["STATE", "TASK_ID", "TASK_ID_HEADER", "ShimState", "json_response", "read_json", "task_id_of"]

TASK_ID_HEADER = "X-Task-Id"
MAX_TASK_ID_CHARS = 256
# Echoed in a header, so nothing that could end or fold one.
_TASK_ID = re.compile(r"[\x21-\x7e][\x20-\x7e]*")


@dataclass(frozen=True, slots=True)
class ShimState:
    config: ShimConfig
    backend: Backend


STATE = web.AppKey("translane_shim", ShimState)
# Per request: the task id to echo in the X-Task-Id response header.
TASK_ID = web.RequestKey("translane_task_id", str)


async def read_json(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object; 413 past `max_bytes`, 400 when it is not a JSON object."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise _too_large(length, max_bytes)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(None, max_bytes) from None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ShimError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ShimError(400, f"the request body must be a JSON object, got {type(body).__name__}", code="invalid_json")
    return body


def _too_large(length: int | None, max_bytes: int) -> ShimError:
    size = f"{length} bytes" if length is not None else "the body"
    return ShimError(
        413, f"{size} is over the limit of {max_bytes} bytes (TRANSLANE_SHIM_MAX_BODY_BYTES)", code="body_too_large"
    )


def task_id_of(request: web.Request, body: Mapping[str, Any]) -> str:
    """The caller's task id, from the body's `task_id` or else the X-Task-Id header; remembered for the echo."""
    value = body.get("task_id")
    field = "task_id"
    if value is None:
        value = request.headers.get(TASK_ID_HEADER, "")
        field = TASK_ID_HEADER
    if not isinstance(value, str):
        raise ShimError.bad_field(field, "a string", value)
    if value and (len(value) > MAX_TASK_ID_CHARS or not _TASK_ID.fullmatch(value)):
        raise ShimError(
            400,
            f"{field}: must be printable ASCII, at most {MAX_TASK_ID_CHARS} characters",
            code="invalid_value",
            param=field,
        )
    if value:
        request[TASK_ID] = value
    return value


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer, UTF-8 as it is (no \\u escapes)."""
    return web.Response(
        body=json.dumps(data, ensure_ascii=False).encode(), status=status, content_type="application/json"
    )
