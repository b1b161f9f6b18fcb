"""Exported detector runtimes (ONNX Runtime, OpenVINO) against the PyTorch model, on a
randomly initialised pose model (no download, no licensed weights)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models import pose_runtime
from models.pose_runtime import MissingRuntimeError, check_runtime, disable_autoinstall, yolo_pose_detector

ROOT = Path(__file__).resolve().parents[2]


def _installed(runtime: str) -> bool:
    return all(importlib.util.find_spec(module) for module, _ in pose_runtime.RUNTIME_MODULES[runtime])


# The comparison runs in a child process: ONNX Runtime's and OpenVINO's native thread pools
# and compiled models would otherwise live on in the test worker until the garbage collector
# (or interpreter exit) tears them down, at an arbitrary later test.
_COMPARE = """
import sys
from pathlib import Path

import numpy as np

from models.pose_detector import YoloPoseDetector
from models.pose_runtime import exported_pose_model, yolo_pose_detector

weights, runtime, export_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
options = dict(confidence=0.0, image_size=160, batch_size=2, max_detections=5)
frames = np.random.default_rng(1).integers(0, 255, (3, 96, 128, 3), dtype=np.uint8)
reference = YoloPoseDetector(weights, **options).detect(frames)
exported = yolo_pose_detector(weights, runtime=runtime, export_dir=export_dir, threads=1, **options)
assert exported.runtime == runtime, exported.runtime
backend = exported.model.predictor.model.backend  # one thread, not one per core
if runtime == "onnx":
    assert backend.session.get_session_options().intra_op_num_threads == 1
else:
    assert int(backend.ov_compiled_model.get_property("INFERENCE_NUM_THREADS")) == 1
for want, got in zip(reference, exported.detect(frames)):
    assert len(want) == len(got) > 0, (len(want), len(got))
    np.testing.assert_allclose(got.keypoints[..., :2], want.keypoints[..., :2], atol=0.05)
    np.testing.assert_allclose(got.keypoints[..., 2], want.keypoints[..., 2], atol=1e-3)
    np.testing.assert_allclose(got.boxes, want.boxes, atol=0.05)
# one export per weights file and runtime, reused by the next detector
entries = [p for p in export_dir.iterdir() if not p.name.startswith(".")]
assert len(entries) == 1 and entries[0].name.endswith(f"-{runtime}-160"), entries
stamp = entries[0].stat().st_mtime_ns
again = exported_pose_model(weights, runtime, export_dir, 160)
assert entries[0].stat().st_mtime_ns == stamp and again.startswith(str(entries[0])), again
print("ok")
"""


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_exported_runtime_matches_torch(random_pose_weights, tmp_path, runtime):
    if not _installed(runtime):
        pytest.skip(f"{runtime} not installed (the export extra)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    done = subprocess.run([sys.executable, "-c", _COMPARE, str(random_pose_weights), runtime, str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), (done.stdout + done.stderr)[-4000:]


def test_missing_runtime_package_is_named_not_installed(monkeypatch, random_pose_weights, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))

    def no_pip(*args, **kwargs):
        raise AssertionError(f"a subprocess was started: {args}")

    monkeypatch.setattr(subprocess, "check_output", no_pip)
    monkeypatch.setattr(subprocess, "run", no_pip)
    with pytest.raises(MissingRuntimeError, match=r"onnxruntime.*vid2mesh\[export\]"):
        check_runtime("onnx")
    with pytest.raises(MissingRuntimeError, match="onnxruntime"):
        yolo_pose_detector(random_pose_weights, runtime="onnx", export_dir=tmp_path)
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="--detector_runtime"):
        check_runtime("tensorrt")


def test_ultralytics_never_installs_requirements(monkeypatch):
    """With auto-install off, ultralytics' own requirement check reports a missing package
    instead of running pip."""
    disable_autoinstall()
    from ultralytics.utils import checks

    def no_pip(*args, **kwargs):
        raise AssertionError(f"pip was started: {args}")

    monkeypatch.setattr(subprocess, "check_output", no_pip)
    assert checks.check_requirements("vid2mesh-no-such-package-xyz>=1.0") is False


def test_exported_runtime_needs_the_cpu_and_a_folder(random_pose_weights, tmp_path):
    with pytest.raises(ValueError, match="CPU"):
        yolo_pose_detector(random_pose_weights, runtime="openvino", export_dir=None)
    with pytest.raises(ValueError, match="CPU"):
        yolo_pose_detector(random_pose_weights, runtime="onnx", device="cuda", export_dir=tmp_path)


def test_the_job_records_the_detectors_file_name_and_hash(random_pose_weights, body_model):
    from pipeline.perception.perceive import PerceptionConfig, load_perception_models

    config = PerceptionConfig(keypoints_source="detect", detector_weights=str(random_pose_weights))
    models = load_perception_models(config, body_model)
    digest = pose_runtime.weights_sha256(random_pose_weights)
    assert models.detector_source == f"detector:random-test-pose.pt@sha256:{digest[:12]}"
