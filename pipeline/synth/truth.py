"""Ground truth of one synthetic clip: the ``<stem>.gt.npz`` sidecar.

Shapes use ``T`` frames and ``P`` people (the people of a clip exist in every frame, also
while they are outside the image: ``visibility`` says where they can be seen).
"""

from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass

import numpy as np

__all__ = ["ClipTruth", "GT_SUFFIX", "INIT_SUFFIX", "COCO_SUFFIX", "VISIBLE", "OCCLUDED", "OUTSIDE"]

GT_SUFFIX = ".gt.npz"
INIT_SUFFIX = ".init.npz"
COCO_SUFFIX = ".coco.json"

# Per-keypoint visibility codes (COCO's v convention).
OUTSIDE = 0  # projects outside the image
OCCLUDED = 1  # inside the image, hidden by another person, a prop or the body itself
VISIBLE = 2

# Occluder codes besides a person index.
NOT_OCCLUDED = -1
OCCLUDED_BY_PROP = -2

_ARRAY_FIELDS = (
    "frame_index",
    "frame_time",
    "track_id",
    "motion",
    "betas",
    "pose",
    "camera",
    "joints3d",
    "keypoints3d",
    "keypoints2d",
    "visibility",
    "occluder",
    "bbox",
    "visible_pixels",
    "depth",
    "focal",
    "principal",
    "roll",
)


@dataclass(frozen=True)
class ClipTruth:
    """Exact ground truth of a synthetic clip.

    Attributes:
        clip_id: ``<youtube_id>_<start:06d>_<end:06d>``.
        label: the clip's motion label.
        split: Kinetics split ("train", "val", "test").
        fps: frame rate of the video, Hz.
        image_size: (width, height) pixels.
        camera_height: metres of the camera above the ground.
        frame_index: (T,) int32 decoded frame index.
        frame_time: (T,) float64 seconds from the clip start.
        track_id: (P,) int32 person identity (stable through the clip, also across exits).
        motion: (P,) str motion of each person (person 0 performs ``label``).
        betas: (P, 10) float32 shape.
        pose: (T, P, 72) float32 SMPL pose (axis-angle rad; first 3 = global orientation in
            the camera frame, y down, z away).
        camera: (T, P, 3) float32 weak-perspective camera (s px/m, tx px, ty px).
        joints3d: (T, P, 24, 3) float32 SMPL-24 joints of ``BodyModel.joints(pose, betas)``, m.
        keypoints3d: (T, P, 17, 3) float32 COCO-17 of ``BodyModel.keypoints``, m.
        keypoints2d: (T, P, 17, 2) float32 ``s * keypoints3d[..., :2] + (tx, ty)``, pixels.
        visibility: (T, P, 17) uint8: 0 outside the image, 1 occluded, 2 visible.
        occluder: (T, P, 17) int16 what hides an occluded keypoint: a person index (its own
            for self-occlusion), -2 a prop, -1 nothing.
        bbox: (T, P, 4) float32 amodal box of the projected mesh x0, y0, x1, y1, pixels
            (not clipped to the image).
        visible_pixels: (T, P) int32 output pixels where the person is the front surface.
        depth: (T, P) float32 distance of the person's root from the camera, metres.
        focal: (T,) float32 focal length, pixels (zoom).
        principal: (T, 2) float32 principal point, pixels (camera shake).
        roll: (T,) float32 camera roll, radians.
    """

    clip_id: str
    label: str
    split: str
    fps: float
    image_size: tuple[int, int]
    camera_height: float
    frame_index: np.ndarray
    frame_time: np.ndarray
    track_id: np.ndarray
    motion: np.ndarray
    betas: np.ndarray
    pose: np.ndarray
    camera: np.ndarray
    joints3d: np.ndarray
    keypoints3d: np.ndarray
    keypoints2d: np.ndarray
    visibility: np.ndarray
    occluder: np.ndarray
    bbox: np.ndarray
    visible_pixels: np.ndarray
    depth: np.ndarray
    focal: np.ndarray
    principal: np.ndarray
    roll: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.frame_index.shape[0])

    @property
    def num_people(self) -> int:
        return int(self.track_id.shape[0])

    @property
    def in_view(self) -> np.ndarray:
        """(T, P) bool, True where some pixel of the person is seen."""
        return self.visible_pixels > 0

    def save(self, path: str | os.PathLike) -> None:
        """Write the ``.gt.npz`` (compressed, no pickles)."""
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAY_FIELDS}
        meta = {
            "clip_id": np.array(self.clip_id),
            "label": np.array(self.label),
            "split": np.array(self.split),
            "fps": np.array(self.fps, dtype=np.float64),
            "image_size": np.array(self.image_size, dtype=np.int32),
            "camera_height": np.array(self.camera_height, dtype=np.float64),
        }
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **meta, **arrays)
        with open(path, "wb") as handle:
            handle.write(buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ClipTruth":
        """Read a ``.gt.npz`` written by :meth:`save`."""
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"ground truth {os.fspath(path)!r} cannot be read ({exc}); regenerate it with vid2mesh synth") from exc
        with data:
            missing = [k for k in (*_ARRAY_FIELDS, "clip_id", "fps", "image_size") if k not in data.files]
            if missing:
                raise ValueError(f"ground truth {os.fspath(path)!r} lacks {missing}; regenerate it with vid2mesh synth")
            return cls(
                clip_id=str(data["clip_id"]),
                label=str(data["label"]),
                split=str(data["split"]),
                fps=float(data["fps"]),
                image_size=tuple(int(v) for v in data["image_size"]),
                camera_height=float(data["camera_height"]),
                **{name: data[name] for name in _ARRAY_FIELDS},
            )

    def replace(self, **changes) -> "ClipTruth":
        return dataclasses.replace(self, **changes)
