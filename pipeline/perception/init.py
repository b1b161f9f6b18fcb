"""Per-detection SMPL + camera initialisation: HMR on person crops, or from keypoints alone.

Crops (HMR/SPIN preprocessing): a square box around the person, from the confident
keypoints (or the detector box when too few are confident), enlarged by 1.2, resampled to
224 x 224 by one affine warp, then ImageNet-normalised inside :class:`models.hmr.HMRRegressor`.
The crop camera is mapped back to a weak-perspective camera in image pixels
(:func:`models.hmr.crop_camera_to_image`).

Without an HMR checkpoint :class:`KeypointInitializer` still gives every detection an
estimate: the mean pose, facing the camera or away from it according to the left/right
shoulder order, betas 0, and a camera fitted to the torso size and position.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from models.geometry import matrix_to_axis_angle
from models.hmr import CROP_SIZE, HMRRegressor, crop_camera_to_image, load_mean_params, spin_6d_to_matrix
from models.joint_names import COCO17_INDEX
from models.pose_detector import FrameDetections

logger = logging.getLogger(__name__)

__all__ = [
    "BOX_SCALE",
    "DetectionInit",
    "FACING_AWAY_ORIENT",
    "FACING_CAMERA_ORIENT",
    "KeypointInitializer",
    "crop_boxes",
    "crop_people",
    "crop_transform",
    "hmr_initialize",
    "mean_pose_from_params",
]

BOX_SCALE = 1.2
MIN_BOX_SIZE = 8.0
FACING_CAMERA_ORIENT = (math.pi, 0.0, 0.0)
"""Global orientation (axis-angle) of an upright person facing the camera (HMR/SPIN frame)."""
FACING_AWAY_ORIENT = (0.0, 0.0, math.pi)
"""R_y(pi) @ R_x(pi): upright, back to the camera."""

_L_SHOULDER, _R_SHOULDER = COCO17_INDEX["left_shoulder"], COCO17_INDEX["right_shoulder"]
_L_HIP, _R_HIP = COCO17_INDEX["left_hip"], COCO17_INDEX["right_hip"]


@dataclass(frozen=True)
class DetectionInit:
    """SMPL + camera estimate per detection (numpy float32).

    Attributes:
        pose: (N, 72) axis-angle, radians.
        betas: (N, 10).
        camera: (N, 3) weak perspective ``(s px/m, tx px, ty px)`` in image pixels.
    """

    pose: np.ndarray
    betas: np.ndarray
    camera: np.ndarray

    @staticmethod
    def empty() -> "DetectionInit":
        return DetectionInit(np.zeros((0, 72), np.float32), np.zeros((0, 10), np.float32), np.zeros((0, 3), np.float32))


# --------------------------------------------------------------------------- crops


def crop_boxes(
    keypoints: np.ndarray, boxes: np.ndarray, min_confidence: float = 0.2, scale: float = BOX_SCALE
) -> tuple[np.ndarray, np.ndarray]:
    """Square crop boxes around people.

    Args:
        keypoints: (N, 17, 3) pixels + confidence.
        boxes: (N, 4) detector boxes x0, y0, x1, y1 (used when < 3 keypoints are confident).
        min_confidence: keypoints above it define the box.
        scale: enlargement of the longest side (HMR: 1.2).

    Returns:
        center (N, 2) pixels, size (N,) side of the square, pixels.
    """
    keypoints = np.asarray(keypoints, np.float64)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    visible = keypoints[..., 2] > min_confidence
    x, y = keypoints[..., 0], keypoints[..., 1]
    kp_box = np.stack(
        [
            np.where(visible, x, np.inf).min(1),
            np.where(visible, y, np.inf).min(1),
            np.where(visible, x, -np.inf).max(1),
            np.where(visible, y, -np.inf).max(1),
        ],
        1,
    )
    use_keypoints = (visible.sum(1) >= 3) | ~np.isfinite(boxes).all(1)
    chosen = np.where(use_keypoints[:, None], kp_box, boxes)
    chosen = np.where(np.isfinite(chosen), chosen, 0.0)
    center = 0.5 * (chosen[:, :2] + chosen[:, 2:])
    size = np.maximum(scale * np.maximum(chosen[:, 2] - chosen[:, 0], chosen[:, 3] - chosen[:, 1]), MIN_BOX_SIZE)
    return center, size


def crop_transform(center: np.ndarray, size: float, crop_size: int = CROP_SIZE) -> np.ndarray:
    """2 x 3 affine from image pixel indices to crop pixel indices (OpenCV warpAffine).

    Continuous coordinates (origin at the top-left pixel corner) map as
    ``q = (p - center) * crop_size / size + crop_size / 2``; pixel centres sit at +0.5.
    """
    k = crop_size / float(size)
    return np.array(
        [
            [k, 0.0, (0.5 - center[0]) * k + crop_size / 2 - 0.5],
            [0.0, k, (0.5 - center[1]) * k + crop_size / 2 - 0.5],
        ],
        np.float64,
    )


def crop_people(frame: np.ndarray, center: np.ndarray, size: np.ndarray, crop_size: int = CROP_SIZE) -> np.ndarray:
    """Cut square person crops out of one frame (zero padding outside the image).

    Args:
        frame: (H, W, 3) uint8.
        center: (N, 2) crop centres, pixels.
        size: (N,) crop sides, pixels.

    Returns:
        (N, crop_size, crop_size, 3) uint8.
    """
    out = np.zeros((len(size), crop_size, crop_size, 3), np.uint8)
    for i, (c, s) in enumerate(zip(center, size)):
        # Strong minification: warp at an integer multiple, then area-average down, which
        # keeps the same continuous geometry and avoids bilinear aliasing.
        factor = int(min(4, max(1, math.floor(s / crop_size))))
        big = crop_size * factor
        warped = cv2.warpAffine(
            frame,
            crop_transform(c, s, big),
            (big, big),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
        if factor > 1:
            warped = cv2.resize(warped, (crop_size, crop_size), interpolation=cv2.INTER_AREA)
        out[i] = warped
    return out


def hmr_initialize(
    regressor: HMRRegressor,
    frames: np.ndarray,
    detections: list[FrameDetections],
    min_confidence: float = 0.2,
) -> list[DetectionInit]:
    """HMR estimates for every detection of a batch of frames, in one batched pass.

    Args:
        regressor: loaded HMR.
        frames: (B, H, W, 3) uint8 RGB.
        detections: B per-frame detections (pixels of ``frames``).
        min_confidence: keypoint confidence that counts for the crop box.

    Returns:
        B :class:`DetectionInit`, one row per detection, camera in image pixels.
    """
    if len(detections) != frames.shape[0]:
        raise ValueError(f"{len(detections)} detection lists for {frames.shape[0]} frames")
    crops, centers, sizes, counts = [], [], [], []
    for frame, found in zip(frames, detections):
        counts.append(len(found))
        if len(found) == 0:
            continue
        center, size = crop_boxes(found.keypoints, found.boxes, min_confidence)
        crops.append(crop_people(frame, center, size))
        centers.append(center)
        sizes.append(size)
    if not crops:
        return [DetectionInit.empty() for _ in detections]
    output = regressor.predict(np.concatenate(crops))
    camera = crop_camera_to_image(output.crop_camera, np.concatenate(centers), np.concatenate(sizes)).astype(np.float32)
    result, start = [], 0
    for n in counts:
        rows = slice(start, start + n)
        result.append(DetectionInit(output.pose[rows], output.betas[rows], camera[rows]))
        start += n
    return result


# --------------------------------------------------------------------------- keypoints only


def mean_pose_from_params(path: str | None) -> np.ndarray:
    """(72,) axis-angle SMPL mean pose from SPIN's mean-parameter file; zeros when None."""
    if path is None:
        return np.zeros(72, np.float32)
    mean = load_mean_params(path)
    rotmat = spin_6d_to_matrix(torch.from_numpy(mean["pose"]).reshape(24, 6).double())
    return matrix_to_axis_angle(rotmat).reshape(72).numpy().astype(np.float32)


def _midpoint(points: np.ndarray, a: int, b: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Mid-point of two keypoints (N, 2) and whether both are confident (N,)."""
    ok = (points[:, a, 2] > threshold) & (points[:, b, 2] > threshold)
    return 0.5 * (points[:, a, :2] + points[:, b, :2]), ok


class KeypointInitializer:
    """SMPL + camera estimates from 2D keypoints only (no HMR checkpoint).

    Pose: the mean body pose with the global orientation of an upright person facing the
    camera, or facing away when the left shoulder appears left of the right shoulder
    (hips when shoulders are missing). Betas: 0. Camera: scale from the torso length
    (mid-shoulders to mid-hips) in pixels over the same length of the body model in that
    pose, translation aligning the torso centres; the keypoint extent when the torso is
    not visible.

    Args:
        body_model: provides ``keypoints(pose (..., 72), betas (..., 10)) -> (..., 17, 3)``.
        mean_pose: (72,) axis-angle mean pose (its first 3 values are replaced).
        min_confidence: keypoints above it count as seen.
    """

    def __init__(self, body_model, mean_pose: np.ndarray | None = None, min_confidence: float = 0.2):
        if body_model is None:
            raise ValueError("KeypointInitializer needs a body model (models.body_model.BodyModel).")
        base = np.zeros(72, np.float32) if mean_pose is None else np.asarray(mean_pose, np.float32).reshape(72).copy()
        poses = np.stack([base, base])
        poses[0, :3] = FACING_CAMERA_ORIENT
        poses[1, :3] = FACING_AWAY_ORIENT
        self.poses = poses
        with torch.no_grad():
            buffer = next(iter(body_model.buffers()), None)
            dtype = buffer.dtype if buffer is not None else torch.float32
            device = buffer.device if buffer is not None else torch.device("cpu")
            reference = body_model.keypoints(
                torch.as_tensor(poses, dtype=dtype, device=device), torch.zeros(2, 10, dtype=dtype, device=device)
            )
        self.reference = reference.detach().cpu().numpy().astype(np.float64)  # (2, 17, 3) metres
        self.min_confidence = float(min_confidence)

    def __call__(self, keypoints: np.ndarray) -> DetectionInit:
        """Estimates for N detections.

        Args:
            keypoints: (N, 17, 3) pixels + confidence.

        Returns:
            :class:`DetectionInit` with N rows.
        """
        keypoints = np.asarray(keypoints, np.float64).reshape(-1, 17, 3)
        n = keypoints.shape[0]
        if n == 0:
            return DetectionInit.empty()
        c = self.min_confidence
        # The first visible pair decides: shoulders, else hips.
        shoulders_seen = (keypoints[:, _L_SHOULDER, 2] > c) & (keypoints[:, _R_SHOULDER, 2] > c)
        hips_seen = (keypoints[:, _L_HIP, 2] > c) & (keypoints[:, _R_HIP, 2] > c)
        facing_away = np.where(
            shoulders_seen,
            keypoints[:, _L_SHOULDER, 0] < keypoints[:, _R_SHOULDER, 0],
            np.where(hips_seen, keypoints[:, _L_HIP, 0] < keypoints[:, _R_HIP, 0], False),
        )
        which = facing_away.astype(np.int64)
        reference = self.reference[which]  # (N, 17, 3)

        shoulder_px, _ = _midpoint(keypoints, _L_SHOULDER, _R_SHOULDER, c)
        hip_px, _ = _midpoint(keypoints, _L_HIP, _R_HIP, c)
        ref = np.concatenate([reference[..., :2], np.ones(reference.shape[:-1] + (1,))], -1)
        shoulder_m, _ = _midpoint(ref, _L_SHOULDER, _R_SHOULDER, 0.0)
        hip_m, _ = _midpoint(ref, _L_HIP, _R_HIP, 0.0)
        torso_px = np.linalg.norm(shoulder_px - hip_px, axis=1)
        torso_m = np.linalg.norm(shoulder_m - hip_m, axis=1)
        torso_ok = shoulders_seen & hips_seen & (torso_px > 1.0)
        scale = np.where(torso_ok, torso_px / np.maximum(torso_m, 1e-6), 0.0)
        offset = 0.5 * (shoulder_px + hip_px) - scale[:, None] * 0.5 * (shoulder_m + hip_m)

        # Fallback: fit the extent of the visible keypoints (height first).
        visible = keypoints[..., 2] > c
        for i in np.flatnonzero(~torso_ok):
            seen = visible[i] if visible[i].sum() >= 2 else keypoints[i, :, 2] > 0
            if seen.sum() == 0:
                scale[i], offset[i] = 1.0, 0.0
                continue
            px, m = keypoints[i, seen, :2], reference[i, seen, :2]
            extent_px, extent_m = np.ptp(px, axis=0), np.ptp(m, axis=0)
            axis = int(np.argmax(extent_m))
            scale[i] = extent_px[axis] / extent_m[axis] if extent_m[axis] > 1e-3 and extent_px[axis] > 1 else 1.0
            offset[i] = px.mean(0) - scale[i] * m.mean(0)
        pose = self.poses[which]
        camera = np.concatenate([scale[:, None], offset], axis=1)
        return DetectionInit(pose.astype(np.float32), np.zeros((n, 10), np.float32), camera.astype(np.float32))
