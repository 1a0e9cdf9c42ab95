"""The design's dependency rule, checked on the source: ``flows → steps → snapshots`` and, inside
``flows``, ``cli → orchestration → engine``; no import circles anywhere, function-local imports included
(an import inside a function is still a dependency; only ``if TYPE_CHECKING:`` imports are exempt)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("flows", "steps", "snapshots")

# A module of the first layer may not import one of the second.
FORBIDDEN = [
    ("snapshots", "steps"), ("snapshots", "flows"), ("snapshots", "prefect"), ("snapshots", "paramiko"),
    ("snapshots", "winrm"),
    ("steps", "flows"), ("steps", "prefect"),
    ("flows.engine", "flows.orchestration"), ("flows.engine", "flows.cli"), ("flows.engine", "flows.lab"),
    ("flows.orchestration", "flows.cli"), ("flows.orchestration", "flows.lab"),
    ("flows.lab", "flows.cli"),
    ("flows.client", "prefect"), ("flows.client", "flows.orchestration"), ("flows.client", "flows.engine"),
    ("flows.client", "flows.cli"), ("flows.client", "sqlalchemy"),
    # the server sits beside the CLI: above orchestration (it starts deployments through it), below nothing
    ("flows.engine", "flows.server"), ("flows.orchestration", "flows.server"), ("flows.server", "flows.cli"),
    ("flows.server", "flows.client"), ("flows.server", "flows.lab"),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, modules: set[str], here: str) -> set[str]:
    """Every runtime import in ``tree``, resolved to the modules it loads (``from a import b`` loads
    ``a.b`` when that is a module)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                depth = len(here.split(".")) - node.level + (1 if _is_package(here, modules) else 0)
                package = here.split(".")[:depth]
                base = ".".join([*package, base] if base else package)
            found.add(base)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _is_package(name: str, modules: set[str]) -> bool:
    return any(m.startswith(name + ".") for m in modules)


def _graph() -> dict[str, set[str]]:
    paths = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    modules = {_module_name(p) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        name = _module_name(path)
        imported = _imports(ast.parse(path.read_text(encoding="utf-8")), modules, name)
        # importing a.b.c also runs a and a.b: count the parents as dependencies too
        edges = set()
        for target in imported:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                edges.add(".".join(parts[:i]))
        graph[name] = {e for e in edges if e != name and not name.startswith(e + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


GRAPH = _graph()


def test_the_graph_sees_the_packages() -> None:
    """Guard against a test that passes because it read nothing."""
    assert len(GRAPH) > 60
    assert "snapshots.store.records" in GRAPH["flows.engine.plan"]
    assert "flows.orchestration.deploy_flow" in GRAPH["flows.orchestration.local_runs"]  # a function-local import


def test_no_import_circles() -> None:
    assert _cycles(GRAPH) == []


def test_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(("low", "high"), FORBIDDEN, ids=[f"{a}-not-{b}" for a, b in FORBIDDEN])
def test_dependencies_point_one_way(low: str, high: str) -> None:
    wrong = sorted(f"{module} imports {target}" for module, targets in GRAPH.items()
                   if module == low or module.startswith(low + ".")
                   for target in targets if target == high or target.startswith(high + "."))
    assert wrong == []
