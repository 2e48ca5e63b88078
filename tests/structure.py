"""The package's shape, measured from its source: the import graph (every import of a
``kandel_repro`` module, those made inside functions and under ``TYPE_CHECKING``
included), its longest chain, its cycles, private names imported across modules, and
the lines of each module and subpackage.

``python tests/structure.py`` (``make structure``) prints them; ``tests/test_structure.py``
holds the package to its limits (CONTRIBUTING, "Layers").

How a chain is counted: an edge ``a → b`` is any ``import``/``from … import`` in module
``a`` (at any depth of its syntax tree) that names module ``b`` or a name defined in ``b``;
``from pkg import mod`` is an edge to ``pkg.mod``. Edges into a package's ``__init__`` are
left out (the package's own docstring, nothing a module needs). A chain is a path of such
edges; its length is the number of modules on it, both ends included.
"""
from __future__ import annotations

import ast
import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "kandel_repro"

# The limits (CONTRIBUTING, "Layers").
MAX_CHAIN = 10
MAX_MODULE_LINES = 500
MAX_PACKAGE_LINES = 3000


@dataclass
class Graph:
    files: dict[str, Path]  # module name → file
    edges: dict[str, set[str]]  # module → the modules it imports
    private: list[tuple[str, str, str]] = field(default_factory=list)  # (importer, module, name)

    @functools.cached_property
    def _longest(self) -> dict[str, tuple[str, ...]]:
        memo: dict[str, tuple[str, ...]] = {}

        def visit(module, stack):
            if module in memo:
                return memo[module]
            best = (module,)
            for target in sorted(self.edges[module]):
                if target in stack:
                    continue  # a cycle: reported by cycles()
                chain = (module,) + visit(target, stack | {module})
                if len(chain) > len(best):
                    best = chain
            memo[module] = best
            return best

        sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
        for module in sorted(self.files):
            visit(module, frozenset())
        return memo

    def longest_chain(self) -> tuple[str, ...]:
        return max(self._longest.values(), key=lambda chain: (len(chain), chain))

    def cycles(self) -> list[tuple[str, ...]]:
        """Each import cycle once, as the modules on it (Tarjan's strongly connected
        components of more than one module, or a module importing itself)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        found: list[tuple[str, ...]] = []

        def connect(module):
            index[module] = low[module] = len(index)
            stack.append(module)
            for target in sorted(self.edges[module]):
                if target not in index:
                    connect(target)
                    low[module] = min(low[module], low[target])
                elif target in stack:
                    low[module] = min(low[module], index[target])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1 or module in self.edges[module]:
                    found.append(tuple(sorted(component)))

        for module in sorted(self.files):
            if module not in index:
                connect(module)
        return found


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = PACKAGE) -> Graph:
    files = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    packages = {name for name, path in files.items() if path.name == "__init__.py"}
    graph = Graph(files, {name: set() for name in files})
    for name, path in files.items():
        package = name if name in packages else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    if full in files:
                        graph.edges[name].add(full)
                    elif target in files:
                        graph.edges[name].add(target)
                        if alias.name.startswith("_") and target != name:
                            graph.private.append((name, target, alias.name))
            elif isinstance(node, ast.Import):
                graph.edges[name].update(a.name for a in node.names if a.name in files)
    for name in graph.edges:
        graph.edges[name] = {t for t in graph.edges[name] if t not in packages and t != name}
    return graph


def lines_of(path: Path) -> int:
    return len(path.read_text().splitlines())


def module_lines(root: Path = PACKAGE) -> dict[str, int]:
    return {module_name(path, root): lines_of(path) for path in sorted(root.rglob("*.py"))}


def package_lines(root: Path = PACKAGE) -> dict[str, int]:
    """Lines per top-level subpackage (its subpackages included)."""
    totals: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if len(parts) > 1:
            key = f"{root.name}.{parts[0]}"
            totals[key] = totals.get(key, 0) + lines_of(path)
    return totals


def report(root: Path = PACKAGE) -> str:
    graph = import_graph(root)
    chain = graph.longest_chain()
    short = [name.removeprefix(f"{root.name}.") for name in chain]
    modules = sorted(module_lines(root).items(), key=lambda item: -item[1])
    out = [f"longest import chain: {len(chain)} modules (limit {MAX_CHAIN}), counting imports "
           "inside functions and under TYPE_CHECKING",
           "  " + " → ".join(short),
           f"import cycles: {len(graph.cycles())}"]
    out += [f"  cycle: {' → '.join(cycle)}" for cycle in graph.cycles()]
    out.append(f"private names imported across modules: {len(graph.private)}")
    out += [f"  {importer} imports {module}.{name}" for importer, module, name in graph.private]
    out.append(f"largest modules (limit {MAX_MODULE_LINES} lines):")
    out += [f"  {lines:5d}  {name}" for name, lines in modules[:5]]
    out.append(f"subpackages (limit {MAX_PACKAGE_LINES} lines):")
    out += [f"  {lines:5d}  {name}" for name, lines in sorted(
        package_lines(root).items(), key=lambda item: -item[1])]
    return "\n".join(out)


if __name__ == "__main__":
    print(report())
