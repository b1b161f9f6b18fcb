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


def track_predicted_error(every_frame: np.ndarray, status: str) -> float:
    """The track's predicted 3D joint error, mm: the mean over every frame of the error the
    propagation gives it, detection gaps included (``fit_uncertainty``'s second output);
    inf when any frame's is not finite or the fit is not ok."""
    values = np.asarray(every_frame, np.float64)
    if status != "ok" or values.size == 0 or not np.isfinite(values).all():
        return math.inf
    return float(values.mean())


def predicted_error(fit) -> float:
    """A track's predicted 3D joint error, mm: ``fit.pred_err_track_mm`` (every frame, the
    frames a detection gap leaves to the priors included, so a track's gaps count against
    it), or, on a fit without it, the mean of ``fit.pred_err_mm`` over its determined
    (finite) frames.

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
    every = float(getattr(fit, "pred_err_track_mm", math.nan))
    return every if not math.isnan(every) else float(values[finite].mean())


def init_disagreement_mm(joints3d: Tensor, init_joints: Tensor, selected: Tensor) -> Tensor:
    """How far the fit moved from the per-frame init of the track's own detection, mm.

    The mean over the 24 joints of |X_fit - X_init| after both are pelvis-aligned (MPJPE
    between the fit and the init, as ``pipeline.qa.metrics.mpjpe`` measures it).

    Args:
        joints3d: (B, T, 24, 3) fitted joints, metres.
        init_joints: (B, T, P, 24, 3) every candidate's init joints, metres.
        selected: (B, T) long, the track's own candidate per frame, -1 where it has none.

    Returns:
        (B, T) float64 millimetres; NaN where the frame has no detection of the track.
    """
    pick = selected.clamp(min=0)[:, :, None, None, None].expand(-1, -1, 1, *init_joints.shape[-2:])
    init = init_joints.gather(2, pick)[:, :, 0].double()
    fit = joints3d.double()
    init = init - init[:, :, :1]
    fit = fit - fit[:, :, :1]
    distance = 1000.0 * (fit - init).norm(dim=-1).mean(-1)
    return torch.where(selected >= 0, distance, torch.full_like(distance, float("nan")))


def frame_score_mm(pred_err_mm: np.ndarray, track_pred_err_mm: float, init_disagreement: np.ndarray) -> np.ndarray:
    """The frame form of the selection score: a per-frame confidence in mm, lower is better.

    The geometric mean of three estimates of the frame's 3D joint error, all in mm:

    * ``p``, the frame's predicted error (the posterior spread, ``pred_err_mm``);
    * ``P``, its track's predicted error (:func:`predicted_error`), so that a frame of a
      poorly determined track never ranks with the frames of a well determined one;
    * ``sqrt(p^2 + d^2)``, root mean square error as variance plus squared bias, with the
      frame's fit-to-init disagreement ``d`` (:func:`init_disagreement_mm`) as the evidence
      of bias: where two estimates of the frame's pose disagree by d, at least one is off by
      d / 2, which the posterior (centred on the fit) cannot see.

    ``cbrt(p * P * sqrt(p^2 + d^2))``: no weight. inf wherever ``p`` or ``P`` is not finite
    (an undetermined frame or track is never small); a frame with no finite ``d`` counts
    ``d = 0``.

    Args:
        pred_err_mm: (T,) per-frame predicted error, mm (inf: undetermined).
        track_pred_err_mm: the track's predicted error, mm.
        init_disagreement: (T,) fit-to-init disagreement, mm (NaN: no detection).

    Returns:
        (T,) float64 mm.
    """
    p = np.asarray(pred_err_mm, np.float64)
    d = np.nan_to_num(np.asarray(init_disagreement, np.float64), nan=0.0, posinf=np.inf)
    track = float(track_pred_err_mm)
    with np.errstate(invalid="ignore", over="ignore"):
        score = np.cbrt(p * track * np.hypot(p, d))
    usable = np.isfinite(p) & (p >= 0) & math.isfinite(track) & (track >= 0) & np.isfinite(score)
    return np.where(usable, score, np.inf)


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


# bones whose 2D length scales with the person: torso (shoulder to hip midpoint), shoulder
# and hip widths, and each limb segment as the mean of its left and right (swap invariant)
_BONES = (((5, 6), (11, 12)), ((5,), (6,)), ((11,), (12,)), ((5, 6), (7, 8)), ((7, 8), (9, 10)),
          ((11, 12), (13, 14)), ((13, 14), (15, 16)))


def _bone_lengths(keypoints: np.ndarray) -> np.ndarray:
    """(N, 7) 2D lengths of :data:`_BONES` of detections (N, 17, 3), pixels; NaN if unseen.

    A limb segment is the mean of the left and right segment (NaN unless all four ends are
    seen); the torso joins the shoulder and hip midpoints.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    seen = kp[..., 2] > 0
    out = np.full((kp.shape[0], len(_BONES)), np.nan)
    for k, (a, b) in enumerate(_BONES):
        if len(a) == 1:  # a width: left to right
            length = np.linalg.norm(kp[:, a[0], :2] - kp[:, b[0], :2], axis=-1)
            ok = seen[:, a[0]] & seen[:, b[0]]
        elif k == 0:  # the torso
            length = np.linalg.norm(kp[:, list(a), :2].mean(1) - kp[:, list(b), :2].mean(1), axis=-1)
            ok = seen[:, list(a + b)].all(-1)
        else:  # a limb segment, left and right averaged
            length = 0.5 * (np.linalg.norm(kp[:, a[0], :2] - kp[:, b[0], :2], axis=-1)
                            + np.linalg.norm(kp[:, a[1], :2] - kp[:, b[1], :2], axis=-1))
            ok = seen[:, list(a + b)].all(-1)
        out[:, k] = np.where(ok & (length > 0), length, np.nan)
    return out


# COCO-17 left/right pairs; their midpoints, and the nose, do not move under a left/right swap
_MIRROR_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


def _swap_invariant_points(keypoints: np.ndarray) -> np.ndarray:
    """(N, 9, 2) the nose and the 8 left/right pair midpoints of detections (N, 17, 3), pixels;
    NaN where unseen."""
    kp = np.asarray(keypoints, dtype=np.float64)
    out = np.full((kp.shape[0], 1 + len(_MIRROR_PAIRS), 2), np.nan)
    seen = kp[:, 0, 2] > 0
    out[seen, 0] = kp[seen, 0, :2]
    for k, (i, j) in enumerate(_MIRROR_PAIRS, start=1):
        seen = (kp[:, i, 2] > 0) & (kp[:, j, 2] > 0)
        out[seen, k] = kp[seen][:, [i, j], :2].mean(1)
    return out


def _robust_line_value(t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Theil-Sen lines through (t (n,), x (n, K, 2)) per point k, their values at t = 0 (K, 2);
    NaN for a point seen (finite) on fewer than 3 frames."""
    a, b = np.triu_indices(t.size, 1)
    slope = _nanmedian0((x[b] - x[a]) / (t[b] - t[a])[:, None, None])
    value = _nanmedian0(x - slope * t[:, None, None])
    value[np.isfinite(x).all(-1).sum(0) < 3] = np.nan
    return value


def _nanmedian0(x: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN (NaN where a column has none); ``np.nanmedian`` is
    several times slower on the small arrays of the step statistic."""
    count = np.isfinite(x).sum(0)
    ordered = np.sort(x, axis=0)  # NaN sort last
    lo = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[None], 0)[0]
    hi = np.take_along_axis(ordered, np.maximum(count // 2, 0)[None], 0)[0]
    return np.where(count > 0, 0.5 * (lo + hi), np.nan)


def step_statistic(
    keypoints: np.ndarray,
    selected: np.ndarray,
    height_px: float,
    window: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Discontinuity of the whole body's position at each boundary between detected frames.

    Each of nine left/right-swap invariant points (the nose and the midpoints of the eight
    left/right keypoint pairs) is fitted over the ``window`` detected frames on each side
    of the boundary with a robust (Theil-Sen) line in time; its step is the difference of
    the two lines at the boundary, and the body's step the component-wise median over the
    points (at least 3 seen on both sides). A switch to another person moves every point by
    the distance between the two people, while detector noise moves each keypoint on its
    own, so the median keeps the first and discards most of the second; walking, running,
    crouching and zooming are smooth and leave no step. A step is *shared* when at least two
    thirds of the points moved by it (within half its size): a switch moves the points
    together, noise and fast limbs move them apart.

    Args:
        keypoints: (T, 17, 3) the selected detections (pixels + confidence).
        selected: (T,) selected candidate, -1 on skipped frames.
        height_px: the person's height in the image, pixels.
        window: detected frames fitted on each side (>= 3).

    Returns:
        (step, gap, shared): step (T,) in person heights at the first frame after each
        boundary (NaN elsewhere and where too few points are seen); gap (T,) the longest run
        of frames without detection inside the two windows, in frames; shared (T,) bool.
    """
    T = len(selected)
    step, gap, shared = np.full(T, np.nan), np.full(T, np.nan), np.zeros(T, bool)
    detected = np.flatnonzero(np.asarray(selected) >= 0)
    points = _swap_invariant_points(np.asarray(keypoints)[detected]) / height_px  # (N, 9, 2) heights
    for j in range(1, detected.size):
        boundary = 0.5 * (detected[j - 1] + detected[j])
        lo, hi = max(0, j - window), min(detected.size, j + window)
        gap[detected[j]] = float(np.max(np.diff(detected[lo:hi])) - 1)
        if j - lo < 3 or hi - j < 3:
            continue
        before = _robust_line_value(detected[lo:j] - boundary, points[lo:j])
        after = _robust_line_value(detected[j:hi] - boundary, points[j:hi])
        steps = after - before  # (9, 2)
        steps = steps[np.isfinite(steps).all(-1)]
        if len(steps) >= 3:
            common = np.median(steps, axis=0)
            size = float(np.linalg.norm(common))
            # a switch moves the points together; noise and fast limbs move them apart
            step[detected[j]] = size
            shared[detected[j]] = np.mean(np.linalg.norm(steps - common, axis=-1) < 0.5 * size) >= 2 / 3
    return step, gap, shared


def _step_switches(step: np.ndarray, gap_s: np.ndarray, shared: np.ndarray, min_heights: float, sigmas: float,
                   gap_heights_per_s: float, window: int) -> list[int]:
    """Frames whose step is shared, a local maximum over +-``window`` frames, and beats both bounds:
    ``min_heights`` (+ the gap allowance) and the track's own step level (median +
    ``sigmas`` x 1.4826 MAD of its steps, which carries the detector's temporally
    correlated noise)."""
    finite = step[np.isfinite(step)]
    if finite.size < 3:
        return []
    level = np.median(finite) + sigmas * 1.4826 * np.median(np.abs(finite - np.median(finite)))
    with np.errstate(invalid="ignore"):
        bound = np.maximum(min_heights + gap_heights_per_s * gap_s, level)
        ratio = np.where(np.isfinite(step) & np.isfinite(bound), step / bound, np.nan)
    out = []
    for t in np.flatnonzero((ratio > 1) & shared):
        lo, hi = max(0, t - window), min(len(ratio), t + window + 1)
        if ratio[t] >= np.nanmax(ratio[lo:hi]):
            out.append(int(t))
    return out


def _resized(log_bones: np.ndarray, j: int, window: int, log_ratio: float) -> bool:
    """Every bone changes length by the same factor > ``exp(log_ratio)`` between detections
    j - 1 and j, and stays changed: the median over bones of the log length ratio, between
    consecutive detections and between the medians of ``window`` detections either side
    (at least 3 seen), both exceed ``log_ratio``, and so do at least two thirds of the
    bones. A pose change (bending, turning) shortens some bones, not all."""
    step = log_bones[j] - log_bones[j - 1]
    step = step[np.isfinite(step)]
    if step.size < 3 or abs(np.median(step)) <= log_ratio:
        return False
    before, later = log_bones[max(0, j - window) : j], log_bones[j : j + window]
    enough = (np.isfinite(before).sum(0) >= 3) & (np.isfinite(later).sum(0) >= 3)
    if enough.sum() < 3:
        return False
    change = _nanmedian0(later[:, enough]) - _nanmedian0(before[:, enough])
    sign = np.sign(np.median(change))
    return bool(abs(np.median(change)) > log_ratio and np.mean(sign * change > log_ratio) >= 2 / 3)


def switch_candidates(
    keypoints: np.ndarray,
    selected: np.ndarray,
    init_camera: np.ndarray,
    fps: float,
    speed_heights_per_s: float = 4.0,
    slack_heights: float = 0.25,
    size_ratio: float = 1.5,
    persistence: int = 3,
    body_height_m: float = 1.7,
    step_heights: float = 0.1,
    step_sigmas: float = 10.0,
    step_window: int = 6,
    step_gap_heights_per_s: float = 1.0,
    step_shared: bool = True,
) -> list[tuple[int, str]]:
    """Frame positions (along T) where a track's detections jump to another person, each with
    the test that found it: "step", "jump" or "size" (a frame both a step and a jump or size
    change is labelled by the latter, the stronger evidence).

    A switch at detected frame d_j (previous detected frame d_{j-1}) is one of:

    * a step in the whole body's position (:func:`step_statistic`), shared by the points
      (unless ``step_shared`` is False: a look-alike in another pose moves the points
      apart, and a confirmation by re-fitting, ``BAConfig.switch_confirm``, removes the
      noise steps the test kept out), that is a local maximum
      over +-``step_window`` frames and exceeds both ``step_heights +
      step_gap_heights_per_s x`` (the longest detection gap in its windows, seconds) person
      heights and the track's own step level (median + ``step_sigmas`` x 1.4826 MAD of
      its steps). This catches a switch to a look-alike of the same size standing close
      by, which the two tests below cannot see;

    * a jump: the body (shoulder and hip midpoints, left/right-swap invariant) moves by
      D > ``speed_heights_per_s x (d_j - d_{j-1}) / fps + slack_heights`` person heights,
      and each of the next ``persistence`` detected frames stays within D / 2 of the new
      position and beyond D / 2 of the old one, and each of the ``persistence`` frames
      before d_{j-1} within D / 2 of the old and beyond D / 2 of the new one (a short
      excursion to a neighbour that comes back is a tracker slip, which the min over
      candidates handles);
    * or size: the detected bones (torso, shoulder and hip widths, limb segments) change
      length by more than ``size_ratio``, all by the same factor (:func:`_resized`), between
      consecutive detections and between the medians of max(``persistence``, 5) detected
      frames either side.

    The person height is the track's median init camera s x 1.7 m. Only the detections are
    used, so a fit that follows the new person cannot hide the switch. Not detected: a
    switch across a long detection gap (the allowance grows with the gap), and one between
    people of the same size closer than about ``step_heights``.

    Args:
        keypoints: (T, 17, 3) the selected detections (pixels + confidence).
        selected: (T,) selected candidate, -1 on skipped frames.
        init_camera: (T, P, 3) per-candidate init camera (s px/m first).
        fps: frame rate, Hz.

    Returns:
        Sorted (t, test): frame positions t (the first frame of each new identity) and the test.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    selected = np.asarray(selected)
    detected = np.flatnonzero(selected >= 0)
    scale = track_scale(init_camera, selected, keypoints)
    if scale is None or detected.size < 2:
        return []
    height = scale * body_height_m
    step, gap, shared = step_statistic(keypoints, selected, height, step_window)
    if not step_shared:
        shared = np.ones_like(shared)
    switches = {t: "step" for t in _step_switches(step, gap / float(fps), shared, step_heights, step_sigmas,
                                                   step_gap_heights_per_s, step_window)}
    log_bones = np.log(_bone_lengths(keypoints[detected]))  # (N, 7)
    for j in range(1, detected.size):
        t_prev, t = int(detected[j - 1]), int(detected[j])
        after = [int(a) for a in detected[j + 1 : j + 1 + persistence]]
        enough = len(after) >= min(persistence, detected.size - j - 1)
        jumped, test = False, "jump"
        jump = _body_distance(keypoints, t_prev, t)
        if math.isfinite(jump) and jump > (speed_heights_per_s * (t - t_prev) / fps + slack_heights) * height:
            before = [int(b) for b in detected[max(0, j - 1 - persistence) : j - 1]]
            near = [_body_distance(keypoints, t, a) for a in after] + [_body_distance(keypoints, t_prev, b) for b in before]
            far = [_body_distance(keypoints, t_prev, a) for a in after] + [_body_distance(keypoints, t, b) for b in before]
            jumped = enough and all(n < jump / 2 for n in near) and all(f > jump / 2 for f in far)
        if not jumped:
            jumped, test = _resized(log_bones, j, max(persistence, 5), math.log(size_ratio)), "size"
        if jumped:
            same = [other for other, kind in switches.items() if kind == "step" and abs(t - other) <= step_window]
            for other in same:  # the same switch: the stronger test's frame
                del switches[other]
            if all(abs(t - other) > step_window for other in switches):
                switches[t] = test
    return sorted(switches.items())


def identity_switches(keypoints: np.ndarray, selected: np.ndarray, init_camera: np.ndarray, fps: float,
                      *args, **kwargs) -> list[int]:
    """The frame positions of :func:`switch_candidates` (same arguments), without the tests."""
    return [t for t, _ in switch_candidates(keypoints, selected, init_camera, fps, *args, **kwargs)]
