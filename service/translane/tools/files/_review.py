"""The review file: segments left for a person, kept across runs, and `apply`, which checks each fix as a
translation is checked before writing it into the output.

An entry shows a segment as the model saw it: `original` with its inline code, link targets, URLs and
tags as {0} placeholders (`placeholders` says what each stands for), the machine's attempt the same way,
and an empty `translation` for the person, written with the same placeholders (or with the markup itself).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._doc import Doc, FormatError, load
from ._leaks import LeakChecker
from ._protect import placeholders, protect, restore
from ._state import State, state_path

__all__ = ["ApplyReport", "apply_review", "doc_texts", "entries_for", "merge_review", "protected", "write_file"]


def protected(doc: Doc) -> list[tuple[str, list[str]]]:
    """Each segment as sent to the model, with the runs its placeholders stand for."""
    kind = "html" if doc.kind == "epub" else doc.kind
    return [protect(seg.text, kind) for seg in doc.segments]


def doc_texts(state: State, runs: list[tuple[str, list[str]]]) -> dict[int, str]:
    """What goes into the output: the accepted translations, and for a leak the machine's attempt until a
    person's fix is applied (the original text where the attempt is blank, so no segment vanishes)."""
    texts = dict(state.texts)
    for index, leak in state.leaks.items():
        if leak.machine.strip():
            texts[index] = restore(leak.machine, runs[index][1])[0]
    return texts


def write_file(path: Path, data: bytes) -> None:
    """Write whole or not at all: a temporary file renamed over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def entries_for(
    doc: Doc,
    output: Path,
    state: State,
    runs: list[tuple[str, list[str]]],
    settings: tuple[str, str, tuple[str, ...], str],
) -> list[dict[str, Any]]:
    """A review entry for each leak the state holds. `settings`: target and source language, keys and preset
    (how the file was cut into segments, so `apply` finds the same ones)."""
    target, source, keys, preset = settings
    entries = []
    for index, leak in sorted(state.leaks.items()):
        masked, kept = runs[index]
        entries.append(
            {
                "source": doc.path,
                "output": str(output),
                "state": str(state_path(output)),
                "index": index,
                "where": doc.segments[index].where,
                "reason": leak.reason,
                "original": masked,
                "placeholders": {f"{{{i}}}": run for i, run in enumerate(kept)},
                "machine": leak.machine,
                "target_language": target,
                "source_language": source,
                "keys": list(keys),
                "preset": preset,
                "translation": "",
            }
        )
    return entries


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise FormatError(f"{path}: not a review file ({exc}); mend it or move it away") from None
    if not isinstance(entries, list):
        raise FormatError(f"{path}: not a review file (a JSON list of entries); mend it or move it away")
    return [e for e in entries if isinstance(e, dict)]


def _dump(path: Path, entries: list[dict[str, Any]]) -> None:
    write_file(path, (json.dumps(entries, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))


def merge_review(path: Path, outputs: Iterable[str], entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write `entries` for the `outputs` of this run into the review file, keeping every entry of other outputs
    (a rerun that skips finished files loses nothing) and a person's translation already written for the
    same segment; return what the file now holds."""
    old = _read(path)
    ours = set(outputs)
    written = {
        (e.get("output"), e.get("index"), e.get("original")): e["translation"]
        for e in old
        if str(e.get("translation", "")).strip()
    }
    for e in entries:
        e["translation"] = written.get((e["output"], e["index"], e["original"]), e["translation"])
    merged = [e for e in old if e.get("output") not in ours] + entries
    if merged or path.exists():
        _dump(path, merged)
    return merged


@dataclass(slots=True)
class ApplyReport:
    """How many fixes went into the outputs, and each refused one with the reason."""

    applied: int = 0
    refused: list[tuple[dict[str, Any], str]] = field(default_factory=list)


def _judge(entry: dict[str, Any], masked: str, runs: list[str], checker: LeakChecker) -> tuple[str, str]:
    """(the fix as it goes into the output, "") or ("", why it is refused): checked as a translation is."""
    fix = str(entry["translation"])
    if runs and not placeholders(fix) and all(run in fix for run in runs):
        # Written with the markup itself rather than the placeholders: as good, once each run is there.
        as_sent = fix
        for i, run in enumerate(runs):
            as_sent = as_sent.replace(run, f"{{{i}}}", 1)
        restored = fix
    else:
        as_sent, (restored, _) = fix, restore(fix, runs)
    missing = [p for p in sorted(placeholders(masked)) if p not in placeholders(as_sent)]
    if missing:
        stand = [f"{p} ({runs[int(p[1:-1])]})" if int(p[1:-1]) < len(runs) else p for p in missing]
        return "", f"{', '.join(stand)} missing: write each placeholder where its text goes"
    leak = checker.check(int(entry["index"]), masked, as_sent)
    return ("", leak.reason) if leak is not None else (restored, "")


def apply_review(path: str, keys: tuple[str, ...] = (), preset: str = "") -> ApplyReport:
    """Write a person's translations from a review file into the outputs, each checked first.

    A fix goes in only if it keeps every placeholder (no link, inline code or tag dropped), writes none that
    was not there, and passes the leak check; a refused one stays in the review with the reason. Applied
    entries leave the review file; a file with nothing left for review has its state removed. An entry left
    blank keeps the machine's attempt, as the translation run wrote it.
    """
    review = Path(path)
    entries = _read(review)
    report = ApplyReport()
    by_output: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_output.setdefault(str(e["output"]), []).append(e)
    done: set[int] = set()
    for output, items in by_output.items():
        fixes = [e for e in items if str(e.get("translation", "")).strip()]
        if not fixes:
            continue
        first = items[0]
        state_file = Path(first["state"])
        if not state_file.exists():
            for e in fixes:
                report.refused.append((e, f"{state_file} is gone, so {output} cannot be rebuilt: translate it again"))
            continue
        doc = load(first["source"], tuple(first.get("keys", keys)), str(first.get("preset", preset)))
        doc.target_language = str(first.get("target_language", ""))
        runs = protected(doc)
        checker = LeakChecker(doc.target_language, str(first.get("source_language", "")))
        state = State(state_file, None)
        try:
            for e in fixes:
                index = int(e["index"])
                # (A review written before `original` showed placeholders holds the segment's text.)
                if index >= len(runs) or e["original"] not in (runs[index][0], doc.segments[index].text):
                    report.refused.append((e, f"{first['source']} changed since the review was written"))
                    continue
                text, why = _judge(e, runs[index][0], runs[index][1], checker)
                if why:
                    report.refused.append((e, why))
                    continue
                state.add(index, text)
                done.add(id(e))
                report.applied += 1
            write_file(Path(output), doc.output(doc_texts(state, runs)))
        finally:
            state.close()
        if not state.leaks:
            state.remove()  # every leak fixed: nothing left to apply
    refused = {id(e): why for e, why in report.refused}
    left = []
    for e in entries:
        if id(e) in done:
            continue
        e.pop("refused", None)
        if id(e) in refused:
            e["refused"] = refused[id(e)]
        left.append(e)
    _dump(review, left)
    return report
