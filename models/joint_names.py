"""Named joint sets: SMPL-24, smplx's 45 SMPL output joints and COCO-17 as seen from SMPL.

Every joint order used in the project is built here from name lists (smplx
``joint_names.py`` / ``vertex_ids.py`` style) and checked by ``tests/models/test_joint_names.py``.

* ``SMPL24_*``: the 24 joints of the SMPL kinematic tree, in SMPL's order.
* ``SMPLX45_NAMES``: the 45 joints ``smplx.SMPL(...)(...).joints`` returns: the 24 SMPL joints,
  then the vertices smplx picks with its ``VertexJointSelector`` (face, feet, fingertips)
  at the SMPL(-H) vertex ids of ``SMPLX45_EXTRA_VERTEX_IDS``.
* ``COCO17_*``: COCO-17 in ultralytics order; on the body model the 12 body keypoints are
  SMPL joints (``COCO17_BODY_SMPL24_IDS``) and the 5 face keypoints are mesh vertices
  (``COCO17_FACE_VERTEX_IDS``).
"""

from __future__ import annotations

SMPL24_NAMES: tuple[str, ...] = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hand",
    "right_hand",
)
"""SMPL's 24 joints in SMPL order (index = position in the 72-value pose vector / 3)."""

_SMPL24_PARENT_NAMES: dict[str, str | None] = {
    "pelvis": None,
    "left_hip": "pelvis",
    "right_hip": "pelvis",
    "spine1": "pelvis",
    "left_knee": "left_hip",
    "right_knee": "right_hip",
    "spine2": "spine1",
    "left_ankle": "left_knee",
    "right_ankle": "right_knee",
    "spine3": "spine2",
    "left_foot": "left_ankle",
    "right_foot": "right_ankle",
    "neck": "spine3",
    "left_collar": "spine3",
    "right_collar": "spine3",
    "head": "neck",
    "left_shoulder": "left_collar",
    "right_shoulder": "right_collar",
    "left_elbow": "left_shoulder",
    "right_elbow": "right_shoulder",
    "left_wrist": "left_elbow",
    "right_wrist": "right_elbow",
    "left_hand": "left_wrist",
    "right_hand": "right_wrist",
}

SMPL24_INDEX: dict[str, int] = {name: i for i, name in enumerate(SMPL24_NAMES)}

SMPL24_PARENTS: tuple[int, ...] = tuple(
    -1 if _SMPL24_PARENT_NAMES[name] is None else SMPL24_INDEX[_SMPL24_PARENT_NAMES[name]]
    for name in SMPL24_NAMES
)
"""Parent index of each SMPL joint (-1 for the root); SMPL's ``kintree_table[0]``."""


def _mirror_name(name: str) -> str:
    if name.startswith("left_"):
        return "right_" + name[len("left_") :]
    if name.startswith("right_"):
        return "left_" + name[len("right_") :]
    return name


SMPL24_FLIP_INDEX: tuple[int, ...] = tuple(SMPL24_INDEX[_mirror_name(n)] for n in SMPL24_NAMES)
"""Index of the left/right mirror of each SMPL joint (itself on the midline)."""

# smplx's VertexJointSelector order (face, feet, fingertips) and the SMPL/SMPL-H vertex ids
# it uses (smplx.vertex_ids.vertex_ids["smplh"]).
SMPLX45_EXTRA_VERTEX_IDS: dict[str, int] = {
    "nose": 332,
    "right_eye": 6260,
    "left_eye": 2800,
    "right_ear": 4071,
    "left_ear": 583,
    "left_big_toe": 3216,
    "left_small_toe": 3226,
    "left_heel": 3387,
    "right_big_toe": 6617,
    "right_small_toe": 6624,
    "right_heel": 6787,
    "left_thumb_tip": 2746,
    "left_index_tip": 2319,
    "left_middle_tip": 2445,
    "left_ring_tip": 2556,
    "left_pinky_tip": 2673,
    "right_thumb_tip": 6191,
    "right_index_tip": 5782,
    "right_middle_tip": 5905,
    "right_ring_tip": 6016,
    "right_pinky_tip": 6133,
}

SMPLX45_NAMES: tuple[str, ...] = SMPL24_NAMES + tuple(SMPLX45_EXTRA_VERTEX_IDS)
"""The 45 joints of ``smplx.SMPL`` output: SMPL-24 then 21 selected vertices."""

COCO17_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
"""COCO-17 keypoints in ultralytics / COCO order."""

COCO17_INDEX: dict[str, int] = {name: i for i, name in enumerate(COCO17_NAMES)}

COCO17_FACE_NAMES: tuple[str, ...] = COCO17_NAMES[:5]
"""The COCO keypoints that are mesh vertices on SMPL (indices 0..4 of COCO-17)."""

COCO17_FACE_VERTEX_IDS: tuple[int, ...] = tuple(
    SMPLX45_EXTRA_VERTEX_IDS[name] for name in COCO17_FACE_NAMES
)
"""SMPL vertex id of each COCO face keypoint, in COCO order (nose, left eye, right eye,
left ear, right ear) = (332, 2800, 6260, 583, 4071)."""

COCO17_BODY_NAMES: tuple[str, ...] = COCO17_NAMES[5:]
"""The COCO keypoints that are SMPL joints (indices 5..16 of COCO-17)."""

SMPL24_TO_COCO17: dict[str, str] = {name: name for name in COCO17_BODY_NAMES}
"""SMPL-24 joint name -> COCO-17 keypoint name for the 12 body keypoints (same names:
SMPL's shoulder/elbow/wrist/hip/knee/ankle joints stand for COCO's)."""

COCO17_BODY_SMPL24_IDS: tuple[int, ...] = tuple(
    SMPL24_INDEX[smpl] for smpl in SMPL24_TO_COCO17
)
"""SMPL joint index of COCO keypoints 5..16, in COCO order."""

COCO17_FLIP_INDEX: tuple[int, ...] = tuple(COCO17_INDEX[_mirror_name(n)] for n in COCO17_NAMES)
"""Index of the left/right mirror of each COCO keypoint (for horizontal flips)."""

COCO17_SKELETON: tuple[tuple[int, int], ...] = tuple(
    (COCO17_INDEX[a], COCO17_INDEX[b])
    for a, b in (
        ("left_ankle", "left_knee"),
        ("left_knee", "left_hip"),
        ("right_ankle", "right_knee"),
        ("right_knee", "right_hip"),
        ("left_hip", "right_hip"),
        ("left_shoulder", "left_hip"),
        ("right_shoulder", "right_hip"),
        ("left_shoulder", "right_shoulder"),
        ("left_shoulder", "left_elbow"),
        ("right_shoulder", "right_elbow"),
        ("left_elbow", "left_wrist"),
        ("right_elbow", "right_wrist"),
        ("left_eye", "right_eye"),
        ("nose", "left_eye"),
        ("nose", "right_eye"),
        ("left_eye", "left_ear"),
        ("right_eye", "right_ear"),
        ("left_ear", "left_shoulder"),
        ("right_ear", "right_shoulder"),
    )
)
"""COCO-17 limb edges (0-based index pairs), the ultralytics/COCO drawing skeleton."""

SMPL_NUM_VERTICES = 6890
SMPL_NUM_FACES = 13776
