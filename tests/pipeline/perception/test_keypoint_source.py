"""choose_keypoints: the one decision of where a clip's keypoints come from."""

from __future__ import annotations

import pytest

from pipeline.perception.keypoint_source import (
    KEYPOINT_SOURCES,
    check_keypoint_source,
    choose_keypoints,
    detector_source,
    file_source,
    with_file_source,
)
from helpers.scripted import make_problem
from pipeline.records import ClipRef, PerceptionResult, RejectReason


@pytest.fixture
def clips(tmp_path):
    """A clip with a keypoint file next to its video, and one without."""
    (tmp_path / "with.mp4").write_bytes(b"v")
    (tmp_path / "with.coco.json").write_text("{}")
    (tmp_path / "without.mp4").write_bytes(b"v")
    return ClipRef("with", str(tmp_path / "with.mp4")), ClipRef("without", str(tmp_path / "without.mp4"))


@pytest.mark.parametrize("source, has_detector", [("auto", False), ("precomputed", True), ("precomputed", False)])
def test_a_keypoint_file_is_used_where_there_is_one(clips, source, has_detector):
    chosen = choose_keypoints(clips[0], source, has_detector)
    assert isinstance(chosen, ClipRef) and chosen.keypoints_uri.endswith("with.coco.json")


def test_an_explicit_detector_wins_over_a_file_next_to_the_video(clips):
    """--pose_model under --keypoints auto is never silently ignored: a sidecar found next to
    the video is not used; keypoints the input names explicitly still are."""
    assert choose_keypoints(clips[0], "auto", has_detector=True) == clips[0]  # keypoints_uri None: the detector
    named = clips[0].replace(keypoints_uri=clips[0].uri.replace(".mp4", ".coco.json"))
    assert choose_keypoints(named, "auto", has_detector=True) == named  # a manifest's keypoints_uri


def test_a_file_under_an_explicit_root_wins_over_the_detector(clips, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "without.coco.json").write_text("{}")
    chosen = choose_keypoints(clips[1], "auto", has_detector=True, keypoints_root=str(root))
    assert chosen.keypoints_uri == str(root / "without.coco.json")


def test_detect_ignores_keypoint_files(clips):
    named = clips[0].replace(keypoints_uri=clips[0].uri.replace(".mp4", ".coco.json"))
    assert choose_keypoints(named, "detect", has_detector=True).keypoints_uri is None
    assert choose_keypoints(named, "detect", has_detector=False).reject_reason == RejectReason.MISSING_KEYPOINTS


def test_without_a_file_auto_falls_back_to_the_detector(clips):
    assert choose_keypoints(clips[1], "auto", has_detector=True) == clips[1]
    for source, has_detector in (("auto", False), ("precomputed", True)):
        rejected = choose_keypoints(clips[1], source, has_detector)
        assert isinstance(rejected, PerceptionResult) and rejected.reject_reason == RejectReason.MISSING_KEYPOINTS
        assert "without.coco.json" in rejected.message


def test_a_named_but_absent_file_is_kept_for_auto_with_a_detector(clips, tmp_path):
    named = clips[1].replace(keypoints_uri=str(tmp_path / "gone.coco.json"))
    assert choose_keypoints(named, "auto", has_detector=True) == named  # read, and rejected for that file
    assert choose_keypoints(named, "auto", has_detector=False).reject_reason == RejectReason.MISSING_KEYPOINTS


def test_the_detector_runs_when_the_root_lacks_the_file(clips, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    assert choose_keypoints(clips[0], "auto", has_detector=True, keypoints_root=str(root)) == clips[0]
    assert choose_keypoints(clips[0], "precomputed", True, str(root)).reject_reason == RejectReason.MISSING_KEYPOINTS


def test_source_names():
    assert detector_source("/models/yolo11n-pose.pt", "869e83fcdffdc7371fa4") == "detector:yolo11n-pose.pt@sha256:869e83fcdffd"
    assert file_source("gs://b/k/x.coco.json") == "keypoints:gs://b/k/x.coco.json"


def test_sources_are_the_flag_values():
    assert KEYPOINT_SOURCES == ("auto", "precomputed", "detect")
    with pytest.raises(ValueError, match="--keypoints 'detector'"):
        check_keypoint_source("detector")


def test_a_staged_copy_is_recorded_as_the_file_the_input_named(clips):
    """Perception reads a local copy of a remote keypoint file; the rows name the remote file."""
    local = PerceptionResult(clips[0], problems=(make_problem("with", 0, 10, seed=1),), keypoint_source="keypoints:/tmp/x")
    named = with_file_source(local, "gs://bucket/kp/with.coco.json")
    assert named.keypoint_source == "keypoints:gs://bucket/kp/with.coco.json"
    assert named.problems[0].meta["keypoint_source"] == named.keypoint_source
    assert named.problems[0].meta["keypoints"] == "gs://bucket/kp/with.coco.json"
    assert with_file_source(local, None) is local
