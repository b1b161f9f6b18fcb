"""optimize.blocks: bordered block-tridiagonal solves against torch.linalg.solve (float64)."""

from __future__ import annotations

import torch

from optimize.blocks import assemble_dense, solve_bordered_tridiagonal


def _random_system(B: int, T: int, n: int, m: int, seed: int):
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


def test_matches_a_dense_solve_on_random_spd_block_systems():
    B, T, n, m = 3, 7, 5, 4
    H, (diagonal, lower, border, corner), rhs = _random_system(B, T, n, m, seed=0)
    assert torch.equal(assemble_dense(diagonal, lower, border, corner), H)
    solution = solve_bordered_tridiagonal(diagonal, lower, border, corner, rhs[:, :T * n].reshape(B, T, n), rhs[:, T * n:])
    dense = torch.linalg.solve(H, rhs)
    assert solution.ok.all()
    assert torch.allclose(solution.x.reshape(B, -1), dense[:, :T * n], rtol=1e-9, atol=1e-10)
    assert torch.allclose(solution.y, dense[:, T * n:], rtol=1e-9, atol=1e-10)


def test_masked_frames_let_tracks_of_different_lengths_share_a_batch():
    n, m, T = 4, 3, 6
    H, (diagonal, lower, border, corner), rhs = _random_system(2, T, n, m, seed=1)
    mask = torch.tensor([[True] * T, [True] * 4 + [False] * 2])
    rhs_frames = rhs[:, :T * n].reshape(2, T, n)
    solution = solve_bordered_tridiagonal(diagonal, lower, border, corner, rhs_frames, rhs[:, T * n:], mask)
    # track 1 alone: its first 4 frames only
    short = assemble_dense(diagonal[1:, :4], lower[1:, :4], border[1:, :4], corner[1:])
    dense = torch.linalg.solve(short, torch.cat((rhs_frames[1:, :4].reshape(1, -1), rhs[1:, T * n:]), 1))
    assert torch.allclose(solution.x[1, :4].reshape(-1), dense[0, :4 * n], rtol=1e-9, atol=1e-10)
    assert torch.allclose(solution.y[1], dense[0, 4 * n:], rtol=1e-9, atol=1e-10)
    assert torch.equal(solution.x[1, 4:], torch.zeros(2, n, dtype=torch.float64))
    full = torch.linalg.solve(H[:1], rhs[:1])
    assert torch.allclose(solution.x[0].reshape(-1), full[0, :T * n], rtol=1e-9, atol=1e-10)


def test_an_indefinite_system_is_reported_not_raised():
    B, T, n, m = 2, 3, 3, 2
    _, (diagonal, lower, border, corner), rhs = _random_system(B, T, n, m, seed=2)
    corner = corner.clone()
    corner[1] = -corner[1]  # system 1 is indefinite
    solution = solve_bordered_tridiagonal(diagonal, lower, border, corner, rhs[:, :T * n].reshape(B, T, n), rhs[:, T * n:])
    assert solution.ok.tolist() == [True, False]
    assert torch.isfinite(solution.x[0]).all()
