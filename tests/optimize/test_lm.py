"""optimize.lm: the Levenberg-Marquardt solver's linearisation, step and minimum."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from pipeline.synth.tracks import DetectionNoise, make_track
from optimize.blocks import assemble_dense
from optimize.bundle_adjust import TAIL_PAD_FRAMES, TRANSLATION_UNIT, PackedTracks, bundle_adjust, make_objective
from optimize.config import BAConfig
from optimize.energy import gmm_nll_offset
from optimize.lm import FRAME, NUM_BETAS, LMProblem, damped_step

CLEAN = DetectionNoise(jitter=0.0, miss_keypoint=0.0, outlier=0.0, body_swap=0.0, limb_swap=0.0,
                       drop_frame=0.0, distractor=False)


@pytest.fixture(scope="module")
def prior(standin):
    from models.gmm_prior import GMMPrior

    return GMMPrior.from_file(standin.gmm)


@pytest.fixture(scope="module")
def models64(body_model, prior):
    return copy.deepcopy(body_model).to(torch.float64), copy.deepcopy(prior).to(torch.float64)


def _problem(models64, problems, config):
    body, prior = models64
    packed = PackedTracks(problems, body, "cpu", torch.float64, config.keypoint_init_scale, pad_frames=TAIL_PAD_FRAMES,
                          temporal_reference_fps=config.temporal_reference_fps)
    offset = gmm_nll_offset(prior)
    return packed, LMProblem(packed, body, prior, config, offset, TRANSLATION_UNIT), offset


@pytest.mark.parametrize("rates", [None, (10.0, 59.94)])
def test_gradient_is_the_exact_gradient_of_the_energy(body_model, models64, rates):
    """Every term (hinge reprojection, caps, min over candidates, temporal, GMM, init) in its
    production setting: the assembled J^T W r equals autograd's gradient of E. ``rates``:
    the tracks at 10 and 59.94 fps (the temporal widths scaled per track), the second one
    from the keypoint-only init (the init term's joints' part scaled, its betas' not)."""
    problems = [make_track(body_model, "walking", 6, seed=3).problem, make_track(body_model, "boxing", 4, seed=4).problem]
    if rates is not None:
        problems = [problems[0].replace(fps=rates[0]), problems[1].replace(fps=rates[1], init_source="keypoints")]
    config = BAConfig(dtype="float64")
    packed, lm, offset = _problem(models64, problems, config)
    index = torch.arange(2)
    generator = torch.Generator().manual_seed(0)
    x = packed.x0 + 0.02 * torch.randn(packed.x0.shape, generator=generator, dtype=torch.float64)
    objective = make_objective(packed, *models64, config, offset)
    xr = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(objective(xr, index).sum(), xr)
    expected = expected * packed.batch.num_frames[:, None].double()  # the objective is E / T
    lin = lm.linearize(x, index)
    got = torch.cat((lin.gradient_betas, lin.gradient.reshape(2, -1)), -1)
    assert torch.allclose(lin.energy, objective(x, index) * packed.batch.num_frames.double(), rtol=1e-12)
    # smplx's Rodrigues (the energy's) perturbs the angle by 1e-8 rad; the Jacobians are exact
    assert ((got - expected).norm(dim=-1) / expected.norm(dim=-1)).max() < 1e-6


def test_gradient_and_curvature_of_the_uncapped_shape_terms(body_model, models64):
    """Betas beyond the shape bound and every frame's init joints capped: the gradient is
    still exact (the betas' init residual is live on capped frames, the bound adds its
    part), and the bound's share of the betas corner block is its exact Hessian
    (``2 w_shape T / scale^2`` on each dimension past the bound)."""
    body, prior = models64
    problems = [make_track(body_model, "walking", 5, seed=8).problem, make_track(body_model, "boxing", 4, seed=9).problem]
    config = BAConfig(dtype="float64", tau_i=0.01)  # every frame's joints' part capped
    packed, lm, offset = _problem(models64, problems, config)
    index = torch.arange(2)
    x = packed.x0.clone()
    scale = packed.betas_scale[:, None].double()
    betas = torch.zeros(2, NUM_BETAS, dtype=torch.float64)
    betas[0, 2], betas[1, 0], betas[1, 5] = 4.5, -3.8, 3.2  # past the bound (3.0) on three entries
    x[:, :NUM_BETAS] = betas * scale
    objective = make_objective(packed, body, prior, config, offset)
    xr = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(objective(xr, index).sum(), xr)
    expected = expected * packed.batch.num_frames[:, None].double()
    lin = lm.linearize(x, index)
    got = torch.cat((lin.gradient_betas, lin.gradient.reshape(2, -1)), -1)
    assert ((got - expected).norm(dim=-1) / expected.norm(dim=-1)).max() < 1e-6

    without = LMProblem(packed, body, prior, config.replace(w_shape=0.0), offset, TRANSLATION_UNIT).linearize(x, index)
    frames = packed.batch.num_frames.double()
    bound_gradient = torch.zeros(2, NUM_BETAS, dtype=torch.float64)
    bound_hessian = torch.zeros(2, NUM_BETAS, NUM_BETAS, dtype=torch.float64)
    for b, k in ((0, 2), (1, 0), (1, 5)):
        excess = abs(float(betas[b, k])) - config.shape_bound
        bound_gradient[b, k] = 2 * config.w_shape * frames[b] * excess * np.sign(float(betas[b, k])) / scale[b, 0]
        bound_hessian[b, k, k] = 2 * config.w_shape * frames[b] / scale[b, 0] ** 2
    assert torch.allclose(lin.gradient_betas - without.gradient_betas, bound_gradient, rtol=1e-9, atol=1e-12)
    assert torch.allclose(lin.corner - without.corner, bound_hessian, rtol=1e-9, atol=1e-12)


def _zero_residual_batch(packed, body, x):
    """The packed data replaced so that every residual is 0 at x: detections are x's
    projections, the init is x's joints and betas."""
    from models.geometry import weak_perspective_project

    pose, betas, camera = packed.decode(x)
    B, T = pose.shape[:2]
    joints, keypoints = body.joints_and_keypoints(pose, betas[:, None].expand(B, T, NUM_BETAS))
    projected = weak_perspective_project(keypoints, camera)
    batch = packed.batch
    P = batch.candidates.shape[2]
    return dataclasses.replace(
        batch,
        candidates=projected[:, :, None].expand(B, T, P, 17, 2).clone(),
        init_joints=joints[:, :, None].expand(B, T, P, 24, 3).clone(),
        init_betas=betas[:, None, None].expand(B, T, P, NUM_BETAS).clone(),
    )


def test_normal_matrix_is_the_hessian_where_residuals_vanish(body_model, models64):
    """At a point where every residual is 0 and every penalty is in its quadratic zone, the
    Gauss-Newton matrix is the exact Hessian of E: the assembled blocks (diagonal, coupling
    of consecutive frames, betas border and corner) equal autograd's dense Hessian."""
    body, prior = models64
    problem = make_track(body_model, "walking", 3, seed=5, detection=CLEAN).problem
    config = BAConfig(dtype="float64", reprojection_loss="huber", tau_r_schedule=(1.0,), w_gmm=0.0)
    packed, lm, _ = _problem(models64, [problem], config)
    T = packed.num_frames_max
    # one pose and camera on every frame (no motion: the temporal residuals are 0 too)
    frames = packed.x0[:, NUM_BETAS:].reshape(1, T, FRAME)
    x = torch.cat((packed.x0[:, :NUM_BETAS], frames[:, :1].expand(1, T, FRAME).reshape(1, -1)), -1)
    x = x + 0.0  # a leaf copy
    object.__setattr__(packed, "batch", _zero_residual_batch(packed, body, x))
    lm = LMProblem(packed, body, prior, config, 0.0, TRANSLATION_UNIT)
    index = torch.tensor([0])
    lin = lm.linearize(x, index)
    assert float(lin.energy) < 1e-20
    real = problem.num_frames
    hessian = torch.autograd.functional.hessian(lambda v: lm.energy(v[None], index)[0], x[0])
    dense = assemble_dense(lin.diagonal, lin.lower, lin.border, lin.corner)[0]
    # solver order: betas first, then frames; keep the real frames
    order = torch.cat((torch.arange(T * FRAME, T * FRAME + NUM_BETAS), torch.arange(real * FRAME)))
    dense = dense[order][:, order]
    expected = hessian[: NUM_BETAS + real * FRAME, : NUM_BETAS + real * FRAME]
    assert torch.allclose(dense, expected, rtol=1e-6, atol=1e-6 * float(expected.abs().max()))


def test_lm_step_matches_a_dense_solve_of_the_same_normal_equations(body_model, models64):
    problems = [make_track(body_model, "waving", 4, seed=6).problem, make_track(body_model, "walking", 3, seed=7).problem]
    config = BAConfig(dtype="float64")
    packed, lm, _ = _problem(models64, problems, config)
    index = torch.arange(2)
    lin = lm.linearize(packed.x0, index)
    damping = torch.tensor([1e-3, 0.5], dtype=torch.float64)
    mask = packed.batch.frame_mask
    step, predicted, ok = damped_step(lin, damping, mask)
    assert ok.all()
    T = packed.num_frames_max
    dense = assemble_dense(lin.diagonal, lin.lower, lin.border, lin.corner)
    rhs = -torch.cat((lin.gradient.reshape(2, -1), lin.gradient_betas), -1)
    for b, p in enumerate(problems):
        keep = torch.cat((torch.arange(p.num_frames * FRAME), torch.arange(T * FRAME, T * FRAME + NUM_BETAS)))
        H = dense[b][keep][:, keep]
        D = torch.diagonal(H).clamp(min=1e-6 * torch.diagonal(H).mean())
        solution = torch.linalg.solve(H + damping[b] * torch.diag(D), rhs[b][keep])
        ours = torch.cat((step[b, NUM_BETAS:NUM_BETAS + p.num_frames * FRAME], step[b, :NUM_BETAS]))
        assert torch.allclose(ours, solution, rtol=1e-8, atol=1e-10 * float(solution.abs().max()))
        # padded frames do not move
        assert (step[b, NUM_BETAS + p.num_frames * FRAME:] == 0).all()
        model = -(rhs[b][keep] @ solution) + 0.5 * solution @ H @ solution
        assert float(predicted[b]) == pytest.approx(-float(model), rel=1e-8)


def test_lm_and_lbfgs_reach_the_same_minimum_on_a_smooth_problem(body_model, prior):
    """Huber reprojection, no caps, one stage, float64: both solvers converge to the same
    energy and parameters; LM in a few tens of iterations, L-BFGS in hundreds."""
    problem = make_track(body_model, "squatting", 5, seed=11).problem
    # L-BFGS gets a budget, not a tolerance it cannot meet in float64 (it stalls at 1e-8 of E)
    config = BAConfig(dtype="float64", reprojection_loss="huber", tau_r_schedule=(1.0,), tau_r_px=1e6, tau_i=1e6,
                      ftol=1e-12, gtol=1e-9, max_iter=400, max_eval=1200, lm_ftol=1e-10, lm_max_iter=50)
    (lm_fit,) = bundle_adjust([problem], body_model, prior, config.replace(solver="lm"))
    (lbfgs_fit,) = bundle_adjust([problem], body_model, prior, config.replace(solver="batched"))
    assert lm_fit.status == lbfgs_fit.status == "ok"
    assert lm_fit.converged and lm_fit.iterations <= 50
    assert lm_fit.energies["total"] == pytest.approx(lbfgs_fit.energies["total"], rel=1e-5)
    assert lm_fit.energies["total"] <= lbfgs_fit.energies["total"] * (1 + 1e-8)
    assert np.abs(lm_fit.joints3d - lbfgs_fit.joints3d).max() < 2e-3  # metres
    assert lm_fit.iterations * 4 < lbfgs_fit.iterations


def test_production_fit_converges_and_matches_lbfgs_energy(body_model, prior):
    """The production objective (hinge, caps, continuation, GMM) on noisy detections: every
    track converges within the LM budget, at an energy within 1 % of L-BFGS's."""
    problems = [make_track(body_model, motion, 12, seed=s).problem for motion, s in (("walking", 21), ("boxing", 22))]
    lm_fits = bundle_adjust(problems, body_model, prior, BAConfig(solver="lm"))
    lbfgs_fits = bundle_adjust(problems, body_model, prior, BAConfig(solver="batched"))
    for lm_fit, lbfgs_fit in zip(lm_fits, lbfgs_fits):
        assert lm_fit.status == "ok" and lm_fit.converged, lm_fit.message
        assert lm_fit.energies["total"] <= 1.01 * lbfgs_fit.energies["total"]
        assert np.isfinite(lm_fit.pose).all() and np.isfinite(lm_fit.frame_energies["total"]).all()


def test_frames_without_detections_get_damped_not_nan(body_model, prior):
    """Whole stretches without any detection (no reprojection, no init term: the frame's
    camera has only the temporal terms) and a track whose every frame is such except one."""
    track = make_track(body_model, "walking", 10, seed=31).problem
    gap = track.replace(candidate_mask=track.candidate_mask.copy())
    gap.candidate_mask[3:8] = False
    gap.selected[3:8] = -1
    lonely = track.replace(candidate_mask=track.candidate_mask.copy(), selected=track.selected.copy())
    lonely.candidate_mask[1:] = False
    lonely.selected[1:] = -1
    fits = bundle_adjust([gap, lonely], body_model, prior, BAConfig(solver="lm"))
    for fit in fits:
        assert fit.status == "ok", fit.message
        for name in ("pose", "camera", "betas", "joints3d", "reprojection"):
            assert np.isfinite(getattr(fit, name)).all(), name


def test_a_fit_hardly_depends_on_its_batch(body_model, prior):
    """The same track alone and inside a batch of others reaches the same fit (the batched
    matrix products may round differently with the batch size, so not bit for bit)."""
    target = make_track(body_model, "squatting", 8, seed=77).problem
    others = [make_track(body_model, m, n, seed=s).problem for m, n, s in (("walking", 11, 40), ("boxing", 6, 41))]
    config = BAConfig(solver="lm")
    (alone,) = bundle_adjust([target], body_model, prior, config)
    batched = bundle_adjust([others[0], target, others[1]], body_model, prior, config)[1]
    assert alone.status == batched.status == "ok"
    assert batched.energies["total"] == pytest.approx(alone.energies["total"], rel=1e-4)
    assert np.abs(batched.joints3d - alone.joints3d).max() < 2e-3


def test_gpu_style_loop_with_few_host_looks_gives_the_same_fits(body_model, prior):
    """``lm_check_every`` > 1 (the GPU setting: the driver looks at the tracks' state only
    every k iterations, finished tracks ride along masked) changes no fit."""
    problems = [make_track(body_model, m, n, seed=s).problem for m, n, s in (("walking", 9, 50), ("waving", 6, 51))]
    every = bundle_adjust(problems, body_model, prior, BAConfig(solver="lm", lm_check_every=1))
    rarely = bundle_adjust(problems, body_model, prior, BAConfig(solver="lm", lm_check_every=7))
    for a, b in zip(every, rarely):
        assert a.status == b.status == "ok"
        assert a.iterations == b.iterations and a.converged == b.converged
        assert np.array_equal(a.pose, b.pose) and a.energies == b.energies


def test_lm_batches_are_capped_by_lm_max_batch_frames(body_model, prior, monkeypatch):
    """LM holds ~270 KB per frame: its solver calls take at most lm_max_batch_frames padded
    frames (a longer single track still goes whole)."""
    import optimize.bundle_adjust as ba

    sizes = []
    real = ba._solve_batch

    def recording(problems, *args, **kwargs):
        sizes.append(sum(p.num_frames for p in problems))
        return real(problems, *args, **kwargs)

    monkeypatch.setattr(ba, "_solve_batch", recording)
    problems = [make_track(body_model, "walking", 6, seed=s).problem for s in (60, 61, 62)]
    problems.append(make_track(body_model, "walking", 15, seed=63).problem)
    fits = ba.bundle_adjust(problems, body_model, prior, BAConfig(solver="lm", lm_max_batch_frames=12, lm_max_iter=2))
    assert [f.status for f in fits] == ["ok"] * 4
    assert sorted(sizes) == [6, 12, 15]


class _Quadratic:
    """E(x) = a/2 |x|^2 on (b, 10 + 75 T) with a Gauss-Newton model of curvature ``model``
    (deliberately wrong: the step is too long when model < a, too short when model > a)."""

    def __init__(self, a: float, model: float, T: int = 1):
        self.a, self.model, self.T = a, model, T
        self.linearisations = 0

    def energy(self, x, index):
        return 0.5 * self.a * (x * x).sum(-1)

    def linearize(self, x, index):
        from optimize.lm import Linearization

        self.linearisations += 1
        b, T = x.shape[0], self.T
        g = self.a * x
        eye = torch.eye(FRAME, dtype=x.dtype)
        return Linearization(
            energy=self.energy(x, index), gradient=g[:, NUM_BETAS:].reshape(b, T, FRAME), gradient_betas=g[:, :NUM_BETAS],
            diagonal=(self.model * eye).expand(b, T, FRAME, FRAME).clone(), lower=torch.zeros(b, T, FRAME, FRAME, dtype=x.dtype),
            border=torch.zeros(b, T, FRAME, NUM_BETAS, dtype=x.dtype),
            corner=(self.model * torch.eye(NUM_BETAS, dtype=x.dtype)).expand(b, NUM_BETAS, NUM_BETAS).clone())


@pytest.mark.parametrize("check_every", [1, 5])  # the CPU path (subset linearised) and the GPU path (masks only)
def test_step_backtracks_a_rejected_step_and_stretches_a_short_one(check_every):
    """A model with a third of the true curvature overshoots to -2x (E x 4): the full step
    is rejected, half of it lands at -x/2 (E / 4): that one is taken, the damping doubles,
    and only the accepted point is linearised again (never the rejected trial). A model
    with twice the curvature stops at x/2; the stretched step (2x) reaches the minimum and
    is taken, and the damping shrinks. Two tracks in one batch."""
    from optimize.lm import LMSettings, _step

    torch.manual_seed(0)
    x = torch.randn(2, NUM_BETAS + FRAME, dtype=torch.float64)
    work = torch.arange(2)
    settings = LMSettings(check_every=check_every)
    frames = torch.ones(2, dtype=torch.float64)
    mask = torch.ones(2, 1, dtype=torch.bool)
    for model, expected_x, expected_damping in ((4.0 / 3.0, -0.5, 2e-12), (8.0, 0.0, 1e-12 / 3)):
        problem = _Quadratic(a=4.0, model=model)
        lin = problem.linearize(x, work)
        problem.linearisations = 0
        damping = torch.full((2,), 1e-12, dtype=torch.float64)
        alive = torch.tensor([True, True])
        new_x, new_lin, new_damping, growth, new_alive, stats = _step(
            problem, work, x, lin, damping, torch.full((2,), 2.0, dtype=torch.float64), alive, frames, mask,
            settings, None)
        assert torch.allclose(new_x, expected_x * x, atol=1e-9)
        assert torch.allclose(new_lin.energy, expected_x ** 2 * problem.energy(x, work), atol=1e-9)
        assert torch.allclose(new_lin.gradient_betas, 4.0 * new_x[:, :NUM_BETAS])  # linearised at the new point
        assert torch.allclose(new_damping, torch.full((2,), expected_damping, dtype=torch.float64))
        # at the minimum the gradient vanishes: converged; after the shortened step: going on
        assert new_alive.tolist() == [expected_x != 0.0] * 2
        assert stats["converged"].tolist() == [expected_x == 0.0] * 2
        assert stats["linearised"].tolist() == [1, 1] and stats["counted"].tolist() == [1, 1]
        assert problem.linearisations == 1  # the accepted point only, never the rejected trial


@pytest.mark.parametrize("check_every", [1, 4])
def test_per_track_budget_stops_each_track_at_its_own_limit(models64, check_every):
    """``budget`` caps each track's iterations in this call: a track that reaches it stops
    unconverged at a finite point, the others go on as without a budget."""
    from optimize.lm import LMSettings, levenberg_marquardt

    problems = [make_track(models64[0], m, 8, seed=s).problem for m, s in (("walking", 60), ("boxing", 61))]
    config = BAConfig(solver="lm")
    packed, lm_problem, _ = _problem(models64, problems, config)
    settings = LMSettings(max_iter=25, ftol=1e-6, gtol=0.0, initial_damping=1.0, check_every=check_every)
    free = levenberg_marquardt(lm_problem, packed.x0, settings)
    assert (free.iterations > 3).all()  # both need more than the budget below
    capped = levenberg_marquardt(lm_problem, packed.x0, settings, budget=torch.tensor([2, 25]))
    assert capped.iterations.tolist() == [2, int(free.iterations[1])]
    assert not bool(capped.converged[0]) and not bool(capped.diverged[0])
    assert torch.isfinite(capped.x[0]).all() and float(capped.f[0]) < float(free.f[0]) * 10
    # the same path (to rounding: the working set's batched products differ once track 0 stops)
    assert torch.allclose(capped.x[1], free.x[1], rtol=1e-6, atol=1e-6)
    assert bool(capped.converged[1]) == bool(free.converged[1])
    # a zero budget leaves the track at its start
    none = levenberg_marquardt(lm_problem, packed.x0, settings, budget=torch.tensor([0, 1]))
    assert none.iterations.tolist() == [0, 1] and torch.equal(none.x[0], packed.x0[0])


def test_stages_hand_on_unused_iterations(body_model, prior):
    """lm_max_iter is per stage, and what a stage leaves unused carries over: with a cap of
    4 per stage, a track may take more than 4 iterations in its last stage but never more
    than 8 in all."""
    problems = [make_track(body_model, "walking", 10, seed=s).problem for s in (70, 71)]
    fits = bundle_adjust(problems, body_model, prior, BAConfig(solver="lm", lm_max_iter=4))
    for fit in fits:
        assert fit.status == "ok" and fit.iterations <= 8
