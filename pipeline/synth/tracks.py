"""Synthetic person tracks with ground truth, for the bundle-adjustment benchmarks and tests
(one generator for both; the benchmarks pick its tuning or held-out motion split).

No video is rendered: a track is generated directly as a :class:`~optimize.problem.TrackProblem`.

* Motion: the project's procedural motion library (``pipeline.synth.motions``; its
  tuning / held-out split is kept), SMPL body poses over time, a heading, and a random
  shape, posed by the stand-in body model.
* Camera: weak perspective, a person 150-280 px tall in a 640 x 360 frame, drifting with
  the walk, a slow zoom and a few pixels of shake.
* Detector noise (:class:`DetectionNoise`): temporally correlated jitter scaled by COCO's
  OKS sigmas, missing keypoints, gross outlier keypoints, full-body and single-limb
  left/right swaps, dropped frames (the track's detection is missing, ``selected = -1``),
  and a distractor person in every frame as an extra candidate.
* Init (:class:`InitNoise`): ground truth corrupted the way a per-frame regressor
  errs: a slowly drifting per-joint rotation bias plus per-frame noise, a global
  orientation error (mostly yaw), occasional front/back flips that last a few frames,
  a shape bias, and camera scale and translation errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from models.geometry import axis_angle_to_matrix, matrix_to_axis_angle
from models.joint_names import COCO17_FLIP_INDEX, COCO17_INDEX
from optimize.problem import TrackProblem
from pipeline.synth.motions import BACKGROUND_MOTIONS, HELDOUT_MOTIONS, TUNING_MOTIONS, sample_motion
from pipeline.synth.noise import ar1_noise, markov_events

IMAGE_SIZE = (640, 360)
FPS = 25.0
OKS_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
) / 10.0
_LIMB_SWAPS = (
    ("left_elbow", "left_wrist"),
    ("left_knee", "left_ankle"),
    ("left_wrist",),
    ("left_ankle",),
)
# per body joint (1..23) rotation-noise scale: spine small, limbs larger
_JOINT_SCALE = np.array(
    [0.5, 0.5, 0.4, 1.0, 1.0, 0.4, 0.8, 0.8, 0.4, 0.4, 0.4, 0.6, 0.7, 0.7, 0.7, 1.1, 1.1, 1.2, 1.2, 1.0, 1.0, 0.6, 0.6]
)


@dataclass(frozen=True)
class DetectionNoise:
    """2D detector error model (pixels scale with the person's height).

    Attributes:
        jitter: keypoint noise std = jitter * height * OKS sigma.
        jitter_correlation: AR(1) coefficient of the jitter over frames.
        miss_keypoint: probability that a keypoint is not reported (confidence 0).
        outlier: probability of a gross keypoint error (15-40 % of the height).
        body_swap: per frame, probability of a full left/right swap.
        limb_swap: per frame, probability that one limb's keypoints swap sides.
        drop_frame: per frame, probability that the track's detection is missing.
        distractor: put a second person in every frame as an extra candidate.
    """

    jitter: float = 0.28
    jitter_correlation: float = 0.6
    miss_keypoint: float = 0.05
    outlier: float = 0.01
    body_swap: float = 0.02
    limb_swap: float = 0.03
    drop_frame: float = 0.04
    distractor: bool = True


@dataclass(frozen=True)
class InitNoise:
    """Per-frame SMPL regressor error model (HMR-like) of the bundle-adjustment benchmarks.

    The synthetic corpus's :class:`pipeline.synth.noise.RegressorNoise` models the same
    regressor for rendered clips (plus slow drift and occlusion); this one stays separate on
    purpose: the bundle-adjustment weights were calibrated on its tuning split and the
    benchmark figures in docs/measurements.md are pinned to it.

    Attributes:
        joint_bias: std (rad) of a slowly drifting (AR(1), 0.98) per-joint rotation bias.
        joint_noise: std (rad) of the independent per-frame rotation noise.
        orient_noise: std (rad) of the global orientation error (weighted to yaw).
        flip_on, flip_off: per-frame probabilities to start / end a front-back flip.
        betas_bias, betas_noise: shape error per track / per frame.
        scale_noise: std of the log camera-scale error; translation_noise: std of the
            camera translation error as a fraction of the person's height.
    """

    joint_bias: float = 0.12
    joint_noise: float = 0.12
    orient_noise: float = 0.12
    flip_on: float = 0.005
    flip_off: float = 0.25
    betas_bias: float = 0.5
    betas_noise: float = 0.15
    scale_noise: float = 0.05
    translation_noise: float = 0.015


@dataclass(frozen=True)
class SyntheticTrack:
    """A generated track and its ground truth.

    Attributes:
        problem: the bundle-adjustment input.
        motion: motion name; split: "tuning" or "heldout".
        gt_pose: (T, 72); gt_betas: (10,); gt_camera: (T, 3).
        gt_joints: (T, 24, 3) metres; gt_keypoints3d: (T, 17, 3) metres.
        init_joints: (T, 24, 3) joints of the starting point (selected candidate's init;
            skipped frames take the nearest kept frame's), metres.
        flipped: (T,) bool, the selected init is front/back flipped.
    """

    problem: TrackProblem
    motion: str
    split: str
    gt_pose: np.ndarray
    gt_betas: np.ndarray
    gt_camera: np.ndarray
    gt_joints: np.ndarray
    gt_keypoints3d: np.ndarray
    init_joints: np.ndarray
    flipped: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


def _smooth_noise(rng: np.random.Generator, T: int, scale: float, width: float) -> np.ndarray:
    """(T,) smooth random signal of std ~ scale, correlated over ~width frames."""
    rho = float(np.exp(-1.0 / max(width, 1.0)))
    return ar1_noise(rng, (T,), rho) * scale


def _rotvec(m: np.ndarray) -> np.ndarray:
    return matrix_to_axis_angle(torch.as_tensor(m)).numpy()


def _matrix(v: np.ndarray) -> np.ndarray:
    return axis_angle_to_matrix(torch.as_tensor(v, dtype=torch.float64)).numpy()


def _rot_y(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros(np.shape(angle) + (3, 3))
    out[..., 0, 0], out[..., 0, 2], out[..., 1, 1], out[..., 2, 0], out[..., 2, 2] = c, s, 1.0, -s, c
    return out


_R_X_PI = np.diag([1.0, -1.0, -1.0])


def _person(rng, motion: str, T: int, height_px: float, centre_x: float, fps: float = FPS):
    """One person's GT pose (T, 72), betas (10,), camera (T, 3), sampled at ``fps``."""
    times = np.arange(T) / fps
    sample = sample_motion(motion, times, rng)
    yaw0 = rng.uniform(-0.9, 0.9)
    heading = sample.heading + yaw0
    orient = _R_X_PI @ _rot_y(heading)  # facing the camera at heading 0
    pose = np.zeros((T, 72))
    pose[:, :3] = _rotvec(orient)
    pose[:, 3:] = sample.body_pose
    betas = np.clip(rng.normal(scale=0.8, size=10), -2.5, 2.5)
    s0 = height_px / 1.7
    W, H = IMAGE_SIZE
    # lateral drift of a walker (in pixels), kept in the frame by a soft bounce
    lateral = np.cumsum(sample.speed * np.sin(heading)) / fps * s0
    tx = centre_x + lateral + _smooth_noise(rng, T, 2.0, 3.0)
    lo, span = 0.12 * W, 0.76 * W
    tx = lo + span - np.abs((tx - lo) % (2 * span) - span)
    ty = H * 0.52 - sample.lift * s0 + _smooth_noise(rng, T, 2.0, 3.0)
    s = s0 * np.exp(_smooth_noise(rng, T, 0.05, 40.0))
    return pose, betas, np.stack([s, tx, ty], -1)


def _detections(rng, keypoints2d: np.ndarray, height_px: float, noise: DetectionNoise) -> np.ndarray:
    """(T, 17, 3) noisy detections (pixels + confidence) from true keypoints (T, 17, 2)."""
    T = keypoints2d.shape[0]
    sigma = noise.jitter * height_px * OKS_SIGMAS  # (17,)
    jitter = ar1_noise(rng, (T, 17, 2), noise.jitter_correlation) * sigma[None, :, None]
    kp = keypoints2d + jitter
    conf = rng.uniform(0.65, 1.0, size=(T, 17))
    outlier = rng.random((T, 17)) < noise.outlier
    direction = rng.normal(size=(T, 17, 2))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    kp = np.where(outlier[..., None], kp + direction * rng.uniform(0.15, 0.4, (T, 17, 1)) * height_px, kp)
    conf = np.where(outlier, rng.uniform(0.3, 0.7, (T, 17)), conf)
    flip = np.array(COCO17_FLIP_INDEX)
    swap = rng.random(T) < noise.body_swap
    kp[swap] = kp[swap][:, flip]
    conf[swap] = conf[swap][:, flip]
    for t in np.flatnonzero(rng.random(T) < noise.limb_swap):
        names = _LIMB_SWAPS[rng.integers(len(_LIMB_SWAPS))]
        for name in names:
            a, b = COCO17_INDEX[name], COCO17_INDEX[name.replace("left_", "right_")]
            kp[t, [a, b]] = kp[t, [b, a]]
    missing = rng.random((T, 17)) < noise.miss_keypoint
    conf = np.where(missing, 0.0, conf)
    kp = np.where(missing[..., None], 0.0, kp)
    return np.concatenate([kp, conf[..., None]], -1)


def regressor_init(rng, body_model, pose: np.ndarray, betas: np.ndarray, keypoints2d: np.ndarray, height_px: float,
               noise: InitNoise) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame init estimates: pose (T, 72), betas (T, 10), camera (T, 3), flipped (T,).

    The camera is what a regressor's camera head learns to output: the weak-perspective
    camera that best aligns *its own* (wrong) 3D keypoints with the person in the image
    (least squares on the true 2D keypoints), plus a small error.
    """
    T = pose.shape[0]
    local = _matrix(pose.reshape(T, 24, 3))
    err = (ar1_noise(rng, (T, 23, 3), 0.98) * noise.joint_bias + rng.normal(scale=noise.joint_noise, size=(T, 23, 3)))
    err *= _JOINT_SCALE[None, :, None]
    local[:, 1:] = _matrix(err) @ local[:, 1:]
    orient_err = rng.normal(scale=noise.orient_noise, size=(T, 3)) * np.array([0.6, 1.5, 0.4])
    local[:, 0] = _matrix(orient_err) @ local[:, 0]
    flipped = markov_events(rng, (T,), noise.flip_on, noise.flip_off)
    local[flipped, 0] = _rot_y(np.pi) @ local[flipped, 0]
    init_pose = _rotvec(local).reshape(T, 72)
    init_betas = betas + rng.normal(scale=noise.betas_bias, size=10) + rng.normal(scale=noise.betas_noise, size=(T, 10))
    _, kp3d = posed(body_model, init_pose, init_betas)
    X = kp3d[..., :2] - kp3d[..., :2].mean(1, keepdims=True)
    x = keypoints2d - keypoints2d.mean(1, keepdims=True)
    s = (X * x).sum((1, 2)) / np.maximum((X * X).sum((1, 2)), 1e-9)
    t = keypoints2d.mean(1) - s[:, None] * kp3d[..., :2].mean(1)
    init_camera = np.stack(
        [
            s * np.exp(rng.normal(scale=noise.scale_noise, size=T)),
            t[:, 0] + rng.normal(scale=noise.translation_noise * height_px, size=T),
            t[:, 1] + rng.normal(scale=noise.translation_noise * height_px, size=T),
        ],
        -1,
    )
    return init_pose, init_betas, init_camera, flipped


def posed(body_model, pose: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dtype = next(iter(body_model.buffers())).dtype
    p = torch.as_tensor(pose, dtype=dtype)
    b = torch.as_tensor(np.broadcast_to(betas, pose.shape[:-1] + (10,)).copy(), dtype=dtype)
    with torch.no_grad():
        joints, keypoints = body_model.joints_and_keypoints(p, b)
    return joints.double().numpy(), keypoints.double().numpy()


def _nearest_kept(selected: np.ndarray) -> np.ndarray:
    """(T,) for each frame the nearest frame with a selected detection (itself if it has one)."""
    kept = np.flatnonzero(selected >= 0)
    return kept[np.abs(np.arange(len(selected))[:, None] - kept[None, :]).argmin(1)]


def motions_for(split: str) -> tuple[str, ...]:
    """Motion names of a split: "tuning", "heldout" or "all"."""
    if split == "tuning":
        return TUNING_MOTIONS
    if split == "heldout":
        return HELDOUT_MOTIONS
    if split == "all":
        return TUNING_MOTIONS + HELDOUT_MOTIONS
    raise ValueError(f"split={split!r}: use 'tuning', 'heldout' or 'all'.")


def make_track(
    body_model,
    motion: str,
    num_frames: int,
    seed: int,
    detection: DetectionNoise = DetectionNoise(),
    regressor: InitNoise = InitNoise(),
    split: str = "",
    fps: float = FPS,
) -> SyntheticTrack:
    """Generate one track (deterministic in ``seed``), ``num_frames`` frames at ``fps`` Hz.

    The motion is sampled at ``fps`` (the same seed gives the same motion over time at
    every rate); the detector and regressor noise stay per frame.
    """
    rng = np.random.default_rng(seed)
    T = num_frames
    W, _ = IMAGE_SIZE
    height = rng.uniform(150, 280)
    centre = rng.uniform(0.3, 0.7) * W
    pose, betas, camera = _person(rng, motion, T, height, centre, fps)
    joints, keypoints3d = posed(body_model, pose, betas)
    kp2d = camera[:, None, :1] * keypoints3d[..., :2] + camera[:, None, 1:]
    det = _detections(rng, kp2d, height, detection)
    init_pose, init_betas, init_camera, flipped = regressor_init(rng, body_model, pose, betas, kp2d, height, regressor)

    people = [(det, init_pose, init_betas, init_camera)]
    if detection.distractor:
        d_height = height * rng.uniform(0.7, 1.1)
        side = -1.0 if centre > W / 2 else 1.0
        d_centre = centre + side * rng.uniform(0.25, 0.4) * W
        d_motion = BACKGROUND_MOTIONS[rng.integers(len(BACKGROUND_MOTIONS))]
        d_pose, d_betas, d_camera = _person(rng, d_motion, T, d_height, d_centre, fps)
        _, d_kp3d = posed(body_model, d_pose, d_betas)
        d_kp2d = d_camera[:, None, :1] * d_kp3d[..., :2] + d_camera[:, None, 1:]
        d_det = _detections(rng, d_kp2d, d_height, detection)
        people.append((d_det, *regressor_init(rng, body_model, d_pose, d_betas, d_kp2d, d_height, regressor)[:3]))

    P = len(people)
    dropped = rng.random(T) < detection.drop_frame
    dropped[0] = dropped[0] and T == 1  # keep the first frame so the track starts
    candidates = np.zeros((T, P, 17, 3), np.float32)
    candidate_mask = np.zeros((T, P), bool)
    cand_pose = np.zeros((T, P, 72), np.float32)
    cand_betas = np.zeros((T, P, 10), np.float32)
    cand_camera = np.zeros((T, P, 3), np.float32)
    selected = np.full(T, -1, np.int32)
    for t in range(T):
        order = rng.permutation(P)  # candidate order is arbitrary
        slot = 0
        for person in order:
            if person == 0 and dropped[t]:
                continue
            kp, ip, ib, ic = people[person]
            candidates[t, slot] = kp[t]
            cand_pose[t, slot], cand_betas[t, slot], cand_camera[t, slot] = ip[t], ib[t], ic[t]
            candidate_mask[t, slot] = True
            if person == 0:
                selected[t] = slot
            slot += 1
    keypoints = np.zeros((T, 17, 3), np.float32)
    boxes = np.full((T, 4), np.nan, np.float32)
    for t in np.flatnonzero(selected >= 0):
        kp = candidates[t, selected[t]]
        keypoints[t] = kp
        seen = kp[:, 2] > 0
        if seen.any():
            boxes[t] = [kp[seen, 0].min(), kp[seen, 1].min(), kp[seen, 0].max(), kp[seen, 1].max()]
    problem = TrackProblem(
        clip_id=f"synthetic_{motion}_{seed}",
        track_id=0,
        image_size=IMAGE_SIZE,
        fps=float(fps),
        frame_index=np.arange(T, dtype=np.int32),
        frame_time=np.arange(T, dtype=np.float64) / fps,
        selected=selected,
        keypoints=keypoints,
        boxes=boxes,
        candidates=candidates,
        candidate_mask=candidate_mask,
        init_pose=cand_pose,
        init_betas=cand_betas,
        init_camera=cand_camera,
        init_source="hmr",
        meta={"motion": motion, "split": split, "seed": str(seed)},
    )
    # starting point joints: the selected init, nearest kept frame on skipped frames
    nearest = _nearest_kept(selected)
    start_joints, _ = posed(body_model, init_pose[nearest], init_betas[nearest])
    return SyntheticTrack(
        problem=problem, motion=motion, split=split, gt_pose=pose, gt_betas=betas, gt_camera=camera,
        gt_joints=joints, gt_keypoints3d=keypoints3d, init_joints=start_joints, flipped=flipped[nearest],
    )


def make_tracks(
    body_model,
    split: str,
    num_tracks: int,
    num_frames: int,
    seed: int = 0,
    detection: DetectionNoise = DetectionNoise(),
    regressor: InitNoise = InitNoise(),
    fps: float = FPS,
) -> list[SyntheticTrack]:
    """``num_tracks`` tracks cycling through the split's motions (seeds seed, seed+1, ...), at ``fps``."""
    names = motions_for(split)
    tracks = []
    for i in range(num_tracks):
        motion = names[i % len(names)]
        track_split = "tuning" if motion in TUNING_MOTIONS else "heldout"
        tracks.append(make_track(body_model, motion, num_frames, seed * 100003 + i, detection, regressor, track_split,
                                 fps))
    return tracks


def with_keypoint_init(track: SyntheticTrack, body_model) -> SyntheticTrack:
    """``track`` with every candidate's init replaced by the keypoint-only initialiser's.

    What the job does without an HMR checkpoint (``pipeline.perception.init.KeypointInitializer``
    on each detection: the mean pose facing towards or away from the camera, betas 0, a
    camera from the torso), with ``init_source="keypoints"`` so that the bundle adjustment
    applies ``BAConfig.keypoint_init_scale``. ``init_joints`` and ``flipped`` follow the new
    init (flipped: the shoulder-order guess faces the wrong way, > 90 degrees of yaw off).
    """
    import dataclasses

    from pipeline.perception.init import KeypointInitializer

    problem = track.problem
    T, P = problem.candidate_mask.shape
    init = KeypointInitializer(body_model)(problem.candidates.reshape(T * P, 17, 3))
    mask = problem.candidate_mask[..., None]
    pose = np.where(mask, init.pose.reshape(T, P, 72), 0.0).astype(np.float32)
    betas = np.where(mask, init.betas.reshape(T, P, 10), 0.0).astype(np.float32)
    camera = np.where(mask, init.camera.reshape(T, P, 3), 0.0).astype(np.float32)
    replaced = dataclasses.replace(problem, init_pose=pose, init_betas=betas, init_camera=camera,
                                   init_source="keypoints")
    nearest = _nearest_kept(problem.selected)
    chosen = problem.selected[nearest]
    start_pose = pose[nearest, chosen]
    start_joints, _ = posed(body_model, start_pose, betas[nearest, chosen])
    # facing: the root's forward axis (z) against the ground truth's, in the x-z plane
    forward = _matrix(start_pose[:, :3].astype(np.float64))[:, :, 2]
    true_forward = _matrix(track.gt_pose[:, :3])[:, :, 2]
    flipped = (forward[:, [0, 2]] * true_forward[:, [0, 2]]).sum(-1) < 0
    return dataclasses.replace(track, problem=replaced, init_joints=start_joints, flipped=flipped)
