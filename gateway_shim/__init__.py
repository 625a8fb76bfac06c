"""The HTTP shim: OpenAI-format and Immersive Translate clients onto translane gRPC."""

from ._app import RunningShim, create_app, run_shim, running_shim
from ._config import ShimConfig

__all__ = ["RunningShim", "ShimConfig", "create_app", "run_shim", "running_shim"]
