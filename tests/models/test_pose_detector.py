"""YOLO pose adapter on a randomly initialised model built from its yaml (no download)."""

from __future__ import annotations

import numpy as np
import pytest

from models.pose_detector import FrameDetections, PoseDetector, YoloPoseDetector


@pytest.mark.slow
def test_random_yolo_pose_batches_and_parses(random_pose_weights):
    detector = YoloPoseDetector(random_pose_weights, confidence=0.0, iou=0.7, image_size=160, batch_size=2, max_detections=4)
    assert isinstance(detector, PoseDetector)
    frames = np.random.default_rng(0).integers(0, 255, (3, 96, 128, 3), dtype=np.uint8)
    out = detector.detect(frames)
    assert len(out) == 3
    for found in out:
        assert isinstance(found, FrameDetections)
        n = len(found)
        assert 0 < n <= 4
        assert found.keypoints.shape == (n, 17, 3) and found.keypoints.dtype == np.float32
        assert found.boxes.shape == (n, 4) and found.scores.shape == (n,)
        assert ((found.keypoints[..., 2] >= 0) & (found.keypoints[..., 2] <= 1)).all()
        assert (found.boxes[:, 2] >= found.boxes[:, 0]).all()
    # batching does not change the result
    single = YoloPoseDetector(random_pose_weights, confidence=0.0, image_size=160, batch_size=1, max_detections=4)
    for a, b in zip(out, single.detect(frames)):
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(frames.astype(np.float32))


def test_missing_or_wrong_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        YoloPoseDetector(tmp_path / "yolo11n-pose.pt")
    other = tmp_path / "weights.onnx"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match=".pt"):
        YoloPoseDetector(other)



@pytest.mark.parametrize("yaml", ["yolo11n.yaml", "yolo11n-seg.yaml"], ids=["detect", "segment"])
def test_a_model_without_keypoints_is_refused_at_start(tmp_path, standin, capsys, yaml):
    """A detect- or segment-only checkpoint loads safely but is refused in one line naming it,
    by the detector and by the launcher (exit 2, before the pipeline starts)."""
    import torch
    from ultralytics import YOLO

    from beam_jobs import pseudo_gt

    torch.manual_seed(0)
    path = tmp_path / f"random-{yaml.removesuffix('.yaml')}.pt"
    YOLO(yaml).save(str(path))
    with pytest.raises(ValueError, match="not a YOLO pose model") as info:
        YoloPoseDetector(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value) and "-pose.pt" in str(info.value)
    code = pseudo_gt.main(["--input", str(tmp_path / "*.mp4"), "--output", str(tmp_path / "out"), "--smpl_model",
                           str(standin.neutral), "--gmm_prior", str(standin.gmm), "--device", "cpu",
                           "--pose_model", str(path)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"--pose_model {path}:" in err and "not a YOLO pose model" in err, err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out" / "_runs").exists()
