"""Precomputed 2D keypoints: OpenPose per-frame JSON and COCO keypoint JSON, as COCO-17.

Supported inputs (``docs/conventions.md``):

* OpenPose: a folder of ``<anything>_<frame:012d>_keypoints.json`` files, one per source
  frame, ``people[].pose_keypoints_2d`` in the BODY_25 (25 x 3) or COCO-18 (18 x 3) layout.
* COCO keypoint JSON, one file per video: ``images[].id`` = source frame index,
  ``annotations[]`` with ``image_id``, ``keypoints`` = 17 x (x, y, v) pixels, optional
  ``score`` and ``bbox``; a bare list of annotations (the COCO results format) also works.

Both become :class:`models.pose_detector.FrameDetections` per source frame, in COCO-17
ultralytics order. Frame indices are those of the *source* video (0 = its first frame, in
display order); :func:`pipeline.perception.decode.source_frame_index` gives the source frame
of each decoded frame and :meth:`PrecomputedKeypoints.for_frames` picks those. Problems are raised as :class:`KeypointsError`
with a :class:`pipeline.records.RejectReason` code and a message naming the file and frame.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.joint_names import COCO17_NAMES
from models.pose_detector import FrameDetections, empty_detections
from pipeline.records import RejectReason

logger = logging.getLogger(__name__)

__all__ = [
    "COCO_SUFFIX",
    "KeypointsError",
    "OPENPOSE_BODY25_NAMES",
    "OPENPOSE_COCO18_NAMES",
    "OPENPOSE_SUFFIX",
    "PrecomputedKeypoints",
    "find_sidecar_keypoints",
    "load_coco_keypoints",
    "load_keypoints",
    "load_openpose_folder",
    "openpose_to_coco17",
]

COCO_SUFFIX = ".coco.json"
OPENPOSE_SUFFIX = "_openpose"

OPENPOSE_BODY25_NAMES: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
    "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
    "left_heel", "right_big_toe", "right_small_toe", "right_heel",
)  # fmt: skip
"""OpenPose BODY_25 keypoint order."""

OPENPOSE_COCO18_NAMES: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
"""OpenPose COCO-18 keypoint order."""

BODY25_TO_COCO17: tuple[int, ...] = tuple(OPENPOSE_BODY25_NAMES.index(n) for n in COCO17_NAMES)
COCO18_TO_COCO17: tuple[int, ...] = tuple(OPENPOSE_COCO18_NAMES.index(n) for n in COCO17_NAMES)
_LAYOUTS = {25: ("openpose_body25", BODY25_TO_COCO17), 18: ("openpose_coco18", COCO18_TO_COCO17)}
_OPENPOSE_FILE = re.compile(r"(\d+)_keypoints\.json$")


class KeypointsError(Exception):
    """Unusable precomputed keypoints; ``reason`` is a RejectReason code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class PrecomputedKeypoints:
    """Detections per source frame, read from a file or folder.

    Attributes:
        source: the file or folder read.
        format: "coco", "openpose_body25" or "openpose_coco18".
        frames: source frame index -> detections (frames not listed have nobody).
        image_size: (width, height) of the pixel space of the keypoints when the file says
            (COCO ``images[].width/height``), else None (= source video display size).
    """

    source: str
    format: str
    frames: dict[int, FrameDetections]
    image_size: tuple[int, int] | None = None

    @property
    def num_frames(self) -> int:
        """1 + the largest source frame index with an entry (0 when empty)."""
        return max(self.frames) + 1 if self.frames else 0

    def for_frames(self, source_index: np.ndarray, scale: tuple[float, float] = (1.0, 1.0)) -> list[FrameDetections]:
        """Detections of the given source frames, rescaled to decoded pixels.

        Args:
            source_index: (F,) int source frame index of each decoded frame.
            scale: (sx, sy) from keypoint pixels to decoded pixels.

        Returns:
            F :class:`FrameDetections` (copies; empty where the source frame has none).
        """
        sx, sy = scale
        out = []
        for index in np.asarray(source_index).reshape(-1):
            found = self.frames.get(int(index))
            if found is None or len(found) == 0:
                out.append(empty_detections())
                continue
            keypoints = found.keypoints.copy()
            keypoints[..., 0] *= sx
            keypoints[..., 1] *= sy
            boxes = found.boxes * np.array([sx, sy, sx, sy], np.float32)
            out.append(FrameDetections(keypoints, boxes.astype(np.float32), found.scores.copy()))
        return out


def _boxes_from_keypoints(keypoints: np.ndarray) -> np.ndarray:
    """(N, 17, 3) -> (N, 4) extent of the keypoints with confidence > 0 (NaN if none)."""
    visible = keypoints[..., 2] > 0
    x, y = keypoints[..., 0], keypoints[..., 1]
    boxes = np.stack(
        [
            np.where(visible, x, np.inf).min(1),
            np.where(visible, y, np.inf).min(1),
            np.where(visible, x, -np.inf).max(1),
            np.where(visible, y, -np.inf).max(1),
        ],
        1,
    )
    boxes[~visible.any(1)] = np.nan
    return boxes.astype(np.float32)


def _detections(keypoints: np.ndarray, boxes: np.ndarray | None, scores: np.ndarray | None) -> FrameDetections:
    """Build detections, dropping people without any visible keypoint."""
    keypoints = keypoints.astype(np.float32)
    keypoints[..., 2] = np.clip(keypoints[..., 2], 0.0, 1.0)
    keypoints[keypoints[..., 2] <= 0] = 0.0
    keep = (keypoints[..., 2] > 0).any(axis=1)
    derived = _boxes_from_keypoints(keypoints)
    if boxes is None:
        boxes = derived
    else:
        boxes = np.where(np.isfinite(boxes).all(1, keepdims=True), boxes, derived)
    if scores is None:
        conf = keypoints[..., 2]
        scores = np.where(keep, conf.sum(1) / np.maximum((conf > 0).sum(1), 1), 0.0)
    return FrameDetections(keypoints[keep], boxes[keep].astype(np.float32), np.asarray(scores, np.float32)[keep])


def openpose_to_coco17(people: np.ndarray) -> tuple[np.ndarray, str]:
    """OpenPose keypoints to COCO-17.

    Args:
        people: (N, J, 3) with J = 25 (BODY_25) or 18 (COCO-18), pixels + confidence.

    Returns:
        ((N, 17, 3) COCO-17 keypoints, layout name).
    """
    layout = _LAYOUTS.get(people.shape[1])
    if people.ndim != 3 or people.shape[2] != 3 or layout is None:
        raise ValueError(f"OpenPose keypoints must be (N, 25 or 18, 3), got {people.shape}")
    name, index = layout
    return people[:, list(index), :], name


def _read_json(path: Path, frame: int | None = None):
    where = f"{path}" + (f" (frame {frame})" if frame is not None else "")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise KeypointsError(
            RejectReason.CORRUPT_KEYPOINTS,
            f"corrupt keypoints JSON {where}: {exc.msg} at line {exc.lineno} column {exc.colno}; "
            "regenerate or remove the file.",
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise KeypointsError(RejectReason.CORRUPT_KEYPOINTS, f"cannot read keypoints {where}: {exc}") from exc


def load_openpose_folder(folder: str | os.PathLike) -> PrecomputedKeypoints:
    """Read an OpenPose output folder (one ``*_<frame>_keypoints.json`` per frame).

    Raises:
        KeypointsError: missing_keypoints (no folder / no file), corrupt_keypoints (bad
            JSON or keypoint arrays; the message names the file and frame).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise KeypointsError(RejectReason.MISSING_KEYPOINTS, f"OpenPose keypoints folder {folder} does not exist.")
    frames: dict[int, FrameDetections] = {}
    layouts: set[str] = set()
    for path in sorted(folder.iterdir()):
        match = _OPENPOSE_FILE.search(path.name)
        if match is None:
            continue
        frame = int(match.group(1))
        data = _read_json(path, frame)
        people = data.get("people") if isinstance(data, dict) else None
        if not isinstance(people, list):
            raise KeypointsError(
                RejectReason.CORRUPT_KEYPOINTS, f"{path} (frame {frame}): no 'people' list; not an OpenPose file."
            )
        arrays = []
        for number, person in enumerate(people):
            values = person.get("pose_keypoints_2d", person.get("pose_keypoints")) if isinstance(person, dict) else None
            try:
                array = np.asarray(values, dtype=np.float64).reshape(-1, 3)
            except (TypeError, ValueError) as exc:
                raise KeypointsError(
                    RejectReason.CORRUPT_KEYPOINTS,
                    f"{path} (frame {frame}), person {number}: pose_keypoints_2d is not a list of numbers.",
                ) from exc
            if array.shape[0] not in _LAYOUTS or not np.isfinite(array).all():
                raise KeypointsError(
                    RejectReason.CORRUPT_KEYPOINTS,
                    f"{path} (frame {frame}), person {number}: {np.size(values) if values is not None else 0} "
                    "values; expected 75 (BODY_25) or 54 (COCO-18) finite numbers.",
                )
            arrays.append(array)
        if not arrays:
            frames[frame] = empty_detections()
            continue
        if len({a.shape[0] for a in arrays}) != 1:
            raise KeypointsError(
                RejectReason.CORRUPT_KEYPOINTS, f"{path} (frame {frame}): people use different keypoint layouts."
            )
        coco, layout = openpose_to_coco17(np.stack(arrays))
        layouts.add(layout)
        frames[frame] = _detections(coco, None, None)
    if not frames:
        raise KeypointsError(
            RejectReason.MISSING_KEYPOINTS, f"OpenPose folder {folder} holds no *_<frame>_keypoints.json file."
        )
    if len(layouts) > 1:
        raise KeypointsError(RejectReason.CORRUPT_KEYPOINTS, f"OpenPose folder {folder} mixes layouts {sorted(layouts)}.")
    return PrecomputedKeypoints(str(folder), layouts.pop() if layouts else "openpose_body25", frames)


def _visibility_to_confidence(values: np.ndarray) -> np.ndarray:
    """COCO third channel: ground-truth flags {0, 1, 2} or detector confidences."""
    flags = np.isin(values, (0.0, 1.0, 2.0)).all() and (values == 2.0).any()
    if flags:
        return np.select([values == 2.0, values == 1.0], [1.0, 0.5], 0.0)
    return values


def load_coco_keypoints(path: str | os.PathLike) -> PrecomputedKeypoints:
    """Read a COCO keypoint JSON file covering one video (image id = source frame index).

    Raises:
        KeypointsError: missing_keypoints or corrupt_keypoints (message names file and frame).
    """
    path = Path(path)
    if not path.is_file():
        raise KeypointsError(RejectReason.MISSING_KEYPOINTS, f"COCO keypoints file {path} does not exist.")
    data = _read_json(path)
    image_size = None
    if isinstance(data, list):
        annotations = data
    elif isinstance(data, dict) and isinstance(data.get("annotations"), list):
        annotations = data["annotations"]
        images = data.get("images") or []
        sizes = {(int(i["width"]), int(i["height"])) for i in images if isinstance(i, dict) and i.get("width")}
        if len(sizes) == 1:
            image_size = sizes.pop()
    else:
        raise KeypointsError(
            RejectReason.CORRUPT_KEYPOINTS, f"{path}: no 'annotations' list; not a COCO keypoint file."
        )
    per_frame: dict[int, list[tuple[np.ndarray, np.ndarray | None, float | None]]] = {}
    if isinstance(data, dict):
        for image in data.get("images") or []:
            if isinstance(image, dict) and isinstance(image.get("id"), int):
                per_frame.setdefault(int(image["id"]), [])
    for number, annotation in enumerate(annotations):
        if not isinstance(annotation, dict) or "image_id" not in annotation:
            raise KeypointsError(RejectReason.CORRUPT_KEYPOINTS, f"{path}: annotation {number} has no image_id.")
        frame = annotation["image_id"]
        if not isinstance(frame, int) or frame < 0:
            raise KeypointsError(
                RejectReason.CORRUPT_KEYPOINTS,
                f"{path}: annotation {number} has image_id {frame!r}; image ids must be frame indices (int >= 0).",
            )
        if annotation.get("category_id", 1) != 1:
            continue
        try:
            keypoints = np.asarray(annotation.get("keypoints"), dtype=np.float64).reshape(17, 3)
        except (TypeError, ValueError) as exc:
            raise KeypointsError(
                RejectReason.CORRUPT_KEYPOINTS,
                f"{path} (frame {frame}), annotation {number}: keypoints must be 51 numbers (17 x (x, y, v)); regenerate the file.",
            ) from exc
        if not np.isfinite(keypoints).all():
            raise KeypointsError(
                RejectReason.CORRUPT_KEYPOINTS, f"{path} (frame {frame}), annotation {number}: non-finite keypoints; regenerate the file."
            )
        box = None
        bbox = annotation.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox):
            x, y, w, h = (float(v) for v in bbox)
            box = np.array([x, y, x + w, y + h]) if w > 0 and h > 0 else None
        score = annotation.get("score")
        score = float(score) if isinstance(score, (int, float)) and math.isfinite(score) else None
        per_frame.setdefault(frame, []).append((keypoints, box, score))
    if not per_frame:
        raise KeypointsError(RejectReason.MISSING_KEYPOINTS, f"COCO keypoints file {path} lists no frame.")
    all_v = [k[:, 2] for people in per_frame.values() for k, _, _ in people]
    flags = _visibility_to_confidence(np.concatenate(all_v)) if all_v else None
    frames: dict[int, FrameDetections] = {}
    offset = 0
    for frame in sorted(per_frame):
        people = per_frame[frame]
        if not people:
            frames[frame] = empty_detections()
            continue
        keypoints = np.stack([k for k, _, _ in people]).astype(np.float32)
        n = len(people)
        keypoints[..., 2] = flags[offset : offset + 17 * n].reshape(n, 17)
        offset += 17 * n
        boxes = np.stack([b if b is not None else np.full(4, np.nan) for _, b, _ in people]).astype(np.float32)
        scores = None
        if all(s is not None for _, _, s in people):
            scores = np.array([s for _, _, s in people], np.float32)
        frames[frame] = _detections(keypoints, boxes, scores)
    return PrecomputedKeypoints(str(path), "coco", frames, image_size)


def load_keypoints(uri: str | os.PathLike) -> PrecomputedKeypoints:
    """Read precomputed keypoints: a COCO JSON file or an OpenPose folder.

    Raises:
        KeypointsError: missing_keypoints or corrupt_keypoints.
    """
    path = Path(str(uri).removeprefix("file://"))
    if path.is_dir():
        return load_openpose_folder(path)
    if path.is_file():
        return load_coco_keypoints(path)
    raise KeypointsError(
        RejectReason.MISSING_KEYPOINTS,
        f"precomputed keypoints {uri} not found; give a <stem>{COCO_SUFFIX} file or a <stem>{OPENPOSE_SUFFIX}/ folder.",
    )


def find_sidecar_keypoints(video_path: str | os.PathLike) -> str | None:
    """The ``<stem>.coco.json`` file or ``<stem>_openpose/`` folder next to a video, if any."""
    video = Path(str(video_path).removeprefix("file://"))
    for candidate in (video.with_name(video.stem + COCO_SUFFIX), video.with_name(video.stem + OPENPOSE_SUFFIX)):
        if candidate.exists():
            return str(candidate)
    return None
