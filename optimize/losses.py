"""Robust penalties over any batch shape (pure functions).

Every function takes the *squared* norm of a residual vector (e.g. ``(dx**2 + dy**2)``
of a keypoint) so that no square root is taken at zero (its gradient would be infinite),
and returns a penalty in the residual's own units: all of them grow like the norm itself
(L1) far from zero, so a sum of them over keypoints reads in pixels (or metres).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Below this squared norm the norm is treated as 0 (keeps sqrt's gradient finite).
_TINY = 1e-20


def safe_norm(squared_norm: Tensor) -> Tensor:
    """sqrt with a finite gradient at 0. squared_norm: (...) -> (...)."""
    return torch.sqrt(torch.clamp(squared_norm, min=_TINY))


def squared_norm(residual: Tensor) -> Tensor:
    """Squared Euclidean norm over the last axis. residual: (..., D) -> (...)."""
    return (residual * residual).sum(-1)


def huber(squared_norm: Tensor, delta: float) -> Tensor:
    """Huber penalty in L1 units: n^2 / (2 delta) for n <= delta, n - delta / 2 beyond.

    Args:
        squared_norm: (...) squared residual norms n^2.
        delta: width of the quadratic zone, in the residual's units (> 0).

    Returns:
        (...) penalty, same units as n; continuous with a continuous gradient.
    """
    quadratic = squared_norm / (2.0 * delta)
    linear = safe_norm(squared_norm) - 0.5 * delta
    return torch.where(squared_norm <= delta * delta, quadratic, linear)


def hinge(squared_norm: Tensor, margin: float, smoothing: float) -> Tensor:
    """Hinge penalty: 0 for n <= margin, then Huber of (n - margin) (L1 far out).

    The paper's in-the-wild reprojection loss (0 below 5 px, L1 above); ``smoothing``
    is the width of the quadratic blend after the margin that keeps the gradient
    continuous for L-BFGS.

    Args:
        squared_norm: (...) squared residual norms n^2.
        margin: errors up to this cost nothing (>= 0).
        smoothing: Huber width after the margin (> 0).

    Returns:
        (...) penalty, same units as n.
    """
    excess = torch.clamp(safe_norm(squared_norm) - margin, min=0.0)
    return huber(excess * excess, smoothing)


def bounded(penalty: Tensor, cap: float | Tensor) -> Tensor:
    """min(penalty, cap): beyond the cap the penalty is constant (gradient 0)."""
    if isinstance(cap, Tensor):
        return torch.minimum(penalty, cap)
    return torch.clamp(penalty, max=cap)


def bounded_huber(squared_norm: Tensor, delta: float, bound: float | Tensor) -> Tensor:
    """Huber penalty that stops growing once the residual norm reaches ``bound``.

    Args:
        squared_norm: (...) squared residual norms n^2.
        delta: Huber width.
        bound: residual norm (same units) beyond which the penalty is constant; a float
            or a tensor broadcastable to ``squared_norm``.

    Returns:
        (...) min(huber(n), huber(bound)).
    """
    if isinstance(bound, Tensor):
        cap = huber(bound * bound, delta)
    else:
        cap = huber(torch.tensor(bound * bound, dtype=squared_norm.dtype, device=squared_norm.device), delta)
    return bounded(huber(squared_norm, delta), cap)
