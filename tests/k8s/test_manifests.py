"""The kustomize overlays render, validate offline against a fixed Kubernetes version, and hold
the properties the deployment depends on (hardening, probes, limits split across replicas)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_render import K8S, OVERLAYS, REPO, Rendered
from translane.config import Config, parse_config

KUBERNETES_VERSION = "1.33.0"
NAMESPACE = "translane"
APP_IMAGE = "ghcr.io/translane/translane"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}
# Secrets live outside the repo; the manifests may only reference these.
SECRET_REFS = {
    ("translane-provider", "ARK_API_KEY"),
    ("translane-shim-keys", "TRANSLANE_API_KEYS"),
    *(
        (secret, key)
        for secret in ("translane-service-tls", "translane-shim-tls")
        for key in ("tls.crt", "tls.key", "ca.crt")
    ),
}


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, render_overlay: Callable[[str], Rendered]) -> Rendered:
    return render_overlay(request.param)


# ---- helpers ---------------------------------------------------------------------------------


def workloads(r: Rendered) -> list[dict[str, Any]]:
    return [d for d in r.docs if d["kind"] in WORKLOAD_KINDS]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def all_containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    """Plain `value` env entries (valueFrom ones map to "")."""
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def is_app(container: dict[str, Any]) -> bool:
    return str(container["image"]).startswith(APP_IMAGE)


def app_container(r: Rendered, deployment: str) -> dict[str, Any]:
    found = [c for c in pod_spec(r.get("Deployment", deployment))["containers"] if is_app(c)]
    assert len(found) == 1, f"{r.overlay}: {deployment} should run exactly one translane container"
    return found[0]


def role(container: dict[str, Any]) -> str:
    """The translane subcommand a container runs (the image's CMD is `serve`)."""
    args = list(container.get("command", [])[1:]) + list(container.get("args", []))
    if container.get("command") and container["command"][0] != "translane":
        return ""
    return args[0] if args else "serve"


def named_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise AssertionError(f"container {container['name']}: no port named {port!r}")


def probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int | None:
    for kind in ("grpc", "httpGet", "tcpSocket"):
        if kind in probe:
            return named_port(container, probe[kind]["port"])
    return None


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    match = selector.get("matchLabels", selector)
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def models_config(r: Rendered) -> tuple[dict[str, Any], Config]:
    """The service's models file from the rendered ConfigMap, parsed with the service's own env."""
    svc = app_container(r, "translane-service")
    env = env_of(svc)
    path = Path(env["TRANSLANE_MODELS_FILE"])
    cm = r.configmap("translane-models")
    data = tomllib.loads(cm["data"][path.name])
    env = {k: v for k, v in env.items() if v} | {"ARK_API_KEY": "test"}
    return data, parse_config(data, env, source=f"{r.overlay}:ConfigMap")


def shipped_default() -> Config:
    text = (REPO / "service" / "translane" / "default_models.toml").read_text(encoding="utf-8")
    return parse_config(tomllib.loads(text), {}, source="default_models.toml")


def hpa_for(r: Rendered, deployment: str) -> dict[str, Any]:
    found = [
        h
        for h in r.of_kind("HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["kind"] == "Deployment" and h["spec"]["scaleTargetRef"]["name"] == deployment
    ]
    assert len(found) == 1, f"{r.overlay}: expected one HPA for {deployment}, got {len(found)}"
    return found[0]


# ---- rendering and schema validation ---------------------------------------------------------


def kubernetes_validate() -> str:
    here = Path(sys.executable).parent / "kubernetes-validate"
    path = str(here) if here.exists() else shutil.which("kubernetes-validate")
    if path is None:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    return path


def run_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubernetes_validate(), "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_overlay_validates_offline_strict(rendered: Rendered, tmp_path: Path) -> None:
    out = tmp_path / f"{rendered.overlay}.yaml"
    out.write_text(rendered.text, encoding="utf-8")
    proc = run_validate(out)
    assert proc.returncode == 0, f"kubernetes-validate {rendered.overlay}:\n{proc.stdout}{proc.stderr}"


def test_strict_validation_rejects_unknown_fields(render_overlay: Callable[[str], Rendered], tmp_path: Path) -> None:
    # Guard against the validator silently passing everything.
    docs = [dict(d) for d in render_overlay(OVERLAYS[0]).docs]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    dep["spec"] = dict(dep["spec"], replicaz=3)
    out = tmp_path / "broken.yaml"
    out.write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    proc = run_validate(out)
    assert proc.returncode != 0
    assert "replicaz" in proc.stdout + proc.stderr


def test_expected_objects(rendered: Rendered) -> None:
    for kind, name in [
        ("Namespace", NAMESPACE),
        ("Deployment", "translane-service"),
        ("Deployment", "translane-shim"),
        ("Service", "translane-service"),
        ("Service", "translane-service-headless"),
        ("Service", "translane-shim"),
        ("HorizontalPodAutoscaler", "translane-service"),
        ("HorizontalPodAutoscaler", "translane-shim"),
        ("PodDisruptionBudget", "translane-service"),
        ("PodDisruptionBudget", "translane-shim"),
        ("NetworkPolicy", "translane-service"),
    ]:
        rendered.get(kind, name)
    rendered.configmap("translane-models")


def test_every_namespaced_object_is_in_the_namespace(rendered: Rendered) -> None:
    for d in rendered.docs:
        if d["kind"] in CLUSTER_SCOPED:
            continue
        assert d["metadata"].get("namespace") == NAMESPACE, (
            f"{rendered.overlay}: {d['kind']}/{d['metadata']['name']} is not in {NAMESPACE}"
        )


def test_namespace_enforces_restricted_pod_security(rendered: Rendered) -> None:
    labels = rendered.get("Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# ---- pods and containers ---------------------------------------------------------------------


def test_pods_are_hardened(rendered: Rendered) -> None:
    for w in workloads(rendered):
        name = f"{rendered.overlay}:{w['metadata']['name']}"
        spec = pod_spec(w)
        psc = spec.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, name
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        assert spec.get("enableServiceLinks") is False, name
        assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True, name
        for c in all_containers(w):
            where = f"{name}/{c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, where
            uid = sc.get("runAsUser", psc.get("runAsUser"))
            assert isinstance(uid, int) and uid >= 10000, f"{where}: runAsUser {uid}"
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where


def test_app_containers_run_as_the_image_user(rendered: Rendered) -> None:
    for w in workloads(rendered):
        for c in all_containers(w):
            if is_app(c):
                assert c["securityContext"]["runAsUser"] == 10001, c["name"]


def test_containers_have_requests_and_limits(rendered: Rendered) -> None:
    for w in workloads(rendered):
        for c in all_containers(w):
            res = c.get("resources", {})
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert res.get(section, {}).get(resource), (
                        f"{rendered.overlay}:{w['metadata']['name']}/{c['name']}: no {section}.{resource}"
                    )


def test_containers_have_probes_on_declared_ports(rendered: Rendered) -> None:
    for w in workloads(rendered):
        for c in pod_spec(w)["containers"]:
            where = f"{rendered.overlay}:{w['metadata']['name']}/{c['name']}"
            declared = {int(p["containerPort"]) for p in c.get("ports", [])}
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert kind in c, f"{where}: no {kind}"
                port = probe_port(c, c[kind])
                if port is not None:
                    assert port in declared, f"{where}: {kind} port {port} is not a containerPort"


def test_service_uses_native_grpc_probes(rendered: Rendered) -> None:
    c = app_container(rendered, "translane-service")
    assert role(c) == "serve"
    # The kubelet's gRPC probes speak no TLS: they ask the plaintext health-only port.
    health = next(p["containerPort"] for p in c["ports"] if p["name"] == "health")
    assert env_of(c)["TRANSLANE_HEALTH_PORT"] == str(health) != "50051"
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[kind]["grpc"]["port"] == health, kind
    assert c["readinessProbe"]["grpc"].get("service", "") in ("", "translane.v1.Translator")
    # Liveness asks the overall server (""), never a dependency.
    assert c["livenessProbe"]["grpc"].get("service", "") == ""


def test_shim_uses_http_probes(rendered: Rendered) -> None:
    c = app_container(rendered, "translane-shim")
    assert role(c) == "shim"
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("startupProbe", "livenessProbe"):
        assert "httpGet" in c[kind], kind


def test_app_images_are_pinned(rendered: Rendered) -> None:
    for w in workloads(rendered):
        for c in all_containers(w):
            image = c["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert "@sha256:" in image or (tag and tag != "latest"), f"unpinned image {image}"
            if is_app(c):
                assert re.fullmatch(rf"{re.escape(APP_IMAGE)}(:[\w.-]+|@sha256:[0-9a-f]{{64}})", image)
                assert c.get("imagePullPolicy") == "IfNotPresent"


def test_graceful_termination_outlasts_the_server_grace(rendered: Rendered) -> None:
    _, cfg = models_config(rendered)
    for name in ("translane-service", "translane-shim"):
        spec = pod_spec(rendered.get("Deployment", name))
        c = app_container(rendered, name)
        pre_stop = c["lifecycle"]["preStop"]
        if "exec" in pre_stop:
            cmd = pre_stop["exec"]["command"]
            assert cmd[0] == "sleep", cmd
            sleep_s = float(cmd[1])
        else:
            sleep_s = float(pre_stop["sleep"]["seconds"])
        assert sleep_s > 0
        grace = spec["terminationGracePeriodSeconds"]
        assert grace > 10
        # The kubelet's clock includes preStop: the server must finish its own grace within the rest.
        assert grace > sleep_s + cfg.server.grace_s, f"{name}: grace {grace} s is too short"


def test_tmp_is_a_writable_emptydir(rendered: Rendered) -> None:
    for name in ("translane-service", "translane-shim"):
        spec = pod_spec(rendered.get("Deployment", name))
        c = app_container(rendered, name)
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        assert "/tmp" in mounts, name
        vol = next(v for v in spec["volumes"] if v["name"] == mounts["/tmp"])
        assert "emptyDir" in vol, name


# ---- configuration, secrets ------------------------------------------------------------------


def test_no_secret_values_are_committed(rendered: Rendered) -> None:
    for d in rendered.of_kind("Secret"):
        assert not d.get("data") and not d.get("stringData"), f"Secret {d['metadata']['name']}"
    for dirpath, dirnames, filenames in os.walk(K8S):
        dirnames[:] = [d for d in dirnames if not d.startswith(".venv")]  # k8s/checkov.sh's virtualenv
        for path in (Path(dirpath) / f for f in filenames if f.endswith((".yaml", ".yml", ".env", ".toml"))):
            text = path.read_text(encoding="utf-8")
            assert "secretGenerator" not in text, path
            assert not re.search(r"^kind:\s*Secret\b", text, re.M), path


def test_secrets_are_referenced_by_the_agreed_names(rendered: Rendered) -> None:
    refs: set[tuple[str, str]] = set()
    for w in workloads(rendered):
        spec = pod_spec(w)
        for c in all_containers(w):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
            assert not c.get("envFrom"), "envFrom would hide which keys a pod takes"
        for v in spec.get("volumes", []):
            if "secret" in v:
                for item in v["secret"].get("items", []):
                    refs.add((v["secret"]["secretName"], item["key"]))
    assert refs == SECRET_REFS


def test_models_configmap_is_mounted_where_the_service_reads_it(rendered: Rendered) -> None:
    c = app_container(rendered, "translane-service")
    spec = pod_spec(rendered.get("Deployment", "translane-service"))
    path = Path(env_of(c)["TRANSLANE_MODELS_FILE"])
    mount = next(m for m in c["volumeMounts"] if Path(m["mountPath"]) == path.parent)
    vol = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert vol["configMap"]["name"] == rendered.configmap("translane-models")["metadata"]["name"]
    assert path.name in rendered.configmap("translane-models")["data"]


def test_models_file_keeps_every_model_and_listens_on_all_interfaces(rendered: Rendered) -> None:
    data, cfg = models_config(rendered)
    default = shipped_default()
    assert set(cfg.models) == set(default.models)
    assert cfg.default_model == default.default_model
    assert data["server"]["host"] == "0.0.0.0"
    assert cfg.server.host == "0.0.0.0"
    assert cfg.server.port == 50051
    assert cfg.server.metrics_port == 9464
    # All interfaces, so only with mTLS: the service's config refuses plaintext there.
    assert cfg.server.tls and cfg.server.tls_client_ca_file and not cfg.server.allow_insecure
    for name, m in cfg.models.items():
        d = default.models[name]
        # RPM/TPM are account-wide; they are never divided (the governor shares them).
        assert (m.rpm, m.tpm, m.lane, m.api_style) == (d.rpm, d.tpm, d.lane, d.api_style), name


def test_models_files_are_generated_from_the_shipped_default() -> None:
    proc = subprocess.run(
        [sys.executable, str(K8S / "sync_models.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_replicas_never_exceed_the_provider_limits(rendered: Rendered) -> None:
    """Lanes are per pod: max replicas x per-pod concurrency must fit the provider's limit, and
    the governor must be shared (Redis) as soon as there can be more than one pod."""
    _, cfg = models_config(rendered)
    default = shipped_default()
    dep = rendered.get("Deployment", "translane-service")
    hpa = hpa_for(rendered, "translane-service")
    max_pods = max(hpa["spec"]["maxReplicas"], dep["spec"].get("replicas", 1))
    assert hpa["spec"].get("minReplicas", 1) <= hpa["spec"]["maxReplicas"]
    strategy = dep["spec"].get("strategy", {}).get("rollingUpdate", {})
    assert strategy.get("maxSurge") in (0, "0%"), "a surge pod would exceed the split limits"
    if max_pods > 1:
        assert cfg.governor.kind == "redis", f"{max_pods} pods with a local governor"
        assert cfg.governor.redis_url
    # Each pod's share while Redis is down: 1/replicas of the limits, for every pod there can be.
    assert cfg.governor.replicas >= max_pods
    for name, lane in cfg.lanes.items():
        total = lane.max_concurrency * max_pods
        assert total <= default.lanes[name].max_concurrency, f"lane {name}: {total} in flight"
    for name, m in cfg.models.items():
        total = m.max_concurrency * max_pods
        assert total <= default.models[name].max_concurrency, f"model {name}: {total} in flight"


def test_prod_splits_lanes_over_three_pods(render_overlay: Callable[[str], Rendered]) -> None:
    if "prod" not in OVERLAYS:
        pytest.skip("no prod overlay")
    r = render_overlay("prod")
    _, cfg = models_config(r)
    assert r.get("Deployment", "translane-service")["spec"]["replicas"] == 3
    assert r.get("Deployment", "translane-shim")["spec"]["replicas"] == 2
    assert cfg.governor.kind == "redis" and cfg.governor.replicas == 3
    default = shipped_default()
    # 80 / 3 -> 26 (slow), 500 / 3 -> 166 (fast) with the shipped limits.
    for name, lane in cfg.lanes.items():
        assert lane.max_concurrency == default.lanes[name].max_concurrency // 3, name
    for name, m in cfg.models.items():
        assert m.max_concurrency == default.models[name].max_concurrency // 3, name
    env = env_of(app_container(r, "translane-service"))
    assert env["TRANSLANE_GOVERNOR"] == "redis"
    assert env["TRANSLANE_REPLICAS"] == "3"


def test_dev_is_single_replica_with_local_governor(render_overlay: Callable[[str], Rendered]) -> None:
    if "dev" not in OVERLAYS:
        pytest.skip("no dev overlay")
    r = render_overlay("dev")
    _, cfg = models_config(r)
    for name in ("translane-service", "translane-shim"):
        assert r.get("Deployment", name)["spec"]["replicas"] == 1
        assert env_of(app_container(r, name))["OTEL_TRACES_EXPORTER"] == "none"
    assert cfg.governor.kind == "local"
    assert hpa_for(r, "translane-service")["spec"]["maxReplicas"] == 1


def test_otlp_settings(rendered: Rendered) -> None:
    for name in ("translane-service", "translane-shim"):
        env = env_of(app_container(rendered, name))
        assert env["OTEL_SERVICE_NAME"] == name
        if env["OTEL_TRACES_EXPORTER"] == "otlp":
            assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
            assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
        else:
            assert env["OTEL_TRACES_EXPORTER"] == "none"


def test_otlp_exporter_ships_in_the_image(rendered: Rendered) -> None:
    """OTEL_TRACES_EXPORTER=otlp needs the exporter package in the image, which installs only
    the project's own dependencies (Dockerfile: pip install translane)."""
    wants = {
        env_of(app_container(rendered, n)).get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        for n in ("translane-service", "translane-shim")
        if env_of(app_container(rendered, n))["OTEL_TRACES_EXPORTER"] == "otlp"
    }
    if not wants:
        return
    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}
    for protocol in wants:
        package = "grpc" if protocol == "grpc" else "http"
        assert {"opentelemetry-exporter-otlp", f"opentelemetry-exporter-otlp-proto-{package}"} & names, (
            f"{rendered.overlay} exports traces over OTLP/{protocol}, but pyproject.toml's "
            f"dependencies lack opentelemetry-exporter-otlp-proto-{package}"
        )


# ---- services, discovery, autoscaling, disruption --------------------------------------------


def test_grpc_services(rendered: Rendered) -> None:
    svc = rendered.get("Service", "translane-service")
    grpc = next(p for p in svc["spec"]["ports"] if p["name"] == "grpc")
    assert grpc["port"] == 50051 and grpc["appProtocol"] == "grpc"
    headless = rendered.get("Service", "translane-service-headless")
    assert headless["spec"]["clusterIP"] == "None"
    hgrpc = next(p for p in headless["spec"]["ports"] if p["name"] == "grpc")
    assert hgrpc["port"] == 50051 and hgrpc["appProtocol"] == "grpc"
    assert headless["spec"]["selector"] == svc["spec"]["selector"]


def test_selectors_match_pods(rendered: Rendered) -> None:
    pods = {w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w in workloads(rendered)}
    for w in workloads(rendered):
        assert selects(w["spec"]["selector"], pods[w["metadata"]["name"]])
    for s in rendered.of_kind("Service"):
        matched = [n for n, labels in pods.items() if selects(s["spec"]["selector"], labels)]
        assert matched, f"Service {s['metadata']['name']} selects no pods"
        for port in s["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for n in matched:
                cs = pod_spec(rendered.get("Deployment", n))["containers"]
                assert any(
                    (isinstance(target, int) and target in {p["containerPort"] for p in c.get("ports", [])})
                    or target in {p.get("name") for p in c.get("ports", [])}
                    for c in cs
                ), f"Service {s['metadata']['name']}: targetPort {target} not on {n}"
    for p in rendered.of_kind("PodDisruptionBudget"):
        assert [n for n, labels in pods.items() if selects(p["spec"]["selector"], labels)]
        assert "maxUnavailable" in p["spec"], "minAvailable would block drains of 1-replica pods"


def test_service_addresses_in_env_name_rendered_services(rendered: Rendered) -> None:
    services = {s["metadata"]["name"]: s for s in rendered.of_kind("Service")}
    addr = re.compile(r"^(?:dns:///|redis://)?([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:(\d+)")
    for name in ("translane-service", "translane-shim"):
        env = env_of(app_container(rendered, name))
        for var in ("TRANSLANE_GRPC_TARGET", "TRANSLANE_REDIS_URL"):
            if not env.get(var):
                continue
            m = addr.match(env[var])
            assert m, f"{var}={env[var]}"
            host, port = m.group(1), int(m.group(2))
            assert host in services, f"{name}: {var} names {host}, which is not rendered"
            assert port in {p["port"] for p in services[host]["spec"]["ports"]}, f"{var}={env[var]}"
    shim_target = env_of(app_container(rendered, "translane-shim"))["TRANSLANE_GRPC_TARGET"]
    assert shim_target.startswith("dns:///translane-service-headless:")


def test_hpas(rendered: Rendered) -> None:
    for name in ("translane-service", "translane-shim"):
        hpa = hpa_for(rendered, name)
        assert hpa["apiVersion"] == "autoscaling/v2"
        cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
        assert cpu and cpu[0]["resource"]["name"] == "cpu"
        dep = rendered.get("Deployment", name)
        spec = hpa["spec"]
        assert spec.get("minReplicas", 1) <= dep["spec"]["replicas"] <= spec["maxReplicas"], name


# ---- network policy --------------------------------------------------------------------------


def _ports(rules: list[dict[str, Any]]) -> set[int]:
    return {p["port"] for rule in rules for p in rule.get("ports", [])}


def test_network_policy(rendered: Rendered) -> None:
    default_deny = [p for p in rendered.of_kind("NetworkPolicy") if p["spec"]["podSelector"] == {}]
    assert default_deny and set(default_deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    np = rendered.get("NetworkPolicy", "translane-service")["spec"]
    assert set(np["policyTypes"]) == {"Ingress", "Egress"}
    by_port: dict[int, list[dict[str, Any]]] = {}
    for rule in np["ingress"]:
        assert rule.get("from"), "an ingress rule without `from` admits everyone"
        for p in rule["ports"]:
            by_port.setdefault(p["port"], []).extend(rule["from"])
    assert set(by_port) == {50051, 9464}
    grpc_peers = by_port[50051]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "translane-shim"}}} in grpc_peers
    assert any(p.get("podSelector", {}).get("matchLabels") == {"translane.io/client": "true"} for p in grpc_peers)
    assert all(
        p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "monitoring"
        for p in by_port[9464]
    )
    assert {53, 443, 6379, 4317, 4318} <= _ports(np["egress"])
    assert all(rule.get("to") for rule in np["egress"]), "an egress rule without `to` opens it all"


# ---- checkov ---------------------------------------------------------------------------------


def checkov_command() -> list[str] | None:
    if shutil.which("checkov"):
        return [shutil.which("checkov") or "checkov"]
    if importlib.util.find_spec("checkov") is not None:
        return [sys.executable, "-m", "checkov.main"]
    local = K8S / ".venv-checkov" / "bin" / "checkov"
    if local.exists():
        return [str(local)]
    return None


def test_checkov_skip_list_explains_every_skip() -> None:
    lines = (K8S / ".checkov.yaml").read_text(encoding="utf-8").splitlines()
    config = yaml.safe_load("\n".join(lines))
    skipped = config["skip-check"]
    assert skipped
    for check in skipped:
        i = next(n for n, line in enumerate(lines) if line.strip() == f"- {check}")
        assert lines[i - 1].strip().startswith("#"), f"{check} is skipped without a reason"


def test_checkov_passes(rendered: Rendered, tmp_path: Path) -> None:
    cmd = checkov_command()
    if cmd is None:
        pytest.skip("checkov is not installed; run k8s/checkov.sh")
    (tmp_path / f"{rendered.overlay}.yaml").write_text(rendered.text, encoding="utf-8")
    proc = subprocess.run(
        [*cmd, "--config-file", str(K8S / ".checkov.yaml"), "--framework", "kubernetes", "--directory", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"checkov failed for {rendered.overlay}:\n{proc.stdout[-6000:]}"


# ---- the image the manifests run ---------------------------------------------------------------


def test_dockerfile_matches_the_manifests(render_overlay: Callable[[str], Rendered]) -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    bases = {alias: image for image, alias in stages}
    final_image, _ = stages[-1]
    while final_image in bases:  # FROM <earlier stage>
        final_image = bases[final_image]
    assert final_image == "python:3.11-slim" or final_image.startswith("python:3.11-slim@")
    final_stage = text[text.rindex("\nFROM ") :]
    assert re.search(r"^USER\s+10001(:10001)?\s*$", final_stage, re.M)
    assert re.search(r'^ENTRYPOINT\s+\["translane"\]\s*$', final_stage, re.M)
    assert re.search(r'^CMD\s+\["serve"\]\s*$', final_stage, re.M)
    assert "pip wheel" in text and "--no-index" in final_stage
    for overlay in OVERLAYS:
        for w in workloads(render_overlay(overlay)):
            for c in all_containers(w):
                if is_app(c):
                    assert not c.get("command"), "keep the image's ENTRYPOINT; set args only"
                    assert role(c) in ("serve", "shim")


def test_dockerignore_lets_the_package_sources_in() -> None:
    allowed = {
        line.strip()[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("!")
    }
    assert "pyproject.toml" in allowed
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    readme = project["project"].get("readme")
    if isinstance(readme, str):
        assert readme in allowed
    find = project["tool"]["setuptools"]["packages"]["find"]
    for where in find.get("where", ["."]):
        for pattern in find.get("include", ["*"]):
            for init in (REPO / where).glob(f"{pattern}/__init__.py"):
                top = init.parent.relative_to(REPO).parts[0]
                assert top in allowed, f".dockerignore keeps out {top}/ (package {init.parent.name})"


def test_grpc_is_mtls_between_shim_and_service(rendered: Rendered) -> None:
    svc, shim = app_container(rendered, "translane-service"), app_container(rendered, "translane-shim")
    svc_env, shim_env = env_of(svc), env_of(shim)

    def secret_of(w: str, c: dict[str, Any], path: str) -> tuple[str, str]:
        """(Secret, key) that the file at `path` in container `c` of Deployment `w` comes from."""
        mount = next(m for m in c["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/"))
        vol = next(v for v in pod_spec(rendered.get("Deployment", w))["volumes"] if v["name"] == mount["name"])
        rel = path[len(mount["mountPath"].rstrip("/")) + 1 :]
        item = next(i for i in vol["secret"]["items"] if i["path"] == rel)
        return vol["secret"]["secretName"], item["key"]

    assert secret_of("translane-service", svc, svc_env["TRANSLANE_TLS_CERT_FILE"]) == (
        "translane-service-tls",
        "tls.crt",
    )
    assert secret_of("translane-service", svc, svc_env["TRANSLANE_TLS_KEY_FILE"]) == (
        "translane-service-tls",
        "tls.key",
    )
    assert secret_of("translane-service", svc, svc_env["TRANSLANE_TLS_CLIENT_CA_FILE"]) == (
        "translane-service-tls",
        "ca.crt",
    )
    for var, key in (("CA_FILE", "ca.crt"), ("CERT_FILE", "tls.crt"), ("KEY_FILE", "tls.key")):
        assert secret_of("translane-shim", shim, shim_env[f"TRANSLANE_CLIENT_TLS_{var}"]) == ("translane-shim-tls", key)
    # The name the shim checks is the headless Service's, in this namespace.
    headless = rendered.get("Service", "translane-service-headless")
    namespace = headless["metadata"].get("namespace", NAMESPACE)
    assert shim_env["TRANSLANE_CLIENT_TLS_SERVER_NAME"] == f"translane-service-headless.{namespace}.svc"
    assert "TRANSLANE_GRPC_INSECURE" not in svc_env
