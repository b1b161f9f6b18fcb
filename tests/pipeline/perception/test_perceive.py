"""perceive_clip end to end on small generated videos: problems or a recorded reason.

Each clip goes through ``choose_keypoints`` first, as in the job."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from helpers.video import pattern_video

from models.pose_detector import FrameDetections
from pipeline.perception.decode import DecodeConfig
from pipeline.perception.keypoint_source import choose_keypoints
from pipeline.perception.perceive import PerceptionConfig, PerceptionModels, load_perception_models, perceive_clip
from pipeline.records import ClipRef, PerceptionResult, RejectReason
from pipeline.perception.track import TrackingConfig

W, H, FPS, N = 160, 120, 25, 30


def _video(path, n=N):
    return pattern_video(path, W, H, FPS, n)


def _person(x, y, scale=1.0):
    offsets = np.stack([np.linspace(6, -6, 17), np.linspace(-30, 30, 17)], 1) * scale  # left joints on image right: facing the camera
    return np.concatenate([offsets + [x, y], np.full((17, 1), 2.0)], 1)


def _coco(path, people_at, n=N):
    images = [{"id": f, "width": W, "height": H} for f in range(n)]
    annotations = []
    for f in range(n):
        for x, y in people_at(f):
            annotations.append({"image_id": f, "category_id": 1, "keypoints": _person(x, y).reshape(-1).tolist()})
    path.write_text(json.dumps({"images": images, "annotations": annotations}))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    video = _video(root / "abc_000000_000010.mp4")
    _coco(root / "abc_000000_000010.coco.json", lambda f: [(30 + 2 * f, 60), (120 - 2 * f, 64)] if f != 12 else [(30 + 24, 60)])
    return root, video


@pytest.fixture(scope="module")
def models(body_model):
    return load_perception_models(PerceptionConfig(), body_model)


CONFIG = PerceptionConfig(decode=DecodeConfig(target_fps=FPS), tracking=TrackingConfig(min_track_length=10))


def _perceive(clip: ClipRef, config: PerceptionConfig, models: PerceptionModels) -> PerceptionResult:
    """The clip's keypoint source decided (files next to the video), then perceived."""
    chosen = choose_keypoints(clip, config.keypoints_source, models.detector is not None)
    return chosen if isinstance(chosen, PerceptionResult) else perceive_clip(chosen, config, models)


def test_precomputed_keypoints_give_problems(clip_dir, models):
    root, video = clip_dir
    clip = ClipRef(clip_id="abc_000000_000010", uri=str(video), label="walking", split="train")
    result = _perceive(clip, CONFIG, models)
    assert result.ok, result.message
    assert result.num_frames == N and result.image_size == (W, H) and result.fps == FPS
    assert result.init_source == "keypoints" and result.max_people == 2
    assert len(result.problems) == 2
    sidecar = str(video).replace(".mp4", ".coco.json")
    assert result.keypoint_source == f"keypoints:{sidecar}"
    assert {p.meta["keypoint_source"] for p in result.problems} == {result.keypoint_source}
    for problem in result.problems:
        problem.validate()
        assert problem.num_frames == N and problem.num_candidates == 2
        np.testing.assert_allclose(problem.frame_time, np.arange(N) / FPS)
        assert problem.image_size == (W, H) and problem.meta["label"] == "walking"
        kept = problem.has_detection
        t = np.flatnonzero(kept)
        np.testing.assert_array_equal(problem.keypoints[t], problem.candidates[t, problem.selected[t]])
        assert np.isnan(problem.boxes[~kept]).all() and (problem.keypoints[~kept, :, 2] == 0).all()
        assert (problem.init_camera[problem.candidate_mask][:, 0] > 0).all()
        orient = problem.init_pose[problem.candidate_mask][:, :3]
        np.testing.assert_allclose(orient, np.broadcast_to([math.pi, 0, 0], orient.shape), atol=1e-5)
    skipped = [p for p in result.problems if not p.has_detection.all()]
    assert len(skipped) == 1 and not skipped[0].has_detection[12]
    assert skipped[0].candidate_mask[12].sum() == 1
    # keypoints follow the walking direction of each person
    xs = sorted(p.keypoints[0, 8, 0] for p in result.problems)
    assert xs == pytest.approx([30, 120], abs=0.5)


def test_time_range_maps_keypoints_by_source_frame(clip_dir, models):
    root, video = clip_dir
    clip = ClipRef(clip_id="abc", uri=str(video), time_start=0.4, time_end=1.0,
                   keypoints_uri=str(root / "abc_000000_000010.coco.json"))  # fmt: skip
    config = PerceptionConfig(decode=DecodeConfig(target_fps=12.5), tracking=TrackingConfig(min_track_length=3))
    result = _perceive(clip, config, models)
    assert result.ok, result.message
    assert result.num_frames == round(0.6 * 12.5) or abs(result.num_frames - 7.5) <= 1
    left = min(result.problems, key=lambda p: p.keypoints[0, 8, 0])
    # decoded frame k shows source frame 10 + 2k; that person is at x = 30 + 2 * source frame
    k = np.flatnonzero(left.has_detection)
    np.testing.assert_allclose(left.keypoints[k, 8, 0], 30 + 2 * (10 + 2 * left.frame_index[k]), atol=1e-3)


def test_reasons_are_values(clip_dir, models, tmp_path):
    root, video = clip_dir
    missing = _perceive(ClipRef(clip_id="x", uri=str(tmp_path / "none.mp4")), CONFIG, models)
    assert missing.reject_reason == RejectReason.MISSING_KEYPOINTS  # nothing to detect with
    detector_models = PerceptionModels(_StubDetector(2), None, models.keypoint_init)
    missing = _perceive(ClipRef(clip_id="x", uri=str(tmp_path / "none.mp4")), CONFIG, detector_models)
    assert missing.reject_reason == RejectReason.MISSING_FILE and "none.mp4" in missing.message

    crowded = tmp_path / "crowd.mp4"
    crowded.symlink_to(video)
    _coco(tmp_path / "crowd.coco.json", lambda f: [(10 + 20 * p, 60) for p in range(7)])
    result = _perceive(ClipRef(clip_id="c", uri=str(crowded)), CONFIG, models)
    assert result.reject_reason == RejectReason.CROWDED and result.max_people == 7

    empty = tmp_path / "empty.mp4"
    empty.symlink_to(video)
    _coco(tmp_path / "empty.coco.json", lambda f: [(50, 60)] if f < 3 else [])
    result = _perceive(ClipRef(clip_id="e", uri=str(empty)), CONFIG, models)
    assert result.reject_reason == RejectReason.NO_PERSON

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.symlink_to(video)
    (tmp_path / "corrupt.coco.json").write_text('{"annotations": [')
    result = _perceive(ClipRef(clip_id="k", uri=str(corrupt)), CONFIG, models)
    assert result.reject_reason == RejectReason.CORRUPT_KEYPOINTS and "corrupt.coco.json" in result.message
    assert not result.ok and result.problems == ()


class _StubDetector:
    """Detector stand-in: the same people in every frame, records the batches it saw."""

    def __init__(self, people):
        self.people = people
        self.batches = []

    def detect(self, frames):
        self.batches.append(frames.shape)
        kp = np.stack([_person(40 + 60 * p, 60) for p in range(self.people)]).astype(np.float32)
        kp[..., 2] = 0.9
        boxes = np.stack([[k[:, 0].min(), k[:, 1].min(), k[:, 0].max(), k[:, 1].max()] for k in kp]).astype(np.float32)
        return [FrameDetections(kp, boxes, np.ones(len(kp), np.float32)) for _ in frames]


def test_detector_path_streams_batches(clip_dir, models):
    _, video = clip_dir
    stub = _StubDetector(2)
    config = PerceptionConfig(decode=DecodeConfig(target_fps=FPS, batch_frames=8), keypoints_source="detect",
                              tracking=TrackingConfig(min_track_length=10))  # fmt: skip
    source = "detector:stub-pose.pt@sha256:0123456789ab"
    result = _perceive(ClipRef(clip_id="d", uri=str(video)), config,
                       PerceptionModels(stub, None, models.keypoint_init, detector_source=source))
    assert result.ok and len(result.problems) == 2
    assert [b[0] for b in stub.batches] == [8, 8, 8, 6] and stub.batches[0][1:] == (H, W, 3)
    assert set(result.stage_seconds) == set(result.stage_cpu_seconds) == {"decode", "detect", "track", "init"}
    assert result.keypoint_source == source and all(p.meta["keypoint_source"] == source for p in result.problems)
    assert all(p.crops == () for p in result.problems)


def test_store_crops_gives_a_crop_per_frame(clip_dir, models):
    _, video = clip_dir
    config = PerceptionConfig(decode=DecodeConfig(target_fps=FPS), tracking=TrackingConfig(min_track_length=10),
                              store_crops=True)  # fmt: skip
    result = _perceive(ClipRef(clip_id="s", uri=str(video)), config, models)
    assert result.ok, result.message
    for p in result.problems:
        assert len(p.crops) == p.num_frames
        assert all((len(c) > 0) == kept for c, kept in zip(p.crops, p.has_detection))
        assert p.crops[0][:2] == b"\xff\xd8"  # JPEG


@pytest.mark.slow
def test_hmr_init_end_to_end(clip_dir, body_model, tmp_path):
    from models.geometry import axis_angle_to_matrix
    from models.hmr import HMR, load_mean_params, matrix_to_spin_6d

    rot = torch.eye(3).repeat(24, 1, 1)
    rot[0] = axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0]))
    mean = tmp_path / "vid2mesh_test_mean_params.npz"
    np.savez(mean, pose=matrix_to_spin_6d(rot).reshape(144).numpy(), shape=np.zeros(10), cam=np.array([0.9, 0, 0]))
    torch.manual_seed(0)
    weights = tmp_path / "hmr_test_weights.pt"
    torch.save({"model": HMR(load_mean_params(mean)).state_dict()}, weights)
    root, video = clip_dir
    config = PerceptionConfig(
        decode=DecodeConfig(target_fps=5.0), tracking=TrackingConfig(min_track_length=3),
        hmr_checkpoint=str(weights), smpl_mean_params=str(mean),
    )  # fmt: skip
    models = load_perception_models(config, body_model)
    result = _perceive(ClipRef(clip_id="h", uri=str(video)), config, models)
    assert result.ok, result.message
    assert result.init_source == "hmr" and all(p.init_source == "hmr" for p in result.problems)
    for p in result.problems:
        real = p.candidate_mask
        assert np.isfinite(p.init_pose[real]).all() and (p.init_betas[~real] == 0).all()
        assert np.abs(p.init_pose[real]).sum() > 0


def _coco_sized(path, people_at, n=N):
    """Like _coco, with (x, y, scale) people (height 60 x scale px)."""
    images = [{"id": f, "width": W, "height": H} for f in range(n)]
    annotations = [{"image_id": f, "category_id": 1, "keypoints": _person(x, y, s).reshape(-1).tolist()}
                   for f in range(n) for x, y, s in people_at(f)]  # fmt: skip
    path.write_text(json.dumps({"images": images, "annotations": annotations}))


def _clip_with(tmp_path, video, name, people_at) -> ClipRef:
    link = tmp_path / f"{name}.mp4"
    link.symlink_to(video)
    _coco_sized(tmp_path / f"{name}.coco.json", people_at)
    return ClipRef(clip_id=name, uri=str(link))


def test_crowd_rule_scans_the_whole_clip_and_names_its_maximum(clip_dir, models, tmp_path):
    """7 people early, 9 later: the message names 9 and the value to pass, and one rerun with
    it fits the clip."""
    _, video = clip_dir
    clip = _clip_with(tmp_path, video, "crowd", lambda f: [(8 + 18 * p, 60, 1.0) for p in range(7 if f < 15 else 9)])
    result = _perceive(clip, CONFIG, models)
    assert result.reject_reason == RejectReason.CROWDED and result.max_people == 9, result.message
    assert "up to 9 people" in result.message and '"max_people": 9' in result.message and "frame 15" in result.message
    assert "--overwrite" in result.message and "min_person_height=50" in result.message
    rerun = dataclasses.replace(CONFIG, tracking=dataclasses.replace(CONFIG.tracking, max_people=9))
    assert _perceive(clip, rerun, models).reject_reason != RejectReason.CROWDED


# the fixed 50 px minimum on these 120 px frames (the default floor there is a sixth of them)
FIXED_50 = dataclasses.replace(CONFIG, min_person_height_fraction=1.0)


def _walkers_and_bystanders(tmp_path, video):
    """Two walkers 60 px tall and six bystanders 30 px tall."""
    return _clip_with(tmp_path, video, "far", lambda f: [(30 + 2 * f, 60, 1.0), (120 - 2 * f, 64, 1.0)]
                      + [(8 + 24 * p, 20, 0.5) for p in range(6)])  # fmt: skip


def test_people_below_the_minimum_height_are_not_counted_or_tracked(clip_dir, models, tmp_path):
    """At a 50 px minimum the six bystanders are neither tracked nor counted: not crowded at
    max_people 6, and the clip records what was detected."""
    _, video = clip_dir
    result = _perceive(_walkers_and_bystanders(tmp_path, video), FIXED_50, models)
    assert result.ok, result.message
    assert len(result.problems) == 2 and result.max_people == 2
    assert result.detections_median == 8 and result.detections_max == 8
    assert result.smallest_person_px == pytest.approx(30, abs=0.5)


def test_the_default_minimum_height_follows_a_small_frame(clip_dir, models, tmp_path):
    """On 160x120 frames the default minimum is a sixth of the height, 20 px (not 50): the
    30 px bystanders count, and eight people in a frame make the clip crowded."""
    _, video = clip_dir
    assert CONFIG.person_height_floor(H) == pytest.approx(20.0)
    assert CONFIG.person_height_floor(320) == CONFIG.person_height_floor(1080) == 50.0
    result = _perceive(_walkers_and_bystanders(tmp_path, video), CONFIG, models)
    assert result.reject_reason == RejectReason.CROWDED and result.max_people == 8, result.message
    assert "at least 20 px tall" in result.message and "min_person_height_fraction=0.1667" in result.message


def test_a_clip_of_small_people_is_rejected_naming_the_minimum_and_the_flag(clip_dir, models, tmp_path):
    _, video = clip_dir
    clip = _clip_with(tmp_path, video, "tiny", lambda f: [(30 + 2 * f, 60, 0.5), (120 - 2 * f, 64, 0.6)])
    result = _perceive(clip, FIXED_50, models)
    assert result.reject_reason == RejectReason.TOO_SMALL, result.message
    assert "min_person_height=50 px" in result.message and "tallest 36 px" in result.message
    assert '--perception_config \'{"min_person_height": 36}\'' in result.message
    assert result.max_people == 0 and result.detections_max == 2
    rerun = dataclasses.replace(FIXED_50, min_person_height=36.0)
    assert _perceive(clip, rerun, models).ok
