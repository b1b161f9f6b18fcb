"""The stage objects the DoFns call: what runs apart from where it runs.

A stage is a small picklable object built on the launcher, shipped to the workers, and
set up there once per process (``setup`` loads models; the DoFns share the loaded stage
between their threads through ``apache_beam.utils.shared.Shared``). The Beam layer only
sees these two protocols, so tests swap in deterministic stages (``tests/helpers/scripted.py``) and
the job passes the real ones (``transforms.model_stages``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pipeline.records import ClipRef, PerceptionResult, TrackFit, TrackProblem


class PerceptionStage(Protocol):
    """Per-clip perception: decode, detect (or read keypoints), track, initialise.

    Attributes:
        keypoints_source: one of :data:`pipeline.perception.keypoint_source.KEYPOINT_SOURCES`
            (the ``--keypoints`` flag), passed to
            :func:`pipeline.perception.keypoint_source.choose_keypoints` for each clip.
        keypoints_root: folder of precomputed keypoints, None = next to the videos.
        has_detector: a pose detector is configured.
    """

    keypoints_source: str
    keypoints_root: str | None
    has_detector: bool

    def setup(self) -> None: ...
    def __call__(self, clip: ClipRef) -> PerceptionResult:
        """Perceive a clip whose keypoint source is decided (``keypoints_uri`` set: read it;
        None: detect) and whose files are local."""
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
