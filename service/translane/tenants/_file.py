"""The tenants file: who may call (keys, certificate subjects), what each may use, and its own limits.

A TOML file (`TRANSLANE_TENANTS_FILE`) of `[tenants.NAME]` tables, read by the settings builder (each field
declared once on `Tenant`). A key is given plain or as `sha256:HEX`, so the file need not hold secrets; only
digests are kept, and a key is found by comparing digests in constant time against every tenant's (the time
taken says nothing about which one nearly matched). Keys are never logged or shown. `TenantsFile` re-reads the
file when it changes (looked at on the server's clock at most every few seconds) or on `reload()` (SIGHUP); a
file that cannot be used keeps the tenants in force and logs why.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from ..settings import TABLE_KEY, TENANTS_FILE_ENV, ConfigError, build, derived, non_negative, positive, setting

__all__ = [
    "DEFAULT_TENANT",
    "TENANTS_FILE_ENV",
    "Tenant",
    "Tenants",
    "TenantsFile",
    "key_digest",
    "load_tenants",
    "parse_tenants",
]

log = logging.getLogger("translane.tenants")

# The tenant TRANSLANE_API_KEYS's keys belong to (the shim's flat list of keys, as it always was).
DEFAULT_TENANT = "default"
# A tenant's name travels in metadata, metric labels and Redis keys: a short plain word.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HASHED = "sha256:"

Ceiling = Literal["interactive", "batch"]


def key_digest(key: str) -> bytes:
    """The SHA-256 digest of a key as the file gives it: `sha256:HEX`, or the key itself."""
    if key.startswith(_HASHED):
        return bytes.fromhex(key[len(_HASHED) :])
    return hashlib.sha256(key.encode()).digest()


def _keys(keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if not key.strip():
            return "a key must not be empty"
        if key.startswith(_HASHED) and not re.fullmatch(r"[0-9a-fA-F]{64}", key[len(_HASHED) :]):
            return "a sha256: key must be 64 hexadecimal digits"
    return None


@dataclass(frozen=True, slots=True)
class Tenant:
    """One tenant: how it is recognised, what it may use, and its own limits (0 = none)."""

    name: str = derived(TABLE_KEY)
    # Bearer keys, plain or `sha256:HEX`. Never printed.
    api_keys: tuple[str, ...] = setting((), check=_keys, repr=False)
    # Models it may name; empty: all.
    models: tuple[str, ...] = setting(())
    # Requests a minute (a burst of up to a minute's worth, refilled continuously), and tokens a minute.
    rpm: int = setting(0, check=non_negative)
    tpm: int = setting(0, check=non_negative)
    # Requests in flight at once.
    max_concurrency: int = setting(0, check=non_negative)
    # What it may spend in the provider's day (the day of `budget_timezone`).
    daily_token_budget: int = setting(0, check=non_negative)
    daily_cost_budget: float = setting(0.0, check=non_negative)
    # Its share of a saturated model against the other tenants waiting there.
    weight: float = setting(1.0, check=positive)
    # The highest priority it may send: "batch" runs its interactive requests as batch work.
    priority_ceiling: Ceiling = setting("interactive")
    # Client certificate subjects (mTLS) that identify it: the full subject ("CN=x,O=y") or the common name.
    certificate_subjects: tuple[str, ...] = setting(())
    # May query every tenant's usage, not only its own.
    admin: bool = setting(False)
    # A trusted gateway (the shim): may name the tenant it acts for (x-translane-tenant).
    gateway: bool = setting(False)
    digests: tuple[bytes, ...] = derived("api_keys, as SHA-256 digests", (), repr=False)

    def may_use(self, model: str) -> bool:
        """True when the tenant may name `model`."""
        return not self.models or model in self.models

    @property
    def limited(self) -> bool:
        """True when any limit of its own applies."""
        return bool(self.rpm or self.tpm or self.max_concurrency or self.daily_token_budget or self.daily_cost_budget)


@dataclass(frozen=True, slots=True)
class _File:
    tenants: Mapping[str, Tenant]


class Tenants:
    """The tenants of one reading of the file, found by name, key or certificate subject."""

    def __init__(self, tenants: Iterable[Tenant] = (), source: str = "") -> None:
        self.by_name: Mapping[str, Tenant] = MappingProxyType({t.name: t for t in tenants})
        self.source = source
        self._digests = tuple((d, t) for t in self.by_name.values() for d in t.digests)
        self._subjects = {s: t for t in self.by_name.values() for s in t.certificate_subjects}

    @property
    def enforced(self) -> bool:
        """True when callers must say who they are (a tenants file, or keys, is in force)."""
        return bool(self.by_name)

    def get(self, name: str) -> Tenant | None:
        return self.by_name.get(name)

    def weight(self, name: str) -> float:
        """The tenant's weight; 1.0 for a name the file does not hold (or no name)."""
        tenant = self.by_name.get(name)
        return tenant.weight if tenant is not None else 1.0

    def by_key(self, key: str) -> Tenant | None:
        """The tenant holding `key`, compared in constant time against every digest."""
        given = hashlib.sha256(key.encode()).digest()
        found: Tenant | None = None
        for digest, tenant in self._digests:
            if hmac.compare_digest(given, digest):
                found = tenant
        return found

    def by_subject(self, subject: str, common_name: str) -> Tenant | None:
        """The tenant naming a client certificate's subject (or its common name)."""
        return self._subjects.get(subject) or (self._subjects.get(common_name) if common_name else None)


def parse_tenants(data: Mapping[str, object], source: str = "<memory>", default_keys: Iterable[str] = ()) -> Tenants:
    """A parsed tenants file as Tenants; `default_keys` (TRANSLANE_API_KEYS) join the tenant `default`."""
    parsed = build(_File, data, "", {})
    tenants: dict[str, Tenant] = {}
    for name, t in parsed.tenants.items():
        if not _NAME.fullmatch(name):
            raise ConfigError(f"tenants.{name[:64]}: a name of letters, digits, '.', '_' and '-' (up to 64)")
        tenants[name] = t
    extra = tuple(k for k in default_keys if k.strip())
    if extra:
        base = tenants.get(DEFAULT_TENANT) or Tenant(name=DEFAULT_TENANT)
        tenants[DEFAULT_TENANT] = Tenant(
            **{f: getattr(base, f) for f in Tenant.__dataclass_fields__ if f not in ("api_keys", "digests")},
            api_keys=(*base.api_keys, *extra),
        )
    owners: dict[bytes, str] = {}
    subjects: dict[str, str] = {}
    final = []
    for name, t in tenants.items():
        digests = tuple(key_digest(k) for k in t.api_keys)
        for d in digests:
            if owners.setdefault(d, name) != name:
                raise ConfigError(f"tenants.{name}.api_keys: a key of tenant {owners[d]} too (a key names one tenant)")
        for s in t.certificate_subjects:
            if subjects.setdefault(s, name) != name:
                raise ConfigError(f"tenants.{name}.certificate_subjects: {s[:80]!r} is tenant {subjects[s]}'s too")
        final.append(
            Tenant(**{f: getattr(t, f) for f in Tenant.__dataclass_fields__ if f != "digests"}, digests=digests)
        )
    return Tenants(final, source)


def load_tenants(path: str, default_keys: Iterable[str] = ()) -> Tenants:
    """The tenants file at `path` ("" : none, only `default_keys`); ConfigError naming the file and field."""
    if not path:
        return parse_tenants({}, "<none>", default_keys)
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{TENANTS_FILE_ENV}: cannot read {path[:200]!r}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path[:200]}: cannot parse: {exc}") from None
    try:
        return parse_tenants(data, path, default_keys)
    except ConfigError as exc:
        raise ConfigError(f"{path[:200]}: {exc}") from None


_Signature = tuple[int, int, int] | None


def _signature(path: str) -> _Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class TenantsFile:
    """The tenants in force: read from `path` at start (a bad file then fails start), again when it changes
    (looked at on `clock` at most every `check_s`) and on `reload()`; a bad file later keeps the old tenants."""

    def __init__(
        self, path: str, clock: Callable[[], float], check_s: float = 5.0, default_keys: Iterable[str] = ()
    ) -> None:
        self.path = path
        self._clock = clock
        self.check_s = check_s
        self._default_keys = tuple(default_keys)
        self._seen = _signature(path) if path else None
        self._tenants = load_tenants(path, self._default_keys)
        self._checked = clock()
        self.reloads = 0

    @property
    def current(self) -> Tenants:
        """The tenants in force, read again first when the file changed since the last look."""
        if self.path:
            now = self._clock()
            if now - self._checked >= self.check_s:
                self._checked = now
                if _signature(self.path) != self._seen:
                    self.reload()
        return self._tenants

    async def watch(self) -> None:
        """Look at the file every `check_s` until cancelled, so a change is read (or its fault logged) while no
        call comes to ask."""
        while True:
            await asyncio.sleep(self.check_s)
            _ = self.current

    def weight(self, tenant: str) -> float:
        """A tenant's weight (1.0 when the file does not name it)."""
        return self.current.weight(tenant)

    def reload(self) -> bool:
        """Read the file again; False (and the tenants in force kept, the reason logged) when it is unusable."""
        if not self.path:
            return False
        self._seen = _signature(self.path)
        try:
            tenants = load_tenants(self.path, self._default_keys)
        except ConfigError as exc:
            log.error("tenants file not reloaded, keeping the tenants in force: %s", exc)
            return False
        self._tenants = tenants
        self.reloads += 1
        log.info("tenants file %s read again: %d tenants", self.path, len(tenants.by_name))
        return True
