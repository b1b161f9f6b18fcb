"""L-BFGS over many independent problems at once.

:func:`lbfgs_batched` is the production solver. Each of the ``B`` problems (tracks) keeps
its own L-BFGS history, its own strong-Wolfe line search (a vectorised port of the one
``torch.optim.LBFGS`` and ``torchmin`` use: bracketing, then cubic-interpolation zoom)
and its own stopping test. Every round evaluates the objective once, for all problems
still running, at each one's own trial point: problems never wait for each other inside
a line search, never share a step size, and a finished problem costs nothing more.

:func:`lbfgs_summed` (torchmin's L-BFGS on the *sum* of the problems: one history, one
line search, one stopping test) and :func:`lbfgs_per_track` (torchmin on one problem at a
time) are the naive approach and the reference it is compared with
(``bench.ba_speed``). torchmin is used for what it does well, a
careful single-problem L-BFGS with strong-Wolfe line search; the batched solver reuses
its algorithm, not its scalar control flow (which cannot branch per problem).

Stopping rule (the same as ``torch.optim.LBFGS``, per problem): ``max |g| <= gtol``;
``|f_k - f_{k-1}| < ftol``; ``max |x_k - x_{k-1}| <= xtol``; a direction that is not a
descent direction even after a reset to steepest descent; or the iteration / evaluation
budget. The first four count as converged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from optimize.settings import SolverSettings

logger = logging.getLogger(__name__)

# objective(x (b, n), index (b,) long) -> (b,) values, differentiable in x.
BatchedObjective = Callable[[Tensor, Tensor], Tensor]

_CURVATURE_EPS = 1e-10


@dataclass(frozen=True)
class SolverResult:
    """Per-problem outcome.

    Attributes:
        x: (B, n) final parameters (the last accepted, finite iterate).
        f: (B,) final objective values.
        iterations: (B,) long accepted L-BFGS steps.
        evaluations: (B,) long objective evaluations.
        converged: (B,) bool, met a convergence test (not just a budget).
        diverged: (B,) bool, objective or gradient not finite at the start, or
            ``is_diverged`` flagged an iterate; such problems stop at once.
    """

    x: Tensor
    f: Tensor
    iterations: Tensor
    evaluations: Tensor
    converged: Tensor
    diverged: Tensor


def _evaluate(objective: BatchedObjective, x: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """f (b,) and g (b, n) at x (b, n); non-finite values become f=+inf, g=0."""
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        f = objective(xr, index)
        (g,) = torch.autograd.grad(f.sum(), xr)
    f = f.detach()
    bad = ~torch.isfinite(f) | ~torch.isfinite(g).all(-1)
    f = torch.where(bad, torch.full_like(f, float("inf")), f)
    g = torch.where(bad[:, None], torch.zeros_like(g), g)
    return f, g


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dot product (b, n) x (b, n) -> (b,), accumulated in float64.

    Padded problems carry trailing zeros; a float32 sum's rounding depends on the row
    length (and so on the longest track of the batch), a float64 sum of the same float32
    products rounds back to the same float32 value whatever the padding (to 1 in ~1e9),
    which keeps every track's iterates independent of its batch (tests check bit equality).
    """
    return (a * b).sum(-1, dtype=torch.float64).to(a.dtype)


def _cubic_minimum(t1: Tensor, f1: Tensor, g1: Tensor, t2: Tensor, f2: Tensor, g2: Tensor,
                   lo: Tensor, hi: Tensor) -> Tensor:
    """Minimiser of the cubic through (t1, f1, g1), (t2, f2, g2), clipped to [lo, hi].

    Vectorised ``torch.optim.lbfgs._cubic_interpolate``; falls back to the midpoint
    where the cubic has no minimum or the data are not finite.
    """
    d1 = g1 + g2 - 3 * (f1 - f2) / (t1 - t2)
    d2_square = d1 * d1 - g1 * g2
    d2 = torch.sqrt(torch.clamp(d2_square, min=0.0))
    forward = t2 - (t2 - t1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    backward = t1 - (t1 - t2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    pos = torch.where(t1 <= t2, forward, backward)
    mid = 0.5 * (lo + hi)
    ok = (d2_square >= 0) & torch.isfinite(pos)
    pos = torch.where(ok, pos, mid)
    return torch.minimum(torch.maximum(pos, lo), hi)


def _two_loop(g: Tensor, S: Tensor, Y: Tensor, rho: Tensor, h_diag: Tensor) -> Tensor:
    """L-BFGS direction -H g per problem. g (b, n); S, Y (b, m, n) oldest first; rho (b, m)."""
    q = -g
    m = S.shape[1]
    alpha = []
    for i in reversed(range(m)):
        a = rho[:, i] * _dot(S[:, i], q)
        q = q - a[:, None] * Y[:, i]
        alpha.append(a)
    alpha.reverse()
    r = q * h_diag[:, None]
    for i in range(m):
        beta = rho[:, i] * _dot(Y[:, i], r)
        r = r + (alpha[i] - beta)[:, None] * S[:, i]
    return r


def lbfgs_batched(
    objective: BatchedObjective,
    x0: Tensor,
    settings: SolverSettings,
    is_diverged: Callable[[Tensor], Tensor] | None = None,
) -> SolverResult:
    """Minimise B independent objectives, each with its own L-BFGS state.

    Args:
        objective: ``objective(x (b, n), index (b,) long) -> (b,)``: the values of the
            problems ``index`` at ``x``. Problem b's value may depend on row b only.
        x0: (B, n) starting points.
        settings: iteration budgets, tolerances, line-search constants.
        is_diverged: optional ``(x (b, n)) -> (b,) bool`` test on accepted iterates.

    Returns:
        :class:`SolverResult`.
    """
    s = settings
    B, n = x0.shape
    dev, dt = x0.device, x0.dtype
    all_index = torch.arange(B, device=dev)
    x = x0.detach().clone()
    f, g = _evaluate(objective, x, all_index)
    evaluations = torch.ones(B, dtype=torch.long, device=dev)
    iterations = torch.zeros(B, dtype=torch.long, device=dev)
    diverged = ~torch.isfinite(f)
    if is_diverged is not None:
        diverged |= is_diverged(x)
    converged = ~diverged & (g.abs().amax(-1) <= s.gtol)
    active = ~diverged & ~converged

    m = s.history_size
    S = torch.zeros(B, m, n, dtype=dt, device=dev)
    Y = torch.zeros(B, m, n, dtype=dt, device=dev)
    rho = torch.zeros(B, m, dtype=dt, device=dev)
    h_diag = torch.ones(B, dtype=dt, device=dev)

    d = -g
    gtd0 = _dot(g, d)
    # The first step is scaled like torch's: min(1, 1 / |g|_1).
    t = torch.clamp(_dot(g.abs(), torch.ones_like(g)).reciprocal(), max=1.0)
    t = torch.where(torch.isfinite(t), t, torch.ones_like(t))
    converged |= active & (gtd0 > -s.xtol)
    active &= ~converged

    # Line-search state (per problem).
    zeros = torch.zeros(B, dtype=dt, device=dev)
    phase = torch.zeros(B, dtype=torch.long, device=dev)  # 0 bracketing, 1 zoom
    ls_iter = torch.zeros(B, dtype=torch.long, device=dev)
    insufficient = torch.zeros(B, dtype=torch.bool, device=dev)
    t_prev, f_prev, gtd_prev, g_prev = zeros.clone(), f.clone(), gtd0.clone(), g.clone()
    t_lo, f_lo, gtd_lo, g_lo = zeros.clone(), f.clone(), gtd0.clone(), g.clone()
    t_hi, f_hi, gtd_hi = zeros.clone(), f.clone(), gtd0.clone()

    def where(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
        return torch.where(mask.view(-1, *([1] * (a.dim() - 1))), a, b)

    while bool(active.any()):
        index = active.nonzero().squeeze(1)
        x_trial = x[index] + t[index, None] * d[index]
        f_sub, g_sub = _evaluate(objective, x_trial, index)
        f_new = f.clone()
        f_new[index] = f_sub
        g_new = torch.zeros_like(g)
        g_new[index] = g_sub
        evaluations += active.long()
        gtd_new = _dot(g_new, d)
        d_norm = d.abs().amax(-1)

        armijo_fail = f_new > f + s.c1 * t * gtd0
        curvature_ok = gtd_new.abs() <= -s.c2 * gtd0
        done = torch.zeros_like(active)

        # ---- bracketing phase ----
        bracketing = active & (phase == 0)
        case_high = bracketing & (armijo_fail | ((ls_iter > 1) & (f_new >= f_prev)))
        case_wolfe = bracketing & ~case_high & curvature_ok
        case_turn = bracketing & ~case_high & ~case_wolfe & (gtd_new >= 0)
        case_extend = bracketing & ~case_high & ~case_wolfe & ~case_turn
        to_zoom = case_high | case_turn
        # bracket [prev, new]: lo is the end with the lower value
        prev_is_lo = f_prev <= f_new
        lo_prev = to_zoom & prev_is_lo
        lo_new = (to_zoom & ~prev_is_lo) | case_wolfe
        t_lo_next = torch.where(lo_prev, t_prev, torch.where(lo_new, t, t_lo))
        f_lo_next = torch.where(lo_prev, f_prev, torch.where(lo_new, f_new, f_lo))
        gtd_lo_next = torch.where(lo_prev, gtd_prev, torch.where(lo_new, gtd_new, gtd_lo))
        g_lo = where(lo_prev, g_prev, where(lo_new, g_new, g_lo))
        t_hi = torch.where(lo_prev, t, torch.where(to_zoom, t_prev, t_hi))
        f_hi = torch.where(lo_prev, f_new, torch.where(to_zoom, f_prev, f_hi))
        gtd_hi = torch.where(lo_prev, gtd_new, torch.where(to_zoom, gtd_prev, gtd_hi))
        t_lo, f_lo, gtd_lo = t_lo_next, f_lo_next, gtd_lo_next
        done |= case_wolfe
        phase = torch.where(to_zoom, torch.ones_like(phase), phase)
        insufficient = torch.where(to_zoom, torch.zeros_like(insufficient), insufficient)
        # extrapolation step
        t_ext = _cubic_minimum(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                               t + 0.01 * (t - t_prev), t * 10)
        t_prev = torch.where(case_extend, t, t_prev)
        f_prev = torch.where(case_extend, f_new, f_prev)
        gtd_prev = torch.where(case_extend, gtd_new, gtd_prev)
        g_prev = where(case_extend, g_new, g_prev)
        t_next = torch.where(case_extend, t_ext, t)

        # ---- zoom phase (problems that were already zooming before this evaluation) ----
        zooming = active & (phase == 1) & ~to_zoom
        z_high = zooming & (armijo_fail | (f_new >= f_lo))
        z_low = zooming & ~z_high
        z_wolfe = z_low & curvature_ok
        z_swap = z_low & ~z_wolfe & (gtd_new * (t_hi - t_lo) >= 0)
        # old lo becomes hi
        t_hi = torch.where(z_swap, t_lo, torch.where(z_high, t, t_hi))
        f_hi = torch.where(z_swap, f_lo, torch.where(z_high, f_new, f_hi))
        gtd_hi = torch.where(z_swap, gtd_lo, torch.where(z_high, gtd_new, gtd_hi))
        t_lo = torch.where(z_low, t, t_lo)
        f_lo = torch.where(z_low, f_new, f_lo)
        gtd_lo = torch.where(z_low, gtd_new, gtd_lo)
        g_lo = where(z_low, g_new, g_lo)
        done |= z_wolfe

        ls_iter = ls_iter + active.long()
        out_of_trials = active & ~done & (ls_iter >= s.line_search_max_evals)
        # bracketing ran out: keep the trial if it lowered f (torch: bracket [0, t])
        ran_out_bracketing = out_of_trials & (phase == 0)
        take_new = ran_out_bracketing & (f_new < f)
        t_lo = torch.where(take_new, t, torch.where(ran_out_bracketing, zeros, t_lo))
        f_lo = torch.where(take_new, f_new, torch.where(ran_out_bracketing, f, f_lo))
        g_lo = where(take_new, g_new, where(ran_out_bracketing, g, g_lo))
        done |= out_of_trials

        # zoom: bracket too small to matter
        in_zoom = active & ~done & (phase == 1)
        tiny = in_zoom & ((t_hi - t_lo).abs() * d_norm < s.xtol)
        done |= tiny
        in_zoom &= ~tiny
        # next zoom trial: cubic in the bracket with torch's safeguard against the ends
        b_lo, b_hi = torch.minimum(t_lo, t_hi), torch.maximum(t_lo, t_hi)
        t_zoom = _cubic_minimum(t_lo, f_lo, gtd_lo, t_hi, f_hi, gtd_hi, b_lo, b_hi)
        eps = 0.1 * (b_hi - b_lo)
        near = torch.minimum(b_hi - t_zoom, t_zoom - b_lo) < eps
        move = near & (insufficient | (t_zoom >= b_hi) | (t_zoom <= b_lo))
        moved = torch.where((t_zoom - b_hi).abs() < (t_zoom - b_lo).abs(), b_hi - eps, b_lo + eps)
        t_zoom = torch.where(move, moved, t_zoom)
        insufficient = torch.where(in_zoom, near & ~move, insufficient)
        t_next = torch.where(in_zoom, t_zoom, t_next)
        t = torch.where(active & ~done, t_next, t)

        if not bool(done.any()):
            continue

        # ---- accept the line-search result of the problems that finished ----
        step = t_lo[:, None] * d
        x_new = where(done, x + step, x)
        y = g_lo - g
        ys = _dot(y, step)
        update = done & (ys > _CURVATURE_EPS)
        if bool(update.any()):
            S = where(update, torch.cat([S[:, 1:], step[:, None]], 1), S)
            Y = where(update, torch.cat([Y[:, 1:], y[:, None]], 1), Y)
            rho = where(update, torch.cat([rho[:, 1:], (1.0 / ys)[:, None]], 1), rho)
            h_diag = torch.where(update, ys / _dot(y, y), h_diag)
        f_change = (f_lo - f).abs()
        max_step = step.abs().amax(-1)
        x = x_new
        f = torch.where(done, f_lo, f)
        g = where(done, g_lo, g)
        iterations += done.long()

        newly_diverged = done & ~torch.isfinite(f)
        if is_diverged is not None:
            newly_diverged |= done & is_diverged(x)
        conv = done & ~newly_diverged & (
            (g.abs().amax(-1) <= s.gtol) | (f_change < s.ftol) | (max_step <= s.xtol)
        )
        budget = done & ((iterations >= s.max_iter) | (evaluations >= s.max_eval))
        diverged |= newly_diverged
        converged |= conv
        active &= ~(newly_diverged | conv | budget)

        # ---- new direction for the problems that go on ----
        restart = done & active
        if bool(restart.any()):
            d_new = _two_loop(g, S, Y, rho, h_diag)
            gtd = _dot(g, d_new)
            not_descent = restart & (gtd > -s.xtol)
            if bool(not_descent.any()):
                # A stale history: forget it and take steepest descent.
                S = where(not_descent, torch.zeros_like(S), S)
                Y = where(not_descent, torch.zeros_like(Y), Y)
                rho = where(not_descent, torch.zeros_like(rho), rho)
                h_diag = torch.where(not_descent, torch.ones_like(h_diag), h_diag)
                d_new = where(not_descent, -g, d_new)
                gtd = torch.where(not_descent, -_dot(g, g), gtd)
                stuck = not_descent & (gtd > -s.xtol)
                converged |= stuck
                active &= ~stuck
                restart &= ~stuck
            d = where(restart, d_new, d)
            gtd0 = torch.where(restart, gtd, gtd0)
            t = torch.where(restart, torch.ones_like(t), t)
            phase = torch.where(restart, torch.zeros_like(phase), phase)
            ls_iter = torch.where(restart, torch.zeros_like(ls_iter), ls_iter)
            insufficient = torch.where(restart, torch.zeros_like(insufficient), insufficient)
            t_prev = torch.where(restart, zeros, t_prev)
            f_prev = torch.where(restart, f, f_prev)
            gtd_prev = torch.where(restart, gtd, gtd_prev)
            g_prev = where(restart, g, g_prev)
            t_lo = torch.where(restart, zeros, t_lo)
            f_lo = torch.where(restart, f, f_lo)
            gtd_lo = torch.where(restart, gtd, gtd_lo)
            g_lo = where(restart, g, g_lo)

    return SolverResult(
        x=x, f=f, iterations=iterations, evaluations=evaluations,
        converged=converged & ~diverged, diverged=diverged,
    )


def _torchmin_lbfgs(fun, x0: Tensor, settings: SolverSettings):
    """pytorch-minimize's L-BFGS with strong-Wolfe search on one flat vector ``x0`` (n,)."""
    from torchmin import minimize  # imported on use: it emits a deprecation warning on import

    return minimize(
        fun,
        x0.clone(),
        method="l-bfgs",
        max_iter=settings.max_iter,
        options=dict(history_size=settings.history_size, line_search="strong-wolfe",
                     gtol=settings.gtol, xtol=settings.ftol),
    )


def lbfgs_summed(objective: BatchedObjective, x0: Tensor, settings: SolverSettings) -> SolverResult:
    """The naive batched approach: torchmin L-BFGS on sum_b f_b (one shared line search).

    All problems take the same step size and stop together, when the *sum* meets the
    stopping rule. Kept to measure what that costs (``bench.ba_speed``).
    """
    B, n = x0.shape
    all_index = torch.arange(B, device=x0.device)
    if not bool(torch.isfinite(objective(x0.detach(), all_index)).all()):
        return _per_track_fallback(objective, x0, settings)
    result = _torchmin_lbfgs(lambda flat: objective(flat.view(B, n), all_index).sum(), x0.detach().reshape(-1), settings)
    x = result.x.detach().view(B, n)
    with torch.no_grad():
        f = objective(x, all_index)
    finite = torch.isfinite(f)
    nit = torch.full((B,), int(result.nit), dtype=torch.long, device=x0.device)
    return SolverResult(
        x=x, f=f, iterations=nit, evaluations=torch.full_like(nit, int(result.nfev)),
        converged=torch.full((B,), bool(result.success), device=x0.device) & finite,
        diverged=~finite,
    )


def lbfgs_per_track(objective: BatchedObjective, x0: Tensor, settings: SolverSettings) -> SolverResult:
    """The reference: torchmin L-BFGS on each problem alone, one after the other."""
    return _per_track_fallback(objective, x0, settings)


def _per_track_fallback(objective: BatchedObjective, x0: Tensor, settings: SolverSettings) -> SolverResult:
    B, n = x0.shape
    xs, fs, its, evs, conv, div = [], [], [], [], [], []
    for b in range(B):
        index = torch.tensor([b], device=x0.device)
        start = x0[b : b + 1].detach()
        with torch.no_grad():
            f0 = objective(start, index)
        if not bool(torch.isfinite(f0).all()):
            xs.append(start[0]); fs.append(f0[0]); its.append(0); evs.append(1); conv.append(False); div.append(True)
            continue
        result = _torchmin_lbfgs(lambda flat: objective(flat.view(1, n), index).sum(), start.reshape(-1), settings)
        x = result.x.detach().view(1, n)
        with torch.no_grad():
            f = objective(x, index)
        finite = bool(torch.isfinite(f).all())
        xs.append(x[0]); fs.append(f[0]); its.append(int(result.nit)); evs.append(int(result.nfev))
        conv.append(bool(result.success) and finite); div.append(not finite)
    dev = x0.device
    return SolverResult(
        x=torch.stack(xs), f=torch.stack(fs),
        iterations=torch.tensor(its, device=dev), evaluations=torch.tensor(evs, device=dev),
        converged=torch.tensor(conv, device=dev), diverged=torch.tensor(div, device=dev),
    )
