"""Synthetic person tracks that are hard to select and hard to split, with ground truth.

A third track generator, written apart from :mod:`pipeline.synth.tracks` (the tuning
generator) and ``bench.selection``'s own, so that a selection score or an identity-switch
detector tuned on those is tested on data it never saw. No video is rendered: a track is
generated directly as a :class:`~optimize.problem.TrackProblem`.

* Views where reprojection cannot see depth: every track is one of four *scenes*, walking
  towards the camera, walking away from it (the person's scale changes with depth), a
  side view (the far limbs self-occluded: lower confidence, more jitter), or crouching in
  place (squatting, sitting down, bowing) seen from the front or the side.
* Camera: weak perspective with s = f / depth, a 1920 x 1080 frame at 30 fps, people
  100-400 px tall.
* Detector: heavy-tailed (Student-t, 3 degrees of freedom), temporally correlated
  jitter whose correlation is drawn per track, confidences that fall where the error is
  large, missing keypoints, gross outliers, left/right swaps, dropped frames.
* Init: the HMR-like regressor error model of :mod:`pipeline.synth.tracks`, its strength
  drawn per track (x 0.5 to x 2).

Four kinds of track in equal shares (:data:`KINDS`):

* ``depth``: light detector noise, a bystander 1.5-3 body heights away;
* ``gap``: as ``depth``, with one or two occlusion gaps of 0.5-2 s where the person has no
  detection at all (no candidate either);
* ``switch``: the detections jump, at 30-70 % of the track, to a person of the same size
  (height ratio 0.97-1.03) 0.1-0.4 body heights away, who walks with the first one; half of
  the partners do the same motion;
* ``noisy``: heavy detector noise and a look-alike (same size, 0.1-0.4 heights away) next
  to the person all along, *without* a switch: a detector that cuts these is wrong.

Ground truth per frame: which person the track's detection follows (``identity``) and
that person's joints (``gt_joints``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from models.geometry import matrix_to_axis_angle
from models.joint_names import COCO17_FLIP_INDEX, COCO17_INDEX
from optimize.problem import TrackProblem
from pipeline.synth.motions import BACKGROUND_MOTIONS, sample_motion
from pipeline.synth.tracks import OKS_SIGMAS, InitNoise, posed, regressor_init

IMAGE_SIZE = (1920, 1080)
FPS = 30.0
KINDS = ("depth", "gap", "switch", "noisy")
SCENES = ("toward", "away", "side", "crouch")
WALKS = ("walking", "running")
CROUCHES = ("squatting", "sitting_down", "bowing")
HEIGHT_RANGE_PX = (100.0, 400.0)  # log-uniform
LOOKALIKE_GAP_HEIGHTS = (0.1, 0.4)  # centre distance of a look-alike, body heights
GAP_SECONDS = (0.5, 2.0)
_R_X_PI = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class HardNoise:
    """Detector error of a kind of track (pixels scale with the person's height).

    Attributes:
        jitter: keypoint noise scale = jitter * height * OKS sigma (Student-t, 3 dof).
        missing: probability that a keypoint is not reported.
        outlier: probability of a gross keypoint error (15-40 % of the height).
        body_swap, limb_swap: per frame, probability of a full / one-limb left-right swap.
        drop: per frame, probability that the track's detection is missing.
    """

    jitter: float
    missing: float
    outlier: float
    body_swap: float
    limb_swap: float
    drop: float


NOISE = {
    "depth": HardNoise(0.15, 0.03, 0.005, 0.005, 0.01, 0.02),
    "gap": HardNoise(0.15, 0.03, 0.005, 0.005, 0.01, 0.02),
    "switch": HardNoise(0.15, 0.03, 0.005, 0.005, 0.01, 0.02),
    "noisy": HardNoise(0.5, 0.10, 0.04, 0.03, 0.04, 0.08),
}


@dataclass(frozen=True)
class HardTrack:
    """A generated track and its ground truth.

    Attributes:
        problem: the bundle-adjustment input.
        kind: one of :data:`KINDS`; scene: one of :data:`SCENES`.
        height_px: median height of the tracked person in the image, pixels.
        gt_joints: (T, 24, 3) metres, joints of the person the detection follows on each frame.
        identity: (T,) int, that person (0: the track's own, 1: the switch partner).
        switch: frame position of the identity switch, -1 if none.
        lookalike_heights: distance of the look-alike (``switch`` and ``noisy`` tracks), body
            heights; NaN without one.
    """

    problem: TrackProblem
    kind: str
    scene: str
    height_px: float
    gt_joints: np.ndarray
    identity: np.ndarray
    switch: int
    lookalike_heights: float = math.nan


@dataclass(frozen=True)
class _Person:
    pose: np.ndarray  # (T, 72)
    betas: np.ndarray  # (10,)
    camera: np.ndarray  # (T, 3) s px/m, tx, ty px
    joints: np.ndarray  # (T, 24, 3) m
    keypoints2d: np.ndarray  # (T, 17, 2) px
    far: np.ndarray  # (T, 17) bool: keypoints behind the body (self-occluded)
    height_px: float


def _scene_motion(rng, scene: str) -> tuple[str, float]:
    """Motion name and base heading (0: facing the camera) of a scene."""
    if scene == "toward":
        return WALKS[rng.integers(len(WALKS))], rng.normal(scale=0.15)
    if scene == "away":
        return WALKS[rng.integers(len(WALKS))], math.pi + rng.normal(scale=0.15)
    if scene == "side":
        motion = (WALKS + CROUCHES)[rng.integers(len(WALKS) + len(CROUCHES))]
        return motion, rng.choice([-1.0, 1.0]) * math.pi / 2 + rng.normal(scale=0.15)
    return CROUCHES[rng.integers(len(CROUCHES))], rng.choice([0.0, math.pi / 2, -math.pi / 2]) + rng.normal(scale=0.2)


def _person(rng, body_model, motion: str, heading0: float, T: int, height_px: float, centre: np.ndarray,
            depth_m: float, beside: tuple[_Person, float, float] | None = None) -> _Person:
    """One person seen by a weak-perspective camera whose scale follows the depth.

    ``beside = (other, offset, size)``: the person walks with ``other``, ``offset`` of
    other's heights to the side, ``size`` x as tall, whatever their own motion's path.
    """
    sample = sample_motion(motion, np.arange(T) / FPS, rng)
    heading = sample.heading + heading0
    orient = _R_X_PI @ np.stack([_rot_y(h) for h in heading])
    pose = np.zeros((T, 72))
    pose[:, :3] = matrix_to_axis_angle(torch.as_tensor(orient)).numpy()
    pose[:, 3:] = sample.body_pose
    betas = np.clip(rng.normal(scale=1.0, size=10), -2.5, 2.5)
    # facing the camera at heading 0: walking forward brings the person closer
    depth = np.maximum(depth_m - np.cumsum(sample.speed * np.cos(heading)) / FPS, 0.5 * depth_m)
    s = height_px / 1.7 * depth_m / depth
    lateral = np.cumsum(sample.speed * np.sin(heading)) / FPS * (height_px / 1.7)
    W, H = IMAGE_SIZE
    lo, span = 0.1 * W, 0.8 * W
    tx = centre[0] + lateral + rng.normal(scale=1.0, size=T)
    tx = lo + span - np.abs((tx - lo) % (2 * span) - span)
    ty = centre[1] - sample.lift * s + rng.normal(scale=1.0, size=T)
    camera = np.stack([s, tx, ty], -1)
    if beside is not None:
        other, offset, size = beside
        camera = other.camera * np.array([size, 1.0, 1.0]) + np.stack(
            [np.zeros(T), offset * other.camera[:, 0] * 1.7, rng.normal(scale=0.01) * other.camera[:, 0] * 1.7], -1)
    joints, kp3d = posed(body_model, pose, betas)
    kp2d = camera[:, None, :1] * kp3d[..., :2] + camera[:, None, 1:]
    far = kp3d[..., 2] > kp3d[:, [11, 12], 2].mean(1, keepdims=True) + 0.08  # the camera looks along +z
    return _Person(pose, betas, camera, joints, kp2d, far, float(np.median(camera[:, 0]) * 1.7))


def _rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _detect(rng, person: _Person, noise: HardNoise) -> np.ndarray:
    """(T, 17, 3) detections (pixels + confidence) of one person."""
    T = person.keypoints2d.shape[0]
    rho = rng.uniform(0.0, 0.8)
    innovation = rng.standard_t(3, size=(T, 17, 2)) / math.sqrt(3.0)  # unit variance
    jitter = np.empty_like(innovation)
    jitter[0] = innovation[0]
    for t in range(1, T):
        jitter[t] = rho * jitter[t - 1] + math.sqrt(1 - rho * rho) * innovation[t]
    sigma = noise.jitter * person.height_px * OKS_SIGMAS
    scale = np.where(person.far, 2.0, 1.0)  # self-occluded keypoints are guessed
    kp = person.keypoints2d + jitter * sigma[None, :, None] * scale[..., None]
    error = np.linalg.norm(jitter, axis=-1) * scale
    conf = np.clip(rng.uniform(0.75, 1.0, (T, 17)) - 0.12 * error, 0.05, 1.0)
    conf = np.where(person.far, conf * rng.uniform(0.3, 0.7, (T, 17)), conf)
    outlier = rng.random((T, 17)) < noise.outlier
    direction = rng.normal(size=(T, 17, 2))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    kp = np.where(outlier[..., None], kp + direction * rng.uniform(0.15, 0.4, (T, 17, 1)) * person.height_px, kp)
    swap_sides(rng, kp, noise.body_swap, noise.limb_swap)
    missing = rng.random((T, 17)) < noise.missing
    conf[missing] = 0.0
    kp[missing] = 0.0
    return np.concatenate([kp, conf[..., None]], -1)


def swap_sides(rng, keypoints: np.ndarray, body_swap: float, limb_swap: float) -> None:
    """Left/right detector confusions, in place on ``keypoints`` (T, 17, >= 2): per frame, a
    full-body swap with probability ``body_swap``, one limb's pair (elbows, wrists, knees or
    ankles) with probability ``limb_swap``."""
    T = keypoints.shape[0]
    flip = np.array(COCO17_FLIP_INDEX)
    swap = rng.random(T) < body_swap
    keypoints[swap] = keypoints[swap][:, flip]
    for t in np.flatnonzero(rng.random(T) < limb_swap):
        limb = ("elbow", "wrist", "knee", "ankle")[rng.integers(4)]
        a, b = COCO17_INDEX[f"left_{limb}"], COCO17_INDEX[f"right_{limb}"]
        keypoints[t, [a, b]] = keypoints[t, [b, a]]


def _gaps(rng, T: int) -> np.ndarray:
    """(T,) bool: frames inside one or two occlusion gaps of 0.5-2 s (never the first or last 5)."""
    hidden = np.zeros(T, bool)
    for _ in range(1 + int(rng.random() < 0.5 and T >= 120)):
        length = int(round(rng.uniform(*GAP_SECONDS) * FPS))
        length = min(length, max(1, T // 3))
        start = int(rng.integers(5, max(6, T - 5 - length)))
        hidden[start : start + length] = True
    hidden[:5] = hidden[-5:] = False
    return hidden


def _init_noise(rng) -> InitNoise:
    strength = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    base = InitNoise()
    return InitNoise(
        joint_bias=base.joint_bias * strength, joint_noise=base.joint_noise * strength,
        orient_noise=base.orient_noise * strength, flip_on=base.flip_on * strength, flip_off=base.flip_off,
        betas_bias=base.betas_bias * strength, betas_noise=base.betas_noise, scale_noise=base.scale_noise,
        translation_noise=base.translation_noise,
    )


def assemble_candidates(rng, detections: list[np.ndarray], inits: list[tuple], identity: np.ndarray,
                        dropped: np.ndarray) -> tuple[np.ndarray, ...]:
    """A track's candidates from every person's detections, in a random order per frame.

    Args:
        rng: the track's random generator.
        detections: per person, (T, 17, 3) pixels + confidence.
        inits: per person, (init pose (T, 72), betas (T, 10), camera (T, 3)).
        identity: (T,) the person the track follows on each frame.
        dropped: (T,) bool, frames where the followed person has no candidate.

    Returns:
        candidates (T, P, 17, 3), candidate_mask (T, P), init_pose (T, P, 72), init_betas
        (T, P, 10), init_camera (T, P, 3), selected (T,) (-1 where dropped), keypoints
        (T, 17, 3) the selected detection, boxes (T, 4) around its seen keypoints (NaN where
        dropped).
    """
    T, P = len(identity), len(detections)
    candidates = np.zeros((T, P, 17, 3), np.float32)
    mask = np.zeros((T, P), bool)
    init_pose = np.zeros((T, P, 72), np.float32)
    init_betas = np.zeros((T, P, 10), np.float32)
    init_camera = np.zeros((T, P, 3), np.float32)
    selected = np.full(T, -1, np.int32)
    for t in range(T):
        slot = 0
        for person in rng.permutation(P):
            own = person == identity[t]
            if own and dropped[t]:
                continue  # occluded or missed: no candidate of this person on the frame
            candidates[t, slot] = detections[person][t]
            init_pose[t, slot], init_betas[t, slot], init_camera[t, slot] = (a[t] for a in inits[person])
            mask[t, slot] = True
            if own:
                selected[t] = slot
            slot += 1
    keypoints = np.zeros((T, 17, 3), np.float32)
    boxes = np.full((T, 4), np.nan, np.float32)
    for t in np.flatnonzero(selected >= 0):
        keypoints[t] = candidates[t, selected[t]]
        seen = keypoints[t, :, 2] > 0
        if seen.any():
            boxes[t] = [*keypoints[t, seen, :2].min(0), *keypoints[t, seen, :2].max(0)]
    return candidates, mask, init_pose, init_betas, init_camera, selected, keypoints, boxes


def make_hard_track(body_model, index: int, num_frames: int, seed: int) -> HardTrack:
    """One track (deterministic in ``seed``); its kind is ``KINDS[index % 4]`` and its scene
    ``SCENES[(index // 4) % 4]``, so every kind meets every scene."""
    rng = np.random.default_rng(seed)
    T = int(num_frames)
    kind = KINDS[index % len(KINDS)]
    scene = SCENES[(index // len(KINDS)) % len(SCENES)]
    noise = NOISE[kind]
    W, H = IMAGE_SIZE
    height = float(np.exp(rng.uniform(*np.log(HEIGHT_RANGE_PX))))
    centre = np.array([rng.uniform(0.3, 0.7) * W, rng.uniform(0.45, 0.6) * H])
    depth = rng.uniform(8.0, 15.0)
    motion, heading = _scene_motion(rng, scene)
    people = [_person(rng, body_model, motion, heading, T, height, centre, depth)]
    lookalike = math.nan
    if kind in ("switch", "noisy"):  # a look-alike walking with the person
        size = rng.uniform(0.97, 1.03)
        lookalike = rng.uniform(*LOOKALIKE_GAP_HEIGHTS)
        m2 = motion if rng.random() < 0.5 else _scene_motion(rng, scene)[0]
        beside = (people[0], rng.choice([-1.0, 1.0]) * lookalike, size)
        people.append(_person(rng, body_model, m2, heading + rng.normal(scale=0.1), T, height * size, centre, depth,
                              beside))
    else:
        h2 = height * rng.uniform(0.7, 1.3)
        c2 = centre + np.array([rng.choice([-1.0, 1.0]) * rng.uniform(1.5, 3.0) * height, 0.0])
        m2 = BACKGROUND_MOTIONS[rng.integers(len(BACKGROUND_MOTIONS))]
        people.append(_person(rng, body_model, m2, rng.uniform(-1.0, 1.0), T, h2, c2, depth))
    dets = [_detect(rng, p, noise) for p in people]
    inits = [regressor_init(rng, body_model, p.pose, p.betas, p.keypoints2d, p.height_px, _init_noise(rng))[:3]
             for p in people]
    switch = int(rng.uniform(0.3, 0.7) * T) if kind == "switch" else -1
    identity = np.zeros(T, np.int64)
    if switch >= 0:
        identity[switch:] = 1
    dropped = rng.random(T) < noise.drop
    hidden = _gaps(rng, T) if kind == "gap" else np.zeros(T, bool)
    dropped |= hidden
    dropped[0] = dropped[-1] = False
    if switch >= 0:
        dropped[switch] = False
    candidates, mask, init_pose, init_betas, init_camera, selected, keypoints, boxes = assemble_candidates(
        rng, dets, inits, identity, dropped)
    gt = np.where((identity == 0)[:, None, None], people[0].joints, people[-1].joints if switch >= 0 else people[0].joints)
    problem = TrackProblem(
        clip_id=f"hard_{seed}", track_id=0, image_size=IMAGE_SIZE, fps=FPS,
        frame_index=np.arange(T, dtype=np.int32), frame_time=np.arange(T) / FPS, selected=selected,
        keypoints=keypoints, boxes=boxes, candidates=candidates, candidate_mask=mask, init_pose=init_pose,
        init_betas=init_betas, init_camera=init_camera, init_source="hmr",
        meta={"kind": kind, "scene": scene, "motion": motion, "seed": str(seed)},
    )
    return HardTrack(problem, kind, scene, height, gt, identity, switch, float(lookalike))


def make_hard_tracks(body_model, num_tracks: int, frames: tuple[int, int], seed: int = 0) -> list[HardTrack]:
    """``num_tracks`` tracks of ``frames[0]``-``frames[1]`` frames, kinds and scenes in turn."""
    rng = np.random.default_rng(seed + 104_729)
    lengths = rng.integers(frames[0], frames[1] + 1, num_tracks)
    return [make_hard_track(body_model, i, int(lengths[i]), seed * 1_000_033 + 700_001 + i) for i in range(num_tracks)]
