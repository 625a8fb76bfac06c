"""translane commands (`python -m translane.cli ...`) as child processes on loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from .eventually import eventually_sync

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accepts(port: int) -> bool:
    """Whether something accepts a TCP connection on loopback `port` now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment less any OTEL_* / TRANSLANE_* settings it happens to have, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRANSLANE_", "ARK_"))}
    # No segment cache unless a test asks for one: tests count provider calls.
    return {"TRANSLANE_CACHE": "off"} | env | extra


@contextlib.contextmanager
def translane(
    args: list[str], port: int, log: Path, env: Mapping[str, str], timeout_s: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `translane ARGS` with its output in `log`, wait until `port` answers; SIGTERM (then kill) on exit."""
    with log.open("wb") as out:
        command = [sys.executable, "-m", "translane.cli", *args]
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=dict(env), cwd=ROOT)

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"translane {args[0]} exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        return accepts(port)

    try:
        eventually_sync(listening, timeout_s, f"translane {args[0]} listening on port {port}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
