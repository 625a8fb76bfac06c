"""The shim's door with a tenants file: each bearer key names its tenant, which the shim names to the service
as a trusted gateway; a tenant past its own limit gets 429 naming it while the others are served."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import aiohttp
import openai
import pytest
from translane.config import Config

from gateway_shim import RunningShim, ShimConfig

from ..conftest import Sim, server_config
from ..helpers.eventually import eventually

KEY_A, KEY_B, KEY_GATE, KEY_OPS = "sk-shim-team-a", "sk-shim-team-b", "sk-shim-gateway", "sk-shim-ops"
TENANTS = f"""
[tenants.team-a]
api_keys = ["{KEY_A}"]
rpm = 1

[tenants.team-b]
api_keys = ["{KEY_B}"]

[tenants.shim]
api_keys = ["{KEY_GATE}"]
gateway = true

[tenants.ops]
api_keys = ["{KEY_OPS}"]
admin = true
"""
BODY = {"model": "doubao-seed-translation-250915", "messages": [{"role": "user", "content": "Hello"}]}


@pytest.fixture
def tenants_file(tmp_path: Path) -> Path:
    path = tmp_path / "tenants.toml"
    path.write_text(TENANTS, encoding="utf-8")
    return path


@pytest.fixture
def config(sim: Sim, tenants_file: Path) -> Config:
    cfg = server_config(sim)
    return dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, tenants_file=str(tenants_file)))


@pytest.fixture
def shim_config(tenants_file: Path) -> ShimConfig:
    return ShimConfig(port=0, default_target_language="zh", tenants_file=str(tenants_file), service_key=KEY_GATE)


async def chat(shim: RunningShim, key: str) -> tuple[int, dict[str, str], dict[str, object]]:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as s, s.post(f"{shim.url}/v1/chat/completions", json=BODY, headers=headers) as r:
        return r.status, dict(r.headers), await r.json()


async def test_a_tenant_over_its_rpm_gets_429_naming_it_while_another_is_served(shim: RunningShim) -> None:
    status, _, _ = await chat(shim, KEY_A)
    assert status == 200
    status, headers, body = await chat(shim, KEY_A)
    assert status == 429, body
    error = body["error"]
    assert isinstance(error, dict) and error["message"].startswith("tenant team-a: rpm 1 reached")
    assert headers["Retry-After"] == "60"
    assert (await chat(shim, KEY_B))[0] == 200


async def test_keys_the_file_does_not_hold_are_401(shim: RunningShim) -> None:
    status, headers, _ = await chat(shim, "sk-nobody")
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    # The gateway's own key is a key of the file too: a caller holding it acts as the gateway, for no one else.
    assert (await chat(shim, KEY_GATE))[0] == 200


async def test_without_the_gateway_key_the_service_refuses_the_tenant_the_shim_names(
    server: object, shim_config: ShimConfig, tenants_file: Path
) -> None:
    from translane.server import RunningServer

    from gateway_shim import running_shim

    assert isinstance(server, RunningServer)
    # A shim holding team-b's key as its own is no gateway: naming team-a is refused, not believed.
    cfg = dataclasses.replace(shim_config, grpc_target=f"127.0.0.1:{server.port}", service_key=KEY_B)
    async with running_shim(cfg) as shim:
        status, _, body = await chat(shim, KEY_A)
    assert status == 403, body
    error = body["error"]
    assert isinstance(error, dict) and "not a trusted gateway" in str(error["message"])


async def usage(shim: RunningShim, key: str, **params: str) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as s, s.get(f"{shim.url}/v1/usage", params=params, headers=headers) as r:
        return r.status, await r.json()


async def test_a_tenant_reads_its_own_usage_and_an_admin_everyones(shim: RunningShim) -> None:
    assert (await chat(shim, KEY_A))[0] == 200
    assert (await chat(shim, KEY_B))[0] == 200
    status, own = await usage(shim, KEY_A)
    assert status == 200, own
    assert [(r["tenant"], r["requests"]) for r in own["data"]] == [("team-a", 1)]  # type: ignore[index, union-attr]
    for asked in ("team-b", "*"):
        status, denied = await usage(shim, KEY_A, tenant=asked)
        assert status == 403 and denied["error"]["param"] == "tenant"  # type: ignore[index, call-overload]
    status, every = await usage(shim, KEY_OPS)
    assert status == 200, every
    assert sorted((r["tenant"], r["requests"]) for r in every["data"]) == [("team-a", 1), ("team-b", 1)]  # type: ignore[index, union-attr]
    status, one = await usage(shim, KEY_OPS, tenant="team-b")
    assert [r["tenant"] for r in one["data"]] == ["team-b"]  # type: ignore[index, union-attr]


async def test_files_and_batches_are_their_tenants_alone(shim: RunningShim) -> None:
    line = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {**BODY, "target_language": "ja"},
    }
    data = (json.dumps(line) + "\n").encode()
    async with (
        openai.AsyncOpenAI(base_url=f"{shim.url}/v1", api_key=KEY_B, max_retries=0) as b,
        openai.AsyncOpenAI(base_url=f"{shim.url}/v1", api_key=KEY_OPS, max_retries=0) as other,
    ):
        upload = await b.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
        batch = await b.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        # Another tenant (an admin too) is told no such file or batch, lists none, and cannot use the file.
        for call in (
            other.files.retrieve(upload.id),
            other.files.content(upload.id),
            other.files.delete(upload.id),
            other.batches.retrieve(batch.id),
            other.batches.cancel(batch.id),
            other.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"),
        ):
            with pytest.raises(openai.NotFoundError):
                await call
        assert (await other.files.list()).data == [] and (await other.batches.list()).data == []

        async def ended() -> bool:
            return (await b.batches.retrieve(batch.id)).status == "completed"

        await eventually(ended, 20.0, "the batch completed")
        done = await b.batches.retrieve(batch.id)
        assert done.output_file_id is not None
        assert [f.id for f in (await b.files.list()).data] == [done.output_file_id, upload.id]
        with pytest.raises(openai.NotFoundError):
            await other.files.content(done.output_file_id)
        assert json.loads((await b.files.content(done.output_file_id)).content)["custom_id"] == "a"


async def test_the_shims_api_keys_beside_a_tenants_file_are_the_tenant_default(
    server: object, shim_config: ShimConfig
) -> None:
    from translane.server import RunningServer

    from gateway_shim import running_shim

    assert isinstance(server, RunningServer)
    # The file names no tenant `default`: the service still takes the shim's word for it, with no limits.
    cfg = dataclasses.replace(shim_config, grpc_target=f"127.0.0.1:{server.port}", api_keys=frozenset({"sk-legacy"}))
    async with running_shim(cfg) as shim:
        for _ in range(2):  # past team-a's rpm of 1: `default` has no limit of its own
            status, _, body = await chat(shim, "sk-legacy")
            assert status == 200, body
        status, own = await usage(shim, "sk-legacy")
    assert status == 200, own
    assert [(r["tenant"], r["requests"]) for r in own["data"]] == [("default", 2)]  # type: ignore[index, union-attr]
