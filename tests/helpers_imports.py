"""The import graph of a source tree, and the checkers ``tests/test_architecture.py`` runs on it.

``SourceTree.scan(root, packages)`` reads every module of the packages (AST only: nothing is
imported). Its edges are what running the code imports:

* ``import a.b`` and ``from a import b`` statements, at module level AND inside functions;
  ``from a import b`` is an edge to the module ``a.b`` when there is one, else to ``a``;
* ``importlib.import_module("a.b")`` (and ``__import__("a.b")``) with a literal name.

Not edges: imports under ``if TYPE_CHECKING:`` (never executed; they exist to break a cycle),
and strings that name a module for later loading (``"consumer.cli.run:run_command"``): those
are ``SourceTree.module_strings``, checked by their own rule.

Each checker returns the violations it finds as readable lines; an empty list means the rule
holds. The tests run every checker on the real tree and on a small synthetic one that breaks it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MODULE_STRING = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_][\w.]*)?")
"""A string that may name a module: ``"a.b"`` or ``"a.b:attribute"``."""


@dataclass(frozen=True)
class Edge:
    """``importer`` imports ``imported`` (an absolute dotted name) at ``line``."""

    importer: str
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer} (line {self.line}) imports {self.imported}"


def under(name: str, prefix: str) -> bool:
    """``name`` is the module or package ``prefix`` or lies inside it (every name is under "")."""
    return not prefix or name == prefix or name.startswith(prefix + ".")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node`` that runs, i.e. all but ``if TYPE_CHECKING:`` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for branch in child.orelse:
                yield branch
                yield from _runtime_nodes(branch)
            continue
        yield child
        yield from _runtime_nodes(child)


def _literal_import_call(node: ast.AST) -> str | None:
    """The name in ``importlib.import_module("x")`` / ``import_module("x")`` / ``__import__``."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    first = node.args[0]
    if name in {"import_module", "__import__"} and isinstance(first, ast.Constant):
        return first.value if isinstance(first.value, str) else None
    return None


@dataclass
class SourceTree:
    """The modules of ``packages`` under ``root``, by dotted name (a package by its own name)."""

    root: Path
    modules: dict[str, Path]

    @classmethod
    def scan(cls, root: Path, packages: Sequence[str]) -> SourceTree:
        modules: dict[str, Path] = {}
        for package in packages:
            for path in sorted((root / package).rglob("*.py")):
                parts = path.relative_to(root).with_suffix("").parts
                modules[".".join(parts).removesuffix(".__init__")] = path
        return cls(root, modules)

    def parse(self, name: str) -> ast.Module:
        path = self.modules[name]
        return ast.parse(path.read_text(), filename=str(path))

    def edges(self) -> list[Edge]:
        """Every import of every module (see the module docstring for what counts)."""
        return [edge for name in self.modules for edge in self.edges_of(name)]

    def edges_of(self, name: str) -> list[Edge]:
        edges: list[Edge] = []
        for node in _runtime_nodes(self.parse(name)):
            line = getattr(node, "lineno", 0)
            if isinstance(node, ast.Import):
                edges += [Edge(name, alias.name, line) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = self._absolute(name, node)
                edges += [Edge(name, self._target(base, a.name), line) for a in node.names]
            elif (literal := _literal_import_call(node)) is not None:
                edges.append(Edge(name, literal, line))
        return edges

    def module_strings(self, name: str) -> list[Edge]:
        """Strings in ``name`` that name a module of the tree (``"a.b"``, ``"a.b:attr"``)."""
        found: list[Edge] = []
        for node in _runtime_nodes(self.parse(name)):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            text = node.value
            looks_like_one = MODULE_STRING.fullmatch(text) and ("." in text or ":" in text)
            if looks_like_one and self.owner(text.partition(":")[0]) is not None:
                found.append(Edge(name, text, node.lineno))
        return found

    def owner(self, dotted: str) -> str | None:
        """The module of the tree that ``dotted`` is or lies in (``a.b.attr`` -> ``a.b``)."""
        while dotted and dotted not in self.modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    def _absolute(self, importer: str, node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        is_package = self.modules[importer].name == "__init__.py"
        package = importer if is_package else importer.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        return f"{package}.{node.module}" if node.module else package

    def _target(self, base: str, name: str) -> str:
        submodule = f"{base}.{name}"
        return submodule if submodule in self.modules else base


# -- checkers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forbidden:
    """Modules under ``importer`` never import modules under ``imported`` (a dotted prefix)."""

    importer: str
    imported: str
    why: str
    strictly_inside: bool = False
    """Only modules *inside* ``imported`` are forbidden, not the package itself."""

    def breaks(self, edge: Edge) -> bool:
        if not under(edge.importer, self.importer) or under(edge.importer, self.imported):
            return False
        if self.strictly_inside:
            return edge.imported.startswith(self.imported + ".")
        return under(edge.imported, self.imported)


def forbidden_imports(tree: SourceTree, rules: Sequence[Forbidden]) -> list[str]:
    """Each import that one of ``rules`` forbids, with the rule's reason."""
    return [f"{edge}: {rule.why}" for edge in tree.edges() for rule in rules if rule.breaks(edge)]


def framework_imports(tree: SourceTree, seams: Mapping[str, Sequence[str]]) -> list[str]:
    """Each import of a framework of ``seams`` outside the modules allowed to adapt it."""
    found: list[str] = []
    for edge in tree.edges():
        allowed = seams.get(edge.imported.partition(".")[0])
        if allowed is not None and not any(under(edge.importer, seam) for seam in allowed):
            who = f"only {', '.join(allowed)} may" if allowed else "no module may yet"
            found.append(f"{edge}: {who} import it")
    return found


def named_in_strings(
    tree: SourceTree, *, holders: str, named: Sequence[str], excused: Sequence[str]
) -> list[str]:
    """Strings in modules under ``holders`` (but not ``excused``) naming a ``named`` module."""
    found: list[str] = []
    for name in tree.modules:
        if not under(name, holders) or name in excused:
            continue
        for ref in tree.module_strings(name):
            if any(under(ref.imported.partition(":")[0], prefix) for prefix in named):
                found.append(f"{ref.importer} (line {ref.line}) names {ref.imported!r}")
    return found


def import_cycles(tree: SourceTree) -> list[str]:
    """Each cycle among the tree's modules, printed ``a -> b -> a``."""
    graph: dict[str, set[str]] = {name: set() for name in tree.modules}
    for edge in tree.edges():
        target = tree.owner(edge.imported)
        if target is not None and target != edge.importer:
            graph[edge.importer].add(target)
    return [" -> ".join([*cycle, cycle[0]]) for cycle in _cycles(graph)]


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle through each group of modules that import each other, found depth first."""
    cycles: list[list[str]] = []
    done: set[str] = set()  # explored to the end: no cycle passes through them any more
    for start in sorted(graph):
        if start not in done and (cycle := _cycle_from(graph, [start], done)) is not None:
            cycles.append(cycle)
            done.update(cycle)
    return cycles


def _cycle_from(graph: Mapping[str, set[str]], path: list[str], done: set[str]) -> list[str] | None:
    """A cycle reachable from the end of ``path`` (the modules being explored), or None."""
    for nxt in sorted(graph[path[-1]]):
        if nxt in path:
            return path[path.index(nxt) :]
        if nxt not in done and (cycle := _cycle_from(graph, [*path, nxt], done)) is not None:
            return cycle
    done.add(path[-1])
    return None
