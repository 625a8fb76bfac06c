"""Who is calling the gRPC port: a bearer key in the metadata, or the client certificate's subject under mTLS.

With tenants in force, every RPC but health and reflection needs an identity (UNAUTHENTICATED otherwise).
A caller whose tenant is a trusted gateway (the shim) may name the tenant it acts for in `x-translane-tenant`;
anyone else naming one is refused (PERMISSION_DENIED), so a tenant cannot be forged by a caller. The
interceptor puts the caller in a context variable the servicers read (`current_caller`).
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from ..errors import PermissionDenied, TranslaneError, Unauthenticated, quote
from ._file import DEFAULT_TENANT, Tenant, Tenants

__all__ = ["ACTING_FOR", "OPEN_SERVICES", "Caller", "Identify", "current_caller", "identify"]

# The metadata key a trusted gateway names the tenant it acts for in.
ACTING_FOR = "x-translane-tenant"
# Services anyone may call: probes and tooling.
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True, slots=True)
class Caller:
    """The tenant a call acts for (None when no tenants are in force), and how it was recognised."""

    tenant: Tenant | None
    # "key", "certificate", or "gateway NAME" (a gateway acting for `tenant`).
    via: str = ""

    @property
    def name(self) -> str:
        return self.tenant.name if self.tenant is not None else ""


_ANONYMOUS = Caller(None)
_DEFAULT = Tenant(name=DEFAULT_TENANT)
_CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("translane_caller", default=_ANONYMOUS)


def current_caller() -> Caller:
    """The caller of the RPC being served (anonymous when no tenants are in force, or outside an RPC)."""
    return _CALLER.get()


def _first(values: Sequence[bytes] | None) -> str:
    return values[0].decode("utf-8", "replace") if values else ""


def identify(tenants: Tenants, metadata: Mapping[str, str], auth: Mapping[str, Sequence[bytes]]) -> Caller:
    """The caller of an RPC from its metadata and TLS auth context; Unauthenticated / PermissionDenied."""
    if not tenants.enforced:
        return _ANONYMOUS
    header = metadata.get("authorization", "")
    caller: Tenant | None
    if header:
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("authorization: expected 'Bearer KEY'")
        caller, via = tenants.by_key(key.strip()), "key"
        if caller is None:
            raise Unauthenticated("invalid API key")
    else:
        subject = _first(auth.get("x509_subject"))
        caller, via = tenants.by_subject(subject, _first(auth.get("x509_common_name"))), "certificate"
        if caller is None:
            if subject:
                raise Unauthenticated(f"no tenant accepts the client certificate {quote(subject, 120)}")
            raise Unauthenticated(
                "no identity: send 'authorization: Bearer KEY' metadata, or a client certificate a tenant names"
            )
    named = metadata.get(ACTING_FOR, "")
    if not named:
        return Caller(caller, via)
    if not caller.gateway:
        raise PermissionDenied(
            f"{ACTING_FOR}: tenant {caller.name} is not a trusted gateway and may not name a tenant to act for"
        )
    acting = tenants.get(named)
    if acting is None and named == DEFAULT_TENANT:
        # The shim's TRANSLANE_API_KEYS are the tenant `default` there; a file of the service's that does not
        # name it gives it no limits here (as TRANSLANE_API_KEYS alone had none), its usage its own.
        acting = _DEFAULT
    if acting is None:
        raise PermissionDenied(f"{ACTING_FOR}: no tenant {quote(named)}")
    return Caller(acting, f"gateway {caller.name}")


async def _admit(tenants: Callable[[], Tenants], context: grpc.aio.ServicerContext[Any, Any]) -> None:
    metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    try:
        _CALLER.set(identify(tenants(), metadata, context.auth_context()))
    except TranslaneError as exc:
        from ..rpc.status import grpc_status_of, trailers  # the rpc package imports this one

        code = grpc_status_of(exc)
        await context.abort(code, exc.message, trailing_metadata=trailers(exc, code))


def _guarded(handler: grpc.RpcMethodHandler, tenants: Callable[[], Tenants]) -> grpc.RpcMethodHandler:
    """`handler` with the caller identified first (each RPC runs in a task of its own: the variable is its own)."""
    behavior: Callable[..., Any]
    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await _admit(tenants, context)
            return await inner_uu(request, context)

        behavior, make = unary_unary, grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream is not None:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            await _admit(tenants, context)
            async for item in inner_us(request, context):
                yield item

        behavior, make = unary_stream, grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary is not None:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await _admit(tenants, context)
            return await inner_su(requests, context)

        behavior, make = stream_unary, grpc.stream_unary_rpc_method_handler
    else:
        inner_ss = handler.stream_stream

        async def stream_stream(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            await _admit(tenants, context)
            async for item in inner_ss(requests, context):
                yield item

        behavior, make = stream_stream, grpc.stream_stream_rpc_method_handler
    return make(
        behavior, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


class Identify(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Identifies the caller of every RPC but health and reflection against the tenants in force."""

    def __init__(self, tenants: Callable[[], Tenants]) -> None:
        self._tenants = tenants

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = getattr(handler_call_details, "method", "") or ""
        if handler is None or method.startswith(OPEN_SERVICES) or not self._tenants().enforced:
            # A file that names no tenant: every caller is anonymous, what `current_caller` says unset.
            return handler
        return _guarded(handler, self._tenants)
