"""Tenants: the file (hashed keys, reload on change and SIGHUP, a bad file kept out), identity on the gRPC port
(bearer keys, client certificates, a trusted gateway), and each tenant's own limits, alone and across two
replicas sharing a real redis-server."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
import trustme
from google.longrunning import operations_pb2 as lro
from google.longrunning import operations_pb2_grpc as lro_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from translane import tls
from translane.config import Config, ConfigError
from translane.errors import TenantLimited
from translane.server import RunningServer, running_server, serve
from translane.tenants import LocalLimits, TenantsFile, load_tenants, parse_tenants
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..conftest import Sim, server_config
from ..helpers.clock import FakeClock
from ..helpers.eventually import eventually
from ..helpers.redis_server import RedisServer

KEY_A, KEY_B, KEY_GATE = "sk-team-a", "sk-team-b", "sk-gateway"
HASHED_B = "sha256:" + hashlib.sha256(KEY_B.encode()).hexdigest()

TENANTS = f"""
[tenants.team-a]
api_keys = ["{KEY_A}"]
rpm = 2

[tenants.team-b]
api_keys = ["{HASHED_B}"]
models = ["doubao-seed-translation-250915"]
weight = 3

[tenants.shim]
api_keys = ["{KEY_GATE}"]
gateway = true

[tenants.tiny]
api_keys = ["sk-tiny"]
tpm = 50
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- the file ------------------------------------------------------------------------


def test_keys_plain_and_hashed_name_their_tenant_and_nothing_else(tmp_path: Path) -> None:
    tenants = load_tenants(str(write(tmp_path / "t.toml", TENANTS)))
    a, b = tenants.by_key(KEY_A), tenants.by_key(KEY_B)
    assert a is not None and a.name == "team-a" and a.rpm == 2
    assert b is not None and b.name == "team-b" and b.weight == 3.0
    assert tenants.by_key(HASHED_B) is None  # the digest is not itself a key
    assert tenants.by_key("sk-team-a ") is None
    assert tenants.weight("team-b") == 3.0 and tenants.weight("nobody") == 1.0
    assert KEY_A not in repr(a) and "api_keys" not in repr(a)


def test_api_keys_join_the_default_tenant(tmp_path: Path) -> None:
    tenants = parse_tenants({}, default_keys=["k1", "k2"])
    assert tenants.enforced
    k1 = tenants.by_key("k1")
    assert k1 is not None and k1.name == "default" and not k1.limited


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[tenants.a]\nrpm = -1\n", "tenants.a.rpm: must be >= 0"),
        ("[tenants.a]\nrmp = 5\n", "tenants.a.rmp: unknown field"),
        ('[tenants.a]\napi_keys = ["sha256:abc"]\n', "64 hexadecimal digits"),
        ('[tenants.a]\napi_keys = ["x"]\n[tenants.b]\napi_keys = ["x"]\n', "a key of tenant a too"),
        ('[tenants.a]\npriority_ceiling = "urgent"\n', "tenants.a.priority_ceiling: must be one of"),
        ("[tenants.a\n", "cannot parse"),
    ],
)
def test_a_bad_file_is_refused_naming_the_field(tmp_path: Path, text: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        load_tenants(str(write(tmp_path / "t.toml", text)))


def test_a_changed_file_is_read_again_on_the_clock_and_a_bad_one_kept_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "t.toml", TENANTS)
    clock = FakeClock()
    watched = TenantsFile(str(path), clock, check_s=5.0)
    write(path, TENANTS + '\n[tenants.team-c]\napi_keys = ["sk-team-c-longer"]\n')
    assert watched.current.by_key("sk-team-c-longer") is None  # not looked at before check_s
    clock.now = 5.0
    assert watched.current.by_key("sk-team-c-longer") is not None
    write(path, "[tenants.broken\n")
    clock.now = 10.0
    with caplog.at_level(logging.ERROR, "translane.tenants"):
        tenants = watched.current
    assert tenants.by_key("sk-team-c-longer") is not None, "a bad file must keep the tenants in force"
    assert "tenants file not reloaded" in caplog.text and "cannot parse" in caplog.text
    assert KEY_A not in caplog.text


# -- limits on an owned clock -----------------------------------------------------------


def test_tpm_is_reserved_then_settled_so_a_tenant_is_not_locked_out_early() -> None:
    clock = FakeClock()
    tenant = parse_tenants({"tenants": {"t": {"tpm": 1000, "max_concurrency": 2}}}).by_name["t"]
    limits = LocalLimits(clock, lambda: "2025-01-01", lambda: 3600.0)
    first = limits.check(tenant, 600)
    with pytest.raises(TenantLimited, match=r"tenant t: tpm 1000 reached \(this request needs about 600 tokens\)"):
        limits.check(tenant, 600)
    limits.settle(first, tenant, 100, 0.0, sent=True)  # it used 100: 500 go back at once
    second = limits.check(tenant, 600)
    third = limits.check(tenant, 100)
    with pytest.raises(TenantLimited, match="max_concurrency 2 reached"):
        limits.check(tenant, 1)
    limits.settle(second, tenant, 600, 0.0, sent=True)
    limits.settle(third, tenant, 100, 0.0, sent=True)
    with pytest.raises(TenantLimited) as refused:
        limits.check(tenant, 600)
    # 400 tokens short at 1000 a minute: 24 s.
    assert refused.value.retry_after_s == pytest.approx(24.0)
    clock.now = 24.0
    limits.check(tenant, 600)


def test_daily_budgets_refuse_until_the_next_day() -> None:
    clock = FakeClock()
    day = ["2025-01-01"]
    tenant = parse_tenants({"tenants": {"t": {"daily_token_budget": 100}}}).by_name["t"]
    limits = LocalLimits(clock, lambda: day[0], lambda: 7200.0)
    limits.settle(limits.check(tenant, 0), tenant, 150, 0.0, sent=True)
    with pytest.raises(TenantLimited, match="tenant t: daily_token_budget 100 spent") as refused:
        limits.check(tenant, 0)
    assert refused.value.retry_after_s == 7200.0
    day[0] = "2025-01-02"
    limits.check(tenant, 0)


# -- the gRPC port ------------------------------------------------------------------------


def with_tenants(cfg: Config, path: Path, **changes: object) -> Config:
    return dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, tenants_file=str(path), **changes))


@pytest.fixture
def config(sim: Sim, tmp_path: Path) -> Config:
    return with_tenants(server_config(sim), write(tmp_path / "tenants.toml", TENANTS))


REQ = pb.TranslateRequest(segments=["Hello"], target_language="zh")


def bearer(key: str, **extra: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"), *extra.items())


async def code_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_every_rpc_but_health_and_reflection_needs_an_identity(
    stub: pb_grpc.TranslatorStub, channel: grpc.aio.Channel
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Translate(REQ, timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer KEY" in (refused.value.details() or "")
    ops = lro_grpc.OperationsStub(channel)
    assert await code_of(stub.ListModels(pb.ListModelsRequest(), timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
    assert await code_of(ops.GetOperation(lro.GetOperationRequest(name="operations/x"), timeout=10)) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    batch = pb.BatchTranslateRequest(requests=[REQ])
    assert await code_of(stub.BatchTranslate(batch, timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
    chunks = stub.TranslateStream(REQ, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as streamed:
        async for _ in chunks:
            pass
    assert streamed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await code_of(stub.Translate(REQ, timeout=10, metadata=bearer("sk-nobody"))) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    resp = await stub.Translate(REQ, timeout=10, metadata=bearer(KEY_B))
    assert resp.translations[0].text
    models = await stub.ListModels(pb.ListModelsRequest(), timeout=10, metadata=bearer(KEY_B))
    assert [m.name for m in models.models] == ["doubao-seed-translation-250915"]


async def test_a_model_outside_the_tenants_list_is_permission_denied(stub: pb_grpc.TranslatorStub) -> None:
    req = pb.TranslateRequest(segments=["Hello"], target_language="zh", model="deepseek-v3-2-251201")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Translate(req, timeout=10, metadata=bearer(KEY_B))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "tenant team-b may not use 'deepseek-v3-2-251201'" in (refused.value.details() or "")


async def test_only_a_gateway_may_name_the_tenant_it_acts_for(stub: pb_grpc.TranslatorStub) -> None:
    forged = bearer(KEY_B, **{"x-translane-tenant": "team-a"})
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Translate(REQ, timeout=10, metadata=forged)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not a trusted gateway" in (refused.value.details() or "")
    unknown = bearer(KEY_GATE, **{"x-translane-tenant": "team-z"})
    assert await code_of(stub.Translate(REQ, timeout=10, metadata=unknown)) == grpc.StatusCode.PERMISSION_DENIED
    # The gateway acting for team-a spends team-a's rpm (2), and only team-a's.
    as_a = bearer(KEY_GATE, **{"x-translane-tenant": "team-a"})
    await stub.Translate(REQ, timeout=10, metadata=as_a)
    await stub.Translate(REQ, timeout=10, metadata=bearer(KEY_A))
    with pytest.raises(grpc.aio.AioRpcError) as limited:
        await stub.Translate(REQ, timeout=10, metadata=as_a)
    assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (limited.value.details() or "").startswith("tenant team-a: rpm 2 reached")
    assert dict(limited.value.trailing_metadata() or ())["retry-after"] == "30"
    assert await stub.Translate(REQ, timeout=10, metadata=bearer(KEY_GATE))  # the gateway itself: no limit
    assert await stub.Translate(REQ, timeout=10, metadata=bearer(KEY_B))  # others untouched


async def test_a_request_larger_than_the_tenants_whole_tpm_is_invalid_not_retried(
    stub: pb_grpc.TranslatorStub,
) -> None:
    big = pb.TranslateRequest(segments=["A sentence of some length to translate. " * 20], target_language="zh")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Translate(big, timeout=10, metadata=bearer("sk-tiny"))
    # No retry hint: waiting never makes it fit.
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "more than tenant tiny's whole tpm of 50" in (refused.value.details() or "")
    assert "retry-after" not in dict(refused.value.trailing_metadata() or ())
    assert await stub.Translate(REQ, timeout=10, metadata=bearer("sk-tiny"))  # a small one fits


async def test_a_job_is_its_tenants_alone_and_its_lines_keep_the_tenants_rules(
    stub: pb_grpc.TranslatorStub, channel: grpc.aio.Channel
) -> None:
    ops = lro_grpc.OperationsStub(channel)
    other = pb.TranslateRequest(segments=["Hi"], target_language="zh", model="deepseek-v3-2-251201")
    op = await stub.BatchTranslate(pb.BatchTranslateRequest(requests=[REQ, other]), metadata=bearer(KEY_B))
    done = await ops.WaitOperation(lro.WaitOperationRequest(name=op.name), timeout=20, metadata=bearer(KEY_B))
    answer = pb.BatchTranslateResponse()
    assert done.done and done.response.Unpack(answer)
    # The line for a model team-b may not use fails alone, as Translate would have answered it.
    assert answer.results[0].response.translations[0].text
    assert answer.results[1].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    # Another tenant is told no such job, whatever it asks; its list does not hold it.
    for call in (
        ops.GetOperation(lro.GetOperationRequest(name=op.name), timeout=10, metadata=bearer(KEY_A)),
        ops.WaitOperation(lro.WaitOperationRequest(name=op.name), timeout=10, metadata=bearer(KEY_A)),
        ops.CancelOperation(lro.CancelOperationRequest(name=op.name), timeout=10, metadata=bearer(KEY_A)),
        ops.DeleteOperation(lro.DeleteOperationRequest(name=op.name), timeout=10, metadata=bearer(KEY_A)),
    ):
        assert await code_of(call) == grpc.StatusCode.NOT_FOUND
    listed = await ops.ListOperations(lro.ListOperationsRequest(), timeout=10, metadata=bearer(KEY_A))
    assert op.name not in [o.name for o in listed.operations]
    listed = await ops.ListOperations(lro.ListOperationsRequest(), timeout=10, metadata=bearer(KEY_B))
    assert op.name in [o.name for o in listed.operations]
    await ops.DeleteOperation(lro.DeleteOperationRequest(name=op.name), timeout=10, metadata=bearer(KEY_B))


async def test_sighup_reads_the_tenants_file_again(sim: Sim, tmp_path: Path) -> None:
    path = write(tmp_path / "tenants.toml", TENANTS)
    cfg = with_tenants(server_config(sim), path)
    cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, port=_free_port()))
    ready = asyncio.Event()
    serving = asyncio.create_task(serve(cfg, ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{cfg.server.port}") as ch:
            stub = pb_grpc.TranslatorStub(ch)
            new_key = bearer("sk-team-c-new")
            assert await code_of(stub.Translate(REQ, timeout=10, metadata=new_key)) == grpc.StatusCode.UNAUTHENTICATED
            write(path, TENANTS + '\n[tenants.team-c]\napi_keys = ["sk-team-c-new"]\n')
            os.kill(os.getpid(), signal.SIGHUP)

            async def served() -> bool:
                return await code_of(stub.Translate(REQ, timeout=10, metadata=new_key)) == grpc.StatusCode.OK

            await eventually(served, 5.0, "the new tenant's key accepted after SIGHUP")
    finally:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serving, 10)


async def test_a_file_that_names_no_tenant_yet_lets_anyone_in_until_it_does(sim: Sim, tmp_path: Path) -> None:
    path = write(tmp_path / "tenants.toml", "# no tenants yet\n")
    async with (
        running_server(with_tenants(server_config(sim), path)) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch,
    ):
        stub = pb_grpc.TranslatorStub(ch)
        assert await code_of(stub.Translate(REQ, timeout=10)) == grpc.StatusCode.OK
        write(path, TENANTS)
        assert server.engine.tenants.reload()
        assert await code_of(stub.Translate(REQ, timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
        assert await code_of(stub.Translate(REQ, timeout=10, metadata=bearer(KEY_B))) == grpc.StatusCode.OK
        write(path, "# no tenants again\n")
        assert server.engine.tenants.reload()
        assert await code_of(stub.Translate(REQ, timeout=10)) == grpc.StatusCode.OK
        # Anonymous again: its calls are the default tenant's.
        usage = await stub.GetUsage(pb.GetUsageRequest(), timeout=10)
        assert [(row.tenant, row.requests) for row in usage.rows] == [("", 2)]


def _free_port() -> int:
    from ..helpers.processes import free_port

    return free_port()


# -- mTLS: the certificate's subject names the tenant ------------------------------------------


async def test_a_client_certificate_names_its_tenant(sim: Sim, tmp_path: Path) -> None:
    ca, clients = trustme.CA(), trustme.CA()
    server = ca.issue_cert("localhost")
    files = {name: tmp_path / name for name in ("ca.pem", "tls.crt", "tls.key", "client-ca.pem")}
    ca.cert_pem.write_to_path(str(files["ca.pem"]))
    server.cert_chain_pems[0].write_to_path(str(files["tls.crt"]))
    server.private_key_pem.write_to_path(str(files["tls.key"]))
    clients.cert_pem.write_to_path(str(files["client-ca.pem"]))
    client_tls = {}
    for who in ("team-cert", "stranger"):
        cert = clients.issue_cert(f"{who}.example", common_name=who)
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / f"{who}.crt"))
        cert.private_key_pem.write_to_path(str(tmp_path / f"{who}.key"))
        client_tls[who] = tls.ClientTLS(
            str(files["ca.pem"]), str(tmp_path / f"{who}.crt"), str(tmp_path / f"{who}.key")
        )
    tenants = write(
        tmp_path / "tenants.toml", TENANTS + '\n[tenants.team-cert]\ncertificate_subjects = ["team-cert"]\nrpm = 1\n'
    )
    cfg = with_tenants(
        server_config(sim),
        tenants,
        tls_cert_file=str(files["tls.crt"]),
        tls_key_file=str(files["tls.key"]),
        tls_client_ca_file=str(files["client-ca.pem"]),
    )
    async with running_server(cfg) as running:
        target = f"localhost:{running.port}"
        async with tls.channel(target, tls=client_tls["team-cert"]) as ch:
            stub = pb_grpc.TranslatorStub(ch)
            assert await stub.Translate(REQ, timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as limited:
                await stub.Translate(REQ, timeout=10)
            assert (limited.value.details() or "").startswith("tenant team-cert: rpm 1 reached")
        async with tls.channel(target, tls=client_tls["stranger"]) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await pb_grpc.TranslatorStub(ch).Translate(REQ, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "no tenant accepts the client certificate" in (refused.value.details() or "")
            # A key still works over a certificate no tenant names.
            assert await pb_grpc.TranslatorStub(ch).Translate(REQ, timeout=10, metadata=bearer(KEY_B))


# -- two replicas sharing one redis-server ---------------------------------------------------


@pytest_asyncio.fixture
async def two_replicas(sim: Sim, tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[list[RunningServer]]:
    cfg = with_tenants(server_config(sim), write(tmp_path / "tenants.toml", TENANTS.replace("rpm = 2", "rpm = 3")))
    governor = dataclasses.replace(cfg.governor, kind="redis", redis_url=redis_server.url, replicas=2)
    cfg = dataclasses.replace(cfg, governor=governor)
    async with running_server(cfg) as one, running_server(cfg) as two:
        yield [one, two]


async def test_a_tenants_rpm_is_shared_by_replicas_and_others_are_served(two_replicas: list[RunningServer]) -> None:
    one, two = two_replicas
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{one.port}") as ch1,
        grpc.aio.insecure_channel(f"127.0.0.1:{two.port}") as ch2,
    ):
        stubs = [pb_grpc.TranslatorStub(ch1), pb_grpc.TranslatorStub(ch2)]
        for stub in (stubs[0], stubs[1], stubs[0]):
            await stub.Translate(REQ, timeout=10, metadata=bearer(KEY_A))
        for stub in stubs:
            with pytest.raises(grpc.aio.AioRpcError) as limited:
                await stub.Translate(REQ, timeout=10, metadata=bearer(KEY_A))
            assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (limited.value.details() or "").startswith("tenant team-a: rpm 3 reached")
            # team-b, on the same replicas at the same moment, is untouched.
            assert await stub.Translate(REQ, timeout=10, metadata=bearer(KEY_B))


async def test_a_changed_file_is_read_while_no_call_comes(sim: Sim, tmp_path: Path) -> None:
    path = write(tmp_path / "tenants.toml", TENANTS)
    cfg = with_tenants(server_config(sim), path, tenants_reload_check_s=0.05)
    async with running_server(cfg) as server:
        write(path, TENANTS + '\n[tenants.late]\napi_keys = ["sk-late"]\n')
        os.utime(path, (os.stat(path).st_atime, os.stat(path).st_mtime + 2))

        def read_again() -> bool:
            return server.engine.tenants.reloads == 1

        await eventually(read_again, 5.0, "the changed tenants file read again without a call")
        assert "late" in server.engine.tenants.current.by_name
