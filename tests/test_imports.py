"""No import cycles inside sparseft/, counting imports inside functions too (a deferred import
hides a cycle from Python, not from the design), and every module imports on its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sparseft"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """sparseft modules that ``name`` imports anywhere in its file (``from . import x`` counts x)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "sparseft")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "sparseft":
                continue
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known)
    return {m for m in out if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    """Module -> the sparseft modules it imports (a package's ``__init__`` is the package itself;
    importing ``a.b`` also runs ``a``, which is not counted: packages only re-export)."""
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


LEAVES = ("sparseft.core.keys", "sparseft.files", "sparseft.trust")  # import nothing of sparseft


def test_no_import_cycle_inside_sparseft():
    graph = import_graph()
    assert len(graph) > 30 and graph["sparseft.io"], "the graph must see the package"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
    for leaf in LEAVES:
        assert not graph[leaf], f"{leaf} must import nothing of sparseft, imports {sorted(graph[leaf])}"
    assert graph["sparseft.labels"] <= {"sparseft._compat"}
    assert graph["sparseft.core.facts"] <= {"sparseft.core.backend"}, "facts ask the backend, nothing else"
    assert graph["sparseft.core.backend"] <= {"sparseft._compat", "sparseft.backends"}, "backends load by name"
    assert not any(m.startswith("sparseft.heads") for m in graph["sparseft.model"]), "AdaptedModel knows no heads"


def test_every_module_imports_in_a_fresh_process():
    modules = sorted(_modules())
    code = "import importlib\nfor m in %r:\n    importlib.import_module(m)" % modules
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=300
    )
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1:]


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(_modules()))
def test_every_module_imports_alone(module):
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=120
    )
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1:]
