"""Languages as clients name them: translane.wire.languages, re-exported while gateway_shim._config imports it here."""

from __future__ import annotations

from translane.wire.languages import resolve

__all__ = ["resolve"]
