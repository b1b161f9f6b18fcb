"""One detection set, two formats, one result.

A generated set of detections (people walking, occluded joints, confidences, a frame with
nobody, detector boxes and scores that differ from the keypoints' extent) is written once as
COCO keypoint JSON and once as OpenPose BODY_25 per-frame JSON. Both must give the same
detections per frame, and the same tracks and track problems through ``perceive_clip``.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from helpers.video import pattern_video

from pipeline.perception.decode import DecodeConfig
from pipeline.perception.keypoints_io import BODY25_TO_COCO17, load_keypoints
from pipeline.perception.perceive import PerceptionConfig, load_perception_models, perceive_clip
from pipeline.perception.track import TrackingConfig
from pipeline.records import ClipRef

W, H, FPS, N = 192, 144, 25, 40


def _detection_set(seed: int = 0):
    """frame -> list of ((17, 3) keypoints, detector box x0 y0 x1 y1, detector score)."""
    rng = np.random.default_rng(seed)
    skeleton = np.stack([np.linspace(-8, 8, 17), np.linspace(-40, 40, 17)], 1)
    frames = {}
    for f in range(N):
        people = []
        for p, (x0, vx) in enumerate(((30.0, 2.0), (160.0, -1.5), (90.0, 0.3))):
            if p == 2 and f % 7 == 3:
                continue  # missed detections
            xy = skeleton * (1.0 + 0.1 * p) + [x0 + vx * f, 72 + 3 * p] + rng.normal(0, 0.7, (17, 2))
            conf = rng.uniform(0.05, 1.0, 17).round(4)
            conf[rng.random(17) < 0.1] = 0.0  # not seen
            kp = np.concatenate([xy.round(3), conf[:, None]], 1)
            seen = kp[conf > 0, :2]
            box = [*(seen.min(0) - 9), *(seen.max(0) + 13)]  # a detector's box: not the keypoints' extent
            people.append((kp, box, float(rng.uniform(0.3, 0.99))))
        frames[f] = [] if f == 17 else people
    return frames


def write_coco(path, frames):
    images = [{"id": f, "width": W, "height": H} for f in frames]
    annotations = [
        {"image_id": f, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": score,
         "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]}
        for f, people in frames.items() for kp, box, score in people
    ]
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def write_openpose(folder, frames):
    folder.mkdir()
    for f, people in frames.items():
        entries = []
        for kp, _, _ in people:
            body25 = np.zeros((25, 3))
            body25[list(BODY25_TO_COCO17)] = kp
            body25[1] = [(kp[5, 0] + kp[6, 0]) / 2, (kp[5, 1] + kp[6, 1]) / 2, 0.5]  # neck: not in COCO-17
            body25[19:] = [kp[15, 0], kp[15, 1] + 5, 0.4]  # feet: not in COCO-17
            entries.append({"person_id": [-1], "pose_keypoints_2d": body25.reshape(-1).tolist()})
        (folder / f"clip_{f:012d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": entries}))
    return folder


def test_both_formats_load_to_identical_detections(tmp_path):
    frames = _detection_set()
    coco = load_keypoints(write_coco(tmp_path / "clip.coco.json", frames))
    openpose = load_keypoints(write_openpose(tmp_path / "clip_openpose", frames))
    assert sorted(coco.frames) == sorted(openpose.frames) == list(range(N))
    for f in range(N):
        a, b = coco.frames[f], openpose.frames[f]
        for name in ("keypoints", "boxes", "scores"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=f"frame {f} {name}")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return pattern_video(tmp_path_factory.mktemp("video") / "clip.mp4", W, H, FPS, N)


def test_both_formats_give_identical_tracks_and_problems(tmp_path, video, body_model):
    frames = _detection_set(1)
    models = load_perception_models(PerceptionConfig(), body_model)
    config = PerceptionConfig(decode=DecodeConfig(target_fps=FPS), tracking=TrackingConfig(min_track_length=5))
    results = []
    for sidecar in (write_coco(tmp_path / "clip.coco.json", frames), write_openpose(tmp_path / "clip_openpose", frames)):
        result = perceive_clip(ClipRef("clip", str(video), keypoints_uri=str(sidecar)), config, models)
        assert result.ok, result.message
        results.append(result)
    coco, openpose = results
    assert len(coco.problems) == len(openpose.problems) >= 3
    for a, b in zip(coco.problems, openpose.problems):
        for field in dataclasses.fields(a):
            if field.name == "meta":
                named = ("keypoints", "keypoint_source")  # the file each came from
                assert {k: v for k, v in a.meta.items() if k not in named} == {
                    k: v for k, v in b.meta.items() if k not in named}
                continue
            x, y = getattr(a, field.name), getattr(b, field.name)
            if isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y, err_msg=field.name)
            else:
                assert x == y, field.name
