"""One detection per person: pose-aware NMS within a frame, duplicate tracks across a clip.

**OKS NMS.** A detector's box NMS (IoU 0.7 for YOLO) keeps two boxes of one person when
they overlap less than that, e.g. one box round the whole body and one round its upper half.
Their keypoints still coincide. :func:`oks_nms` compares the keypoint sets of one frame
with the COCO object keypoint similarity

    OKS(a, b) = mean over keypoints seen in both of exp(-d_i^2 / (2 s^2 k_i^2)),

d_i the pixel distance of keypoint i, s^2 the box area of the stronger detection (pixels^2;
COCO uses the segment area, a box is about twice that, which makes this OKS a little more
lenient), k_i = 2 sigma_i with the COCO per-keypoint sigmas. Detections are visited by
score; one whose OKS with a kept detection exceeds ``threshold`` is suppressed. Two people
side by side share no keypoint position (OKS near 0); a person and the one behind them
overlap on a few joints only. On real footage YOLO's duplicate boxes of one person score
well above the default threshold and pairs of different people well below it (figures in
``docs/perception.md``, "Duplicates").

**Duplicate tracks.** Should two detections of one person both survive (e.g. too few
common keypoints for OKS), the tracker makes two tracks of them.
:func:`duplicate_tracks` finds pairs of tracks whose hips (mid-hip point) lie closer than
``hip_fraction`` x the person's height on at least ``min_fraction`` of the frames where both
have a detection (and on at least ``min_common_frames`` of them); the track with fewer
detections of each pair is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.joint_names import COCO17_INDEX
from models.pose_detector import FrameDetections

__all__ = ["COCO_SIGMAS", "OKS_THRESHOLD", "duplicate_tracks", "object_keypoint_similarity", "oks_nms"]

COCO_SIGMAS = np.array(
    [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089],
    np.float64,
)
"""Per-keypoint standard deviations of COCO-17 annotations, relative to the object scale
(COCO keypoint evaluation, ``pycocotools.cocoeval``)."""

OKS_THRESHOLD = 0.5
"""Default OKS above which the weaker of two detections of a frame is suppressed."""

_HIPS = [COCO17_INDEX["left_hip"], COCO17_INDEX["right_hip"]]


def object_keypoint_similarity(a: np.ndarray, b: np.ndarray, area: np.ndarray, min_confidence: float = 0.2) -> np.ndarray:
    """COCO OKS between keypoint sets, over the keypoints seen in both.

    Args:
        a: (N, 17, 3) keypoints, pixels + confidence.
        b: (M, 17, 3) keypoints, pixels + confidence.
        area: (N,) object scale s^2 of each ``a`` (box area), pixels^2.
        min_confidence: keypoints at or below it count as unseen.

    Returns:
        (N, M) OKS in [0, 1]; 0 where a pair shares no seen keypoint.
    """
    d2 = ((a[:, None, :, :2] - b[None, :, :, :2]) ** 2).sum(-1)  # (N, M, 17)
    both = (a[:, None, :, 2] > min_confidence) & (b[None, :, :, 2] > min_confidence)
    scale = 2.0 * np.maximum(area, 1.0)[:, None, None] * (2.0 * COCO_SIGMAS) ** 2
    similarity = np.where(both, np.exp(-d2 / scale), 0.0).sum(-1)
    count = both.sum(-1)
    return np.where(count > 0, similarity / np.maximum(count, 1), 0.0)


def oks_nms(found: FrameDetections, threshold: float = OKS_THRESHOLD, min_confidence: float = 0.2) -> FrameDetections:
    """Suppress duplicate detections of one person in one frame (greedy, by score).

    Args:
        found: the frame's detections.
        threshold: OKS above which the lower-scored detection is dropped.
        min_confidence: keypoints at or below it count as unseen.

    Returns:
        The kept detections, in their original order.
    """
    n = len(found)
    if n < 2:
        return found
    boxes = found.boxes.astype(np.float64)
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keypoints = found.keypoints.astype(np.float64)
    oks = object_keypoint_similarity(keypoints, keypoints, area, min_confidence)
    keep = np.ones(n, bool)
    for i in np.argsort(-found.scores, kind="stable"):
        if not keep[i]:
            continue
        weaker = (oks[i] > threshold) & keep
        weaker[i] = False
        keep &= ~weaker
    return found if keep.all() else found.select(keep)


def _hips_and_heights(keypoints: np.ndarray, boxes: np.ndarray, min_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Mid-hip points (T, 2), NaN where a hip is unseen, and box heights (T,), pixels."""
    hips = keypoints[:, _HIPS]
    seen = (hips[..., 2] > min_confidence).all(-1)
    mid = np.where(seen[:, None], hips[..., :2].mean(1), np.nan)
    return mid, boxes[:, 3] - boxes[:, 1]


def duplicate_tracks(
    keypoints: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    starts: Sequence[int],
    hip_fraction: float = 0.1,
    min_fraction: float = 0.5,
    min_common_frames: int = 3,
    min_confidence: float = 0.2,
) -> list[int]:
    """Tracks that follow a person another track already follows.

    Args:
        keypoints: per track, (T_k, 17, 3) selected keypoints per frame of its span, pixels +
            confidence (all zero where the track has no detection).
        boxes: per track, (T_k, 4) boxes x0, y0, x1, y1, pixels (NaN without a detection).
        starts: per track, the clip frame of its first row.
        hip_fraction: hips closer than this x the taller box count as the same person.
        min_fraction: share of the common frames (both detected, both hips seen) on which
            they must be that close.
        min_common_frames: fewest such close frames of a duplicate pair.
        min_confidence: keypoints at or below it count as unseen.

    Returns:
        Indices of the tracks to drop (of each duplicate pair, the one with fewer detected
        frames; the later one on a tie), ascending.
    """
    detected = [np.isfinite(b).all(-1) for b in boxes]
    hips = [_hips_and_heights(k, np.nan_to_num(b), min_confidence) for k, b in zip(keypoints, boxes)]
    order = sorted(range(len(keypoints)), key=lambda k: (-int(detected[k].sum()), k))
    dropped: set[int] = set()
    for rank, a in enumerate(order):
        if a in dropped:
            continue
        for b in order[rank + 1:]:
            if b in dropped:
                continue
            lo, hi = max(starts[a], starts[b]), min(starts[a] + len(detected[a]), starts[b] + len(detected[b]))
            if hi - lo < min_common_frames:
                continue
            ra, rb = slice(lo - starts[a], hi - starts[a]), slice(lo - starts[b], hi - starts[b])
            (hip_a, height_a), (hip_b, height_b) = hips[a], hips[b]
            distance = np.linalg.norm(hip_a[ra] - hip_b[rb], axis=-1)
            common = detected[a][ra] & detected[b][rb] & np.isfinite(distance)
            close = common & (distance < hip_fraction * np.maximum(height_a[ra], height_b[rb]))
            if close.sum() >= min_common_frames and close.sum() >= min_fraction * common.sum():
                dropped.add(b)
    return sorted(dropped)
