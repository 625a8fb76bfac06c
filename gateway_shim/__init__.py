"""The HTTP shim: OpenAI-format and Immersive Translate clients onto translane gRPC."""
