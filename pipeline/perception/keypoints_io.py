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

Sidecars are untrusted input. Before parsing, a file must be a regular, readable file of
at most :data:`MAX_SIDECAR_BYTES` whose JSON nests at most :data:`MAX_JSON_DEPTH` levels.
Once the video is probed, :meth:`PrecomputedKeypoints.check_video` requires positive image
sizes that match the video's (or scale it uniformly), every seen keypoint and box within
:data:`COORDINATE_MARGIN` frame sizes of the frame, and frame ids inside the video;
otherwise the clip is ``corrupt_keypoints`` with the field and the value in the message.
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

MAX_SIDECAR_BYTES = 256 * 1024 * 1024
"""Largest keypoint JSON file read (a 60 s, 30 fps COCO file of 10 people is about 10 MB)."""
MAX_JSON_DEPTH = 64
"""Deepest JSON nesting accepted (COCO and OpenPose files nest 3-4 levels)."""
COORDINATE_MARGIN = 0.5
"""Seen keypoints and boxes may lie up to this fraction of the frame's width (height)
left of (above) or right of (below) the frame; detectors extrapolate cut-off limbs a little."""
FRAME_ID_SLACK = 1
"""Frame ids may exceed the container's frame count by this many frames (rounding of counts)."""


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

    def check_video(self, width: int, height: int, num_frames: int | None) -> None:
        """Check the keypoints against the probed video.

        Args:
            width, height: the source video's display size, pixels.
            num_frames: the source's frame count (None when the container does not say).

        Raises:
            KeypointsError: ``corrupt_keypoints`` naming the field, the value and the bound.
        """
        fix = "regenerate the keypoints for this video"
        if self.image_size is not None:
            iw, ih = self.image_size
            if abs((width / iw) / (height / ih) - 1.0) > 0.01:
                raise KeypointsError(
                    RejectReason.CORRUPT_KEYPOINTS,
                    f"{self.source}: image size {iw}x{ih} (images[].width/height) does not match the video's "
                    f"{width}x{height} (nor scale it uniformly); {fix}.",
                )
        else:
            iw, ih = width, height
        if num_frames is not None and self.frames and max(self.frames) >= num_frames + FRAME_ID_SLACK:
            raise KeypointsError(
                RejectReason.CORRUPT_KEYPOINTS,
                f"{self.source}: frame id {max(self.frames)} ({'images[].id/image_id' if self.format == 'coco' else 'file name'}) "
                f"lies past the video's last frame {num_frames - 1}; frame ids are 0-based source frame indices; {fix}.",
            )
        lo_x, hi_x = -COORDINATE_MARGIN * iw, (1.0 + COORDINATE_MARGIN) * iw
        lo_y, hi_y = -COORDINATE_MARGIN * ih, (1.0 + COORDINATE_MARGIN) * ih
        for frame in sorted(self.frames):
            found = self.frames[frame]
            if len(found) == 0:
                continue
            seen = found.keypoints[..., 2] > 0
            x, y = found.keypoints[..., 0], found.keypoints[..., 1]
            bad = seen & ((x < lo_x) | (x > hi_x) | (y < lo_y) | (y > hi_y))
            if bad.any():
                person, joint = (int(v) for v in np.argwhere(bad)[0])
                raise KeypointsError(
                    RejectReason.CORRUPT_KEYPOINTS,
                    f"{self.source} (frame {frame}), person {person}: keypoint {COCO17_NAMES[joint]} at "
                    f"({float(x[person, joint]):.6g}, {float(y[person, joint]):.6g}) px lies more than "
                    f"{COORDINATE_MARGIN:g} frame sizes outside the {iw}x{ih} frame; {fix}.",
                )
            boxes = found.boxes
            finite = np.isfinite(boxes).all(1)
            outside = finite & ((boxes[:, [0, 2]] < lo_x) | (boxes[:, [0, 2]] > hi_x)
                                | (boxes[:, [1, 3]] < lo_y) | (boxes[:, [1, 3]] > hi_y)).any(1)
            if outside.any():
                person = int(np.flatnonzero(outside)[0])
                raise KeypointsError(
                    RejectReason.CORRUPT_KEYPOINTS,
                    f"{self.source} (frame {frame}), person {person}: box {boxes[person].tolist()} lies more than "
                    f"{COORDINATE_MARGIN:g} frame sizes outside the {iw}x{ih} frame; {fix}.",
                )

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


def _detections(keypoints: np.ndarray) -> FrameDetections:
    """The one path from COCO-17 keypoints of one frame to detections, for every format.

    Confidences are clipped to [0, 1] and keypoints at confidence 0 zeroed; people without
    a seen keypoint are dropped; the box is the extent of the seen keypoints and the score
    their mean confidence. A COCO file's own ``bbox`` and ``score`` are not used: OpenPose
    files carry neither, and one detection set must give the same tracks in either format.

    Args:
        keypoints: (N, 17, 3) pixels + confidence.
    """
    keypoints = keypoints.astype(np.float32)
    keypoints[..., 2] = np.clip(keypoints[..., 2], 0.0, 1.0)
    keypoints[keypoints[..., 2] <= 0] = 0.0
    keep = (keypoints[..., 2] > 0).any(axis=1)
    boxes = _boxes_from_keypoints(keypoints)
    conf = keypoints[..., 2].astype(np.float64)  # exact sums: no dependence on memory layout or SIMD path
    scores = np.where(keep, conf.sum(1) / np.maximum((conf > 0).sum(1), 1), 0.0)
    return FrameDetections(keypoints[keep], boxes[keep].astype(np.float32), scores.astype(np.float32)[keep])


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


def json_depth(text: str) -> int:
    """Deepest ``[``/``{`` nesting of a JSON text (brackets inside strings ignored)."""
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    codes = np.frombuffer(stripped.encode("utf-8", errors="replace"), np.uint8)
    step = np.isin(codes, (ord("["), ord("{"))).astype(np.int32) - np.isin(codes, (ord("]"), ord("}"))).astype(np.int32)
    return int(np.cumsum(step).max()) if step.size else 0


def _read_json(path: Path, frame: int | None = None):
    """Parse a keypoint JSON file after checking that it is a readable regular file of at
    most MAX_SIDECAR_BYTES nesting at most MAX_JSON_DEPTH levels."""
    import stat as stat_module

    where = f"{path}" + (f" (frame {frame})" if frame is not None else "")
    try:
        info = os.stat(path)
    except PermissionError as exc:
        raise KeypointsError(RejectReason.UNREADABLE, f"cannot read keypoints {where}: {exc.strerror}; fix the permissions.") from exc
    except OSError as exc:
        raise KeypointsError(RejectReason.MISSING_KEYPOINTS, f"cannot stat keypoints {where}: {exc.strerror or exc}; check the path and the disk.") from exc
    if not stat_module.S_ISREG(info.st_mode):
        raise KeypointsError(
            RejectReason.CORRUPT_KEYPOINTS,
            f"keypoints {where} is not a regular file (a FIFO, device or socket); give a JSON file.",
        )
    if info.st_size > MAX_SIDECAR_BYTES:
        raise KeypointsError(
            RejectReason.CORRUPT_KEYPOINTS,
            f"keypoints {where} is {info.st_size} bytes, more than the {MAX_SIDECAR_BYTES} byte bound "
            "(pipeline.perception.keypoints_io.MAX_SIDECAR_BYTES); split the clip or regenerate the file.",
        )
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
        depth = json_depth(text)
        if depth > MAX_JSON_DEPTH:
            raise KeypointsError(
                RejectReason.CORRUPT_KEYPOINTS,
                f"corrupt keypoints JSON {where}: nested {depth} levels deep, more than {MAX_JSON_DEPTH}; "
                "regenerate or remove the file.",
            )
        return json.loads(text)
    except PermissionError as exc:
        raise KeypointsError(RejectReason.UNREADABLE, f"cannot read keypoints {where}: {exc.strerror}; fix the permissions.") from exc
    except RecursionError as exc:
        raise KeypointsError(
            RejectReason.CORRUPT_KEYPOINTS, f"corrupt keypoints JSON {where}: nested too deeply; regenerate or remove the file."
        ) from exc
    except json.JSONDecodeError as exc:
        raise KeypointsError(
            RejectReason.CORRUPT_KEYPOINTS,
            f"corrupt keypoints JSON {where}: {exc.msg} at line {exc.lineno} column {exc.colno}; "
            "regenerate or remove the file.",
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise KeypointsError(RejectReason.CORRUPT_KEYPOINTS, f"cannot read keypoints {where}: {exc}; regenerate the file as UTF-8 JSON.") from exc


def load_openpose_folder(folder: str | os.PathLike) -> PrecomputedKeypoints:
    """Read an OpenPose output folder (one ``*_<frame>_keypoints.json`` per frame).

    Raises:
        KeypointsError: missing_keypoints (no folder / no file), corrupt_keypoints (bad
            JSON or keypoint arrays; the message names the file and frame).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise KeypointsError(RejectReason.MISSING_KEYPOINTS, f"OpenPose keypoints folder {folder} does not exist; put the <stem>_openpose/ folder there or pass --keypoints_root.")
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
                RejectReason.CORRUPT_KEYPOINTS, f"{path} (frame {frame}): no 'people' list; not an OpenPose file: regenerate it with OpenPose --write_json or remove it."
            )
        arrays = []
        for number, person in enumerate(people):
            values = person.get("pose_keypoints_2d", person.get("pose_keypoints")) if isinstance(person, dict) else None
            if _has_bool(values):
                raise KeypointsError(
                    RejectReason.CORRUPT_KEYPOINTS,
                    f"{path} (frame {frame}), person {number}: pose_keypoints_2d holds booleans (true/false); "
                    "regenerate the file with numeric values.",
                )
            try:
                array = np.asarray(values, dtype=np.float64).reshape(-1, 3)
            except (TypeError, ValueError) as exc:
                raise KeypointsError(
                    RejectReason.CORRUPT_KEYPOINTS,
                    f"{path} (frame {frame}), person {number}: pose_keypoints_2d is not a list of numbers; regenerate the file.",
                ) from exc
            if array.shape[0] not in _LAYOUTS or not np.isfinite(array).all():
                raise KeypointsError(
                    RejectReason.CORRUPT_KEYPOINTS,
                    f"{path} (frame {frame}), person {number}: {np.size(values) if values is not None else 0} "
                    "values; expected 75 (BODY_25) or 54 (COCO-18) finite numbers: regenerate the file.",
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
        frames[frame] = _detections(coco)
    if not frames:
        raise KeypointsError(
            RejectReason.MISSING_KEYPOINTS, f"OpenPose folder {folder} holds no *_<frame>_keypoints.json file; put OpenPose's per-frame files "
            "(--write_json) in it or remove the folder."
        )
    if len(layouts) > 1:
        raise KeypointsError(RejectReason.CORRUPT_KEYPOINTS, f"OpenPose folder {folder} mixes layouts {sorted(layouts)}; regenerate every frame with one model.")
    return PrecomputedKeypoints(str(folder), layouts.pop() if layouts else "openpose_body25", frames)


def _is_visibility_flags(values: np.ndarray) -> bool:
    """Whether a COCO file's third channel holds ground-truth flags {0, 1, 2} (all its
    values, some 2) rather than detector confidences."""
    return bool(np.isin(values, (0.0, 1.0, 2.0)).all() and (values == 2.0).any())


def _flags_to_confidence(values: np.ndarray) -> np.ndarray:
    """COCO visibility flags to confidences: 2 (visible) -> 1, 1 (occluded) -> 0.5, 0 -> 0."""
    return np.select([values == 2.0, values == 1.0], [1.0, 0.5], 0.0).astype(values.dtype)


def _has_bool(values: object) -> bool:
    """Whether a JSON value is, or is a list holding, a boolean (``true``/``false``)."""
    if isinstance(values, bool):
        return True
    return isinstance(values, list) and any(_has_bool(v) for v in values)


def _image_size(path: Path, number: int, image: object) -> tuple[int, int] | None:
    """``images[number]``'s (width, height), None when it gives neither; positive integers."""
    if not isinstance(image, dict) or ("width" not in image and "height" not in image):
        return None
    values = []
    for field in ("width", "height"):
        value = image.get(field)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value <= 0 or value != int(value):
            raise KeypointsError(
                RejectReason.CORRUPT_KEYPOINTS,
                f"{path}: images[{number}].{field} = {value!r}; image sizes must be positive integers (pixels): fix or regenerate the file.",
            )
        values.append(int(value))
    return values[0], values[1]


def load_coco_keypoints(path: str | os.PathLike) -> PrecomputedKeypoints:
    """Read a COCO keypoint JSON file covering one video (image id = source frame index).

    Raises:
        KeypointsError: missing_keypoints or corrupt_keypoints (message names file and frame).
    """
    path = Path(path)
    if not path.is_file():
        raise KeypointsError(RejectReason.MISSING_KEYPOINTS, f"COCO keypoints file {path} does not exist; give an existing <stem>.coco.json file.")
    data = _read_json(path)
    image_size = None
    if isinstance(data, list):
        annotations = data
    elif isinstance(data, dict) and isinstance(data.get("annotations"), list):
        annotations = data["annotations"]
        images = data.get("images") or []
        if not isinstance(images, list):
            raise KeypointsError(RejectReason.CORRUPT_KEYPOINTS, f"{path}: 'images' is not a list; regenerate the file in COCO keypoint format.")
        sizes = {_image_size(path, number, image) for number, image in enumerate(images)} - {None}
        if len(sizes) > 1:
            raise KeypointsError(
                RejectReason.CORRUPT_KEYPOINTS,
                f"{path}: images[] list {len(sizes)} different sizes {sorted(sizes)[:4]}; one video has one frame size: regenerate the file.",
            )
        if sizes:
            image_size = sizes.pop()
    else:
        raise KeypointsError(
            RejectReason.CORRUPT_KEYPOINTS, f"{path}: no 'annotations' list; not a COCO keypoint file: regenerate it or remove it."
        )
    per_frame: dict[int, list[np.ndarray]] = {}
    if isinstance(data, dict):
        for image in data.get("images") or []:
            if isinstance(image, dict) and isinstance(image.get("id"), bool):
                raise KeypointsError(
                    RejectReason.CORRUPT_KEYPOINTS,
                    f"{path}: images[].id = {image['id']!r} is a boolean; image ids must be frame indices "
                    "(int >= 0): regenerate the file.",
                )
            if isinstance(image, dict) and isinstance(image.get("id"), int):
                per_frame.setdefault(int(image["id"]), [])
    for number, annotation in enumerate(annotations):
        if not isinstance(annotation, dict) or "image_id" not in annotation:
            raise KeypointsError(RejectReason.CORRUPT_KEYPOINTS, f"{path}: annotation {number} has no image_id; regenerate the file (image_id = frame index).")
        frame = annotation["image_id"]
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
            raise KeypointsError(
                RejectReason.CORRUPT_KEYPOINTS,
                f"{path}: annotation {number} has image_id {frame!r}; image ids must be frame indices (int >= 0, not a boolean): regenerate the file.",
            )
        if annotation.get("category_id", 1) != 1:
            continue
        if _has_bool(annotation.get("keypoints")):
            raise KeypointsError(
                RejectReason.CORRUPT_KEYPOINTS,
                f"{path} (frame {frame}), annotation {number}: keypoints hold booleans (true/false); they must be "
                "51 numbers (17 x (x, y, v)): regenerate the file with numeric values.",
            )
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
        per_frame.setdefault(frame, []).append(keypoints)  # bbox and score: see _detections
    if not per_frame:
        raise KeypointsError(RejectReason.MISSING_KEYPOINTS, f"COCO keypoints file {path} lists no frame; regenerate it for this video or remove it.")
    # One reading of the third channel (flags or confidences) for the whole file, applied to
    # each frame's own people: matched by frame index, whatever order the lists are in.
    all_v = [k[:, 2] for people in per_frame.values() for k in people]
    flags = _is_visibility_flags(np.concatenate(all_v)) if all_v else False
    frames: dict[int, FrameDetections] = {}
    for frame in sorted(per_frame):
        people = per_frame[frame]
        if not people:
            frames[frame] = empty_detections()
            continue
        keypoints = np.stack(people).astype(np.float32)
        if flags:
            keypoints[..., 2] = _flags_to_confidence(keypoints[..., 2])
        frames[frame] = _detections(keypoints)
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
    if path.exists():
        raise KeypointsError(
            RejectReason.CORRUPT_KEYPOINTS,
            f"precomputed keypoints {uri} is not a regular file or folder (a FIFO, device or socket); give a JSON file.",
        )
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
