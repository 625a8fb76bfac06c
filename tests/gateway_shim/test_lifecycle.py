"""Cancellation on disconnect, CORS, health, trace context, and configuration from the environment."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import get_type_hints

import aiohttp
import pytest
from aiohttp import web
from translane.config import ConfigError
from translane.server import RunningServer
from translane.settings import DEFAULT_GRPC_TARGET, declaration

from gateway_shim import RunningShim, ShimConfig, run_shim, running_shim

from ..conftest import Sim
from ..helpers.eventually import eventually


@pytest.mark.parametrize("stream", [False, True])
async def test_client_disconnect_cancels_the_grpc_call(
    shim: RunningShim, server: RunningServer, sim: Sim, stream: bool
) -> None:
    await sim.set(ttft_s=1.5)  # the provider would answer at 1.5 s; the client leaves at 0.3 s
    lane = server.engine.lanes["slow"]
    timeout = aiohttp.ClientTimeout(total=0.3)
    async with aiohttp.ClientSession(shim.url, timeout=timeout) as s:
        with pytest.raises(asyncio.TimeoutError):
            async with s.post(
                "/v1/chat/completions", json={"stream": stream, "messages": [{"role": "user", "content": "Hi"}]}
            ) as r:
                await r.read()
    # The upstream call was in flight when the client left...
    assert lane.granted == 1
    # ...and leaving freed the lane long before the provider would have answered.
    await eventually(lambda: lane.in_flight == 0, 0.8, "the lane's slot freed")


async def test_healthz_and_cors(server: RunningServer) -> None:
    cfg = ShimConfig(
        port=0, grpc_target=f"127.0.0.1:{server.port}", cors_origins=("chrome-extension://*", "https://example.org")
    )
    async with running_shim(cfg) as shim, aiohttp.ClientSession(shim.url) as s:
        async with s.options(
            "/v1/chat/completions",
            headers={
                "Origin": "chrome-extension://abcdef",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        ) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == "chrome-extension://abcdef"
            assert "authorization" in r.headers["Access-Control-Allow-Headers"]
            assert "POST" in r.headers["Access-Control-Allow-Methods"]
        async with s.post(
            "/translate",
            json={"text_list": ["Hi"], "target_lang": "zh-CN"},
            headers={"Origin": "https://example.org", "X-Task-Id": "t1"},
        ) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "https://example.org"
            assert "X-Task-Id" in r.headers["Access-Control-Expose-Headers"]
        async with s.get("/healthz", headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 200 and await r.json() == {"status": "SERVING"}
            assert "Access-Control-Allow-Origin" not in r.headers


async def test_health_follows_the_service(shim: RunningShim, server: RunningServer) -> None:
    async with aiohttp.ClientSession(shim.url) as s:
        await server.health.enter_graceful_shutdown()
        async with s.get("/healthz") as r:
            assert r.status == 503 and (await r.json())["status"] == "NOT_SERVING"


def test_config_from_env(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# comment\nsk-a\n\nsk-b\n")
    cfg = ShimConfig.from_env(
        env={
            "TRANSLANE_SHIM_HOST": "0.0.0.0",
            "TRANSLANE_SHIM_PORT": "9000",
            "TRANSLANE_API_KEYS": "sk-c, sk-a",
            "TRANSLANE_API_KEYS_FILE": str(keys),
            "TRANSLANE_SHIM_MAX_BODY_BYTES": "4096",
            "TRANSLANE_SHIM_CORS_ORIGINS": "chrome-extension://x, *",
            "TRANSLANE_DEFAULT_TARGET_LANGUAGE": "zh-TW",
            "TRANSLANE_SHIM_TIMEOUT_S": "30",
            "TRANSLANE_GRPC_TARGET": "svc:50051",
            "TRANSLANE_SHIM_STREAM_SEND_BUFFER_BYTES": "0",
        }
    )
    assert (cfg.host, cfg.port, cfg.grpc_target) == ("0.0.0.0", 9000, "svc:50051")
    assert cfg.api_keys == {"sk-a", "sk-b", "sk-c"} and "sk-a" not in repr(cfg)
    assert cfg.max_body_bytes == 4096 and cfg.cors_origins == ("chrome-extension://x", "*")
    assert cfg.default_target_language == "zh-Hant" and cfg.timeout_s == 30 and cfg.stream_send_buffer_bytes == 0
    # Arguments win over the environment; defaults fill the rest.
    cfg = ShimConfig.from_env(host="127.0.0.1", port=0, grpc_target="a:1", env={"TRANSLANE_SHIM_PORT": "1"})
    assert (cfg.host, cfg.port, cfg.grpc_target, cfg.max_body_bytes) == ("127.0.0.1", 0, "a:1", 2 * 1024 * 1024)
    assert (
        cfg.default_target_language == ""
        and cfg.passthrough_model == ""
        and cfg.timeout_s == 120
        and cfg.stream_send_buffer_bytes == 65536
    )
    with pytest.raises(ConfigError, match="TRANSLANE_SHIM_STREAM_SEND_BUFFER_BYTES"):
        ShimConfig.from_env(env={"TRANSLANE_SHIM_STREAM_SEND_BUFFER_BYTES": "-1"})


def test_no_keys_on_a_public_host_is_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="TRANSLANE_SHIM_ALLOW_PUBLIC"):
        ShimConfig.from_env(env={"TRANSLANE_SHIM_HOST": "0.0.0.0"})
    assert ShimConfig.from_env(env={"TRANSLANE_SHIM_HOST": "0.0.0.0", "TRANSLANE_SHIM_ALLOW_PUBLIC": "1"})
    assert ShimConfig.from_env(env={"TRANSLANE_SHIM_HOST": "0.0.0.0", "TRANSLANE_API_KEYS": "k"})
    assert ShimConfig.from_env(env={"TRANSLANE_SHIM_HOST": "::1"})
    with pytest.raises(ConfigError, match="TRANSLANE_SHIM_PORT"):
        ShimConfig.from_env(env={"TRANSLANE_SHIM_PORT": "http"})
    with pytest.raises(ConfigError, match="TRANSLANE_API_KEYS_FILE"):
        ShimConfig.from_env(env={"TRANSLANE_API_KEYS_FILE": "/nonexistent/keys"})


@pytest.mark.parametrize("word", ["1", "true", "YES", " on ", "0", "false", "No", "off", ""])
def test_one_boolean_rule_as_in_the_service(word: str) -> None:
    cfg = ShimConfig.from_env(env={"TRANSLANE_SHIM_ALLOW_PUBLIC": word})
    assert cfg.allow_public is (word.strip().lower() in ("1", "true", "yes", "on"))


def test_a_flag_that_is_neither_is_refused_naming_the_variable() -> None:
    # Once read as false (a keyless shim then refused to listen publicly for another reason); now named.
    with pytest.raises(ConfigError) as info:
        ShimConfig.from_env(env={"TRANSLANE_SHIM_HOST": "0.0.0.0", "TRANSLANE_SHIM_ALLOW_PUBLIC": "maybe"})
    assert str(info.value) == "TRANSLANE_SHIM_ALLOW_PUBLIC: expected 1/0, true/false, yes/no or on/off, got 'maybe'"


def test_every_setting_is_declared_with_its_variable_and_read_from_it() -> None:
    """A field added to ShimConfig declares where it comes from, and from_env reads it there."""
    samples = {
        int: ("7", 7),
        float: ("1.5", 1.5),
        bool: ("yes", True),
        str: ("ja", "ja"),
        tuple[str, ...]: ("ja, x", ("ja", "x")),
        frozenset[str]: ("ja", frozenset({"ja"})),
    }
    hints = get_type_hints(ShimConfig)
    for f in dataclasses.fields(ShimConfig):
        decl = declaration(f)
        if decl.derived:
            assert f.name == "backend_tls" and "TRANSLANE_CLIENT_TLS_" in decl.derived
            continue
        assert decl.env.startswith("TRANSLANE_"), f.name
        raw, value = samples[hints[f.name]]
        # (A tenants file needs the shim's key at the service beside it.)
        cfg = ShimConfig.from_env(env={"TRANSLANE_API_KEYS": "k", "TRANSLANE_SHIM_SERVICE_KEY": "g", decl.env: raw})
        assert getattr(cfg, f.name) == value, decl.env
        if hints[f.name] in (int, float, bool):
            with pytest.raises(ConfigError, match=f"^{decl.env}: "):
                ShimConfig.from_env(env={decl.env: "maybe"})
    assert ShimConfig().grpc_target == ShimConfig.from_env(env={}).grpc_target == DEFAULT_GRPC_TARGET
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert all(declaration(f).env in readme for f in dataclasses.fields(ShimConfig) if declaration(f).env)


async def test_run_shim_warns_without_keys_and_cleans_up(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = ShimConfig(port=0, default_target_language="zh", grpc_target=f"127.0.0.1:{server.port}")
    with caplog.at_level(logging.INFO, logger="translane.shim"):
        task = asyncio.create_task(run_shim(cfg))
        listening = "listens on 127.0.0.1 only"
        await eventually(lambda: any(listening in r.message for r in caplog.records), 2.0, f"the log: {listening}")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_extra_routes_sit_behind_auth_unless_open(server: RunningServer) -> None:
    async def status(request: web.Request) -> web.Response:
        return web.Response(text="all good\n")

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("internal detail")

    cfg = ShimConfig(
        port=0, default_target_language="zh", grpc_target=f"127.0.0.1:{server.port}", api_keys=frozenset({"k"})
    )
    routes = [web.get("/status", status), web.get("/broken", broken)]
    async with running_shim(cfg, extra_routes=routes, open_paths=["/status"]) as shim:
        async with aiohttp.ClientSession(shim.url) as s:
            async with s.get("/status") as r:
                assert r.status == 200 and "all good" in await r.text()
            # The shim's own metrics need no key either: Prometheus and the kubelet's probes have none.
            async with s.get("/metrics") as r:
                assert r.status == 200 and "translane_shim_requests_total" in await r.text()
            async with s.get("/broken") as r:
                assert r.status == 401
            async with s.get("/broken", headers={"Authorization": "Bearer k"}) as r:
                assert r.status == 500
                body = await r.text()
    # A bug answers with OpenAI error JSON, never a traceback or the exception's text.
    assert "internal error in the shim" in body and "internal detail" not in body and "Traceback" not in body


async def test_a_client_that_leaves_mid_stream_is_counted_as_499(shim: RunningShim, sim: Sim) -> None:
    await sim.set(ttft_s=0.05, tokens_per_s=20)  # a slow stream: the client leaves after its first chunk
    body = {"stream": True, "messages": [{"role": "user", "content": "A sentence long enough to stream for a while."}]}
    async with aiohttp.ClientSession(shim.url) as s:
        r = await s.post("/v1/chat/completions", json=body)
        assert r.status == 200
        await r.content.readline()
        r.close()  # hang up mid-stream

        async def counted() -> str | None:
            async with s.get("/metrics") as m:
                text = await m.text()
            return text if 'route="/v1/chat/completions",status="499"' in text else None

        text = await eventually(counted, 4.0, "a 499 in the shim's metrics", interval_s=0.02)
    assert 'route="/v1/chat/completions",status="200"' not in text


def test_a_tenants_file_without_an_identity_at_the_service_is_refused(tmp_path: Path) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text('[tenants.a]\napi_keys = ["k"]\n')
    # Every caller would be refused by the service, one call at a time: the start says why instead.
    with pytest.raises(ConfigError, match="TRANSLANE_SHIM_SERVICE_KEY"):
        ShimConfig.from_env(env={"TRANSLANE_TENANTS_FILE": str(tenants)})
    assert ShimConfig.from_env(env={"TRANSLANE_TENANTS_FILE": str(tenants), "TRANSLANE_SHIM_SERVICE_KEY": "g"})
