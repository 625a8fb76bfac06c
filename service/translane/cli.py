"""The `translane` command: up, serve, sim, shim, translate, loadtest, batch, models."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import uvloop

from .config import Config, ConfigError, load_config

__all__ = ["main"]

log = logging.getLogger("translane")

DEFAULT_GRPC_PORT = 50051
DEFAULT_SHIM_PORT = 8000
DEFAULT_SIM_PORT = 8900


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.models_file)
    server = cfg.server
    changes: dict[str, Any] = {}
    if getattr(args, "host", None):
        changes["host"] = args.host
    if getattr(args, "port", None) is not None:
        changes["port"] = args.port
    if getattr(args, "metrics_port", None) is not None:
        changes["metrics_port"] = args.metrics_port
    if getattr(args, "insecure", False):
        changes["allow_insecure"] = True
    if changes:
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(server, **changes))
    if getattr(args, "upstream_url", None):
        cfg = cfg.with_upstream_url(args.upstream_url)
    return cfg


def _setup_logging(level: str) -> None:
    from .logs import setup_logging

    setup_logging(level)


# -- commands -------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> int:
    from .server import serve
    from .tracing import tracing

    with tracing("translane"):
        await serve(_config(args))
    return 0


def _sim_config(cfg: Config, args: argparse.Namespace) -> Any:
    from .sim import SimConfig

    return SimConfig.from_config(
        cfg,
        limit_scale=args.limit_scale,
        window_s=args.window_s,
        ttft_s=args.ttft_s,
        tokens_per_s=args.tokens_per_s,
        error_rate=args.error_rate,
        rate_limit_rate=args.rate_limit_rate,
        seed=args.seed,
    )


async def _sim(args: argparse.Namespace) -> int:
    from .sim import run_sim

    cfg = load_config(args.models_file)
    log.info("simulated provider on http://%s:%d/api/v3 (not a real translation)", args.host, args.port)
    await _until_signal(run_sim(_sim_config(cfg, args), args.host, args.port))
    return 0


async def _until_signal(*coros: Any) -> None:
    """Run coroutines until SIGINT/SIGTERM or until one of them ends."""
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.ensure_future(c) for c in coros]
    waiter = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not waiter and t.exception() is not None:
                raise t.exception()
    finally:
        for t in [*tasks, waiter]:
            t.cancel()
        await asyncio.gather(*tasks, waiter, return_exceptions=True)


async def _shim(args: argparse.Namespace) -> int:
    from gateway_shim import ShimConfig, run_shim

    from .tracing import tracing

    shim_cfg = ShimConfig.from_env(host=args.host, port=args.port, grpc_target=args.grpc_target)
    with tracing("translane-shim"):
        await _until_signal(run_shim(shim_cfg))
    return 0


async def _up(args: argparse.Namespace) -> int:
    from .tracing import tracing

    with tracing("translane"):
        return await _up_traced(args)


async def _up_traced(args: argparse.Namespace) -> int:
    from .server import serve
    from .tls import ClientTLS

    cfg = _config(args)
    shim_client = ClientTLS.from_env()
    if cfg.server.tls and not args.no_shim and importlib.util.find_spec("gateway_shim") is not None:
        if shim_client is None or (cfg.server.tls_client_ca_file and not shim_client.cert_file):
            raise ConfigError(
                "the service would serve TLS (TRANSLANE_TLS_CERT_FILE) but the shim could not reach it: it needs "
                "TRANSLANE_CLIENT_TLS_CA_FILE to trust it, and for mTLS (TRANSLANE_TLS_CLIENT_CA_FILE) "
                "TRANSLANE_CLIENT_TLS_CERT_FILE / _KEY_FILE; set them, or run `translane up --no-shim`"
            )
    coros: list[Any] = []
    keyed = bool(os.environ.get("ARK_API_KEY"))
    if not keyed or args.sim:
        from .sim import run_sim

        sim_url = f"http://127.0.0.1:{args.sim_port}/api/v3"
        cfg = cfg.with_upstream_url(sim_url)
        coros.append(run_sim(_sim_config(cfg, args), "127.0.0.1", args.sim_port))
        log.info("no ARK_API_KEY: using the simulated provider at %s (translations are marked [sim])", sim_url)
    else:
        log.info("ARK_API_KEY set: using the real provider")
    coros.append(serve(cfg))
    try:
        from gateway_shim import ShimConfig, run_shim
    except ImportError:
        run_shim = None  # type: ignore[assignment]
    if run_shim is not None and not args.no_shim:
        shim_cfg = ShimConfig.from_env(
            host="127.0.0.1", port=args.shim_port, grpc_target=f"127.0.0.1:{cfg.server.port}"
        )
        coros.append(run_shim(shim_cfg))
    await _until_signal(*coros)
    return 0


async def _translate(args: argparse.Namespace) -> int:
    import grpc

    from . import tls
    from .v1 import translate_pb2 as pb
    from .v1 import translate_pb2_grpc as pb_grpc

    texts = args.text or [sys.stdin.read()]
    req = pb.TranslateRequest(
        segments=texts,
        target_language=args.to,
        source_language=args.source,
        model=args.model,
        task_id=args.task_id,
        priority=pb.PRIORITY_BATCH if args.batch else pb.PRIORITY_INTERACTIVE,
    )
    async with tls.channel(args.target, tls=tls.ClientTLS.from_env()) as channel:
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
            return _rpc_failed(exc, args.target)
    if args.verbose:
        print(
            f"[{usage.prompt_tokens}+{usage.completion_tokens} tokens, {usage.cost:.6f} {usage.currency}"
            f"{', estimated' if usage.estimated else ''}]",
            file=sys.stderr,
        )
    return 0


async def _batch(args: argparse.Namespace) -> int:
    from .tools.batch import BatchSettings, run_batch

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
    return 0 if summary.failed == 0 else 1


def _rpc_failed(exc: Any, target: str) -> int:
    """One line for a failed call (no traceback), with what to check when the service was not reached."""
    import grpc

    print(f"translane: {exc.code().name}: {exc.details()}", file=sys.stderr)
    # The service's own answers carry its no-retry trailer: it was reached, so no hint about reaching it.
    answered = any(key == "grpc-retry-pushback-ms" for key, _ in (exc.trailing_metadata() or ()))
    if (
        exc.code() == grpc.StatusCode.UNAVAILABLE
        and not answered
        and not os.environ.get("TRANSLANE_CLIENT_TLS_CA_FILE")
    ):
        print(
            f"translane: is the service running at {target} (--target, $TRANSLANE_GRPC_TARGET)? If it serves TLS, "
            "set TRANSLANE_CLIENT_TLS_CA_FILE (and for mTLS TRANSLANE_CLIENT_TLS_CERT_FILE / _KEY_FILE)",
            file=sys.stderr,
        )
    return 1


async def _models(args: argparse.Namespace) -> int:
    import grpc

    from . import tls
    from .v1 import translate_pb2 as pb
    from .v1 import translate_pb2_grpc as pb_grpc

    async with tls.channel(args.target, tls=tls.ClientTLS.from_env()) as channel:
        try:
            resp = await pb_grpc.TranslatorStub(channel).ListModels(pb.ListModelsRequest(), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return _rpc_failed(exc, args.target)
    for m in resp.models:
        star = "*" if m.name == resp.default_model else " "
        budget = ""
        if m.daily_token_budget:
            budget += f" today={m.daily_tokens_spent}/{m.daily_token_budget} tokens"
        if m.daily_cost_budget:
            budget += f" today={m.daily_cost_spent:.4f}/{m.daily_cost_budget:g} {m.currency}"
        print(
            f"{star} {m.name:34} lane={m.lane:5} rpm={m.rpm} tpm={m.tpm} concurrency={m.max_concurrency}"
            f" api={m.api_style}{budget}{'' if m.available else ' (out of rotation)'}"
        )
    return 0


# -- parser ------------------------------------------------------------------------


def _sim_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("simulated provider")
    g.add_argument("--limit-scale", type=float, default=1.0, help="scale every model's RPM/TPM")
    g.add_argument("--window-s", type=float, default=60.0, help="sliding window for RPM/TPM (seconds)")
    g.add_argument("--ttft-s", type=float, default=0.05, help="time to first token (seconds)")
    g.add_argument("--tokens-per-s", type=float, default=400.0, help="output speed; 0 = instant")
    g.add_argument("--error-rate", type=float, default=0.0, help="share of calls answered 500")
    g.add_argument("--rate-limit-rate", type=float, default=0.0, help="share of calls answered 429")
    g.add_argument("--seed", type=int, default=0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="translane", description=__doc__)
    p.add_argument("--log-level", default=os.environ.get("TRANSLANE_LOG_LEVEL", "INFO"))
    p.add_argument(
        "--models-file", default=None, help="models file (TOML/YAML); default $TRANSLANE_MODELS_FILE or the shipped one"
    )
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="simulated provider (unless ARK_API_KEY is set) + gRPC server + HTTP shim")
    up.add_argument("--port", type=int, default=_env_port("TRANSLANE_GRPC_PORT", DEFAULT_GRPC_PORT))
    up.add_argument("--shim-port", type=int, default=_env_port("TRANSLANE_SHIM_PORT", DEFAULT_SHIM_PORT))
    up.add_argument("--sim-port", type=int, default=_env_port("TRANSLANE_SIM_PORT", DEFAULT_SIM_PORT))
    up.add_argument("--sim", action="store_true", help="use the simulated provider even with ARK_API_KEY set")
    up.add_argument("--no-shim", action="store_true")
    _sim_flags(up)
    up.set_defaults(func=_up, host="127.0.0.1")

    serve = sub.add_parser("serve", help="the gRPC server")
    serve.add_argument("--host", default=None, help="default: server.host or $TRANSLANE_GRPC_HOST")
    serve.add_argument("--port", type=int, default=None, help="default: server.port or $TRANSLANE_GRPC_PORT")
    serve.add_argument("--metrics-port", type=int, default=None, help="Prometheus port; 0 = off")
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="serve plaintext gRPC on an address other than loopback (server.allow_insecure)",
    )
    serve.add_argument("--upstream-url", default=None, help="send every provider's calls here instead")
    serve.set_defaults(func=_serve)

    sim = sub.add_parser("sim", help="the simulated provider (OpenAI chat + Ark responses)")
    sim.add_argument("--host", default=os.environ.get("TRANSLANE_SIM_HOST", "127.0.0.1"))
    sim.add_argument("--port", type=int, default=_env_port("TRANSLANE_SIM_PORT", DEFAULT_SIM_PORT))
    _sim_flags(sim)
    sim.set_defaults(func=_sim)

    shim = sub.add_parser("shim", help="the HTTP shim (OpenAI format + Immersive Translate custom API)")
    shim.add_argument("--host", default=None, help="default $TRANSLANE_SHIM_HOST or 127.0.0.1")
    shim.add_argument("--port", type=int, default=None, help=f"default $TRANSLANE_SHIM_PORT or {DEFAULT_SHIM_PORT}")
    shim.add_argument("--grpc-target", default=None, help="default $TRANSLANE_GRPC_TARGET or 127.0.0.1:50051")
    shim.set_defaults(func=_shim)

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
    tr.add_argument("--target", default=os.environ.get("TRANSLANE_GRPC_TARGET", f"127.0.0.1:{DEFAULT_GRPC_PORT}"))
    tr.set_defaults(func=_translate)

    from .tools.loadtest._cli import add_parser as add_loadtest

    add_loadtest(sub)

    from .tools.files._cli import add_parser as add_files

    add_files(sub, f"127.0.0.1:{DEFAULT_GRPC_PORT}")

    batch = sub.add_parser("batch", help="translate an OpenAI Batch JSONL file through the service, resumably")
    batch.add_argument("action", choices=("run",))
    batch.add_argument("input", help="JSONL: OpenAI Batch lines or {custom_id, text|segments, target_language}")
    batch.add_argument("-o", "--output", required=True, help="JSONL in the OpenAI Batch output format (appended)")
    batch.add_argument("--target", default=os.environ.get("TRANSLANE_GRPC_TARGET", f"127.0.0.1:{DEFAULT_GRPC_PORT}"))
    batch.add_argument("--to", default="zh", help="target language of lines that name none (default zh)")
    batch.add_argument("--max-in-flight", type=int, default=256)
    batch.add_argument("--deadline", type=float, default=600.0, help="seconds a line may take, queue included")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    batch.set_defaults(func=_batch)

    models = sub.add_parser("models", help="list a running server's models")
    models.add_argument("--target", default=os.environ.get("TRANSLANE_GRPC_TARGET", f"127.0.0.1:{DEFAULT_GRPC_PORT}"))
    models.set_defaults(func=_models)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `translane` command."""
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        code: int = uvloop.run(args.func(args))
        return code
    except ConfigError as exc:
        print(f"translane: bad configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"translane: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
