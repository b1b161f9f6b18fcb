"""Contact sheets of a synthetic corpus: a grid of decoded frames to judge it by eye."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from models.joint_names import COCO17_SKELETON
from pipeline.synth.truth import GT_SUFFIX, VISIBLE, ClipTruth

__all__ = ["contact_sheet"]


def _read_frame(path: Path, index: int) -> np.ndarray | None:
    import cv2

    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    capture.release()
    return frame if ok else None


def contact_sheet(
    corpus_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    columns: int = 4,
    rows: int = 3,
    skeleton_row: bool = True,
) -> Path:
    """Write a PNG grid of frames from different clips, captioned with their labels.

    Args:
        corpus_dir: a folder written by ``vid2mesh synth``.
        out_path: PNG to write.
        columns, rows: grid size (one frame per clip, clips in corpus order).
        skeleton_row: add a last row with the ground-truth keypoints drawn on the frames
            of the first row (green visible, red occluded).

    Returns:
        The written path.
    """
    import cv2

    root = Path(corpus_dir)
    meta = json.loads((root / "corpus.json").read_text())
    clips = [c for c in meta["clips"] if c["kind"] in ("normal", "crowded")]
    if not clips:
        raise ValueError(f"{root} has no rendered clips; generate some with vid2mesh synth")
    tiles, overlays = [], []
    for i, clip in enumerate(clips[: columns * rows]):
        video = root / clip["path"]
        truth = ClipTruth.load(str(video)[: -len(".mp4")] + GT_SUFFIX)
        # The frame where most people are in view, late enough for the motion to show.
        in_view = truth.in_view.sum(axis=1)
        t = int(np.argmax(in_view[truth.num_frames // 3 :]) + truth.num_frames // 3)
        frame = _read_frame(video, t)
        if frame is None:
            continue
        tile = frame.copy()
        caption = f"{clip['label']} ({clip['num_people']})"
        cv2.putText(tile, caption, (5, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, caption, (5, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
        if skeleton_row and i < columns:
            over = frame.copy()
            for p in range(truth.num_people):
                kp, vis = truth.keypoints2d[t, p], truth.visibility[t, p]
                for a, b in COCO17_SKELETON:
                    if vis[a] and vis[b]:
                        cv2.line(over, tuple(int(v) for v in kp[a]), tuple(int(v) for v in kp[b]), (255, 255, 255), 1, cv2.LINE_AA)
                for k in range(17):
                    if vis[k]:
                        colour = (0, 200, 0) if vis[k] == VISIBLE else (0, 0, 230)
                        cv2.circle(over, tuple(int(v) for v in kp[k]), 2, colour, -1, cv2.LINE_AA)
            overlays.append(over)
    height, width = tiles[0].shape[:2]
    blank = np.zeros((height, width, 3), np.uint8)
    grid_rows = []
    for r in range(rows):
        row = tiles[r * columns : (r + 1) * columns]
        if not row:
            break
        grid_rows.append(np.concatenate(row + [blank] * (columns - len(row)), axis=1))
    if overlays:
        grid_rows.append(np.concatenate(overlays + [blank] * (columns - len(overlays)), axis=1))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.concatenate(grid_rows, axis=0))
    return out
