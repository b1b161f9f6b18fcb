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
