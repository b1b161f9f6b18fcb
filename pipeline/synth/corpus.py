"""The synthetic Kinetics-style corpus generator behind ``vid2mesh synth``.

A clip is 1-4 people (7-9 for a crowded clip) rendered from a body model in SMPL's format
(the project's stand-in by default), performing motions of :mod:`pipeline.synth.motions`
over a procedural background, filmed by a camera with zoom, shake and roll, encoded as
H.264 with ffmpeg. Every person is drawn with the *weak-perspective camera of its root
depth*, ``x_px = s * X + tx`` with ``s = focal / depth``, so the ground-truth camera,
pose and shape reproduce the rendered pixels exactly; depth between people is real, so
they occlude one another.

Layout written under ``out``::

    corpus.json                       seed, versions, config, motion split, per-clip info
    <split>.csv                       label,youtube_id,time_start,time_end,split
    <split>/<label>/<stem>.mp4        the clip (stem = <youtube_id>_<start:06d>_<end:06d>)
    <split>/<label>/<stem>.gt.npz     ground truth (pipeline.synth.truth.ClipTruth)
    <split>/<label>/<stem>.coco.json  simulated detector output (COCO keypoint JSON)
    <split>/<label>/<stem>.init.npz   simulated per-detection regressor estimates

Every clip depends only on (seed, clip kind, clip index): the same seed gives the same
arrays and JSON whatever the number of workers.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.spatial.transform import Rotation

from models.joint_names import COCO17_FACE_VERTEX_IDS, SMPL24_PARENTS
from pipeline.records import clip_id_for
from pipeline.synth import motions as motion_lib
from pipeline.synth.noise import DetectorNoise, RegressorNoise, simulate_detections, simulate_regressor
from pipeline.synth.render import Mesh, render
from pipeline.synth.scene import BackgroundPlate, box_mesh, sample_backdrop, sample_camera
from pipeline.synth.truth import COCO_SUFFIX, GT_SUFFIX, INIT_SUFFIX, OCCLUDED, OUTSIDE, VISIBLE, ClipTruth

__all__ = [
    "CORPUS_FORMAT_VERSION",
    "ClipPlan",
    "SynthConfig",
    "generate_clip",
    "generate_corpus",
    "plan_corpus",
]

logger = logging.getLogger(__name__)

CORPUS_FORMAT_VERSION = 1
SPLIT_CYCLE = ("train", "train", "train", "val", "test")
_KIND_CODES = {"normal": 0, "crowded": 1, "zero_byte": 2, "garbage": 3}
_YOUTUBE_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"))
NOMINAL_HEIGHT = 1.7  # metres, only to size people on screen
VISIBILITY_MARGIN = 0.12  # metres a keypoint may lie behind the visible surface
CONTACT_RADIUS = 0.32  # metres, contact-shadow radius


@dataclass(frozen=True)
class SynthConfig:
    """How clips look.

    Attributes:
        width, height: frame size, pixels (even numbers, for yuv420p).
        fps: frame rate, Hz.
        duration: clip length, seconds.
        max_people: people per normal clip are drawn from 1..max_people.
        crowded_people: (min, max) people of a crowded clip.
        supersample: anti-aliasing factor of the renderer.
        crf, preset: x264 quality and speed.
        detector, regressor: noise models of the simulated perception.
        render_people: False draws the same clips without people or props (background
            plates, e.g. to check detectors for false positives or to find the people's
            pixels by difference); the ground truth is unchanged.
    """

    width: int = 320
    height: int = 240
    fps: float = 25.0
    duration: float = 10.0
    max_people: int = 4
    crowded_people: tuple[int, int] = (7, 9)
    supersample: int = 2
    crf: int = 20
    preset: str = "veryfast"
    detector: DetectorNoise = field(default_factory=DetectorNoise)
    regressor: RegressorNoise = field(default_factory=RegressorNoise)
    render_people: bool = True

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise ValueError(f"frame size {self.width}x{self.height}: use even sizes of at least 16 pixels.")
        if not (self.fps > 0 and self.duration > 0):
            raise ValueError(f"fps {self.fps} and duration {self.duration} must be positive.")
        if self.duration < 1.0:
            raise ValueError(f"duration {self.duration} s: Kinetics-style names need clips of at least 1 s.")
        if not 1 <= self.supersample <= 4:
            raise ValueError(f"supersample {self.supersample}: use 1 (fast) to 4 samples per pixel and axis.")
        if not 1 <= self.max_people <= 4:
            raise ValueError(f"max_people {self.max_people}: a normal clip has 1 to 4 people (use crowded clips for more).")

    @property
    def num_frames(self) -> int:
        return max(int(round(self.duration * self.fps)), 2)

    @classmethod
    def quick(cls) -> "SynthConfig":
        """Small clips for tests: 160x120, 10 fps, 1.2 s (12 frames)."""
        return cls(width=160, height=120, fps=10.0, duration=1.2, supersample=2)


@dataclass(frozen=True)
class ClipPlan:
    """What one clip will be, decided before rendering.

    Attributes:
        index: position within its kind.
        kind: "normal", "crowded", "zero_byte" or "garbage".
        youtube_id, time_start, time_end: the Kinetics-style identity.
        label: motion label (directory name).
        split: "train", "val" or "test".
        num_people: people in the clip (0 for corrupt files).
        entropy: seed material of the clip.
    """

    index: int
    kind: str
    youtube_id: str
    time_start: int
    time_end: int
    label: str
    split: str
    num_people: int
    entropy: tuple[int, ...]

    @property
    def clip_id(self) -> str:
        return clip_id_for(self.youtube_id, self.time_start, self.time_end)

    def relative_path(self) -> str:
        return f"{self.split}/{self.label}/{self.clip_id}.mp4"


def plan_corpus(num_clips: int, seed: int, config: SynthConfig, crowded: int = 0, corrupt: int = 0) -> list[ClipPlan]:
    """Plan every clip of a corpus (labels cycle through the motion library).

    Args:
        num_clips: normal clips (1-``max_people`` people).
        seed: corpus seed.
        config: clip settings.
        crowded: extra clips with more than 6 people.
        corrupt: extra unreadable videos (alternately zero-byte and garbage bytes).
    """
    if num_clips < 0 or crowded < 0 or corrupt < 0:
        raise ValueError("clip counts must be >= 0.")
    label_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(99,)))
    labels = list(label_rng.permutation(motion_lib.LABEL_MOTIONS))
    seconds = int(round(config.duration))
    plans: list[ClipPlan] = []
    used: set[str] = set()
    kinds = [("normal", num_clips), ("crowded", crowded), ("corrupt", corrupt)]
    for kind, count in kinds:
        for i in range(count):
            real_kind = kind if kind != "corrupt" else ("zero_byte" if i % 2 == 0 else "garbage")
            entropy = (seed, _KIND_CODES[real_kind], i)
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_KIND_CODES[real_kind], i)))
            youtube_id = "".join(rng.choice(_YOUTUBE_ALPHABET, size=11))
            while youtube_id in used:
                youtube_id = "".join(rng.choice(_YOUTUBE_ALPHABET, size=11))
            used.add(youtube_id)
            start = int(rng.integers(0, 290))
            if kind == "normal":
                label = str(labels[i % len(labels)])
                people = int(rng.choice(np.arange(1, config.max_people + 1), p=_people_weights(config.max_people)))
                split = SPLIT_CYCLE[i % len(SPLIT_CYCLE)]
            elif kind == "crowded":
                label = str(rng.choice(["dancing", "waving", "jumping_jacks"]))
                people = int(rng.integers(config.crowded_people[0], config.crowded_people[1] + 1))
                split = "train"
            else:
                label = str(rng.choice(motion_lib.LABEL_MOTIONS))
                people = 0
                split = "train"
            plans.append(ClipPlan(i, real_kind, youtube_id, start, start + seconds, label, split, people, entropy))
    return plans


def _people_weights(max_people: int) -> np.ndarray:
    w = np.array([0.3, 0.3, 0.25, 0.15][:max_people])
    return w / w.sum()


# --------------------------------------------------------------------------------------
# Body model helpers (one instance per worker process)


class _Body:
    """The body model plus what the renderer needs from it (segmentation, normals)."""

    def __init__(self, model_path: str):
        import torch

        from models.body_model import BodyModel

        self.path = model_path
        self.model = BodyModel.from_file(model_path)
        self.torch = torch
        self.faces = np.asarray(self.model.faces, dtype=np.int64)
        rest_v, rest_j, _ = self.evaluate(np.zeros((1, 72)), np.zeros((1, 10)), with_vertices=True)
        rows = self.faces.reshape(-1)
        cols = np.repeat(np.arange(self.faces.shape[0]), 3)
        self.face_to_vertex = sparse.csr_matrix(
            (np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(rest_v.shape[1], self.faces.shape[0])
        )
        self.rest_vertices = rest_v[0]
        self.rest_joints = rest_j[0]
        # Outward normals need counter-clockwise faces; fix the sign once for this mesh.
        a, b, c = (self.rest_vertices[self.faces[:, k]] for k in range(3))
        self.winding = 1.0 if np.einsum("ij,ij->i", a - a.mean(0), np.cross(b - a.mean(0), c - a.mean(0))).sum() >= 0 else -1.0
        self.regions = _body_regions(self.rest_vertices, self.rest_joints)

    def evaluate(self, pose: np.ndarray, betas: np.ndarray, with_vertices: bool) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """(vertices (N, V, 3) or None, joints (N, 24, 3), keypoints (N, 17, 3)), metres.

        Runs on one thread: the summation order of a multi-threaded matmul depends on the
        thread count, and the corpus must be bit-identical whatever process renders it."""
        torch = self.torch
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                p = torch.tensor(np.asarray(pose, dtype=np.float32))
                b = torch.tensor(np.asarray(betas, dtype=np.float32))
                joints, keypoints = self.model.joints_and_keypoints(p, b)
                verts = self.model.vertices(p, b).double().numpy() if with_vertices else None
        finally:
            torch.set_num_threads(threads)
        return verts, joints.double().numpy(), keypoints.double().numpy()

    def vertex_normals(self, vertices: np.ndarray) -> np.ndarray:
        """(T, V, 3) float32 unit outward normals of (T, V, 3) vertices (isotropic frame)."""
        f = self.faces
        # Faces first: (F, T, 3) so that the sparse face -> vertex sum needs no transpose.
        v = np.ascontiguousarray(vertices.transpose(1, 0, 2), dtype=np.float32)
        a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
        e1, e2 = b - a, c - a
        fn = np.empty_like(e1)
        fn[..., 0] = e1[..., 1] * e2[..., 2] - e1[..., 2] * e2[..., 1]
        fn[..., 1] = e1[..., 2] * e2[..., 0] - e1[..., 0] * e2[..., 2]
        fn[..., 2] = e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]
        T = vertices.shape[0]
        vn = (self.face_to_vertex @ fn.reshape(f.shape[0], T * 3)).reshape(-1, T, 3).transpose(1, 0, 2)
        norm = np.sqrt((vn * vn).sum(axis=-1, keepdims=True))
        return (vn * (self.winding / np.maximum(norm, 1e-12))).astype(np.float32)


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


_REGION_OF_CHILD = {
    1: "hips", 2: "hips", 3: "torso", 4: "thigh", 5: "thigh", 6: "torso", 7: "shank", 8: "shank",
    9: "torso", 10: "foot", 11: "foot", 12: "neck", 13: "torso", 14: "torso", 15: "head",
    16: "torso", 17: "torso", 18: "upper_arm", 19: "upper_arm", 20: "forearm", 21: "forearm",
    22: "hand", 23: "hand",
}  # fmt: skip


def _body_regions(vertices: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """(V,) region name of every rest-pose vertex: nearest bone, plus hair on the head.

    The rest pose is SMPL's (y up, facing +z)."""
    dist = np.stack(
        [_segment_distance(vertices, joints[SMPL24_PARENTS[j]], joints[j]) for j in range(1, 24)], axis=1
    )
    child = np.argmin(dist, axis=1) + 1
    regions = np.array([_REGION_OF_CHILD[c] for c in child], dtype=object)
    # Bones end at the head joint: the skull and face lie beyond it.
    regions[(vertices[:, 1] > joints[15, 1] - 0.02) & (np.abs(vertices[:, 0] - joints[15, 0]) < 0.15)] = "head"
    neck_low = (regions == "neck") & (vertices[:, 1] < joints[12, 1] - 0.03)
    regions[neck_low] = "torso"
    eyes_y = vertices[list(COCO17_FACE_VERTEX_IDS[1:3]), 1].mean()
    head = regions == "head"
    behind = vertices[:, 2] < joints[15, 2] - 0.02
    hair = head & ((vertices[:, 1] > eyes_y + 0.035) | (behind & (vertices[:, 1] > joints[12, 1] + 0.06)))
    regions[hair] = "hair"
    return regions.astype(str)


_SKIN_TONES = np.array([[0.96, 0.8, 0.69], [0.87, 0.68, 0.55], [0.76, 0.56, 0.42], [0.56, 0.39, 0.28], [0.4, 0.27, 0.19]])
_HAIR = np.array([[0.08, 0.06, 0.05], [0.3, 0.2, 0.12], [0.75, 0.6, 0.35], [0.6, 0.6, 0.6], [0.5, 0.22, 0.1]])
_TROUSERS = np.array([[0.18, 0.25, 0.45], [0.1, 0.1, 0.12], [0.65, 0.58, 0.42], [0.4, 0.4, 0.42], [0.3, 0.35, 0.25]])
_SHOES = np.array([[0.08, 0.08, 0.08], [0.92, 0.92, 0.9], [0.35, 0.22, 0.12], [0.7, 0.1, 0.1]])


def _outfit(rng: np.random.Generator, regions: np.ndarray, rest_vertices: np.ndarray) -> tuple[np.ndarray, dict]:
    """(V, 3) per-vertex colours and a description of the outfit."""
    import colorsys

    skin = np.clip(_SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.uniform(-0.03, 0.03, 3), 0, 1)
    hair = _HAIR[rng.integers(len(_HAIR))]
    top = np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.25, 0.9), rng.uniform(0.35, 0.95)))
    bottom = _TROUSERS[rng.integers(len(_TROUSERS))] if rng.random() < 0.8 else np.array(
        colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.8))
    )
    shoes = _SHOES[rng.integers(len(_SHOES))]
    long_sleeves = bool(rng.random() < 0.5)
    shorts = bool(rng.random() < 0.3)
    colour_of = {
        "torso": top, "upper_arm": top, "forearm": top if long_sleeves else skin, "hand": skin,
        "hips": bottom, "thigh": bottom, "shank": skin if shorts else bottom, "foot": shoes,
        "head": skin, "neck": skin, "hair": hair,
    }  # fmt: skip
    colours = np.stack([colour_of[r] for r in regions]).astype(np.float64)
    # Subtle large-scale variation (folds, dirt) so flat colours do not look plastic.
    wave = np.sin(rest_vertices @ rng.normal(scale=9.0, size=3) + rng.uniform(0, 6.3))
    colours *= (1 + 0.05 * wave)[:, None]
    return np.clip(colours, 0, 1), {"long_sleeves": long_sleeves, "shorts": shorts, "top": [round(float(v), 3) for v in top]}


# --------------------------------------------------------------------------------------
# Scene layout


def _upright(heading: np.ndarray) -> np.ndarray:
    """(T, 3, 3) global orientation R_x(pi) R_y(heading): upright, y down, heading 0 = facing the camera."""
    return motion_lib.rot_x(np.pi) @ motion_lib.rot_y(np.asarray(heading, dtype=np.float64))


def _forward(heading: np.ndarray) -> np.ndarray:
    """(T, 2) walking direction (x, z) in the camera frame."""
    return np.stack([np.sin(heading), -np.cos(heading)], axis=-1)


@dataclass
class _Person:
    motion: motion_lib.MotionSample
    betas: np.ndarray
    heading0: float
    start_xz: np.ndarray
    colours: np.ndarray
    outfit: dict


def _walk_path(motion: motion_lib.MotionSample, heading0: float, start: np.ndarray, dt: float) -> np.ndarray:
    heading = heading0 + motion.heading
    step = motion.speed[:, None] * dt * _forward(heading)
    return start + np.concatenate([np.zeros((1, 2)), np.cumsum(step[:-1], axis=0)])


def _sample_people(rng: np.random.Generator, plan: ClipPlan, config: SynthConfig, times: np.ndarray, focal0: float) -> list[_Person]:
    W, H = config.width, config.height
    dt = 1.0 / config.fps
    crowded = plan.kind == "crowded"
    frac = rng.uniform(0.25, 0.42) if crowded else rng.uniform(0.45, 0.78)
    z_main = focal0 * NOMINAL_HEIGHT / (frac * H)
    people: list[_Person] = []
    placed: list[tuple[float, float]] = []
    for i in range(plan.num_people):
        if i == 0 or (plan.label != "sitting_down" and rng.random() < (0.6 if crowded else 0.35)):
            name = plan.label
        elif crowded:
            name = "standing"  # a crowd stays in view: more than 6 people at once
        else:
            name = str(rng.choice(["standing", "walking", "walking"]))
        motion = motion_lib.sample_motion(name, times, rng)
        depth = z_main if i == 0 else z_main * rng.uniform(0.7, 1.7 if not crowded else 1.5)
        if i == 0 and name == "running":
            depth *= 1.4  # a runner needs room to pace
        depth = max(depth, 1.8)
        half_width = 0.5 * W * depth / focal0
        moving = float(np.abs(motion.speed).max()) > 0
        if moving and i == 0 and not crowded:
            # The main actor paces back and forth so that the clip keeps them in view.
            motion = dataclasses.replace(motion, heading=_pacing_heading(rng, times, float(motion.speed.mean()), half_width))
            heading0, start = _place_pacer(rng, motion, depth, half_width, dt)
        elif moving:
            heading0, start = _place_walker(rng, motion, depth, half_width, times, dt, central=False)
        else:
            heading0 = rng.uniform(-50, 50) * np.pi / 180 if rng.random() > 0.15 else np.pi + rng.uniform(-40, 40) * np.pi / 180
            spread = 0.35 if i == 0 else 0.8
            for _attempt in range(30):
                x = rng.uniform(-spread, spread) * half_width
                if all((x - px) ** 2 + (depth - pz) ** 2 > 0.75**2 for px, pz in placed):
                    break
                depth *= rng.uniform(0.9, 1.15)
            placed.append((x, depth))
            start = np.array([x, depth])
        scale = np.array([1.0, 1.0, 0.8, 0.8, 0.6, 0.6, 0.5, 0.5, 0.5, 0.5])
        betas = np.clip(rng.normal(size=10) * scale, -2.5, 2.5)
        people.append(_Person(motion, betas, float(heading0), start, np.zeros(0), {}))
    return people


def _pacing_heading(rng: np.random.Generator, times: np.ndarray, speed: float, half_width: float) -> np.ndarray:
    """(T,) heading offsets of someone walking back and forth: a U-turn each crossing."""
    turn = rng.uniform(0.8, 1.3)
    # A U-turn of duration `turn` swings about speed * turn / pi beyond the straight leg.
    span = 2 * rng.uniform(0.5, 0.7) * half_width - 2 * speed * turn / np.pi
    leg = max(span, 0.3 * half_width) / max(speed, 0.1)  # seconds per crossing
    heading = np.zeros_like(times)
    direction = rng.choice([-1.0, 1.0])
    start = times[0] + rng.uniform(0.3, 0.7) * leg
    while start < times[-1]:
        x = np.clip((times - start) / turn, 0.0, 1.0)
        heading += direction * np.pi * x * x * (3 - 2 * x)
        start += leg + turn
    return heading


def _place_pacer(rng, motion, depth, half_width, dt):
    """Heading and start of a pacing walker whose path is centred in view."""
    for attempt in range(20):
        heading0 = rng.choice([-1.0, 1.0]) * np.pi / 2 + rng.uniform(-12, 12) * np.pi / 180 * (attempt < 15)
        rel = _walk_path(motion, heading0, np.zeros(2), dt)
        centre = np.array([rng.uniform(-0.2, 0.2) * half_width, depth])
        start = centre - 0.5 * (rel.min(axis=0) + rel.max(axis=0))
        z = (start + rel)[:, 1]
        if z.min() > 1.6:
            return heading0, start
    return heading0, start


def _place_walker(rng, motion, depth, half_width, times, dt, central):
    """Heading and start of a walker who crosses the view near mid-clip, staying at a sane depth."""
    centre_time = rng.uniform(0.35, 0.65) if central else rng.uniform(0.2, 0.8)
    t_c = times[0] + centre_time * (times[-1] - times[0])
    k = int(np.argmin(np.abs(times - t_c)))
    for attempt in range(40):
        side = rng.choice([-1.0, 1.0])
        spread = 30.0 if attempt < 30 else 0.0
        heading0 = side * np.pi / 2 + rng.uniform(-spread, spread) * np.pi / 180
        rel = _walk_path(motion, heading0, np.zeros(2), dt)
        target = np.array([rng.uniform(-0.4, 0.4) * half_width, depth])
        start = target - rel[k]
        z = (start + rel)[:, 1]
        if z.min() > 1.6 and z.max() < 3.0 * depth + 2.0:
            return heading0, start
    return heading0, start


# --------------------------------------------------------------------------------------
# Rendering one clip


def _ffmpeg_writer(path: Path, config: SynthConfig) -> subprocess.Popen:
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{config.width}x{config.height}", "-r", f"{config.fps:g}",
        "-i", "-", "-an", "-c:v", "libx264", "-preset", config.preset, "-crf", str(config.crf),
        "-pix_fmt", "yuv420p", "-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
        "-movflags", "+faststart", str(path),
    ]  # fmt: skip
    try:
        return subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError as exc:
        raise FileNotFoundError("ffmpeg is not on PATH; install it (apt-get install ffmpeg) to generate the corpus") from exc


@dataclass
class _Placed:
    """One person's geometry over the clip (camera frame after roll)."""

    vertices: np.ndarray  # (T, V, 3) camera-frame metres (x right, y down, z depth)
    normals: np.ndarray  # (T, V, 3)
    scale: np.ndarray  # (T,) px per metre
    offset: np.ndarray  # (T, 2) px: pixel = scale * (x, y) + offset
    root_xz: np.ndarray  # (T, 2) ground point under the root (upright frame), metres
    pose: np.ndarray  # (T, 72)
    joints3d: np.ndarray  # (T, 24, 3) model output
    keypoints3d: np.ndarray  # (T, 17, 3)
    camera: np.ndarray  # (T, 3)
    kp_depth: np.ndarray  # (T, 17) camera depth of each keypoint, metres
    props: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # world boxes (vertices, faces, normals)


def _place_person(body: _Body, person: _Person, camera, times: np.ndarray, dt: float) -> _Placed:
    motion = person.motion
    T = times.shape[0]
    heading = person.heading0 + motion.heading
    r_up = _upright(heading)
    pose_up = np.concatenate([Rotation.from_matrix(r_up).as_rotvec(), motion.body_pose], axis=1)
    betas = np.broadcast_to(person.betas, (T, 10))
    extra = None
    if motion.prop_body_pose is not None:
        # The fully seated pose, facing the mean heading: where the stool goes.
        extra_orient = Rotation.from_matrix(_upright(np.array([heading.mean()]))).as_rotvec()
        extra = np.concatenate([extra_orient, motion.prop_body_pose[None]], axis=1)
        pose_up = np.concatenate([pose_up, extra])
        betas = np.concatenate([betas, person.betas[None]])
    verts, joints, _ = body.evaluate(pose_up, betas, with_vertices=True)
    root = joints[:, 0]  # the pelvis: rotations are about it
    rel = verts - root[:, None]
    ankles_rel = joints[:, [7, 8]] - root[:, None]
    lowest = rel[..., 1].max(axis=1)  # y is down: the lowest point has the largest y
    lift = np.concatenate([motion.lift, [0.0]]) if extra is not None else motion.lift
    y = camera.height - lift - lowest
    if motion.pin_feet:
        # Keep the supporting foot where it is: weight the ankles by how low they are.
        low = ankles_rel[..., 1]
        w = np.exp((low - low.max(axis=1, keepdims=True)) / 0.03)
        w /= w.sum(axis=1, keepdims=True)
        support = (ankles_rel[..., [0, 2]] * w[..., None]).sum(axis=1)
        xz = person.start_xz + support[0] - support
    else:
        xz = _walk_path(motion, person.heading0, person.start_xz, dt)
        if extra is not None:
            xz = np.concatenate([xz, xz[-1:]])
    pos_up = np.stack([xz[:, 0], y, xz[:, 1]], axis=1)
    props = []
    if extra is not None:
        seat_top = pos_up[-1, 1] + 0.1  # the pelvis joint sits about 10 cm above the seat
        seat_height = camera.height - seat_top
        facing = _forward(np.array([heading.mean()]))[0]
        centre = pos_up[-1] - 0.06 * np.array([facing[0], 0.0, facing[1]])
        centre[1] = camera.height - seat_height / 2
        props.append(box_mesh(centre, np.array([0.42, seat_height, 0.42])))
        verts, joints, pos_up, rel = verts[:T], joints[:T], pos_up[:T], rel[:T]
        root = root[:T]
        xz = xz[:T]
    # Camera roll turns everything about the optical axis through the principal point.
    roll = motion_lib.rot_z(camera.roll)  # (T, 3, 3)
    rel_rolled = np.einsum("tij,tvj->tvi", roll, rel)
    pos_rolled = np.einsum("tij,tj->ti", roll, pos_up)
    vertices = rel_rolled + pos_rolled[:, None]
    pose = np.concatenate([Rotation.from_matrix(roll @ r_up).as_rotvec(), motion.body_pose], axis=1)
    _, joints3d, keypoints3d = body.evaluate(pose, np.broadcast_to(person.betas, (T, 10)), with_vertices=False)
    scale = camera.focal / pos_up[:, 2]
    # pixel = s * (R_roll (v - J0) + R_roll pos).xy + c = s * model_output.xy + offset
    offset = scale[:, None] * (pos_rolled[:, :2] - joints3d[:, 0, :2]) + camera.principal
    cam = np.concatenate([scale[:, None], offset], axis=1)
    kp_depth = keypoints3d[..., 2] - joints3d[:, :1, 2] + pos_up[:, 2:3]
    normals = body.vertex_normals(vertices)
    return _Placed(vertices, normals, scale, offset, xz, pose, joints3d, keypoints3d, cam, kp_depth, props)


def _prop_mesh(prop, camera, placed: _Placed, t: int) -> Mesh:
    """A world-space prop under the weak-perspective camera of its owner at frame t."""
    pv, pf, pn = prop
    roll = motion_lib.rot_z(np.float64(camera.roll[t]))
    v = pv @ roll.T
    n = pn @ roll.T
    s = placed.scale[t]
    xy = s * v[:, :2] + camera.principal[t]
    return Mesh(np.column_stack([xy, v[:, 2]]), pf, np.array([0.55, 0.38, 0.22]), n, outward=True)


def _render_video(video: Path, config: SynthConfig, body: _Body, people: list, placed: list, camera,
                  plate: BackgroundPlate, grain: np.ndarray, vignette: np.ndarray,
                  keypoints2d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render the clip's T frames into ``video`` through ffmpeg.

    Args:
        keypoints2d: (T, P, 17, 2) image keypoints, pixels.

    Returns:
        visibility (T, P, 17) uint8, occluder (T, P, 17) int16, visible pixels (T, P) int32 and
        bounding boxes (T, P, 4) float32 pixels of every person in every frame.
    """
    T, P = keypoints2d.shape[:2]
    W, H = config.width, config.height
    visibility = np.zeros((T, P, 17), dtype=np.uint8)
    occluder = np.full((T, P, 17), -1, dtype=np.int16)
    visible_pixels = np.zeros((T, P), dtype=np.int32)
    bbox = np.zeros((T, P, 4), dtype=np.float32)
    ss = config.supersample
    writer = _ffmpeg_writer(video, config)
    try:
        for t in range(T):
            frame = plate.frame(t)
            plate.apply_shadows(frame, t, [(pl.root_xz[t, 0], pl.root_xz[t, 1], CONTACT_RADIUS) for pl in placed])
            meshes: list[Mesh] = []
            owners: list[int] = []
            for p, pl in enumerate(placed):
                xy = pl.scale[t] * pl.vertices[t, :, :2] + camera.principal[t]
                lo, hi = xy.min(axis=0), xy.max(axis=0)
                bbox[t, p] = [lo[0], lo[1], hi[0], hi[1]]
                if hi[0] < 0 or hi[1] < 0 or lo[0] > W or lo[1] > H:
                    continue
                meshes.append(
                    Mesh(np.column_stack([xy, pl.vertices[t, :, 2]]), body.faces, people[p].colours, pl.normals[t], body.winding > 0)
                )
                owners.append(p)
                for prop in pl.props:
                    meshes.append(_prop_mesh(prop, camera, pl, t))
                    owners.append(-2)
            if meshes:
                result = render(meshes, H, W, supersample=ss)
                if config.render_people:
                    frame = frame * (1.0 - result.coverage[..., None]) + result.color
                owner_of = np.array(owners + [-1])
                mesh_at = result.raster.mesh_index
                counts = np.bincount(mesh_at[mesh_at >= 0].ravel(), minlength=len(meshes))
                for m, p in enumerate(owners):
                    if p >= 0:
                        visible_pixels[t, p] = int(round(counts[m] / (ss * ss)))
                _keypoint_visibility(t, keypoints2d, placed, result.raster, owner_of, ss, W, H, visibility, occluder)
            else:
                visibility[t] = np.where(_inside(keypoints2d[t], W, H), OCCLUDED, OUTSIDE)
            frame = np.clip(frame * vignette + grain[t % 4], 0.0, 1.0)
            writer.stdin.write((frame * 255.0 + 0.5).astype(np.uint8).tobytes())
        writer.stdin.close()
        err = writer.stderr.read().decode(errors="replace")
        if writer.wait() != 0:
            raise RuntimeError(f"ffmpeg failed writing {video}: {err.strip()}")
    except BaseException:
        writer.kill()
        writer.wait()
        raise
    return visibility, occluder, visible_pixels, bbox


def _clip_truth(plan: ClipPlan, config: SynthConfig, camera, times: np.ndarray, people: list, placed: list,
                keypoints2d: np.ndarray, visibility: np.ndarray, occluder: np.ndarray, bbox: np.ndarray,
                visible_pixels: np.ndarray) -> ClipTruth:
    """The clip's ground truth from its plan, camera, people and rendered visibility."""
    return ClipTruth(
        clip_id=plan.clip_id,
        label=plan.label,
        split=plan.split,
        fps=float(config.fps),
        image_size=(config.width, config.height),
        camera_height=camera.height,
        frame_index=np.arange(len(times), dtype=np.int32),
        frame_time=times,
        track_id=np.arange(len(people), dtype=np.int32),
        motion=np.array([p.motion.name for p in people]),
        betas=np.stack([p.betas for p in people]).astype(np.float32),
        pose=np.stack([pl.pose for pl in placed], axis=1).astype(np.float32),
        camera=np.stack([pl.camera for pl in placed], axis=1).astype(np.float32),
        joints3d=np.stack([pl.joints3d for pl in placed], axis=1).astype(np.float32),
        keypoints3d=np.stack([pl.keypoints3d for pl in placed], axis=1).astype(np.float32),
        keypoints2d=keypoints2d.astype(np.float32),
        visibility=visibility,
        occluder=occluder,
        bbox=bbox,
        visible_pixels=visible_pixels,
        depth=np.stack([pl.root_xz[:, 1] for pl in placed], axis=1).astype(np.float32),
        focal=camera.focal.astype(np.float32),
        principal=camera.principal.astype(np.float32),
        roll=camera.roll.astype(np.float32),
    )


def generate_clip(plan: ClipPlan, config: SynthConfig, body: _Body, out_dir: Path) -> dict:
    """Render one clip and write its video and sidecars.

    Returns:
        The clip's entry for ``corpus.json``.
    """
    out_dir = Path(out_dir)
    video = out_dir / plan.relative_path()
    video.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "clip_id": plan.clip_id,
        "path": plan.relative_path(),
        "kind": plan.kind,
        "label": plan.label,
        "split": plan.split,
        "youtube_id": plan.youtube_id,
        "time_start": plan.time_start,
        "time_end": plan.time_end,
        "motion_set": "heldout" if plan.label in motion_lib.HELDOUT_MOTIONS else "tuning",
    }
    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    if plan.kind in ("zero_byte", "garbage"):
        rng = np.random.default_rng(np.random.SeedSequence(plan.entropy[0], spawn_key=plan.entropy[1:]))
        video.write_bytes(b"" if plan.kind == "zero_byte" else rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes())
        info.update(num_people=0, num_frames=0, seconds=round(time.perf_counter() - started, 3))
        return info

    seeds = np.random.SeedSequence(plan.entropy[0], spawn_key=plan.entropy[1:]).spawn(4)
    rng_scene, rng_det, rng_reg, rng_pix = (np.random.default_rng(s) for s in seeds)
    W, H, T = config.width, config.height, config.num_frames
    times = np.arange(T) / config.fps
    dt = 1.0 / config.fps
    camera = sample_camera(rng_scene, times, W, H)
    backdrop = sample_backdrop(rng_scene)
    people = _sample_people(rng_scene, plan, config, times, float(camera.focal[0]))
    for person in people:
        person.colours, person.outfit = _outfit(rng_scene, body.regions, body.rest_vertices)
    placed = [_place_person(body, p, camera, times, dt) for p in people]
    plate = BackgroundPlate(backdrop, camera, W, H)
    grain = rng_pix.normal(scale=1.6 / 255.0, size=(4, H, W, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:H, 0:W]
    r2 = ((xx + 0.5 - W / 2) / (W / 2)) ** 2 + ((yy + 0.5 - H / 2) / (H / 2)) ** 2
    vignette = (1.0 - 0.12 * r2)[..., None].astype(np.float32)

    P = len(people)
    keypoints2d = np.zeros((T, P, 17, 2), dtype=np.float64)
    for p, pl in enumerate(placed):
        keypoints2d[:, p] = pl.scale[:, None, None] * pl.keypoints3d[..., :2] + pl.offset[:, None]
    visibility, occluder, visible_pixels, bbox = _render_video(
        video, config, body, people, placed, camera, plate, grain, vignette, keypoints2d)

    truth = _clip_truth(plan, config, camera, times, people, placed, keypoints2d,
                        visibility, occluder, bbox, visible_pixels)
    stem = video.with_suffix("")
    truth.save(str(stem) + GT_SUFFIX)
    coco = simulate_detections(truth, rng_det, config.detector, file_stem=plan.clip_id)
    with open(str(stem) + COCO_SUFFIX, "w") as handle:
        json.dump(coco, handle, separators=(",", ":"))
    init = simulate_regressor(truth, coco, rng_reg, config.regressor)
    np.savez_compressed(str(stem) + INIT_SUFFIX, **init)
    info.update(
        num_people=P,
        num_frames=T,
        fps=float(config.fps),
        motions=[p.motion.name for p in people],
        backdrop=f"{backdrop.kind}/{backdrop.floor}",
        camera_shake=camera.shake,
        zoom=round(float(camera.focal.max() / camera.focal.min()), 3),
        max_visible_people=int(truth.in_view.sum(axis=1).max()),
        occluded_keypoint_fraction=round(float((visibility == OCCLUDED).mean()), 4),
        detections=len(coco["annotations"]),
        seconds=round(time.perf_counter() - started, 3),
        cpu_seconds=round(_cpu_seconds() - cpu_started, 3),
    )
    return info


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished children (ffmpeg), seconds."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _inside(points: np.ndarray, width: int, height: int) -> np.ndarray:
    return (points[..., 0] >= 0) & (points[..., 0] < width) & (points[..., 1] >= 0) & (points[..., 1] < height)


def _keypoint_visibility(t, keypoints2d, placed, raster, owner_of, ss, W, H, visibility, occluder) -> None:
    """Visibility of every keypoint at frame t from the z-buffer (see VISIBILITY_MARGIN)."""
    kp = keypoints2d[t]  # (P, 17, 2)
    inside = _inside(kp, W, H)
    col = np.clip(np.floor(kp[..., 0] * ss).astype(np.int64), 0, W * ss - 1)
    row = np.clip(np.floor(kp[..., 1] * ss).astype(np.int64), 0, H * ss - 1)
    front_depth = raster.depth[row, col]
    front_owner = owner_of[raster.mesh_index[row, col]]
    kp_depth = np.stack([pl.kp_depth[t] for pl in placed])
    hidden = front_depth < kp_depth - VISIBILITY_MARGIN
    visibility[t] = np.where(~inside, OUTSIDE, np.where(hidden, OCCLUDED, VISIBLE))
    occluder[t] = np.where(inside & hidden, front_owner, -1)


# --------------------------------------------------------------------------------------
# The corpus


_WORKER_BODY: _Body | None = None


def _worker_init(model_path: str) -> None:
    import torch

    global _WORKER_BODY
    torch.set_num_threads(1)
    _WORKER_BODY = _Body(model_path)


def _worker_clip(args) -> dict:
    plan, config, out_dir = args
    assert _WORKER_BODY is not None
    return generate_clip(plan, config, _WORKER_BODY, Path(out_dir))


def _versions() -> dict[str, str]:
    import platform
    from importlib import metadata

    out = {"corpus_format": str(CORPUS_FORMAT_VERSION), "python": platform.python_version(), "numpy": np.__version__}
    for dist in ("vid2mesh", "torch", "scipy", "opencv-python"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    try:
        first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=False).stdout.splitlines()
        out["ffmpeg"] = first[0] if first else "unknown"
    except FileNotFoundError:
        out["ffmpeg"] = "missing"
    return out


def _format_time(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def generate_corpus(
    out_dir: str | os.PathLike,
    num_clips: int,
    seed: int,
    config: SynthConfig = SynthConfig(),
    body_model_path: str | os.PathLike | None = None,
    crowded: int = 0,
    corrupt: int = 0,
    workers: int = 1,
) -> dict:
    """Write a synthetic corpus (see the module docstring for the layout).

    Args:
        out_dir: output folder (created; existing files of the same names are replaced).
        num_clips: normal clips.
        seed: corpus seed.
        config: clip settings.
        body_model_path: SMPL-format body model file; the generated stand-in when None.
        crowded: extra clips with more than 6 people.
        corrupt: extra unreadable video files (zero-byte, garbage), listed in the CSVs.
        workers: processes rendering clips in parallel.

    Returns:
        The ``corpus.json`` content.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if body_model_path is None:
        from models.standin import ensure_standin

        body_model_path = ensure_standin().neutral
    body_model_path = str(body_model_path)
    if not Path(body_model_path).is_file():
        raise FileNotFoundError(f"body model {body_model_path!r} not found; pass an SMPL-format .pkl/.npz or omit it to use the stand-in")
    plans = plan_corpus(num_clips, seed, config, crowded=crowded, corrupt=corrupt)
    started = time.perf_counter()
    jobs = [(plan, config, str(out)) for plan in plans]
    if workers <= 1 or len(plans) <= 1:
        infos = _run_inline(jobs, body_model_path)
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init, initargs=(body_model_path,)) as pool:
            infos = list(pool.map(_worker_clip, jobs))
    elapsed = time.perf_counter() - started
    by_split: dict[str, list[ClipPlan]] = {}
    for plan in plans:
        by_split.setdefault(plan.split, []).append(plan)
    for split, split_plans in sorted(by_split.items()):
        with open(out / f"{split}.csv", "w", newline="") as handle:
            w = csv.writer(handle)
            w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            for plan in split_plans:
                w.writerow([plan.label, plan.youtube_id, _format_time(plan.time_start), _format_time(plan.time_end), plan.split])
    rendered = [i for i in infos if i["kind"] in ("normal", "crowded")]
    frames = sum(i["num_frames"] for i in rendered)
    corpus = {
        "generator": "vid2mesh synth (pipeline.synth)",
        "seed": seed,
        "versions": _versions(),
        "body_model": os.path.basename(body_model_path),
        "config": _config_dict(config),
        "motion_split": motion_lib.motion_split(),
        "labels": sorted({p.label for p in plans}),
        "splits": {split: len(v) for split, v in sorted(by_split.items())},
        "clips": infos,
        "timing": {
            "seconds": round(elapsed, 2),
            "workers": workers,
            "clips_per_second": round(len(rendered) / elapsed, 4) if elapsed > 0 else None,
            "frames_per_second": round(frames / elapsed, 2) if elapsed > 0 else None,
            # CPU seconds do not depend on how busy the machine was.
            "cpu_seconds": round(sum(i.get("cpu_seconds", 0.0) for i in infos), 2),
        },
    }
    with open(out / "corpus.json", "w") as handle:
        json.dump(corpus, handle, indent=1)
    logger.info("wrote %d clips (%d frames) to %s in %.1f s", len(infos), frames, out, elapsed)
    return corpus


def _run_inline(jobs, body_model_path: str) -> list[dict]:
    body = _Body(body_model_path)
    return [generate_clip(plan, config, body, Path(out)) for plan, config, out in jobs]


def _config_dict(config: SynthConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))

