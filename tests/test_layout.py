"""The layout's rules, read from every module's imports (ast, nothing imported): what may use what.

- No module imports a `_private` module of another top-level package (tests may, for what they test).
- translane never imports gateway_shim: the shim is built on the service, not the other way round. The one
  exception is translane.cli, the `translane` command that starts every part (`translane shim`, `translane
  up`), and it imports only the shim's public package.
- The service core never imports a tool (translane.tools); translane.cli registers their subcommands.
- A tool is a client of the service's gRPC API, never of its internals: of translane it imports only the
  client side (TOOLS_MAY_IMPORT).
- translane.wire is pure: parse and render, no aiohttp, nothing of the core but the messages, languages and
  the error quoting.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where modules live, and the package each folder's files belong to (bench's scripts import `_common` as a
# sibling: it is bench's own module).
SOURCES = {
    ROOT / "service" / "translane": "translane",
    ROOT / "gateway_shim": "gateway_shim",
    ROOT / "bench": "bench",
    ROOT / "scripts": "scripts",
    ROOT / "k8s": "k8s",
}
# Folders of scripts run as files, not packages: they import each other as top-level modules.
SCRIPT_FOLDERS = frozenset({"bench", "scripts", "k8s"})
# The command that starts every part: the one module of translane that may import the shim and the tools.
COMPOSITION_ROOT = "translane.cli"
TOOLS = "translane.tools"
# What a tool may import of translane: the API's messages, a channel to it, the callers' formats and the
# client-side helpers. Never the engine, lanes, governor, server, cache, budgets, upstream or config.
TOOLS_MAY_IMPORT = frozenset(
    {
        "translane",
        TOOLS,
        "translane.v1",
        "translane.wire",
        "translane.tls",
        "translane.calls",
        "translane.languages",
        "translane.tokens",
        "translane.tasks",
        "translane.errors",
    }
)
# Written by grpcio-tools (which imports grpc._utilities), checked by tests/test_protos.py.
GENERATED = "translane.v1"
WIRE = "translane.wire"
# translane.errors for its `quote`, the one rule for quoting what a message rejects (the module imports only `re`).
WIRE_MAY_IMPORT = frozenset(
    {"translane", WIRE, "translane.v1", "translane.languages", "translane.calls", "translane.errors"}
)


@dataclass(frozen=True, slots=True)
class Import:
    importer: str
    module: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.module}"


def _module_name(path: Path, folder: Path, package: str) -> str:
    parts = [package, *path.relative_to(folder).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    """Every module of ours by its dotted name (py files only; nothing under a hidden or cache folder)."""
    found = {}
    for folder, package in SOURCES.items():
        for path in folder.rglob("*.py"):
            if any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(folder).parts):
                continue
            found[_module_name(path, folder, package)] = path
    return found


MODULES = _modules()


def _resolve(importer: str, is_package: bool, module: str | None, level: int) -> str:
    """The absolute module a `from` names, relative ones resolved against the importer's package."""
    if level == 0:
        assert module is not None
        folder = importer.split(".")[0]
        # A script's sibling (bench/overhead.py: `from _common import ...`) is its folder's own module.
        if folder in SCRIPT_FOLDERS and f"{folder}.{module.split('.')[0]}" in MODULES:
            return f"{folder}.{module}"
        return module
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _imports(name: str, path: Path) -> Iterator[Import]:
    """What `name` imports, anywhere in it (a function's lazy imports too), as absolute module names.

    `from pkg import x` counts as importing pkg.x when that is a module of ours, else pkg.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, _resolve(name, is_package, alias.name, 0), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node.module, node.level)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                private_name = alias.name.startswith("_") and not alias.name.startswith("__")
                yield Import(name, sub if sub in MODULES or private_name else base, node.lineno)


IMPORTS = sorted({i for name, path in MODULES.items() for i in _imports(name, path)}, key=str)


def _top(module: str) -> str:
    return module.split(".")[0]


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _private(module: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in module.split("."))


def test_the_walk_sees_the_imports() -> None:
    """A walk that resolved nothing would pass every rule below: check it finds what is known to be there."""
    seen = {(i.importer, i.module) for i in IMPORTS}
    assert ("gateway_shim._app", "translane.wire") in seen
    assert ("gateway_shim._app", "gateway_shim._http") in seen  # relative, within the package
    assert ("translane.tools.batch._runner", "translane.tools.batch._io") in seen
    assert ("translane.tools.batch._runner", "translane.tls") in seen  # `from translane import tls`
    assert ("translane.wire.openai", "translane.v1.translate_pb2") in seen  # `from ..v1 import translate_pb2`
    assert ("bench.batch", "bench._common") in seen  # a script's sibling
    assert ("translane.cli", "translane.tools.batch") in seen
    assert len(MODULES) > 60


def test_no_module_imports_another_packages_private_module() -> None:
    wrong = [
        str(i)
        for i in IMPORTS
        if _private(i.module) and _top(i.module) != _top(i.importer) and not _within(i.importer, GENERATED)
    ]
    assert not wrong, "import the other package's public module instead:\n" + "\n".join(wrong)


def test_translane_never_imports_the_shim() -> None:
    wrong = [
        str(i)
        for i in IMPORTS
        if _within(i.importer, "translane")
        and _within(i.module, "gateway_shim")
        and not (i.importer == COMPOSITION_ROOT and i.module == "gateway_shim")
    ]
    assert not wrong, "the shim is built on translane, never the other way round:\n" + "\n".join(wrong)


def test_the_core_never_imports_a_tool() -> None:
    wrong = [
        str(i)
        for i in IMPORTS
        if _within(i.importer, "translane")
        and not _within(i.importer, TOOLS)
        and i.importer != COMPOSITION_ROOT
        and _within(i.module, TOOLS)
    ]
    assert not wrong, "tools are built on the service, never the other way round:\n" + "\n".join(wrong)


def _may_import(module: str, allowed: frozenset[str]) -> bool:
    return any(module == a or (a != "translane" and module.startswith(a + ".")) for a in allowed)


@pytest.mark.parametrize(
    ("package", "allowed"), [(TOOLS, TOOLS_MAY_IMPORT), (WIRE, WIRE_MAY_IMPORT)], ids=["tools", "wire"]
)
def test_what_of_translane_a_part_may_import(package: str, allowed: frozenset[str]) -> None:
    wrong = [
        str(i)
        for i in IMPORTS
        if _within(i.importer, package) and _within(i.module, "translane") and not _may_import(i.module, allowed)
    ]
    assert not wrong, f"{package} imports what it may not:\n" + "\n".join(wrong)


def test_the_wire_formats_are_pure() -> None:
    wrong = [str(i) for i in IMPORTS if _within(i.importer, WIRE) and _top(i.module) in ("aiohttp", "gateway_shim")]
    assert not wrong, "translane.wire parses and renders; the shim's handlers do the HTTP:\n" + "\n".join(wrong)
