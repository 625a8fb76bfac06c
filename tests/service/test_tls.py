"""TLS and mTLS on the gRPC port: real certificates (trustme), real handshakes on loopback, SIGHUP reloads."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import grpc
import pytest
import pytest_asyncio
import translane
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from translane import tls
from translane.cli import _parser
from translane.config import Config, ConfigError, ServerConfig, load_config
from translane.server import RunningServer, running_server
from translane.tools.batch import BatchSettings, run_batch
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from gateway_shim import ShimConfig, running_shim

from ..conftest import Sim, server_config
from ..helpers.eventually import eventually
from ..helpers.processes import clean_env, free_port
from ..helpers.processes import translane as translane_process

# The name the service's certificate carries; clients check it against the target's host.
NAME = "localhost"


@dataclasses.dataclass
class Pki:
    """A CA, the service's certificate and a client's, written where the service and clients read them."""

    dir: Path
    ca: trustme.CA
    server_ca: Path
    cert: Path
    key: Path
    client_ca: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def make(cls, root: Path) -> Pki:
        root.mkdir(parents=True, exist_ok=True)
        ca, clients = trustme.CA(), trustme.CA()
        server = ca.issue_cert(NAME, "127.0.0.1")
        client = clients.issue_cert("translane-shim")
        pki = cls(
            root, ca, root / "ca.pem", root / "tls.crt", root / "tls.key",
            root / "client-ca.pem", root / "client.crt", root / "client.key",
        )  # fmt: skip
        ca.cert_pem.write_to_path(str(pki.server_ca))
        server.cert_chain_pems[0].write_to_path(str(pki.cert))
        server.private_key_pem.write_to_path(str(pki.key))
        clients.cert_pem.write_to_path(str(pki.client_ca))
        client.cert_chain_pems[0].write_to_path(str(pki.client_cert))
        client.private_key_pem.write_to_path(str(pki.client_key))
        return pki

    def server(self, mutual: bool) -> dict[str, str]:
        return {
            "tls_cert_file": str(self.cert),
            "tls_key_file": str(self.key),
            "tls_client_ca_file": str(self.client_ca) if mutual else "",
        }

    def client(self, *, present: bool = True, ca: Path | None = None) -> tls.ClientTLS:
        if present:
            return tls.ClientTLS(str(ca or self.server_ca), str(self.client_cert), str(self.client_key))
        return tls.ClientTLS(str(ca or self.server_ca))


async def health(target: str, client: tls.ClientTLS | None, timeout_s: float = 5.0) -> str:
    """The health status name, or the gRPC code name of the failure."""
    async with tls.channel(target, tls=client) as ch:
        try:
            resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))


async def translate(target: str, client: tls.ClientTLS | None) -> str:
    async with tls.channel(target, tls=client) as ch:
        req = pb.TranslateRequest(segments=["Hello, world."], target_language="zh")
        resp = await pb_grpc.TranslatorStub(ch).Translate(req, timeout=10)
    return str(resp.translations[0].text)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.make(tmp_path / "pki")


@pytest_asyncio.fixture
async def mtls_server(sim: Sim, pki: Pki) -> AsyncIterator[RunningServer]:
    async with running_server(server_config(sim, **pki.server(mutual=True))) as running:
        yield running


async def test_tls_serves_callers_that_trust_its_ca_and_refuses_plaintext(sim: Sim, pki: Pki) -> None:
    async with running_server(server_config(sim, **pki.server(mutual=False))) as running:
        target = f"{NAME}:{running.port}"
        assert await translate(target, pki.client(present=False))
        assert await health(target, None) == "UNAVAILABLE"
        # A CA that did not sign the service's certificate: the handshake fails.
        assert await health(target, pki.client(present=False, ca=pki.client_ca)) == "UNAVAILABLE"


async def test_mtls_needs_a_client_certificate_from_the_configured_ca(mtls_server: RunningServer, pki: Pki) -> None:
    target = f"{NAME}:{mtls_server.port}"
    assert await translate(target, pki.client())
    assert await health(target, pki.client(present=False)) == "UNAVAILABLE"
    # A certificate the client CA did not sign.
    stranger = trustme.CA().issue_cert("stranger")
    stranger.cert_chain_pems[0].write_to_path(str(pki.dir / "stranger.crt"))
    stranger.private_key_pem.write_to_path(str(pki.dir / "stranger.key"))
    intruder = tls.ClientTLS(str(pki.server_ca), str(pki.dir / "stranger.crt"), str(pki.dir / "stranger.key"))
    assert await health(target, intruder) == "UNAVAILABLE"


@pytest.mark.parametrize(
    ("presents", "hint"),
    [
        ("nothing", "it likely requires a client certificate (mTLS); set TRANSLANE_CLIENT_TLS_CERT_FILE"),
        ("a stranger's", "it likely does not trust TRANSLANE_CLIENT_TLS_CERT_FILE"),
        ("the wrong CA", "TRANSLANE_CLIENT_TLS_CA_FILE must be the CA that signed it"),
    ],
)
async def test_a_refused_handshake_names_its_likely_cause(
    mtls_server: RunningServer,
    pki: Pki,
    presents: str,
    hint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """grpc says only "failed to connect to all addresses ... Socket closed"; the commands say what to check."""
    stranger = trustme.CA().issue_cert("stranger")
    stranger.cert_chain_pems[0].write_to_path(str(pki.dir / "stranger.crt"))
    stranger.private_key_pem.write_to_path(str(pki.dir / "stranger.key"))
    env = {"TRANSLANE_CLIENT_TLS_CA_FILE": str(pki.client_ca if presents == "the wrong CA" else pki.server_ca)}
    if presents == "a stranger's":
        env |= {"TRANSLANE_CLIENT_TLS_CERT_FILE": str(pki.dir / "stranger.crt")}
        env |= {"TRANSLANE_CLIENT_TLS_KEY_FILE": str(pki.dir / "stranger.key")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    target = f"{NAME}:{mtls_server.port}"
    args = _parser().parse_args(["models", "--target", target])
    assert await args.func(args) == 1
    said = capsys.readouterr().err.splitlines()
    assert said[0].startswith("translane: UNAVAILABLE: failed to connect to all addresses")
    assert len(said) == 2 and hint in said[1], said
    if presents == "nothing":  # the batch tool says it once, beside its summary
        line = '{"custom_id": "a", "text": "Hello.", "target_language": "zh"}\n'
        (pki.dir / "in.jsonl").write_text(line, encoding="utf-8")
        batch = BatchSettings(target, str(pki.dir / "in.jsonl"), str(pki.dir / "out.jsonl"), progress=False)
        summary = await run_batch(dataclasses.replace(batch, max_attempts=1))
        assert summary.failed == 1 and hint in summary.hint


async def test_the_shim_reaches_the_service_over_mtls(mtls_server: RunningServer, pki: Pki) -> None:
    cfg = ShimConfig(
        port=0, default_target_language="zh", grpc_target=f"{NAME}:{mtls_server.port}", backend_tls=pki.client()
    )
    async with running_shim(cfg) as shim, aiohttp.ClientSession() as http:
        body = {"model": "", "messages": [{"role": "user", "content": "Translate to Chinese:\n\nGood morning."}]}
        async with http.post(f"{shim.url}/v1/chat/completions", json=body) as resp:
            assert resp.status == 200, await resp.text()
            answer = await resp.json()
    assert answer["choices"][0]["message"]["content"]


async def test_the_shim_without_a_client_certificate_gets_503_not_a_hang(mtls_server: RunningServer, pki: Pki) -> None:
    cfg = ShimConfig(
        port=0,
        default_target_language="zh",
        grpc_target=f"{NAME}:{mtls_server.port}",
        backend_tls=pki.client(present=False),
    )
    async with running_shim(cfg) as shim, aiohttp.ClientSession() as http:
        body = {"messages": [{"role": "user", "content": "Translate to Chinese:\n\nGood morning."}]}
        headers = {"Request-Timeout": "3"}
        async with http.post(f"{shim.url}/v1/chat/completions", json=body, headers=headers) as resp:
            assert resp.status == 503, await resp.text()
            assert resp.headers.get("Retry-After")


async def test_certificates_changed_on_disk_are_used_without_a_signal(sim: Sim, pki: Pki, tmp_path: Path) -> None:
    cfg = server_config(sim, tls_reload_check_s=0.0, **pki.server(mutual=False))
    async with running_server(cfg) as running:
        target = f"{NAME}:{running.port}"
        assert await health(target, pki.client(present=False)) == "SERVING"
        # A Secret volume's update: new files swapped in, nobody sends SIGHUP.
        rotated = Pki.make(tmp_path / "rotated")
        for new, old in ((rotated.cert, pki.cert), (rotated.key, pki.key)):
            new.replace(old)
        assert await health(target, pki.client(present=False, ca=rotated.server_ca)) == "SERVING"
        assert await health(target, pki.client(present=False)) == "UNAVAILABLE"
        assert running.certificates is not None and running.certificates.reloads == 1


def test_config_refuses_plaintext_off_loopback_unless_asked() -> None:
    with pytest.raises(ConfigError, match=r"server\.host: '0\.0\.0\.0' is not a loopback address.*allow_insecure"):
        load_config(env={"TRANSLANE_GRPC_HOST": "0.0.0.0"}).server.check_listen()
    load_config(env={"TRANSLANE_GRPC_HOST": "0.0.0.0", "TRANSLANE_GRPC_INSECURE": "1"}).server.check_listen()
    for host in ("127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"):
        ServerConfig(host=host).check_listen()
    for host in ("::", "", "10.0.0.7", "example.com"):
        with pytest.raises(ConfigError, match=r"server\.host"):
            ServerConfig(host=host).check_listen()
    with pytest.raises(ConfigError, match="set both or neither"):
        ServerConfig(tls_cert_file="a.crt")
    with pytest.raises(ConfigError, match="tls_client_ca_file"):
        ServerConfig(tls_client_ca_file="ca.pem")
    with pytest.raises(ConfigError, match="TRANSLANE_GRPC_INSECURE"):
        load_config(env={"TRANSLANE_GRPC_INSECURE": "maybe"})


def test_unusable_certificates_are_refused_naming_the_files(pki: Pki) -> None:
    missing = ServerConfig(tls_cert_file=str(pki.dir / "nope.crt"), tls_key_file=str(pki.key))
    with pytest.raises(ConfigError, match=r"server\.tls_cert_file: cannot read .*nope\.crt"):
        tls.ServerCertificates(missing)
    other_key = trustme.CA().issue_cert(NAME).private_key_pem
    other_key.write_to_path(str(pki.dir / "other.key"))
    mismatched = ServerConfig(tls_cert_file=str(pki.cert), tls_key_file=str(pki.dir / "other.key"))
    with pytest.raises(ConfigError, match="not a certificate chain and its key"):
        tls.ServerCertificates(mismatched)
    (pki.dir / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="is not PEM"):
        tls.ServerCertificates(ServerConfig(tls_cert_file=str(pki.dir / "junk.pem"), tls_key_file=str(pki.key)))
    # The client side checks its pair too: a renewed certificate beside the old key is refused, not used.
    mismatched_client = tls.ClientTLS(str(pki.server_ca), str(pki.client_cert), str(pki.dir / "other.key"))
    with pytest.raises(ConfigError, match="not a certificate chain and its key"):
        mismatched_client.credentials()
    with pytest.raises(ConfigError, match="holds no CA certificate"):
        tls.ClientTLS(str(pki.client_key)).credentials()
    with pytest.raises(ConfigError, match=r"server\.tls_client_ca_file: .* holds no CA certificate"):
        tls.ServerCertificates(
            dataclasses.replace(ServerConfig(**pki.server(mutual=True)), tls_client_ca_file=str(pki.key))
        )
    # A bundle with text outside its PEM blocks, in any encoding (curl's cacert.pem has such comments), loads.
    bundle = pki.dir / "bundle.pem"
    bundle.write_bytes("# Főtanúsítvány — Hungarian root\n".encode() + pki.server_ca.read_bytes())
    assert tls.ClientTLS(str(bundle)).credentials() is not None
    with pytest.raises(ConfigError, match="need TRANSLANE_CLIENT_TLS_CA_FILE"):
        tls.ClientTLS.from_env({"TRANSLANE_CLIENT_TLS_CERT_FILE": "c", "TRANSLANE_CLIENT_TLS_KEY_FILE": "k"})


async def test_health_port_answers_health_in_plaintext_and_nothing_else(sim: Sim, pki: Pki) -> None:
    cfg = server_config(sim, health_port=free_port(), **pki.server(mutual=True))
    async with running_server(cfg) as running:
        assert running.health_port == cfg.server.health_port
        assert await health(f"127.0.0.1:{running.health_port}", None) == "SERVING"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.health_port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.TranslatorStub(ch).ListModels(pb.ListModelsRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


# -- the `translane serve` process ------------------------------------------------------------------


def test_serve_refuses_to_start_plaintext_on_all_interfaces(tmp_path: Path) -> None:
    env = clean_env(TRANSLANE_GRPC_HOST="0.0.0.0", TRANSLANE_GRPC_PORT=str(free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "translane.cli", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "server.host: '0.0.0.0' is not a loopback address" in done.stderr


def test_the_command_line_overrides_a_models_file_that_binds_all_interfaces(tmp_path: Path) -> None:
    """A models file with host = "0.0.0.0" (the k8s one) still serves with --insecure or --host 127.0.0.1, and
    the commands that serve no gRPC from it (sim) do not care."""
    models = tmp_path / "models.toml"
    shipped = (Path(translane.__file__).parent / "default_models.toml").read_text(encoding="utf-8")
    models.write_text(shipped.replace('host = "127.0.0.1"', 'host = "0.0.0.0"', 1), encoding="utf-8")
    for flags in (["--insecure"], ["--host", "127.0.0.1"]):
        port = free_port()
        args = ["--models-file", str(models), "serve", "--port", str(port), *flags]
        with translane_process(args, port, tmp_path / "serve.log", clean_env()):
            pass
    port = free_port()
    with translane_process(
        ["--models-file", str(models), "sim", "--port", str(port)], port, tmp_path / "sim.log", clean_env()
    ):
        pass


async def test_sighup_reloads_the_certificates_for_new_connections(tmp_path: Path, pki: Pki) -> None:
    port = free_port()
    # Only the signal: no look at the files on its own within the test.
    shipped = (Path(translane.__file__).parent / "default_models.toml").read_text(encoding="utf-8")
    models = tmp_path / "models.toml"
    models.write_text(shipped.replace("[server]\n", "[server]\ntls_reload_check_s = 3600\n", 1), encoding="utf-8")
    env = clean_env(
        TRANSLANE_MODELS_FILE=str(models),
        TRANSLANE_GRPC_PORT=str(port),
        TRANSLANE_TLS_CERT_FILE=str(pki.cert),
        TRANSLANE_TLS_KEY_FILE=str(pki.key),
        TRANSLANE_TLS_CLIENT_CA_FILE=str(pki.client_ca),
        TRANSLANE_UPSTREAM_URL="http://127.0.0.1:1/api/v3",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "translane.cli", "serve", env=env, stdout=out, stderr=subprocess.STDOUT
        )
    target = f"{NAME}:{port}"

    def logged(what: str) -> Callable[[], str]:
        return lambda: f"{what}; the service's log:\n{log.read_text()}"

    async def serving(client: tls.ClientTLS, timeout_s: float = 5.0) -> bool:
        assert proc.returncode is None, log.read_text()
        return await health(target, client, timeout_s) == "SERVING"

    try:
        await eventually(lambda: serving(pki.client(), 1.0), 30.0, logged("the service SERVING"), interval_s=0.05)
        # Rotate to a certificate from a new CA, in place, as cert-manager or a Secret update would.
        rotated = Pki.make(tmp_path / "rotated")
        pki.cert.write_bytes(rotated.cert.read_bytes())
        pki.key.write_bytes(rotated.key.read_bytes())
        assert await health(target, pki.client(ca=rotated.server_ca)) == "UNAVAILABLE"  # not before SIGHUP
        proc.send_signal(signal.SIGHUP)
        rotated_client = pki.client(ca=rotated.server_ca)
        await eventually(lambda: serving(rotated_client), 10.0, logged("the new certificate served"), interval_s=0.05)
        assert await health(target, pki.client()) == "UNAVAILABLE"  # the old CA no longer vouches for it
        # A broken file on the next SIGHUP: the certificates in use stay, the log says why.
        pki.key.write_text("-----BEGIN PRIVATE KEY-----\ntruncated")
        proc.send_signal(signal.SIGHUP)
        failed = "TLS reload failed"
        await eventually(lambda: failed in log.read_text(), 10.0, logged(f"{failed!r} in the log"), interval_s=0.05)
        assert await health(target, pki.client(ca=rotated.server_ca)) == "SERVING"
        assert proc.returncode is None
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)


def on_port(cfg: Config, port: int) -> Config:
    return dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, port=port))


async def test_the_shim_follows_renewed_certificate_files(sim: Sim, tmp_path: Path) -> None:
    """The service comes back with certificates from a new CA, trusting only client certificates from it; the
    shim's files are renewed in place. The shim opens a new channel with them and is served again."""
    old, new = Pki.make(tmp_path / "old"), Pki.make(tmp_path / "new")
    shim_files = Pki.make(tmp_path / "shim")  # the shim's own files: old's for now
    for src, dst in ((old.server_ca, shim_files.server_ca), (old.client_cert, shim_files.client_cert)):
        dst.write_bytes(src.read_bytes())
    shim_files.client_key.write_bytes(old.client_key.read_bytes())
    port = free_port()
    client = dataclasses.replace(shim_files.client(), reload_check_s=0.05)
    cfg = ShimConfig(
        port=0, default_target_language="zh", grpc_target=f"{NAME}:{port}", backend_tls=client, timeout_s=3
    )
    body = {"messages": [{"role": "user", "content": "Translate to Chinese:\n\nGood morning."}]}
    async with running_shim(cfg) as shim, aiohttp.ClientSession() as http:
        url = f"{shim.url}/v1/chat/completions"
        async with running_server(on_port(server_config(sim, **old.server(mutual=True)), port)):
            async with http.post(url, json=body) as resp:
                assert resp.status == 200, await resp.text()
        # The service restarts with the new CA's certificates; the shim's files are renewed.
        async with running_server(on_port(server_config(sim, **new.server(mutual=True)), port)):
            for src, dst in (
                (new.server_ca, shim_files.server_ca),
                (new.client_cert, shim_files.client_cert),
                (new.client_key, shim_files.client_key),
            ):
                dst.write_bytes(src.read_bytes())
            answer = ""

            async def served() -> bool:
                nonlocal answer
                async with http.post(url, json=body, headers={"Request-Timeout": "1"}) as resp:
                    status, answer = resp.status, await resp.text()
                return status == 200

            await eventually(served, 10.0, lambda: f"the shim served again; its last answer: {answer}", interval_s=0.05)


async def test_a_port_in_use_is_said_plainly(sim: Sim, tmp_path: Path) -> None:
    port = free_port()
    async with running_server(on_port(server_config(sim), port)):
        env = clean_env(TRANSLANE_GRPC_PORT=str(port), TRANSLANE_UPSTREAM_URL="http://127.0.0.1:1/api/v3")
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "translane.cli", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"translane: cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr


def test_up_refuses_a_tls_service_its_shim_could_not_trust(pki: Pki) -> None:
    env = clean_env(TRANSLANE_TLS_CERT_FILE=str(pki.cert), TRANSLANE_TLS_KEY_FILE=str(pki.key))
    ports = ["--port", str(free_port()), "--shim-port", str(free_port()), "--sim-port", str(free_port())]
    done = subprocess.run(
        [sys.executable, "-m", "translane.cli", "up", *ports], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "TRANSLANE_CLIENT_TLS_CA_FILE" in done.stderr and "Traceback" not in done.stderr
    # mTLS: trusting the service is not enough, the shim must present a certificate.
    env |= {"TRANSLANE_TLS_CLIENT_CA_FILE": str(pki.client_ca), "TRANSLANE_CLIENT_TLS_CA_FILE": str(pki.server_ca)}
    done = subprocess.run(
        [sys.executable, "-m", "translane.cli", "up", *ports], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "TRANSLANE_CLIENT_TLS_CERT_FILE" in done.stderr, done.stderr
