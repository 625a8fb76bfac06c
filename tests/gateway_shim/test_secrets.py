"""Keys never leave: no log line, no error body and no metric of the shim or the service holds a configured key."""

from __future__ import annotations

import dataclasses
import logging

import aiohttp
import pytest
from translane.config import Config, load_config
from translane.server import RunningServer
from translane.sim import SimConfig

from gateway_shim import RunningShim, ShimConfig

from ..conftest import Sim, server_config

SHIM_KEY = "sk-shim-secret-7f3a9c2e"
UPSTREAM_KEY = "ark-upstream-secret-91d0b4"


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig.from_config(load_config(env={}), api_key=UPSTREAM_KEY)


@pytest.fixture
def config(sim: Sim) -> Config:
    cfg = server_config(sim)
    providers = {n: dataclasses.replace(p, api_key=UPSTREAM_KEY) for n, p in cfg.providers.items()}
    return dataclasses.replace(cfg, providers=providers)


@pytest.fixture
def shim_config() -> ShimConfig:
    return ShimConfig(port=0, default_target_language="zh", api_keys=frozenset({SHIM_KEY}))


async def test_no_key_in_any_log_line_error_body_or_metric(
    shim: RunningShim, server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    good = {"Authorization": f"Bearer {SHIM_KEY}"}
    requests = [
        ({}, {"messages": [{"role": "user", "content": "Hi"}]}),
        ({"Authorization": f"Bearer {SHIM_KEY}x"}, {"messages": [{"role": "user", "content": "Hi"}]}),
        ({"Authorization": f"Basic {SHIM_KEY}"}, {"messages": [{"role": "user", "content": "Hi"}]}),
        (good, {"messages": [{"role": "user", "content": "Hi"}]}),
        (good, {"model": "no-such-model", "messages": [{"role": "user", "content": "Hi"}]}),
        (good, {"messages": "not a list"}),
        (good, {"stream": True, "messages": [{"role": "user", "content": "Hi"}]}),
    ]
    async with aiohttp.ClientSession(shim.url) as s:
        for headers, body in requests:
            async with s.post("/v1/chat/completions", json=body, headers=headers) as r:
                seen.append(await r.text())
                seen.extend(f"{k}: {v}" for k, v in r.headers.items())
        async with s.get("/metrics") as r:
            seen.append(await r.text())
    logged = [record.getMessage() + repr(record.__dict__) for record in caplog.records]
    assert logged  # the requests were logged: there was something to search
    for text in [*logged, *seen]:
        assert SHIM_KEY not in text and UPSTREAM_KEY not in text, text[:300]
    assert any("invalid API key" in text for text in seen)
