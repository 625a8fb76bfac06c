"""The service as the shim calls it: one gRPC channel, the caller's deadline on every call.

Trace context rides along by the channel's OpenTelemetry interceptors (see running_shim), not by hand.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Mapping

import grpc
from google.longrunning import operations_pb2 as lro
from google.longrunning import operations_pb2_grpc as lro_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from translane.tenants import ACTING_FOR
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc
from translane.wire import WireError

__all__ = ["ACTING_TENANT", "Backend"]

# The tenant the shim acts for in this request ("" : none named), set by the auth middleware from the caller's key.
ACTING_TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("translane_shim_tenant", default="")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Translator"].full_name
HEALTH_TIMEOUT_S = 2.0
# Headers in which callers state how long they will wait, in seconds. The OpenAI SDK sends its
# per-request timeout as X-Stainless-Read-Timeout: for a non-streaming call that is the caller's
# whole deadline; for a stream it bounds each read, not the whole call, so there it is not used.
_DEADLINE_HEADERS = ("Request-Timeout", "X-Request-Timeout")
_SDK_TIMEOUT_HEADER = "X-Stainless-Read-Timeout"
# Below this no request can be served (two hops on loopback and a provider call): refuse it as invalid.
MIN_TIMEOUT_S = 0.05


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < MIN_TIMEOUT_S:
        raise WireError(
            400,
            f"{name}: expected a number of seconds >= {MIN_TIMEOUT_S}, got {raw[:40]!r}",
            code="invalid_value",
            param=name,
        )
    return value


class Backend:
    """Calls the Translator service and its health service over one channel."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float, service_key: str = "") -> None:
        self.timeout_s = timeout_s
        self._own = (("authorization", f"Bearer {service_key}"),) if service_key else ()
        self.replace_channel(channel)

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        """Who calls: the shim's own key at the service, and the tenant it acts for (of the caller's key)."""
        tenant = ACTING_TENANT.get()
        return (*self._own, (ACTING_FOR, tenant)) if tenant else self._own

    def replace_channel(self, channel: grpc.aio.Channel) -> None:
        """Send new calls over `channel` (calls already made finish on the one they started on)."""
        self.channel = channel
        self._stub = pb_grpc.TranslatorStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)
        self._operations = lro_grpc.OperationsStub(channel)

    def timeout(self, headers: Mapping[str, str], streaming: bool) -> float:
        """The gRPC deadline for a caller: the shortest it states, capped by the shim's own; 400 when malformed.

        A caller that states nothing gets the shim's timeout as its deadline; the service still refuses at once
        what cannot start within its queue-wait cap for the priority, so silence never means a long queue.
        """
        timeout = self.timeout_s
        names = _DEADLINE_HEADERS if streaming else (*_DEADLINE_HEADERS, _SDK_TIMEOUT_HEADER)
        for name in names:
            raw = headers.get(name)
            if raw is not None:
                timeout = min(timeout, _seconds(name, raw.strip()))
        return timeout

    def _left(self, headers: Mapping[str, str], streaming: bool, spent_s: float) -> float:
        """What is left of the caller's deadline after `spent_s` (reading its body, say)."""
        return max(0.001, self.timeout(headers, streaming) - spent_s)

    async def translate(
        self, req: pb.TranslateRequest, headers: Mapping[str, str], spent_s: float = 0.0
    ) -> pb.TranslateResponse:
        """Unary Translate within what is left of the caller's deadline; a cancelled caller cancels the call."""
        resp: pb.TranslateResponse = await self._stub.Translate(
            req, timeout=self._left(headers, False, spent_s), metadata=self._metadata()
        )
        return resp

    def stream(
        self, req: pb.TranslateRequest, headers: Mapping[str, str], spent_s: float = 0.0
    ) -> grpc.aio.UnaryStreamCall:
        """TranslateStream; the caller must cancel the returned call if it stops reading early."""
        return self._stub.TranslateStream(req, timeout=self._left(headers, True, spent_s), metadata=self._metadata())

    async def models(self, headers: Mapping[str, str]) -> pb.ListModelsResponse:
        """ListModels."""
        resp: pb.ListModelsResponse = await self._stub.ListModels(
            pb.ListModelsRequest(), timeout=self.timeout(headers, False), metadata=self._metadata()
        )
        return resp

    async def usage(self, req: pb.GetUsageRequest, headers: Mapping[str, str]) -> pb.GetUsageResponse:
        """GetUsage, within the caller's deadline."""
        resp: pb.GetUsageResponse = await self._stub.GetUsage(
            req, timeout=self.timeout(headers, False), metadata=self._metadata()
        )
        return resp

    async def batch_translate(self, req: pb.BatchTranslateRequest) -> lro.Operation:
        """BatchTranslate, within the shim's timeout."""
        op: lro.Operation = await self._stub.BatchTranslate(req, timeout=self.timeout_s, metadata=self._metadata())
        return op

    async def operation(self, name: str) -> lro.Operation:
        """GetOperation, within the shim's timeout."""
        op: lro.Operation = await self._operations.GetOperation(
            lro.GetOperationRequest(name=name), timeout=self.timeout_s, metadata=self._metadata()
        )
        return op

    async def cancel_operation(self, name: str) -> None:
        """CancelOperation, within the shim's timeout."""
        await self._operations.CancelOperation(
            lro.CancelOperationRequest(name=name), timeout=self.timeout_s, metadata=self._metadata()
        )

    async def health(self) -> str:
        """The service's health status name ("SERVING", ...), or the gRPC error's code name."""
        try:
            resp = await self._health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=HEALTH_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
