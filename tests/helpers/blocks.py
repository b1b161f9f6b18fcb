"""Random bordered block-tridiagonal SPD systems with the bundle-adjustment structure."""

from __future__ import annotations

import torch


def random_bordered_system(B: int, T: int, n: int, m: int, seed: int):
    """Blocks of H = J^T J + 0.1 I for a random J with the bundle-adjustment structure:
    per-frame residuals touch frame t, frame t-1 and the border."""
    g = torch.Generator().manual_seed(seed)
    k = n + 2  # residuals per frame
    size = T * n + m
    J = torch.zeros(B, T * k, size, dtype=torch.float64)
    for t in range(T):
        rows = slice(t * k, (t + 1) * k)
        J[:, rows, t * n:(t + 1) * n] = torch.randn(B, k, n, generator=g, dtype=torch.float64)
        if t > 0:
            J[:, rows, (t - 1) * n:t * n] = torch.randn(B, k, n, generator=g, dtype=torch.float64)
        J[:, rows, T * n:] = torch.randn(B, k, m, generator=g, dtype=torch.float64)
    H = J.transpose(1, 2) @ J + 0.1 * torch.eye(size, dtype=torch.float64)
    H = 0.5 * (H + H.transpose(1, 2))
    diagonal = torch.stack([H[:, t * n:(t + 1) * n, t * n:(t + 1) * n] for t in range(T)], 1)
    lower = torch.stack([torch.zeros(B, n, n, dtype=torch.float64)]
                        + [H[:, t * n:(t + 1) * n, (t - 1) * n:t * n] for t in range(1, T)], 1)
    border = torch.stack([H[:, t * n:(t + 1) * n, T * n:] for t in range(T)], 1)
    corner = H[:, T * n:, T * n:]
    rhs = torch.randn(B, size, generator=g, dtype=torch.float64)
    return H, (diagonal, lower, border, corner), rhs
