"""The service as the shim calls it: one gRPC channel, the caller's deadline on every call.

Trace context rides along by the channel's OpenTelemetry interceptors (see running_shim), not by hand.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

__all__ = ["Backend"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Translator"].full_name
HEALTH_TIMEOUT_S = 2.0
# The OpenAI SDK's per-request timeout, which for a non-streaming call is the caller's whole deadline.
_CLIENT_TIMEOUT_HEADER = "X-Stainless-Read-Timeout"


class Backend:
    """Calls the Translator service and its health service over one channel."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float) -> None:
        self.channel = channel
        self.timeout_s = timeout_s
        self._stub = pb_grpc.TranslatorStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)

    def _timeout(self, headers: Mapping[str, str], streaming: bool) -> float:
        raw = None if streaming else headers.get(_CLIENT_TIMEOUT_HEADER)
        if raw:
            try:
                asked = float(raw)
            except ValueError:
                return self.timeout_s
            if asked > 0:
                return min(asked, self.timeout_s)
        return self.timeout_s

    async def translate(self, req: pb.TranslateRequest, headers: Mapping[str, str]) -> pb.TranslateResponse:
        """Unary Translate; a cancelled caller cancels the call."""
        resp: pb.TranslateResponse = await self._stub.Translate(req, timeout=self._timeout(headers, False))
        return resp

    def stream(self, req: pb.TranslateRequest, headers: Mapping[str, str]) -> grpc.aio.UnaryStreamCall:
        """TranslateStream; the caller must cancel the returned call if it stops reading early."""
        return self._stub.TranslateStream(req, timeout=self._timeout(headers, True))

    async def models(self, headers: Mapping[str, str]) -> pb.ListModelsResponse:
        """ListModels."""
        resp: pb.ListModelsResponse = await self._stub.ListModels(
            pb.ListModelsRequest(), timeout=self._timeout(headers, False)
        )
        return resp

    async def health(self) -> str:
        """The service's health status name ("SERVING", ...), or the gRPC error's code name."""
        try:
            resp = await self._health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=HEALTH_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
