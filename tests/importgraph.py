"""The import graph of a source tree, read with `ast` (nothing is imported).

Every `import` counts, wherever it stands: at module level ("eager"), inside a
function ("lazy": it runs when the function does) or under `if TYPE_CHECKING:`
("typing": it never runs, but it is still an arrow a reader follows).
Importing `a.b.c` from outside package `a.b` also runs `a.b/__init__.py`, so
that package is an edge too.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


class Kind(Enum):
    EAGER = "eager"
    LAZY = "lazy"
    TYPING = "typing"


@dataclass
class ImportGraph:
    """Modules of one top-level package, the arrows between them and the third-party imports."""

    root: str
    files: dict[str, Path] = field(default_factory=dict)
    internal: dict[str, dict[str, Kind]] = field(default_factory=dict)
    external: dict[str, dict[str, Kind]] = field(default_factory=dict)

    def edges(self, module: str, kinds: set[Kind]) -> set[str]:
        return {m for m, k in self.internal[module].items() if k in kinds}

    def reach(self, starts: Iterable[str], kinds: set[Kind]) -> dict[str, str | None]:
        """Every module reachable from `starts`, each with the module it was first reached from."""
        came_from: dict[str, str | None] = dict.fromkeys(starts)
        todo = list(came_from)
        while todo:
            module = todo.pop(0)
            for target in sorted(self.edges(module, kinds)):
                if target not in came_from:
                    came_from[target] = module
                    todo.append(target)
        return came_from

    def third_party(self, modules: Iterable[str], kinds: set[Kind]) -> dict[str, str]:
        """Third-party top-level module -> one of `modules` that imports it."""
        found: dict[str, str] = {}
        for module in sorted(modules):
            for name, kind in self.external[module].items():
                if kind in kinds:
                    found.setdefault(name, module)
        return found

    def cycles(self) -> list[list[str]]:
        """Strongly connected components of more than one module (Tarjan), over every arrow."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        found: list[list[str]] = []

        def visit(v: str) -> None:
            index[v] = low[v] = len(index)
            stack.append(v)
            on_stack.add(v)
            for w in sorted(self.internal[v]):
                if w not in index:
                    visit(w)
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

        for v in sorted(self.internal):
            if v not in index:
                visit(v)
        return found


def chain(came_from: dict[str, str | None], end: str) -> str:
    """`a -> b -> end`, the way `reach` first got to `end`."""
    path = [end]
    while (previous := came_from[path[-1]]) is not None:
        path.append(previous)
    return " -> ".join(reversed(path))


def _module_name(root_dir: Path, path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root_dir.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, Kind]]:
    """Every import statement with where it stands."""
    out: list[tuple[ast.Import | ast.ImportFrom, Kind]] = []

    def walk(node: ast.AST, kind: Kind) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                out.append((child, kind))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                walk(child, Kind.TYPING if kind is Kind.TYPING else Kind.LAZY)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    walk(ast.Module(body=[stmt], type_ignores=[]), Kind.TYPING)
                for stmt in child.orelse:
                    walk(ast.Module(body=[stmt], type_ignores=[]), kind)
            else:
                walk(child, kind)

    walk(tree, Kind.EAGER)
    return out


def _stronger(a: Kind | None, b: Kind) -> Kind:
    order = [Kind.EAGER, Kind.LAZY, Kind.TYPING]
    return b if a is None or order.index(b) < order.index(a) else a


def build(package_dir: Path) -> ImportGraph:
    """The graph of the package at `package_dir` (a directory with `__init__.py`)."""
    graph = ImportGraph(root=package_dir.name)
    packages: set[str] = set()
    for path in sorted(package_dir.rglob("*.py")):
        name, is_package = _module_name(package_dir, path)
        graph.files[name] = path
        if is_package:
            packages.add(name)
    for name, path in graph.files.items():
        internal: dict[str, Kind] = {}
        external: dict[str, Kind] = {}
        here = name.split(".") if name in packages else name.split(".")[:-1]
        for node, kind in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = here[: len(here) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.append(full if full in graph.files else base)
            for target in targets:
                top = target.split(".")[0]
                if top != graph.root:
                    if top not in sys.stdlib_module_names and top != "__future__":
                        external[top] = _stronger(external.get(top), kind)
                    continue
                while target and target not in graph.files:
                    target = target.rpartition(".")[0]
                parts = target.split(".")
                for i in range(2, len(parts) + 1):
                    step = ".".join(parts[:i])
                    # A parent package of the importer is running already: no new arrow.
                    if step != name and not name.startswith(step + ".") and step in graph.files:
                        internal[step] = _stronger(internal.get(step), kind)
        graph.internal[name] = internal
        graph.external[name] = external
    return graph
