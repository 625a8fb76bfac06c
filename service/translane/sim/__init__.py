"""A simulated Volcengine Ark: OpenAI-compatible, with its rate limits, latency and faults, and both batch routes
(Ark Batch Chat, OpenAI Files + Batches).

Tests, benchmarks and the no-key demo point translane at it instead of the real provider.
"""

from ._app import create_app, run_sim
from ._config import SimConfig, SimModelLimits

__all__ = ["SimConfig", "SimModelLimits", "create_app", "run_sim"]
