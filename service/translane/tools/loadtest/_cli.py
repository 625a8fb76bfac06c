"""`translane loadtest ...` and `translane loadtest report RUN.jsonl`: flags, config file, output."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import IO, Any

from ._config import LADDERS, LoadConfig, LoadConfigError, Target, load_config_file
from ._plot import plot
from ._report import read_run, table
from ._runner import run

__all__ = ["add_parser", "main"]


def _steps(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,5,10, got {text!r}") from None


def _named(url: str, grpc_target: str) -> str:
    """A target's name in tables and records: its address without the scheme."""
    return url.split("://", 1)[-1] if url else f"grpc {grpc_target}"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `loadtest` subcommand."""
    p: argparse.ArgumentParser = sub.add_parser(
        "loadtest",
        help="load-test an OpenAI-compatible endpoint or this service (`loadtest report RUN.jsonl` re-renders)",
        description=__doc__,
    )
    p.add_argument("report", nargs="*", help="`report RUN.jsonl` re-renders a saved run's table (and --plot)")
    t = p.add_argument_group("target")
    t.add_argument("--url", help="chat completions URL, e.g. http://127.0.0.1:8000/v1/chat/completions")
    t.add_argument("--grpc", help="this service over gRPC, HOST:PORT")
    t.add_argument("--compare", help="a second chat completions URL, sent the same schedule and inputs")
    t.add_argument("--model")
    t.add_argument("--api-key-env", help="environment variable holding the bearer key (never printed)")
    t.add_argument("--to", dest="target_language", help="gRPC: target language (default zh)")
    t.add_argument("--priority", choices=("interactive", "batch"))
    s = p.add_argument_group("shape")
    s.add_argument("--concurrency", type=int, help="closed loop: requests in flight")
    s.add_argument("--rate", type=float, help="open loop: requests per second")
    s.add_argument("--rpm", type=float, help="open loop: requests per minute")
    s.add_argument("--tpm", type=float, help="open loop: tokens per minute (requests planned from the prompt size)")
    s.add_argument("--arrival", choices=("constant", "poisson", "gamma"))
    s.add_argument("--burstiness", type=float, help="gamma shape: 1 = Poisson, < 1 burstier")
    s.add_argument("--max-in-flight", type=int, help="open loop: cap on requests in flight")
    s.add_argument("--duration", type=float, help="seconds per step")
    s.add_argument("--requests", type=int, help="requests per step")
    s.add_argument(
        "--steps",
        type=_steps,
        help="a ladder, one step a value, e.g. 1,5,10,20: concurrencies (closed loop), or with --steps-of the "
        "open-loop rates; takes no --concurrency/--rate/--rpm/--tpm beside it",
    )
    s.add_argument(
        "--steps-of",
        choices=LADDERS,
        help="what --steps are: concurrency (default), rate (per second), rpm or tpm (open loop)",
    )
    s.add_argument("--stop-error-share", type=float, help="stop after a step with more 429/5xx/timeouts than this")
    r = p.add_argument_group("requests")
    r.add_argument("--stream", action="store_true", default=None)
    r.add_argument("--timeout", type=float, dest="timeout_s")
    r.add_argument("--max-tokens", type=int)
    r.add_argument("--data", help="CSV or JSONL rows filling {{column}} placeholders in the body")
    r.add_argument("--prompt-tokens", type=int, help="synthetic prompts: mean length in tokens")
    r.add_argument("--prompt-tokens-spread", type=int)
    r.add_argument("--task-id-prefix")
    r.add_argument("--seed", type=int)
    r.add_argument(
        "--cache",
        action="store_true",
        default=None,
        help="measure the service's segment cache on purpose (default: prompts no cache has seen, gRPC no_cache)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--out", help="RUN.jsonl: one line per request, a summary line per step")
    o.add_argument(
        "--plot",
        help="PNG: each step's latency and outcomes over time, targets overlaid; a ladder's throughput and latency "
        "against load (needs matplotlib: translane[plot])",
    )
    o.add_argument("--slo-ttft-ms", type=float)
    o.add_argument("--slo-e2e-ms", type=float)
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--config", help="TOML or JSON file with the same settings (flags win)")
    p.set_defaults(func=main)
    return p


_FLAG_FIELDS = (
    "model api_key_env target_language priority concurrency tpm arrival burstiness max_in_flight requests steps "
    "steps_of stop_error_share stream timeout_s max_tokens data prompt_tokens prompt_tokens_spread task_id_prefix "
    "seed cache out plot slo_ttft_ms slo_e2e_ms"
).split()


def build(args: argparse.Namespace) -> LoadConfig:
    """The run's settings: the config file's, then the flags given."""
    settings: dict[str, Any] = load_config_file(args.config) if args.config else {}
    for name in _FLAG_FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            settings[name] = value
    if args.duration is not None:
        settings["duration_s"] = args.duration
    if args.rate is not None:
        settings["rate_per_s"] = args.rate
    if args.rpm is not None:
        settings["rate_per_s"] = args.rpm / 60
    url = args.url or settings.pop("url", "")
    grpc_target = args.grpc or settings.pop("grpc", "")
    compare = args.compare or settings.pop("compare", "")
    settings.pop("url", None), settings.pop("grpc", None), settings.pop("compare", None)
    # Targets are named by where they are, so a comparison's table says which is which.
    first = _named(url or "", grpc_target or "")
    targets = [Target(first, url=url or "", grpc=grpc_target or "")]
    if compare:
        second = _named(compare, "")
        targets.append(Target(second if second != first else f"{second} (2)", url=compare))
    for key in ("steps",):
        if key in settings and isinstance(settings[key], list):
            settings[key] = tuple(float(v) for v in settings[key])
    try:
        return LoadConfig(targets=tuple(targets), **settings)
    except TypeError as exc:
        raise LoadConfigError(f"config: {exc}") from None


def _output(path: str) -> contextlib.AbstractContextManager[IO[str] | None]:
    """RUN.jsonl opened for writing, or nothing."""
    if not path:
        return contextlib.nullcontext(None)
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise LoadConfigError(f"out: cannot write {path!r}: {exc.strerror}") from None


async def main(args: argparse.Namespace) -> int:
    try:
        if args.report:
            if args.report[0] != "report" or len(args.report) != 2:
                raise LoadConfigError("usage: translane loadtest report RUN.jsonl [--plot FILE.png]")
            records, summaries = read_run(args.report[1])
            print(table(summaries), end="")
            if args.plot:
                plot(records, summaries, args.plot)
            return 0
        cfg = build(args)
        with _output(cfg.out) as out:
            records, summaries = await run(cfg, out=out, progress=False if args.quiet else None)
        print(table(summaries), end="")
        if cfg.plot:
            plot(records, summaries, cfg.plot)
        return 0
    except LoadConfigError as exc:
        print(f"translane loadtest: {exc}", file=sys.stderr)
        return 2
