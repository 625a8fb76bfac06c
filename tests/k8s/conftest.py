"""Shared fixtures for the Kubernetes manifest tests: render each overlay once per session."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from k8s_render import Rendered, render


@pytest.fixture(scope="session")
def render_overlay() -> Callable[[str], Rendered]:
    cache: dict[str, Rendered] = {}

    def get(overlay: str) -> Rendered:
        if overlay not in cache:
            cache[overlay] = render(overlay)
        return cache[overlay]

    return get
