"""Shared fixtures. Tests never need licensed files, a GPU or the network."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# The shared test helpers (``helpers``, in tests/) import by name, in this process and in the
# worker processes a test spawns (multi-process and Dask runners unpickle scripted stages by
# module name), so tests/ and the repository root go on sys.path and on PYTHONPATH.
_TEST_PATHS = [str(REPO_ROOT), str(REPO_ROOT / "tests")]
sys.path[:0] = [p for p in _TEST_PATHS if p not in sys.path]
os.environ["PYTHONPATH"] = os.pathsep.join(
    _TEST_PATHS + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in _TEST_PATHS])
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(REPO_ROOT / ".cache" / "ultralytics"))
os.environ.setdefault("MPLCONFIGDIR", str(REPO_ROOT / ".cache" / "matplotlib"))


@pytest.fixture(scope="session")
def standin(tmp_path_factory):
    """Paths of the generated stand-in body model and GMM prior (models.standin.StandinPaths).

    Generated once per test session into a temporary folder (deterministic).
    """
    from models.standin import ensure_standin

    return ensure_standin(tmp_path_factory.mktemp("standin"))


@pytest.fixture(scope="session")
def body_model(standin):
    """The neutral stand-in body model as a models.body_model.BodyModel (float32, CPU)."""
    from models.body_model import BodyModel

    return BodyModel.from_file(standin.neutral)
