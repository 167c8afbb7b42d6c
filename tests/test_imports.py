"""The package's structure: no import cycle among xpnet's modules, no module over 600 lines.

The graph is read from the source with ``ast``, so an import inside a function counts as much as
one at the top of a module (a cycle through a deferred import is still a cycle: it only moves
the failure to the first call). Imports under ``if TYPE_CHECKING:`` are left out, since they
never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "xpnet"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
MAX_LINES = 600
# Modules allowed past MAX_LINES, each with its reason; none today.
LENGTH_EXEMPT: set[str] = set()


def _module_files() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The xpnet modules an import statement names (before adding implied parent packages)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level == 0:
        base = node.module or ""
    else:
        here = module.split(".") if is_package else module.split(".")[:-1]
        keep = len(here) - (node.level - 1)
        assert keep > 0, f"{module}: relative import beyond the top-level package"
        base = ".".join(here[:keep] + ([node.module] if node.module else []))
    # `from pkg import x` imports pkg and, when x is a submodule, pkg.x too.
    return [base] + [f"{base}.{a.name}" for a in node.names if a.name != "*"]


def import_graph() -> dict[str, set[str]]:
    files = _module_files()
    graph: dict[str, set[str]] = {name: set() for name in files}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for target in _targets(module, is_package, node):
                if target not in files:
                    continue  # a name imported from a module, or a module outside xpnet
                # Importing a.b.c runs the __init__ of every package above it, except those
                # that contain the importer (they are already being imported when it runs).
                implied = [p for p in _ancestors(target) if p not in _ancestors(module)]
                graph[module].update(t for t in [target, *implied] if t != module)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle among xpnet modules: " + " -> ".join(cycle or [])


def test_graph_sees_deferred_and_relative_imports():
    graph = import_graph()
    assert "xpnet.model" in graph["xpnet"]  # from .model import Sequential
    assert "xpnet.layers" in graph["xpnet"]  # from . import layers
    assert "xpnet.model" in graph["xpnet.io.loader"]  # the loader rebuilds Sequential
    # The writer is what the model uses to save; the loader is never on the model's path.
    reachable, todo = set(), ["xpnet.model"]
    while todo:
        for nxt in graph[todo.pop()] - reachable:
            reachable.add(nxt)
            todo.append(nxt)
    assert "xpnet.io.writer" in reachable
    assert "xpnet.io.loader" not in reachable


def test_cycle_finder_reports_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_codec_imports_nothing_of_xpnet():
    assert import_graph()["xpnet.io.codec"] == set()


def test_no_module_over_600_lines():
    too_long = []
    for path in _module_files().values():
        rel = path.relative_to(ROOT.parent).as_posix()
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES and rel not in LENGTH_EXEMPT:
            too_long.append(f"{rel} ({n} lines)")
    assert not too_long, f"modules over {MAX_LINES} lines: {', '.join(too_long)}"
