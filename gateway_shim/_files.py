"""OpenAI Files, /v1/files: what the shim keeps (a batch's input, its output and error files), each its tenant's,
each forgotten when it expires; and what the Files and Batches routes share (the store, 404s, list pages).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from translane.errors import quote, quote_id
from translane.wire import WireError

from ._http import STATE, TENANT, json_response
from ._store import Store, new_id

__all__ = ["BATCHES", "MAX_LINES", "Batches", "expiry", "file_routes", "not_found", "page"]

log = logging.getLogger("translane.shim")

# OpenAI's bounds.
MAX_LINES = 50_000
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 20, 100
MAX_FILENAME_CHARS = 255
# The bounds OpenAI puts on `expires_after.seconds` (an hour to 30 days).
EXPIRY_BOUNDS_S = (3600, 30 * 86400)
# The longest the sweeper sleeps between looks for expired files.
_SWEEP_MAX_S = 60.0
_CHUNK_BYTES = 1 << 16


class Batches:
    """The shim's files and batches (`store`), and what turns them into service calls and back."""

    def __init__(self, store: Store, keep_s: int) -> None:
        self.store = store
        # How long a file is kept when its upload or batch does not say.
        self.keep_s = keep_s
        # One refresh of a batch at a time: its result files are written once.
        self._lock = asyncio.Lock()

    def close(self) -> None:
        self.store.close()

    async def sweep_forever(self) -> None:
        """Forget each file when it expires (an expired file is already a 404; this frees its bytes)."""
        while True:
            try:
                # On the loop, as every use of the store's connection (a few rows and unlinks).
                self.store.sweep()
                due = self.store.next_expiry()
            except (OSError, sqlite3.Error):
                log.exception("expired files could not be removed; trying again")
                due = None
            wait = _SWEEP_MAX_S if due is None else min(_SWEEP_MAX_S, max(0.0, due - self.store.wall()))
            await asyncio.sleep(wait)


BATCHES = web.AppKey("translane_shim_batches", Batches)


def file_routes() -> list[web.RouteDef]:
    """The Files handlers."""
    return [
        web.post("/v1/files", create_file),
        web.get("/v1/files", list_files),
        web.get("/v1/files/{file_id}", retrieve_file),
        web.delete("/v1/files/{file_id}", delete_file),
        web.get("/v1/files/{file_id}/content", file_content),
    ]


def expiry(anchor: Any, seconds: Any, param: str) -> int:
    """An `expires_after` policy's seconds; a 400 naming `param` when it is not one OpenAI accepts."""
    low, high = EXPIRY_BOUNDS_S
    if anchor != "created_at":
        raise WireError.bad_field(f"{param}.anchor", "'created_at' (the one anchor)", anchor)
    if isinstance(seconds, str) and seconds.strip().isdigit():
        seconds = int(seconds)
    elif isinstance(seconds, float) and seconds.is_integer():
        seconds = int(seconds)  # JSON's 7200.0 is the integer 7200
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not low <= seconds <= high:
        raise WireError.bad_field(f"{param}.seconds", f"a whole number of seconds from {low} to {high}", seconds)
    return seconds


def not_found(what: str, ident: str) -> WireError:
    return WireError(404, f"no such {what}: {quote_id(ident)}", kind="not_found_error", code="not_found")


# -- the routes -----------------------------------------------------------------------------------------------------


async def create_file(request: web.Request) -> web.Response:
    """POST /v1/files: multipart `file` and `purpose` ("batch")."""
    batches = request.app[BATCHES]
    store = batches.store
    max_bytes = request.app[STATE].config.max_file_bytes
    if not request.content_type.startswith("multipart/"):
        raise WireError(
            400, "an upload is multipart/form-data with the fields `file` and `purpose`", code="invalid_body"
        )
    file_id = new_id("file-")
    part_path = store.path(file_id + ".part")
    purpose: str | None = None
    expires: dict[str, str] = {}
    filename = ""
    size: int | None = None
    lines = 0
    try:
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "purpose":
                    purpose = (await part.read(decode=False))[:100].decode("utf-8", "replace").strip()
                elif part.name in ("expires_after[anchor]", "expires_after[seconds]"):
                    value = (await part.read(decode=False))[:100].decode("utf-8", "replace").strip()
                    expires[part.name[len("expires_after[") : -1]] = value
                elif part.name == "file" and size is not None:
                    await part.release()  # a form may repeat a field: the first file is the upload
                elif part.name == "file":
                    filename = (part.filename or "file")[:MAX_FILENAME_CHARS]
                    size, lines = await _save_part(part, part_path, max_bytes)
                else:
                    # As OpenAI: an argument not understood is refused, not ignored.
                    named = quote((part.name or "")[:40])
                    raise WireError(
                        400, f"{named}: unknown argument (send file, purpose, expires_after)", code="unknown_field"
                    )
        except WireError:
            raise
        except Exception as exc:
            # aiohttp's multipart reader raises what it meets (ValueError, AssertionError, HTTPException...) on a
            # malformed body: the caller's fault, whatever the type.
            raise WireError(400, f"the multipart body could not be read: {exc}", code="invalid_body") from None
        if size is None:
            raise WireError(400, "file: required (the JSONL file to upload)", param="file", code="missing_field")
        if purpose is None:
            raise WireError(400, 'purpose: required ("batch")', param="purpose", code="missing_field")
        if purpose != "batch":
            raise WireError(
                400,
                f'purpose: the shim keeps only batch inputs ("batch"), got {quote(purpose)}',
                param="purpose",
                code="invalid_value",
            )
        keep_s = expiry(expires.get("anchor"), expires.get("seconds"), "expires_after") if expires else None
        if lines > MAX_LINES:
            raise WireError(
                400, f"file: {lines} lines, over the limit of {MAX_LINES} a batch", param="file", code="too_many_lines"
            )
        part_path.replace(store.path(file_id))
    finally:
        part_path.unlink(missing_ok=True)
    row = store.add_file(file_id, filename, purpose, size, keep_s or batches.keep_s, request.get(TENANT, ""))
    return json_response(row.object())


async def _save_part(part: BodyPartReader, path: Path, max_bytes: int) -> tuple[int, int]:
    """Write the part to `path` as it arrives; its size and line count. 400 past `max_bytes`."""
    size = lines = 0
    last = b"\n"
    out = await asyncio.to_thread(path.open, "wb")
    with out:
        while chunk := await part.read_chunk(_CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                raise WireError(
                    400,
                    f"file: larger than the limit of {max_bytes} bytes a batch input may hold "
                    "(TRANSLANE_SHIM_MAX_FILE_BYTES)",
                    param="file",
                    code="file_too_large",
                )
            lines += chunk.count(b"\n")
            last = chunk[-1:]
            out.write(chunk)
    return size, lines + (last != b"\n")


async def list_files(request: web.Request) -> web.Response:
    """GET /v1/files: newest first, `purpose`, `after`, `limit`."""
    store = request.app[BATCHES].store
    purpose = request.query.get("purpose")
    return json_response(page([f.object() for f in store.files(purpose, request.get(TENANT, ""))], request.query))


async def retrieve_file(request: web.Request) -> web.Response:
    """GET /v1/files/{file_id}."""
    return json_response(_file(request).object())


async def delete_file(request: web.Request) -> web.Response:
    """DELETE /v1/files/{file_id}."""
    row = _file(request)
    request.app[BATCHES].store.delete_file(row.id)
    return json_response({"id": row.id, "object": "file", "deleted": True})


async def file_content(request: web.Request) -> web.StreamResponse:
    """GET /v1/files/{file_id}/content: the bytes as uploaded or written."""
    row = _file(request)
    path = request.app[BATCHES].store.path(row.id)
    return web.FileResponse(path, headers={"Content-Type": "application/jsonl"})


def _file(request: web.Request) -> Any:
    file_id = request.match_info["file_id"]
    row = request.app[BATCHES].store.file(file_id, request.get(TENANT, ""))
    if row is None:
        raise not_found("file", file_id)
    return row


def page(items: list[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """A cursor page of `items` (newest first): those after the id `after`, at most `limit`."""
    raw = query.get("limit", str(LIST_LIMIT_DEFAULT))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise WireError(
            400,
            f"limit: expected an integer from 1 to {LIST_LIMIT_MAX}, got {quote(raw[:40])}",
            param="limit",
            code="invalid_value",
        )
    after = query.get("after")
    if after:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise WireError(
                404,
                f"after: no such object {quote(after[:80])}",
                kind="not_found_error",
                param="after",
                code="not_found",
            )
        items = items[ids.index(after) + 1 :]
    data = items[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(items) > limit,
    }
