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
