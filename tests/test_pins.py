"""The OpenTelemetry packages are pinned as one release, so any supported pip resolves a fresh install (issue 21)."""

from __future__ import annotations

import re
import tomllib

from .helpers.processes import ROOT

_PIN = re.compile(r"^(opentelemetry-[a-z-]+)==(\d+)\.(\d+)(?:\.(\d+)|b(\d+))$")


def test_opentelemetry_is_pinned_as_one_release() -> None:
    """The core (1.N.P) and the instrumentations (0.(N+21)bP) pin each other exactly; an open range let pip 23
    take the newest core with an instrumentation of the release before and give up (ResolutionImpossible)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    otel = [d for d in project["dependencies"] if d.startswith("opentelemetry-")]
    assert otel, "no OpenTelemetry dependency found"
    releases = set()
    for dependency in otel:
        m = _PIN.match(dependency)
        assert m, f"{dependency}: pin OpenTelemetry exactly (==), as one release"
        _, major, minor, patch, beta = m.groups()
        # 1.45.1 and 0.66b1 are the same release.
        releases.add((int(minor), int(patch)) if major == "1" else (int(minor) - 21, int(beta)))
    assert len(releases) == 1, f"OpenTelemetry pins from different releases: {otel}"
