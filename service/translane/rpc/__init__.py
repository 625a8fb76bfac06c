"""The gRPC face of the engine: request validation (`validation`), our errors as gRPC statuses (`status`), the
record of each served RPC (`record`) and the Translator servicer (`servicer`). The server's lifecycle is
`translane.server`."""
