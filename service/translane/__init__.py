"""translane: a gRPC translation service that runs LLM providers at their rate limits, never past them."""

__version__ = "0.1.0"
