"""Tenants: who may call (keys, certificate subjects), what each may use, and each one's own limits.

`_file` reads the tenants file (and reloads it), `_identity` identifies a gRPC caller, `_limits` keeps a
tenant's limits in this process and `_shared` in Redis for every replica.
"""

from ._file import (
    DEFAULT_TENANT,
    TENANTS_FILE_ENV,
    Tenant,
    Tenants,
    TenantsFile,
    key_digest,
    load_tenants,
    parse_tenants,
)
from ._identity import ACTING_FOR, OPEN_SERVICES, Caller, Identify, current_caller, identify
from ._limits import Hold, LocalLimits, TenantLimits, refusal
from ._shared import SharedLimits, open_limits

__all__ = [
    "ACTING_FOR",
    "DEFAULT_TENANT",
    "OPEN_SERVICES",
    "TENANTS_FILE_ENV",
    "Caller",
    "Hold",
    "Identify",
    "LocalLimits",
    "SharedLimits",
    "Tenant",
    "TenantLimits",
    "Tenants",
    "TenantsFile",
    "current_caller",
    "identify",
    "key_digest",
    "load_tenants",
    "open_limits",
    "parse_tenants",
    "refusal",
]
