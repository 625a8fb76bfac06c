"""Sending the job's lines at batch priority, waiting out overload, writing one answer per line."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import grpc

from translane import tls
from translane.calls import persist, reach_hint
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc
from translane.wire import completion, usage_json

from ._io import Done, open_output, read_done, write_line
from ._lines import Line, LineError, parse_line

__all__ = ["BatchSettings", "BatchSummary", "run_batch"]

# Codes worth another try after a pause; RESOURCE_EXHAUSTED (overload) is waited out without limit.
_RETRY = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL})
_HTTP_OF = {
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 502,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


@dataclass(frozen=True, slots=True)
class BatchSettings:
    grpc_target: str
    input: str
    output: str
    # The target of lines that name none anywhere ("": such a line is an error line, never a guess).
    default_target_language: str = ""
    max_in_flight: int = 256
    # Per call: how long the service may take, queue included (batch work waits behind interactive).
    deadline_s: float = 600.0
    max_attempts: int = 5
    progress: bool | None = None


@dataclass(slots=True)
class BatchSummary:
    lines: int = 0
    answered: int = 0
    skipped: int = 0
    failed: int = 0
    # Lines whose custom_id an earlier line has: not sent (the first few ids, to find them).
    duplicates: int = 0
    duplicate_ids: list[str] = field(default_factory=list)
    segments: int = 0
    cached_segments: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    currency: str = ""
    waits: int = 0
    wall_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    # Paid-for segments per serving model, and the models' RPM (from ListModels) for the rate line.
    served: dict[str, int] = field(default_factory=dict)
    rpm: dict[str, int] = field(default_factory=dict)
    # When lines failed without reaching the service: what to check (calls.reach_hint), said once.
    hint: str = ""

    def _duplicates(self) -> str:
        ids = ", ".join(self.duplicate_ids) + (", ..." if self.duplicates > len(self.duplicate_ids) else "")
        return f"{self.duplicates} duplicate custom_ids skipped" + (f" ({ids})" if ids else "")

    def text(self) -> str:
        rate = self.answered / self.wall_s * 60 if self.wall_s else 0.0
        rates = "; ".join(
            f"{model}: {n / self.wall_s * 60:,.0f} calls/min of its {self.rpm[model]:,} RPM"
            for model, n in sorted(self.served.items())
            if self.wall_s and model in self.rpm
        )
        return (
            f"{self.answered} answered, {self.skipped} already done, {self.failed} failed"
            f"{f' {self.errors}' if self.errors else ''}, {self._duplicates()}; "
            f"{self.segments} segments ({self.cached_segments} from the cache); "
            f"{self.prompt_tokens + self.completion_tokens} tokens, cost {self.cost:.6f} {self.currency}; "
            f"{self.wall_s:.1f}s ({rate:.0f} lines/min), {self.waits} waits for an overloaded service"
            + (f"; {rates}" if rates else "")
        )


def request_of(line: Line) -> pb.TranslateRequest:
    """The Translate call a line makes (its custom_id as the task id, echoed in the answer), at batch priority."""
    return pb.TranslateRequest(
        segments=list(line.segments),
        target_language=line.target_language,
        source_language=line.source_language,
        model=line.model,
        task_id=line.custom_id,
        priority=pb.PRIORITY_BATCH,
        max_output_tokens=line.max_output_tokens,
        allow_truncated=line.max_output_tokens > 0,
    )


def _body(line: Line, resp: pb.TranslateResponse) -> dict[str, Any]:
    truncated = any(t.truncated for t in resp.translations)
    texts = [t.text for t in resp.translations]
    if line.form == "chat" and line.batch is not None:
        content = line.batch.render(texts)
        return completion(resp.requested_model, content, resp.usage, resp.model, truncated, line.stop)
    return {
        "object": "translation",
        "model": resp.requested_model,
        "served_model": resp.model,
        "translations": [
            {"text": t.text, "model": t.model, "cached": t.cached, "truncated": t.truncated} for t in resp.translations
        ],
        "usage": usage_json(resp.usage),
    }


def _ok(line: Line, resp: pb.TranslateResponse) -> dict[str, Any]:
    return {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": line.custom_id,
        "response": {"status_code": 200, "request_id": resp.task_id or line.custom_id, "body": _body(line, resp)},
        "error": None,
    }


def _failed(custom_id: str, status: int, code: str, message: str) -> dict[str, Any]:
    error = {"code": code, "message": message[:500]}
    return {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": "", "body": {"error": error}},
        "error": error,
    }


class _Job:
    def __init__(self, s: BatchSettings, stub: pb_grpc.TranslatorStub, out: IO[str], summary: BatchSummary) -> None:
        self.s, self.stub, self.out, self.summary = s, stub, out, summary
        self.slots = asyncio.Semaphore(s.max_in_flight)
        self.on_done: Callable[[], None] = lambda: None

    def write(self, line: dict[str, Any]) -> None:
        write_line(self.out, line)
        self.on_done()

    async def send(self, line: Line) -> None:
        req = request_of(line)

        def waited() -> None:
            self.summary.waits += 1

        try:
            try:
                # Overload is waited out, never a failed line; a spent daily budget is no overload, and fails.
                resp = await persist(
                    lambda: self.stub.Translate(req, timeout=self.s.deadline_s),
                    _RETRY | {grpc.StatusCode.RESOURCE_EXHAUSTED},
                    self.s.max_attempts,
                    waited,
                )
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                self.summary.failed += 1
                self.summary.errors[code.name] = self.summary.errors.get(code.name, 0) + 1
                self.summary.hint = self.summary.hint or reach_hint(exc, self.s.grpc_target)
                self.write(_failed(line.custom_id, _HTTP_OF.get(code, 500), code.name.lower(), exc.details() or ""))
                return
            self._count(resp)
            self.write(_ok(line, resp))
        finally:
            self.slots.release()

    def _count(self, resp: pb.TranslateResponse) -> None:
        s, u = self.summary, resp.usage
        s.answered += 1
        s.segments += len(resp.translations)
        s.cached_segments += u.cached_segments
        s.prompt_tokens += u.prompt_tokens
        s.completion_tokens += u.completion_tokens
        s.cost += u.cost
        s.currency = s.currency or u.currency
        for t in resp.translations:
            if not t.cached:
                s.served[t.model] = s.served.get(t.model, 0) + 1


def _input_lines(path: str) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            if raw.strip():
                yield number, raw


def _plan(s: BatchSettings, done: Done, summary: BatchSummary) -> list[Line | LineError]:
    """The lines this run sends (or answers with their error), in input order; counted apart: a custom_id the
    output already answers, and a line whose custom_id an earlier line has (the same count on a fresh run and
    on a resume, whether that earlier line was answered now or before)."""
    todo: list[Line | LineError] = []
    seen: set[str] = set()
    for number, raw in _input_lines(s.input):
        summary.lines += 1
        item: Line | LineError
        try:
            item = parse_line(raw, number, s.default_target_language)
        except LineError as exc:
            item = exc
        cid = item.custom_id
        if cid in seen:
            summary.duplicates += 1
            if len(summary.duplicate_ids) < 5:
                summary.duplicate_ids.append(cid)
            continue
        seen.add(cid)
        if cid in done.ids:
            summary.skipped += 1
            continue
        todo.append(item)
    return todo


async def run_batch(s: BatchSettings) -> BatchSummary:
    """Run the job to the end; what the output already answers is skipped."""
    started = time.perf_counter()
    summary = BatchSummary()
    done = read_done(s.output)
    todo = _plan(s, done, summary)
    show = sys.stderr.isatty() if s.progress is None else s.progress
    with open_output(s.output, done) as out:
        async with tls.channel(s.grpc_target, tls=tls.ClientTLS.from_env(), api_key=tls.client_api_key()) as channel:
            job = _Job(s, pb_grpc.TranslatorStub(channel), out, summary)
            # Every line of the plan is written once, answered or failed, and each write ticks: the bar ends full.
            with _progress(show, len(todo), job):
                tasks: list[asyncio.Task[None]] = []
                for item in todo:
                    if isinstance(item, LineError):
                        summary.failed += 1
                        summary.errors["invalid_line"] = summary.errors.get("invalid_line", 0) + 1
                        job.write(_failed(item.custom_id, 400, "invalid_line", item.message))
                        continue
                    await job.slots.acquire()
                    tasks.append(asyncio.create_task(job.send(item)))
                await asyncio.gather(*tasks)
            with contextlib.suppress(grpc.aio.AioRpcError):
                listed = await job.stub.ListModels(pb.ListModelsRequest(), timeout=5)
                summary.rpm = {m.name: m.rpm for m in listed.models}
    summary.wall_s = time.perf_counter() - started
    return summary


@contextlib.contextmanager
def _progress(show: bool, total: int, job: _Job) -> Iterator[None]:
    if not show:
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),  # beside the summary, never on stdout
    ) as bar:
        task = bar.add_task("batch", total=total, stats="")

        def tick() -> None:
            s = job.summary
            tokens = s.prompt_tokens + s.completion_tokens
            bar.update(task, advance=1, stats=f"{tokens} tokens, {s.cost:.4f} {s.currency}, {s.failed} failed")

        job.on_done = tick
        yield
