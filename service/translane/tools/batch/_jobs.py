"""`translane batch submit / status / wait / cancel / download / list`: jobs run by the service (BatchTranslate).

The job runs in the service and outlives this command; these are its client through
google.longrunning.Operations. `submit` reads lines as `batch run` does and keeps a local record of
them (`_record`), which `download` needs to answer by custom_id, as `batch run` writes. Requests past
gRPC's default message size go up as a file first (UploadFile, then BatchTranslate's input_file_id), so a
job of 50,000 long lines is one job still.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.longrunning import operations_pb2 as lro
from google.longrunning import operations_pb2_grpc as lro_grpc
from google.protobuf import duration_pb2, json_format

from translane import tls
from translane.calls import persist, report_failure
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ._io import write_line
from ._lines import Line, LineError, parse_line
from ._record import DEFAULT_JOBS_DIR, JobRecordFile, NoRecord, Sent
from ._runner import _HTTP_OF, _failed, _input_lines, _ok, request_of

__all__ = ["add_job_parsers"]

_PREFIX = "operations/"
T = TypeVar("T")
Command = Callable[[argparse.Namespace], Awaitable[int]]
_STATE = pb.BatchTranslateMetadata.State
# google.rpc codes (ints) as grpc's StatusCode, to name a failed line's code as `batch run` does.
_CODES = {code.value[0]: code for code in grpc.StatusCode}
# The service names a failed line by its place in the job ("requests[3].target_language: ..."); the output
# names it by custom_id, and says what `batch run` says ("target_language: ...").
_PLACE = re.compile(r"requests\[[0-9]+\](?:\.|: )")
_MAX_MESSAGE_BYTES = 1 << 30
# Tries of a WaitOperation while the service restarts: pauses of 1, 2, 4, 8, 16, 30, 30 s (calls.persist), 91 s in all.
_RESTART_ATTEMPTS = 8
# How long one WaitOperation call waits before the progress bar is brought up to date.
_POLL_S = 1.0
# Requests past this many bytes go as a file (UploadFile) rather than in the BatchTranslate message: gRPC's
# default bound on a message, so a service (or a proxy) that keeps it takes them too.
_INLINE_MAX_BYTES = 4 << 20
# An upload's chunks carry about this many bytes each.
_CHUNK_BYTES = 1 << 20


class _NoSuchJob(Exception):
    pass


def _name(job: str) -> str:
    """The operation's name, from its name or its bare id."""
    return job if job.startswith(_PREFIX) else _PREFIX + job


def _bare(job: str) -> str:
    return job.removeprefix(_PREFIX)


@contextlib.asynccontextmanager
async def _stubs(target: str) -> AsyncIterator[tuple[pb_grpc.TranslatorStub, lro_grpc.OperationsStub]]:
    # A finished job's Operation carries every line's answer: past gRPC's 4 MB default for a big job.
    options = [("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES)]
    async with tls.channel(
        target, tls=tls.ClientTLS.from_env(), options=options, api_key=tls.client_api_key()
    ) as channel:
        yield pb_grpc.TranslatorStub(channel), lro_grpc.OperationsStub(channel)


def _metadata(op: lro.Operation) -> pb.BatchTranslateMetadata:
    meta = pb.BatchTranslateMetadata()
    op.metadata.Unpack(meta)
    return meta


def _progress_text(meta: pb.BatchTranslateMetadata) -> str:
    u = meta.usage
    return (
        f"{meta.done} done, {meta.failed} failed of {meta.total}; "
        f"{u.total_tokens} tokens, cost {u.cost:.6f} {u.currency}".rstrip()
    )


def _status_line(op: lro.Operation) -> str:
    meta = _metadata(op)
    labels = ",".join(f"{k}={v}" for k, v in sorted(meta.labels.items()))
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(meta.create_time.seconds))
    return (
        f"{op.name}: {_STATE.Name(meta.state)}, {_progress_text(meta)}; window {meta.completion_window}, "
        f"created {created}" + (f", labels {labels}" if labels else "")
    )


async def _call(job: str, call: Awaitable[T]) -> T:
    """Await a call about `job`; NOT_FOUND is `_NoSuchJob`, other failures raise as they came."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise _NoSuchJob(job) from None
        raise


def _labels(pairs: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ValueError(f"--label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


# --- the commands -----------------------------------------------------------------------------------------


async def _submit(args: argparse.Namespace) -> int:
    """Send the input's good lines as one job; print its name; keep the local record download needs."""
    try:
        labels = _labels(args.label)
    except ValueError as exc:
        print(f"translane batch: {exc}", file=sys.stderr)
        return 2
    record = JobRecordFile(args.to, args.input)
    requests: list[pb.TranslateRequest] = []
    seen: set[str] = set()
    refused = duplicates = 0
    for number, raw in _input_lines(args.input):
        try:
            line = parse_line(raw, number, args.to)
        except LineError as exc:
            if exc.custom_id in seen:
                duplicates += 1
                continue
            seen.add(exc.custom_id)
            refused += 1
            print(f"translane batch: not sent: {exc.custom_id}: {exc.message}", file=sys.stderr)
            record.items.append(("refused", _failed(exc.custom_id, 400, "invalid_line", exc.message)))
            continue
        if line.custom_id in seen:
            duplicates += 1
            continue
        seen.add(line.custom_id)
        record.items.append(("sent", Sent(number, raw)))
        requests.append(request_of(line))
    if duplicates:
        print(f"translane batch: {duplicates} duplicate custom_ids skipped", file=sys.stderr)
    if not requests:
        print(
            f"translane batch: nothing to send: none of the {refused} lines of {args.input} is valid", file=sys.stderr
        )
        return 1
    as_file = args.upload == "always" or (
        args.upload == "auto" and sum(r.ByteSize() for r in requests) > _INLINE_MAX_BYTES
    )
    async with _stubs(args.target) as (stub, _):
        if as_file:
            op, how = await _submit_file(stub, requests, args, labels)
        else:
            request = pb.BatchTranslateRequest(requests=requests, completion_window=args.window, labels=labels)
            op, how = await stub.BatchTranslate(request, timeout=args.timeout), "sent"
    path = record.save(args.jobs_dir, _bare(op.name))
    print(op.name)
    print(
        f"translane batch: {len(requests)} lines {how}, {refused} refused (error lines in the download); "
        f"record kept in {path}",
        file=sys.stderr,
    )
    return 0


async def _file_chunks(requests: Sequence[pb.TranslateRequest], filename: str) -> AsyncIterator[pb.FileChunk]:
    """The requests as UploadFile takes them: the file named first, then JSONL in chunks of about _CHUNK_BYTES."""
    yield pb.FileChunk(filename=filename, purpose="batch")
    lines: list[bytes] = []
    size = 0
    for request in requests:
        line = json_format.MessageToJson(request, indent=None).encode() + b"\n"
        lines.append(line)
        size += len(line)
        if size >= _CHUNK_BYTES:
            yield pb.FileChunk(data=b"".join(lines))
            lines, size = [], 0
    if lines:
        yield pb.FileChunk(data=b"".join(lines))


async def _submit_file(
    stub: pb_grpc.TranslatorStub,
    requests: Sequence[pb.TranslateRequest],
    args: argparse.Namespace,
    labels: dict[str, str],
) -> tuple[lro.Operation, str]:
    """Upload the requests as a file and submit the job from it; the file goes once the job has taken its copy."""
    name = Path(args.input).name[:255] or "input.jsonl"
    uploaded = await stub.UploadFile(_file_chunks(requests, name), timeout=args.timeout)
    try:
        request = pb.BatchTranslateRequest(input_file_id=uploaded.id, completion_window=args.window, labels=labels)
        op = await stub.BatchTranslate(request, timeout=args.timeout)
    finally:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub.DeleteFile(pb.DeleteFileRequest(id=uploaded.id), timeout=args.timeout)
    return op, f"sent as a file ({uploaded.size_bytes} bytes uploaded as {uploaded.id})"


async def _status(args: argparse.Namespace) -> int:
    async with _stubs(args.target) as (_, ops):
        op = await _call(args.job, ops.GetOperation(lro.GetOperationRequest(name=_name(args.job))))
    print(_status_line(op))
    return 0


def _ended(op: lro.Operation) -> int:
    """Say how the job ended; 0 when it succeeded."""
    meta = _metadata(op)
    if meta.state == _STATE.SUCCEEDED:
        print(f"{op.name}: SUCCEEDED, {_progress_text(meta)}")
        return 0
    reason = op.error.message if op.HasField("error") else _STATE.Name(meta.state)
    print(f"translane batch: {op.name}: {_STATE.Name(meta.state)}: {reason}", file=sys.stderr)
    return 1


@contextlib.contextmanager
def _bar(show: bool) -> Iterator[Any]:
    """A function that shows a job's progress: a rich bar on stderr, or nothing."""
    if not show:
        yield lambda meta: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("job"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("job", total=None, stats="")

        def show_progress(meta: pb.BatchTranslateMetadata) -> None:
            u = meta.usage
            stats = f"{u.total_tokens} tokens, {u.cost:.4f} {u.currency}, {meta.failed} failed"
            bar.update(task, total=meta.total, completed=meta.done + meta.failed, stats=stats)

        yield show_progress


async def _wait(args: argparse.Namespace) -> int:
    """Wait for the job to end (WaitOperation a second at a time, the bar brought up to date in between)."""
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    poll = duration_pb2.Duration()
    poll.FromTimedelta(timedelta(seconds=_POLL_S))
    show = sys.stderr.isatty() if not args.quiet else False
    async with _stubs(args.target) as (_, ops):
        with _bar(show) as progress:
            # A first look fails at once (no such job, no service there); the waits after it ride through a
            # restart of the service (the job outlives it).
            op = await _call(args.job, ops.GetOperation(lro.GetOperationRequest(name=_name(args.job))))
            request = lro.WaitOperationRequest(name=op.name, timeout=poll)
            progress(_metadata(op))
            while not op.done:
                if deadline is not None and time.monotonic() >= deadline:
                    print(
                        f"translane batch: {op.name}: still running after {args.timeout:g}s: "
                        f"{_progress_text(_metadata(op))}",
                        file=sys.stderr,
                    )
                    return 3
                op = await _call(
                    args.job,
                    persist(
                        lambda: ops.WaitOperation(request, timeout=_POLL_S + 10),
                        {grpc.StatusCode.UNAVAILABLE},
                        _RESTART_ATTEMPTS,
                    ),
                )
                progress(_metadata(op))
    return _ended(op)


async def _cancel(args: argparse.Namespace) -> int:
    name = _name(args.job)
    async with _stubs(args.target) as (_, ops):
        await _call(args.job, ops.CancelOperation(lro.CancelOperationRequest(name=name)))
        op = await _call(args.job, ops.GetOperation(lro.GetOperationRequest(name=name)))
    print(_status_line(op))
    return 0


async def _list(args: argparse.Namespace) -> int:
    token = ""
    async with _stubs(args.target) as (_, ops):
        while True:
            page = await ops.ListOperations(lro.ListOperationsRequest(page_size=200, page_token=token))
            for op in page.operations:
                print(_status_line(op))
            token = page.next_page_token
            if not token:
                return 0


@dataclass(frozen=True, slots=True)
class _Answer:
    ok: bool
    response: pb.TranslateResponse
    code: int
    message: str


def _answers(op: lro.Operation) -> dict[int, _Answer]:
    """The job's answered lines by index: all of them when it succeeded, those answered before the cancel when
    it was cancelled (they ride in the error's details)."""
    answer = pb.BatchTranslateResponse()
    if op.WhichOneof("result") == "response":
        op.response.Unpack(answer)
    else:
        for detail in op.error.details:
            if detail.Is(pb.BatchTranslateResponse.DESCRIPTOR):
                detail.Unpack(answer)
    out: dict[int, _Answer] = {}
    for result in answer.results:
        if result.WhichOneof("result") == "response":
            out[result.index] = _Answer(True, result.response, 0, "")
        else:
            message = _PLACE.sub("", result.error.message, count=1)
            out[result.index] = _Answer(False, pb.TranslateResponse(), result.error.code, message)
    return out


async def _download(args: argparse.Namespace) -> int:
    """The job's answers as OpenAI Batch output lines, in input order, as `batch run` writes them."""
    job_id = _bare(args.job)
    try:
        record = JobRecordFile.load(args.jobs_dir, job_id)
    except NoRecord as exc:
        print(
            f"translane batch: no local record of {_name(args.job)} ({exc}): download runs where submit ran "
            "(or --jobs-dir names the directory submit kept its record in)",
            file=sys.stderr,
        )
        return 1
    async with _stubs(args.target) as (_, ops):
        op = await _call(args.job, ops.GetOperation(lro.GetOperationRequest(name=_name(args.job))))
    meta = _metadata(op)
    if not op.done:
        print(
            f"translane batch: {op.name} is still running ({_progress_text(meta)}): "
            f"`translane batch wait {job_id}` first",
            file=sys.stderr,
        )
        return 1
    cancelled = meta.state == pb.BatchTranslateMetadata.CANCELLED
    if op.WhichOneof("result") != "response" and not cancelled:
        print(f"translane batch: {op.name}: {_STATE.Name(meta.state)}: {op.error.message}; no results", file=sys.stderr)
        return 1
    answers = _answers(op)
    sent = record.sent()
    if len(sent) != meta.total or any(i >= len(sent) for i in answers) or (not cancelled and len(answers) != len(sent)):
        print(
            f"translane batch: {op.name} has {meta.total} lines, its local record names {len(sent)}: "
            "the record is not this job's",
            file=sys.stderr,
        )
        return 1
    failed = _write_output(args.output, record, ((line, answers.get(i)) for i, line in enumerate(sent)))
    print(f"translane batch: {len(record.items)} lines written to {args.output}, {failed} failed", file=sys.stderr)
    if cancelled:
        never = len(sent) - len(answers)
        print(f"translane batch: {op.name} was cancelled: {never} lines never ran (batch_cancelled)", file=sys.stderr)
    return 0


def _write_output(path: str, record: JobRecordFile, answered: Iterator[tuple[Line, _Answer | None]]) -> int:
    """Write every line of the record, in input order (a line a cancelled job never ran: its error line); the
    number of failed lines."""
    failed = 0
    with open(path, "w", encoding="utf-8") as out:
        for kind, item in record.items:
            if kind == "refused":
                failed += 1
                write_line(out, item)
                continue
            line, answer = next(answered)
            if answer is None:
                failed += 1
                never = {"code": "batch_cancelled", "message": "the job was cancelled before this line was answered"}
                write_line(
                    out,
                    {
                        "id": f"batch_req_{uuid.uuid4().hex}",
                        "custom_id": line.custom_id,
                        "response": None,
                        "error": never,
                    },
                )
                continue
            if answer.ok:
                write_line(out, _ok(line, answer.response))
                continue
            failed += 1
            code = _CODES.get(answer.code, grpc.StatusCode.UNKNOWN)
            write_line(out, _failed(line.custom_id, _HTTP_OF.get(code, 500), code.name.lower(), answer.message))
    return failed


def _run(command: Command) -> Command:
    """The command with the one-line answers every job command gives: no such job, service not reached."""

    async def run(args: argparse.Namespace) -> int:
        try:
            return await command(args)
        except _NoSuchJob as exc:
            print(f"translane batch: no such job: {_name(str(exc))}", file=sys.stderr)
            return 1
        except grpc.aio.AioRpcError as exc:
            return report_failure(exc, args.target)

    return run


def add_job_parsers(actions: Any, default_target: str) -> None:
    """Add submit, status, wait, cancel, download and list under `translane batch`."""

    def common(name: str, help: str, job: bool = True) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help)
        if job:
            p.add_argument("job", metavar="ID", help="the job's id, as submit printed it (operations/ID or ID)")
        p.add_argument("--target", default=default_target)
        return p

    submit = common("submit", "send a JSONL file as one job the service runs; prints its id", job=False)
    submit.add_argument("input", help="JSONL: OpenAI Batch lines or {custom_id, text|segments, target_language}")
    submit.add_argument("--to", default="", help="target language of lines that name none anywhere")
    submit.add_argument("--window", default="24h", help="completion window, e.g. 30m, 24h, 7d (default 24h)")
    submit.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="a label (repeatable)")
    submit.add_argument("--timeout", type=float, default=120.0, help="seconds the submission may take")
    submit.add_argument(
        "--upload",
        choices=("auto", "always", "never"),
        default="auto",
        help="send the requests as an uploaded file first: auto (default) when they pass 4 MiB, always, or never",
    )
    submit.add_argument(
        "--jobs-dir", default=DEFAULT_JOBS_DIR, help=f"where the local record is kept (default ./{DEFAULT_JOBS_DIR})"
    )
    submit.set_defaults(func=_run(_submit))

    common("status", "a job's state, counts, tokens and cost").set_defaults(func=_run(_status))

    wait = common("wait", "wait for a job to end, with a progress bar; 0 when it succeeded")
    wait.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (exit 3)")
    wait.add_argument("--quiet", action="store_true", help="no progress bar")
    wait.set_defaults(func=_run(_wait))

    common("cancel", "stop a job: no line starts any more").set_defaults(func=_run(_cancel))

    download = common("download", "a finished job's answers as OpenAI Batch output lines")
    download.add_argument("-o", "--output", required=True, help="JSONL in the OpenAI Batch output format")
    download.add_argument(
        "--jobs-dir", default=DEFAULT_JOBS_DIR, help=f"where submit kept its record (default ./{DEFAULT_JOBS_DIR})"
    )
    download.set_defaults(func=_run(_download))

    common("list", "every job the service knows, oldest first", job=False).set_defaults(func=_run(_list))
