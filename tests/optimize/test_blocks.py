"""optimize.blocks: bordered block-tridiagonal solves against torch.linalg.solve (float64)."""

from __future__ import annotations

import pytest
import torch

from helpers.blocks import random_bordered_system
from optimize.blocks import assemble_dense, solve_bordered_tridiagonal

METHODS = ("sweep", "cyclic")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("T", [1, 2, 3, 4, 7, 8, 13])
def test_matches_a_dense_solve_on_random_spd_block_systems(method, T):
    B, n, m = 3, 5, 4
    H, (diagonal, lower, border, corner), rhs = random_bordered_system(B, T, n, m, seed=T)
    assert torch.equal(assemble_dense(diagonal, lower, border, corner), H)
    solution = solve_bordered_tridiagonal(diagonal, lower, border, corner, rhs[:, :T * n].reshape(B, T, n), rhs[:, T * n:],
                                          method=method)
    dense = torch.linalg.solve(H, rhs)
    assert solution.ok.all()
    assert torch.allclose(solution.x.reshape(B, -1), dense[:, :T * n], rtol=1e-9, atol=1e-10)
    assert torch.allclose(solution.y, dense[:, T * n:], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_masked_frames_let_tracks_of_different_lengths_share_a_batch(method):
    n, m, T = 4, 3, 6
    H, (diagonal, lower, border, corner), rhs = random_bordered_system(2, T, n, m, seed=1)
    mask = torch.tensor([[True] * T, [True] * 4 + [False] * 2])
    rhs_frames = rhs[:, :T * n].reshape(2, T, n)
    solution = solve_bordered_tridiagonal(diagonal, lower, border, corner, rhs_frames, rhs[:, T * n:], mask, method=method)
    # track 1 alone: its first 4 frames only
    short = assemble_dense(diagonal[1:, :4], lower[1:, :4], border[1:, :4], corner[1:])
    dense = torch.linalg.solve(short, torch.cat((rhs_frames[1:, :4].reshape(1, -1), rhs[1:, T * n:]), 1))
    assert torch.allclose(solution.x[1, :4].reshape(-1), dense[0, :4 * n], rtol=1e-9, atol=1e-10)
    assert torch.allclose(solution.y[1], dense[0, 4 * n:], rtol=1e-9, atol=1e-10)
    assert torch.equal(solution.x[1, 4:], torch.zeros(2, n, dtype=torch.float64))
    full = torch.linalg.solve(H[:1], rhs[:1])
    assert torch.allclose(solution.x[0].reshape(-1), full[0, :T * n], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_an_indefinite_system_is_reported_not_raised(method):
    B, T, n, m = 2, 3, 3, 2
    _, (diagonal, lower, border, corner), rhs = random_bordered_system(B, T, n, m, seed=2)
    corner = corner.clone()
    corner[1] = -corner[1]  # system 1 is indefinite
    solution = solve_bordered_tridiagonal(diagonal, lower, border, corner, rhs[:, :T * n].reshape(B, T, n), rhs[:, T * n:],
                                          method=method)
    assert solution.ok.tolist() == [True, False]
    assert torch.isfinite(solution.x[0]).all()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad_frame", [0, 4, 8])
def test_an_indefinite_frame_block_fails_only_its_system(method, bad_frame):
    """A non positive-definite diagonal block gives ok False for its system, and the other
    systems of the batch are solved exactly (no NaN crosses systems)."""
    B, T, n, m = 3, 9, 4, 3
    H, (diagonal, lower, border, corner), rhs = random_bordered_system(B, T, n, m, seed=3)
    diagonal = diagonal.clone()
    diagonal[1, bad_frame] = -diagonal[1, bad_frame]
    solution = solve_bordered_tridiagonal(diagonal, lower, border, corner, rhs[:, :T * n].reshape(B, T, n), rhs[:, T * n:],
                                          method=method)
    assert solution.ok.tolist() == [True, False, True]
    dense = torch.linalg.solve(H[[0, 2]], rhs[[0, 2]])
    assert torch.allclose(solution.x[[0, 2]].reshape(2, -1), dense[:, :T * n], rtol=1e-9, atol=1e-10)
    assert torch.allclose(solution.y[[0, 2]], dense[:, T * n:], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_a_hole_in_the_frame_mask_decouples_the_frames_around_it(method):
    """Masked frames inside a track: the solver solves the system whose masked frames are
    the identity with no coupling, and their x is 0."""
    B, T, n, m = 2, 10, 4, 3
    _, (diagonal, lower, border, corner), rhs = random_bordered_system(B, T, n, m, seed=4)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 3:5] = False
    mask[1, 0] = False
    mask[1, 9] = False
    keep = mask[..., None, None]
    pair = torch.zeros_like(mask)
    pair[:, 1:] = mask[:, 1:] & mask[:, :-1]
    eye = torch.eye(n, dtype=torch.float64)
    reduced = assemble_dense(torch.where(keep, diagonal, eye), torch.where(pair[..., None, None], lower, 0.0),
                             torch.where(keep, border, 0.0), corner)
    rhs_frames = rhs[:, :T * n].reshape(B, T, n)
    dense = torch.linalg.solve(reduced, torch.cat((torch.where(mask[..., None], rhs_frames, 0.0).reshape(B, -1),
                                                   rhs[:, T * n:]), 1))
    solution = solve_bordered_tridiagonal(diagonal, lower, border, corner, rhs_frames, rhs[:, T * n:], mask, method=method)
    assert solution.ok.all()
    assert torch.allclose(solution.x.reshape(B, -1), dense[:, :T * n], rtol=1e-9, atol=1e-10)
    assert torch.allclose(solution.y, dense[:, T * n:], rtol=1e-9, atol=1e-10)
    assert torch.equal(solution.x[~mask], torch.zeros(int((~mask).sum()), n, dtype=torch.float64))


def test_the_methods_agree_in_float32_and_auto_is_the_sweep_on_the_cpu():
    B, T, n, m = 2, 12, 6, 3
    _, blocks, rhs = random_bordered_system(B, T, n, m, seed=5)
    args = [part.float() for part in blocks] + [rhs[:, :T * n].reshape(B, T, n).float(), rhs[:, T * n:].float()]
    reference = solve_bordered_tridiagonal(*[part.double() for part in args])
    for method in ("auto", *METHODS):
        solution = solve_bordered_tridiagonal(*args, method=method)
        assert solution.x.dtype == torch.float32 and solution.ok.all()
        scale = reference.x.abs().max()
        assert (solution.x.double() - reference.x).abs().max() < 1e-3 * scale
    assert torch.equal(solve_bordered_tridiagonal(*args).x, solve_bordered_tridiagonal(*args, method="sweep").x)
    with pytest.raises(ValueError):
        solve_bordered_tridiagonal(*args, method="banded")


def test_the_benchmark_runs_on_a_small_system(capsys):
    from bench.block_solve import main

    result = main(["--tracks", "2", "--frames", "5", "--frame-size", "4", "--border-size", "2", "--repeat", "1",
                   "--dtype", "float64"])
    assert set(result["methods"]) == {"reference", "sweep", "cyclic"}
    for row in result["methods"].values():
        assert row["all_ok"] and row["worst_relative_residual"] < 1e-10
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("{")
