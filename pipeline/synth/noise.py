"""Simulated perception on synthetic clips: a keypoint detector and a per-frame regressor.

The detector simulation turns exact ground truth into COCO keypoint JSON with the failure
modes of real 2D pose detectors: jitter proportional to the person's size (per keypoint
scaled by COCO's OKS sigmas, temporally correlated), lower confidence and misses on
occluded keypoints (visibility comes from the renderer's z-buffer), left/right swaps of
the whole body or of one limb, gross outliers, missed people, dropped frames, duplicate
boxes and false-positive people.

The regressor simulation plays HMR/SPIN on every detection: SMPL pose, shape and a
weak-perspective camera with a per-track bias, temporally correlated drift and a little
per-frame noise (on the default settings about 80-90 mm MPJPE, 60-65 mm PA-MPJPE and
40-50 mm/frame^2 acceleration error, like HMR on 3DPW), occasional front/back flips and
depth ambiguity (a limb mirrored through the image plane, which keeps its 2D projection).

Both are deterministic functions of the ground truth and a ``numpy`` generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from models.joint_names import COCO17_FLIP_INDEX, COCO17_INDEX, COCO17_NAMES, COCO17_SKELETON, SMPL24_PARENTS
from pipeline.synth.truth import OCCLUDED, OUTSIDE, VISIBLE, ClipTruth

__all__ = [
    "COCO_OKS_SIGMAS",
    "DetectorNoise",
    "RegressorNoise",
    "simulate_detections",
    "simulate_regressor",
]

COCO_OKS_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
) / 10.0
"""COCO's per-keypoint OKS sigmas: how loosely each keypoint is localised by annotators."""

_LIMB_PAIRS = (
    (("left_elbow", "right_elbow"), ("left_wrist", "right_wrist")),
    (("left_knee", "right_knee"), ("left_ankle", "right_ankle")),
    (("left_ankle", "right_ankle"),),
    (("left_wrist", "right_wrist"),),
)


@dataclass(frozen=True)
class DetectorNoise:
    """Failure rates of the simulated 2D detector (defaults: a decent HRNet/YOLO-pose).

    Attributes:
        jitter: keypoint noise std = ``jitter * person_height * oks_sigma`` (pixels).
        temporal_correlation: AR(1) coefficient of the jitter between frames.
        occluded_jitter_scale: noise multiplier on occluded keypoints.
        occluded_miss: probability that an occluded keypoint is not reported.
        outside_miss: probability that a keypoint outside the image is not reported.
        outlier_rate: per keypoint, probability of a gross error (15-40 % of the height).
        body_swap_rate: per detection, probability of a full left/right swap.
        limb_swap_rate: per detection, probability of swapping one limb pair.
        miss_rate: per visible person and frame, probability of a missed detection.
        min_visible_keypoints: fewer visible keypoints make a detection unlikely.
        min_height: people smaller than this (pixels) are missed.
        frame_drop_rate: probability that a whole frame has no detection.
        false_positive_rate: expected false-positive people per frame.
        duplicate_rate: per detection, probability of a second, shifted box.
    """

    jitter: float = 0.28
    temporal_correlation: float = 0.6
    occluded_jitter_scale: float = 3.0
    occluded_miss: float = 0.35
    outside_miss: float = 0.85
    outlier_rate: float = 0.01
    body_swap_rate: float = 0.02
    limb_swap_rate: float = 0.03
    miss_rate: float = 0.03
    min_visible_keypoints: int = 4
    min_height: float = 10.0
    frame_drop_rate: float = 0.02
    false_positive_rate: float = 0.05
    duplicate_rate: float = 0.02


@dataclass(frozen=True)
class RegressorNoise:
    """Error model of the simulated per-frame SMPL regressor (defaults: HMR-like).

    Attributes:
        joint_bias: std (rad) of a per-track, slowly drifting bias on body joint rotations.
        joint_drift: std (rad) of a faster, temporally correlated error (AR(1) with
            ``drift_correlation`` between frames): real regressors err alike on similar
            neighbouring frames, so their jitter is far below their error.
        drift_correlation: frame-to-frame correlation of that error.
        joint_noise: std (rad) of independent per-frame noise on body joint rotations.
        occluded_scale: noise multiplier on limbs whose keypoints are hidden.
        orient_noise: std (rad) of the global-orientation error.
        betas_bias: std of the per-track shape bias; betas_noise: per frame.
        scale_noise: std of the log camera-scale error; translation_noise: std of the
            camera translation error as a fraction of the person's height.
        flip_on, flip_off: per-frame probabilities to start / end a front-back flip.
        depth_on, depth_off: per-frame probabilities, per limb, to start / end a depth
            ambiguity (the limb mirrored through the image plane).
    """

    joint_bias: float = 0.09
    joint_drift: float = 0.08
    drift_correlation: float = 0.95
    joint_noise: float = 0.008
    occluded_scale: float = 1.8
    orient_noise: float = 0.10
    betas_bias: float = 0.5
    betas_noise: float = 0.15
    scale_noise: float = 0.05
    translation_noise: float = 0.015
    flip_on: float = 0.004
    flip_off: float = 0.25
    depth_on: float = 0.012
    depth_off: float = 0.2


def ar1_noise(rng: np.random.Generator, shape: tuple[int, ...], rho: float) -> np.ndarray:
    """Unit-variance AR(1) noise along axis 0."""
    out = rng.normal(size=shape)
    scale = np.sqrt(1.0 - rho * rho)
    for t in range(1, shape[0]):
        out[t] = rho * out[t - 1] + scale * out[t]
    return out


def markov_events(rng: np.random.Generator, shape: tuple[int, ...], p_on: float, p_off: float) -> np.ndarray:
    """Two-state Markov chains along axis 0 (bool: True while an event lasts)."""
    draws = rng.random(shape)
    state = np.zeros(shape, dtype=bool)
    for t in range(shape[0]):
        prev = state[t - 1] if t else np.zeros(shape[1:], dtype=bool)
        state[t] = np.where(prev, draws[t] >= p_off, draws[t] < p_on)
    return state


def _person_height(bbox: np.ndarray) -> np.ndarray:
    """(T, P) pixels: the amodal box height."""
    return np.maximum(bbox[..., 3] - bbox[..., 1], 1.0)


def _round(values: np.ndarray, digits: int) -> list[float]:
    return [float(v) for v in np.round(np.asarray(values, dtype=np.float64), digits).reshape(-1)]


def simulate_detections(
    truth: ClipTruth,
    rng: np.random.Generator,
    noise: DetectorNoise = DetectorNoise(),
    file_stem: str = "",
) -> dict:
    """Detector output for a clip as COCO keypoint JSON (a dict ready for ``json.dump``).

    Args:
        truth: the clip's ground truth.
        rng: random generator (the only source of randomness).
        noise: failure rates.
        file_stem: stem used in ``images[].file_name``.

    Returns:
        COCO dict: ``images`` (``id`` = frame index), ``annotations`` (``keypoints`` =
        17 x (x, y, v) with v the confidence in [0, 1], 0 for an unreported keypoint;
        ``score``; ``bbox`` = [x, y, w, h]; ``synth_gt_track`` = the true track id or -1
        for a false positive, for benchmarks only), ``categories``.
    """
    T, P = truth.num_frames, truth.num_people
    width, height = truth.image_size
    kp = truth.keypoints2d.astype(np.float64)
    vis = truth.visibility
    person_h = _person_height(truth.bbox.astype(np.float64))
    sigma = noise.jitter * person_h[..., None] * COCO_OKS_SIGMAS  # (T, P, 17)
    jitter = ar1_noise(rng, (T, P, 17, 2), noise.temporal_correlation)
    detect_draw = rng.random((T, P))
    frame_drop = rng.random(T) < noise.frame_drop_rate
    images = []
    annotations = []
    next_id = 1
    for t in range(T):
        images.append(
            {
                "id": int(truth.frame_index[t]),
                "file_name": f"{file_stem}_{int(truth.frame_index[t]):06d}.jpg",
                "width": int(width),
                "height": int(height),
                "frame_time": round(float(truth.frame_time[t]), 6),
            }
        )
        frame_dets: list[tuple[np.ndarray, float, np.ndarray, int]] = []
        for p in range(P):
            n_vis = int((vis[t, p] == VISIBLE).sum())
            if person_h[t, p] < noise.min_height or n_vis == 0:
                continue
            p_detect = (1.0 - noise.miss_rate) * np.clip((n_vis - 1) / max(noise.min_visible_keypoints, 1), 0.0, 1.0)
            if detect_draw[t, p] >= p_detect:
                continue
            det = _noisy_keypoints(rng, kp[t, p], vis[t, p], sigma[t, p], jitter[t, p], person_h[t, p], noise, width, height)
            if det is None:
                continue
            score = float(np.clip(det[:, 2][det[:, 2] > 0].mean() * rng.uniform(0.92, 1.0), 0.05, 1.0))
            box = _detection_box(rng, truth.bbox[t, p], width, height)
            frame_dets.append((det, score, box, int(truth.track_id[p])))
            if rng.random() < noise.duplicate_rate:
                dup = det.copy()
                shift = rng.normal(scale=0.04 * person_h[t, p], size=2)
                dup[:, :2] = np.where(dup[:, 2:] > 0, dup[:, :2] + shift + rng.normal(scale=sigma[t, p][:, None] * 2), 0.0)
                dup[:, 2] = np.where(dup[:, 2] > 0, dup[:, 2] * rng.uniform(0.4, 0.7), 0.0)
                frame_dets.append((dup, score * rng.uniform(0.3, 0.6), box + np.r_[shift, shift], int(truth.track_id[p])))
        for _ in range(rng.poisson(noise.false_positive_rate)):
            fp = _false_positive(rng, kp, vis, person_h, width, height)
            if fp is not None:
                frame_dets.append(fp)
        if frame_drop[t]:
            frame_dets = []
        frame_dets.sort(key=lambda d: -d[1])
        for det, score, box, track in frame_dets:
            annotations.append(_coco_annotation(next_id, int(truth.frame_index[t]), det, score, box, track))
            next_id += 1
    return {
        "info": {
            "description": "vid2mesh synthetic detector output (pipeline.synth.noise)",
            "clip_id": truth.clip_id,
            "fps": truth.fps,
            "keypoint_format": "coco17 (ultralytics order); v = confidence in [0, 1], 0 = not reported",
        },
        "images": images,
        "annotations": annotations,
        "categories": [
            {
                "id": 1,
                "name": "person",
                "supercategory": "person",
                "keypoints": list(COCO17_NAMES),
                "skeleton": [[a + 1, b + 1] for a, b in COCO17_SKELETON],
            }
        ],
    }


def _coco_annotation(annotation_id: int, image_id: int, det: np.ndarray, score: float, box: np.ndarray,
                     track: int) -> dict:
    """One COCO keypoint annotation.

    Args:
        det: (17, 3) keypoints, pixels + confidence (0: not reported).
        score: detection score in [0, 1].
        box: (4,) x0, y0, x1, y1 pixels.
        track: the true track id, -1 for a false positive.
    """
    x0, y0, x1, y1 = box
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": 1,
        "keypoints": _round(det, 3),
        "num_keypoints": int((det[:, 2] > 0).sum()),
        "score": round(score, 4),
        "bbox": _round([x0, y0, x1 - x0, y1 - y0], 2),
        "area": round(float((x1 - x0) * (y1 - y0)), 2),
        "iscrowd": 0,
        "synth_gt_track": track,
    }


def _noisy_keypoints(rng, kp, vis, sigma, jitter, person_h, noise: DetectorNoise, width, height):
    """(17, 3) noisy keypoints + confidence for one person, or None when nothing is left."""
    out = np.zeros((17, 3))
    occluded = vis == OCCLUDED
    outside = vis == OUTSIDE
    scale = np.where(occluded | outside, noise.occluded_jitter_scale, 1.0)
    xy = kp + jitter * (sigma * scale)[:, None]
    z = np.linalg.norm(jitter, axis=1)
    conf = np.clip(0.95 - 0.06 * z + rng.normal(scale=0.03, size=17), 0.35, 1.0)
    conf = np.where(occluded, rng.uniform(0.12, 0.55, size=17), conf)
    conf = np.where(outside, rng.uniform(0.05, 0.3, size=17), conf)
    outlier = rng.random(17) < noise.outlier_rate
    if outlier.any():
        angle = rng.uniform(0, 2 * np.pi, size=17)
        dist = rng.uniform(0.15, 0.4, size=17) * person_h
        xy = np.where(outlier[:, None], xy + dist[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1), xy)
        conf = np.where(outlier, rng.uniform(0.3, 0.7, size=17), conf)
    missing = (occluded & (rng.random(17) < noise.occluded_miss)) | (outside & (rng.random(17) < noise.outside_miss))
    # A detector never reports a keypoint off the image: clamp to the border.
    xy[:, 0] = np.clip(xy[:, 0], 0.0, width - 1e-3)
    xy[:, 1] = np.clip(xy[:, 1], 0.0, height - 1e-3)
    out[:, :2] = xy
    out[:, 2] = conf
    out[missing] = 0.0
    if rng.random() < noise.body_swap_rate:
        out = out[list(COCO17_FLIP_INDEX)]
    elif rng.random() < noise.limb_swap_rate:
        pairs = _LIMB_PAIRS[rng.integers(len(_LIMB_PAIRS))]
        for a, b in pairs:
            ia, ib = COCO17_INDEX[a], COCO17_INDEX[b]
            out[[ia, ib]] = out[[ib, ia]]
    if (out[:, 2] > 0).sum() < 3:
        return None
    return out


def _detection_box(rng, bbox, width, height) -> np.ndarray:
    """x0, y0, x1, y1 of the amodal box clipped to the image, with a few % of noise."""
    x0, y0, x1, y1 = bbox.astype(np.float64)
    w, h = x1 - x0, y1 - y0
    box = np.array([x0, y0, x1, y1]) + rng.normal(scale=0.03, size=4) * np.array([w, h, w, h])
    box[[0, 2]] = np.clip(box[[0, 2]], 0.0, width)
    box[[1, 3]] = np.clip(box[[1, 3]], 0.0, height)
    if box[2] <= box[0] + 1:
        box[2] = min(box[0] + 2, width)
    if box[3] <= box[1] + 1:
        box[3] = min(box[1] + 2, height)
    return box


def _false_positive(rng, kp, vis, person_h, width, height):
    """A person-like detection where nobody is (poster, reflection, clutter)."""
    T, P = kp.shape[:2]
    ok = np.argwhere((vis == VISIBLE).sum(axis=2) >= 8)
    if ok.size == 0:
        return None
    t, p = ok[rng.integers(len(ok))]
    template = kp[t, p] - kp[t, p].mean(axis=0)
    scale = rng.uniform(0.3, 0.9)
    center = np.array([rng.uniform(0.1, 0.9) * width, rng.uniform(0.2, 0.8) * height])
    xy = template * scale + center + rng.normal(scale=0.06 * person_h[t, p] * scale, size=(17, 2))
    det = np.zeros((17, 3))
    det[:, :2] = xy
    det[:, 2] = rng.uniform(0.05, 0.45, size=17)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    keep = inside & (rng.random(17) < 0.8)
    det[~keep] = 0.0
    if keep.sum() < 4:
        return None
    lo, hi = det[keep, :2].min(axis=0), det[keep, :2].max(axis=0)
    pad = 0.1 * (hi - lo) + 2
    box = np.r_[np.maximum(lo - pad, 0), np.minimum(hi + pad, [width, height])]
    return det, float(rng.uniform(0.15, 0.45)), box, -1


# Limbs for depth ambiguity: (joint whose rotation changes, its child), SMPL indices.
_DEPTH_LIMBS = ((16, 18), (17, 19), (1, 4), (2, 5), (18, 20), (19, 21), (4, 7), (5, 8))
_JOINT_NOISE_SCALE = np.array(
    [0.5, 0.5, 0.4, 1.0, 1.0, 0.4, 0.8, 0.8, 0.4, 0.4, 0.4, 0.6, 0.7, 0.7, 0.7, 1.1, 1.1, 1.2, 1.2, 1.0, 1.0, 0.6, 0.6]
)  # body joints 1..23: spine small, limbs larger, hands/feet moderate
_LIMB_KEYPOINTS = {
    16: ("left_elbow", "left_wrist"), 17: ("right_elbow", "right_wrist"),
    18: ("left_wrist",), 19: ("right_wrist",), 1: ("left_knee", "left_ankle"),
    2: ("right_knee", "right_ankle"), 4: ("left_ankle",), 5: ("right_ankle",),
}  # fmt: skip


def _global_rotations(local: np.ndarray) -> np.ndarray:
    """(..., 24, 3, 3) world rotations of every joint from local rotations (SMPL tree)."""
    out = np.empty_like(local)
    for j, parent in enumerate(SMPL24_PARENTS):
        out[..., j, :, :] = local[..., j, :, :] if parent < 0 else out[..., parent, :, :] @ local[..., j, :, :]
    return out


def _subtree(joint: int) -> list[int]:
    """``joint`` and its descendants, parents before children (SMPL order is topological)."""
    inside = {joint}
    for j, parent in enumerate(SMPL24_PARENTS):
        if parent in inside:
            inside.add(j)
    return sorted(inside)


_SUBTREES = {j: _subtree(j) for j in range(24)}


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 3, 3) smallest rotation taking unit vectors a to b (both (..., 3))."""
    axis = np.cross(a, b)
    sin = np.linalg.norm(axis, axis=-1, keepdims=True)
    cos = np.sum(a * b, axis=-1, keepdims=True)
    angle = np.arctan2(sin, cos)
    fallback = np.cross(a, np.array([0.0, 1.0, 0.0]))
    axis = np.where(sin > 1e-9, axis, fallback)
    axis = axis / np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-12)
    return Rotation.from_rotvec((axis * angle).reshape(-1, 3)).as_matrix().reshape(*a.shape[:-1], 3, 3)


def _mirror_depth(local: np.ndarray, local_true: np.ndarray, joints: np.ndarray, events: np.ndarray) -> None:
    """Mirror the depth of the limbs whose depth event is on, in place (the regressor's
    forward/backward limb ambiguity).

    Args:
        local: (24, 3, 3) the estimate's local rotations, changed in place.
        local_true: (24, 3, 3) the true local rotations.
        joints: (24, 3) true joints, metres.
        events: (len(_DEPTH_LIMBS),) bool, which limbs to mirror.
    """
    world = _global_rotations(local)
    world_true = _global_rotations(local_true)
    for k in np.nonzero(events)[0]:
        joint, child = _DEPTH_LIMBS[k]
        # The true bone, carried into the estimate's (noisy) limb orientation.
        bone = world[joint] @ world_true[joint].T @ (joints[child] - joints[joint])
        bone /= max(np.linalg.norm(bone), 1e-9)
        mirrored = bone * np.array([1.0, 1.0, -1.0])
        q = _rotation_between(bone, mirrored)
        parent_world = world[SMPL24_PARENTS[joint]]
        local[joint] = parent_world.T @ q @ parent_world @ local[joint]
        for j in _SUBTREES[joint]:
            world[j] = world[SMPL24_PARENTS[j]] @ local[j]


def simulate_regressor(
    truth: ClipTruth,
    coco: dict,
    rng: np.random.Generator,
    noise: RegressorNoise = RegressorNoise(),
) -> dict[str, np.ndarray]:
    """Per-detection SMPL estimates as a per-frame regressor (HMR) would give them.

    Args:
        truth: the clip's ground truth.
        coco: detections from :func:`simulate_detections` (one estimate per annotation).
        rng: random generator.
        noise: error model.

    Returns:
        Arrays for the ``.init.npz``, D = number of annotations, in annotation order:
        ``annotation_id`` (D,) int64, ``frame_index`` (D,) int32, ``pose`` (D, 72) float32
        axis-angle rad, ``betas`` (D, 10) float32, ``camera`` (D, 3) float32 (s px/m, tx px,
        ty px), ``synth_gt_track`` (D,) int32 (-1 for false positives),
        ``flipped`` (D,) bool and ``depth_ambiguous`` (D,) bool (which errors were applied).
    """
    T, P = truth.num_frames, truth.num_people
    frame_pos = {int(f): i for i, f in enumerate(truth.frame_index)}
    track_pos = {int(k): i for i, k in enumerate(truth.track_id)}
    bias = ar1_noise(rng, (T, P, 23, 3), 0.98) * noise.joint_bias
    bias += ar1_noise(rng, (T, P, 23, 3), noise.drift_correlation) * noise.joint_drift
    orient_drift = ar1_noise(rng, (T, P, 3), noise.drift_correlation) * noise.orient_noise
    betas_bias = rng.normal(scale=noise.betas_bias, size=(P, 10))
    scale_bias = rng.normal(scale=noise.scale_noise, size=P)
    flips = markov_events(rng, (T, P), noise.flip_on, noise.flip_off)
    depth_events = markov_events(rng, (T, P, len(_DEPTH_LIMBS)), noise.depth_on, noise.depth_off)
    anns = coco["annotations"]
    D = len(anns)
    pose = np.zeros((D, 72))
    betas = np.zeros((D, 10))
    camera = np.zeros((D, 3))
    flipped = np.zeros(D, dtype=bool)
    ambiguous = np.zeros(D, dtype=bool)
    gt_track = np.array([a.get("synth_gt_track", -1) for a in anns], dtype=np.int32)
    frame_index = np.array([a["image_id"] for a in anns], dtype=np.int32)
    for d, ann in enumerate(anns):
        t = frame_pos[int(ann["image_id"])]
        x, y, w, h = ann["bbox"]
        if gt_track[d] < 0:
            # A false positive: the regressor still returns a plausible standing person.
            p_pose = np.zeros(72)
            p_pose[:3] = Rotation.from_euler("xy", [np.pi + rng.normal(scale=0.2), rng.normal(scale=0.8)]).as_rotvec()
            p_pose[3:] = rng.normal(scale=0.15, size=69)
            pose[d] = p_pose
            betas[d] = rng.normal(scale=0.8, size=10)
            camera[d] = [max(h, 2.0) / 1.7, x + w / 2, y + h / 2]
            continue
        p = track_pos[int(gt_track[d])]
        local_true = Rotation.from_rotvec(truth.pose[t, p].reshape(24, 3).astype(np.float64)).as_matrix()
        local = local_true.copy()
        # Per-joint noise, larger on limbs whose keypoints are hidden.
        joint_scale = _JOINT_NOISE_SCALE.copy()
        hidden = truth.visibility[t, p] != VISIBLE
        for j, names in _LIMB_KEYPOINTS.items():
            if any(hidden[COCO17_INDEX[n]] for n in names):
                joint_scale[j - 1] *= noise.occluded_scale
        err = (bias[t, p] + rng.normal(scale=noise.joint_noise, size=(23, 3))) * joint_scale[:, None]
        local[1:] = Rotation.from_rotvec(err).as_matrix() @ local[1:]
        # Global orientation: mostly a yaw error about the camera's vertical axis.
        orient_err = (orient_drift[t, p] + rng.normal(scale=0.05 * noise.orient_noise, size=3)) * np.array([0.6, 1.5, 0.4])
        local[0] = Rotation.from_rotvec(orient_err).as_matrix() @ local[0]
        if depth_events[t, p].any():
            ambiguous[d] = True
            _mirror_depth(local, local_true, truth.joints3d[t, p].astype(np.float64), depth_events[t, p])
        if flips[t, p]:
            flipped[d] = True
            local[0] = Rotation.from_euler("y", np.pi).as_matrix() @ local[0]
        pose[d] = Rotation.from_matrix(local).as_rotvec().reshape(72)
        betas[d] = truth.betas[p] + betas_bias[p] + rng.normal(scale=noise.betas_noise, size=10)
        s, tx, ty = truth.camera[t, p].astype(np.float64)
        person_h = max(float(truth.bbox[t, p, 3] - truth.bbox[t, p, 1]), 1.0)
        camera[d] = [
            s * np.exp(scale_bias[p] + rng.normal(scale=0.5 * noise.scale_noise)),
            tx + rng.normal(scale=noise.translation_noise * person_h),
            ty + rng.normal(scale=noise.translation_noise * person_h),
        ]
    return {
        "annotation_id": np.array([a["id"] for a in anns], dtype=np.int64),
        "frame_index": frame_index,
        "pose": pose.astype(np.float32),
        "betas": betas.astype(np.float32),
        "camera": camera.astype(np.float32),
        "synth_gt_track": gt_track,
        "flipped": flipped,
        "depth_ambiguous": ambiguous,
    }
