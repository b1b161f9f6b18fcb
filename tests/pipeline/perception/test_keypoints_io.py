"""Precomputed keypoints: OpenPose BODY_25 / COCO-18 folders and COCO JSON, mapped to COCO-17."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.joint_names import COCO17_NAMES
from pipeline.perception.keypoints_io import (
    BODY25_TO_COCO17,
    COCO18_TO_COCO17,
    OPENPOSE_BODY25_NAMES,
    OPENPOSE_COCO18_NAMES,
    KeypointsError,
    find_sidecar_keypoints,
    load_keypoints,
)
from pipeline.records import RejectReason

DATA = Path(__file__).resolve().parents[3] / "tests" / "data" / "keypoints"


def test_openpose_maps_are_built_by_name():
    for names, index in ((OPENPOSE_BODY25_NAMES, BODY25_TO_COCO17), (OPENPOSE_COCO18_NAMES, COCO18_TO_COCO17)):
        assert tuple(names[i] for i in index) == COCO17_NAMES


@pytest.mark.parametrize("folder,layout", [("clip_body25_openpose", "openpose_body25"), ("clip_coco18_openpose", "openpose_coco18")])
def test_openpose_folder(folder, layout):
    found = load_keypoints(DATA / folder)
    assert found.format == layout
    assert sorted(found.frames) == [0, 1]
    assert [len(found.frames[f]) for f in (0, 1)] == [1, 2]
    kp = found.frames[1].keypoints
    # The fixture writes x = 100 + 10 * (COCO-17 index) + dx + frame for every COCO joint.
    np.testing.assert_allclose(kp[0, :, 0], 100 + 10 * np.arange(17) + 1)
    np.testing.assert_allclose(kp[1, :, 0], 100 + 10 * np.arange(17) + 301)
    np.testing.assert_allclose(kp[..., 2], 0.9, atol=1e-6)
    box = found.frames[1].boxes[0]
    np.testing.assert_allclose(box, [101, 50, 261, 370], atol=1e-4)


def test_coco_file_flags_boxes_scores_and_rescaling():
    found = load_keypoints(DATA / "clip.coco.json")
    assert found.format == "coco" and found.image_size == (320, 240)
    assert [len(found.frames[f]) for f in range(3)] == [1, 2, 2]
    frame2 = found.frames[2]
    assert frame2.keypoints[0, 0, 2] == 0.0  # v = 0: not labelled
    assert frame2.keypoints[0, 1, 2] == 0.5  # v = 1: labelled, occluded
    assert frame2.keypoints[0, 2, 2] == 1.0  # v = 2: visible
    # The file's bbox (160, 20, 120 x 200) and score (0.9) are not used: boxes are the
    # extent of the seen keypoints and scores their mean confidence, as for OpenPose.
    np.testing.assert_allclose(frame2.boxes[1], [177, 40, 252, 190])
    np.testing.assert_allclose(frame2.scores, [(15 + 0.5) / 16] * 2)
    mapped = found.for_frames(np.array([2, 7]), scale=(0.5, 2.0))
    assert len(mapped[1]) == 0
    np.testing.assert_allclose(mapped[0].keypoints[0, 3, :2], [(20 + 15 + 2) * 0.5, 60 * 2.0])
    np.testing.assert_allclose(mapped[0].boxes[1], [88.5, 80, 126, 380])


def test_coco_results_list_keeps_confidences():
    found = load_keypoints(DATA / "clip_results.coco.json")
    kp = found.frames[0].keypoints[0]
    np.testing.assert_allclose(kp[:, 2], 0.3 + 0.04 * np.arange(17), atol=1e-6)
    assert found.frames[0].scores[0] == pytest.approx(kp[:, 2].mean())  # the file's score (0.77) is not used


def test_corrupt_openpose_file_names_file_and_frame(tmp_path):
    folder = tmp_path / "v_openpose"
    shutil.copytree(DATA / "clip_body25_openpose", folder)
    bad = folder / "clip_000000000007_keypoints.json"
    bad.write_text('{"people": [{"pose_keypoints_2d": [1, 2')
    with pytest.raises(KeypointsError) as info:
        load_keypoints(folder)
    assert info.value.reason == RejectReason.CORRUPT_KEYPOINTS
    assert str(bad) in info.value.message and "frame 7" in info.value.message


def test_wrong_openpose_length_names_frame(tmp_path):
    folder = tmp_path / "v_openpose"
    folder.mkdir()
    (folder / "x_000000000003_keypoints.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 30}]}))
    with pytest.raises(KeypointsError) as info:
        load_keypoints(folder)
    assert info.value.reason == RejectReason.CORRUPT_KEYPOINTS and "frame 3" in info.value.message


def test_corrupt_coco(tmp_path):
    path = tmp_path / "v.coco.json"
    path.write_text(json.dumps({"images": [], "annotations": [{"image_id": 5, "keypoints": [1, 2, 3]}]}))
    with pytest.raises(KeypointsError) as info:
        load_keypoints(path)
    assert info.value.reason == RejectReason.CORRUPT_KEYPOINTS
    assert str(path) in info.value.message and "frame 5" in info.value.message
    path.write_text("{not json")
    with pytest.raises(KeypointsError, match="line 1"):
        load_keypoints(path)


def test_missing_keypoints_and_sidecar_lookup(tmp_path):
    with pytest.raises(KeypointsError) as info:
        load_keypoints(tmp_path / "nothing.coco.json")
    assert info.value.reason == RejectReason.MISSING_KEYPOINTS
    video = tmp_path / "abc_000001_000011.mp4"
    video.write_bytes(b"")
    assert find_sidecar_keypoints(video) is None
    (tmp_path / "abc_000001_000011_openpose").mkdir()
    assert find_sidecar_keypoints(video).endswith("_openpose")
    (tmp_path / "abc_000001_000011.coco.json").write_text("[]")
    assert find_sidecar_keypoints(video).endswith(".coco.json")


def _distinct_confidences_coco(frames: int) -> dict:
    """A COCO file whose frame f has one person with confidence 0.05 * (f + 1) on every joint."""
    images = [{"id": f, "width": 320, "height": 240} for f in range(frames)]
    annotations = []
    for f in range(frames):
        keypoints = []
        for j in range(17):
            keypoints += [100.0 + j, 50.0 + f, round(0.05 * (f + 1), 4)]
        annotations.append({"image_id": f, "category_id": 1, "keypoints": keypoints})
    return {"images": images, "annotations": annotations}


@pytest.mark.parametrize("order", ["reversed_images", "descending_annotations", "shuffled_both"])
def test_coco_out_of_order_lists_keep_each_frames_confidences(tmp_path, order):
    data = _distinct_confidences_coco(12)
    if order in ("reversed_images", "shuffled_both"):
        data["images"] = data["images"][::-1]
    if order in ("descending_annotations", "shuffled_both"):
        data["annotations"] = data["annotations"][::-1]
    if order == "shuffled_both":
        data["annotations"] = data["annotations"][5:] + data["annotations"][:5]
    path = tmp_path / "clip.coco.json"
    path.write_text(json.dumps(data))
    found = load_keypoints(path)
    assert sorted(found.frames) == list(range(12))
    for f in range(12):
        kp = found.frames[f].keypoints
        assert kp.shape == (1, 17, 3)
        np.testing.assert_allclose(kp[0, :, 2], 0.05 * (f + 1), atol=1e-6, err_msg=f"frame {f}")
        np.testing.assert_allclose(kp[0, :, 1], 50.0 + f)


def test_coco_out_of_order_visibility_flags_stay_with_their_frame(tmp_path):
    data = _distinct_confidences_coco(3)
    for f, ann in enumerate(data["annotations"]):  # flags: frame 0 all occluded (1), the others visible (2)
        ann["keypoints"] = [v if j % 3 != 2 else (1 if f == 0 else 2) for j, v in enumerate(ann["keypoints"])]
    data["annotations"] = data["annotations"][::-1]
    path = tmp_path / "clip.coco.json"
    path.write_text(json.dumps(data))
    found = load_keypoints(path)
    np.testing.assert_allclose(found.frames[0].keypoints[0, :, 2], 0.5)
    np.testing.assert_allclose(found.frames[2].keypoints[0, :, 2], 1.0)


@pytest.mark.parametrize("where", ["keypoints", "image_id", "images_id"])
def test_coco_booleans_are_refused_naming_the_file(tmp_path, where):
    data = _distinct_confidences_coco(2)
    if where == "keypoints":
        data["annotations"][1]["keypoints"] = [True] * 51
    elif where == "image_id":
        data["annotations"][1]["image_id"] = True
    else:
        data["images"][1]["id"] = True
    path = tmp_path / "bools.coco.json"
    path.write_text(json.dumps(data))
    with pytest.raises(KeypointsError) as info:
        load_keypoints(path)
    assert info.value.reason == RejectReason.CORRUPT_KEYPOINTS
    assert "bools.coco.json" in info.value.message and "boolean" in info.value.message
    assert "regenerate" in info.value.message


def test_openpose_booleans_are_refused(tmp_path):
    folder = tmp_path / "clip_openpose"
    folder.mkdir()
    person = {"pose_keypoints_2d": [True, False, True] * 25}
    (folder / "clip_000000000000_keypoints.json").write_text(json.dumps({"people": [person]}))
    with pytest.raises(KeypointsError) as info:
        load_keypoints(folder)
    assert info.value.reason == RejectReason.CORRUPT_KEYPOINTS
    assert "clip_000000000000_keypoints.json" in info.value.message and "boolean" in info.value.message
