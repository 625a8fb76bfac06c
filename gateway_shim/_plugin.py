"""Immersive Translate's custom API, POST /translate, onto one Translate call (its format: translane.wire.plugin)."""

from __future__ import annotations

import time

import grpc
from aiohttp import web
from translane.wire import custom_fields, from_rpc_error, parse_custom, render_custom

from ._http import STATE, json_response, read_json, target_header, task_id_of

__all__ = ["custom_translate"]


async def custom_translate(request: web.Request) -> web.Response:
    """POST /translate: the plugin's custom API onto one Translate call."""
    state = request.app[STATE]
    arrived = time.monotonic()  # one deadline for the whole request: reading the body spends it too
    body = await read_json(request, state.config.max_body_bytes, state.backend.timeout(request.headers, False))
    req = parse_custom(body, state.config.default_target_language, task_id_of(request, body), target_header(request))
    if not req.texts:
        return json_response(render_custom(req, None))
    try:
        resp = await state.backend.translate(req.grpc_request(), request.headers, time.monotonic() - arrived)
    except grpc.aio.AioRpcError as exc:
        # Named as the body has it.
        raise from_rpc_error(exc, custom_fields(body)) from None
    return json_response(render_custom(req, resp))
