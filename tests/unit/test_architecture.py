"""The tree's promises, read from the source with `ast`: no import cycles in `logd/`,
`logd-ctl` apart from the daemon, the writer apart from ingest and control, and the
pure modules (codec, routing, policy, control requests, event line) free of I/O.

Every import counts, including those under ``TYPE_CHECKING`` and inside functions: a
cycle hidden behind either still ties the two modules together for a reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "logd"
CLIENT = ROOT / "client"

# Modules that decide or format without touching the outside world (STYLE.md: "Only the
# trio edges await"). Each may import the others, and the `Config` dataclasses.
PURE = {
    "logd.config.units",
    "logd.config.values",
    "logd.config.forward",
    "logd.write.jobs",
    "logd.write.records",
    "logd.write.dedup",
    "logd.write.pending",
    "logd.write.routing",
    "logd.write.rejects",
    "logd.write.templates",
    "logd.index.eventline",
    "logd.index.levels",
    "logd.index.textlines",
    "logd.write.timeline",
    "logd.config.changes",
    "logd.index.names",
    "logd.index.states",
    "logd.index.tables",
    "logd.retention.policy",
    "logd.retention.rotation",
    "logd.control.requests",
    "logd.control.tailing",
    "logd.control.lines",
    "logd.ctl.format",
    "logd.ctl.blocks",
    "logd.forward.match",
    "logd.forward.syslog",
    "logd.forward.frames",
}
# What a pure module may lean on besides PURE: the frozen `Config` dataclasses (their
# loading functions, which read files, are not called from pure code) and the wire codec.
PURE_MAY_IMPORT = {
    "logd.config",
    "logd_client.wire",
    "logd_client.control.items",
    "logd_client.control.protocol",
}
# Standard library and third-party modules that mean I/O, threads or an event loop.
IO_MODULES = {
    "asyncio",
    "fcntl",
    "gzip",
    "io",
    "os",
    "select",
    "shutil",
    "socket",
    "sqlite3",
    "subprocess",
    "tempfile",
    "threading",
    "trio",
}


def module_name(path: Path) -> str:
    base = CLIENT if path.is_relative_to(CLIENT) else ROOT
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def known_modules() -> set[str]:
    """Ours and the client's: what `from X import name` may name as a module."""
    client = (module_name(p) for p in (CLIENT / "logd_client").rglob("*.py"))
    return {*all_modules(), *client}


def type_checking_nodes(tree: ast.Module) -> set[ast.AST]:
    """Imports under ``if TYPE_CHECKING:``: types only, never run."""
    found: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for child in node.body:
                found.update(ast.walk(child))
    return found


def imported_names(path: Path, modules: set[str], *, typing: bool = True) -> Iterator[str]:
    """Every module `path` imports, resolved to a module when `from X import m` names one.

    With `typing=False`, imports that only run for the type checker are left out.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = set() if typing else type_checking_nodes(tree)
    for node in ast.walk(tree):
        if node in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                # `from logd.ctl import blocks` imports the module logd.ctl.blocks.
                sub = f"{target}.{alias.name}"
                yield sub if sub in modules else target


def import_graph(*, typing: bool = True) -> dict[str, set[str]]:
    known = known_modules()
    return {
        name: {dep for dep in imported_names(path, known, typing=typing) if dep != name}
        for name, path in all_modules().items()
    }


def ours(graph: dict[str, set[str]], name: str) -> set[str]:
    return {dep for dep in graph[name] if dep in graph}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among our modules, as a path that returns to its start."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(ours(graph, name)):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_graph_sees_the_imports_we_know_of() -> None:
    """A guard for the checks below: a resolver that finds nothing would pass them all."""
    graph = import_graph()
    assert "logd.write.routing" in graph["logd.write.gather"]
    assert "logd.ctl.blocks" in graph["logd.ctl.cli"]  # `from logd.ctl import blocks`
    assert "logd.config" in graph["logd.write.routing"]
    assert "trio" in graph["logd.server"]
    assert "logd_client.wire" in graph["logd.forward.frames"]  # `from logd_client import wire`
    assert "logd.forward.hub" in graph["logd.write.engine"]  # under TYPE_CHECKING
    assert "logd.forward.hub" not in import_graph(typing=False)["logd.write.engine"]
    assert len(graph) > 60


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = import_graph()
    graph["logd.index.eventline"] = {*graph["logd.index.eventline"], "logd.write.routing"}
    cycle = find_cycle(graph)
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert {"logd.index.eventline", "logd.write.routing"} <= set(cycle)


def test_ctl_never_imports_the_daemon_side() -> None:
    """`logd-ctl` is a light blocking client: its own modules, the control request and
    tail item shapes and the client's wire codec, nothing that starts a daemon or an
    event loop."""
    graph = import_graph()
    allowed = {
        "logd.control.requests",
        "logd.control.tailing",
        "logd_client",
        "logd_client.wire",
        "logd_client.control.connection",
        "logd_client.control.protocol",
    }
    for name in (n for n in graph if in_package(n, "logd.ctl")):
        for dep in graph[name]:
            if in_package(dep, "logd") or in_package(dep, "logd_client") or dep == "trio":
                assert in_package(dep, "logd.ctl") or dep in allowed, f"{name} imports {dep}"


def test_the_writer_never_imports_ingest_or_control() -> None:
    graph = import_graph()
    banned = ("logd.ingest", "logd.control", "logd.ctl", "logd.web", "logd.server")
    for name in (n for n in graph if in_package(n, "logd.write")):
        for dep in graph[name]:
            assert not any(in_package(dep, b) for b in banned), f"{name} imports {dep}"


def test_web_reads_through_the_index_and_the_control_socket() -> None:
    """`logd web` is a separate reader: it never reaches into the writer, ingest,
    retention or the daemon's core."""
    graph = import_graph()
    banned: tuple[str, ...] = ("logd.write", "logd.ingest.connections", "logd.ingest.listeners")
    banned += ("logd.retention", "logd.server", "logd.control.server")
    for name in (n for n in graph if in_package(n, "logd.web")):
        for dep in graph[name]:
            assert not any(in_package(dep, b) for b in banned), f"{name} imports {dep}"


@pytest.mark.parametrize("name", sorted(PURE))
def test_pure_modules_import_no_io(name: str) -> None:
    """Imports for the type checker alone (``sqlite3.Row`` as an annotation) do no I/O."""
    graph = import_graph(typing=False)
    assert name in graph, f"{name} is listed as pure but does not exist"
    for dep in graph[name]:
        top = dep.partition(".")[0]
        assert top not in IO_MODULES, f"{name} imports {dep}"
        if top in ("logd", "logd_client"):
            assert dep in PURE or dep in PURE_MAY_IMPORT, f"{name} imports {dep}"
