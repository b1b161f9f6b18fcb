"""The fixed (non-optimised) data of a padded batch of tracks, as every energy term reads it.

Its own module so that the terms (:mod:`optimize.terms`) and the energy's evaluation
(:mod:`optimize.energy`) both import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass(frozen=True)
class TrackBatch:
    """The fixed (non-optimised) data of a padded batch of tracks.

    Attributes:
        frame_mask: (B, T) bool, True on the track's real frames.
        candidates: (B, T, P, 17, 2) candidate keypoints, pixels.
        confidence: (B, T, P, 17) keypoint confidences w_i in [0, 1] (0: missing).
        candidate_mask: (B, T, P) bool, True where a candidate detection exists.
        init_joints: (B, T, P, 24, 3) SMPL joints of each candidate's init estimate, m.
        init_betas: (B, T, P, 10) each candidate's init shape.
        image_width: (B,) decoded frame width, pixels.
        init_scale: (B,) multiplier of the init term's joints' part per track, or None for
            1 everywhere (``BAConfig.keypoint_init_scale`` for tracks whose init came from
            keypoints); the betas' part keeps lambda_I.
        temporal_scale: (B,) ``temporal_reference_fps / fps`` per track, or None for 1
            everywhere: the temporal terms' Huber widths and the camera bound are
            multiplied by it (see :func:`optimize.terms.temporal_widths`).
    """

    frame_mask: Tensor
    candidates: Tensor
    confidence: Tensor
    candidate_mask: Tensor
    init_joints: Tensor
    init_betas: Tensor
    image_width: Tensor
    init_scale: Tensor | None = None
    temporal_scale: Tensor | None = None

    @property
    def num_frames(self) -> Tensor:
        """(B,) frames per track."""
        return self.frame_mask.sum(-1)

    @property
    def has_candidate(self) -> Tensor:
        """(B, T) bool, True where the frame has at least one detection."""
        return self.candidate_mask.any(-1) & self.frame_mask

    @property
    def pair_mask(self) -> Tensor:
        """(B, T) bool, True at frame t when frames t-1 and t both exist (t >= 1)."""
        pair = torch.zeros_like(self.frame_mask)
        pair[:, 1:] = self.frame_mask[:, 1:] & self.frame_mask[:, :-1]
        return pair

    def select(self, index: Tensor) -> "TrackBatch":
        """The sub-batch of tracks ``index`` (B',) long."""
        return TrackBatch(**{f.name: _maybe(getattr(self, f.name), lambda v: v[index]) for f in fields(self)})

    def to(self, device: torch.device | str, dtype: torch.dtype) -> "TrackBatch":
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = _maybe(value, lambda v: v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device))
        return TrackBatch(**out)


def _maybe(value: Tensor | None, fn) -> Tensor | None:
    return None if value is None else fn(value)
