"""Per-track metrics computed with each fit; selection reads them, but they decide nothing.

Trajectory length, the E_norm scores, the track's scale, inlier frames, per-frame quality
(pixel and relative error, joint acceleration, orientation change) and identity switches.
The verdicts built on them live in the ``pipeline.dataset.selection`` package.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def trajectory_length(joints3d: Tensor, frame_mask: Tensor) -> Tensor:
    """sum_t sum_i ||X_i^t - X_i^{t-1}|| over consecutive real frames.

    Args:
        joints3d: (B, T, J, 3) metres.
        frame_mask: (B, T) bool.

    Returns:
        (B,) metres.
    """
    step = (joints3d[:, 1:] - joints3d[:, :-1]).norm(dim=-1).sum(-1)  # (B, T-1)
    pair = frame_mask[:, 1:] & frame_mask[:, :-1]
    return torch.where(pair, step, torch.zeros_like(step)).sum(-1)


def e_norm(total_energy: float, length: float) -> float:
    """E / trajectory length (paper eq. 11); inf when the track does not move."""
    if length <= 0 or not math.isfinite(length):
        return math.inf
    return float(total_energy) / float(length)


# a track whose frames are undetermined (inf) this often has no summary (inf): its mean would
# describe the few frames that are left
UNDETERMINED_FRACTION = 0.5


def predicted_error(fit) -> float:
    """A track's predicted 3D joint error, mm: the mean of ``fit.pred_err_mm`` over its
    determined (finite) frames.

    inf when the fit has no uncertainty (status other than "ok", ``pred_err_mm`` None or
    empty) or when at least ``UNDETERMINED_FRACTION`` of its frames are undetermined.
    """
    values = getattr(fit, "pred_err_mm", None)
    if fit.status != "ok" or values is None or len(values) == 0:
        return math.inf
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    if finite.sum() == 0 or 1.0 - finite.mean() >= UNDETERMINED_FRACTION:
        return math.inf
    return float(values[finite].mean())


def inlier_frames(frame_error: np.ndarray, tau_r_px: float) -> np.ndarray:
    """(T,) bool: min_p sum_i w_i rho(x_i - x_det,i^p) < tau_R (NaN = no detection: False)."""
    frame_error = np.asarray(frame_error)
    with np.errstate(invalid="ignore"):
        return np.isfinite(frame_error) & (frame_error < tau_r_px)


def per_frame_energy(total_energy: float, num_frames: int) -> float:
    """E / T: the mean energy per frame (``BAConfig.e_norm = "per_frame"``); inf without frames."""
    if num_frames <= 0 or not math.isfinite(total_energy):
        return math.inf
    return float(total_energy) / float(num_frames)


def track_scale(init_camera: np.ndarray, selected: np.ndarray, keypoints: np.ndarray) -> float | None:
    """The person's scale of a track, pixels per metre (the unit of ``BAConfig.units = "relative"``).

    The median init camera scale s over the detected frames (the selected candidate's); if
    no frame has a finite s > 0, the median vertical extent of the confident keypoints over
    1.45 m (nose to ankles of a 1.7 m person). None when neither exists: the track has no
    valid scale and cannot be fitted in relative units.

    Args:
        init_camera: (T, P, 3) per-candidate init camera (s px/m, tx px, ty px).
        selected: (T,) selected candidate, -1 on skipped frames.
        keypoints: (T, 17, 3) the selected detection (pixels + confidence).
    """
    selected = np.asarray(selected)
    detected = np.flatnonzero(selected >= 0)
    if detected.size == 0:
        return None
    s = np.asarray(init_camera, dtype=np.float64)[detected, selected[detected], 0]
    s = s[np.isfinite(s) & (s > 0)]
    if s.size:
        return float(np.median(s))
    heights = []
    for t in detected:
        kp = np.asarray(keypoints[t], dtype=np.float64)
        seen = (kp[:, 2] > 0) & np.isfinite(kp[:, :2]).all(-1)
        if seen.sum() >= 5:
            heights.append(kp[seen, 1].max() - kp[seen, 1].min())
    height = float(np.median(heights)) if heights else 0.0
    return height / 1.45 if height > 0 and math.isfinite(height) else None


def keypoint_error_px(reprojection: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """(T,) confidence-weighted mean distance |x_i - x_det,i| over keypoints, pixels.

    Args:
        reprojection: (T, 17, 2) projected keypoints, pixels.
        keypoints: (T, 17, 3) detections (pixels + confidence); NaN where no keypoint has
            a confidence > 0 (skipped frames).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    conf = np.clip(np.nan_to_num(kp[..., 2]), 0.0, 1.0)
    distance = np.linalg.norm(np.asarray(reprojection, dtype=np.float64) - np.nan_to_num(kp[..., :2]), axis=-1)
    weight = conf.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (conf * distance).sum(-1) / weight
    return np.where(weight > 0, out, np.nan)


def relative_error(error_px: np.ndarray, camera_scale: np.ndarray, body_height_m: float = 1.7) -> np.ndarray:
    """(T,) pixel error over the person's height in the frame (camera s px/m x 1.7 m): unitless."""
    height = np.asarray(camera_scale, dtype=np.float64) * body_height_m
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(height > 0, np.asarray(error_px, dtype=np.float64) / height, np.nan)


def detection_inliers(detection_energy: np.ndarray, has_detection: np.ndarray, tau_r_px: float) -> np.ndarray:
    """(T,) bool: the track has its own detection and its energy is below tau_R.

    Never True on a skipped frame, so inlier frames <= detected frames by construction.
    """
    energy = np.asarray(detection_energy, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.asarray(has_detection, bool) & np.isfinite(energy) & (energy < tau_r_px)


def joint_acceleration(joints3d: np.ndarray, fps: float) -> np.ndarray:
    """(T,) largest 3D joint acceleration |X^{t+1} - 2 X^t + X^{t-1}| x fps^2 over joints, m/s^2.

    Joints are in the camera-aligned body frame (no translation), so this is the
    acceleration of the articulated body and its rotation. NaN on the first and last frame.
    """
    X = np.asarray(joints3d, dtype=np.float64)
    out = np.full(X.shape[0], np.nan)
    if X.shape[0] >= 3:
        out[1:-1] = np.linalg.norm(X[2:] - 2 * X[1:-1] + X[:-2], axis=-1).max(-1) * float(fps) ** 2
    return out


def orientation_change(pose: np.ndarray) -> np.ndarray:
    """(T,) angle between the global orientation of frame t and frame t-1, radians (0 at t=0).

    A value near pi is a front/back flip between adjacent frames.
    """
    from models.geometry import axis_angle_to_matrix

    R = axis_angle_to_matrix(torch.as_tensor(np.asarray(pose, dtype=np.float64)[:, :3])).numpy()
    out = np.zeros(R.shape[0])
    if R.shape[0] >= 2:
        relative = np.einsum("tji,tjk->tik", R[:-1], R[1:])
        cos = (np.trace(relative, axis1=-2, axis2=-1) - 1.0) / 2.0
        out[1:] = np.arccos(np.clip(cos, -1.0, 1.0))
    return out


_PAIRS = ((5, 6), (11, 12))  # shoulders, hips: their midpoints do not move under a left/right swap


def _body_distance(keypoints: np.ndarray, t1: int, t2: int) -> float:
    """Distance between the body positions of detections t1 and t2, pixels; NaN if unknown.

    The mean displacement of the shoulder and hip midpoints seen in both frames (left/right
    swap invariant); without a common pair, the median over keypoints seen in both of the
    smaller of the same-side and the mirrored-side displacement.
    """
    a, b = keypoints[t1], keypoints[t2]
    mids = [np.linalg.norm(b[[i, j], :2].mean(0) - a[[i, j], :2].mean(0))
            for i, j in _PAIRS if a[i, 2] > 0 and a[j, 2] > 0 and b[i, 2] > 0 and b[j, 2] > 0]
    if mids:
        return float(np.mean(mids))
    from models.joint_names import COCO17_FLIP_INDEX

    flip = np.asarray(COCO17_FLIP_INDEX)
    seen = (a[:, 2] > 0) & (b[:, 2] > 0) & (a[flip, 2] > 0)
    if seen.sum() < 3:
        return float("nan")
    same = np.linalg.norm(b[seen, :2] - a[seen, :2], axis=-1)
    mirrored = np.linalg.norm(b[seen, :2] - a[flip][seen, :2], axis=-1)
    return float(np.median(np.minimum(same, mirrored)))


def _torso_length(keypoints: np.ndarray) -> np.ndarray:
    """(N,) shoulder-midpoint to hip-midpoint distance of detections (N, 17, 3), pixels; NaN if unseen."""
    kp = np.asarray(keypoints, dtype=np.float64)
    seen = (kp[:, [5, 6, 11, 12], 2] > 0).all(-1)
    length = np.linalg.norm(kp[:, [5, 6], :2].mean(1) - kp[:, [11, 12], :2].mean(1), axis=-1)
    return np.where(seen & (length > 0), length, np.nan)


def identity_switches(
    keypoints: np.ndarray,
    selected: np.ndarray,
    init_camera: np.ndarray,
    fps: float,
    speed_heights_per_s: float = 4.0,
    slack_heights: float = 0.25,
    size_ratio: float = 1.5,
    persistence: int = 3,
    body_height_m: float = 1.7,
) -> list[int]:
    """Frame positions (along T) where a track's detections jump to another person.

    A switch at detected frame d_j (previous detected frame d_{j-1}) needs a *persistent*
    jump of the tracked detections:

    * position: the body (shoulder and hip midpoints, left/right-swap invariant) moves by
      D > ``speed_heights_per_s x (d_j - d_{j-1}) / fps + slack_heights`` person heights,
      and each of the next ``persistence`` detected frames stays within D / 2 of the new
      position and beyond D / 2 of the old one, and each of the ``persistence`` frames
      before d_{j-1} within D / 2 of the old and beyond D / 2 of the new one (a short
      excursion to a neighbour that comes back is a tracker slip, which the min over
      candidates handles);
    * or size: the detected torso (shoulder midpoint to hip midpoint) changes length by
      more than ``size_ratio`` between consecutive detections and its median over the next
      max(``persistence``, 5) detected frames differs by as much from the median over as
      many frames before (at least 3 seen on each side).

    The person height is the track's median init camera s x 1.7 m. Only the detections are
    used, so a fit that follows the new person cannot hide the switch. Not detected: a
    switch between people of about the same size less than about 0.3 heights apart.

    Args:
        keypoints: (T, 17, 3) the selected detections (pixels + confidence).
        selected: (T,) selected candidate, -1 on skipped frames.
        init_camera: (T, P, 3) per-candidate init camera (s px/m first).
        fps: frame rate, Hz.

    Returns:
        Sorted frame positions t (the first frame of each new identity).
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    selected = np.asarray(selected)
    detected = np.flatnonzero(selected >= 0)
    scale = track_scale(init_camera, selected, keypoints)
    if scale is None or detected.size < 2:
        return []
    height = scale * body_height_m
    log_s = np.log(_torso_length(keypoints[detected]))
    switches: list[int] = []
    for j in range(1, detected.size):
        t_prev, t = int(detected[j - 1]), int(detected[j])
        after = [int(a) for a in detected[j + 1 : j + 1 + persistence]]
        enough = len(after) >= min(persistence, detected.size - j - 1)
        jumped = False
        jump = _body_distance(keypoints, t_prev, t)
        if math.isfinite(jump) and jump > (speed_heights_per_s * (t - t_prev) / fps + slack_heights) * height:
            before = [int(b) for b in detected[max(0, j - 1 - persistence) : j - 1]]
            near = [_body_distance(keypoints, t, a) for a in after] + [_body_distance(keypoints, t_prev, b) for b in before]
            far = [_body_distance(keypoints, t_prev, a) for a in after] + [_body_distance(keypoints, t, b) for b in before]
            jumped = enough and all(n < jump / 2 for n in near) and all(f > jump / 2 for f in far)
        if not jumped and np.isfinite(log_s[j - 1]) and np.isfinite(log_s[j]) \
                and abs(log_s[j] - log_s[j - 1]) > math.log(size_ratio):
            window = max(persistence, 5)
            before = log_s[max(0, j - window) : j]
            later = log_s[j : j + window]
            before, later = before[np.isfinite(before)], later[np.isfinite(later)]
            jumped = (before.size >= 3 and later.size >= 3
                      and abs(np.median(later) - np.median(before)) > math.log(size_ratio))
        if jumped:
            switches.append(t)
    return switches
