"""Untrusted model files: a pickle that would run code is refused, for every model loader.

Each payload would create a marker file when unpickled by a permissive loader
(``os.system("touch ...")``); the tests assert the loader refuses the file with a message
naming it and that the marker never appears.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_malicious(path: Path, marker: Path, fmt: str) -> Path:
    """A model file whose unpickling runs ``touch marker``.

    fmt: "zip" (torch.save zip archive), "legacy" (torch's pre-1.6 pickle format),
    "pickle" (a plain pickle, SMPL/GMM ``.pkl`` style) or "npz" (an object array in an .npz).
    """
    payload = {"model": _Payload(marker), "weights": _Payload(marker)}
    if fmt == "zip":
        torch.save(payload, path)
    elif fmt == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    elif fmt == "pickle":
        with open(path, "wb") as handle:
            pickle.dump(payload, handle, protocol=2)
    elif fmt == "npz":
        array = np.empty(1, dtype=object)
        array[0] = _Payload(marker)
        np.savez(path, pose=array, shape=array, cam=array, means=array, covars=array, weights=array,
                 v_template=array, shapedirs=array)
    else:
        raise ValueError(fmt)
    return path


def _permissive_load_runs_payload(path: Path, marker: Path) -> bool:
    """Sanity check of the fixture: torch.load(weights_only=False) does run it."""
    torch.load(path, weights_only=False)
    return marker.exists()


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_fixture_payload_really_runs_under_a_permissive_loader(tmp_path, fmt):
    marker = tmp_path / "ran"
    assert _permissive_load_runs_payload(write_malicious(tmp_path / f"evil-{fmt}.pt", marker, fmt), marker)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_yolo_pose_weights_refused_unrun(tmp_path, fmt):
    from models.pose_detector import UnsafeWeightsError, YoloPoseDetector, load_yolo_checkpoint

    marker = tmp_path / "ran"
    path = write_malicious(tmp_path / f"evil-{fmt}-pose.pt", marker, fmt)
    for load in (load_yolo_checkpoint, YoloPoseDetector):
        with pytest.raises(UnsafeWeightsError, match=str(path)) as info:
            load(path)
        _no_unsafe_advice(str(info.value))
    assert not marker.exists()


def _no_unsafe_advice(message: str) -> None:
    """A refusal never repeats torch's advice to load the file with weights_only=False."""
    lowered = message.lower()
    assert "weights_only" not in lowered and "likely succeed" not in lowered and "trusted source" not in lowered, message
    assert "\n" not in message and "trusted" in lowered, message  # one line, saying what to give instead


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_hmr_checkpoint_refused_unrun(tmp_path, fmt):
    from models.hmr import HMRRegressor, load_checkpoint

    marker = tmp_path / "ran"
    path = write_malicious(tmp_path / f"evil-{fmt}.pt", marker, fmt)
    with pytest.raises(ValueError, match=f"HMR checkpoint '{path}' refused") as info:
        load_checkpoint(path)
    _no_unsafe_advice(str(info.value))
    mean = tmp_path / "mean.npz"
    np.savez(mean, pose=np.zeros(144, np.float32), shape=np.zeros(10, np.float32), cam=np.array([0.9, 0, 0], np.float32))
    with pytest.raises(ValueError, match=str(path)):
        HMRRegressor.from_files(path, mean)
    assert not marker.exists()


def test_hmr_mean_params_object_array_refused_unrun(tmp_path):
    from models.hmr import load_mean_params

    marker = tmp_path / "ran"
    path = write_malicious(tmp_path / "evil-mean.npz", marker, "npz")
    with pytest.raises(ValueError, match=str(path)):
        load_mean_params(path)
    assert not marker.exists()


@pytest.mark.parametrize("fmt,suffix", [("pickle", ".pkl"), ("npz", ".npz"), ("zip", ".pkl"), ("legacy", ".pkl")])
def test_smpl_model_and_gmm_prior_refused_unrun(tmp_path, fmt, suffix):
    from models.body_model import BodyModel
    from models.gmm_prior import GMMPrior
    from models.smpl_io import ModelFileError

    marker = tmp_path / "ran"
    path = write_malicious(tmp_path / f"evil-{fmt}{suffix}", marker, fmt)
    for load in (BodyModel.from_file, GMMPrior.from_file):
        with pytest.raises(ModelFileError, match=str(path)):
            load(path)
    assert not marker.exists()


def test_a_real_ultralytics_pose_model_still_loads_and_every_load_is_weights_only(tmp_path, monkeypatch):
    """A randomly initialised YOLO11n-pose saved by ultralytics loads through the safe path,
    and no torch.load during loading or prediction runs with weights_only=False."""
    from ultralytics import YOLO

    from models.pose_detector import YoloPoseDetector

    torch.manual_seed(0)
    path = tmp_path / "random-pose.pt"
    YOLO("yolo11n-pose.yaml").save(str(path))
    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    detector = YoloPoseDetector(path, confidence=0.0, image_size=96, max_detections=2)
    found = detector.detect(np.zeros((1, 64, 96, 3), np.uint8))
    assert len(found) == 1
    assert calls and all(c is True for c in calls), calls
