"""Translating files through the service: resumable per file, leaks repaired, the rest left for a person."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from translane import tls
from translane.calls import persist
from translane.tasks import all_or_first_failure
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ._doc import CUTTING, FORMATS, Doc, FormatError, load
from ._leaks import Leak, LeakChecker
from ._protect import restore
from ._review import ApplyReport, apply_review, doc_texts, entries_for, merge_review, protected, write_file
from ._state import KnownLeak, State, state_path

__all__ = [
    "ApplyReport",
    "CheckReport",
    "FileSettings",
    "FileSummary",
    "apply_review",
    "check_file",
    "output_path",
    "state_path",
    "translate_files",
]

# A call that fails for a passing reason (a service restarting) is tried this many times.
MAX_ATTEMPTS = 5
_TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True, slots=True)
class FileSettings:
    grpc_target: str
    target_language: str
    source_language: str = ""
    model: str = ""
    out_dir: str = ""
    # One input's output file, named by -o (out_dir is then "").
    out_file: str = ""
    recursive: bool = False
    keys: tuple[str, ...] = ()
    preset: str = ""
    # Segments per Translate call, and calls in flight.
    batch_size: int = 16
    max_in_flight: int = 32
    # Each leak is asked for again this many times at most: past the cache, then along the model's fallbacks.
    repair_attempts: int = 2
    review: str = ""
    deadline_s: float = 600.0
    # A progress bar per file and overall: None = when stderr is a terminal.
    progress: bool | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_in_flight"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)!r}")
        if self.repair_attempts < 0:
            raise ValueError(f"repair_attempts: must be >= 0, got {self.repair_attempts!r}")


@dataclass(slots=True)
class FileSummary:
    path: str
    output: str
    segments: int = 0
    sent: int = 0
    resumed: int = 0
    cached: int = 0
    tokens: int = 0
    cost: float = 0.0
    # Leaks found (this run's and those an earlier run had found: `leaks_resumed`), repaired in this run, left.
    leaks_found: int = 0
    leaks_resumed: int = 0
    leaks_repaired: int = 0
    leaks_left: int = 0
    skipped: bool = False
    # How the file was cut, for a person (values kept as identifiers, ...).
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        if self.skipped:
            return f"{self.path}: already translated ({self.output}; delete it to translate again)"
        resumed = f" ({self.leaks_resumed} found before)" if self.leaks_resumed else ""
        return "".join(f"{self.path}: {note}\n" for note in self.notes) + (
            f"{self.path} -> {self.output}: {self.segments} segments ({self.resumed} resumed, {self.cached} cached), "
            f"{self.tokens} tokens, cost {self.cost:.6f}; leaks {self.leaks_found} found{resumed}, "
            f"{self.leaks_repaired} repaired, {self.leaks_left} left for review"
        )


def output_path(source: Path, root: Path | None, s: FileSettings) -> Path:
    """The file -o names; or beside the input with a language suffix (book.md → book.zh.md); or mirrored under
    out_dir."""
    if s.out_file:
        return Path(s.out_file)
    name = f"{source.stem}.{s.target_language}{source.suffix}"
    if not s.out_dir:
        return source.with_name(name)
    relative = source.parent.relative_to(root) if root is not None else Path()
    return Path(s.out_dir) / relative / name


def _inputs(paths: list[str], s: FileSettings) -> Iterator[tuple[Path, Path | None]]:
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            pattern = "**/*" if s.recursive else "*"
            for f in sorted(p.glob(pattern)):
                lang_suffixed = len(f.suffixes) > 1 and f.suffixes[-2] == f".{s.target_language}"
                if f.is_file() and f.suffix.lower() in FORMATS and not lang_suffixed:
                    yield f, p
        else:
            yield p, None


class _Sender:
    """Translate calls at batch priority: overload waited out, answers in segment order."""

    def __init__(self, stub: pb_grpc.TranslatorStub, s: FileSettings) -> None:
        self.stub, self.s = stub, s
        self.slots = asyncio.Semaphore(s.max_in_flight)

    async def translate(self, texts: list[str], *, model: str = "", fresh: bool = False) -> pb.TranslateResponse:
        req = pb.TranslateRequest(
            segments=texts,
            target_language=self.s.target_language,
            source_language=self.s.source_language,
            model=model or self.s.model,
            priority=pb.PRIORITY_BATCH,
            no_cache=fresh,
        )
        async with self.slots:
            # A restarting service is tried again; overload is waited out as it asks.
            resp: pb.TranslateResponse = await persist(
                lambda: self.stub.Translate(req, timeout=self.s.deadline_s), _TRANSIENT, MAX_ATTEMPTS
            )
            return resp


def _digest(source: Path, s: FileSettings) -> str:
    h = hashlib.sha256(source.read_bytes())
    h.update(json.dumps([s.keys, s.preset, s.target_language, s.source_language, s.model, CUTTING]).encode())
    return h.hexdigest()


class _Bars:
    """On a terminal (rich): a bar for all files, one for the file being translated, and one for its repairs
    once leaks are asked for again (so the file's bar at 100% never hides repairs still running)."""

    def __init__(self, show: bool | None, files: int, console: Any = None) -> None:
        self.progress: Any = None
        if sys.stderr.isatty() if show is None else show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
            )
            self.progress.start()
            self.overall = self.progress.add_task("all files", total=files)

    def file(self, name: str, segments: int) -> Callable[[int], None]:
        """The advance of a file's bar, by segments answered."""
        if self.progress is None:
            return lambda n: None
        task = self.progress.add_task(name, total=max(1, segments))
        return lambda n: self.progress.update(task, advance=n)

    def repairs(self, name: str) -> Callable[[int, int], None]:
        """(more to repair, repaired) for a file's repairs bar, made when the first repair is due."""
        if self.progress is None:
            return lambda more, done: None
        task: list[Any] = []
        total = 0

        def update(more: int, done: int) -> None:
            nonlocal total
            if not task:
                task.append(self.progress.add_task(f"repairs: {name}", total=0))
            total += more
            self.progress.update(task[0], total=total, advance=done)

        return update

    def file_done(self) -> None:
        if self.progress is not None:
            self.progress.update(self.overall, advance=1)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@dataclass(slots=True)
class _Job:
    """One file's translation: the document, its state on disk, and what reports on it."""

    doc: Doc
    state: State
    summary: FileSummary
    advance: Callable[[int], None]
    repairs: Callable[[int, int], None]
    runs: list[tuple[str, list[str]]] = field(default_factory=list)


async def _translate_doc(job: _Job, sender: _Sender, checker: LeakChecker, fallbacks: list[str]) -> None:
    """Translate what the state lacks, then repair the leaks; everything found is in the state as it happens."""
    doc, state, summary = job.doc, job.state, job.summary
    runs = job.runs = protected(doc)
    pending: dict[str, list[int]] = {}
    for seg, (masked, _) in zip(doc.segments, runs, strict=True):
        if seg.index in state.texts or seg.index in state.leaks:
            summary.resumed += 1
        else:
            pending.setdefault(masked, []).append(seg.index)
    summary.leaks_found = summary.leaks_resumed = len(state.leaks)

    def judge(index: int, answer: str, repairs: int) -> bool:
        """Keep an answer (as the model gave it, placeholders and all) as the translation or as a leak."""
        masked, kept = runs[index]
        text, lost = restore(answer, kept)
        leak = checker.check(index, masked, answer, len(lost))
        if leak is None:
            state.add(index, text)
            return True
        state.leak(index, KnownLeak(leak.reason, answer, repairs))
        return False

    def account(resp: pb.TranslateResponse) -> None:
        summary.tokens += resp.usage.total_tokens
        summary.cost += resp.usage.cost
        summary.cached += resp.usage.cached_segments

    size = sender.s.batch_size
    texts = list(pending)

    async def first(group: list[str]) -> None:
        resp = await sender.translate(group)
        account(resp)
        summary.sent += len(group)
        job.advance(sum(len(pending[m]) for m in group))
        for masked, t in zip(group, resp.translations, strict=True):
            for index in pending[masked]:
                if not judge(index, t.text, 0):
                    summary.leaks_found += 1

    await all_or_first_failure([first(texts[i : i + size]) for i in range(0, len(texts), size)])

    async def repair(group: list[str], due: dict[str, list[int]], model: str, attempt: int) -> None:
        resp = await sender.translate(group, model=model, fresh=True)
        account(resp)
        for masked, t in zip(group, resp.translations, strict=True):
            for index in due[masked]:
                if judge(index, t.text, attempt + 1):
                    summary.leaks_repaired += 1
        job.repairs(0, sum(len(due[m]) for m in group))

    # Repair: another attempt past the cache, then along the model's fallbacks. A leak carries how many
    # attempts it had, so a resumed run goes on from there.
    for attempt, model in enumerate(["", *fallbacks][: sender.s.repair_attempts]):
        due: dict[str, list[int]] = {}
        for index in sorted(i for i, leak in state.leaks.items() if leak.repairs == attempt):
            due.setdefault(runs[index][0], []).append(index)
        if not due:
            continue
        job.repairs(sum(map(len, due.values())), 0)
        texts = list(due)
        await all_or_first_failure(
            [repair(texts[i : i + size], due, model, attempt) for i in range(0, len(texts), size)]
        )
    summary.leaks_left = len(state.leaks)


def _finished(output: Path, source: Path) -> bool:
    """Translated by an earlier run, with nothing left to resume or apply (its state is gone), and not older
    than its source."""
    if state_path(output).exists() or not output.exists():
        return False
    return output.stat().st_mtime_ns > source.stat().st_mtime_ns


async def translate_files(
    paths: list[str], s: FileSettings, *, bars: _Bars | None = None
) -> tuple[list[FileSummary], list[dict[str, Any]]]:
    """Translate every file; return the summaries and what the review file (s.review) now holds.

    A file's state stays beside its output while the run is unfinished (for a resume) or leaves leaks for
    review (for `apply`); a file translated whole has none left behind.
    """
    summaries: list[FileSummary] = []
    review: list[dict[str, Any]] = []
    outputs: list[str] = []
    checker = LeakChecker(s.target_language, s.source_language)
    cut = (s.target_language, s.source_language, s.keys, s.preset)
    async with tls.channel(s.grpc_target, tls=tls.ClientTLS.from_env(), api_key=tls.client_api_key()) as channel:
        stub = pb_grpc.TranslatorStub(channel)
        listed = await stub.ListModels(pb.ListModelsRequest(), timeout=10)
        chosen = s.model or listed.default_model
        fallbacks = next((list(m.fallbacks) for m in listed.models if m.name == chosen), [])
        sender = _Sender(stub, s)
        sources = list(_inputs(paths, s))
        bar = bars if bars is not None else _Bars(s.progress, len(sources))
        produced: dict[Path, Path] = {}
        try:
            for source, root in sources:
                output = output_path(source, root, s)
                if output in produced:
                    raise FormatError(f"{source} and {produced[output]} would both be written to {output}: rename one")
                produced[output] = source
                summary = FileSummary(str(source), str(output))
                summaries.append(summary)
                if _finished(output, source):
                    summary.skipped = True
                    outputs.append(str(output))
                    bar.file_done()
                    continue
                state = State(state_path(output), _digest(source, s))
                try:
                    doc = load(str(source), s.keys, s.preset)
                    doc.target_language = s.target_language
                    if state.done and output.exists():
                        # Finished, with leaks left for review: nothing to send; its entries are made again.
                        summary.skipped = True
                        review.extend(entries_for(doc, output, state, protected(doc), cut))
                        outputs.append(str(output))
                        if not state.leaks:
                            state.remove()  # left by an older version after a whole translation
                        continue
                    summary.segments = len(doc.segments)
                    summary.notes = doc.notes
                    done = len(state.texts) + len(state.leaks)
                    job = _Job(
                        doc, state, summary, bar.file(source.name, len(doc.segments) - done), bar.repairs(source.name)
                    )
                    await _translate_doc(job, sender, checker, fallbacks)
                    write_file(output, doc.output(doc_texts(state, job.runs)))
                    state.finish()
                    review.extend(entries_for(doc, output, state, job.runs, cut))
                    outputs.append(str(output))
                finally:
                    state.close()
                    bar.file_done()
                if not state.leaks:
                    state.remove()  # translated whole: nothing to resume, nothing to apply
        finally:
            bar.close()
            # Even when a file fails or the run is stopped: what the finished files left for review is kept.
            if s.review:
                review = merge_review(Path(s.review), outputs, review)
    return summaries, review


@dataclass(slots=True)
class CheckReport:
    path: str
    segments: int
    leaks: list[Leak] = field(default_factory=list)
    # The file this one was translated from, when compared segment by segment; or why it could not be.
    compared: str = ""
    note: str = ""


def check_file(
    path: str, target: str, keys: tuple[str, ...] = (), preset: str = "", source: str = "", original: str = ""
) -> CheckReport:
    """The leak check alone, on any translated file, by the rules `translate` applies to an answer.

    Alone, each segment is judged by its language (inline code, link targets, URLs and tags set aside).
    Given the `original` it was translated from, and cut into as many segments, each is judged against its
    original as `translate` judged it (a phrase left as it was, a placeholder lost), so both count the same.
    """
    doc = load(path, keys, preset)
    checker = LeakChecker(target, source)
    report = CheckReport(path, len(doc.segments))
    before: list[tuple[str, list[str]]] = []
    if original:
        src = load(original, keys, preset)
        if len(src.segments) == len(doc.segments):
            before, report.compared = protected(src), original
        else:
            report.note = f"{original} has {len(src.segments)} segments, this file {len(doc.segments)}: judged alone"
    for seg, (masked, _) in zip(doc.segments, protected(doc), strict=True):
        if before:
            leak = checker.check(seg.index, before[seg.index][0], masked)
            reason = None if leak is None else leak.reason
        else:
            reason = checker.foreign(masked)
        if reason is not None:
            report.leaks.append(Leak(seg.index, f"{seg.where}: {reason}"))
    return report
