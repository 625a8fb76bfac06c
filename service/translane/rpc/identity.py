"""Who a call comes from, as the servicer sees it, and whose usage that caller may read: the one place that
decides either (the tenants file plugs in here)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PermissionDenied, quote
from ..tenants import current_caller
from ..usage import ALL_TENANTS

__all__ = ["Caller", "caller", "usage_tenant"]


@dataclass(frozen=True, slots=True)
class Caller:
    """A call's tenant ("" is the default tenant) and whether it may read every tenant's usage."""

    tenant: str = ""
    admin: bool = False


def caller() -> Caller:
    """The caller of the RPC being served, as the tenants file knows it (translane.tenants names it before the
    servicer runs). Without tenants every caller is the default tenant and may read all usage: all of it is its
    own."""
    who = current_caller().tenant
    if who is None:
        return Caller("", admin=True)
    return Caller(who.name, admin=who.admin)


def usage_tenant(caller: Caller, asked: str) -> str:
    """Whose usage a query of `caller` reads when it asks for `asked` ("" its own, ALL_TENANTS every tenant's):
    its own always; another's, or everyone's, only as an admin (PermissionDenied naming the field otherwise)."""
    if not asked or asked == caller.tenant:
        return caller.tenant
    if caller.admin:
        return asked
    if asked == ALL_TENANTS:
        raise PermissionDenied("tenant: every tenant's usage is for admins; leave tenant empty for your own")
    raise PermissionDenied(f"tenant: {quote(asked)} is not yours; leave tenant empty for your own usage")
