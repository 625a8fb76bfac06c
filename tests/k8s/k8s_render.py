"""Render the kustomize overlays (kubectl kustomize) for the Kubernetes manifest tests."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())


@dataclass
class Rendered:
    overlay: str
    text: str
    docs: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for d in self.of_kind(kind):
            if d["metadata"]["name"] == name:
                return d
        raise AssertionError(f"{self.overlay}: no {kind}/{name} in the rendered output")

    def configmap(self, name: str) -> dict[str, Any]:
        """A generated ConfigMap by its kustomize base name (without the hash suffix)."""
        found = [
            d
            for d in self.of_kind("ConfigMap")
            if d["metadata"]["name"] == name or d["metadata"]["name"].rsplit("-", 1)[0] == name
        ]
        assert len(found) == 1, f"{self.overlay}: expected one ConfigMap {name}, got {len(found)}"
        return found[0]


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl (with kustomize) is not on PATH")
    return path


def render(overlay: str) -> Rendered:
    proc = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"kubectl kustomize {overlay} failed:\n{proc.stderr}"
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return Rendered(overlay=overlay, text=proc.stdout, docs=docs)
