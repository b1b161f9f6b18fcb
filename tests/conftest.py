"""Shared fixtures. Tests never need licensed files, a GPU or the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
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
