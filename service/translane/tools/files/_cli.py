"""`translane file translate | apply | check`."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import grpc

from translane.calls import report_failure

from ._doc import FormatError
from ._runner import FileSettings, apply_review, check_file, translate_files

__all__ = ["add_parser"]


def add_parser(sub: Any, default_target: str) -> None:
    """Add the `file` subcommand."""
    p: argparse.ArgumentParser = sub.add_parser(
        "file",
        help="translate files (Markdown, HTML, EPUB, text, SRT/VTT, JSON/YAML), check for untranslated leaks, "
        "apply fixes",
    )
    p.add_argument("action", choices=("translate", "apply", "check"))
    p.add_argument("paths", nargs="+", help="files or folders (apply: the review file)")
    p.add_argument("--to", dest="target_language", default="", help="target language (translate, check)")
    p.add_argument("--from", dest="source_language", default="")
    p.add_argument("--model", default="")
    p.add_argument(
        "-o",
        "--out",
        default="",
        help="with one input file, the output file; a folder (mirroring the inputs) when it exists, ends with /, "
        "or there are several inputs or a folder (default: beside each input, book.md -> book.de.md)",
    )
    p.add_argument("-r", "--recursive", action="store_true")
    p.add_argument("--keys", nargs="*", default=[], help="JSON: glob key paths to translate, e.g. dialogue.*.text")
    p.add_argument("--preset", choices=("renpy",), default=None, help="JSON: RenPy-style translation files")
    p.add_argument("--review", default="translane-review.json", help="where segments left untranslated are listed")
    p.add_argument(
        "--original",
        default="",
        metavar="FILE",
        help="check: the file that was translated, to judge each segment against its original as translate did "
        "(default: the file beside it without the language suffix, book.de.md -> book.md, when there is one)",
    )
    p.add_argument(
        "--repair-attempts",
        type=_count,
        default=2,
        metavar="N",
        help="ask for a leak again at most N times: past the cache, then along the model's fallbacks (default 2; "
        "0: leave every leak for review)",
    )
    p.add_argument("--target", default=default_target)
    p.set_defaults(func=main)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _original(path: str, target: str) -> str:
    """The file `path` was translated from when it lies beside it under the same name without the language
    suffix (book.de.epub -> book.epub); else ""."""
    p = Path(path)
    if len(p.suffixes) < 2 or p.suffixes[-2] != f".{target}":
        return ""
    candidate = p.with_name(p.name[: -len(p.suffixes[-2] + p.suffix)] + p.suffix)
    return str(candidate) if candidate.is_file() else ""


def _out(paths: list[str], out: str) -> tuple[str, str]:
    """(out_dir, out_file) from -o: one input file and a name that is not a folder name an output file, as pandoc
    and most tools read it; otherwise a folder."""
    if not out:
        return "", ""
    single = len(paths) == 1 and Path(paths[0]).is_file()
    if single and not out.endswith(("/", os.sep)) and not Path(out).is_dir():
        return "", out
    return out, ""


async def main(args: argparse.Namespace) -> int:
    keys, preset = tuple(args.keys), args.preset or ""
    if importlib.util.find_spec("lingua") is None:
        # Before any call is paid for: the leak check needs the offline language identifier.
        print("translane file: the leak check needs the files extra: pip install 'translane[files]'", file=sys.stderr)
        return 2
    out_dir, out_file = _out(args.paths, args.out)
    try:
        if args.action == "apply":
            refused = 0
            for path in args.paths:
                report = apply_review(path, keys, preset)
                print(f"{path}: applied {report.applied} translation(s)", file=sys.stderr)
                for entry, why in report.refused:
                    print(f"  refused {entry['output']} segment {entry['index']} ({entry['where']}): {why}")
                refused += len(report.refused)
            if refused:
                print(f"{refused} fix(es) refused: they stay in the review with the reason", file=sys.stderr)
            return 1 if refused else 0
        if not args.target_language:
            print("translane file: --to LANG is required", file=sys.stderr)
            return 2
        if args.action == "check":
            leaks = 0
            for path in args.paths:
                original = args.original or _original(path, args.target_language)
                checked = check_file(path, args.target_language, keys, preset, args.source_language, original)
                leaks += len(checked.leaks)
                against = f" (against {checked.compared})" if checked.compared else ""
                print(f"{checked.path}: {checked.segments} segments, {len(checked.leaks)} leak(s){against}")
                if checked.note:
                    print(f"  {checked.note}")
                for leak in checked.leaks:
                    print(f"  segment {leak.index}: {leak.reason}")
            return 1 if leaks else 0
        settings = FileSettings(
            grpc_target=args.target,
            target_language=args.target_language,
            source_language=args.source_language,
            model=args.model,
            out_dir=out_dir,
            out_file=out_file,
            recursive=args.recursive,
            keys=keys,
            preset=preset,
            review=args.review,
            repair_attempts=args.repair_attempts,
        )
        summaries, review = await translate_files(args.paths, settings)
    except (FormatError, OSError) as exc:
        print(f"translane file: {exc}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as exc:
        return report_failure(exc, args.target)
    for s in summaries:
        print(s.text(), file=sys.stderr)
    if review:
        print(f"{len(review)} segment(s) left for review in {args.review}", file=sys.stderr)
    return 0
