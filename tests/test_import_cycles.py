"""No module of the package takes part in an import cycle, lazy (function-level) imports included.

The graph has an edge ``a -> b`` for every ``import neurocode.b`` / ``from neurocode.b import x``
in module ``a``, at module level or inside a function (a lazy import is still a dependency:
it only moves the cycle from import time to call time). ``from package import name`` is an
edge to the submodule ``package.name`` when that is a module, else to the package. Not edges:
imports under ``if TYPE_CHECKING:`` (never executed) and the implicit import of a module's
parent packages (Python runs ``neurocode/data/__init__.py`` before ``neurocode.data.hdf5``
whatever imports it). The data formats reach the in-memory classes' writers through the
registry in ``neurocode.data.formats``, which imports nothing of neurocode: no exemption.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "neurocode"


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere in its body (see the module docstring)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return {m for m in found if m in modules and m != name}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    modules = _modules(root)
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "neurocode.data.recording" in graph and len(graph) > 30  # the walk found the package
    found = cycles(graph)
    assert not found, "import cycles (each a set of modules that import each other): " + "; ".join(
        " <-> ".join(c) for c in found)


def test_file_formats_depend_on_the_recordings_not_the_reverse():
    graph = import_graph()
    formats = {"neurocode.data.hdf5", "neurocode.data.nwb"}
    for cls_module in ("neurocode.data.recording", "neurocode.data.continuous"):
        assert not graph[cls_module] & formats, f"{cls_module} imports a file format: {graph[cls_module] & formats}"
    for fmt in formats:
        assert {"neurocode.data.recording", "neurocode.data.continuous"} <= graph[fmt]


@pytest.mark.parametrize("source,expected", [
    # a lazy import closes a cycle as surely as a module-level one
    ({"a": "import neurocode.b\n", "b": "def f():\n    from neurocode.a import x\n"}, [["neurocode.a", "neurocode.b"]]),
    # relative imports and `from package import submodule`
    ({"a": "from . import b\n", "b": "from .c import y\n", "c": "from neurocode import a\n"},
     [["neurocode.a", "neurocode.b", "neurocode.c"]]),
    # TYPE_CHECKING imports never run
    ({"a": "import neurocode.b\n", "b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import neurocode.a\n"},
     []),
])
def test_cycle_finder_sees_lazy_and_relative_imports(tmp_path, source, expected):
    root = tmp_path / "neurocode"
    root.mkdir()
    (root / "__init__.py").write_text("")
    for name, text in source.items():
        (root / f"{name}.py").write_text(text)
    assert cycles(import_graph(root)) == expected
