"""Settings declared once, on their dataclass field, and read one way from a file's table and the environment.

A setting is a field of a frozen dataclass: the annotation is its type, and `setting(...)` gives its
default (none: the file must give it), the checks its value must pass and the environment variable
that overrides it. `build` fills such a dataclass from a table of the models file (the shim has none)
and the environment, walking `dataclasses.fields()`: a field of a settings dataclass type is a
sub-table, a `Mapping[str, <dataclass>]` a table of them keyed by name. Every error names the field's
path (`server.port: must be within 0..65535, got -1`), or the variable when the value came from there.

The environment, read by one rule for everyone (the service, the shim, the commands): a variable that
is unset is not given, and the file's value or the default holds; so is one that is blank, except a
flag, which blank sets false; a flag is true for 1/true/yes/on and false for 0/false/no/off, and
anything else is an error naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints, overload

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_GRPC_PORT",
    "DEFAULT_GRPC_TARGET",
    "GRPC_TARGET_ENV",
    "TABLE_KEY",
    "TENANTS_FILE_ENV",
    "Check",
    "ConfigError",
    "Setting",
    "at_most",
    "below",
    "build",
    "declaration",
    "derived",
    "flag",
    "grpc_target",
    "integer",
    "non_negative",
    "nonblank",
    "number",
    "one_of",
    "positive",
    "read",
    "setting",
    "starts_with",
    "text",
    "validate",
    "within",
    "words",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending field or environment variable."""


# -- the environment -------------------------------------------------------------

DEFAULT_GRPC_PORT = 50051
DEFAULT_GRPC_TARGET = f"127.0.0.1:{DEFAULT_GRPC_PORT}"
# Where the shim and the commands find the service.
GRPC_TARGET_ENV = "TRANSLANE_GRPC_TARGET"
# The tenants file, read alike by the service (who may call, and its limits) and the shim (whose key is whose).
TENANTS_FILE_ENV = "TRANSLANE_TENANTS_FILE"
# The key the commands present to the service (`authorization: Bearer KEY`) when a tenants file is in force.
API_KEY_ENV = "TRANSLANE_API_KEY"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _given(env: Mapping[str, str], var: str) -> str | None:
    return env.get(var, "").strip() or None


def flag(env: Mapping[str, str], var: str, default: bool = False) -> bool:
    """`var` as a flag: 1/true/yes/on or 0/false/no/off (empty: false); `default` when unset."""
    raw = env.get(var)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{var}: expected 1/0, true/false, yes/no or on/off, got {raw[:20]!r}")


def integer(env: Mapping[str, str], var: str, default: int) -> int:
    """`var` as an integer; `default` when unset or blank."""
    raw = _given(env, var)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{var}: expected an integer, got {raw[:20]!r}") from None


def number(env: Mapping[str, str], var: str, default: float) -> float:
    """`var` as a number; `default` when unset or blank."""
    raw = _given(env, var)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{var}: expected a number, got {raw[:20]!r}") from None


def text(env: Mapping[str, str], var: str, default: str = "") -> str:
    """`var` without surrounding blanks; `default` when unset or blank."""
    raw = _given(env, var)
    return default if raw is None else raw


def words(env: Mapping[str, str], var: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """`var` as a comma-separated list, blank items dropped; `default` when unset or blank."""
    raw = _given(env, var)
    return default if raw is None else tuple(w.strip() for w in raw.split(",") if w.strip())


def grpc_target(env: Mapping[str, str] | None = None) -> str:
    """Where the service is: $TRANSLANE_GRPC_TARGET, else 127.0.0.1:50051."""
    return text(os.environ if env is None else env, GRPC_TARGET_ENV, DEFAULT_GRPC_TARGET)


# -- declarations ------------------------------------------------------------------

# A check returns what is wrong with a value ("must be > 0, got -5"), or None.
Check = Callable[[Any], "str | None"]
# What a derived field says when its value is its table's key in the parent table (a model's name).
TABLE_KEY = "the key of its table"


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    """What a field declares beyond its type and default."""

    checks: tuple[Check, ...] = ()
    env: str = ""
    # Set on a field the file does not hold: where its value comes from instead.
    derived: str = ""


_META = "translane.setting"
_PLAIN = Setting()


@overload
def setting(default: T, *, check: Check | tuple[Check, ...] = (), env: str = "", repr: bool = True) -> T: ...
@overload
def setting(*, factory: Callable[[], T], check: Check | tuple[Check, ...] = (), repr: bool = True) -> T: ...
@overload
def setting(*, check: Check | tuple[Check, ...] = (), env: str = "", repr: bool = True) -> Any: ...
def setting(
    default: Any = dataclasses.MISSING,
    *,
    factory: Any = dataclasses.MISSING,
    check: Check | tuple[Check, ...] = (),
    env: str = "",
    repr: bool = True,
) -> Any:
    """A dataclass field declaring a setting: its default (none: required), checks and environment variable."""
    checks = check if isinstance(check, tuple) else (check,)
    meta = {_META: Setting(checks, env)}
    return dataclasses.field(default=default, default_factory=factory, metadata=meta, repr=repr)


def derived(source: str, default: Any = dataclasses.MISSING, *, repr: bool = True) -> Any:
    """A field the file does not hold; `source` says where its value comes from."""
    return dataclasses.field(default=default, metadata={_META: Setting(derived=source)}, repr=repr)


def declaration(f: dataclasses.Field[Any]) -> Setting:
    """The field's declaration (a field declared plainly is a setting without checks or variable)."""
    decl = f.metadata.get(_META, _PLAIN)
    assert isinstance(decl, Setting)
    return decl


def positive(value: float) -> str | None:
    """Check: > 0."""
    return None if value > 0 else f"must be > 0, got {value!r}"


def non_negative(value: float) -> str | None:
    """Check: >= 0."""
    return None if value >= 0 else f"must be >= 0, got {value!r}"


def at_most(limit: float) -> Check:
    """Check: <= limit."""
    return lambda value: None if value <= limit else f"must be at most {limit}, got {value!r}"


def below(limit: float) -> Check:
    """Check: < limit."""
    return lambda value: None if value < limit else f"must be < {limit}, got {value!r}"


def within(low: int, high: int) -> Check:
    """Check: low <= value <= high."""
    return lambda value: None if low <= value <= high else f"must be within {low}..{high}, got {value!r}"


def one_of(options: tuple[str, ...]) -> Check:
    """Check: one of `options`."""
    return lambda value: None if value in options else f"must be one of {', '.join(options)}; got {value[:60]!r}"


def starts_with(*prefixes: str) -> Check:
    """Check: the text starts with one of `prefixes`."""
    said = " or ".join(prefixes)
    return lambda value: None if value.startswith(prefixes) else f"must start with {said}, got {value[:200]!r}"


def nonblank(complaint: str = "must not be empty") -> Check:
    """Check: the text is not blank."""
    return lambda value: None if value.strip() else complaint


# -- the builder -------------------------------------------------------------------


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _checks(kind: Any, decl: Setting) -> tuple[Check, ...]:
    if get_origin(kind) is Literal:
        return (one_of(get_args(kind)), *decl.checks)
    return decl.checks


def _run(checks: tuple[Check, ...], value: Any, where: str) -> None:
    for check in checks:
        complaint = check(value)
        if complaint:
            raise ConfigError(f"{where}: {complaint}")


def _table(data: object, where: str) -> Mapping[Any, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
    return data


def _is_table(kind: Any) -> bool:
    """A sub-table (a settings dataclass) or a table of them by name: optional in the file, built when absent."""
    args = get_args(kind)
    return dataclasses.is_dataclass(kind) or (
        get_origin(kind) is Mapping and len(args) == 2 and dataclasses.is_dataclass(args[1])
    )


def _from_file(kind: Any, value: Any, where: str, env: Mapping[str, str]) -> Any:
    """A value of the file as `kind`, or a ConfigError naming `where`."""
    origin, args = get_origin(kind), get_args(kind)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return build(kind, value, where, env)
    if origin is Mapping:
        table = _table(value, where)
        if isinstance(args[1], type) and dataclasses.is_dataclass(args[1]):
            key = next((f.name for f in dataclasses.fields(args[1]) if declaration(f).derived == TABLE_KEY), None)
            return MappingProxyType(
                {n: build(args[1], t, _join(where, n), env, **({key: n} if key else {})) for n, t in table.items()}
            )
        return MappingProxyType(dict(table))
    if origin in (tuple, frozenset):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected list, got {type(value).__name__} {value!r}")
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings")
        return origin(value)
    if origin is Literal:
        kind = str
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _from_env(kind: Any, env: Mapping[str, str], var: str) -> tuple[bool, Any]:
    """(given, value) of `var` read as `kind` by the environment's one rule."""
    if kind is bool:
        return var in env, flag(env, var)
    if _given(env, var) is None:
        return False, None
    origin = get_origin(kind)
    if kind is int:
        return True, integer(env, var, 0)
    if kind is float:
        return True, number(env, var, 0.0)
    if kind is str or origin is Literal:
        return True, text(env, var)
    if origin in (tuple, frozenset):
        return True, origin(words(env, var))
    raise TypeError(f"{var}: no environment reading for {kind!r}")


def read(
    cls: type, table: object = None, path: str = "", env: Mapping[str, str] | None = None, **given: Any
) -> dict[str, Any]:
    """The values of `cls`'s fields from a table of the file (None: empty) and `env`, each checked.

    A value in `given` wins (unchecked: the caller's own), then the field's environment variable, then
    the table, then the default (left out: the dataclass fills it in). Fields the file does not hold
    (`derived`) come only from `given` or their default. A key of the table that is no field is an error.
    """
    env = {} if env is None else env
    data = _table({} if table is None else table, path or "<root>")
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    readable: set[str] = set()
    for f in dataclasses.fields(cls):
        decl, kind, where = declaration(f), hints[f.name], _join(path, f.name)
        if not decl.derived:
            readable.add(f.name)
        if f.name in given:
            values[f.name] = given[f.name]
        if decl.derived or f.name in given:
            continue
        checks = _checks(kind, decl)
        if f.name in data or _is_table(kind):
            value = _from_file(kind, data.get(f.name, {}), where, env)
            _run(checks, value, where)
            values[f.name] = value
        if decl.env:
            present, value = _from_env(kind, env, decl.env)
            if present:
                _run(checks, value, decl.env)
                values[f.name] = value
        if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: required field is missing")
    unknown = sorted(str(k) for k in data if k not in readable)
    if unknown:
        raise ConfigError(f"{_join(path, unknown[0])}: unknown field")
    return values


def build(cls: type[T], table: object = None, path: str = "", env: Mapping[str, str] | None = None, **given: Any) -> T:
    """`cls` built from what `read` finds."""
    return cls(**read(cls, table, path, env, **given))


def validate(obj: Any, path: str = "") -> None:
    """Run every field's declared checks on `obj`; errors name the field's variable, else its path."""
    hints = get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        decl = declaration(f)
        _run(_checks(hints[f.name], decl), getattr(obj, f.name), decl.env or _join(path, f.name))
