"""Person crops stored in the shards (``--store_crops``): cut, JPEG-encode, decode.

A crop is the square around a person's detection box, its side the longer box side
times ``scale`` (1.2, HMR's margin), resized to ``size`` x ``size`` pixels, zero-padded
where the square leaves the frame, JPEG-encoded (OpenCV). Crops are made inside the
perception worker, where the decoded frames live, one per detection of each frame batch
(:func:`encode_detection_crops`); after tracking, :func:`track_crops` picks each track's
crop per frame for :attr:`optimize.problem.TrackProblem.crops`, and
:func:`crop_column` turns those into the ``crop_jpeg`` column of ``frames/`` (binary,
nullable: null on frames where the tracker skipped the person).

Geometry: continuous pixel coordinates with the origin at the top-left pixel corner (as
everywhere in vid2mesh); a crop pixel ``(u, v)`` (centre at ``u + 0.5``) shows the frame
point ``x = x0 + (u + 0.5) * side / size``, ``y = y0 + (v + 0.5) * side / size`` where
``(x0, y0)`` is the crop square's top-left corner (:func:`crop_square`). Keypoints map into
the crop with :func:`to_crop_pixels`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa

from optimize.validate import declare_ranges, integer, real, validate_fields

__all__ = [
    "CROP_COLUMN",
    "CropConfig",
    "crop_column",
    "crop_field",
    "crop_person",
    "crop_square",
    "decode_crop",
    "encode_crop",
    "encode_detection_crops",
    "to_crop_pixels",
    "track_crops",
]

CROP_COLUMN = "crop_jpeg"


@dataclass(frozen=True)
class CropConfig:
    """How person crops are made.

    Attributes:
        size: side of the stored square crop, pixels (224 for HMR/SPIN-style regressors;
            the default 160 keeps a 250-frame track near 1.5 MB at quality 90).
        scale: enlargement of the longer box side (HMR: 1.2).
        quality: JPEG quality in [1, 100].
    """

    size: int = 160
    scale: float = 1.2
    quality: int = 90

    def __post_init__(self) -> None:
        validate_fields(self)  # types and ranges: CROP_RANGES below
        if not 8 <= self.size <= 2048:
            raise ValueError(f"CropConfig.size={self.size}: use a crop side between 8 and 2048 pixels")
        if not self.scale > 0:
            raise ValueError(f"CropConfig.scale={self.scale}: must be > 0 (1.2 adds HMR's margin)")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"CropConfig.quality={self.quality}: JPEG quality must be in [1, 100]")


CROP_RANGES = declare_ranges(CropConfig, {
    "size": integer(ge=8, le=2048),
    "scale": real(gt=0, le=10),
    "quality": integer(ge=1, le=100),
})


def crop_square(box: np.ndarray, scale: float = 1.2) -> np.ndarray:
    """Square crop region around detection boxes.

    Args:
        box: (..., 4) x0, y0, x1, y1 pixels.
        scale: enlargement of the longer side.

    Returns:
        (..., 3) centre x px, centre y px, side px (side >= 1).
    """
    box = np.asarray(box, dtype=np.float64)
    if box.shape[-1] != 4:
        raise ValueError(f"box must be (..., 4) x0, y0, x1, y1 pixels; got {box.shape}")
    centre = 0.5 * (box[..., :2] + box[..., 2:])
    side = scale * np.maximum(box[..., 2] - box[..., 0], box[..., 3] - box[..., 1])
    return np.concatenate([centre, np.maximum(side, 1.0)[..., None]], axis=-1)


def _affine(square: np.ndarray, size: int) -> np.ndarray:
    """2 x 3 map from frame pixel indices to crop pixel indices (OpenCV convention)."""
    cx, cy, side = (float(v) for v in square)
    k = size / side
    # Continuous coords: q = (p - centre) * k + size / 2; index = coord - 0.5 on both sides.
    return np.array([[k, 0.0, (0.5 - cx) * k + size / 2 - 0.5], [0.0, k, (0.5 - cy) * k + size / 2 - 0.5]])


def to_crop_pixels(points: np.ndarray, box: np.ndarray, size: int, scale: float = 1.2) -> np.ndarray:
    """Map frame pixel coordinates into a crop made by :func:`crop_person`.

    Args:
        points: (N, 2+) pixels in the frame (extra channels, e.g. confidence, are kept).
        box: (4,) the detection box the crop was made from, pixels.
        size, scale: as for the crop.

    Returns:
        (N, 2+) with x, y in crop pixels.
    """
    cx, cy, side = crop_square(box, scale)
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] = (out[..., 0] - cx) * size / side + size / 2
    out[..., 1] = (out[..., 1] - cy) * size / side + size / 2
    return out


def crop_person(frame: np.ndarray, box: np.ndarray, config: CropConfig = CropConfig()) -> np.ndarray:
    """Cut one square person crop out of a frame.

    Args:
        frame: (H, W, 3) uint8 RGB.
        box: (4,) detection box x0, y0, x1, y1, pixels (finite).
        config: crop size and margin.

    Returns:
        (size, size, 3) uint8 RGB, black where the square leaves the frame.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"crop_person needs an (H, W, 3) uint8 RGB frame; got {frame.shape} {frame.dtype}")
    box = np.asarray(box, dtype=np.float64)
    if box.shape != (4,) or not np.isfinite(box).all():
        raise ValueError(f"crop_person needs a finite (4,) box x0, y0, x1, y1; got {box}")
    square = crop_square(box, config.scale)
    # Strong minification: warp to an integer multiple of the size, then area-average,
    # which keeps the same geometry and avoids bilinear aliasing.
    factor = int(min(4, max(1, math.floor(square[2] / config.size))))
    big = config.size * factor
    warped = cv2.warpAffine(frame, _affine(square, big), (big, big), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    if factor > 1:
        warped = cv2.resize(warped, (config.size, config.size), interpolation=cv2.INTER_AREA)
    return warped


def encode_crop(crop: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB crop.

    Args:
        crop: (S, S, 3) uint8 RGB.
        quality: JPEG quality in [1, 100].
    """
    crop = np.asarray(crop)
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise ValueError(f"encode_crop needs an (S, S, 3) uint8 RGB crop; got {crop.shape} {crop.dtype}")
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not JPEG-encode a crop of shape {crop.shape}")
    return data.tobytes()


def decode_crop(data: bytes) -> np.ndarray:
    """Decode a stored crop.

    Args:
        data: JPEG bytes from :func:`encode_crop` (a ``crop_jpeg`` value).

    Returns:
        (S, S, 3) uint8 RGB.

    Raises:
        ValueError: the bytes are empty or not a JPEG image.
    """
    if not data:
        raise ValueError("empty crop bytes: the frame has no crop (the tracker skipped it); check for null first")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"crop bytes ({len(data)} bytes starting {bytes(data[:4])!r}) are not a decodable JPEG")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def encode_detection_crops(frame: np.ndarray, boxes: np.ndarray, config: CropConfig = CropConfig()) -> list[bytes]:
    """JPEG crops of every detection of one frame (call per frame inside perception).

    Args:
        frame: (H, W, 3) uint8 RGB decoded frame.
        boxes: (N, 4) detection boxes x0, y0, x1, y1, pixels; non-finite boxes give b"".
        config: crop settings.

    Returns:
        N JPEG byte strings, in detection order.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return [
        encode_crop(crop_person(frame, box, config), config.quality) if np.isfinite(box).all() else b""
        for box in boxes
    ]


def track_crops(detection_crops: Sequence[Sequence[bytes]], selected: np.ndarray) -> tuple[bytes, ...]:
    """A track's crop per frame from every frame's detection crops.

    Args:
        detection_crops: T frames (the track's frames, in order), each the list of
            :func:`encode_detection_crops` of the detections the tracker chose from.
        selected: (T,) int index of the track's detection per frame, -1 where skipped
            (``TrackProblem.selected``).

    Returns:
        T byte strings (b"" on skipped frames): ``TrackProblem.crops``.
    """
    selected = np.asarray(selected).reshape(-1)
    if len(detection_crops) != selected.shape[0]:
        raise ValueError(f"{len(detection_crops)} frames of detection crops for {selected.shape[0]} track frames")
    out = []
    for t, (crops, index) in enumerate(zip(detection_crops, selected.tolist())):
        if index < 0:
            out.append(b"")
        elif index >= len(crops):
            raise ValueError(f"frame {t}: selected detection {index} but only {len(crops)} crops")
        else:
            out.append(bytes(crops[index]))
    return tuple(out)


def crop_field() -> pa.Field:
    """The ``crop_jpeg`` column: JPEG bytes of the person crop, null when the frame has none."""
    return pa.field(CROP_COLUMN, pa.binary(), nullable=True)


def crop_column(crops: Sequence[bytes], num_frames: int, keep: np.ndarray | None = None) -> pa.Array:
    """The ``crop_jpeg`` values of a track's frames rows.

    Args:
        crops: ``TrackProblem.crops``: T byte strings (b"" = no crop), or empty when the run
            stores no crops (all values null).
        num_frames: T, the track's frames.
        keep: optional (T,) bool mask of the rows written (e.g. inlier frames only).

    Returns:
        pa.BinaryArray of the kept rows, null where there is no crop.
    """
    if crops and len(crops) != num_frames:
        raise ValueError(f"{len(crops)} crops for a track of {num_frames} frames")
    values: list[bytes | None] = [c if c else None for c in crops] if crops else [None] * num_frames
    if keep is not None:
        keep = np.asarray(keep, dtype=bool).reshape(-1)
        values = [v for v, k in zip(values, keep.tolist()) if k]
    return pa.array(values, type=pa.binary())
