"""Multi-person 2D pose detectors behind one small interface.

A detector takes a batch of RGB frames and returns, per frame, every detected person as
COCO-17 keypoints (ultralytics order, ``models.joint_names.COCO17_NAMES``) in pixels with
a confidence per keypoint, a box and a score (:class:`FrameDetections`).

:class:`YoloPoseDetector` wraps any ultralytics ``*-pose.pt`` checkpoint the user gives.
Nothing is ever downloaded: a missing file is a :class:`FileNotFoundError` naming the path,
and ``YOLO_OFFLINE=1`` is set before ultralytics is imported.

Weights are untrusted input: a ``.pt`` is a pickle, and ultralytics' default loader calls
``torch.load(weights_only=False)``, which runs whatever the pickle names. This module turns
on ultralytics' restricted loading (``ULTRALYTICS_SAFE_LOAD=1``: ``torch.load(weights_only=True)``
against an allow-list of ultralytics' and torch's model classes, and model construction
without ``eval``) before ultralytics is imported, forces it on if ultralytics was imported
earlier, and first opens the file itself with the restricted loader
(:func:`load_yolo_checkpoint`): a file naming any other global is refused with
:class:`UnsafeWeightsError` naming the file, and nothing of it runs.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from models.joint_names import COCO17_NAMES
from models.load_errors import refusal_detail

logger = logging.getLogger(__name__)

NUM_KEYPOINTS = len(COCO17_NAMES)

__all__ = [
    "FrameDetections",
    "PoseDetector",
    "UnsafeWeightsError",
    "YoloPoseDetector",
    "check_pose_checkpoint",
    "detector_input_size",
    "empty_detections",
    "load_yolo_checkpoint",
]


class UnsafeWeightsError(ValueError):
    """A weights file that is unsafe or not a loadable checkpoint (nothing of it was executed)."""


def _import_ultralytics_safely():
    """``ultralytics.nn.tasks`` with restricted (``weights_only=True``) loading switched on.

    The flag is read by ultralytics when it is first imported; if that happened before this
    call (without the flag), the module's copy is switched on here too.

    Raises:
        RuntimeError: this torch lacks restricted-load support (ultralytics needs torch >= 2.6).
    """
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics.nn import tasks

    if not tasks._SafeLoad.SUPPORTED:
        raise RuntimeError("torch lacks weights_only allow-lists (needs torch >= 2.6); YOLO weights cannot be loaded safely")
    tasks.SAFE_LOAD = True
    return tasks


def load_yolo_checkpoint(weights: str | os.PathLike) -> dict:
    """Open an ultralytics ``.pt`` checkpoint with the restricted loader only.

    ``torch.load(weights_only=True)`` with ultralytics' allow-list of model classes (zip
    format) or no extra class at all (legacy format): a pickle naming ``os.system``,
    ``builtins.exec`` or any class outside the list is refused before it runs.

    Args:
        weights: path of a local ``.pt`` file.

    Returns:
        The checkpoint dict (``{"model": nn.Module, ...}``).

    Raises:
        FileNotFoundError: no such file.
        UnsafeWeightsError: the file is unsafe, corrupt or not an ultralytics checkpoint.
    """
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"YOLO pose weights {str(weights)!r} not found; give the path of a local *-pose.pt file "
            "(vid2mesh never downloads weights)."
        )
    if path.suffix != ".pt":
        raise UnsafeWeightsError(f"YOLO pose weights {str(weights)!r} must be a PyTorch .pt checkpoint.")
    tasks = _import_ultralytics_safely()
    try:
        checkpoint, _ = tasks.torch_safe_load(str(path), safe_only=True)
    except PermissionError as exc:
        raise UnsafeWeightsError(f"YOLO pose weights {str(weights)!r} cannot be read ({exc}); fix its permissions.") from exc
    except Exception as exc:  # UnpicklingError, TypeError, ModuleNotFoundError, RuntimeError, OSError...
        detail = refusal_detail(exc, text=str(exc).replace("ERROR ❌️ ", ""))
        detail = detail.split(" Use an official")[0].split(" Recommended fixes")[0]  # ultralytics' download hints
        raise UnsafeWeightsError(
            f"YOLO pose weights {str(weights)!r} refused: not a safely loadable ultralytics checkpoint "
            f"({detail}); nothing in it was run. Use a trusted *-pose.pt saved by ultralytics "
            "(YOLO(...).save or training output), or re-export your model to that format."
        ) from exc
    model = checkpoint.get("ema") or checkpoint.get("model") if isinstance(checkpoint, dict) else None
    import torch

    if not isinstance(model, torch.nn.Module):
        raise UnsafeWeightsError(
            f"YOLO pose weights {str(weights)!r} hold no ultralytics model (keys {sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__})."
        )
    return checkpoint


def check_pose_checkpoint(checkpoint: dict, weights: str | os.PathLike) -> None:
    """Refuse an ultralytics checkpoint that is not a COCO-17 pose model.

    A detect, segment, classify or OBB checkpoint loads as well as a pose one (and
    ``YOLO(..., task="pose")`` would not object), but finds no keypoints.

    Args:
        checkpoint: from :func:`load_yolo_checkpoint`.
        weights: its path, for the message.

    Raises:
        ValueError: one line naming the file, the model's task and what is needed.
    """
    model = checkpoint.get("ema") or checkpoint.get("model")
    yaml = getattr(model, "yaml", None) or {}
    kpt_shape = tuple(getattr(model, "kpt_shape", None) or yaml.get("kpt_shape") or ())
    kind = type(model).__name__.removesuffix("Model").lower() or "unknown"
    if kpt_shape[:1] != (NUM_KEYPOINTS,):
        raise ValueError(
            f"{str(weights)!r} is not a YOLO pose model (an ultralytics {kind} model, keypoints "
            f"{list(kpt_shape) or None}); give a COCO-17 pose checkpoint (*-pose.pt, e.g. yolo11n-pose.pt)."
        )


MODEL_STRIDE = 32
"""Largest stride of the YOLO models: their input sides are multiples of it."""


def detector_input_size(frame_size: tuple[int, int], upscale: float) -> int:
    """The detector's input size (longest side) that enlarges frames by ``upscale``.

    YOLO nano's smallest reliable person is tens of pixels tall at its input; people of
    50-120 px in a 640 px frame are found far more often when the frame is enlarged
    (``docs/perception.md``, "Detector input and small people").

    Args:
        frame_size: (height, width) of the frames, pixels.
        upscale: enlargement factor (1 = the frames' own size).

    Returns:
        ``upscale`` x the longer side, rounded up to a multiple of :data:`MODEL_STRIDE`, pixels.
    """
    side = max(frame_size) * upscale
    return int(math.ceil(side / MODEL_STRIDE - 1e-9)) * MODEL_STRIDE


@dataclass(frozen=True)
class FrameDetections:
    """The people detected in one frame.

    Attributes:
        keypoints: (N, 17, 3) float32 COCO-17, pixels + confidence in [0, 1].
        boxes: (N, 4) float32 x0, y0, x1, y1 in pixels.
        scores: (N,) float32 person score in [0, 1].
    """

    keypoints: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        n = self.keypoints.shape[0]
        if self.keypoints.shape != (n, NUM_KEYPOINTS, 3):
            raise ValueError(f"FrameDetections.keypoints must be (N, 17, 3), got {self.keypoints.shape}")
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,):
            raise ValueError(
                f"FrameDetections: boxes {self.boxes.shape} / scores {self.scores.shape} do not match N={n}"
            )

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    def select(self, keep: np.ndarray) -> "FrameDetections":
        """The detections where ``keep`` (bool mask or index array) holds."""
        return FrameDetections(self.keypoints[keep], self.boxes[keep], self.scores[keep])


def empty_detections() -> FrameDetections:
    """A frame without any person."""
    return FrameDetections(
        np.zeros((0, NUM_KEYPOINTS, 3), np.float32), np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    )


@runtime_checkable
class PoseDetector(Protocol):
    """Anything that turns RGB frames into per-frame person detections."""

    def detect(self, frames: np.ndarray) -> list[FrameDetections]:
        """Detect people.

        Args:
            frames: (B, H, W, 3) uint8 RGB.

        Returns:
            B :class:`FrameDetections`, pixels of the given frames.
        """
        ...


class YoloPoseDetector:
    """ultralytics YOLO pose model (any ``*-pose.pt``: YOLOv8/11 n..x, custom fine-tunes).

    Args:
        weights: path of a local ``.pt`` pose checkpoint. Never downloaded.
        device: torch device string ("cpu", "cuda", "cuda:1", ...).
        confidence: minimum person score kept (ultralytics ``conf``).
        iou: IoU threshold of non-maximum suppression.
        image_size: inference size (longest side, pixels; ultralytics ``imgsz``); None
            derives it from each batch's frames (:func:`detector_input_size`).
        upscale: with ``image_size`` None, the model sees the frames enlarged by this factor.
        batch_size: frames per forward pass.
        max_detections: most people per frame before NMS output is cut.
        half: fp16 inference (CUDA only).
    """

    def __init__(
        self,
        weights: str | os.PathLike,
        device: str = "cpu",
        confidence: float = 0.25,
        iou: float = 0.7,
        image_size: int | None = None,
        upscale: float = 1.5,
        batch_size: int = 16,
        max_detections: int = 100,
        half: bool = False,
    ):
        path = Path(weights)
        if not 0.0 <= confidence <= 1.0 or not 0.0 <= iou <= 1.0:
            raise ValueError(f"confidence ({confidence}) and iou ({iou}) must lie in [0, 1].")
        # refuses unsafe files before ultralytics' own loader sees them, and other tasks' models
        check_pose_checkpoint(load_yolo_checkpoint(path), path)
        _import_ultralytics_safely()  # and that loader is restricted too
        from ultralytics import YOLO

        self.model = YOLO(str(path), task="pose")
        task = getattr(self.model, "task", None)
        kpt_shape = tuple(getattr(self.model.model, "kpt_shape", None) or ())
        if task != "pose" or kpt_shape[:1] != (NUM_KEYPOINTS,):
            raise ValueError(
                f"{str(weights)!r} is a YOLO {task!r} model with keypoints {kpt_shape or None}; a COCO-17 "
                "pose model (*-pose.pt) is needed."
            )
        self.weights = str(path)
        self.device = device
        self.confidence = float(confidence)
        self.iou = float(iou)
        self.image_size = None if image_size is None else int(image_size)
        self.upscale = float(upscale)
        self.batch_size = int(batch_size)
        self.max_detections = int(max_detections)
        self.half = bool(half)
        self.runtime = "torch"
        logger.info("loaded YOLO pose detector %s on %s", self.weights, device)

    def use_runtime(self, model, runtime: str) -> None:
        """Run ``model`` instead of the checkpoint: an ultralytics ``YOLO`` of an export of
        the same weights (see :func:`models.pose_runtime.yolo_pose_detector`)."""
        self.model = model
        self.runtime = runtime

    def detect(self, frames: np.ndarray) -> list[FrameDetections]:
        """Detect people in RGB frames.

        Args:
            frames: (B, H, W, 3) uint8 RGB.

        Returns:
            B :class:`FrameDetections` (pixels of the input frames).
        """
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (B, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
        out: list[FrameDetections] = []
        image_size = self.image_size or detector_input_size(frames.shape[1:3], self.upscale)
        for start in range(0, frames.shape[0], self.batch_size):
            # ultralytics treats numpy images as BGR (OpenCV order).
            chunk = [np.ascontiguousarray(f[..., ::-1]) for f in frames[start : start + self.batch_size]]
            options = dict(
                conf=self.confidence,
                iou=self.iou,
                imgsz=image_size,
                device=self.device,
                max_det=self.max_detections,
                batch=len(chunk),
                verbose=False,
            )
            if self.half:
                options["half"] = True
            results = self.model.predict(chunk, **options)
            out.extend(self._parse(r) for r in results)
        return out

    @staticmethod
    def _parse(result) -> FrameDetections:
        boxes = result.boxes
        if boxes is None or len(boxes) == 0 or result.keypoints is None:
            return empty_detections()
        data = result.keypoints.data.detach().float().cpu().numpy()
        if data.shape[-1] == 2:  # models trained without keypoint visibility
            data = np.concatenate([data, np.ones(data.shape[:-1] + (1,), np.float32)], axis=-1)
        # ultralytics marks keypoints outside the image or below its threshold with (0, 0).
        missing = (data[..., 0] == 0) & (data[..., 1] == 0)
        data[missing, 2] = 0.0
        return FrameDetections(
            keypoints=np.ascontiguousarray(data, dtype=np.float32),
            boxes=boxes.xyxy.detach().float().cpu().numpy().astype(np.float32),
            scores=boxes.conf.detach().float().cpu().numpy().astype(np.float32),
        )
