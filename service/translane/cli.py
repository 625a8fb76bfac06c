"""The `translane` command: up, serve, sim, shim, translate, models, usage, loadtest, file, batch."""

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

from . import settings
from .config import Config, ConfigError, load_config
from .tools import batch, client, files, loadtest

__all__ = ["main"]

log = logging.getLogger("translane")

DEFAULT_SHIM_PORT = 8000
DEFAULT_SIM_PORT = 8900


def _env_port(name: str, default: int) -> int:
    return settings.integer(os.environ, name, default)


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

    cfg = _config(args)
    # A provider that names a key variable left unset would refuse every call: say so now, not at the first one.
    redirected = getattr(args, "upstream_url", None) or os.environ.get("TRANSLANE_UPSTREAM_URL")
    used = sorted({m.provider for m in cfg.models.values()})
    for name in [] if redirected else used:
        provider = cfg.providers[name]
        if not provider.api_key_env or provider.api_key:
            continue
        log.warning(
            "provider %s (%s) has no key: $%s is not set, so its calls will be refused; set it, or run on the "
            "simulated provider with `translane up` or `translane serve --upstream-url http://127.0.0.1:8900/api/v3`",
            name,
            provider.base_url,
            provider.api_key_env,
        )
    with tracing("translane"):
        await serve(cfg)
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
        pseudo_translate=0.0 if args.echo else 1.0,
    )


async def _sim(args: argparse.Namespace) -> int:
    from .sim import run_sim

    cfg = load_config(args.models_file)
    port = args.port if args.port is not None else _env_port("TRANSLANE_SIM_PORT", DEFAULT_SIM_PORT)
    log.info("simulated provider on http://%s:%d/api/v3 (not a real translation)", args.host, port)
    await _until_signal(run_sim(_sim_config(cfg, args), args.host, port))
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
    sim_port = args.sim_port if args.sim_port is not None else _env_port("TRANSLANE_SIM_PORT", DEFAULT_SIM_PORT)
    shim_port = args.shim_port if args.shim_port is not None else _env_port("TRANSLANE_SHIM_PORT", DEFAULT_SHIM_PORT)
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

        sim_url = f"http://127.0.0.1:{sim_port}/api/v3"
        cfg = cfg.with_upstream_url(sim_url)
        coros.append(run_sim(_sim_config(cfg, args), "127.0.0.1", sim_port))
        log.info("no ARK_API_KEY: using the simulated provider at %s (translations are marked [sim])", sim_url)
    else:
        log.info("ARK_API_KEY set: using the real provider")
    coros.append(serve(cfg))
    try:
        from gateway_shim import ShimConfig, run_shim
    except ImportError:
        run_shim = None  # type: ignore[assignment]
    if run_shim is not None and not args.no_shim:
        shim_cfg = ShimConfig.from_env(host="127.0.0.1", port=shim_port, grpc_target=f"127.0.0.1:{cfg.server.port}")
        coros.append(run_shim(shim_cfg))
    await _until_signal(*coros)
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
    g.add_argument(
        "--echo",
        action="store_true",
        help="answer with the text as sent, marked [sim SRC->TGT] (default: pseudo-words "
        "of the target language, in its script, that a language identifier reads as the target)",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="translane", description=__doc__)
    p.add_argument("--log-level", default=os.environ.get("TRANSLANE_LOG_LEVEL", "INFO"))
    p.add_argument(
        "--models-file", default=None, help="models file (TOML/YAML); default $TRANSLANE_MODELS_FILE or the shipped one"
    )
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="simulated provider (unless ARK_API_KEY is set) + gRPC server + HTTP shim")
    # Ports from the environment are read by the command that serves them, not by every command.
    up.add_argument("--port", type=int, default=None, help="default: server.port or $TRANSLANE_GRPC_PORT")
    up.add_argument("--shim-port", type=int, default=None, help=f"default $TRANSLANE_SHIM_PORT or {DEFAULT_SHIM_PORT}")
    up.add_argument("--sim-port", type=int, default=None, help=f"default $TRANSLANE_SIM_PORT or {DEFAULT_SIM_PORT}")
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
    sim.add_argument("--port", type=int, default=None, help=f"default $TRANSLANE_SIM_PORT or {DEFAULT_SIM_PORT}")
    _sim_flags(sim)
    sim.set_defaults(func=_sim)

    shim = sub.add_parser("shim", help="the HTTP shim (OpenAI format + Immersive Translate custom API)")
    shim.add_argument("--host", default=None, help="default $TRANSLANE_SHIM_HOST or 127.0.0.1")
    shim.add_argument("--port", type=int, default=None, help=f"default $TRANSLANE_SHIM_PORT or {DEFAULT_SHIM_PORT}")
    shim.add_argument(
        "--grpc-target", default=None, help=f"default ${settings.GRPC_TARGET_ENV} or {settings.DEFAULT_GRPC_TARGET}"
    )
    shim.set_defaults(func=_shim)

    # The tools (translane.tools), clients of the service: each adds its own subcommands.
    default_target = settings.grpc_target()  # $TRANSLANE_GRPC_TARGET, read here once for every tool
    client.add_parser(sub, default_target)
    loadtest.add_parser(sub)
    files.add_parser(sub, default_target)
    batch.add_parser(sub, default_target)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `translane` command."""
    try:
        args = _parser().parse_args(argv)
    except ConfigError as exc:
        print(f"translane: bad configuration: {exc}", file=sys.stderr)
        return 2
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
