"""The stage objects the DoFns call: what runs apart from where it runs.

A stage is a small picklable object built on the launcher, shipped to the workers, and
set up there once per process (``setup`` loads models; the DoFns share the loaded stage
between their threads through ``apache_beam.utils.shared.Shared``). The Beam layer only
sees these two protocols, so tests swap in deterministic stages (``transforms.testing``) and
the job passes the real ones (``transforms.model_stages``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pipeline.records import ClipRef, PerceptionResult, TrackFit, TrackProblem

KEYPOINT_MODES = ("auto", "precomputed", "detect")


class PerceptionStage(Protocol):
    """Per-clip perception: decode, detect (or read keypoints), track, initialise.

    Attributes:
        keypoints_mode: "precomputed" (keypoint files only; a clip without one is rejected
            with ``missing_keypoints``), "detect" (run the pose detector), or "auto"
            (keypoint files where present, else the detector when there is one).
        keypoints_root: folder of precomputed keypoints, None = next to the videos.
        has_detector: a pose detector is configured.
    """

    keypoints_mode: str
    keypoints_root: str | None
    has_detector: bool

    def setup(self) -> None: ...
    def __call__(self, clip: ClipRef) -> PerceptionResult: ...
    def describe(self) -> dict[str, Any]: ...
    def video_rejection(self, clip: ClipRef) -> PerceptionResult | None:
        """Rejection of a missing or unreadable video (checked before reporting missing keypoints)."""


class BundleAdjustStage(Protocol):
    """Batched bundle adjustment of many track problems (one fit per problem, same order)."""

    def setup(self) -> None: ...
    def __call__(self, problems: Sequence[TrackProblem]) -> list[TrackFit]: ...
    def describe(self) -> dict[str, Any]: ...


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; anything else unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
