"""Helpers the benchmark scripts share: child processes on loopback, load schedules, percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRANSLANE = [sys.executable, "-m", "translane.cli"]

# A model whose limits sit far above any load here: the governor admits everything,
# so what is measured is translane's own cost.
UNTHROTTLED_MODELS = """
default_model = "bench"
[server]
grace_s = 1.0
[cache]
kind = "off"  # the same sentence again and again: measured, not cached
[providers.sim]
base_url = "http://127.0.0.1:1/api/v3"
[lanes.bench]
max_concurrency = 2000
[models.bench]
provider = "sim"
api_style = "responses"
lane = "bench"
rpm = 60000000
tpm = 6000000000
max_concurrency = 100000
max_input_tokens = 1000
max_output_tokens = 3000
context_tokens = 4000
"""
BENCH_TEXT = "The quick brown fox jumps over the lazy dog."

# The slow lane's translation model with its published limits, as the provider-bound benchmarks use it.
SLOW_MODEL = "doubao-seed-translation-250915"
SLOW_RPM, SLOW_TPM = 5000, 500_000


def slow_models(window_s: float = 60.0, rpm: int = SLOW_RPM, tpm: int = SLOW_TPM, cache: Path | None = None) -> str:
    """A models file with SLOW_MODEL alone (no fallbacks) at `rpm`/`tpm` per `window_s`; the segment cache off,
    or in `cache` (a SQLite file)."""
    cache_table = f'kind = "sqlite"\npath = "{cache}"' if cache is not None else 'kind = "off"'
    return f"""
default_model = "{SLOW_MODEL}"
[server]
grace_s = 1.0
[cache]
{cache_table}
[governor]
window_s = {window_s}
[providers.ark]
base_url = "http://127.0.0.1:1/api/v3"
api_key_env = "ARK_API_KEY"
[lanes.slow]
max_concurrency = 80
[models."{SLOW_MODEL}"]
provider = "ark"
api_style = "responses"
lane = "slow"
rpm = {rpm}
tpm = {tpm}
max_concurrency = 80
max_input_tokens = 1000
max_output_tokens = 3000
context_tokens = 4000
input_price_per_mtok = 1.2
output_price_per_mtok = 3.6
"""


def sim_stats(port: int, model: str = SLOW_MODEL) -> dict[str, float]:
    """The simulated provider's own count for `model` (/_sim/stats)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/stats", timeout=5) as r:
        return json.loads(r.read())["models"][model]  # type: ignore[no-any-return]


def sim_and_serve_args(models: Path, sim_port: int, grpc_port: int) -> tuple[list[str], list[str]]:
    """`translane` arguments for a zero-latency simulated provider and a server sending to it."""
    common = ["--models-file", str(models)]
    sim = [*common, "sim", "--port", str(sim_port), "--ttft-s", "0", "--tokens-per-s", "0"]
    serve = [*common, "serve", "--port", str(grpc_port), "--upstream-url", f"http://127.0.0.1:{sim_port}/api/v3"]
    return sim, serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def wait_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")


@contextlib.contextmanager
def process(
    args: list[str],
    port: int,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
    quiet: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `translane ARGS` (or `COMMAND ARGS`), wait for its port, stop it with SIGINT on exit; `quiet`:
    its standard error discarded (a script of someone else's that prints a traceback on SIGINT)."""
    full_env = dict(os.environ, **(env or {}))
    full_env.setdefault("TRANSLANE_LOG_LEVEL", "WARNING")
    stderr = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen([*(command or TRANSLANE), *args], env=full_env, cwd=ROOT, stderr=stderr)
    try:
        wait_port(port)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def otlp_sink() -> Iterator[tuple[dict[str, str], Callable[[], dict[str, int]]]]:
    """A local OTLP/HTTP receiver (bench/_otlp_sink.py, its own process): yields the OTEL_* environment that
    sends a translane process's traces to it, and a function reading how many requests and spans arrived."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_otlp_sink.py"), "--port", str(port)], cwd=ROOT)
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
    }

    def counts() -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    try:
        wait_port(port)
        yield env, counts
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


async def open_loop(rate: float, duration_s: float, call: Callable[[], Awaitable[object]]) -> tuple[list[float], int]:
    """Start `call` at a fixed rate whatever the replies do; return latencies (s) and failures."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    failures = 0

    async def one() -> None:
        nonlocal failures
        t0 = time.perf_counter()  # uvloop's loop.time() ticks in whole milliseconds
        try:
            await call()
        except Exception:
            failures += 1
            return
        latencies.append(time.perf_counter() - t0)

    tasks: list[asyncio.Task[None]] = []
    start = loop.time()
    n = int(rate * duration_s)
    for i in range(n):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies, failures


async def closed_loop(workers: int, duration_s: float, call: Callable[[], Awaitable[object]]) -> tuple[int, int]:
    """`workers` loops calling back to back for `duration_s`; return completed and failed counts."""
    loop = asyncio.get_running_loop()
    end = loop.time() + duration_s
    done = failed = 0

    async def worker() -> None:
        nonlocal done, failed
        while loop.time() < end:
            try:
                await call()
                done += 1
            except Exception:
                failed += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return done, failed
