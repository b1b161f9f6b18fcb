"""Fixtures of the model tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def random_pose_weights(tmp_path_factory):
    """A randomly initialised YOLO11n pose checkpoint built from its yaml (no download)."""
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("yolo") / "random-test-pose.pt"
    YOLO("yolo11n-pose.yaml").save(str(path))
    return path
