"""Batched L-BFGS on generic batched problems (float64)."""

from __future__ import annotations

import torch

from optimize.solver import SolverSettings, lbfgs_batched, lbfgs_per_track, lbfgs_summed

TIGHT = SolverSettings(max_iter=3000, max_eval=8000, ftol=1e-14, xtol=1e-14, gtol=1e-9)


def _rosenbrock(x, index):
    # problem b has its own offset: minimum at x = c_b (shifted Rosenbrock)
    c = 0.5 + 0.25 * index.to(x.dtype)[:, None]
    z = x - c + 1.0
    return ((1.0 - z[:, :-1]) ** 2).sum(-1) + 100.0 * ((z[:, 1:] - z[:, :-1] ** 2) ** 2).sum(-1)


def _quadratics(B, n):
    # condition numbers from 1 to 1e3 across the batch
    spectrum = torch.logspace(0, 3, n, dtype=torch.float64)
    curvature = torch.stack([spectrum ** (k / (B - 1)) for k in range(B)])
    target = torch.linspace(-2, 2, n, dtype=torch.float64)

    def objective(x, index):
        return 0.5 * (curvature[index] * (x - target) ** 2).sum(-1)

    return objective, target


def test_batched_rosenbrock_reaches_each_minimum():
    B, n = 6, 10
    x0 = torch.zeros(B, n, dtype=torch.float64)
    result = lbfgs_batched(_rosenbrock, x0, TIGHT)
    c = 0.5 + 0.25 * torch.arange(B, dtype=torch.float64)[:, None]
    assert result.converged.all()
    assert torch.allclose(result.x, c.expand(B, n), atol=1e-5)
    assert (result.f < 1e-10).all()


def test_each_problem_stops_on_its_own():
    B, n = 6, 16
    objective, target = _quadratics(B, n)
    settings = SolverSettings(max_iter=3000, max_eval=8000, ftol=1e-13, xtol=1e-10, gtol=1e-6)
    result = lbfgs_batched(objective, torch.zeros(B, n, dtype=torch.float64), settings)
    assert result.converged.all()
    assert torch.allclose(result.x, target.expand(B, n), atol=1e-4)
    its = result.iterations.tolist()
    # the well-conditioned problem needs a couple of steps; ill-conditioned ones many more
    assert its[0] <= 3 and its[-1] > 5 * its[0]
    assert its == sorted(its)


def test_batched_matches_solving_alone():
    B, n = 5, 8
    x0 = torch.zeros(B, n, dtype=torch.float64)
    alone = lbfgs_per_track(_rosenbrock, x0, TIGHT)
    batched = lbfgs_batched(_rosenbrock, x0, TIGHT)
    assert torch.allclose(batched.x, alone.x, atol=1e-4)
    # about as many iterations as torchmin on each problem alone
    assert (batched.iterations <= 2 * alone.iterations + 10).all()


def test_summed_objective_shares_iterations():
    B, n = 4, 8
    objective, target = _quadratics(B, n)
    summed = lbfgs_summed(objective, torch.zeros(B, n, dtype=torch.float64), TIGHT)
    assert len(set(summed.iterations.tolist())) == 1
    assert torch.allclose(summed.x, target.expand(B, n), atol=1e-3)


def test_non_finite_problem_is_reported_and_does_not_disturb_the_others():
    B, n = 4, 6

    def objective(x, index):
        f = _rosenbrock(x, index)
        # problem 2 overflows as soon as it is evaluated (the others never see it)
        rate = torch.where(index == 2, 1e4, 0.0).to(x.dtype)
        return f + torch.exp(rate * (1 + x[:, 0] ** 2))

    x0 = torch.zeros(B, n, dtype=torch.float64)
    result = lbfgs_batched(objective, x0, TIGHT)
    assert result.diverged.tolist() == [False, False, True, False]
    assert not result.converged[2]
    assert torch.isfinite(result.x).all()
    reference = lbfgs_batched(lambda x, i: _rosenbrock(x, torch.tensor([0, 1, 3])[i]) + 1.0, x0[[0, 1, 3]], TIGHT)
    assert torch.allclose(result.f[[0, 1, 3]], reference.f, atol=1e-12)


def test_divergence_test_stops_a_problem():
    B, n = 3, 4

    def unbounded(x, index):
        # problem 1 has no minimum: it runs away along x[0]
        slope = torch.where(index == 1, -1.0, 0.0).to(x.dtype)
        return 0.5 * ((x - 1) ** 2).sum(-1) * (index != 1) + slope * x[:, 0]

    result = lbfgs_batched(unbounded, torch.zeros(B, n, dtype=torch.float64), TIGHT,
                           is_diverged=lambda x: x.abs().amax(-1) > 1e3)
    assert result.diverged.tolist() == [False, True, False]
    assert result.converged.tolist() == [True, False, True]


def test_budget_stops_without_convergence():
    x0 = torch.zeros(2, 10, dtype=torch.float64)
    result = lbfgs_batched(_rosenbrock, x0, SolverSettings(max_iter=3, ftol=0, xtol=0, gtol=0))
    assert (result.iterations == 3).all()
    assert not result.converged.any()


def test_float32_works():
    objective, target = _quadratics(3, 5)
    result = lbfgs_batched(lambda x, i: objective(x.double(), i).float(), torch.zeros(3, 5), SolverSettings())
    assert result.x.dtype == torch.float32
    assert torch.allclose(result.x.double(), target.expand(3, 5), atol=1e-2)
