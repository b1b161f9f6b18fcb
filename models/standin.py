"""A synthetic stand-in for the SMPL body model, in SMPL's own ``.pkl`` file format.

Tests, the demo and the benchmarks cannot use the licensed SMPL files, so the project
generates a body model with the same layout: 6890 vertices, 13776 faces, 24 joints with
SMPL's kinematic tree, 10 shape components, linear-blend-skinning weights, 207 pose blend
shapes and the face / feet / fingertip vertices at SMPL's vertex ids. ``smplx.SMPL`` and
``smplx.create`` load the files exactly as they load the real ones.

How the mesh is built (deterministic, no randomness):

* The body is a mannequin of 8 closed tubes (torso, head with neck, two arms with hands,
  two legs, two feet). Each tube is a generalised cylinder: rings of ``n`` vertices
  (super-ellipse cross-sections) along a smooth axis through key frames, with rounded end
  caps closed by a pole vertex. A closed tube of ``R`` rings has ``R n + 2`` vertices and
  ``2 R n`` faces (a genus-0 surface, ``F = 2 V - 4``). Tubes overlap where body parts
  join (a shoulder tube starts inside the torso), so the visible surface is their union.
  Eight closed parts give ``F = 2 V - 32``; the 28 missing faces are hidden internal
  diaphragms across buried rings (inside the closed tubes), which is how SMPL's face count
  ``13776 = 2 * 6890 - 4`` is met.
* The head has a nose, ears and eye sockets; the nose, eye, ear, heel, toe and fingertip
  vertices are moved (vertex order permutation) to SMPL's vertex ids
  (``models.joint_names.SMPLX45_EXTRA_VERTEX_IDS``).
* The shape is a function of 13 interpretable body measurements (stature, leg, arm and
  torso length, shoulder and hip width, girth, belly, chest, waist, head size, neck
  length, limb girth). Each of the 10 shape components is a direction in that space;
  ``shapedirs`` is the central-difference linearisation of the mesh along it (about
  4 cm of stature per unit of beta 0, girth for beta 1, legs vs torso for beta 2, ...).
* The joint regressor averages one ring of vertices (interpolated between two rings) at
  each joint, so joints move with the shape. Skinning weights are a soft-min over the
  distances to the bones a part may follow; pose blend shapes push vertices around a bent
  joint outwards along their normal, by ``1 - cos(angle)`` (linear in ``R - I``).
* Neutral, male (broader shoulders, taller) and female (wider hips, narrower waist,
  shorter) variants; the neutral one is 1.70 m tall at beta = 0.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import scipy.sparse
from scipy.interpolate import PchipInterpolator

from models.joint_names import (
    SMPL24_INDEX,
    SMPL24_NAMES,
    SMPL24_PARENTS,
    SMPL_NUM_FACES,
    SMPL_NUM_VERTICES,
    SMPLX45_EXTRA_VERTEX_IDS,
)

logger = logging.getLogger(__name__)

GENDERS: tuple[str, ...] = ("neutral", "male", "female")
STANDIN_VERSION = 2
STANDIN_PRIOR_NAME = "vid2mesh_standin_pose_prior_gmm8.pkl"
_STAMP_NAME = "vid2mesh_standin.json"
STANDIN_HEIGHT_M: dict[str, float] = {"neutral": 1.70, "male": 1.76, "female": 1.64}


def standin_file_name(gender: str) -> str:
    """File name of the stand-in body model of ``gender`` (never a licensed file's name)."""
    if gender not in GENDERS:
        raise ValueError(f"unknown gender {gender!r}; use one of {', '.join(GENDERS)}")
    return f"smpl_vid2mesh_standin_{gender}.pkl"


def shipped_prior_path() -> Path:
    """The stand-in GMM pose prior shipped in ``models/data/`` (see ``docs/body_model.md``)."""
    return Path(__file__).resolve().parent / "data" / STANDIN_PRIOR_NAME


@dataclass(frozen=True)
class StandinPaths:
    """Where the generated stand-in files are.

    Attributes:
        directory: folder holding all of them.
        neutral, male, female: body models in SMPL's ``.pkl`` format.
        gmm: GMM pose prior in SMPLify's layout (a copy of the shipped stand-in prior).
    """

    directory: Path
    neutral: Path
    male: Path
    female: Path
    gmm: Path

    def model(self, gender: str) -> Path:
        """Path of the body model of ``gender`` ("neutral", "male" or "female")."""
        if gender not in GENDERS:
            raise ValueError(f"unknown gender {gender!r}; use one of {', '.join(GENDERS)}")
        return getattr(self, gender)


def default_cache_root() -> Path:
    """Root folder of vid2mesh's generated files: ``$VID2MESH_CACHE``, else ``~/.cache/vid2mesh``.

    Every stage that needs the generated stand-in (the job's ``--model_cache`` default,
    ``vid2mesh synth``, ``render``, ``report``) resolves it through here.
    """
    root = os.environ.get("VID2MESH_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "vid2mesh"


def default_standin_dir() -> Path:
    """``<default_cache_root()>/standin``."""
    return default_cache_root() / "standin"


def _paths(directory: Path) -> StandinPaths:
    return StandinPaths(
        directory=directory,
        neutral=directory / standin_file_name("neutral"),
        male=directory / standin_file_name("male"),
        female=directory / standin_file_name("female"),
        gmm=directory / STANDIN_PRIOR_NAME,
    )


def ensure_standin(cache_dir: str | os.PathLike | None = None) -> StandinPaths:
    """Generate the stand-in files into ``cache_dir`` once; reuse them afterwards.

    Args:
        cache_dir: target folder (created if needed); default :func:`default_standin_dir`.

    Returns:
        The paths of the three body models and the GMM prior.
    """
    directory = Path(cache_dir) if cache_dir is not None else default_standin_dir()
    paths = _paths(directory)
    stamp = directory / _STAMP_NAME
    expected = {"version": STANDIN_VERSION}
    files = (paths.neutral, paths.male, paths.female, paths.gmm)
    try:
        current = json.loads(stamp.read_text())
    except (OSError, ValueError):
        current = None
    if current == expected and all(f.is_file() for f in files):
        return paths
    return make_standin(directory)


def make_standin(out_dir: str | os.PathLike) -> StandinPaths:
    """Write the stand-in body models (all genders) and the stand-in prior to ``out_dir``.

    Deterministic: the same files (same arrays) on every run.
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = _paths(directory)
    for gender in GENDERS:
        arrays = build_standin(gender)
        target = paths.model(gender)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            # Protocol 2, like the official (Python 2) files.
            pickle.dump(arrays, handle, protocol=2)
        tmp.replace(target)
    prior = shipped_prior_path()
    if not prior.is_file():
        raise FileNotFoundError(
            f"the shipped stand-in pose prior {prior} is missing; regenerate it with "
            "`vid2mesh fit-prior --standin-corpus "
            f"{prior}` or reinstall vid2mesh"
        )
    tmp = paths.gmm.with_name(f"{paths.gmm.name}.{os.getpid()}.tmp")
    shutil.copyfile(prior, tmp)
    tmp.replace(paths.gmm)
    stamp = directory / f"{_STAMP_NAME}.{os.getpid()}.tmp"
    stamp.write_text(json.dumps({"version": STANDIN_VERSION}))
    stamp.replace(directory / _STAMP_NAME)
    logger.info("wrote stand-in body models and prior to %s", directory)
    return paths


# ---------------------------------------------------------------------------------------
# Body description: parts, key frames and measurements
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    name: str
    ring_size: int  # vertices per ring (even: mirror symmetry)
    rings: int  # total rings, caps included
    cap_rings: tuple[int, int]  # rings in the start / end cap
    cap_length: tuple[float, float]  # cap length / mean end radius
    exponent: float  # super-ellipse exponent of the cross-section
    width_ref: tuple[float, float, float]  # direction of radius ``a``
    depth_ref: tuple[float, float, float]  # direction of radius ``b``
    mirrored: bool  # a left part with a mirrored right copy
    diaphragm_ring: int  # ring (from the start) holding the hidden faces


# Counts chosen so that sum(rings * ring_size + 2) = 6890 (see module docstring).
_PARTS: tuple[_Part, ...] = (
    _Part("torso", 58, 31, (4, 4), (0.55, 0.45), 2.4, (1, 0, 0), (0, 0, 1), False, 2),
    _Part("head", 48, 30, (2, 6), (0.35, 0.55), 2.0, (1, 0, 0), (0, 0, 1), False, 2),
    _Part("arm", 20, 42, (3, 4), (0.5, 0.9), 2.2, (0, 1, 0), (0, 0, 1), True, 2),
    _Part("leg", 26, 30, (3, 3), (0.5, 0.8), 2.1, (1, 0, 0), (0, 0, 1), True, 2),
    _Part("foot", 18, 11, (2, 2), (0.7, 0.9), 2.3, (1, 0, 0), (0, 1, 0), True, 2),
)

# Key frames of the neutral body before the stature normalisation: x, y, z, a, b in
# metres (SMPL rest frame: y up, x = the body's left, z = forward). Left parts only.
_KEYFRAMES: dict[str, np.ndarray] = {
    "torso": np.array(
        [
            [0.0, -0.34, -0.015, 0.150, 0.098],
            [0.0, -0.26, -0.010, 0.170, 0.108],
            [0.0, -0.16, 0.000, 0.160, 0.102],
            [0.0, -0.06, 0.005, 0.140, 0.098],
            [0.0, 0.04, 0.005, 0.148, 0.102],
            [0.0, 0.13, 0.008, 0.165, 0.110],
            [0.0, 0.21, -0.005, 0.178, 0.102],
            [0.0, 0.27, -0.020, 0.150, 0.085],
        ]
    ),
    "head": np.array(
        [
            [0.0, 0.22, -0.025, 0.058, 0.058],
            [0.0, 0.30, -0.020, 0.054, 0.056],
            [0.0, 0.345, -0.010, 0.058, 0.066],
            [0.0, 0.375, 0.005, 0.066, 0.084],
            [0.0, 0.42, 0.012, 0.076, 0.098],
            [0.0, 0.465, 0.005, 0.079, 0.100],
            [0.0, 0.505, -0.005, 0.072, 0.092],
        ]
    ),
    "arm": np.array(
        [
            [0.05, 0.195, -0.020, 0.050, 0.050],
            [0.11, 0.210, -0.020, 0.056, 0.054],
            [0.17, 0.222, -0.022, 0.058, 0.055],
            [0.25, 0.222, -0.026, 0.050, 0.047],
            [0.34, 0.220, -0.028, 0.044, 0.042],
            [0.43, 0.218, -0.030, 0.036, 0.037],
            [0.51, 0.218, -0.030, 0.039, 0.040],
            [0.61, 0.218, -0.030, 0.031, 0.034],
            [0.68, 0.218, -0.030, 0.021, 0.030],
            [0.725, 0.218, -0.028, 0.018, 0.041],
            [0.78, 0.218, -0.025, 0.016, 0.043],
            [0.84, 0.218, -0.025, 0.011, 0.037],
        ]
    ),
    "leg": np.array(
        [
            [0.080, -0.20, -0.010, 0.080, 0.085],
            [0.090, -0.31, 0.000, 0.092, 0.092],
            [0.095, -0.43, 0.008, 0.082, 0.082],
            [0.098, -0.56, 0.006, 0.066, 0.068],
            [0.100, -0.70, 0.000, 0.050, 0.052],
            [0.100, -0.80, -0.012, 0.052, 0.060],
            [0.100, -0.92, -0.018, 0.042, 0.045],
            [0.100, -1.04, -0.025, 0.030, 0.034],
            [0.100, -1.10, -0.030, 0.032, 0.036],
        ]
    ),
    "foot": np.array(
        [
            [0.100, -1.120, -0.060, 0.033, 0.040],
            [0.100, -1.125, -0.020, 0.038, 0.042],
            [0.102, -1.135, 0.040, 0.044, 0.034],
            [0.105, -1.145, 0.100, 0.047, 0.024],
            [0.108, -1.150, 0.150, 0.042, 0.018],
        ]
    ),
}

# Levels used by the measurement edits (neutral base coordinates).
_Y_PELVIS = -0.22
_Y_HIP = -0.31
_Y_SHOULDER_TOP = 0.27
_Y_NECK_TOP = 0.36
_X_SHOULDER = 0.17

# Each joint sits on one part's axis at a key-frame parameter (fractional where needed),
# given as (part, coordinate axis, value in base coordinates) or (part, key frame index).
_JOINT_SITES: dict[str, tuple[str, int | None, float]] = {
    "pelvis": ("torso", 1, -0.22),
    "left_hip": ("leg", None, 1.0),
    "spine1": ("torso", 1, -0.11),
    "left_knee": ("leg", None, 4.0),
    "spine2": ("torso", 1, 0.025),
    "left_ankle": ("leg", None, 8.0),
    "spine3": ("torso", 1, 0.08),
    "left_foot": ("foot", None, 3.0),
    "neck": ("head", 1, 0.29),
    "left_collar": ("arm", 0, 0.08),
    "head": ("head", 1, 0.37),
    "left_shoulder": ("arm", None, 2.0),
    "left_elbow": ("arm", None, 5.0),
    "left_wrist": ("arm", None, 8.0),
    "left_hand": ("arm", 0, 0.76),
}

_MEASUREMENTS: tuple[str, ...] = (
    "stature",
    "leg_length",
    "torso_length",
    "arm_length",
    "shoulder_width",
    "hip_width",
    "waist",
    "girth",
    "limb_girth",
    "belly",
    "chest",
    "head_size",
    "neck_length",
)

_GENDER_MEASUREMENTS: dict[str, dict[str, float]] = {
    "neutral": {},
    "male": {
        "shoulder_width": 1.07,
        "hip_width": 0.95,
        "waist": 1.02,
        "chest": 1.02,
        "girth": 1.03,
        "limb_girth": 1.06,
        "head_size": 1.02,
        "neck_length": 1.04,
    },
    "female": {
        "shoulder_width": 0.92,
        "hip_width": 1.07,
        "waist": 0.9,
        "chest": 1.07,
        "girth": 0.97,
        "limb_girth": 0.93,
        "belly": 0.96,
        "head_size": 0.98,
        "neck_length": 0.97,
        "arm_length": 0.98,
    },
}

# The 10 shape components: change of each measurement per unit of beta.
_SHAPE_COMPONENTS: tuple[dict[str, float], ...] = (
    {"stature": 0.04, "girth": 0.015},
    {"girth": 0.08, "belly": 0.1, "limb_girth": 0.06, "waist": 0.05},
    {"leg_length": 0.04, "torso_length": -0.035},
    {"shoulder_width": 0.05, "hip_width": -0.03},
    {"arm_length": 0.04},
    {"belly": 0.12, "chest": -0.04},
    {"chest": 0.08, "waist": -0.05},
    {"head_size": 0.05, "neck_length": -0.08},
    {"hip_width": 0.05, "limb_girth": 0.04},
    {"neck_length": 0.08, "torso_length": 0.02, "limb_girth": -0.05},
)
_FD_STEP = 0.5  # central-difference step in beta units


def _smooth_window(y: np.ndarray, lo: float, hi: float, ramp: float) -> np.ndarray:
    """1 inside [lo, hi], 0 far outside, smooth ramps of width ``ramp``."""
    up = np.clip((y - (lo - ramp)) / ramp, 0.0, 1.0)
    down = np.clip(((hi + ramp) - y) / ramp, 0.0, 1.0)
    s = np.minimum(up, down)
    return s * s * (3 - 2 * s)


def _keyframes(m: dict[str, float]) -> dict[str, np.ndarray]:
    """Key frames of the left parts for body measurements ``m`` (all 1.0 = base)."""
    k = {name: frames.copy() for name, frames in _KEYFRAMES.items()}
    torso, head, arm, leg, foot = k["torso"], k["head"], k["arm"], k["leg"], k["foot"]

    # Lengths along the body, feet to head.
    below_hip = leg[:, 1] < _Y_HIP
    old_ankle_y = leg[-1, 1]
    leg[below_hip, 1] = _Y_HIP + (leg[below_hip, 1] - _Y_HIP) * m["leg_length"]
    foot[:, 1] += leg[-1, 1] - old_ankle_y
    torso_scale = m["torso_length"]
    torso[:, 1] = _Y_PELVIS + (torso[:, 1] - _Y_PELVIS) * torso_scale
    lift = (torso_scale - 1.0) * (_Y_SHOULDER_TOP - _Y_PELVIS)
    head[:, 1] += lift
    arm[:, 1] += lift
    neck_top = _Y_NECK_TOP + lift
    neck_base = _Y_SHOULDER_TOP + lift
    neck_stretch = (m["neck_length"] - 1.0) * (neck_top - neck_base)
    in_neck = (head[:, 1] > neck_base) & (head[:, 1] <= neck_top)
    head[in_neck, 1] = neck_base + (head[in_neck, 1] - neck_base) * m["neck_length"]
    head[head[:, 1] > neck_top, 1] += neck_stretch
    neck_top += neck_stretch
    skull = head[:, 1] > neck_top - 0.02
    head[skull, 1:3] = (
        np.array([neck_top, 0.0]) + (head[skull, 1:3] - np.array([neck_top, 0.0])) * m["head_size"]
    )
    head[skull, 3:5] *= m["head_size"]

    # Widths.
    beyond = arm[:, 0] > _X_SHOULDER
    arm[beyond, 0] = _X_SHOULDER + (arm[beyond, 0] - _X_SHOULDER) * m["arm_length"]
    arm[:, 0] += (m["shoulder_width"] - 1.0) * _X_SHOULDER
    y_rel = _KEYFRAMES["torso"][:, 1]
    upper = _smooth_window(y_rel, 0.13, 0.3, 0.1)
    torso[:, 3] *= 1.0 + (m["shoulder_width"] - 1.0) * upper
    hips = _smooth_window(y_rel, -0.4, -0.2, 0.12)
    torso[:, 3] *= 1.0 + (m["hip_width"] - 1.0) * hips
    leg[:, 0] += (m["hip_width"] - 1.0) * 0.09
    foot[:, 0] += (m["hip_width"] - 1.0) * 0.09
    waist = _smooth_window(y_rel, -0.1, -0.02, 0.08)
    torso[:, 3] *= 1.0 + (m["waist"] - 1.0) * waist
    torso[:, 4] *= 1.0 + 0.7 * (m["waist"] - 1.0) * waist

    # Girths and depths.
    torso[:, 3:5] *= m["girth"]
    head[~skull, 3:5] *= m["girth"] ** 0.5
    limb = m["limb_girth"] * m["girth"] ** 0.7
    arm[:, 3:5] *= limb
    leg[:, 3:5] *= limb
    foot[:, 3] *= m["girth"] ** 0.3
    belly = _smooth_window(y_rel, -0.15, 0.02, 0.08)
    torso[:, 4] *= 1.0 + (m["belly"] - 1.0) * belly
    torso[:, 2] += (m["belly"] - 1.0) * belly * 0.6 * _KEYFRAMES["torso"][:, 4]
    chest = _smooth_window(y_rel, 0.1, 0.16, 0.07)
    torso[:, 4] *= 1.0 + (m["chest"] - 1.0) * chest
    torso[:, 2] += (m["chest"] - 1.0) * chest * 0.7 * _KEYFRAMES["torso"][:, 4]

    for frames in k.values():
        frames[:, :3] *= m["stature"]
        frames[:, 3:] *= m["stature"]
    return k


# ---------------------------------------------------------------------------------------
# Topology (fixed) and geometry (a function of the measurements)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Topology:
    faces: np.ndarray  # (F, 3) int64 in generation order
    hidden: np.ndarray  # (F,) bool, the internal diaphragm faces
    part_of: np.ndarray  # (V,) int, index into _PART_INSTANCES
    ring_t: dict[str, np.ndarray]  # body-ring key-frame parameters per part
    offsets: dict[str, int]  # first vertex of each part instance
    mirror: np.ndarray  # (V,) index of the mirror vertex


# Part instances in vertex order; right parts are mirrored copies of left ones.
_PART_INSTANCES: tuple[tuple[str, str], ...] = (
    ("torso", "torso"),
    ("head", "head"),
    ("left_arm", "arm"),
    ("right_arm", "arm"),
    ("left_leg", "leg"),
    ("right_leg", "leg"),
    ("left_foot", "foot"),
    ("right_foot", "foot"),
)


def _part(name: str) -> _Part:
    return next(p for p in _PARTS if p.name == name)


def _body_ring_params(frames: np.ndarray, count: int) -> np.ndarray:
    """Key-frame parameters of ``count`` rings spaced evenly in arc length."""
    seg = np.linalg.norm(np.diff(frames[:, :3], axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    targets = np.linspace(0.0, arc[-1], count)
    return np.interp(targets, arc, np.arange(len(frames), dtype=float))


def _tube_faces(part: _Part, offset: int) -> np.ndarray:
    """Faces of a closed tube: pole, rings, pole (outward orientation fixed later)."""
    n, rings = part.ring_size, part.rings
    start_pole = offset
    ring0 = offset + 1
    end_pole = offset + 1 + rings * n
    i = np.arange(n)
    j = (i + 1) % n
    faces = [np.stack([np.full(n, start_pole), ring0 + j, ring0 + i], axis=1)]
    for r in range(rings - 1):
        a = ring0 + r * n
        b = a + n
        faces.append(np.stack([a + i, a + j, b + i], axis=1))
        faces.append(np.stack([a + j, b + j, b + i], axis=1))
    last = ring0 + (rings - 1) * n
    faces.append(np.stack([last + i, last + j, np.full(n, end_pole)], axis=1))
    return np.concatenate(faces)


def _diaphragm_faces(part: _Part, offset: int) -> np.ndarray:
    """Four hidden faces across two rings inside the part's buried end."""
    n = part.ring_size
    out = []
    for ring in (part.diaphragm_ring, part.diaphragm_ring + 1):
        base = offset + 1 + ring * n
        q = [base, base + n // 4, base + n // 2, base + 3 * n // 4]
        out += [[q[0], q[1], q[2]], [q[0], q[2], q[3]]]
    return np.array(out, dtype=np.int64)


@cache
def _topology() -> _Topology:
    base = _keyframes({name: 1.0 for name in _MEASUREMENTS})
    faces, hidden, part_of, offsets, mirror = [], [], [], {}, []
    ring_t = {}
    offset = 0
    for index, (instance, part_name) in enumerate(_PART_INSTANCES):
        part = _part(part_name)
        count = part.rings * part.ring_size + 2
        offsets[instance] = offset
        body = part.rings - sum(part.cap_rings)
        ring_t[part_name] = _body_ring_params(base[part_name], body)
        tube = _tube_faces(part, offset)
        frames = base[part_name]
        axis = frames[-1, :3] - frames[0, :3]
        if np.dot(np.cross(part.width_ref, part.depth_ref), axis) < 0:
            tube = tube[:, ::-1]  # rings run clockwise about the axis: keep normals outward
        diaphragm = _diaphragm_faces(part, offset) if instance != "torso" else None
        if instance.startswith("right_"):
            tube = tube[:, ::-1]  # mirrored geometry: flip the winding
            diaphragm = diaphragm[:, ::-1]
        faces.append(tube)
        hidden.append(np.zeros(len(tube), dtype=bool))
        if diaphragm is not None:
            faces.append(diaphragm)
            hidden.append(np.ones(len(diaphragm), dtype=bool))
        part_of.append(np.full(count, index))
        local = np.arange(count)
        if part.mirrored:
            partner = offset + count if instance.startswith("left_") else offset - count
            mirror.append(partner + local)
        else:
            # theta -> pi - theta within each ring; poles map to themselves.
            n = part.ring_size
            ring_local = local[1:-1] - 1
            r, i = ring_local // n, ring_local % n
            mapped = 1 + r * n + (n // 2 - i) % n
            mirror.append(offset + np.concatenate([[0], mapped, [count - 1]]))
        offset += count
    if offset != SMPL_NUM_VERTICES:
        raise RuntimeError(f"stand-in layout has {offset} vertices, expected {SMPL_NUM_VERTICES}")
    all_faces = np.concatenate(faces).astype(np.int64)
    if len(all_faces) != SMPL_NUM_FACES:
        raise RuntimeError(f"stand-in layout has {len(all_faces)} faces, expected {SMPL_NUM_FACES}")
    return _Topology(
        faces=all_faces,
        hidden=np.concatenate(hidden),
        part_of=np.concatenate(part_of),
        ring_t=ring_t,
        offsets=offsets,
        mirror=np.concatenate(mirror),
    )


def _frame(tangent: np.ndarray, ref_w, ref_d) -> tuple[np.ndarray, np.ndarray]:
    t = tangent / np.linalg.norm(tangent, axis=-1, keepdims=True)
    w = np.asarray(ref_w, float) - (t @ np.asarray(ref_w, float))[:, None] * t
    w /= np.linalg.norm(w, axis=-1, keepdims=True)
    d = np.asarray(ref_d, float) - (t @ np.asarray(ref_d, float))[:, None] * t
    d -= np.sum(d * w, axis=-1, keepdims=True) * w
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return w, d


def _ring_angles(n: int) -> np.ndarray:
    return 2.0 * np.pi * np.arange(n) / n


def _superellipse(theta: np.ndarray, exponent: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(theta), np.sin(theta)
    p = 2.0 / exponent
    return np.sign(c) * np.abs(c) ** p, np.sign(s) * np.abs(s) ** p


def _tube_vertices(part: _Part, frames: np.ndarray, ring_t: np.ndarray) -> tuple[np.ndarray, dict]:
    """Vertices of one (left) tube and the ring layout (centres, frames, cap info)."""
    interp = PchipInterpolator(np.arange(len(frames)), frames, axis=0)
    values = interp(ring_t)
    tangent = interp.derivative()(ring_t)[:, :3]
    centres, radii = values[:, :3], values[:, 3:5]
    w, d = _frame(tangent, part.width_ref, part.depth_ref)
    t_unit = tangent / np.linalg.norm(tangent, axis=-1, keepdims=True)

    def cap(end: int, rings: int, factor: float, outward: np.ndarray):
        length = factor * radii[end].mean()
        phi = 0.5 * np.pi * np.arange(1, rings + 1) / (rings + 1)
        c = centres[end] + outward * length * np.sin(phi)[:, None]
        r = radii[end] * np.cos(phi)[:, None]
        pole = centres[end] + outward * length
        return c, r, pole

    c0, r0, pole0 = cap(0, part.cap_rings[0], part.cap_length[0], -t_unit[0])
    c1, r1, pole1 = cap(-1, part.cap_rings[1], part.cap_length[1], t_unit[-1])
    all_c = np.concatenate([c0[::-1], centres, c1])
    all_r = np.concatenate([r0[::-1], radii, r1])
    all_w = np.concatenate([np.repeat(w[:1], len(c0), 0), w, np.repeat(w[-1:], len(c1), 0)])
    all_d = np.concatenate([np.repeat(d[:1], len(c0), 0), d, np.repeat(d[-1:], len(c1), 0)])
    cw, cd = _superellipse(_ring_angles(part.ring_size), part.exponent)
    rings = (
        all_c[:, None, :]
        + (all_r[:, 0, None, None] * cw[None, :, None]) * all_w[:, None, :]
        + (all_r[:, 1, None, None] * cd[None, :, None]) * all_d[:, None, :]
    )
    verts = np.concatenate([pole0[None], rings.reshape(-1, 3), pole1[None]])
    layout = {"centres": all_c, "w": all_w, "d": all_d, "first_body_ring": len(c0)}
    return verts, layout


def _mirror_x(points: np.ndarray) -> np.ndarray:
    return points * np.array([-1.0, 1.0, 1.0])


# Head features: (name, key-frame parameter of the ring, angle on the ring, direction
# ("d" = along the depth axis, "w" = along the width axis), amplitude m, sigma along the
# body in m, sigma around the ring in rad).
def _head_feature_sites() -> dict[str, tuple[float, float]]:
    frames = _KEYFRAMES["head"]
    t_of = lambda y: float(np.interp(y, frames[:, 1], np.arange(len(frames))))  # noqa: E731
    return {
        "nose": (t_of(0.425), 0.5 * np.pi),
        "left_eye": (t_of(0.452), 0.5 * np.pi - 0.42),
        "left_ear": (t_of(0.435), 0.0),
        "mouth": (t_of(0.392), 0.5 * np.pi),
    }


def _head_displacements(layout: dict, ring_t_body: np.ndarray, part: _Part, scale: float) -> np.ndarray:
    """Per-vertex displacement of the head tube (nose, ears, eye sockets, mouth)."""
    n = part.ring_size
    first = layout["first_body_ring"]
    rings_total = len(layout["centres"])
    # Key-frame parameter of every ring (caps clamp to the end parameters).
    t = np.concatenate(
        [np.full(first, ring_t_body[0]), ring_t_body, np.full(rings_total - first - len(ring_t_body), ring_t_body[-1])]
    )
    theta = _ring_angles(n)
    frames = _KEYFRAMES["head"]
    # Feature sites live in key-frame parameter space, measured in base-body metres.
    along = lambda tt: np.interp(tt, np.arange(len(frames)), frames[:, 1])  # noqa: E731
    metres = along(t)
    sites = _head_feature_sites()
    disp = np.zeros((rings_total, n, 3))
    w, d = layout["w"][:, None, :], layout["d"][:, None, :]

    def bump(t_site, th_site, amp, sigma_y, sigma_th, direction):
        y_site = along(t_site)
        dth = np.angle(np.exp(1j * (theta[None, :] - th_site)))
        g = np.exp(-0.5 * ((metres[:, None] - y_site) / sigma_y) ** 2 - 0.5 * (dth / sigma_th) ** 2)
        return amp * scale * g[..., None] * direction

    nose_t, nose_th = sites["nose"]
    disp += bump(nose_t, nose_th, 0.02, 0.014, 0.16, d)
    eye_t, eye_th = sites["left_eye"]
    for th in (eye_th, np.pi - eye_th):
        disp += bump(eye_t, th, -0.006, 0.01, 0.14, d)
    brow_t = eye_t + (eye_t - nose_t) * 0.8
    disp += bump(brow_t, 0.5 * np.pi, 0.004, 0.008, 0.6, d)
    ear_t, ear_th = sites["left_ear"]
    disp += bump(ear_t, ear_th, 0.013, 0.022, 0.22, w)
    disp += bump(ear_t, np.pi - ear_th, 0.013, 0.022, 0.22, -w)
    mouth_t, mouth_th = sites["mouth"]
    disp += bump(mouth_t, mouth_th, -0.003, 0.004, 0.3, d)
    return np.concatenate([np.zeros((1, 3)), disp.reshape(-1, 3), np.zeros((1, 3))])


def _vertices(measurements: dict[str, float]) -> tuple[np.ndarray, dict[str, dict]]:
    """Mesh vertices (generation order) and per-part ring layouts for the measurements."""
    topo = _topology()
    frames = _keyframes(measurements)
    verts = np.zeros((SMPL_NUM_VERTICES, 3))
    layouts = {}
    for instance, part_name in _PART_INSTANCES:
        part = _part(part_name)
        offset = topo.offsets[instance]
        if instance.startswith("right_"):
            left = instance.replace("right_", "left_")
            count = part.rings * part.ring_size + 2
            lo = topo.offsets[left]
            verts[offset : offset + count] = _mirror_x(verts[lo : lo + count])
            continue
        v, layout = _tube_vertices(part, frames[part_name], topo.ring_t[part_name])
        if part_name == "head":
            scale = measurements["head_size"] * measurements["stature"]
            v = v + _head_displacements(layout, topo.ring_t[part_name], part, scale)
        verts[offset : offset + len(v)] = v
        layouts[instance] = layout
    return verts, layouts


# ---------------------------------------------------------------------------------------
# Joint regressor, skinning weights, pose blend shapes, vertex ids
# ---------------------------------------------------------------------------------------


def _ring_index(part_name: str, t: float) -> tuple[int, float]:
    """Ring (counted from the first ring, caps included) and blend to the next one."""
    topo = _topology()
    part = _part(part_name)
    body_t = topo.ring_t[part_name]
    k = int(np.clip(np.searchsorted(body_t, t, side="right") - 1, 0, len(body_t) - 2))
    alpha = float(np.clip((t - body_t[k]) / (body_t[k + 1] - body_t[k]), 0.0, 1.0))
    return part.cap_rings[0] + k, alpha


def _joint_param(part_name: str, axis: int | None, value: float) -> float:
    if axis is None:
        return value
    frames = _KEYFRAMES[part_name]
    coords = frames[:, axis]
    order = np.argsort(coords)
    return float(np.interp(value, coords[order], np.arange(len(frames), dtype=float)[order]))


def _joint_regressor() -> scipy.sparse.csc_matrix:
    """(24, 6890) ring-average regressor (left joints mirrored to the right)."""
    topo = _topology()
    rows, cols, vals = [], [], []
    for name in SMPL24_NAMES:
        side = "left_" if name.startswith("right_") else ""
        site_name = name.replace("right_", "left_") if side else name
        part_name, axis, value = _JOINT_SITES[site_name]
        instance = part_name
        if _part(part_name).mirrored:
            instance = ("right_" if name.startswith("right_") else "left_") + part_name
        ring, alpha = _ring_index(part_name, _joint_param(part_name, axis, value))
        part = _part(part_name)
        n = part.ring_size
        base = topo.offsets[instance] + 1 + ring * n
        for r, weight in ((0, 1.0 - alpha), (1, alpha)):
            if weight <= 0.0:
                continue
            idx = base + r * n + np.arange(n)
            rows += [SMPL24_INDEX[name]] * n
            cols += list(idx)
            vals += [weight / n] * n
    matrix = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(24, SMPL_NUM_VERTICES))
    return matrix.tocsc()


def _bones(joints: np.ndarray) -> np.ndarray:
    """(24, 2, 3) bone segment of each joint: from the joint towards its child."""
    idx = SMPL24_INDEX
    child = {
        "pelvis": "spine1",
        "spine1": "spine2",
        "spine2": "spine3",
        "spine3": "neck",
        "neck": "head",
    }
    for side in ("left", "right"):
        child |= {
            f"{side}_hip": f"{side}_knee",
            f"{side}_knee": f"{side}_ankle",
            f"{side}_ankle": f"{side}_foot",
            f"{side}_collar": f"{side}_shoulder",
            f"{side}_shoulder": f"{side}_elbow",
            f"{side}_elbow": f"{side}_wrist",
            f"{side}_wrist": f"{side}_hand",
        }
    bones = np.zeros((24, 2, 3))
    for name, j in idx.items():
        bones[j, 0] = joints[j]
        if name in child:
            bones[j, 1] = joints[idx[child[name]]]
        elif name == "head":
            bones[j, 1] = joints[j] + np.array([0.0, 0.16, 0.0])
        elif name.endswith("_foot"):
            bones[j, 1] = joints[j] + np.array([0.0, -0.01, 0.07])
        elif name.endswith("_hand"):
            sign = 1.0 if name.startswith("left") else -1.0
            bones[j, 1] = joints[j] + np.array([sign * 0.08, 0.0, 0.0])
    return bones


def _segment_distance(points: np.ndarray, bones: np.ndarray) -> np.ndarray:
    """(V, J) distance of each point to each bone segment."""
    a, b = bones[:, 0], bones[:, 1]
    ab = b - a
    ap = points[:, None, :] - a[None]
    t = np.clip(np.sum(ap * ab[None], -1) / np.maximum(np.sum(ab * ab, -1), 1e-12)[None], 0.0, 1.0)
    closest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(points[:, None, :] - closest, axis=-1)


# Which joints each part may follow, with a prior weight (soft-min over bone distances).
_SKIN_CANDIDATES: dict[str, dict[str, float]] = {
    "torso": {
        "pelvis": 1.0,
        "spine1": 1.0,
        "spine2": 1.0,
        "spine3": 1.0,
        "neck": 0.3,
        "left_collar": 1.0,
        "right_collar": 1.0,
        "left_hip": 0.25,
        "right_hip": 0.25,
    },
    "head": {"spine3": 1.0, "neck": 1.0, "head": 1.0},
    "left_arm": {
        "left_collar": 1.0,
        "left_shoulder": 1.0,
        "left_elbow": 1.0,
        "left_wrist": 1.0,
        "left_hand": 1.0,
    },
    "left_leg": {"pelvis": 0.6, "left_hip": 1.0, "left_knee": 1.0, "left_ankle": 1.0},
    "left_foot": {"left_ankle": 1.0, "left_foot": 1.0},
}
_SKIN_SOFTNESS_M = 0.02
_SKIN_SMOOTHING_STEPS = 12
_POSE_BLEND_AMPLITUDE_M = 0.012


def _skinning_weights(
    verts: np.ndarray, joints: np.ndarray, part_of: np.ndarray, surface_faces: np.ndarray
) -> np.ndarray:
    """(V, 24) weights: soft-min over bone distances, then diffused along surface edges.

    Args:
        verts: (V, 3) rest vertices; joints: (24, 3) rest joints.
        part_of: (V,) part instance index of each vertex.
        surface_faces: (F', 3) the visible faces (diffusion never crosses parts).
    """
    bones = _bones(joints)
    dist = _segment_distance(verts, bones)
    weights = np.zeros((SMPL_NUM_VERTICES, 24))
    for index, (instance, _) in enumerate(_PART_INSTANCES):
        mask = part_of == index
        key = instance.replace("right_", "left_")
        candidates = _SKIN_CANDIDATES[key]
        names = list(candidates)
        if instance.startswith("right_"):
            names = [n.replace("left_", "right_") for n in names]
        cols = np.array([SMPL24_INDEX[n] for n in names])
        prior = np.array(list(candidates.values()))
        d = dist[mask][:, cols]
        logits = -(d - d.min(axis=1, keepdims=True)) / _SKIN_SOFTNESS_M + np.log(prior)
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        weights[np.ix_(mask, cols)] = w
    edges = np.concatenate([surface_faces[:, [0, 1]], surface_faces[:, [1, 2]], surface_faces[:, [2, 0]]])
    adjacency = scipy.sparse.coo_matrix(
        (np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(verts),) * 2
    ).tocsr()
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    mean_of_neighbours = scipy.sparse.diags(1.0 / np.asarray(adjacency.sum(axis=1)).ravel()) @ adjacency
    for _ in range(_SKIN_SMOOTHING_STEPS):
        weights = 0.5 * weights + 0.5 * (mean_of_neighbours @ weights)
    weights[weights < 2e-3] = 0.0
    return weights / weights.sum(axis=1, keepdims=True)


def _vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = verts[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(verts)
    for k in range(3):
        np.add.at(normals, faces[:, k], fn)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _pose_blend_shapes(weights: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """(6890, 3, 207) outward bulge ``A 4 w_j w_parent (1 - cos angle_j)`` per joint.

    ``1 - cos(angle) = -trace(R - I) / 2``, so the shape is linear in SMPL's pose feature
    (the 9 entries of ``R_j - I`` of joints 1..23, row-major).
    """
    posedirs = np.zeros((SMPL_NUM_VERTICES, 3, 23, 9), dtype=np.float32)
    parents = np.array(SMPL24_PARENTS[1:])
    amount = _POSE_BLEND_AMPLITUDE_M * 4.0 * weights[:, 1:] * weights[:, parents]  # (V, 23)
    bulge = (-0.5 * amount[:, None, :] * normals[:, :, None]).astype(np.float32)
    for diag in (0, 4, 8):
        posedirs[:, :, :, diag] = bulge
    return posedirs.reshape(SMPL_NUM_VERTICES, 3, 207)


def _special_vertices(verts: np.ndarray) -> dict[str, int]:
    """Generation-order index of the vertices that must sit at SMPL's vertex ids."""
    topo = _topology()
    picks: dict[str, int] = {}

    def ring_vertex(instance: str, ring: int, theta: float) -> int:
        part = _part(instance.replace("left_", "").replace("right_", ""))
        n = part.ring_size
        i = int(np.round(theta / (2 * np.pi) * n)) % n
        return topo.offsets[instance] + 1 + ring * n + i

    def first_ring(part_name: str, t: float) -> int:
        ring, alpha = _ring_index(part_name, t)
        return ring + (1 if alpha > 0.5 else 0)

    sites = _head_feature_sites()
    nose_t, _ = sites["nose"]
    head_ring = first_ring("head", nose_t)
    # The nose tip: the most forward vertex on the midline around the nose site.
    candidates = [ring_vertex("head", head_ring + dr, 0.5 * np.pi) for dr in (-1, 0, 1)]
    picks["nose"] = max(candidates, key=lambda v: verts[v, 2])
    eye_t, eye_th = sites["left_eye"]
    picks["left_eye"] = ring_vertex("head", first_ring("head", eye_t), eye_th)
    ear_t, ear_th = sites["left_ear"]
    picks["left_ear"] = ring_vertex("head", first_ring("head", ear_t), ear_th)

    foot = _part("foot")
    last_body = foot.rings - foot.cap_rings[1] - 1
    picks["left_big_toe"] = ring_vertex("left_foot", last_body, np.pi)  # medial side
    picks["left_small_toe"] = ring_vertex("left_foot", last_body, 0.0)  # lateral side
    picks["left_heel"] = ring_vertex("left_foot", 0, 1.5 * np.pi)  # back, lower half

    arm = _part("arm")
    tip_ring = arm.rings - arm.cap_rings[1] + 1
    palm_ring = first_ring("arm", _joint_param("arm", 0, 0.74))
    picks["left_thumb_tip"] = ring_vertex("left_arm", palm_ring, 0.5 * np.pi)
    picks["left_index_tip"] = ring_vertex("left_arm", tip_ring, 0.5 * np.pi)
    picks["left_middle_tip"] = topo.offsets["left_arm"] + 1 + arm.rings * arm.ring_size  # pole
    picks["left_ring_tip"] = ring_vertex("left_arm", tip_ring, 1.5 * np.pi)
    picks["left_pinky_tip"] = ring_vertex("left_arm", tip_ring - 2, 1.5 * np.pi)

    for name in list(picks):
        if name.startswith("left_"):
            picks[name.replace("left_", "right_")] = int(topo.mirror[picks[name]])
    return picks


@cache
def _permutation() -> np.ndarray:
    """``perm[new_id] = generation index``: puts the special vertices at SMPL's ids."""
    base, _ = _vertices({name: 1.0 for name in _MEASUREMENTS})
    picks = _special_vertices(base)
    perm = np.full(SMPL_NUM_VERTICES, -1, dtype=np.int64)
    for name, vid in SMPLX45_EXTRA_VERTEX_IDS.items():
        perm[vid] = picks[name]
    placed = set(perm[perm >= 0].tolist())
    if len(placed) != len(SMPLX45_EXTRA_VERTEX_IDS):
        raise RuntimeError("stand-in special vertices collide")
    rest = np.array([v for v in range(SMPL_NUM_VERTICES) if v not in placed], dtype=np.int64)
    perm[perm < 0] = rest
    return perm


def _measurements(gender: str, beta_offset: dict[str, float] | None = None) -> dict[str, float]:
    m = {name: 1.0 for name in _MEASUREMENTS}
    m.update(_GENDER_MEASUREMENTS[gender])
    for name, delta in (beta_offset or {}).items():
        m[name] *= 1.0 + delta
    return m


@cache
def _stature(gender: str) -> float:
    """Stature factor that makes the gender's template ``STANDIN_HEIGHT_M`` tall."""
    verts, _ = _vertices(_measurements(gender))
    height = verts[:, 1].max() - verts[:, 1].min()
    return STANDIN_HEIGHT_M[gender] / height


def _f32(array: np.ndarray) -> np.ndarray:
    """Round to float32 (what smplx keeps) but store float64 like the official files."""
    return np.asarray(array, dtype=np.float32).astype(np.float64)


def build_standin(gender: str) -> dict[str, object]:
    """The arrays of the stand-in body model of ``gender``, as in SMPL's ``.pkl``.

    Returns:
        dict with ``v_template`` (6890, 3) m, ``shapedirs`` (6890, 3, 10) m,
        ``posedirs`` (6890, 3, 207) m, ``J_regressor`` (24, 6890) scipy CSC,
        ``weights`` (6890, 24), ``kintree_table`` (2, 24), ``f`` (13776, 3) uint32,
        ``J`` (24, 3) rest joints in m, ``vert_sym_idxs`` (6890,) mirror vertex,
        ``bs_style``, ``bs_type`` and ``vid2mesh_standin`` (generator info).
    """
    if gender not in GENDERS:
        raise ValueError(f"unknown gender {gender!r}; use one of {', '.join(GENDERS)}")
    topo = _topology()
    perm = _permutation()
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))

    def shaped(offset: dict[str, float] | None) -> np.ndarray:
        m = _measurements(gender, offset)
        m["stature"] *= _stature(gender)
        return _vertices(m)[0]

    template = shaped(None)
    shapedirs = np.zeros((SMPL_NUM_VERTICES, 3, len(_SHAPE_COMPONENTS)))
    for k, component in enumerate(_SHAPE_COMPONENTS):
        plus = shaped({n: _FD_STEP * v for n, v in component.items()})
        minus = shaped({n: -_FD_STEP * v for n, v in component.items()})
        shapedirs[:, :, k] = (plus - minus) / (2.0 * _FD_STEP)

    # Vertex order permutation (generation index -> SMPL id) before the heavy arrays.
    template, shapedirs = template[perm], shapedirs[perm]
    faces = inverse[topo.faces]
    mirror = inverse[topo.mirror[perm]]
    regressor = _joint_regressor()[:, perm].tocsc()
    v_template = _f32(template)
    regressor = scipy.sparse.csc_matrix(
        (_f32(regressor.data), regressor.indices, regressor.indptr), shape=regressor.shape
    )
    joints = regressor @ v_template
    weights = _skinning_weights(v_template, joints, topo.part_of[perm], faces[~topo.hidden])
    posedirs = _pose_blend_shapes(weights, _vertex_normals(v_template, faces))
    kintree = np.array([[4294967295 if p < 0 else p for p in SMPL24_PARENTS], list(range(24))], dtype=np.int64)
    return {
        "v_template": v_template,
        "shapedirs": _f32(shapedirs),
        "posedirs": posedirs,
        "J_regressor": regressor,
        "weights": _f32(weights),
        "kintree_table": kintree,
        "f": faces.astype(np.uint32),
        "J": np.asarray(joints),
        "vert_sym_idxs": mirror.astype(np.int64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        "vid2mesh_standin": f"synthetic stand-in body model, generator version {STANDIN_VERSION}, gender {gender}",
    }
