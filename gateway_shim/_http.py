"""HTTP plumbing the handlers share: the app's state, JSON bodies within the size limit, task ids, JSON answers."""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from translane.contract import MAX_TASK_ID_CHARS, task_id_problem
from translane.errors import quote
from translane.wire import WireError, resolve

from ._backend import Backend
from ._config import ShimConfig

__all__ = [
    "CLIENT_GONE",
    "IS_ADMIN",
    "STATE",
    "TARGET_HEADER",
    "TASK_ID",
    "TASK_ID_HEADER",
    "TENANT",
    "ShimState",
    "json_response",
    "read_json",
    "target_header",
    "task_id_of",
]

# Per request, as authentication found it: the caller's tenant, and whether it is an admin (who may read every
# tenant's usage). Unset (no tenants file): the default tenant "", whose usage, files and batches are all there are.
TENANT = web.RequestKey("translane_tenant", str)
IS_ADMIN = web.RequestKey("translane_usage_admin", bool)

TASK_ID_HEADER = "X-Task-Id"
# The service's rule (translane.contract), and ASCII on top: the shim echoes it in a header.
_ASCII_TASK_ID = re.compile(r"[\x21-\x7e][\x20-\x7e]*")
# Nesting a body may have: far past any OpenAI request, well short of the stack that would-be
# error messages and encoders recurse on.
MAX_JSON_DEPTH = 64
# Decoded as strict UTF-8, a body can hold a lone UTF-16 surrogate only through an escape such as
# "\ud800" (which JSON allows and Python decodes); only a body with one is searched for it.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Characters of a field path an error names: a key is the caller's and can be of any length.
_PATH_CHARS = 120


@dataclass(frozen=True, slots=True)
class ShimState:
    config: ShimConfig
    backend: Backend


STATE = web.AppKey("translane_shim", ShimState)
# Per request: the task id to echo in the X-Task-Id response header.
TASK_ID = web.RequestKey("translane_task_id", str)
# Per request: the client hung up after the response began (a stream cut short); counted as 499.
CLIENT_GONE = web.RequestKey("translane_client_gone", bool)


async def read_json(request: web.Request, max_bytes: int, timeout_s: float) -> dict[str, Any]:
    """The request body as a JSON object; 413 past `max_bytes`, 408 when it has not arrived in `timeout_s`;
    400 when it does not decompress, is not a JSON object in UTF-8, nests past MAX_JSON_DEPTH, or holds a
    string that is not Unicode text."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise _too_large(length, max_bytes)
    encoding = request.headers.get("Content-Encoding", "")
    try:
        # Bounded: a body that stalls (or that aiohttp's parser gave up on without telling the reader,
        # as with a deflate stream that never ends) must not hold the request forever.
        async with asyncio.timeout(timeout_s):
            raw = await request.read()
    except TimeoutError:
        decoded = f" (or did not decode as its Content-Encoding {quote(encoding)} says)" if encoding else ""
        raise WireError(
            408, f"the request body did not arrive within {timeout_s:g} s{decoded}", code="request_timeout"
        ) from None
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(None, max_bytes) from None
    except web.RequestPayloadError:
        # Cut off mid-body.
        raise WireError(400, "the request body ended before its declared length", code="invalid_body") from None
    raw = _decompressed(raw, encoding, max_bytes)
    try:
        # JSON between systems is UTF-8 (RFC 8259): strictly, so no surrogate arrives undeclared.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WireError(
            400, f"the request body is not UTF-8 text: {exc.reason} at byte {exc.start}", code="invalid_json"
        ) from None
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise WireError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(body, dict):
        raise WireError(400, f"the request body must be a JSON object, got {type(body).__name__}", code="invalid_json")
    _check_tree(body, check_text=_SURROGATE_ESCAPE.search(text) is not None)
    return body


def _decompressed(raw: bytes, encoding: str, max_bytes: int) -> bytes:
    """The body as its Content-Encoding says; 413 when it inflates past `max_bytes`, 400 when it does not inflate.

    The shim's server does not decompress (auto_decompress=False): aiohttp's parser would answer a stream
    that never ends with its own plain-text 400 before any handler runs, and bounds only the compressed size.
    """
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return raw
    if name in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif name == "deflate":
        # RFC 9110 says zlib-wrapped; some clients send raw deflate. The zlib header tells them apart.
        zlib_header = len(raw) >= 2 and raw[0] & 0x0F == 8 and (raw[0] << 8 | raw[1]) % 31 == 0
        wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
    else:
        raise WireError(
            415,
            f"Content-Encoding {quote(encoding)} is not supported (gzip, deflate or identity)",
            code="unsupported_encoding",
        )
    inflater = zlib.decompressobj(wbits)
    try:
        body = inflater.decompress(raw, max_bytes + 1)
    except zlib.error:
        raise WireError(
            400,
            f"the request body does not decompress as its Content-Encoding {quote(encoding)} says",
            code="invalid_body",
        ) from None
    if len(body) > max_bytes:
        raise _too_large(None, max_bytes)
    if not inflater.eof or inflater.unused_data:
        fault = "does not end" if not inflater.eof else "has bytes after its end"
        raise WireError(400, f"the request body's {quote(encoding)} stream {fault}", code="invalid_body")
    return body


def _check_tree(body: dict[str, Any], check_text: bool) -> None:
    """400 for a body nested past MAX_JSON_DEPTH or (with `check_text`) holding a string that is not Unicode text.

    Walked without recursion, over containers (and strings when they are checked); what passes can be read,
    echoed and encoded without failing.
    """
    stack: list[tuple[str, dict[str, Any] | list[Any], int]] = [("", body, 1)]
    while stack:
        path, container, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        named = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in named:
            # Keys first: a path is made of keys, so no error below names one that cannot be encoded.
            if check_text and isinstance(key, str) and _SURROGATE.search(key):
                raise _not_text(path, key, "a key")
            if isinstance(value, dict | list):
                stack.append((_child(path, key), value, depth + 1))
            elif check_text and isinstance(value, str) and _SURROGATE.search(value):
                raise _not_text(_child(path, key), value, "the string")


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _not_text(path: str, text: str, what: str) -> WireError:
    bad = _SURROGATE.search(text)
    assert bad is not None
    field = path if len(path) <= _PATH_CHARS else path[: _PATH_CHARS - 3] + "..."
    return WireError(
        400,
        f"{field or 'body'}: {what} is not Unicode text: it holds a lone UTF-16 surrogate "
        f"(\\u{ord(bad.group()):04x}) at character {bad.start()}",
        code="invalid_value",
        param=field or None,
    )


def _too_deep() -> WireError:
    return WireError(400, f"the request body nests deeper than {MAX_JSON_DEPTH} levels", code="invalid_json")


def _too_large(length: int | None, max_bytes: int) -> WireError:
    size = f"{length} bytes" if length is not None else "the body"
    return WireError(
        413, f"{size} is over the limit of {max_bytes} bytes (TRANSLANE_SHIM_MAX_BODY_BYTES)", code="body_too_large"
    )


TARGET_HEADER = "X-Target-Language"


# Longer than any language code or name the shim reads.
MAX_TARGET_HEADER_CHARS = 64


def target_header(request: web.Request) -> str:
    """The target language the X-Target-Language header names, as our code ("" when absent); checked whenever
    given, though a body field wins over it."""
    value = request.headers.get(TARGET_HEADER, "").strip()
    if not value:
        return ""
    code = resolve(value) if len(value) <= MAX_TARGET_HEADER_CHARS else None
    if code is None:
        raise WireError(
            400,
            f"{TARGET_HEADER}: expected a language code such as 'ja' or 'zh-TW', or a name such as 'Japanese'; "
            f"got {quote(value)}",
            param=TARGET_HEADER,
            code="unknown_language",
        )
    return code


def task_id_of(request: web.Request, body: Mapping[str, Any]) -> str:
    """The caller's task id, from the body's `task_id` or else the X-Task-Id header (both checked when both are
    given); remembered for the echo."""
    header = _task_id(TASK_ID_HEADER, request.headers.get(TASK_ID_HEADER, ""))
    given = body.get("task_id")
    value = header if given is None else _task_id("task_id", given)
    if value:
        request[TASK_ID] = value
    return value


def _task_id(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise WireError.bad_field(field, "a string", value)
    if value and (task_id_problem(value) or not _ASCII_TASK_ID.fullmatch(value)):
        raise WireError(
            400,
            f"{field}: must be printable ASCII, at most {MAX_TASK_ID_CHARS} characters",
            code="invalid_value",
            param=field,
        )
    return value


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer, UTF-8 as it is (no \\u escapes)."""
    return web.Response(
        body=json.dumps(data, ensure_ascii=False).encode(), status=status, content_type="application/json"
    )
