"""The package arrows point one way: beam_jobs -> transforms -> pipeline -> optimize -> models.

Checked statically on every import statement of every module, so a stray upward import or
an apache_beam import below transforms/ fails the suite rather than a Dataflow worker.
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
# records, with synth beside perception and the commands on top. A sub-package may import
# only the ones listed for it (and itself); "records" is the shared pipeline/records.py.
PIPELINE_ROLES = ["records", "perception", "synth", "dataset", "qa", "commands"]
PIPELINE_MAY_IMPORT = {
    "records": set(),
    "perception": {"records"},
    "synth": {"records"},
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
