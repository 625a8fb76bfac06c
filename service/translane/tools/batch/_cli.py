"""`translane batch run INPUT.jsonl -o OUTPUT.jsonl`: flags, the job, its summary; and the job commands (_jobs)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._jobs import add_job_parsers
from ._runner import BatchSettings, run_batch

__all__ = ["add_parser", "main"]


def add_parser(sub: Any, default_target: str) -> None:
    """Add the `batch` subcommand."""
    batch = sub.add_parser(
        "batch", help="OpenAI Batch JSONL through the service: run here, resumably, or submit as a job it runs"
    )
    actions = batch.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="translate the file from here, resumably (the offline runner)")
    run.add_argument("input", help="JSONL: OpenAI Batch lines or {custom_id, text|segments, target_language}")
    run.add_argument("-o", "--output", required=True, help="JSONL in the OpenAI Batch output format (appended)")
    run.add_argument("--target", default=default_target)
    run.add_argument(
        "--to",
        default="",
        help="target language of lines that name none anywhere (default: none; such a line is an error line)",
    )
    run.add_argument("--max-in-flight", type=int, default=256)
    run.add_argument("--deadline", type=float, default=600.0, help="seconds a line may take, queue included")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=main)
    add_job_parsers(actions, default_target)


async def main(args: argparse.Namespace) -> int:
    """Run the job; 0 when every line is answered, 1 when some failed, 2 for bad flags."""
    if args.max_in_flight < 1 or not args.deadline > 0:
        print("translane batch: --max-in-flight must be >= 1 and --deadline > 0", file=sys.stderr)
        return 2
    settings = BatchSettings(
        grpc_target=args.target,
        input=args.input,
        output=args.output,
        default_target_language=args.to,
        max_in_flight=args.max_in_flight,
        deadline_s=args.deadline,
        progress=False if args.quiet else None,
    )
    summary = await run_batch(settings)
    print(summary.text(), file=sys.stderr)
    if summary.hint:
        print(f"translane batch: {summary.hint}", file=sys.stderr)
    return 0 if summary.failed == 0 else 1
