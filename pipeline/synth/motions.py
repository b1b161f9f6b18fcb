"""Procedural motion library for the synthetic corpus: SMPL body poses over time.

Every motion is a deterministic function of the frame times and a random generator
(tempo, amplitude, side, timing and a little idle wobble vary per person). Joint angles
are written in anatomical units (degrees of flexion, elevation, ...) for the *left* side
and mirrored for the right, clipped to :data:`JOINT_LIMITS`, and only then turned into
SMPL's local axis-angle rotations. SMPL rest frame: y up, the body faces +z and its left
is +x (T-pose), so e.g. hip flexion is a negative rotation about x and knee flexion a
positive one.

Root motion is returned separately (heading, walking speed, lift off the ground); the
corpus places the body in the scene (``pipeline.synth.corpus``).

The library is split for honest evaluation: :data:`TUNING_MOTIONS` may be used to tune the
pipeline, :data:`HELDOUT_MOTIONS` only to evaluate it (the corpus records the split).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = [
    "BACKGROUND_MOTIONS",
    "HELDOUT_MOTIONS",
    "JOINT_LIMITS",
    "LABEL_MOTIONS",
    "MOTIONS",
    "MotionSample",
    "TUNING_MOTIONS",
    "motion_split",
    "rot_x",
    "rot_y",
    "rot_z",
    "sample_motion",
]

DEG = np.pi / 180.0

# Anatomical ranges in degrees (left side; the right side is the mirror image). Spine
# values are totals over spine1..3, neck values totals over neck + head.
JOINT_LIMITS: dict[str, tuple[float, float]] = {
    "shoulder_elevation": (-10.0, 180.0),  # arm raised sideways; 0 = hanging, 90 = T-pose
    "shoulder_flexion": (-50.0, 180.0),  # arm raised forwards
    "shoulder_twist": (-95.0, 60.0),  # about the upper-arm axis
    "elbow_flexion": (0.0, 150.0),
    "collar_shrug": (-10.0, 25.0),
    "wrist_flexion": (-60.0, 60.0),
    "hip_flexion": (-30.0, 125.0),
    "hip_abduction": (-20.0, 50.0),
    "hip_twist": (-35.0, 35.0),
    "knee_flexion": (0.0, 150.0),
    "ankle_dorsiflexion": (-45.0, 30.0),
    "spine_bend": (-25.0, 90.0),  # forwards
    "spine_lateral": (-35.0, 35.0),  # towards the left
    "spine_twist": (-40.0, 40.0),
    "neck_nod": (-40.0, 50.0),
    "neck_turn": (-70.0, 70.0),
    "neck_tilt": (-30.0, 30.0),
}

_SIDE_DOFS = (
    "shoulder_elevation",
    "shoulder_flexion",
    "shoulder_twist",
    "elbow_flexion",
    "collar_shrug",
    "wrist_flexion",
    "hip_flexion",
    "hip_abduction",
    "hip_twist",
    "knee_flexion",
    "ankle_dorsiflexion",
)
_MID_DOFS = ("spine_bend", "spine_lateral", "spine_twist", "neck_nod", "neck_turn", "neck_tilt")

# SMPL joint indices.
_J = {
    "pelvis": 0, "left_hip": 1, "right_hip": 2, "spine1": 3, "left_knee": 4, "right_knee": 5,
    "spine2": 6, "left_ankle": 7, "right_ankle": 8, "spine3": 9, "left_foot": 10,
    "right_foot": 11, "neck": 12, "left_collar": 13, "right_collar": 14, "head": 15,
    "left_shoulder": 16, "right_shoulder": 17, "left_elbow": 18, "right_elbow": 19,
    "left_wrist": 20, "right_wrist": 21, "left_hand": 22, "right_hand": 23,
}  # fmt: skip


@dataclass(frozen=True)
class MotionSample:
    """One person's motion over the frames of a clip.

    Attributes:
        name: motion name (the clip label for the main actor).
        body_pose: (T, 69) SMPL body pose (joints 1..23), axis-angle radians.
        heading: (T,) yaw about the body's vertical axis relative to the start, radians;
            positive turns the person to their left.
        speed: (T,) m/s walked along the current heading.
        lift: (T,) metres between the lowest body point and the ground (jumps).
        pin_feet: keep the supporting foot in place on the ground (in-place motions).
        angles: anatomical angles, degrees: ``"<side>_<dof>"`` / ``"<dof>"`` -> (T,),
            after clipping to :data:`JOINT_LIMITS`.
        props: scene props the motion needs, e.g. ``("stool",)`` for sitting down.
        prop_body_pose: (69,) body pose at which props are fitted (the seated pose).
    """

    name: str
    body_pose: np.ndarray
    heading: np.ndarray
    speed: np.ndarray
    lift: np.ndarray
    pin_feet: bool
    angles: dict[str, np.ndarray] = field(default_factory=dict)
    props: tuple[str, ...] = ()
    prop_body_pose: np.ndarray | None = None


def rot_x(a: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations about x by angles a (radians)."""
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([o, z, z, z, c, -s, z, s, c], axis=-1).reshape(*a.shape, 3, 3)


def rot_y(a: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations about y by angles a (radians)."""
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([c, z, s, z, o, z, -s, z, c], axis=-1).reshape(*a.shape, 3, 3)


def rot_z(a: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations about z by angles a (radians)."""
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([c, -s, z, s, c, z, z, z, o], axis=-1).reshape(*a.shape, 3, 3)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _bump(x: np.ndarray) -> np.ndarray:
    """Smooth 0 -> 1 -> 0 over x in [0, 1], 0 outside."""
    x = np.clip(x, 0.0, 1.0)
    return np.sin(np.pi * x) ** 2


class _Rig:
    """Anatomical angles (degrees) per frame; built into SMPL rotations by :meth:`build`."""

    def __init__(self, t: np.ndarray, rng: np.random.Generator, idle: float = 1.0):
        self.t = t
        self.rng = rng
        n = t.shape[0]
        self.side = {s: {d: np.zeros(n) for d in _SIDE_DOFS} for s in ("left", "right")}
        self.mid = {d: np.zeros(n) for d in _MID_DOFS}
        # Relaxed standing posture with a little life in it.
        for s in ("left", "right"):
            d = self.side[s]
            d["shoulder_elevation"] += rng.uniform(6, 14) + idle * self.wobble(3.0)
            d["shoulder_flexion"] += rng.uniform(0, 10) + idle * self.wobble(4.0)
            d["elbow_flexion"] += rng.uniform(10, 25) + idle * self.wobble(5.0)
            d["hip_flexion"] += rng.uniform(0, 4)
            d["hip_abduction"] += rng.uniform(2, 6)
            d["knee_flexion"] += rng.uniform(2, 6)
            d["hip_twist"] += rng.uniform(0, 8)
        self.mid["spine_bend"] += rng.uniform(-2, 4) + idle * self.wobble(2.0)
        self.mid["spine_lateral"] += idle * self.wobble(2.0)
        self.mid["neck_nod"] += rng.uniform(-5, 8) + idle * self.wobble(5.0)
        self.mid["neck_turn"] += idle * self.wobble(15.0, (0.05, 0.3))

    def wobble(self, amplitude: float, freq: tuple[float, float] = (0.1, 0.6)) -> np.ndarray:
        """Smooth random signal in [-amplitude, amplitude] (sum of three sines)."""
        out = np.zeros_like(self.t)
        for _ in range(3):
            f = self.rng.uniform(*freq)
            out += np.sin(2 * np.pi * f * self.t + self.rng.uniform(0, 2 * np.pi))
        return amplitude * out / 3.0

    def both(self, dof: str, left: np.ndarray | float, right: np.ndarray | float, add: bool = True) -> None:
        for s, v in (("left", left), ("right", right)):
            self.side[s][dof] = self.side[s][dof] + v if add else np.broadcast_to(v, self.t.shape).astype(float)

    def clipped(self) -> dict[str, np.ndarray]:
        out = {}
        for s, dofs in self.side.items():
            for d, v in dofs.items():
                lo, hi = JOINT_LIMITS[d]
                out[f"{s}_{d}"] = np.clip(v, lo, hi)
        for d, v in self.mid.items():
            lo, hi = JOINT_LIMITS[d]
            out[d] = np.clip(v, lo, hi)
        return out

    def build(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Returns ((T, 69) axis-angle body pose, clipped anatomical angles)."""
        a = self.clipped()
        n = self.t.shape[0]
        rot = np.tile(np.eye(3), (n, 24, 1, 1))
        r = {k: v * DEG for k, v in a.items()}
        for s, sign in (("left", 1.0), ("right", -1.0)):
            # Mirroring across the sagittal plane keeps x-rotations and flips y/z ones.
            p = f"{s}_"
            rot[:, _J[p + "hip"]] = rot_x(-r[p + "hip_flexion"]) @ rot_z(sign * r[p + "hip_abduction"]) @ rot_y(
                -sign * r[p + "hip_twist"]
            )
            rot[:, _J[p + "knee"]] = rot_x(r[p + "knee_flexion"])
            rot[:, _J[p + "ankle"]] = rot_x(-r[p + "ankle_dorsiflexion"])
            rot[:, _J[p + "collar"]] = rot_z(sign * r[p + "collar_shrug"])
            rot[:, _J[p + "shoulder"]] = (
                rot_x(-r[p + "shoulder_flexion"])
                @ rot_z(sign * (r[p + "shoulder_elevation"] - np.pi / 2))
                @ rot_x(r[p + "shoulder_twist"])
            )
            rot[:, _J[p + "elbow"]] = rot_y(-sign * r[p + "elbow_flexion"])
            rot[:, _J[p + "wrist"]] = rot_y(-sign * r[p + "wrist_flexion"])
        for joint, share in (("spine1", 0.4), ("spine2", 0.3), ("spine3", 0.3)):
            rot[:, _J[joint]] = (
                rot_x(share * r["spine_bend"]) @ rot_z(-share * r["spine_lateral"]) @ rot_y(share * r["spine_twist"])
            )
        for joint in ("neck", "head"):
            rot[:, _J[joint]] = rot_x(0.5 * r["neck_nod"]) @ rot_y(0.5 * r["neck_turn"]) @ rot_z(-0.5 * r["neck_tilt"])
        body = Rotation.from_matrix(rot[:, 1:].reshape(-1, 3, 3)).as_rotvec().reshape(n, 69)
        return body, a


@dataclass
class _Root:
    heading: np.ndarray
    speed: np.ndarray
    lift: np.ndarray
    pin_feet: bool = True
    props: tuple[str, ...] = ()
    prop_rig: _Rig | None = None


def _still(t: np.ndarray, rig: _Rig, sway_deg: float = 8.0) -> _Root:
    return _Root(heading=rig.wobble(sway_deg * DEG, (0.03, 0.2)), speed=np.zeros_like(t), lift=np.zeros_like(t))


def _gait(rig: _Rig, phase: np.ndarray, hip: float, knee: float, arm: float, elbow: float) -> None:
    for s, off in (("left", 0.0), ("right", np.pi)):
        p = phase + off
        d = rig.side[s]
        d["hip_flexion"] += 0.25 * hip + hip * np.sin(p)
        # Knee flexes most in early swing, just before the thigh passes the vertical.
        d["knee_flexion"] += 6.0 + knee * np.clip(np.cos(p + 0.12 * np.pi), 0, None) ** 2
        d["ankle_dorsiflexion"] += 8.0 * np.sin(p + 0.5 * np.pi)
        d["shoulder_flexion"] += -arm * np.sin(p)
        d["elbow_flexion"] += elbow + 0.4 * elbow * (1 + np.sin(p))
    rig.mid["spine_twist"] += 0.25 * arm * np.sin(phase)


def _walking(t, rng, rig):
    f = rng.uniform(0.82, 1.0)  # strides (two steps) per second
    stride = rng.uniform(1.25, 1.6)
    phase = 2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)
    _gait(rig, phase, hip=rng.uniform(18, 25), knee=rng.uniform(45, 60), arm=rng.uniform(12, 25), elbow=rng.uniform(8, 20))
    curve = rng.choice([0.0, rng.uniform(-0.25, 0.25)])
    return _Root(heading=curve * t, speed=np.full_like(t, stride * f), lift=np.zeros_like(t), pin_feet=False)


def _running(t, rng, rig):
    f = rng.uniform(1.3, 1.5)
    stride = rng.uniform(1.9, 2.4)
    phase = 2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)
    _gait(rig, phase, hip=rng.uniform(32, 40), knee=rng.uniform(80, 100), arm=rng.uniform(30, 40), elbow=rng.uniform(60, 75))
    rig.both("knee_flexion", 12.0, 12.0)
    rig.mid["spine_bend"] += rng.uniform(6, 14)
    rig.both("shoulder_elevation", 6.0, 6.0)
    lift = 0.05 * np.clip(np.sin(2 * phase), 0, None)
    return _Root(heading=rng.uniform(-0.15, 0.15) * t, speed=np.full_like(t, stride * f), lift=lift, pin_feet=False)


def _turning(t, rng, rig):
    heading = np.zeros_like(t)
    stepping = np.zeros_like(t)
    direction = rng.choice([-1.0, 1.0])
    start = rng.uniform(0.0, 0.8)
    while start < t[-1] + 1e-9:
        dur = rng.uniform(0.8, 1.5)
        angle = direction * rng.uniform(60, 180) * DEG
        u = (t - start) / dur
        heading += angle * _smoothstep(u)
        stepping += _bump(u)
        start += dur + rng.uniform(0.3, 1.5)
        if rng.random() < 0.6:
            direction = -direction
    phase = 2 * np.pi * rng.uniform(1.4, 1.8) * t
    for s, off in (("left", 0.0), ("right", np.pi)):
        lifted = np.clip(np.sin(phase + off), 0, None) * stepping
        rig.side[s]["hip_flexion"] += 15 * lifted
        rig.side[s]["knee_flexion"] += 30 * lifted
    # The head leads the turn.
    if t.size > 1:
        rate = np.gradient(heading, t)
        rig.mid["neck_turn"] += 25.0 * rate / max(np.abs(rate).max(), 1e-6)
    return _Root(heading=heading, speed=np.zeros_like(t), lift=np.zeros_like(t))


def _bursts(t, rng, on=(1.5, 3.0), off=(0.5, 2.0), ramp=0.3) -> np.ndarray:
    env = np.zeros_like(t)
    start = rng.uniform(0.0, 0.6)
    while start < t[-1] + 1e-9:
        length = rng.uniform(*on)
        env = np.maximum(env, _smoothstep((t - start) / ramp) * (1 - _smoothstep((t - start - length) / ramp)))
        start += length + rng.uniform(*off)
    return env


def _waving(t, rng, rig):
    side = rng.choice(["left", "right"])
    e = _bursts(t, rng)
    if t[-1] - t[0] < 1.5:  # short clips: wave throughout
        e = np.maximum(e, 0.9)
    d = rig.side[side]
    f = rng.uniform(1.6, 2.6)
    d["shoulder_elevation"] = d["shoulder_elevation"] * (1 - e) + e * rng.uniform(100, 125)
    d["shoulder_twist"] += -90.0 * e
    d["shoulder_flexion"] += e * rng.uniform(5, 25)
    d["elbow_flexion"] = d["elbow_flexion"] * (1 - e) + e * (85 + 30 * np.sin(2 * np.pi * f * t))
    rig.mid["neck_tilt"] += (5 if side == "left" else -5) * e
    root = _still(t, rig)
    return root


def _squatting(t, rng, rig):
    period = rng.uniform(2.0, 3.2)
    depth = rng.uniform(0.7, 1.0)
    d = depth * ((1 - np.cos(2 * np.pi * (t / period + rng.uniform(0, 1)))) / 2) ** 1.3
    rig.both("hip_flexion", 100 * d, 100 * d)
    rig.both("knee_flexion", 125 * d, 125 * d)
    rig.both("ankle_dorsiflexion", 25 * d, 25 * d)
    rig.both("hip_abduction", 8 * d, 8 * d)
    rig.mid["spine_bend"] += 28 * d
    arms = rng.uniform(60, 90)
    rig.both("shoulder_flexion", arms * d, arms * d)
    rig.both("elbow_flexion", -10 * d, -10 * d)
    return _still(t, rig, 4.0)


def _jumping(t, rng, rig):
    period = rng.uniform(1.1, 1.7)
    height = rng.uniform(0.15, 0.38)
    u = np.mod(t / period + rng.uniform(0, 1), 1.0)
    crouch = _bump((u - 0.1) / 0.32) + 0.6 * _bump((u - 0.72) / 0.25)
    air = (u > 0.42) & (u < 0.72)
    v = (u - 0.42) / 0.30
    lift = np.where(air, height * 4 * v * (1 - v), 0.0)
    arms_up = _bump((u - 0.35) / 0.45)
    rig.both("hip_flexion", 65 * crouch + 20 * air, 65 * crouch + 20 * air)
    rig.both("knee_flexion", 85 * crouch + 30 * air, 85 * crouch + 30 * air)
    rig.both("ankle_dorsiflexion", 22 * crouch - 25 * air, 22 * crouch - 25 * air)
    rig.mid["spine_bend"] += 30 * crouch
    rig.both("shoulder_flexion", -35 * crouch + 150 * arms_up, -35 * crouch + 150 * arms_up)
    return _Root(heading=rig.wobble(5 * DEG, (0.05, 0.2)), speed=np.zeros_like(t), lift=lift)


def _jumping_jacks(t, rng, rig):
    period = rng.uniform(0.8, 1.1)
    ph = 2 * np.pi * (t / period + rng.uniform(0, 1))
    a = (1 - np.cos(ph)) / 2
    rig.both("shoulder_elevation", 155 * a, 155 * a)
    rig.both("elbow_flexion", -5 * a, -5 * a)
    rig.both("hip_abduction", 20 * a, 20 * a)
    rig.both("knee_flexion", 12 * np.abs(np.sin(ph)), 12 * np.abs(np.sin(ph)))
    lift = 0.06 * np.clip(np.sin(2 * ph), 0, None)
    return _Root(heading=rig.wobble(4 * DEG, (0.05, 0.2)), speed=np.zeros_like(t), lift=lift)


def _dancing(t, rng, rig):
    beat = rng.uniform(100, 132) / 60.0
    b = 2 * np.pi * beat * t + rng.uniform(0, 2 * np.pi)
    bounce = (1 - np.cos(b)) / 2
    rig.both("knee_flexion", 14 * bounce, 14 * bounce)
    rig.both("hip_flexion", 8 * bounce, 8 * bounce)
    rig.mid["spine_lateral"] += 12 * np.sin(b / 2)
    rig.both("hip_abduction", 6 * np.clip(np.sin(b / 2), 0, None), 6 * np.clip(-np.sin(b / 2), 0, None))
    rig.mid["neck_nod"] += 8 * np.sin(b)
    style = rng.integers(3)
    if style == 0:  # disco: alternate pointing up and down across the body
        up = _smoothstep((np.sin(b / 2) + 0.3) / 0.6)
        rig.both("shoulder_elevation", 20 + 120 * up, 25 + 30 * (1 - up))
        rig.both("shoulder_flexion", 20 * (1 - up), 40 * up)
        rig.both("elbow_flexion", -5, 70 * up)
    elif style == 1:  # arm waves
        rig.both("shoulder_elevation", 75 + 45 * np.sin(b / 2), 75 - 45 * np.sin(b / 2))
        rig.both("elbow_flexion", 25 + 25 * np.sin(b), 25 - 25 * np.sin(b))
    else:  # hip-hop: pumping bent arms
        rig.both("shoulder_flexion", 50 + 30 * np.sin(b), 50 - 30 * np.sin(b))
        rig.both("elbow_flexion", 70 + 25 * np.sin(b), 70 - 25 * np.sin(b))
        rig.mid["spine_bend"] += 8 + 8 * bounce
    heading = 30 * DEG * np.sin(2 * np.pi * t / rng.uniform(4, 8) + rng.uniform(0, 2 * np.pi))
    return _Root(heading=heading, speed=np.zeros_like(t), lift=np.zeros_like(t))


def _sit_profile(t, rng):
    duration = t[-1] - t[0]
    start = t[0] + rng.uniform(0.1, 0.3) * max(duration, 1.0) * 0.5
    sit_len = rng.uniform(1.1, 1.7)
    s = _smoothstep((t - start) / sit_len)
    lean = _bump((t - start) / sit_len)
    stand = start + sit_len + rng.uniform(1.5, 3.5)
    if stand + sit_len < t[-1] and rng.random() < 0.6:
        s = s - _smoothstep((t - stand) / sit_len)
        lean = lean + _bump((t - stand) / sit_len)
    return s, lean


def _seat(rig, s, lean):
    rig.both("hip_flexion", 88 * s, 88 * s)
    rig.both("knee_flexion", 92 * s, 92 * s)
    rig.both("hip_abduction", 6 * s, 6 * s)
    rig.mid["spine_bend"] += 35 * lean + 5 * s
    rig.both("shoulder_flexion", 30 * s + 25 * lean, 30 * s + 25 * lean)
    rig.both("elbow_flexion", 35 * s, 35 * s)


def _sitting_down(t, rng, rig):
    s, lean = _sit_profile(t, rng)
    _seat(rig, s, lean)
    seated = _Rig(np.zeros(1), np.random.default_rng(0), idle=0.0)
    _seat(seated, np.ones(1), np.zeros(1))
    root = _still(t, rig, 3.0)
    root.props = ("stool",)
    root.prop_rig = seated
    return root


def _boxing(t, rng, rig):
    stance = rng.uniform(0.8, 1.2)
    rig.both("shoulder_flexion", 45 * stance, 45 * stance)
    rig.both("shoulder_elevation", 20, 20)
    rig.both("elbow_flexion", 110, 110, add=False)
    rig.both("knee_flexion", 14, 14)
    rig.both("hip_flexion", 12, 12)
    rig.mid["neck_nod"] += 10
    punch_t = rng.uniform(0.1, 0.6)
    side = rng.integers(2)
    while punch_t < t[-1]:
        u = (t - punch_t) / rng.uniform(0.28, 0.4)
        p = _bump(u)
        s = ("left", "right")[side]
        rig.side[s]["shoulder_flexion"] += 45 * p
        rig.side[s]["elbow_flexion"] -= 105 * p
        rig.side[s]["shoulder_elevation"] -= 10 * p
        rig.mid["spine_twist"] += (-15 if s == "left" else 15) * p
        punch_t += rng.uniform(0.35, 1.0)
        side = 1 - side if rng.random() < 0.75 else side
    bounce = np.sin(2 * np.pi * rng.uniform(1.5, 2.2) * t)
    rig.both("knee_flexion", 5 * bounce, 5 * bounce)
    return _still(t, rig, 10.0)


def _kicking(t, rng, rig):
    kick_t = rng.uniform(0.1, 0.5)
    leg = rng.integers(2)
    while kick_t < t[-1]:
        dur = rng.uniform(0.6, 0.9)
        u = (t - kick_t) / dur
        k = _bump(u)
        ext = np.exp(-(((u - 0.5) / 0.12) ** 2)) * (u > 0) * (u < 1)
        s = ("left", "right")[leg]
        other = ("right", "left")[leg]
        rig.side[s]["hip_flexion"] += rng.uniform(60, 95) * k
        rig.side[s]["knee_flexion"] += 75 * k * (1 - ext)
        rig.side[s]["ankle_dorsiflexion"] -= 20 * k
        rig.side[other]["knee_flexion"] += 12 * k
        rig.both("shoulder_elevation", 35 * k, 35 * k)
        rig.mid["spine_bend"] -= 12 * k
        kick_t += dur + rng.uniform(0.5, 1.2)
        leg = 1 - leg if rng.random() < 0.5 else leg
    return _still(t, rig, 5.0)


def _bowing(t, rng, rig):
    period = rng.uniform(2.5, 4.0)
    depth = rng.uniform(40, 75)
    u = np.mod(t / period + rng.uniform(0, 1), 1.0)
    b = _smoothstep(u / 0.3) * (1 - _smoothstep((u - 0.55) / 0.3))
    rig.mid["spine_bend"] += 0.65 * depth * b
    rig.both("hip_flexion", 0.35 * depth * b, 0.35 * depth * b)
    rig.both("shoulder_flexion", 0.9 * depth * b, 0.9 * depth * b)
    rig.mid["neck_nod"] += 12 * b
    return _still(t, rig, 4.0)


def _stretching(t, rng, rig):
    period = rng.uniform(4.0, 6.0)
    a = _smoothstep((1 - np.cos(2 * np.pi * (t / period + rng.uniform(0, 1)))) / 2 * 1.4)
    if rng.random() < 0.5:  # arms overhead and side bends
        rig.both("shoulder_elevation", 160 * a, 160 * a)
        rig.mid["spine_lateral"] += 25 * a * np.sin(2 * np.pi * t / rng.uniform(2.5, 4.0))
    else:  # reach forwards and up
        rig.both("shoulder_flexion", 170 * a, 170 * a)
        rig.mid["spine_bend"] -= 10 * a
    rig.both("elbow_flexion", -15 * a, -15 * a)
    return _still(t, rig, 4.0)


def _standing(t, rng, rig):
    # Weight shifts and looking around (background people).
    rig.mid["neck_turn"] += rig.wobble(25.0, (0.05, 0.2))
    shift = rig.wobble(1.0, (0.05, 0.15))
    rig.both("knee_flexion", 6 * np.clip(shift, 0, None), 6 * np.clip(-shift, 0, None))
    rig.mid["spine_lateral"] += 4 * shift
    return _still(t, rig, 15.0)


MOTIONS: dict[str, Callable[[np.ndarray, np.random.Generator, _Rig], _Root]] = {
    "walking": _walking,
    "running": _running,
    "turning": _turning,
    "waving": _waving,
    "squatting": _squatting,
    "jumping": _jumping,
    "jumping_jacks": _jumping_jacks,
    "dancing": _dancing,
    "sitting_down": _sitting_down,
    "boxing": _boxing,
    "kicking": _kicking,
    "bowing": _bowing,
    "stretching": _stretching,
    "standing": _standing,
}
"""Every motion of the library, by name."""

TUNING_MOTIONS: tuple[str, ...] = ("walking", "waving", "squatting", "jumping", "dancing", "boxing", "stretching")
"""Labels whose clips may be used to tune the pipeline."""

HELDOUT_MOTIONS: tuple[str, ...] = ("running", "turning", "jumping_jacks", "sitting_down", "kicking", "bowing")
"""Labels held out for evaluation only."""

LABEL_MOTIONS: tuple[str, ...] = TUNING_MOTIONS + HELDOUT_MOTIONS
"""Motions that can be a clip's label (every motion but the background-only ones)."""

BACKGROUND_MOTIONS: tuple[str, ...] = ("standing", "walking")
"""What bystanders do."""


def motion_split() -> dict[str, list[str]]:
    """The recorded split: ``{"tuning": [...], "heldout": [...], "background": [...]}``."""
    return {"tuning": list(TUNING_MOTIONS), "heldout": list(HELDOUT_MOTIONS), "background": ["standing"]}


def sample_motion(name: str, times: np.ndarray, rng: np.random.Generator) -> MotionSample:
    """Sample one person's motion.

    Args:
        name: a key of :data:`MOTIONS`.
        times: (T,) frame times, seconds.
        rng: source of the per-person variation.

    Returns:
        The :class:`MotionSample` (poses within :data:`JOINT_LIMITS`).
    """
    if name not in MOTIONS:
        raise ValueError(f"unknown motion {name!r}; choose one of {sorted(MOTIONS)}.")
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"times must be a non-empty (T,) array of seconds, got shape {t.shape}.")
    rig = _Rig(t, rng)
    root = MOTIONS[name](t, rng, rig)
    body, angles = rig.build()
    prop_pose = root.prop_rig.build()[0][0] if root.prop_rig is not None else None
    return MotionSample(
        name=name,
        body_pose=body,
        heading=np.asarray(root.heading, dtype=np.float64),
        speed=np.asarray(root.speed, dtype=np.float64),
        lift=np.asarray(root.lift, dtype=np.float64),
        pin_feet=root.pin_feet,
        angles=angles,
        props=root.props,
        prop_body_pose=prop_pose,
    )
