"""Numpy metrics shared by ``vid2mesh evaluate`` and the benchmarks.

Units: 3D inputs are metres, 3D errors are returned in **millimetres**; 2D inputs and
thresholds are pixels. Every function works on any leading batch shape ``(...)`` (frames,
tracks, ...) and returns per-sample values, so callers decide how to aggregate (use
``np.nanmean``: samples without a valid joint are NaN, never silently 0).

Root alignment (MPJPE, acceleration error): 3D joints under weak perspective carry no
translation, so predictions and ground truth are compared after subtracting a root. The
``root`` argument takes joint indices whose mean is the root; ``"auto"`` picks the pelvis
(index 0) for 24 SMPL joints, the hip midpoint (COCO indices 11, 12) for 17 COCO joints,
and the mean of all joints otherwise.

Tracking metrics take *matched pairs*: one row per (frame, ground-truth person) that was
matched to a predicted track (see :func:`match_people` for the per-frame matching).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "accel_error",
    "id_switches",
    "match_people",
    "mpjpe",
    "pa_mpjpe",
    "pck",
    "procrustes_align",
    "root_align",
    "track_purity",
    "track_purity_per_track",
]

SMPL_PELVIS = (0,)
COCO_HIPS = (11, 12)

Root = str | int | Sequence[int] | None


def _root_indices(num_joints: int, root: Root) -> tuple[int, ...] | None:
    if root is None:
        return None
    if isinstance(root, str):
        if root != "auto":
            raise ValueError(f"root={root!r}: use 'auto', None, a joint index or a list of indices.")
        if num_joints == 24:
            return SMPL_PELVIS
        if num_joints == 17:
            return COCO_HIPS
        return tuple(range(num_joints))
    if isinstance(root, (int, np.integer)):
        return (int(root),)
    return tuple(int(i) for i in root)


def _check_pair(pred: np.ndarray, target: np.ndarray, dim: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim < 2 or pred.shape[-1] != dim:
        raise ValueError(
            f"{name}: prediction {pred.shape} and target {target.shape} must have the same "
            f"shape (..., N, {dim})."
        )
    return pred, target


def _joint_mask(valid: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Broadcast ``valid`` ((...), or (..., N)) to a bool mask of ``shape`` = (..., N)."""
    if valid is None:
        return np.ones(shape, dtype=bool)
    valid = np.asarray(valid).astype(bool)
    if valid.shape == shape[:-1]:
        valid = valid[..., None]
    return np.broadcast_to(valid, shape)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=-1)
    total = np.where(mask, values, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def root_align(joints: np.ndarray, root: Root = "auto") -> np.ndarray:
    """Subtract the root joint (mean of the ``root`` indices) from every joint.

    Args:
        joints: (..., N, 3) metres.
        root: see the module docstring.

    Returns:
        (..., N, 3) metres, root at the origin (unchanged when ``root`` is None).
    """
    joints = np.asarray(joints, dtype=np.float64)
    idx = _root_indices(joints.shape[-2], root)
    if idx is None:
        return joints
    return joints - joints[..., list(idx), :].mean(axis=-2, keepdims=True)


def mpjpe(
    pred: np.ndarray,
    target: np.ndarray,
    valid: np.ndarray | None = None,
    root: Root = "auto",
) -> np.ndarray:
    """Mean per-joint position error after root alignment.

    Args:
        pred: (..., N, 3) predicted joints, metres.
        target: (..., N, 3) ground-truth joints, metres.
        valid: optional (...) or (..., N) bool; joints to include.
        root: root joints subtracted from both (see module docstring).

    Returns:
        (...) millimetres; NaN where no joint is valid.
    """
    pred, target = _check_pair(pred, target, 3, "mpjpe")
    err = np.linalg.norm(root_align(pred, root) - root_align(target, root), axis=-1) * 1000.0
    return _masked_mean(err, _joint_mask(valid, err.shape))


def procrustes_align(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Similarity transform (scale, rotation, translation) of ``pred`` that best fits ``target``.

    Least squares (Umeyama 1991), reflections excluded, float64: the numpy face of
    :func:`models.geometry.procrustes_align`.

    Args:
        pred: (..., N, 3) points.
        target: (..., N, 3) points.

    Returns:
        (..., N, 3) ``pred`` aligned to ``target``.
    """
    pred, target = _check_pair(pred, target, 3, "procrustes_align")
    import torch

    from models.geometry import procrustes_align as procrustes_align_torch

    aligned = procrustes_align_torch(torch.from_numpy(np.ascontiguousarray(pred)), torch.from_numpy(np.ascontiguousarray(target)))
    return aligned.numpy()


def pa_mpjpe(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """MPJPE after Procrustes alignment (scale, rotation, translation) per sample.

    The alignment is fitted on the valid joints only (all joints when ``valid`` is None).

    Args:
        pred: (..., N, 3) metres.
        target: (..., N, 3) metres.
        valid: optional (...) or (..., N) bool.

    Returns:
        (...) millimetres; NaN where fewer than 3 joints are valid.
    """
    pred, target = _check_pair(pred, target, 3, "pa_mpjpe")
    mask = _joint_mask(valid, pred.shape[:-1])
    if mask.all():
        aligned = procrustes_align(pred, target)
    else:
        # Fit on valid joints: zero-weight the others by replacing them with the valid
        # centroid is not exact, so align sample by sample where joints are missing.
        aligned = np.empty_like(pred)
        flat_p = pred.reshape(-1, *pred.shape[-2:])
        flat_t = target.reshape(-1, *target.shape[-2:])
        flat_m = mask.reshape(-1, mask.shape[-1])
        out = aligned.reshape(flat_p.shape)
        for i in range(flat_p.shape[0]):
            m = flat_m[i]
            if m.sum() < 3:
                out[i] = np.nan
                continue
            a = procrustes_align(flat_p[i][m], flat_t[i][m])
            out[i] = np.nan
            out[i][m] = a
    err = np.linalg.norm(aligned - target, axis=-1) * 1000.0
    res = _masked_mean(np.nan_to_num(err, nan=0.0), mask)
    enough = mask.sum(axis=-1) >= 3
    return np.where(enough, res, np.nan)


def accel_error(
    pred: np.ndarray,
    target: np.ndarray,
    valid: np.ndarray | None = None,
    root: Root = "auto",
) -> np.ndarray:
    """Acceleration error (Kanazawa et al. 2019): mean over joints of the norm of the
    difference between predicted and true second finite differences.

    Args:
        pred: (..., T, N, 3) joint trajectories, metres, consecutive frames.
        target: (..., T, N, 3) metres.
        valid: optional (..., T) bool per frame; a triple (t-1, t, t+1) counts only when all
            three frames are valid.
        root: root alignment applied per frame before differencing.

    Returns:
        (..., T-2) mm/frame^2 at the middle frames; NaN for triples with an invalid frame.
    """
    pred, target = _check_pair(pred, target, 3, "accel_error")
    if pred.ndim < 3 or pred.shape[-3] < 3:
        raise ValueError(f"accel_error needs (..., T>=3, N, 3) trajectories, got {pred.shape}.")
    p = root_align(pred, root)
    t = root_align(target, root)
    acc_p = p[..., :-2, :, :] - 2 * p[..., 1:-1, :, :] + p[..., 2:, :, :]
    acc_t = t[..., :-2, :, :] - 2 * t[..., 1:-1, :, :] + t[..., 2:, :, :]
    err = np.linalg.norm(acc_p - acc_t, axis=-1).mean(axis=-1) * 1000.0
    if valid is not None:
        v = np.asarray(valid).astype(bool)
        if v.shape != pred.shape[:-2]:
            raise ValueError(f"accel_error: valid {v.shape} must be per frame {pred.shape[:-2]}.")
        ok = v[..., :-2] & v[..., 1:-1] & v[..., 2:]
        err = np.where(ok, err, np.nan)
    return err


def pck(
    pred: np.ndarray,
    target: np.ndarray,
    threshold: float | np.ndarray,
    visible: np.ndarray | None = None,
) -> np.ndarray:
    """Percentage of correct 2D keypoints (reprojections within ``threshold`` of the truth).

    Args:
        pred: (..., K, 2) predicted keypoints (e.g. reprojections), pixels.
        target: (..., K, 2) ground-truth keypoints, pixels.
        threshold: pixels; a scalar or (...) per sample, e.g. ``0.1 * box_size``.
        visible: optional (...) or (..., K) bool; only these keypoints count.

    Returns:
        (...) fraction in [0, 1] of visible keypoints within the threshold; NaN where none
        is visible.
    """
    pred, target = _check_pair(pred, target, 2, "pck")
    dist = np.linalg.norm(pred - target, axis=-1)
    thr = np.asarray(threshold, dtype=np.float64)
    if thr.ndim > 0:
        thr = thr[..., None]
    correct = (dist <= thr).astype(np.float64)
    return _masked_mean(correct, _joint_mask(visible, dist.shape))


def match_people(
    pred: np.ndarray,
    target: np.ndarray,
    target_visible: np.ndarray | None = None,
    max_distance: float | np.ndarray = np.inf,
) -> list[tuple[int, int]]:
    """One-to-one matching of predicted and true people in one frame (Hungarian).

    The cost is the mean 2D distance over the target's visible keypoints.

    Args:
        pred: (P, K, 2) predicted keypoints (reprojections), pixels.
        target: (G, K, 2) ground-truth keypoints, pixels.
        target_visible: optional (G, K) bool.
        max_distance: pixels, scalar or (G,); pairs with a larger cost stay unmatched.

    Returns:
        list of (pred index, target index) pairs.
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape[0] == 0 or target.shape[0] == 0:
        return []
    if pred.shape[1:] != target.shape[1:] or pred.shape[-1] != 2:
        raise ValueError(f"match_people: pred {pred.shape} and target {target.shape} must be (P, K, 2) / (G, K, 2).")
    vis = np.ones(target.shape[:2], bool) if target_visible is None else np.asarray(target_visible, bool)
    dist = np.linalg.norm(pred[:, None] - target[None], axis=-1)  # (P, G, K)
    cost = _masked_mean(dist, np.broadcast_to(vis[None], dist.shape))  # (P, G)
    limit = np.broadcast_to(np.asarray(max_distance, dtype=np.float64), (target.shape[0],))
    allowed = np.isfinite(cost) & (cost <= limit[None, :])
    big = 1e12
    rows, cols = linear_sum_assignment(np.where(allowed, cost, big))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]


def id_switches(frame_index: np.ndarray, target_id: np.ndarray, pred_id: np.ndarray) -> int:
    """Identity switches (CLEAR-MOT): times a true person's matched track id changes.

    Args:
        frame_index: (M,) int frame of each matched pair.
        target_id: (M,) int ground-truth person id of each pair.
        pred_id: (M,) int predicted track id matched to it in that frame.

    Returns:
        Number of switches, counted between consecutive matched frames of each true person
        (a gap without any match does not reset the last seen track id).
    """
    frame_index, target_id, pred_id = (np.asarray(a).reshape(-1) for a in (frame_index, target_id, pred_id))
    if not (frame_index.shape == target_id.shape == pred_id.shape):
        raise ValueError("id_switches: frame_index, target_id and pred_id must have the same length.")
    order = np.lexsort((frame_index, target_id))
    t, p = target_id[order], pred_id[order]
    same_person = t[1:] == t[:-1]
    return int(np.sum(same_person & (p[1:] != p[:-1])))


def track_purity_per_track(pred_id: np.ndarray, target_id: np.ndarray) -> dict[int, float]:
    """Purity of each predicted track: share of its frames that belong to its main person.

    Args:
        pred_id: (M,) int predicted track id of each predicted track-frame.
        target_id: (M,) int true person matched in that frame, -1 when unmatched (a false
            positive counts against purity and is never a main person).

    Returns:
        mapping track id -> purity in [0, 1].
    """
    pred_id = np.asarray(pred_id).reshape(-1)
    target_id = np.asarray(target_id).reshape(-1)
    if pred_id.shape != target_id.shape:
        raise ValueError("track_purity: pred_id and target_id must have the same length.")
    out: dict[int, float] = {}
    for track in np.unique(pred_id):
        tid = target_id[pred_id == track]
        matched = tid[tid >= 0]
        best = np.bincount(matched - matched.min()).max() if matched.size else 0
        out[int(track)] = float(best) / float(tid.size)
    return out


def track_purity(pred_id: np.ndarray, target_id: np.ndarray) -> float:
    """Frame-weighted track purity over all predicted tracks (see :func:`track_purity_per_track`).

    Returns:
        Sum over tracks of frames of the track's main person / all predicted track-frames,
        in [0, 1]; NaN when there is no predicted frame.
    """
    pred_id = np.asarray(pred_id).reshape(-1)
    if pred_id.size == 0:
        return float("nan")
    per = track_purity_per_track(pred_id, target_id)
    sizes = {t: int(np.sum(pred_id == t)) for t in per}
    return float(sum(per[t] * sizes[t] for t in per) / pred_id.size)
