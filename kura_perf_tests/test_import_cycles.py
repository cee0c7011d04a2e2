"""No import cycles in kura_perf: none at import time, and none through function-level (lazy) imports either.

An import-time cycle makes a module's behaviour depend on which module was imported first (the second
one sees the first half-initialised); checks/baselines.py <-> checks/regression.py was one. A lazy
import cannot half-initialise anything, but one that closes a loop hides a layering knot (the CLI
dispatching to cluster.cli and back, the report package and its sections, store.quarantine and
store.validation were such): the modules are layered, each importing only below itself. Lazy imports
stay for heavy or optional third-party packages (dagster in the CLI, torch, kura, umap, celery...).

The graph is read from the source (ast), so the test needs no optional dependency installed and sees
every module. Importing a.b.c initialises the packages a and a.b, so those are edges too (except a
module's own packages, already running); `from a import name` inside a.b is an edge to a when the name
is no module (a package __init__ that imports a submodule importing it back is a loop).
"""

from __future__ import annotations

import ast
from pathlib import Path

import kura_perf
from kura_perf_tests.source_trees import parse

ROOT = Path(kura_perf.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(name: str, modules) -> str | None:
    """The module `name` names, or the package it is an attribute of."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path, module: str, modules, lazy: bool) -> set[str]:
    """The kura_perf modules `module` imports at import time (lazy=True: also inside functions),
    with the packages each import initialises on the way (importing a.b.c runs a/__init__ and a/b/__init__)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(body: list) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(_resolve(a.name, modules) for a in node.names if a.name.startswith("kura_perf"))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                if base.startswith("kura_perf"):
                    found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else _resolve(base, modules)
                                 for a in node.names)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not lazy:
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    visit([n for n in inner if isinstance(n, (ast.stmt, ast.ExceptHandler))])

    visit(parse(path.read_text(encoding="utf-8"), str(path)).body)
    with_parents = {name for name in found - {None} if name != module}  # what the import names, even its own package
    for name in found - {None}:
        name = name.rpartition(".")[0]
        while name and name != "kura_perf":
            if not (module == name or module.startswith(name + ".")):  # a module's own packages are already running
                with_parents.add(name)
            name = name.rpartition(".")[0]
    return with_parents


def import_graph(lazy: bool) -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(path, m, modules, lazy) for m, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
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
            connect(v)
    return found


def test_no_import_time_cycle_in_the_package():
    assert cycles(import_graph(lazy=False)) == []


def test_no_cycle_at_all_not_even_through_lazy_imports():
    assert cycles(import_graph(lazy=True)) == []


def test_the_graph_sees_the_known_edges():
    graph = import_graph(lazy=False)
    assert "kura_perf.checks.baselines" in graph["kura_perf.checks.regression"]
    assert "kura_perf.checks.records" in graph["kura_perf.checks.baselines"]
    assert "kura_perf.models.cache" in graph["kura_perf.settings.paths"]
    assert "kura_perf.report.build" in graph["kura_perf.defs.report"]
    assert "kura_perf.report" in graph["kura_perf.defs.report"]  # importing report.build initialises the package
    assert graph["kura_perf.report"] == set()  # the package imports none of its modules
    lazy = import_graph(lazy=True)
    assert "kura_perf.defs.launch" in lazy["kura_perf.cli.run"] - graph["kura_perf.cli.run"]  # dagster, inside cmd_run


def test_an_import_of_its_own_package_by_name_is_an_edge(tmp_path):
    package = tmp_path / "kura_perf" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("def build():\n    from kura_perf.pkg.part import make\n")
    (package / "part.py").write_text("from kura_perf.pkg import helper\nfrom kura_perf.pkg import other\n")
    (package / "other.py").write_text("")
    modules = {"kura_perf.pkg": package / "__init__.py", "kura_perf.pkg.part": package / "part.py",
               "kura_perf.pkg.other": package / "other.py"}
    graph = {m: _imports(path, m, modules, lazy=True) for m, path in modules.items()}
    assert graph["kura_perf.pkg.part"] == {"kura_perf.pkg", "kura_perf.pkg.other"}
    assert cycles(graph) == [["kura_perf.pkg", "kura_perf.pkg.part"]]


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
