"""Pure helpers for track selection: trajectory length, E_norm and inlier frames."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def trajectory_length(joints3d: Tensor, frame_mask: Tensor) -> Tensor:
    """sum_t sum_i ||X_i^t - X_i^{t-1}|| over consecutive real frames.

    Args:
        joints3d: (B, T, J, 3) metres.
        frame_mask: (B, T) bool.

    Returns:
        (B,) metres.
    """
    step = (joints3d[:, 1:] - joints3d[:, :-1]).norm(dim=-1).sum(-1)  # (B, T-1)
    pair = frame_mask[:, 1:] & frame_mask[:, :-1]
    return torch.where(pair, step, torch.zeros_like(step)).sum(-1)


def e_norm(total_energy: float, length: float) -> float:
    """E / trajectory length (paper eq. 11); inf when the track does not move."""
    if length <= 0 or not math.isfinite(length):
        return math.inf
    return float(total_energy) / float(length)


def inlier_frames(frame_error: np.ndarray, tau_r_px: float) -> np.ndarray:
    """(T,) bool: min_p sum_i w_i rho(x_i - x_det,i^p) < tau_R (NaN = no detection: False)."""
    frame_error = np.asarray(frame_error)
    with np.errstate(invalid="ignore"):
        return np.isfinite(frame_error) & (frame_error < tau_r_px)
