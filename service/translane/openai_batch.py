"""OpenAI's Batch API as a model's batch route: calls gathered into upstream batches, each answered by custom_id.

A call on an `openai-batch` route is one line of an upstream batch. The calls of a model that arrive within
`batch_gather_s` of the first (at most `batch_file_max_lines` lines and `batch_file_max_bytes` bytes) become
one JSONL input file (`POST {batch_url}/files`, purpose `batch`; lines `{custom_id, method, url, body}`) and one
batch (`POST {batch_url}/batches`, window 24h), whose status is polled (`batch_poll_min_s`, growing by half each
time to `batch_poll_max_s`) until it ends; then each waiting call is answered from the output file, or failed
from the error file, by its custom_id. A batch that ended without answering a call (expired, failed, cancelled)
fails it with BatchRouteFailed, which the retry layer sends online or lets fail (`batch_when_failed`).

A call whose caller leaves (a cancelled job, a deadline) leaves its batch: its answer, when it comes, is dropped;
a batch every call has left is cancelled upstream (before its upload: never sent). The files are deleted once
read. Closing cancels the batches still running: a replica that stops loses them, and its lines run again
wherever their job goes on (the provider bills what the lost batch had done).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import aiohttp

from .config import ModelConfig, ProviderConfig
from .errors import (
    BatchQuotaSpent,
    BatchRouteFailed,
    ProviderConnectionError,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    provider_error,
)

__all__ = ["ENDPOINT", "OpenAIBatches"]

log = logging.getLogger("translane.batch")

# What every line asks of the batch: OpenAI's chat completions, in its one completion window.
ENDPOINT = "/v1/chat/completions"
WINDOW = "24h"
_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
# Result lines with these error codes are the batch's failure, not the request's.
_BATCH_CODES = frozenset({"batch_expired", "batch_cancelled", "batch_failed"})
_POLL_GROWTH = 1.5
# A batch cancelled on the way out is given this long.
_CANCEL_TIMEOUT_S = 2.0

RaiseFor = Callable[[aiohttp.ClientResponse], Awaitable[None]]


class _Line:
    """One waiting call: its line of the input file, and the future its answer's body arrives on."""

    __slots__ = ("custom_id", "data", "future")

    def __init__(self, custom_id: str, data: bytes, future: asyncio.Future[Any]) -> None:
        self.custom_id = custom_id
        self.data = data
        self.future = future


class _Batch:
    """One upstream batch of one model: the lines gathered, then its input file, its id and how it ended."""

    def __init__(self, model: ModelConfig, url: str) -> None:
        self.model = model
        self.url = url
        self.lines: dict[str, _Line] = {}
        self.bytes = 0
        self.input_file_id = ""
        self.id = ""
        self.timer: asyncio.TimerHandle | None = None
        # Its files upstream (input, output, errors), deleted when it is done with.
        self.files: list[str] = []
        # Set when the last waiting call leaves: the poll stops waiting and cancels the batch.
        self.deserted = asyncio.Event()

    def fits(self, size: int) -> bool:
        m = self.model
        return len(self.lines) < m.batch_file_max_lines and (
            not self.lines or self.bytes + size <= m.batch_file_max_bytes
        )

    def add(self, line: _Line) -> None:
        self.lines[line.custom_id] = line
        self.bytes += len(line.data)
        self.deserted.clear()

    def waiting(self) -> Iterator[_Line]:
        return (line for line in self.lines.values() if not line.future.done())

    def left(self) -> None:
        """A call left (its caller gone): when none waits any more, the batch is deserted."""
        if next(self.waiting(), None) is None:
            self.deserted.set()

    def answer(self, custom_id: str, result: Any | ProviderError) -> None:
        line = self.lines.get(custom_id)
        if line is None or line.future.done():
            return
        if isinstance(result, ProviderError):
            line.future.set_exception(result)
        else:
            line.future.set_result(result)

    def fail(self, exc: ProviderError) -> None:
        """Fail every call still waiting with `exc`."""
        for line in self.waiting():
            line.future.set_exception(exc)


class OpenAIBatches:
    """The upstream batches of every openai-batch route of one upstream client: the one gathering per model, and
    those submitted and polled."""

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        providers: Mapping[str, ProviderConfig],
        raise_for: RaiseFor,
    ) -> None:
        """`session`: the client's open session; `raise_for`: its mapping of an error answer into our errors."""
        self._session = session
        self._providers = providers
        self._raise_for = raise_for
        self._gathering: dict[str, _Batch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # custom_ids unique across this process's batches (and recognisable as this replica's in the files).
        self._prefix = f"tl-{secrets.token_hex(4)}-"
        self._ids = itertools.count(1)
        self._closed = False

    async def call(self, model: ModelConfig, body: Mapping[str, Any], timeout_s: float) -> Any:
        """The answer's body (a chat completion) to the chat request `body`, run as a line of an upstream batch;
        waited for up to `timeout_s`. ProviderError when the line failed, or its batch ended without it."""
        if self._closed:
            raise RuntimeError("the openai-batch route is closed")
        custom_id = f"{self._prefix}{next(self._ids)}"
        data = json.dumps(
            {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}, ensure_ascii=False
        ).encode()
        line = _Line(custom_id, data + b"\n", asyncio.get_running_loop().create_future())
        batch = self._gather(model, line)
        try:
            async with asyncio.timeout(timeout_s):
                return await line.future
        except TimeoutError:
            raise ProviderTimeout(
                f"{model.name}: its upstream batch {batch.id or '(not yet created)'} did not answer within "
                f"{timeout_s:.0f}s (the job's window)"
            ) from None
        finally:
            if not line.future.done():
                line.future.cancel()
            if line.future.cancelled():
                batch.left()

    def _gather(self, model: ModelConfig, line: _Line) -> _Batch:
        """Put `line` in the model's gathering batch (a new one when there is none, or it is full)."""
        batch = self._gathering.get(model.name)
        if batch is not None and not batch.fits(len(line.data)):
            self._submit(batch)
            batch = None
        if batch is None:
            provider = self._providers[model.provider]
            batch = _Batch(model, (model.batch_url or provider.base_url).rstrip("/"))
            self._gathering[model.name] = batch
            batch.timer = asyncio.get_running_loop().call_later(model.batch_gather_s, self._submit, batch)
        batch.add(line)
        if len(batch.lines) >= model.batch_file_max_lines:
            self._submit(batch)
        return batch

    def _submit(self, batch: _Batch) -> None:
        """The gathering is over: the batch goes up."""
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        if self._gathering.get(batch.model.name) is batch:
            del self._gathering[batch.model.name]
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: _Batch) -> None:
        """Send, poll, answer; whatever happens, no call is left waiting."""
        model = batch.model
        try:
            await self._send_and_answer(batch)
        except BatchQuotaSpent as exc:
            batch.fail(exc)
        except ProviderError as exc:
            # The route itself failed (an upload, a batch refused, a poll): its lines may go online
            # (`batch_when_failed`), told where it failed.
            batch.fail(BatchRouteFailed(f"{model.name}: the openai-batch route at {batch.url} failed: {exc.message}"))
        except asyncio.CancelledError:
            batch.fail(ProviderConnectionError(f"{model.name}: the openai-batch route closed"))
            if batch.id:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(_CANCEL_TIMEOUT_S):
                        await self._request(batch, "POST", f"/batches/{batch.id}/cancel")
            raise
        except (aiohttp.ClientError, ValueError) as exc:
            batch.fail(ProviderConnectionError(f"{model.name}: {type(exc).__name__}: {exc}"))
        except TimeoutError:
            batch.fail(ProviderTimeout(f"{model.name}: the batch API did not answer within {model.batch_timeout_s}s"))
        finally:
            batch.fail(BatchRouteFailed(f"{model.name}: upstream batch {batch.id or '(none)'} gave no answer"))
        # Read, or never to be: the provider need not keep them.
        for file_id in batch.files:
            with contextlib.suppress(ProviderError, aiohttp.ClientError, TimeoutError, ValueError):
                await self._request(batch, "DELETE", f"/files/{file_id}")

    async def _send_and_answer(self, batch: _Batch) -> None:
        lines = list(batch.waiting())
        if not lines:
            return  # every caller left while it gathered: nothing is sent
        batch.input_file_id = await self._upload(batch, b"".join(line.data for line in lines))
        batch.files.append(batch.input_file_id)
        created = await self._request(batch, "POST", "/batches", json_body=self._create_body(batch))
        batch.id = str(created.get("id", ""))
        log.info("%s: upstream batch %s of %d lines", batch.model.name, batch.id, len(lines))
        ended = await self._poll(batch)
        if ended is None:
            return
        results = [str(ended[k]) for k in ("output_file_id", "error_file_id") if ended.get(k)]
        batch.files.extend(results)
        for file_id in results:
            self._read_results(batch, await self._content(batch, file_id))
        batch.fail(BatchRouteFailed(self._why(batch, ended), code=str(ended.get("status"))))

    def _create_body(self, batch: _Batch) -> dict[str, Any]:
        return {
            "input_file_id": batch.input_file_id,
            "endpoint": ENDPOINT,
            "completion_window": WINDOW,
            "metadata": {"translane_model": batch.model.name[:512]},
        }

    async def _poll(self, batch: _Batch) -> dict[str, Any] | None:
        """The batch once it has ended, or None when every caller left first (the batch is cancelled then)."""
        model = batch.model
        delay = model.batch_poll_min_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await batch.deserted.wait()
            if batch.deserted.is_set():
                log.info("%s: every line of upstream batch %s left: cancelling it", model.name, batch.id)
                with contextlib.suppress(ProviderError, aiohttp.ClientError, TimeoutError, ValueError):
                    await self._request(batch, "POST", f"/batches/{batch.id}/cancel")
                return None
            try:
                state = await self._request(batch, "GET", f"/batches/{batch.id}")
            except (ProviderError, aiohttp.ClientError, TimeoutError) as exc:
                if isinstance(exc, ProviderError) and not exc.retryable:
                    raise
                # The batch runs on upstream whatever one poll heard: ask again later.
                log.warning("%s: polling upstream batch %s failed (%s); polling on", model.name, batch.id, exc)
            else:
                if state.get("status") in _ENDED:
                    return state
            delay = min(delay * _POLL_GROWTH, model.batch_poll_max_s)

    @staticmethod
    def _why(batch: _Batch, ended: Mapping[str, Any]) -> str:
        status = str(ended.get("status"))
        detail = ""
        errors = ended.get("errors")
        if isinstance(errors, dict) and isinstance(errors.get("data"), list) and errors["data"]:
            first = errors["data"][0]
            if isinstance(first, dict):
                detail = f": {first.get('code', '')} {first.get('message', '')}".rstrip()
        return f"{batch.model.name}: upstream batch {batch.id} {status} without answering the call{detail}"

    @staticmethod
    def _read_results(batch: _Batch, content: bytes) -> None:
        """Answer the waiting calls from a result file (output or error), by custom_id."""
        for raw in content.splitlines():
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(item, dict) or not isinstance(item.get("custom_id"), str):
                continue
            batch.answer(item["custom_id"], _result(batch, item))

    async def _upload(self, batch: _Batch, data: bytes) -> str:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", data, filename="translane-batch.jsonl", content_type="application/jsonl")
        uploaded = await self._request(batch, "POST", "/files", form=form)
        file_id = uploaded.get("id")
        if not isinstance(file_id, str):
            raise ProviderRejected(f"{batch.model.name}: the file upload answered no file id")
        return file_id

    async def _content(self, batch: _Batch, file_id: str) -> bytes:
        async with self._send(batch, "GET", f"/files/{file_id}/content") as resp:
            await self._raise_for(resp)
            content: bytes = await resp.read()
        return content

    async def _request(
        self,
        batch: _Batch,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        form: aiohttp.FormData | None = None,
    ) -> dict[str, Any]:
        async with self._send(batch, method, path, json_body=json_body, form=form) as resp:
            await self._raise_for(resp)
            data = await resp.json(content_type=None)
        if not isinstance(data, dict):
            raise ProviderConnectionError(f"{batch.model.name}: {method} {path} answered no JSON object")
        return data

    def _send(
        self,
        batch: _Batch,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        form: aiohttp.FormData | None = None,
    ) -> Any:
        provider = self._providers[batch.model.provider]
        headers = {"Authorization": f"Bearer {provider.api_key}"} if provider.api_key else {}
        data: Any = form
        if json_body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(json_body, ensure_ascii=False).encode()
        timeout = aiohttp.ClientTimeout(total=batch.model.batch_timeout_s, sock_connect=provider.connect_timeout_s)
        return self._session().request(method, batch.url + path, data=data, headers=headers, timeout=timeout)

    async def aclose(self) -> None:
        """Cancel the batches gathering and running (those running are cancelled upstream too)."""
        self._closed = True
        for batch in list(self._gathering.values()):
            if batch.timer is not None:
                batch.timer.cancel()
            batch.fail(ProviderConnectionError(f"{batch.model.name}: the openai-batch route closed"))
        self._gathering.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _result(batch: _Batch, item: Mapping[str, Any]) -> Any | ProviderError:
    """A result line's answer body (status 200), or the error it carries."""
    response = item.get("response")
    if isinstance(response, dict):
        status = response.get("status_code")
        body = response.get("body")
        if status == 200 and isinstance(body, dict):
            return body
        err = body.get("error") if isinstance(body, dict) else None
        err = err if isinstance(err, dict) else {}
        code = str(err.get("code") or err.get("type") or "")
        message = str(err.get("message") or "the batch's line failed")
        return provider_error(status if isinstance(status, int) else 0, code, message, batch=True)
    error = item.get("error")
    error = error if isinstance(error, dict) else {}
    code = str(error.get("code") or "")
    message = f"{batch.model.name}: upstream batch {batch.id}: {error.get('message') or 'the line failed'}"
    if code in _BATCH_CODES or not code:
        return BatchRouteFailed(message, code=code)
    # The line itself was refused (its url or body, say): sending it again would not help.
    return ProviderRejected(message, status=400, code=code)
