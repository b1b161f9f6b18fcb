"""pipeline.synth.noise: the simulated detector and regressor have the intended error pattern."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from models.joint_names import COCO17_FLIP_INDEX
from pipeline.qa import metrics
from pipeline.synth.motions import sample_motion
from pipeline.synth.noise import DetectorNoise, RegressorNoise, simulate_detections, simulate_regressor
from pipeline.synth.truth import OCCLUDED, VISIBLE, ClipTruth

QUIET = DetectorNoise(
    outlier_rate=0.0, body_swap_rate=0.0, limb_swap_rate=0.0, miss_rate=0.0, frame_drop_rate=0.0,
    false_positive_rate=0.0, duplicate_rate=0.0,
)  # fmt: skip


def make_truth(body_model, frames: int = 80, heights=(100.0, 200.0), width=640, height=480) -> ClipTruth:
    """Two people side by side, fully visible, person 1 with occluded wrists half the time."""
    rng = np.random.default_rng(0)
    times = np.arange(frames) / 25.0
    P = len(heights)
    orient = Rotation.from_euler("x", np.pi).as_rotvec()
    pose = np.zeros((frames, P, 72))
    for p in range(P):
        pose[:, p, :3] = orient
        pose[:, p, 3:] = sample_motion(("walking", "waving")[p % 2], times, rng).body_pose
    betas = rng.normal(scale=0.5, size=(P, 10))
    with torch.no_grad():
        joints, keypoints = body_model.joints_and_keypoints(
            torch.tensor(pose, dtype=torch.float32), torch.tensor(np.broadcast_to(betas, (frames, P, 10)), dtype=torch.float32)
        )
    joints, keypoints = joints.double().numpy(), keypoints.double().numpy()
    scale = np.array(heights) / 1.7
    camera = np.zeros((frames, P, 3))
    camera[..., 0] = scale
    camera[..., 1] = 150 + 300 * np.arange(P)
    camera[..., 2] = height / 2
    kp2d = camera[..., None, :1] * keypoints[..., :2] + camera[..., None, 1:]
    lo, hi = kp2d.min(axis=2), kp2d.max(axis=2)
    pad = 0.1 * (hi - lo)
    bbox = np.concatenate([lo - pad, hi + pad], axis=-1)
    visibility = np.full((frames, P, 17), VISIBLE, dtype=np.uint8)
    visibility[: frames // 2, 1, 9:11] = OCCLUDED
    return ClipTruth(
        clip_id="test_000000_000010", label="walking", split="train", fps=25.0, image_size=(width, height),
        camera_height=1.2, frame_index=np.arange(frames, dtype=np.int32), frame_time=times,
        track_id=np.arange(P, dtype=np.int32), motion=np.array(["walking", "waving"][:P]),
        betas=betas.astype(np.float32), pose=pose.astype(np.float32), camera=camera.astype(np.float32),
        joints3d=joints.astype(np.float32), keypoints3d=keypoints.astype(np.float32),
        keypoints2d=kp2d.astype(np.float32), visibility=visibility,
        occluder=np.full((frames, P, 17), -1, np.int16), bbox=bbox.astype(np.float32),
        visible_pixels=np.full((frames, P), 1000, np.int32), depth=np.full((frames, P), 4.0, np.float32),
        focal=np.full(frames, 500.0, np.float32), principal=np.tile([width / 2, height / 2], (frames, 1)).astype(np.float32),
        roll=np.zeros(frames, np.float32),
    )  # fmt: skip


@pytest.fixture(scope="module")
def truth(body_model):
    return make_truth(body_model)


def _by_track(coco) -> dict[int, dict[int, np.ndarray]]:
    out: dict[int, dict[int, np.ndarray]] = {}
    for a in coco["annotations"]:
        out.setdefault(a["synth_gt_track"], {})[a["image_id"]] = np.array(a["keypoints"]).reshape(17, 3)
    return out


def test_coco_structure_and_determinism(truth):
    a = simulate_detections(truth, np.random.default_rng(1), file_stem="x")
    b = simulate_detections(truth, np.random.default_rng(1), file_stem="x")
    assert a == b
    assert [im["id"] for im in a["images"]] == list(range(truth.num_frames))
    assert a["images"][0]["width"] == 640 and a["categories"][0]["keypoints"][0] == "nose"
    ann = a["annotations"][0]
    assert len(ann["keypoints"]) == 51 and len(ann["bbox"]) == 4 and 0 < ann["score"] <= 1
    ids = [x["id"] for x in a["annotations"]]
    assert len(set(ids)) == len(ids)


def test_jitter_scales_with_person_size(truth):
    coco = simulate_detections(truth, np.random.default_rng(2), QUIET)
    dets = _by_track(coco)
    errors = []
    for p in (0, 1):
        frames = sorted(dets[p])
        kp = np.stack([dets[p][f] for f in frames])
        vis = truth.visibility[frames, p] == VISIBLE
        err = np.linalg.norm(kp[..., :2] - truth.keypoints2d[frames, p], axis=-1)
        errors.append(np.median(err[vis]))
    assert 1.0 < errors[0] < 6.0  # a few pixels on a 100 px person
    assert 1.6 < errors[1] / errors[0] < 2.5  # twice the size, twice the jitter


def test_occluded_keypoints_have_low_confidence_and_misses(truth):
    coco = simulate_detections(truth, np.random.default_rng(3), QUIET)
    dets = _by_track(coco)[1]
    frames = sorted(dets)
    kp = np.stack([dets[f] for f in frames])
    occluded = truth.visibility[frames, 1] == OCCLUDED
    conf_occ, conf_vis = kp[..., 2][occluded], kp[..., 2][~occluded]
    assert conf_vis.min() > 0.3 and conf_vis.mean() > 0.85
    missing = np.mean(conf_occ == 0)
    assert 0.15 < missing < 0.55
    assert conf_occ[conf_occ > 0].mean() < 0.6


def test_failure_modes_happen_at_their_rates(truth):
    noisy = DetectorNoise(frame_drop_rate=0.2, false_positive_rate=0.5, body_swap_rate=0.0, limb_swap_rate=0.0)
    coco = simulate_detections(truth, np.random.default_rng(4), noisy)
    per_frame = np.bincount([a["image_id"] for a in coco["annotations"] if a["synth_gt_track"] >= 0], minlength=truth.num_frames)
    dropped = np.mean(per_frame == 0)
    assert 0.08 < dropped < 0.35
    fps = [a for a in coco["annotations"] if a["synth_gt_track"] == -1]
    assert len(fps) > 10 and max(a["score"] for a in fps) < 0.5
    swapped = simulate_detections(truth, np.random.default_rng(5), dataclasses.replace(QUIET, body_swap_rate=1.0))
    dets = _by_track(swapped)[0]
    kp = np.stack([dets[f] for f in sorted(dets)])
    gt = truth.keypoints2d[sorted(dets), 0]
    flipped = gt[:, list(COCO17_FLIP_INDEX)]
    assert np.median(np.linalg.norm(kp[..., :2] - flipped, axis=-1)) < np.median(np.linalg.norm(kp[..., :2] - gt, axis=-1))


def test_regressor_error_pattern(truth, body_model):
    coco = simulate_detections(truth, np.random.default_rng(6), QUIET)
    init = simulate_regressor(truth, coco, np.random.default_rng(7))
    D = len(coco["annotations"])
    assert init["pose"].shape == (D, 72) and init["betas"].shape == (D, 10) and init["camera"].shape == (D, 3)
    assert (init["annotation_id"] == [a["id"] for a in coco["annotations"]]).all()
    gt = init["synth_gt_track"]
    with torch.no_grad():
        joints = body_model.joints(torch.from_numpy(init["pose"]), torch.from_numpy(init["betas"])).double().numpy()
    t = init["frame_index"]
    err = metrics.mpjpe(joints, truth.joints3d[t, gt])
    pa = metrics.pa_mpjpe(joints, truth.joints3d[t, gt])
    assert 55 < np.mean(err) < 130
    assert np.mean(pa) < np.mean(err)
    # Camera scale within ~20 % and translation within ~10 % of the height, as HMR.
    s_true = truth.camera[t, gt, 0]
    assert np.median(np.abs(init["camera"][:, 0] / s_true - 1)) < 0.2
    # Errors are temporally correlated: jitter far below the error.
    again = simulate_regressor(truth, coco, np.random.default_rng(7))
    assert all(np.array_equal(init[k], again[k]) for k in init)


def test_regressor_flips_and_depth_ambiguity(truth, body_model):
    coco = simulate_detections(truth, np.random.default_rng(8), QUIET)
    noise = RegressorNoise(flip_on=0.2, flip_off=0.2, depth_on=0.2, depth_off=0.2)
    init = simulate_regressor(truth, coco, np.random.default_rng(9), noise)
    assert 0.2 < init["flipped"].mean() < 0.8 and init["depth_ambiguous"].mean() > 0.3
    # A depth flip mirrors limbs through the image plane: the 2D projection barely moves.
    quiet = RegressorNoise(joint_bias=0, joint_drift=0, joint_noise=0, orient_noise=0, flip_on=0, depth_on=1.0, depth_off=0.0)
    mirrored = simulate_regressor(truth, coco, np.random.default_rng(10), quiet)
    with torch.no_grad():
        j = body_model.joints(torch.from_numpy(mirrored["pose"]), torch.from_numpy(truth.betas[mirrored["synth_gt_track"]])).double().numpy()
    gt = truth.joints3d[mirrored["frame_index"], mirrored["synth_gt_track"]]
    d2 = np.linalg.norm(j[..., :2] - gt[..., :2], axis=-1).mean()
    d3 = np.linalg.norm(j - gt, axis=-1).mean()
    assert d3 > 0.05 and d2 < 0.35 * d3
