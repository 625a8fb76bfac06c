"""GET /v1/usage: the service's usage ledger (GetUsage) for the caller's tenant; an admin reads any tenant's, or
every tenant's."""

from __future__ import annotations

import grpc
from aiohttp import web
from translane.errors import quote
from translane.v1 import translate_pb2 as pb
from translane.wire import WireError, from_rpc_error, usage_row_json

from ._http import IS_ADMIN, STATE, TENANT, json_response

__all__ = ["IS_ADMIN", "TENANT", "USAGE_PATH", "get_usage", "usage_scope"]

USAGE_PATH = "/v1/usage"

# Every tenant, as GetUsage names them.
ALL_TENANTS = "*"
_PARAMS = frozenset({"start", "end", "group_by", "tenant"})
# The service's field names, as this route's query names them.
_FIELDS = {"start_day": "start", "end_day": "end"}


def usage_scope(tenant: str, admin: bool, asked: str) -> str:
    """Whose usage a caller of `tenant` reads when it asks for `asked`: its own when it names none or itself; an
    admin, the tenant it names, or every tenant when it names none; anyone else, a 403 naming the parameter."""
    if admin:
        return asked or ALL_TENANTS
    if not asked or asked == tenant:
        return tenant
    raise WireError(
        403,
        f"tenant: {quote(asked)} is not yours; leave it out for your own usage",
        kind="permission_error",
        code="permission_denied",
        param="tenant",
    )


async def get_usage(request: web.Request) -> web.Response:
    """GET /v1/usage?start=YYYY-MM-DD&end=YYYY-MM-DD&group_by=model,day,task&tenant=NAME."""
    query = request.query
    unknown = sorted(set(query) - _PARAMS)
    if unknown:
        raise WireError(
            400,
            f"{unknown[0]}: unknown parameter; accepted: {', '.join(sorted(_PARAMS))}",
            code="unknown_parameter",
            param=unknown[0],
        )
    scope = usage_scope(request.get(TENANT, ""), request.get(IS_ADMIN, True), query.get("tenant", ""))
    groups = [g for raw in query.getall("group_by", []) for g in raw.split(",") if g.strip()]
    ask = pb.GetUsageRequest(
        tenant=scope, start_day=query.get("start", ""), end_day=query.get("end", ""), group_by=groups
    )
    backend = request.app[STATE].backend
    try:
        answer = await backend.usage(ask, request.headers)
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc, _FIELDS) from None
    return json_response(
        {
            "object": "list",
            "start": answer.start_day,
            "end": answer.end_day,
            "group_by": groups,
            "data": [usage_row_json(r) for r in answer.rows],
        }
    )
