"""The shim's OpenAPI description: openapi.yaml, shipped beside this module, read once and served as JSON."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import yaml
from aiohttp import web

__all__ = ["OPENAPI_PATH", "openapi_document", "openapi_handler"]

OPENAPI_PATH = "/openapi.json"
_FILE = "openapi.yaml"


@functools.cache
def _encoded() -> bytes:
    text = resources.files(__package__).joinpath(_FILE).read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    if not isinstance(document, dict) or "openapi" not in document:
        raise ValueError(f"gateway_shim/{_FILE}: not an OpenAPI document")
    # Encoded here, so a value JSON cannot hold (a YAML date, say) fails at start, not on a request.
    return json.dumps(document, ensure_ascii=False).encode()


def openapi_document() -> dict[str, Any]:
    """The shim's OpenAPI document, as served at /openapi.json."""
    document: dict[str, Any] = json.loads(_encoded())
    return document


def openapi_handler() -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of GET /openapi.json; the document is read and encoded now, once per process."""
    body = _encoded()

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return openapi
