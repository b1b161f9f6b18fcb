"""Levenberg-Marquardt on the block structure of the whole-clip bundle adjustment.

The energy of a track is a sum of terms (:mod:`optimize.terms`), each a robust penalty of
small residual vectors whose Jacobian touches frame t, maybe frame t-1, and the 10 shared
betas. So the Gauss-Newton normal matrix of one track is block tridiagonal (T blocks of
75 x 75: pose 72 + camera 3) with a 10-wide dense border, solved in O(T 75^3) by
:func:`optimize.blocks.solve_bordered_tridiagonal`.

The solver only linearises through the terms, damps, solves and steps:
:meth:`LMProblem.linearize` forms the Jacobian rows of the quantities the residuals live
on (keypoints, joints: analytic, ``BodyModel.jacobians``), every term writes its residuals,
IRLS weights and curvatures (``Term.linearize``: robust penalties by iteratively
reweighted least squares, outer minima by the candidate achieving them, capped frames
with weight 0, the GMM prior by its exact gradient and responsibility-weighted
precisions), and :class:`_Normal` assembles the blocks. The objective is never changed.

Every step is checked on the exact energy: the gain ratio of actual to predicted decrease
accepts or rejects it and adapts each track's damping (Nielsen's rule). The damping is
Marquardt's, ``lambda diag(H)`` with a floor, so it is invariant to the variables' units.
A trial point is judged on its energy alone (a forward pass), so a rejected step costs a
solve and a forward pass, not a linearisation. Two cheap corrections along the step's own
direction, energies only: an accepted step is stretched (``STRETCH``) while E keeps
falling, because IRLS over-estimates the robust penalties' curvature (the model's step
stops short); a rejected one is shortened (``BACKTRACK``) before the damping grows.

Batched over tracks, with per-track damping, accept/reject and stopping as masks: the
iteration has no host synchronisation (no ``.item()``, no branch on tensor values). The
driver looks at the tracks' state every ``check_every`` iterations (1 on a CPU, where a
look is free and finished tracks drop out of the batch at once; more on a GPU).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from optimize.blocks import solve_bordered_tridiagonal
from optimize.energy import TrackBatch, energy_terms, track_total
from optimize.problem import NUM_BETAS, NUM_POSE
from optimize.settings import LMSettings
from optimize.terms import FRAME, TERMS, RowInputs, next_frame
from optimize.solver import SolverResult

_DAMPING_FLOOR = 1e-6  # relative to the track's mean diagonal entry
BACKTRACK = (0.5, 0.25)  # fractions of a rejected step tried before the damping grows
STRETCH = (2.0,)  # multiples of an accepted step tried (the largest that lowers E further is taken)


@dataclass(frozen=True)
class Linearization:
    """The energy of b tracks and its Gauss-Newton model at one iterate.

    Attributes:
        energy: (b,) E (not divided by T).
        gradient: (b, T, 75) dE / d frame variables. gradient_betas: (b, 10).
        diagonal, lower: (b, T, 75, 75) blocks H[t, t] and H[t, t-1].
        border: (b, T, 75, 10) H[t, betas]. corner: (b, 10, 10) H[betas, betas].
    """

    energy: Tensor
    gradient: Tensor
    gradient_betas: Tensor
    diagonal: Tensor
    lower: Tensor
    border: Tensor
    corner: Tensor

    def where(self, mask: Tensor, other: "Linearization") -> "Linearization":
        """Per track: this one where ``mask`` (b,), else ``other``."""
        def pick(a: Tensor, b: Tensor) -> Tensor:
            return torch.where(mask.view(-1, *([1] * (a.dim() - 1))), a, b)
        return Linearization(*(pick(getattr(self, f), getattr(other, f)) for f in self.__dataclass_fields__))

    def select(self, index: Tensor) -> "Linearization":
        return Linearization(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

    def put(self, index: Tensor, values: "Linearization") -> "Linearization":
        """A copy with the tracks ``index`` (k,) replaced by ``values`` (k tracks)."""
        def put_one(a: Tensor, v: Tensor) -> Tensor:
            return a.index_copy(0, index, v)
        return Linearization(*(put_one(getattr(self, f), getattr(values, f)) for f in self.__dataclass_fields__))


class _Normal:
    """Accumulates J^T W J and J^T W r in the block layout.

    Every robust term is a penalty of residual rows of a per-frame quantity f(t) (the 34
    keypoint coordinates in pixels, the 72 joint coordinates in metres): unary terms of frame
    t and pairwise terms on ``f(t) - f(t-1)``. The rows are registered with :meth:`rows`,
    their Jacobians written into :attr:`jac` and :attr:`jac_betas` (by
    :meth:`LMProblem._jacobian_rows`), each term's weights into the per-row tensors
    (``Term.linearize``); :meth:`assemble` then forms each block with one batched product
    over all rows. Terms not on those rows (the betas' own residuals, the camera's motion,
    the GMM prior) write into ``gradient_betas`` and ``corner``, seed ``diagonal``, or add
    to the blocks after :meth:`assemble`.

    Attributes:
        jac: (b, T, R, 75) d rows(t) / d frame t's variables (a workspace: reused by the next
            linearisation; columns a quantity does not depend on must be written as 0).
        jac_betas: (b, T, R, 10) d rows(t) / d betas variables.
        curvature: (b, T, R) C of the unary terms with a scalar curvature per row.
        weighted_residual: (b, T, R) W r of the unary terms (the gradient's rows).
        pair_residual: (b, T, R) d_t = f(t) - f(t-1) of the pairwise terms (0 at t = 0).
        pair_weight: (b, T, R) their IRLS weight, stored at t; must be 0 at t = 0 and where
            the pair does not exist.
        diagonal, lower, border, gradient: the blocks (:class:`Linearization`), set by
            :meth:`assemble` (a caller may seed ``diagonal`` (b, T, 75, 75) before it: the
            rows' products are then added to it in place). corner (b, 10, 10),
            gradient_betas (b, 10): accumulated.
    """

    def __init__(self, b: int, T: int, rows: int, dtype: torch.dtype, device: torch.device,
                 workspace: Callable[[str, tuple[int, ...]], Tensor]):
        zeros = lambda *shape: torch.zeros(*shape, dtype=dtype, device=device)  # noqa: E731
        self.b, self.T, self.R = b, T, rows
        self._workspace = workspace
        self.jac = workspace("jac", (b, T, rows, FRAME))
        self.jac_betas = torch.empty(b, T, rows, NUM_BETAS, dtype=dtype, device=device)
        self.curvature = zeros(b, T, rows)
        self.weighted_residual = zeros(b, T, rows)
        self.pair_residual = zeros(b, T, rows)
        self.pair_weight = zeros(b, T, rows)
        self._blocks: list[tuple[slice, Tensor]] = []
        self._used = 0
        self.corner = zeros(b, NUM_BETAS, NUM_BETAS)
        self.gradient_betas = zeros(b, NUM_BETAS)
        self.diagonal = self.lower = self.border = self.gradient = None

    def rows(self, count: int) -> slice:
        """The next ``count`` rows (a slice of axis 2 of the per-row tensors)."""
        start = self._used
        self._used += count
        if self._used > self.R:
            raise ValueError(f"{self._used} residual rows registered, {self.R} allocated")
        return slice(start, self._used)

    def add_blocks(self, rows: slice, blocks: Tensor) -> None:
        """A 2 x 2 curvature per pair of ``rows`` (unary terms): blocks (b, T, K, 2, 2), 2 K rows."""
        self._blocks.append((rows, blocks))

    @staticmethod
    def sum_frames(values: Tensor) -> Tensor:
        """Sum over the frame axis 1 in float64 (the rounding must not depend on the padding)."""
        return values.sum(1, dtype=torch.float64).to(values.dtype)

    def assemble(self) -> None:
        """The blocks of every registered row, in one batched product each.

        A unary term ``rho(|r|^2)`` with IRLS weight W contributes ``J^T W r`` and ``J^T C J``;
        a pairwise term with weight W_t puts ``W_t + W_t+1`` on frame t's diagonal block,
        ``-J_t^T W_t J_t-1`` below it, ``J_t^T (W_t dJb_t - W_t+1 dJb_t+1)`` in the border
        (``dJb_t = Jb_t - Jb_t-1``) and ``J_t^T (W_t d_t - W_t+1 d_t+1)`` in the gradient.
        """
        if self._used != self.R:
            raise ValueError(f"{self._used} residual rows registered, {self.R} allocated")
        b, T, R = self.b, self.T, self.R
        n = b * T
        jac, jac_betas = self.jac, self.jac_betas
        w = self.pair_weight
        scalar = self.curvature + w + next_frame(w)  # (b, T, R): C of the rows without 2 x 2 blocks
        jt = jac.view(n, R, FRAME).transpose(1, 2)  # (n, 75, R): no copy, the product reads it transposed
        # C J: what multiplies J_t^T in the diagonal block
        product = self._workspace("product", (b, T, R, FRAME))
        torch.mul(jac, scalar[..., None], out=product)
        betas_rows = jac_betas * self.curvature[..., None]  # C Jb of the unary terms
        for rows, blocks in self._blocks:
            pairs = jac[:, :, rows].view(b, T, -1, 2, FRAME)
            out = product[:, :, rows].view(b, T, -1, 2, FRAME)
            on_diagonal = blocks.diagonal(dim1=-2, dim2=-1) + scalar[:, :, rows].view(b, T, -1, 2)
            for i in range(2):  # row i of each pair: (c_ii + scalar) J_i + c_i,1-i J_1-i
                torch.mul(pairs[..., i, :], on_diagonal[..., i, None], out=out[..., i, :])
                out[..., i, :].addcmul_(pairs[..., 1 - i, :], blocks[..., i, 1 - i, None])
            betas_rows[:, :, rows] += _times_2x2(blocks, jac_betas[:, :, rows])
        if self.diagonal is None:
            self.diagonal = torch.bmm(jt, product.view(n, R, FRAME)).view(b, T, FRAME, FRAME)
        else:  # seeded by the caller (the GMM curvature): added in place, in the same product
            self.diagonal.view(n, FRAME, FRAME).baddbmm_(jt, product.view(n, R, FRAME))
        self.corner += self.sum_frames(jac_betas.transpose(-1, -2) @ betas_rows)
        # the pair terms' betas rows: W_t dJb_t - W_t+1 dJb_t+1
        change = torch.empty_like(jac_betas)  # dJb_t (b, T, R, 10), 0-weighted at t = 0
        change[:, 0] = jac_betas[:, 0]
        torch.sub(jac_betas[:, 1:], jac_betas[:, :-1], out=change[:, 1:])
        change_w = change * w[..., None]
        betas_rows += change_w
        betas_rows[:, :-1] -= change_w[:, 1:]
        # J^T B and J^T r as (B^T J)^T and r^T J: the product with J on the right is the faster one
        border = torch.bmm(betas_rows.view(n, R, NUM_BETAS).transpose(1, 2), jac.view(n, R, FRAME))
        self.border = border.transpose(1, 2).contiguous().view(b, T, FRAME, NUM_BETAS)
        self.corner += self.sum_frames(change.transpose(-1, -2) @ change_w)
        wd = w * self.pair_residual
        residual_rows = self.weighted_residual + wd - next_frame(wd)
        # r^T J per frame as R multiply-adds over all frames at once, not a (1 x R) (R x 75)
        # bmm: BLAS's thin paths (M = 1 or 2) round the first columns differently with the
        # frame's memory offset, i.e. with the batch. On a GPU, where batch independence is not promised (kernels are chosen by shape), the
        # bmm: one kernel instead of R.
        if jac.device.type == "cpu":
            self.gradient = torch.zeros(b, T, FRAME, dtype=jac.dtype, device=jac.device)
            for row in range(R):
                self.gradient.addcmul_(jac[:, :, row], residual_rows[:, :, row, None])
        else:
            self.gradient = torch.bmm(residual_rows.view(n, 1, R), jac.view(n, R, FRAME)).view(b, T, FRAME)
        # Jb^T W r and dJb^T W d
        self.gradient_betas += self.sum_frames((self.weighted_residual[..., None, :] @ jac_betas)[..., 0, :])
        self.gradient_betas += self.sum_frames((self.pair_residual[..., None, :] @ change_w)[..., 0, :])
        # below the diagonal: -J_t^T W_t J_t-1 (frame 0 has none)
        torch.mul(jac[:, :-1], -w[:, 1:, :, None], out=product[:, 1:])
        product[:, 0] = 0.0
        self.lower = torch.bmm(jt, product.view(n, R, FRAME)).view(b, T, FRAME, FRAME)
        self.lower[:, 0] = 0.0  # exactly, even where frame 0's J is not finite

    def result(self, energy: Tensor) -> Linearization:
        return Linearization(energy, self.gradient, self.gradient_betas, self.diagonal, self.lower,
                             self.border, self.corner)


def _times_2x2(blocks: Tensor, rows: Tensor) -> Tensor:
    """Each pair of rows times its 2 x 2 block (elementwise: a batched 2 x 2 matmul is slow).

    blocks (b, T, K, 2, 2), rows (b, T, 2 K, C) -> (b, T, 2 K, C).
    """
    pairs = rows.reshape(*rows.shape[:2], -1, 2, rows.shape[-1])
    x, y = pairs[..., 0, :], pairs[..., 1, :]
    out = torch.stack((blocks[..., 0, 0, None] * x + blocks[..., 0, 1, None] * y,
                       blocks[..., 1, 0, None] * x + blocks[..., 1, 1, None] * y), dim=-2)
    return out.reshape(rows.shape)


class LMProblem:
    """The energy of a packed batch and its linearisation in the solver's variables.

    Args:
        packed: :class:`optimize.bundle_adjust.PackedTracks` (decode, scale_ref, betas_scale).
        body_model: with ``jacobians`` and ``joints_and_keypoints``.
        prior: GMM prior (``nll``, ``nll_gradient_responsibility``, ``precision``) or None.
        config: the stage's :class:`optimize.settings.EnergySettings` (weights, widths, caps).
        gmm_offset: see ``optimize.energy.gmm_nll_offset``.
        translation_unit: metres per unit of the camera translation variables.
    """

    def __init__(self, packed, body_model, prior, config, gmm_offset: float, translation_unit: float):
        self.packed = packed
        self.body = body_model
        self.prior = prior
        self.config = config
        self.offset = gmm_offset
        self.translation_unit = translation_unit
        self._last: tuple[Tensor, TrackBatch] | None = None
        self._scratch: dict[str, Tensor] = {}

    def _workspace(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        """A scratch tensor of ``shape`` whose memory is kept between linearisations (uninitialised).

        The products of a linearisation are memory-bound; a fresh tensor of this size costs
        its page faults again on every call (on the CPU about as much as filling it). The
        memory grows to the largest shape asked for under ``name``.
        """
        size = math.prod(shape)
        buffer = self._scratch.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != dtype or buffer.device != device:
            buffer = self._scratch[name] = torch.empty(size, dtype=dtype, device=device)
        return buffer[:size].view(shape)

    def _block_precision(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The GMM's precisions P_k placed in the body-pose rows and columns of a frame's
        75 x 75 block, flattened: (K, 75 * 75), 0 elsewhere (computed once)."""
        key = ("block_precision", dtype, device)
        if key not in self._scratch:
            k = self.prior.num_components
            padded = torch.zeros(k, FRAME, FRAME, dtype=dtype, device=device)
            padded[:, 3:NUM_POSE, 3:NUM_POSE] = self.prior.precision.to(dtype=dtype, device=device)
            self._scratch[key] = padded.reshape(k, FRAME * FRAME)
        return self._scratch[key]

    def batch(self, index: Tensor) -> TrackBatch:
        """The fixed data of the tracks ``index`` (cached for the same index tensor)."""
        if self._last is None or self._last[0] is not index:
            self._last = (index, self.packed.batch.select(index))
        return self._last[1]

    def energy(self, x: Tensor, index: Tensor) -> Tensor:
        """(b,) E at solver variables x (b, n) (forward only)."""
        pose, betas, camera = self.packed.decode(x, index)
        terms = energy_terms(pose, betas, camera, self.batch(index), self.body, self.prior, self.config, self.offset)
        return track_total(terms.per_frame_total())

    def linearize(self, x: Tensor, index: Tensor) -> Linearization:
        """E, its gradient and the Gauss-Newton blocks at x (b, n) for the tracks ``index`` (b,).

        The solver's part is the Jacobian rows of the quantities the terms' residuals live on
        (:meth:`_jacobian_rows`); every term of :data:`optimize.terms.TERMS` then writes its
        residuals, weights and curvatures (``Term.linearize``), and the blocks are assembled.
        """
        config = self.config
        batch = self.batch(index)
        pose, betas, camera = self.packed.decode(x, index)
        b, T = pose.shape[:2]
        dtype, device = x.dtype, x.device
        active = [term for term in TERMS if term.linearized(config, self.prior)]
        # the residual rows: 34 keypoint coordinates (px), 72 joint coordinates (m)
        on_keypoints = any(term.quantity == "keypoints" for term in active)
        on_joints = any(term.quantity == "joints" for term in active)
        normal = _Normal(b, T, 34 * on_keypoints + 72 * on_joints, dtype, device,
                         lambda name, shape: self._workspace(name, shape, dtype, device))
        kp = normal.rows(34) if on_keypoints else None
        jr = normal.rows(72) if on_joints else None
        body_outputs, per_beta, unit = self._jacobian_rows(normal, pose, betas, camera, index, kp, jr)
        terms = energy_terms(pose, betas, camera, batch, self.body, self.prior, config, self.offset,
                             body_outputs=body_outputs)
        energy = track_total(terms.per_frame_total())
        rows = RowInputs(normal, terms, kp, jr, per_beta[:, :, 0, 0, 0], unit,
                         lambda: self._block_precision(dtype, device))
        for term in active:
            term.linearize(terms.inputs, rows)
        normal.assemble()
        for add in rows.after_assembly:
            add()
        return normal.result(energy)

    def _jacobian_rows(self, normal: _Normal, pose: Tensor, betas: Tensor, camera: Tensor, index: Tensor,
                       kp: slice | None, jr: slice | None) -> tuple[tuple[Tensor, Tensor], Tensor, Tensor]:
        """Write d keypoints2d / d variables into rows ``kp`` and d joints / d variables into
        rows ``jr`` of ``normal.jac`` and ``normal.jac_betas`` (the body model's chain rule).

        Returns:
            the body outputs (joints (b, T, 24, 3) m, keypoints (b, T, 17, 3) m), d beta / d z
            (b, 1, 1, 1, 1) and the pixels per translation variable (b, 1, 1).
        """
        b, T = pose.shape[:2]
        n = b * T
        joints_pose = None  # the joints' pose Jacobian, written by the body model straight into their rows
        if jr is not None and self.body.dtype == pose.dtype:
            joints_pose = normal.jac[:, :, jr, :NUM_POSE].view(n, 24, 3, NUM_POSE)
        jac = self.body.jacobians(pose.reshape(n, NUM_POSE),
                                  betas[:, None].expand(b, T, NUM_BETAS).reshape(n, NUM_BETAS),
                                  joints_pose_out=joints_pose)
        if jr is not None and joints_pose is None:
            normal.jac[:, :, jr, :NUM_POSE] = jac["joints_pose"].reshape(b, T, 72, NUM_POSE)
        joints = jac["joints"].reshape(b, T, 24, 3)
        keypoints = jac["keypoints"].reshape(b, T, 17, 3)
        per_beta = (1.0 / self.packed.betas_scale[index])[:, None, None, None, None]  # d beta / d z
        unit = (self.translation_unit * self.packed.scale_ref[index])[:, None, None]  # (b, 1, 1) px per variable
        scale = camera[..., 0][..., None, None, None]  # (b, T, 1, 1, 1) px / m
        if kp is not None:
            # x = s X_xy + t: d / d pose, d / d log s, d / d (tx, ty) variables
            kp_jac = normal.jac[:, :, kp].view(b, T, 17, 2, FRAME)
            kp_pose = jac["keypoints_pose"].reshape(b, T, 17, 3, NUM_POSE)[..., :2, :]
            torch.mul(kp_pose, scale, out=kp_jac[..., :NUM_POSE])
            torch.mul(keypoints[..., :2], camera[..., 0][..., None, None], out=kp_jac[..., NUM_POSE])
            kp_jac[..., 0, NUM_POSE + 1] = unit
            kp_jac[..., 1, NUM_POSE + 1] = 0.0
            kp_jac[..., 0, NUM_POSE + 2] = 0.0
            kp_jac[..., 1, NUM_POSE + 2] = unit
            kp_betas = jac["keypoints_betas"].reshape(b, T, 17, 3, NUM_BETAS)[..., :2, :]
            normal.jac_betas[:, :, kp] = (scale * kp_betas * per_beta).reshape(b, T, 34, NUM_BETAS)
        if jr is not None:
            normal.jac[:, :, jr, NUM_POSE:] = 0.0  # the joints do not depend on the camera
            normal.jac_betas[:, :, jr] = (
                jac["joints_betas"].reshape(b, T, 24, 3, NUM_BETAS) * per_beta).reshape(b, T, 72, NUM_BETAS)
        return (joints, keypoints), per_beta, unit


def levenberg_marquardt(
    problem: LMProblem,
    x0: Tensor,
    settings: LMSettings,
    is_diverged: Callable[[Tensor], Tensor] | None = None,
    budget: Tensor | None = None,
) -> SolverResult:
    """Minimise every track's E from x0 (B, 10 + 75 T) with batched Levenberg-Marquardt.

    Per track: the step solves ``(H + lambda D) d = -g`` (D = diag(H), floored), is
    accepted when it lowers E, and lambda follows Nielsen's rule (smaller after a good
    step, doubled-and-growing after a rejected one). A track stops when an accepted step
    lowers E / T by less than ``ftol``, when its gradient is below ``gtol``, when lambda
    exceeds ``max_damping`` (no descent left: converged), after ``max_iter`` iterations
    (not converged), or when its energy or variables stop being finite or bounded
    (``is_diverged``; diverged). A singular or indefinite system (a degenerate frame) is a
    rejected step: lambda grows until the damped system is positive definite.

    ``budget`` (B,) optionally replaces ``max_iter`` per track (the continuation stages
    hand on what an earlier stage left unused); a track that reaches it stops, not
    converged. It costs one host look before the loop, none inside it.

    Returns:
        :class:`optimize.solver.SolverResult`: ``f`` is E / T, ``iterations`` counts linear
        solves (rejected steps included), ``evaluations`` linearisations.
    """
    B = x0.shape[0]
    device, dtype = x0.device, x0.dtype
    settings = settings.on(device)
    frames_per_track = problem.packed.batch.num_frames.to(dtype)
    frame_mask_all = problem.packed.batch.frame_mask

    x_all = x0.detach().clone()
    energy_all = torch.zeros(B, dtype=dtype, device=device)
    iterations = torch.zeros(B, dtype=torch.long, device=device)
    evaluations = torch.zeros(B, dtype=torch.long, device=device)
    converged = torch.zeros(B, dtype=torch.bool, device=device)
    diverged = torch.zeros(B, dtype=torch.bool, device=device)

    work = torch.arange(B, device=device)
    with torch.no_grad():
        lin = problem.linearize(x_all, work)
        # steps are judged on problem.energy (the same sum, without the Jacobians' rounding)
        lin = dataclasses.replace(lin, energy=problem.energy(x_all, work))
    evaluations += 1
    energy_all = lin.energy.clone()
    bad = ~torch.isfinite(lin.energy) | ~torch.isfinite(lin.gradient).all((-1, -2)) | ~torch.isfinite(lin.gradient_betas).all(-1)
    if is_diverged is not None:
        bad |= is_diverged(x_all)
    diverged |= bad
    grad_max = torch.maximum(lin.gradient.abs().amax((-1, -2)), lin.gradient_betas.abs().amax(-1)) / frames_per_track
    converged |= ~bad & (grad_max <= settings.gtol)
    if budget is None:
        limit, loop_max = torch.full((B,), settings.max_iter, dtype=torch.long, device=device), settings.max_iter
    else:
        limit = budget.to(device=device, dtype=torch.long)
        loop_max = int(limit.max()) if B else 0
    active = ~diverged & ~converged & (limit > 0)
    damping_all = torch.full((B,), settings.initial_damping, dtype=dtype, device=device)
    growth_all = torch.full((B,), 2.0, dtype=dtype, device=device)

    x, damping, growth, alive = x_all, damping_all, growth_all, active.clone()
    done_iterations = 0
    while done_iterations < loop_max:
        # a look at the state (the only host synchronisation): drop finished tracks
        keep = alive.nonzero().squeeze(1)
        if keep.numel() == 0:
            break
        if keep.numel() != work.numel():
            work, lin, x = work[keep], lin.select(keep), x[keep]
            damping, growth, alive = damping[keep], growth[keep], alive[keep]
        frames = frames_per_track[work]
        frame_mask = frame_mask_all[work]
        for _ in range(min(settings.check_every, loop_max - done_iterations)):
            alive = alive & (limit[work] > done_iterations)  # the per-track budget (a mask: no look)
            with torch.no_grad():
                x, lin, damping, growth, alive, stats = _step(
                    problem, work, x, lin, damping, growth, alive, frames, frame_mask, settings, is_diverged)
            iterations[work] += stats["counted"]
            evaluations[work] += stats["linearised"]
            converged[work] |= stats["converged"]
            diverged[work] |= stats["diverged"]
            x_all[work] = x
            energy_all[work] = lin.energy
            done_iterations += 1
    return SolverResult(
        x=x_all, f=energy_all / frames_per_track, iterations=iterations, evaluations=evaluations,
        converged=converged & ~diverged, diverged=diverged,
    )


def damped_step(lin: Linearization, damping: Tensor, frame_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The LM step ``(H + lambda D) d = -g`` of every track, by the block solver.

    D is diag(H), floored at ``_DAMPING_FLOOR`` x the track's mean diagonal entry (a frame
    or variable without curvature still gets damped).

    Args:
        lin: the linearisation (b tracks, T frames).
        damping: (b,) lambda.
        frame_mask: (b, T) real frames.

    Returns:
        step (b, 10 + 75 T) in the solver's variable order (0 where the solve failed),
        predicted decrease of E (b,) float64 ``(-g.d + lambda d^T D d) / 2``, ok (b,) bool.
    """
    dtype = lin.gradient.dtype
    b = lin.gradient.shape[0]
    frame_diag = torch.diagonal(lin.diagonal, dim1=-2, dim2=-1)  # (b, T, 75)
    betas_diag = torch.diagonal(lin.corner, dim1=-2, dim2=-1)  # (b, 10)
    real = frame_mask[..., None].to(dtype)
    count = frame_mask.sum(-1).to(dtype) * FRAME + NUM_BETAS
    # summed in float64: a float32 sum over the padded frames rounds with the batch's longest track
    mean_diag = (((frame_diag * real).sum((1, 2), dtype=torch.float64) + betas_diag.sum(-1, dtype=torch.float64))
                 / count).to(dtype)
    floor = (_DAMPING_FLOOR * mean_diag).clamp(min=torch.finfo(dtype).tiny)[:, None]
    scale_frames = torch.maximum(frame_diag, floor[..., None])
    scale_betas = torch.maximum(betas_diag, floor)
    lam = damping[:, None]
    solution = solve_bordered_tridiagonal(
        lin.diagonal,
        lin.lower,
        lin.border,
        lin.corner + torch.diag_embed(lam * scale_betas),
        -lin.gradient,
        -lin.gradient_betas,
        frame_mask,
        diagonal_shift=lam[..., None] * scale_frames,  # damped on the solver's own copies
    )
    step = torch.cat((solution.y, solution.x.reshape(b, -1)), -1)
    ok = solution.ok & torch.isfinite(step).all(-1)
    step = torch.where(ok[:, None], step, torch.zeros_like(step))
    g = torch.cat((lin.gradient_betas, lin.gradient.reshape(b, -1)), -1)
    d_scale = torch.cat((scale_betas, scale_frames.reshape(b, -1)), -1)
    predicted = 0.5 * ((-(g * step)).sum(-1, dtype=torch.float64)
                       + damping.double() * (d_scale * step * step).sum(-1, dtype=torch.float64))
    return step, predicted, ok


def _along(problem, work, x, step, factor: float, is_diverged):
    """The point ``x + factor step``, its energy (b,) and whether it is usable (finite, not diverged)."""
    point = x + factor * step
    energy = problem.energy(point, work)
    usable = torch.isfinite(energy)
    if is_diverged is not None:
        usable = usable & ~is_diverged(point)
    return point, energy, usable


def _step(problem, work, x, lin, damping, growth, alive, frames, frame_mask, settings, is_diverged):
    """One masked LM iteration for the working set.

    The trial point is judged on its energy alone (a forward pass, about 1/25 of a
    linearisation); only tracks whose step is accepted are linearised again. With
    ``settings.check_every == 1`` (the CPU setting, where a look at the state is free)
    exactly those tracks are linearised; otherwise every track is, at its new point (a
    rejected track's old point: the same values again), so that the iteration has no host
    synchronisation.
    """
    dtype = x.dtype
    step, predicted, finite_step = damped_step(lin, damping, frame_mask)
    trial_x, trial_energy, usable = _along(problem, work, x, step, 1.0, is_diverged)
    actual = lin.energy.double() - trial_energy.double()
    accept = alive & finite_step & usable & (actual > 0)
    # a rejected step is first shortened along its own direction (energies only): the
    # largest of BACKTRACK x step that lowers E is taken, and the damping still grows
    partial = torch.zeros_like(accept)
    retry = alive & finite_step & ~accept
    if settings.check_every != 1 or bool(retry.any()):
        for fraction in BACKTRACK:
            short_x, short_energy, usable = _along(problem, work, x, step, fraction, is_diverged)
            short_ok = retry & ~partial & usable & (short_energy.double() < lin.energy.double())
            trial_x = torch.where(short_ok[:, None], short_x, trial_x)
            trial_energy = torch.where(short_ok, short_energy, trial_energy)
            partial |= short_ok
        actual = lin.energy.double() - trial_energy.double()
    full = accept
    # an accepted step is stretched while that lowers E further (energies only): IRLS's
    # curvature over-estimates the robust penalties', so the model's steps fall short of the minimum along their direction
    longer = full.clone()
    if settings.check_every != 1 or bool(longer.any()):
        for factor in STRETCH:
            long_x, long_energy, usable = _along(problem, work, x, step, factor, is_diverged)
            better = longer & usable & (long_energy < trial_energy)
            trial_x = torch.where(better[:, None], long_x, trial_x)
            trial_energy = torch.where(better, long_energy, trial_energy)
            longer = better
        actual = lin.energy.double() - trial_energy.double()
    accept = accept | partial
    new_x = torch.where(accept[:, None], trial_x, x)
    if settings.check_every == 1:
        chosen = accept.nonzero().squeeze(1)  # a host synchronisation: the CPU setting only
        if chosen.numel() == work.numel():
            new_lin = problem.linearize(new_x, work)
        elif chosen.numel():
            new_lin = lin.put(chosen, problem.linearize(new_x[chosen], work[chosen]))
        else:
            new_lin = lin
    else:
        new_lin = problem.linearize(new_x, work).where(accept, lin)
    # the energy the next step is judged against is the one the trial was judged on
    new_lin = dataclasses.replace(new_lin, energy=torch.where(accept, trial_energy, lin.energy))
    lin_bad = accept & (~torch.isfinite(new_lin.gradient).all((-1, -2)) | ~torch.isfinite(new_lin.gradient_betas).all(-1))
    gain = (actual / predicted.clamp(min=1e-300)).to(dtype)
    shrink = torch.clamp(1.0 - (2.0 * gain - 1.0) ** 3, min=1.0 / 3.0)
    new_damping = torch.where(full, damping * shrink, torch.where(partial, damping * 2.0, damping * growth))
    new_growth = torch.where(accept, torch.full_like(growth, 2.0), growth * 2.0)
    decrease = (actual / frames.double()).to(dtype)
    grad_max = torch.maximum(new_lin.gradient.abs().amax((-1, -2)), new_lin.gradient_betas.abs().amax(-1)) / frames
    small = (full & (decrease < settings.ftol)) | (accept & (grad_max <= settings.gtol))
    stuck = alive & ~accept & (new_damping > settings.max_damping)
    # no descent left at any damping: converged, unless even the heavily damped system
    # could not be solved (non-finite normal equations), or the accepted point's
    # derivatives are not finite: diverged
    broken = (stuck & ~finite_step) | lin_bad
    converged = (small | (stuck & finite_step)) & ~broken
    counted = alive.long()
    new_alive = alive & ~converged & ~broken
    return (new_x, new_lin, torch.where(alive, new_damping, damping), torch.where(alive, new_growth, growth),
            new_alive, {"counted": counted, "linearised": accept.long(), "converged": converged, "diverged": broken})
