"""Run the rendered Deployments' containers as local processes and hit their declared probes.

No cluster or container engine is available, so each container of an overlay's Deployments runs
as a process the way the image would run it: the image's ENTRYPOINT is `translane`, so a container
with `args: [serve]` runs `<venv>/bin/translane serve`. The process gets the container's env
(downward-API fields and Secrets faked, ConfigMap/Secret/emptyDir mounts materialised in a temp
directory and their paths rewritten, Service DNS names pointed at 127.0.0.1). A `translane sim`
process stands in for the provider (TRANSLANE_UPSTREAM_URL).

Before anything runs, the ports the app will listen on given the container's env are worked out
with the app's own configuration code and must equal the declared containerPorts and probe ports;
a mismatch fails. The processes then run on free ports (the same env with the port numbers
remapped) so the test never collides with anything else on the machine, and the startup,
readiness and liveness probes are checked as the kubelet would: gRPC health for `grpc:` probes,
HTTP GET for `httpGet:`, TCP connect for `tcpSocket:`, the command for `exec:`.

dev runs always; prod runs when redis-server and redis-cli are on PATH (its Redis Deployment's
command is run the same way).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from k8s_render import Rendered, render

from tests.helpers.eventually import eventually_sync

# What the Dockerfile's ENV and WORKDIR give every app container.
IMAGE_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "HOME": "/tmp"}
IMAGE_WORKDIR = "/tmp"
# The cluster's CA (cert-manager's Issuer, say): it signs the service's certificate, for the names
# its Services give it, and the shim's client certificate; each Secret carries it as ca.crt.
CA = trustme.CA()
SERVICE_CERT = CA.issue_cert(
    *(f"{name}{suffix}" for name in ("translane-service", "translane-service-headless")
      for suffix in ("", ".translane.svc", ".translane.svc.cluster.local"))
)  # fmt: skip
SHIM_CERT = CA.issue_cert("translane-shim")
# Secrets are created out of band; these stand in for them. Unknown references fail the test.
FAKE_SECRETS = {
    ("translane-provider", "ARK_API_KEY"): "sk-k8s-test-not-a-real-key",
    ("translane-shim-keys", "TRANSLANE_API_KEYS"): "k8s-test-key-1\nk8s-test-key-2\n",
    **{
        (secret, key): pem
        for secret, cert in (("translane-service-tls", SERVICE_CERT), ("translane-shim-tls", SHIM_CERT))
        for key, pem in (
            ("tls.crt", cert.cert_chain_pems[0].bytes().decode()),
            ("tls.key", cert.private_key_pem.bytes().decode()),
            ("ca.crt", CA.cert_pem.bytes().decode()),
        )
    },
}
SHIM_KEYS = ("k8s-test-key-1", "k8s-test-key-2")
ALL_INTERFACES = ("0.0.0.0", "::", "[::]", "")
KUBE_PROBE_UA = "kube-probe/1.33"
START_ORDER = {"": 0, "serve": 1, "shim": 2}


def translane_exe() -> str:
    here = Path(sys.executable).parent / "translane"
    found = str(here) if here.exists() else shutil.which("translane")
    if found is None:
        pytest.fail("the `translane` command is not installed next to the test interpreter")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def role(container: dict[str, Any]) -> str:
    """The translane subcommand (image ENTRYPOINT `translane`, CMD `serve`); "" for other images."""
    command = container.get("command") or []
    if command and Path(command[0]).name != "translane":
        return ""
    args = [*command[1:], *(container.get("args") or [])]
    if not command and not str(container["image"]).startswith("ghcr.io/translane/translane"):
        return ""
    return args[0] if args else "serve"


def flag(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def listening(container: dict[str, Any], env: dict[str, str]) -> tuple[str, set[int]]:
    """(host, ports) the process will listen on, given its args and env, by the app's own rules."""
    r = role(container)
    args = [*(container.get("command") or [])[1:], *(container.get("args") or [])]
    if r == "serve":
        from translane.config import load_config

        cfg = load_config(flag(args, "--models-file"), env=env)
        host = flag(args, "--host") or cfg.server.host
        port = int(flag(args, "--port") or cfg.server.port)
        metrics = int(flag(args, "--metrics-port") or cfg.server.metrics_port)
        return host, {port} | {p for p in (metrics, cfg.server.health_port) if p}
    if r == "shim":
        from translane.cli import DEFAULT_SHIM_PORT

        host = flag(args, "--host") or env.get("TRANSLANE_SHIM_HOST") or "127.0.0.1"
        return host, {int(flag(args, "--port") or env.get("TRANSLANE_SHIM_PORT") or DEFAULT_SHIM_PORT)}
    if r == "sim":
        from translane.cli import DEFAULT_SIM_PORT

        host = flag(args, "--host") or env.get("TRANSLANE_SIM_HOST") or "127.0.0.1"
        return host, {int(flag(args, "--port") or env.get("TRANSLANE_SIM_PORT") or DEFAULT_SIM_PORT)}
    command = container.get("command") or []
    if command and Path(command[0]).name == "redis-server":
        return flag(args, "--bind") or "0.0.0.0", {int(flag(args, "--port") or 6379)}
    pytest.fail(f"don't know how container {container['name']} ({command}) picks its ports")


# ---- one Deployment's container as a local process -------------------------------------------


@dataclass
class Container:
    deployment: str
    spec: dict[str, Any]
    pod: dict[str, Any]
    workdir: Path
    mounts: dict[str, Path] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[int, int] = field(default_factory=dict)  # declared containerPort -> local port
    argv: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    # Probe kinds that already ran out of time: later tests report them without waiting again.
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return role(self.spec)

    def local(self, port: int | str) -> int:
        if isinstance(port, str):
            port = next(p["containerPort"] for p in self.spec["ports"] if p.get("name") == port)
        assert port in self.ports, f"{self.deployment}: port {port} is not a declared containerPort"
        return self.ports[port]

    def logs(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def local_path(mounts: dict[str, Path], value: str) -> str:
    """Rewrite a path under a volume mount to the mount's local directory."""
    for mount in sorted(mounts, key=len, reverse=True):
        if value == mount or value.startswith(mount.rstrip("/") + "/"):
            return str(mounts[mount]) + value[len(mount.rstrip("/")) :]
    return value


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion: variables defined earlier only; $$ escapes."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", repl, value)


class Pods:
    """An overlay's Deployments, one replica each, as local processes."""

    def __init__(self, rendered: Rendered, root: Path) -> None:
        self.r = rendered
        self.root = root
        self.exe = translane_exe()
        self.namespace = "translane"
        self.containers: list[Container] = []
        self.sim: subprocess.Popen[bytes] | None = None
        self.sim_port = free_port()
        self.sim_log = root / "sim.log"
        for dep in rendered.of_kind("Deployment"):
            pod = dep["spec"]["template"]["spec"]
            for spec in pod["containers"]:
                name = dep["metadata"]["name"]
                self.namespace = dep["metadata"].get("namespace", self.namespace)
                c = Container(name, spec, pod, root / name / spec["name"])
                c.workdir.mkdir(parents=True)
                self.containers.append(c)
        self.containers.sort(key=lambda c: START_ORDER.get(c.role, 0))

    # -- building each container's process -----------------------------------------------------

    def materialise_volumes(self, c: Container) -> None:
        volumes = {v["name"]: v for v in c.pod.get("volumes", [])}
        for m in c.spec.get("volumeMounts", []):
            v = volumes[m["name"]]
            target = c.workdir / "mnt" / m["mountPath"].strip("/").replace("/", "_")
            target.mkdir(parents=True)
            if "configMap" in v:
                cm = self.r.get("ConfigMap", v["configMap"]["name"])
                items = v["configMap"].get("items") or [{"key": k, "path": k} for k in cm.get("data", {})]
                for item in items:
                    (target / item["path"]).write_text(cm["data"][item["key"]], encoding="utf-8")
            elif "secret" in v:
                name = v["secret"]["secretName"]
                items = v["secret"].get("items")
                assert items, f"{c.deployment}: mount Secret {name} with explicit items"
                for item in items:
                    key = (name, item["key"])
                    assert key in FAKE_SECRETS, f"{c.deployment}: unknown Secret reference {key}"
                    (target / item["path"]).write_text(FAKE_SECRETS[key], encoding="utf-8")
            elif "persistentVolumeClaim" in v:
                # A claim of the rendered manifests, empty at first start: a directory of its own here.
                assert self.r.get("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"])
            elif "emptyDir" not in v:
                pytest.fail(f"{c.deployment}: volume {m['name']} of an unsupported kind")
            if "subPath" in m:
                pytest.fail(f"{c.deployment}: subPath mounts are not supported here")
            c.mounts[m["mountPath"]] = target

    def container_env(self, c: Container) -> dict[str, str]:
        """The container's env as Kubernetes resolves it (in-cluster names and paths)."""
        env: dict[str, str] = {}
        fields = {
            "metadata.name": f"{c.deployment}-local-0",
            "metadata.namespace": self.namespace,
            "status.podIP": "127.0.0.1",
            "spec.nodeName": "localhost",
            "spec.serviceAccountName": c.pod.get("serviceAccountName", "default"),
        }
        assert not c.spec.get("envFrom"), "envFrom is not supported here"
        for e in c.spec.get("env", []):
            if "value" in e or "valueFrom" not in e:
                env[e["name"]] = expand(str(e.get("value", "")), env)
                continue
            src = e["valueFrom"]
            if "fieldRef" in src:
                env[e["name"]] = fields[src["fieldRef"]["fieldPath"]]
            elif "secretKeyRef" in src:
                key = (src["secretKeyRef"]["name"], src["secretKeyRef"]["key"])
                assert key in FAKE_SECRETS, f"{c.deployment}: unknown Secret reference {key}"
                env[e["name"]] = FAKE_SECRETS[key]
            elif "configMapKeyRef" in src:
                cm = self.r.get("ConfigMap", src["configMapKeyRef"]["name"])
                env[e["name"]] = cm["data"][src["configMapKeyRef"]["key"]]
            else:
                pytest.fail(f"{c.deployment}: unsupported valueFrom {src}")
        return env

    def service_port(self, service: str, port: int | None) -> int | None:
        """Local port behind Service `service`:`port` (via targetPort and the selected pods)."""
        svc = self.r.get("Service", service)
        entries = svc["spec"]["ports"]
        entry = (
            entries[0] if port is None and len(entries) == 1 else next((p for p in entries if p["port"] == port), None)
        )
        if entry is None:
            return None
        target = entry.get("targetPort", entry["port"])
        selector = svc["spec"]["selector"]
        for c in self.containers:
            labels = next(
                d["spec"]["template"]["metadata"]["labels"]
                for d in self.r.of_kind("Deployment")
                if d["metadata"]["name"] == c.deployment
            )
            if all(labels.get(k) == v for k, v in selector.items()):
                for p in c.spec.get("ports", []):
                    if target in (p["containerPort"], p.get("name")):
                        return c.ports[p["containerPort"]]
        return None

    def localise_hosts(self, value: str) -> str:
        """Point in-cluster Service addresses (`name:port` or `scheme://name/...`, short or
        qualified names) at 127.0.0.1 and the local port. Bare words (OTEL_SERVICE_NAME) stay."""
        names = sorted((s["metadata"]["name"] for s in self.r.of_kind("Service")), key=len, reverse=True)
        ns = re.escape(self.namespace)
        for name in names:
            host = rf"(?<![\w.-]){re.escape(name)}(?:\.{ns}(?:\.svc(?:\.cluster\.local)?)?)?"

            def with_port(m: re.Match[str], name: str = name) -> str:
                local = self.service_port(name, int(m.group(1)))
                assert local is not None, f"Service {name} has no port {m.group(1)}"
                return f"127.0.0.1:{local}"

            value = re.sub(rf"{host}:(\d+)(?!\d)", with_port, value)
            value = re.sub(rf"(?<=//){host}(?=[/?#]|$)", "127.0.0.1", value)
        return value

    def remap_ports(self, c: Container, env: dict[str, str], argv: list[str]) -> tuple[dict[str, str], list[str]]:
        """The same env and argv, with the app's own listening ports moved to c.ports."""
        env = dict(env)
        if c.role == "serve":
            from translane.config import load_config

            cfg = load_config(None, env=env)
            env["TRANSLANE_GRPC_PORT"] = str(c.ports[cfg.server.port])
            if cfg.server.metrics_port:
                env["TRANSLANE_METRICS_PORT"] = str(c.ports[cfg.server.metrics_port])
            if cfg.server.health_port:
                env["TRANSLANE_HEALTH_PORT"] = str(c.ports[cfg.server.health_port])
        elif c.role == "shim":
            (port,) = listening(c.spec, env)[1]
            env["TRANSLANE_SHIM_PORT"] = str(c.ports[port])
        argv = list(argv)
        for i in range(1, len(argv)):
            if argv[i - 1] in ("--port", "--metrics-port") and argv[i].isdigit():
                argv[i] = str(c.ports[int(argv[i])])
        return env, argv

    def prepare(self, c: Container) -> None:
        declared = {int(p["containerPort"]) for p in c.spec.get("ports", [])}
        c.ports = {p: free_port() for p in declared}
        self.materialise_volumes(c)

    def build(self, c: Container) -> None:
        k8s_env = self.container_env(c)
        local_env = {k: local_path(c.mounts, v) for k, v in k8s_env.items()}

        # The ports the app listens on with the env as declared must be the declared ports.
        host, ports = listening(c.spec, local_env)
        declared = set(c.ports)
        where = f"{self.r.overlay}:{c.deployment}/{c.spec['name']}"
        assert ports == declared, f"{where}: the app listens on {sorted(ports)}, containerPorts are {sorted(declared)}"
        assert host in ALL_INTERFACES, f"{where}: listens on {host}; probes and Services use the pod IP"
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.spec.get(kind, {})
            for action in ("grpc", "httpGet", "tcpSocket"):
                if action in probe:
                    port = probe[action]["port"]
                    if isinstance(port, str):
                        port = next(p["containerPort"] for p in c.spec["ports"] if p.get("name") == port)
                    assert port in ports, f"{where}: {kind} probes port {port}, the app listens on {sorted(ports)}"

        command = c.spec.get("command") or []
        args = c.spec.get("args") or []
        if c.role:
            argv = [self.exe, *command[1:], *args] if command else [self.exe, *(args or ["serve"])]
        else:
            exe = shutil.which(command[0]) if command else None
            if exe is None:
                pytest.skip(f"{command[:1]} is not installed")
            argv = [exe, *command[1:], *args]
        argv = [argv[0], *(local_path(c.mounts, expand(a, k8s_env)) for a in argv[1:])]
        env, argv = self.remap_ports(c, local_env, argv)
        env = {k: self.localise_hosts(v) for k, v in env.items()}
        if c.role == "serve":
            env["TRANSLANE_UPSTREAM_URL"] = f"http://127.0.0.1:{self.sim_port}/api/v3"
        # Sanity: with the remapped env the app's rules give exactly the local ports.
        if c.role:
            _, local_ports = listening({**c.spec, "args": argv[1:], "command": []}, env)
            assert local_ports == set(c.ports.values()), f"{where}: port remap failed: {local_ports}"
        c.env = env
        c.argv = argv

    def process_env(self, c: Container) -> dict[str, str]:
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        if c.role:
            base |= {k: local_path(c.mounts, v) for k, v in IMAGE_ENV.items()}
            tmp = c.mounts.get("/tmp")
            if tmp is not None:
                base["TMPDIR"] = str(tmp)
        return base | c.env

    # -- lifecycle ----------------------------------------------------------------------------

    def start_sim(self) -> None:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.root), "PYTHONUNBUFFERED": "1"}
        with self.sim_log.open("wb") as log:
            self.sim = subprocess.Popen(
                [self.exe, "sim", "--host", "127.0.0.1", "--port", str(self.sim_port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
            )
        sim, url = self.sim, f"http://127.0.0.1:{self.sim_port}/_sim/stats"

        def answering() -> bool:
            if sim.poll() is not None:
                pytest.fail(f"translane sim exited {sim.returncode}:\n{self.sim_log.read_text()[-4000:]}")
            return http_ok(url, {}, 1.0)

        def what() -> str:
            return f"translane sim answering {url}:\n{self.sim_log.read_text()[-4000:]}"

        eventually_sync(answering, 30.0, what, interval_s=0.1)

    def start(self) -> None:
        for c in self.containers:
            self.prepare(c)
        self.start_sim()
        for c in self.containers:
            self.build(c)
        for c in self.containers:
            c.log = c.workdir / "output.log"
            cwd = c.mounts.get(IMAGE_WORKDIR, c.workdir) if c.role else c.workdir
            with c.log.open("wb") as log:
                c.proc = subprocess.Popen(
                    c.argv, stdout=log, stderr=subprocess.STDOUT, env=self.process_env(c), cwd=cwd
                )

    def stop(self) -> None:
        procs = [c.proc for c in self.containers if c.proc is not None]
        if self.sim is not None:
            procs.append(self.sim)
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 15
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)


# ---- probes, as the kubelet runs them --------------------------------------------------------


def http_ok(url: str, headers: dict[str, str], timeout: float) -> bool:
    req = urllib.request.Request(url, headers={"User-Agent": KUBE_PROBE_UA, **headers})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return 200 <= resp.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


def run_probe(c: Container, probe: dict[str, Any]) -> tuple[bool, str]:
    timeout = float(probe.get("timeoutSeconds", 1))
    if "grpc" in probe:
        port = c.local(probe["grpc"]["port"])
        service = probe["grpc"].get("service", "")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                resp = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=timeout
                )
            except grpc.RpcError as exc:
                return False, f"grpc health {service!r} on {port}: {exc.code()}"
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
        return resp.status == health_pb2.HealthCheckResponse.SERVING, f"grpc health {service!r}: {status}"
    if "httpGet" in probe:
        h = probe["httpGet"]
        scheme = h.get("scheme", "HTTP").lower()
        url = f"{scheme}://127.0.0.1:{c.local(h['port'])}{h.get('path', '/')}"
        headers = {x["name"]: x["value"] for x in h.get("httpHeaders", [])}
        return http_ok(url, headers, timeout), f"GET {url}"
    if "tcpSocket" in probe:
        port = c.local(probe["tcpSocket"]["port"])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout):
                return True, f"tcp {port}"
        except OSError as exc:
            return False, f"tcp {port}: {exc}"
    if "exec" in probe:
        cmd = list(probe["exec"]["command"])
        exe = shutil.which(cmd[0])
        if exe is None:
            pytest.skip(f"{cmd[0]} is not installed")
        cmd = [exe, *(str(c.ports.get(int(a), a)) if a.isdigit() else a for a in cmd[1:])]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return False, f"exec {cmd}: timed out"
        return done.returncode == 0, f"exec {cmd}: exit {done.returncode}"
    pytest.fail(f"{c.deployment}: probe without a handler: {probe}")


def probe_error(c: Container, kind: str) -> str | None:
    """None once the probe succeeds within the time the kubelet would allow; else why not.

    The kubelet's own loop rather than `eventually`: a failure here is a finding to report (and remember for
    the probes after it), not an assertion."""
    if kind in c.failed:
        return c.failed[kind]
    probe = c.spec[kind]
    budget = (
        float(probe.get("initialDelaySeconds", 0))
        + float(probe.get("periodSeconds", 10)) * int(probe.get("failureThreshold", 3))
        + float(probe.get("timeoutSeconds", 1))
    )
    deadline = time.monotonic() + budget
    where = f"{c.deployment}/{c.spec['name']}"
    while True:
        if not c.alive():
            code = c.proc.returncode if c.proc is not None else None
            return f"{where} exited ({code}) before its {kind} passed:\n{c.logs()}"
        ok, last = run_probe(c, probe)
        if ok:
            return None
        if time.monotonic() > deadline:
            c.failed[kind] = f"{where}: {kind} did not pass in {budget:.0f} s ({last})\n{c.logs()}"
            return c.failed[kind]
        time.sleep(min(0.25, float(probe.get("periodSeconds", 10))))


def wait_probe(c: Container, kind: str) -> None:
    error = probe_error(c, kind)
    if error:
        pytest.fail(error)


def check_all(errors: list[str]) -> None:
    assert not errors, "\n\n".join(errors)


# ---- the tests -------------------------------------------------------------------------------


def overlay_params() -> list[Any]:
    missing = [t for t in ("redis-server", "redis-cli") if shutil.which(t) is None]
    prod_marks = [pytest.mark.skip(reason=f"{', '.join(missing)} not on PATH")] if missing else []
    return ["dev", pytest.param("prod", marks=prod_marks)]


@pytest.fixture(scope="module", params=overlay_params())
def pods(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pods]:
    rendered = render(request.param)
    running = Pods(rendered, tmp_path_factory.mktemp(f"pods-{request.param}"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


def app_containers(pods: Pods) -> list[Container]:
    return [c for c in pods.containers if c.role]


def test_probes_pass(pods: Pods) -> None:
    # Startup first (the kubelet holds the others back until it passes), then readiness, liveness.
    errors: list[str] = []
    for c in pods.containers:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            error = probe_error(c, kind)
            if error:
                errors.append(error)
                break
    check_all(errors)


def test_declared_ports_answer(pods: Pods) -> None:
    """Every containerPort has a listener, and metrics are where the scrape annotations say."""
    errors: list[str] = []
    for c in pods.containers:
        error = probe_error(c, "startupProbe")
        if error:
            errors.append(error)
            continue
        for declared, local in c.ports.items():
            try:
                socket.create_connection(("127.0.0.1", local), timeout=2).close()
            except OSError as exc:
                errors.append(f"{c.deployment}: nothing listens on containerPort {declared} ({exc})")
        ann = pods.r.get("Deployment", c.deployment)["spec"]["template"]["metadata"].get("annotations", {})
        if ann.get("prometheus.io/scrape") == "true" and c.role:
            port = int(ann["prometheus.io/port"])
            url = f"http://127.0.0.1:{c.local(port)}{ann.get('prometheus.io/path', '/metrics')}"
            if not http_ok(url, {}, 5):
                errors.append(f"{c.deployment}: no Prometheus metrics at {url} (containerPort {port})")
    check_all(errors)


def test_service_serves_the_models_from_its_configmap(pods: Pods) -> None:
    import tomllib

    from translane.v1 import translate_pb2, translate_pb2_grpc

    (svc,) = [c for c in pods.containers if c.role == "serve"]
    wait_probe(svc, "readinessProbe")
    models_file = Path(svc.env["TRANSLANE_MODELS_FILE"])
    want = tomllib.loads(models_file.read_text(encoding="utf-8"))["models"]
    port = svc.local("grpc")
    # mTLS, as a labelled client with a certificate from the cluster's CA would call it.
    creds = grpc.ssl_channel_credentials(
        CA.cert_pem.bytes(), SHIM_CERT.private_key_pem.bytes(), SHIM_CERT.cert_chain_pems[0].bytes()
    )
    options = [("grpc.ssl_target_name_override", "translane-service.translane.svc")]
    with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=options) as channel:
        resp = translate_pb2_grpc.TranslatorStub(channel).ListModels(translate_pb2.ListModelsRequest(), timeout=10)
    got = {m.name: m.max_concurrency for m in resp.models}
    assert got == {name: m["max_concurrency"] for name, m in want.items()}
    # Plaintext gets nowhere on the gRPC port.
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError) as err:
        translate_pb2_grpc.TranslatorStub(channel).ListModels(translate_pb2.ListModelsRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_shim_takes_its_keys_from_the_mounted_secret(pods: Pods) -> None:
    shims = [c for c in pods.containers if c.role == "shim"]
    if not shims:
        pytest.skip("no shim in this overlay")
    (shim,) = shims
    wait_probe(shim, "readinessProbe")
    url = f"http://127.0.0.1:{shim.local('http')}/v1/models"
    for key in SHIM_KEYS:
        assert http_ok(url, {"Authorization": f"Bearer {key}"}, 5), f"{url} refused mounted key {key}\n{shim.logs()}"
    req = urllib.request.Request(url, headers={"Authorization": "Bearer not-a-configured-key"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5).close()
    assert err.value.code == 401


def test_sigterm_stops_within_the_grace_period(pods: Pods) -> None:
    """The kubelet runs preStop, then SIGTERM, then SIGKILL at terminationGracePeriodSeconds."""
    errors: list[str] = []
    for c in reversed(app_containers(pods)):
        error = probe_error(c, "readinessProbe")
        if error:
            errors.append(error)
            continue
        grace = float(c.pod.get("terminationGracePeriodSeconds", 30))
        pre_stop = c.spec.get("lifecycle", {}).get("preStop", {})
        if "exec" in pre_stop:
            cmd = pre_stop["exec"]["command"]
            assert shutil.which(cmd[0]), f"preStop command {cmd[0]} is not available"
            pre_stop_s = float(cmd[1]) if cmd[0] == "sleep" else 0.0
        else:
            pre_stop_s = float(pre_stop.get("sleep", {}).get("seconds", 0))
        assert c.proc is not None
        started = time.monotonic()
        c.proc.send_signal(signal.SIGTERM)
        try:
            c.proc.wait(timeout=grace - pre_stop_s)
        except subprocess.TimeoutExpired:
            errors.append(f"{c.deployment} still running {grace - pre_stop_s:.0f} s after SIGTERM\n{c.logs()}")
            continue
        took = time.monotonic() - started
        print(f"{c.deployment}: stopped {took:.1f} s after SIGTERM (exit {c.proc.returncode})")
    check_all(errors)
