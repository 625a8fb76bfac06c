"""Translating files through the service: resumable per file, leaks repaired, the rest left for a person."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
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
from ._protect import protect, restore

__all__ = ["FileSettings", "FileSummary", "apply_review", "check_file", "output_path", "state_path", "translate_files"]

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
    repair_attempts: int = 2
    review: str = ""
    deadline_s: float = 600.0
    # A progress bar per file and overall: None = when stderr is a terminal.
    progress: bool | None = None


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
    leaks_found: int = 0
    leaks_repaired: int = 0
    leaks_left: int = 0
    skipped: bool = False
    # How the file was cut, for a person (values kept as identifiers, ...).
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        if self.skipped:
            return f"{self.path}: already translated ({self.output})"
        return "".join(f"{self.path}: {note}\n" for note in self.notes) + (
            f"{self.path} -> {self.output}: {self.segments} segments ({self.resumed} resumed, {self.cached} cached), "
            f"{self.tokens} tokens, cost {self.cost:.6f}; leaks {self.leaks_found} found, "
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


def state_path(output: Path) -> Path:
    return output.with_name(output.name + ".translane-state.jsonl")


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


class _State:
    """A file's translated segments so far, one flushed JSON line each; `done` once the output is written.

    The first line records a digest of the source and the settings that cut it into segments: a
    source edited since (or cut another way) starts afresh, never with translations in the wrong place.
    """

    def __init__(self, path: Path, source_digest: str) -> None:
        self.path = path
        self.texts: dict[int, str] = {}
        self.done = False
        fresh = True
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            first = _json_line(lines[0]) if lines else None
            if first is not None and first.get("source") == source_digest:
                fresh = False
                for line in lines[1:]:
                    item = _json_line(line)
                    if item is None:
                        break  # a torn last line: everything before it stands
                    if item.get("done"):
                        self.done = True
                    elif "i" in item:
                        self.texts[int(item["i"])] = str(item["text"])
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out = path.open("w" if fresh else "a", encoding="utf-8")
        if fresh:
            self._out.write(json.dumps({"source": source_digest}) + "\n")
            self._out.flush()

    def add(self, index: int, text: str) -> None:
        self.texts[index] = text
        self._out.write(json.dumps({"i": index, "text": text}, ensure_ascii=False) + "\n")
        self._out.flush()

    def finish(self) -> None:
        self._out.write('{"done": true}\n')
        self._out.flush()
        os.fsync(self._out.fileno())

    def close(self) -> None:
        self._out.close()


class _Sender:
    """Translate calls at batch priority: overload waited out, answers in segment order."""

    def __init__(self, stub: pb_grpc.TranslatorStub, s: FileSettings) -> None:
        self.stub, self.s = stub, s
        self.slots = asyncio.Semaphore(s.max_in_flight)
        self.advance: Callable[[int], None] = lambda n: None

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


def _json_line(line: str) -> dict[str, Any] | None:
    try:
        item = json.loads(line)
    except ValueError:
        return None
    return item if isinstance(item, dict) else None


def _digest(source: Path, s: FileSettings) -> str:
    h = hashlib.sha256(source.read_bytes())
    h.update(json.dumps([s.keys, s.preset, s.target_language, s.source_language, s.model, CUTTING]).encode())
    return h.hexdigest()


async def _translate_doc(
    doc: Doc, state: _State, sender: _Sender, checker: LeakChecker, fallbacks: list[str], summary: FileSummary
) -> list[dict[str, Any]]:
    """Translate what the state lacks, repair leaks; return review entries for what is left."""
    kind = "html" if doc.kind == "epub" else doc.kind
    protected = [protect(seg.text, kind) for seg in doc.segments]
    pending: dict[str, list[int]] = {}
    for seg, (masked, _) in zip(doc.segments, protected, strict=True):
        if seg.index in state.texts:
            summary.resumed += 1
        else:
            pending.setdefault(masked, []).append(seg.index)

    def accept(index: int, resp_text: str) -> Leak | None:
        text, lost = restore(resp_text, protected[index][1])
        leak = checker.check(index, doc.segments[index].text, text, len(lost))
        if leak is None:
            state.add(index, text)
        return leak

    def account(resp: pb.TranslateResponse) -> None:
        summary.tokens += resp.usage.total_tokens
        summary.cost += resp.usage.cost
        summary.cached += resp.usage.cached_segments

    leaks: dict[int, tuple[Leak, str]] = {}
    texts = list(pending)
    groups = [texts[i : i + sender.s.batch_size] for i in range(0, len(texts), sender.s.batch_size)]

    async def one(group: list[str]) -> None:
        resp = await sender.translate(group)
        account(resp)
        summary.sent += len(group)
        sender.advance(sum(len(pending[m]) for m in group))
        for masked, t in zip(group, resp.translations, strict=True):
            for index in pending[masked]:
                leak = accept(index, t.text)
                if leak is not None:
                    leaks[index] = (leak, t.text)

    await all_or_first_failure([one(g) for g in groups])
    summary.leaks_found = len(leaks)
    # Repair: another attempt past the cache, then along the model's fallbacks.
    attempts: list[str] = ["", *fallbacks][: sender.s.repair_attempts]
    for model in attempts:
        if not leaks:
            break
        indexes = sorted(leaks)
        for group_start in range(0, len(indexes), sender.s.batch_size):
            chunk = indexes[group_start : group_start + sender.s.batch_size]
            resp = await sender.translate([protected[i][0] for i in chunk], model=model, fresh=True)
            account(resp)
            for index, t in zip(chunk, resp.translations, strict=True):
                leak = accept(index, t.text)
                if leak is None:
                    del leaks[index]
                    summary.leaks_repaired += 1
                else:
                    leaks[index] = (leak, t.text)
    summary.leaks_left = len(leaks)
    return [
        {
            "source": doc.path,
            "index": index,
            "where": doc.segments[index].where,
            "reason": leak.reason,
            "original": doc.segments[index].text,
            "machine": restore(machine, protected[index][1])[0],
            "target_language": doc.target_language,
            # How the file was cut into segments, so `apply` finds the same ones.
            "keys": list(sender.s.keys),
            "preset": sender.s.preset,
            "translation": "",
        }
        for index, (leak, machine) in sorted(leaks.items())
    ]


class _Bars:
    """A bar for the file being translated and one for all files (rich), or nothing when not a terminal."""

    def __init__(self, show: bool | None, files: int) -> None:
        self.progress: Any = None
        if sys.stderr.isatty() if show is None else show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
            )
            self.progress.start()
            self.overall = self.progress.add_task("all files", total=files)
        self.task: Any = None

    def file(self, name: str, segments: int) -> Callable[[int], None]:
        if self.progress is None:
            return lambda n: None
        self.task = self.progress.add_task(name, total=max(1, segments))
        return lambda n: self.progress.update(self.task, advance=n)

    def file_done(self) -> None:
        if self.progress is not None:
            self.progress.update(self.overall, advance=1)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _write(path: Path, data: bytes) -> None:
    """Write whole or not at all: a temporary file renamed over the output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


async def translate_files(paths: list[str], s: FileSettings) -> tuple[list[FileSummary], list[dict[str, Any]]]:
    """Translate every file; return the summaries and the review entries (also written to s.review)."""
    summaries: list[FileSummary] = []
    review: list[dict[str, Any]] = []
    checker = LeakChecker(s.target_language, s.source_language)
    async with tls.channel(s.grpc_target, tls=tls.ClientTLS.from_env()) as channel:
        stub = pb_grpc.TranslatorStub(channel)
        listed = await stub.ListModels(pb.ListModelsRequest(), timeout=10)
        chosen = s.model or listed.default_model
        fallbacks = next((list(m.fallbacks) for m in listed.models if m.name == chosen), [])
        sender = _Sender(stub, s)
        sources = list(_inputs(paths, s))
        bar = _Bars(s.progress, len(sources))
        produced: dict[Path, Path] = {}
        for source, root in sources:
            output = output_path(source, root, s)
            if output in produced:
                raise FormatError(f"{source} and {produced[output]} would both be written to {output}: rename one")
            produced[output] = source
            summary = FileSummary(str(source), str(output))
            summaries.append(summary)
            state = _State(state_path(output), _digest(source, s))
            try:
                if state.done and output.exists():
                    summary.skipped = True
                    continue
                doc = load(str(source), s.keys, s.preset)
                doc.target_language = s.target_language
                summary.segments = len(doc.segments)
                summary.notes = doc.notes
                sender.advance = bar.file(source.name, len(doc.segments) - len(state.texts))
                entries = await _translate_doc(doc, state, sender, checker, fallbacks, summary)
                for e in entries:
                    e["output"] = str(output)
                    e["state"] = str(state_path(output))
                review.extend(entries)
                # Leaks left in place keep the machine's attempt until a person's fix is applied.
                texts = {**{e["index"]: e["machine"] for e in entries}, **state.texts}
                _write(output, doc.output(texts))
                state.finish()
            finally:
                state.close()
                bar.file_done()
        bar.close()
    if s.review and review:
        _write(Path(s.review), (json.dumps(review, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    return summaries, review


def apply_review(path: str, keys: tuple[str, ...] = (), preset: str = "") -> int:
    """Write a person's translations from a review file back into the outputs; return how many were applied.

    The file is cut into segments as it was when translated (the review records how); a segment left
    blank in the review keeps the machine's attempt, as the translation run wrote it.
    """
    entries = json.loads(Path(path).read_text(encoding="utf-8"))
    by_output: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_output.setdefault(e["output"], []).append(e)
    applied = 0
    for output, items in by_output.items():
        fixes = [e for e in items if str(e.get("translation", "")).strip()]
        if not fixes:
            continue
        first = items[0]
        doc = load(first["source"], tuple(first.get("keys", keys)), str(first.get("preset", preset)))
        state_file = Path(first["state"])
        texts: dict[int, str] = {int(e["index"]): str(e["machine"]) for e in items}
        if state_file.exists():
            for line in state_file.read_text(encoding="utf-8").splitlines():
                item = _json_line(line)
                if item is not None and "i" in item:
                    texts[int(item["i"])] = str(item["text"])
        with state_file.open("a", encoding="utf-8") as f:
            for e in fixes:
                texts[int(e["index"])] = e["translation"]
                f.write(json.dumps({"i": int(e["index"]), "text": e["translation"]}, ensure_ascii=False) + "\n")
                applied += 1
        doc.target_language = str(first.get("target_language", ""))
        _write(Path(output), doc.output(texts))
    return applied


@dataclass(slots=True)
class CheckReport:
    path: str
    segments: int
    leaks: list[Leak] = field(default_factory=list)


def check_file(path: str, target: str, keys: tuple[str, ...] = (), preset: str = "") -> CheckReport:
    """The leak check alone, on any translated file: segments empty or not in the target language."""
    doc = load(path, keys, preset)
    checker = LeakChecker(target)
    report = CheckReport(path, len(doc.segments))
    for seg in doc.segments:
        language, confidence = checker.language_of(seg.text)
        if language and language != checker.target and confidence >= 0.6:
            report.leaks.append(Leak(seg.index, f"{seg.where}: in {language} ({confidence:.2f}), not {target}"))
    return report
