"""The shim in-process on a free port, in front of the real gRPC server and the simulated provider."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest
import pytest_asyncio
from translane.server import RunningServer

from gateway_shim import RunningShim, ShimConfig, running_shim

KEY = "sk-test-key"


@pytest.fixture
def shim_config() -> ShimConfig:
    """Override in a test module or class to change the shim's config (grpc_target is filled in)."""
    return ShimConfig(port=0, default_target_language="zh")


@pytest_asyncio.fixture
async def shim(shim_config: ShimConfig, server: RunningServer) -> AsyncIterator[RunningShim]:
    cfg = dataclasses.replace(shim_config, grpc_target=f"127.0.0.1:{server.port}")
    async with running_shim(cfg) as running:
        yield running


@pytest_asyncio.fixture
async def http(shim: RunningShim) -> AsyncIterator[aiohttp.ClientSession]:
    """Raw HTTP to the shim, with the test key (ignored when the shim has no keys)."""
    async with aiohttp.ClientSession(shim.url, headers={"Authorization": f"Bearer {KEY}"}) as session:
        yield session


@pytest_asyncio.fixture
async def client(shim: RunningShim) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official OpenAI SDK pointed at the shim; no retries, so errors show as they are."""
    async with openai.AsyncOpenAI(base_url=f"{shim.url}/v1", api_key=KEY, max_retries=0) as c:
        yield c
