"""`translane translate`, `translane models` and `translane usage`: one call to a running service, its answer
printed."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import grpc

from translane import tls
from translane.calls import report_failure
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc
from translane.wire import usage_row_json

__all__ = ["add_parser"]


def add_parser(sub: Any, default_target: str) -> None:
    """Add the `translate` and `models` subcommands."""
    tr = sub.add_parser("translate", help="translate text through a running server")
    tr.add_argument("text", nargs="*", help="segments to translate (default: stdin as one segment)")
    tr.add_argument("--to", required=True, help="target language code, e.g. zh, en, ja")
    tr.add_argument("--from", dest="source", default="", help="source language code (default: detect)")
    tr.add_argument("--model", default="", help="model name (default: the server's default)")
    tr.add_argument("--task-id", default="")
    tr.add_argument("--batch", action="store_true", help="batch priority")
    tr.add_argument("--stream", action="store_true", help="print deltas as they arrive")
    tr.add_argument("--timeout", type=float, default=120.0)
    tr.add_argument("-v", "--verbose", action="store_true", help="print usage and cost to stderr")
    tr.add_argument("--target", default=default_target)
    tr.set_defaults(func=translate)

    models = sub.add_parser("models", help="list a running server's models")
    models.add_argument("--target", default=default_target)
    models.set_defaults(func=list_models)

    usage = sub.add_parser(
        "usage", help="calls, tokens and cost the provider answered, per tenant (and model, day, task)"
    )
    usage.add_argument("--start", default="", help="first day, YYYY-MM-DD (default: the first of --end's month)")
    usage.add_argument("--end", default="", help="last day, YYYY-MM-DD, inclusive (default: today)")
    usage.add_argument(
        "--group-by", default="", help="comma-separated, any of model, day, task (default: one row per tenant)"
    )
    usage.add_argument("--tenant", default="", help="whose usage (default: yours; another's, or '*', as an admin)")
    usage.add_argument("--json", action="store_true", help="print the answer as JSON")
    usage.add_argument("--timeout", type=float, default=30.0)
    usage.add_argument("--target", default=default_target)
    usage.set_defaults(func=show_usage)


async def translate(args: argparse.Namespace) -> int:
    """`translane translate`: the translations on stdout, one per segment (or the deltas as they come)."""
    texts = args.text or [sys.stdin.read()]
    req = pb.TranslateRequest(
        segments=texts,
        target_language=args.to,
        source_language=args.source,
        model=args.model,
        task_id=args.task_id,
        priority=pb.PRIORITY_BATCH if args.batch else pb.PRIORITY_INTERACTIVE,
    )
    async with tls.channel(args.target, tls=tls.ClientTLS.from_env(), api_key=tls.client_api_key()) as channel:
        stub = pb_grpc.TranslatorStub(channel)
        try:
            if args.stream:
                current = 0
                async for chunk in stub.TranslateStream(req, timeout=args.timeout):
                    if chunk.final:
                        usage = chunk.usage
                    elif chunk.segment_done:
                        print(flush=True)
                        current += 1
                    else:
                        print(chunk.delta, end="", flush=True)
            else:
                resp = await stub.Translate(req, timeout=args.timeout)
                for t in resp.translations:
                    print(t.text)
                usage = resp.usage
        except grpc.aio.AioRpcError as exc:
            return report_failure(exc, args.target)
    if args.verbose:
        print(
            f"[{usage.prompt_tokens}+{usage.completion_tokens} tokens, {usage.cost:.6f} {usage.currency}"
            f"{', estimated' if usage.estimated else ''}]",
            file=sys.stderr,
        )
    return 0


async def list_models(args: argparse.Namespace) -> int:
    """`translane models`: one line per model, the default starred."""
    async with tls.channel(args.target, tls=tls.ClientTLS.from_env(), api_key=tls.client_api_key()) as channel:
        try:
            resp = await pb_grpc.TranslatorStub(channel).ListModels(pb.ListModelsRequest(), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return report_failure(exc, args.target)
    for m in resp.models:
        star = "*" if m.name == resp.default_model else " "
        budget = ""
        if m.daily_token_budget:
            budget += f" today={m.daily_tokens_spent}/{m.daily_token_budget} tokens"
        if m.daily_cost_budget:
            budget += f" today={m.daily_cost_spent:.4f}/{m.daily_cost_budget:g} {m.currency}"
        price = f" price={m.input_price_per_mtok:g}/{m.output_price_per_mtok:g} {m.currency} per Mtok in/out"
        fallbacks = f" fallbacks={','.join(m.fallbacks)}" if m.fallbacks else ""
        print(
            f"{star} {m.name:34} lane={m.lane:5} rpm={m.rpm} tpm={m.tpm} concurrency={m.max_concurrency}"
            f" api={m.api_style}{price}{fallbacks}{budget}{'' if m.available else ' (out of rotation)'}"
        )
    return 0


_USAGE_COLUMNS = (("day", "day"), ("model", "model"), ("task", "task_id"))


async def show_usage(args: argparse.Namespace) -> int:
    """`translane usage`: a table of the rows (or --json), the range they cover on top."""
    groups = [g.strip() for g in args.group_by.split(",") if g.strip()]
    req = pb.GetUsageRequest(tenant=args.tenant, start_day=args.start, end_day=args.end, group_by=groups)
    async with tls.channel(args.target, tls=tls.ClientTLS.from_env(), api_key=tls.client_api_key()) as channel:
        try:
            resp = await pb_grpc.TranslatorStub(channel).GetUsage(req, timeout=args.timeout)
        except grpc.aio.AioRpcError as exc:
            return report_failure(exc, args.target)
    if args.json:
        rows = [usage_row_json(r) for r in resp.rows]
        print(json.dumps({"start": resp.start_day, "end": resp.end_day, "rows": rows}, ensure_ascii=False, indent=2))
        return 0
    shown = [(title, field) for title, field in _USAGE_COLUMNS if title in {g.lower() for g in groups}]
    header = ["tenant", *(t for t, _ in shown), "requests", "prompt", "completion", "cached", "cost"]
    table = [
        [
            r.tenant or "(default)",
            *(getattr(r, field) for _, field in shown),
            str(r.requests),
            str(r.prompt_tokens),
            str(r.completion_tokens),
            str(r.cached_tokens),
            f"{r.cost:.6f} {r.currency}",
        ]
        for r in resp.rows
    ]
    print(f"usage from {resp.start_day} to {resp.end_day}")
    if not table:
        print("(none)")
        return 0
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    # Names to the left, numbers to the right.
    numbers = len(header) - 5
    for row in [header, *table]:
        print(
            "  ".join(
                c.ljust(w) if i < numbers else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return 0
