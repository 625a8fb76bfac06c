"""The service's configuration: one immutable value built once from a models file and the environment.

`_objects.py` declares the values, each setting once on its field; `_load.py` reads a models file
and the environment into them through the one builder of translane.settings.
"""

from ..settings import ConfigError
from ._load import default_models_text, load_config, parse_config
from ._objects import (
    API_STYLES,
    BATCH_APIS,
    CacheConfig,
    Config,
    GovernorConfig,
    JobsConfig,
    LaneConfig,
    ModelConfig,
    ProviderConfig,
    ServerConfig,
    is_loopback,
)

__all__ = [
    "API_STYLES",
    "BATCH_APIS",
    "CacheConfig",
    "Config",
    "ConfigError",
    "GovernorConfig",
    "JobsConfig",
    "LaneConfig",
    "ModelConfig",
    "ProviderConfig",
    "ServerConfig",
    "default_models_text",
    "is_loopback",
    "load_config",
    "parse_config",
]
