"""The package arrows point one way: beam_jobs -> transforms -> pipeline -> optimize -> models,
and no two modules import each other, however indirectly.

Checked statically on every import statement of every module (function-level imports
included), so a stray upward import, an apache_beam import below transforms/ or an import
cycle fails the suite rather than a Dataflow worker.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["models", "optimize", "pipeline", "transforms", "beam_jobs"]
RANK = {name: i for i, name in enumerate(LAYERS)}


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


def _modules():
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            yield layer, path


@pytest.mark.parametrize("layer,path", list(_modules()), ids=lambda v: str(v).split("/work/main/")[-1])
def test_imports_point_down(layer, path):
    for module, line in _imports(path):
        top = module.split(".")[0]
        where = f"{path.relative_to(ROOT)}:{line} imports {module}"
        if top == "apache_beam":
            assert RANK[layer] >= RANK["transforms"], f"{where}: only transforms/ and beam_jobs/ may use Beam"
        if top in RANK:
            assert RANK[top] <= RANK[layer], f"{where}: {layer} may not import the upper layer {top}"


# Inside pipeline/: the role sub-packages read top-down, qa -> dataset -> perception ->
# records, with synth beside perception (it may use perception's initialiser) and the commands on top. A sub-package may import
# only the ones listed for it (and itself); "records" is the shared pipeline/records.py.
PIPELINE_ROLES = ["records", "perception", "synth", "dataset", "qa", "commands"]
PIPELINE_MAY_IMPORT = {
    "records": set(),
    "perception": {"records"},
    "synth": {"records", "perception"},  # synthetic tracks take the job's keypoint-only init
    "dataset": {"records", "perception"},
    "qa": {"records", "perception", "synth", "dataset"},
    "commands": {"records", "perception", "synth", "dataset", "qa"},
}


def _pipeline_role(module: str) -> str | None:
    """'pipeline.dataset.rows' -> 'dataset'; 'pipeline.records' -> 'records'; else None."""
    parts = module.split(".")
    if parts[0] != "pipeline" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in PIPELINE_MAY_IMPORT else None


def pipeline_role_violations(graph: dict[str, list[str]]) -> list[str]:
    """Imports that break the sub-package arrows, for a graph {importer: [imported, ...]}.

    Module names are dotted (``pipeline.perception.decode``); imports outside ``pipeline``
    are ignored here (the layer test above covers them).
    """
    bad = []
    for importer, imported in graph.items():
        src = _pipeline_role(importer)
        if src is None:
            continue
        for module in imported:
            dst = _pipeline_role(module)
            if dst is not None and dst != src and dst not in PIPELINE_MAY_IMPORT[src]:
                bad.append(f"{importer} imports {module}: pipeline.{src} may not import pipeline.{dst}")
    return bad


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _pipeline_graph() -> dict[str, list[str]]:
    graph = {}
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        imported = []
        for module, _ in _imports(path):
            imported.append(module)
        # "from pipeline.dataset import schema" names the package; that is the arrow.
        graph[_module_name(path)] = imported
    return graph


def test_every_pipeline_module_has_a_role():
    for path in sorted((ROOT / "pipeline").glob("*.py")):
        assert path.stem in ("__init__", "records"), (
            f"{path.relative_to(ROOT)} sits loose in pipeline/: put it in the sub-package of its role "
            f"({', '.join(PIPELINE_ROLES[1:])}) or extend PIPELINE_MAY_IMPORT")


def test_pipeline_sub_packages_point_down():
    assert pipeline_role_violations(_pipeline_graph()) == []


@pytest.mark.parametrize("importer,imported,allowed", [
    ("pipeline.qa.report", "pipeline.dataset.reader", True),
    ("pipeline.qa.evaluate", "pipeline.perception.decode", True),
    ("pipeline.dataset.rows", "pipeline.perception.crops", True),
    ("pipeline.dataset.rows", "pipeline.qa.metrics", False),
    ("pipeline.perception.decode", "pipeline.dataset.schema", False),
    ("pipeline.perception.perceive", "pipeline.qa", False),
    ("pipeline.perception.inputs", "pipeline.records", True),
    ("pipeline.records", "pipeline.perception.decode", False),
    ("pipeline.synth.corpus", "pipeline.dataset.writer", False),
    ("pipeline.qa.overlay", "pipeline.commands.dataset", False),
])
def test_role_rule_on_a_synthetic_graph(importer, imported, allowed):
    """The rule itself, checked against made-up imports: a breaking import is reported."""
    bad = pipeline_role_violations({importer: [imported, "numpy", "models.geometry"]})
    assert (bad == []) == allowed, bad


# No import cycles between modules, in any package of the project (the benchmarks included).
# A function-level import is an edge like any other: it hides a cycle from import time, not
# from the reader who has to understand both modules at once.
PACKAGES = [*LAYERS, "bench"]


def _module_names(root: Path, packages: list[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root/<package>``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is a module of ``modules`` (None: not ours)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def module_graph(root: Path, packages: list[str]) -> dict[str, set[str]]:
    """{module: modules it imports} over the packages under ``root``.

    ``import a.b`` and ``from a.b import c`` point at the module named (``a.b.c`` when ``c`` is
    a module, else ``a.b``); relative imports are resolved against the importing module's
    package. The packages above a module run first when it is imported, but their own
    imports are their own edges, so they get no edge here. A module importing itself
    (a package naming one of its own attributes) is no edge.
    """
    modules = _module_names(root, packages)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                edges.update(_known(alias.name, modules) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                edges.update(_known(f"{base}.{alias.name}", modules) for alias in node.names)
        graph[name] = {e for e in edges if e is not None and e != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per group of modules that import each other, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for group in groups:  # the shortest way from the group's first module back to itself
        start = min(group)
        paths = {start: [start]}
        frontier = [start]
        while frontier and start not in [n for f in frontier for n in graph[f]]:
            nxt = []
            for node in frontier:
                for target in sorted(graph[node] & group):
                    if target not in paths:
                        paths[target] = paths[node] + [target]
                        nxt.append(target)
            frontier = nxt
        last = min(f for f in frontier if start in graph[f])
        cycles.append(paths[last] + [start])
    return sorted(cycles)


def test_no_import_cycle_between_modules():
    cycles = import_cycles(module_graph(ROOT, PACKAGES))
    assert cycles == [], "modules that import each other (move what both need into a third module): " + "; ".join(
        " -> ".join(cycle) for cycle in cycles)


def test_an_injected_cycle_is_caught():
    graph = {"p.a": {"p.b", "numpy"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}, "numpy": set()}
    assert import_cycles(graph) == [["p.a", "p.b", "p.c", "p.a"]]
    assert import_cycles({**graph, "p.c": set()}) == []


def test_a_function_level_relative_import_cycle_is_caught(tmp_path):
    """Read from source: a relative import inside a function closes the cycle."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "writer.py").write_text("from pkg.sub import table\n")
    (package / "sub" / "table.py").write_text("def read():\n    from ..writer import read_manifests\n")
    (package / "sub" / "rules.py").write_text("from . import table\nimport pkg.writer\n")
    graph = module_graph(tmp_path, ["pkg"])
    assert graph["pkg.sub.table"] == {"pkg.writer"} and graph["pkg.sub.rules"] == {"pkg.sub.table", "pkg.writer"}
    assert import_cycles(graph) == [["pkg.sub.table", "pkg.writer", "pkg.sub.table"]]
