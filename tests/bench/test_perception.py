"""The perception benchmark's keypoint agreement (the figures themselves are never asserted)."""

from __future__ import annotations

import numpy as np

from bench.perception import keypoint_agreement
from models.pose_detector import FrameDetections, empty_detections


def _frame(offset: float, confidence: float, boxes: np.ndarray) -> FrameDetections:
    keypoints = np.zeros((len(boxes), 17, 3), np.float32)
    keypoints[..., 0] = boxes[:, None, 0] + np.arange(17) + offset
    keypoints[..., 1] = boxes[:, None, 1] + 2.0
    keypoints[..., 2] = confidence
    return FrameDetections(keypoints, boxes.astype(np.float32), np.ones(len(boxes), np.float32))


def test_agreement_matches_detections_by_box_and_counts_confident_joints_only():
    boxes = np.array([[0, 0, 50, 100], [200, 0, 250, 100]], np.float32)
    reference = [_frame(0.0, 0.9, boxes), empty_detections()]
    other = [_frame(0.5, 0.9, boxes[::-1].copy()), empty_detections()]  # other order, shifted 0.5 px
    agreement = keypoint_agreement(reference, other)
    assert agreement["joints"] == 34 and agreement["median_px"] == agreement["max_px"] == 0.5
    assert agreement["detections"] == agreement["reference_detections"] == 2
    unsure = keypoint_agreement(reference, [_frame(3.0, 0.4, boxes), empty_detections()])
    assert unsure["joints"] == 0 and unsure["max_px"] is None
