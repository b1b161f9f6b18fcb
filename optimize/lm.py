"""Levenberg-Marquardt on the block structure of the whole-clip bundle adjustment (issue 14).

The energy of a track (``optimize.energy``) is a sum of robust penalties of small residual
vectors: a keypoint's reprojection error (frame t), a joint's or keypoint's motion and the
camera's translation between frames t-1 and t, a joint's distance to the init estimate
(frame t), the betas' distance to the init betas, and the GMM pose prior (frame t). Each
penalty is ``lambda rho(|r|^2)`` of a residual ``r`` whose Jacobian touches frame t, maybe
frame t-1, and the 10 shared betas. So the Gauss-Newton normal matrix of one track is
block tridiagonal (T blocks of 75 x 75: pose 72 + camera 3) with a 10-wide dense border,
solved in O(T 75^3) by :func:`optimize.blocks.solve_bordered_tridiagonal`.

How the non-least-squares parts enter (the objective itself is never changed):

* **Robust penalties** by iteratively reweighted least squares: a term ``lambda rho(s)``,
  ``s = |r|^2``, contributes ``W J^T r`` to the gradient and ``W J^T J`` to the normal
  matrix, with ``W = 2 lambda rho'(s)`` taken from the penalty functions of
  ``optimize.losses`` themselves (so the gradient is the exact gradient of the energy).
* **Outer minima over candidates** (reprojection, init term): the candidate achieving the
  minimum at the current iterate, fixed for the iteration.
* **Caps** (tau_R, tau_I, the camera bound): a capped frame's term is constant, W = 0.
* **GMM prior**: the exact gradient of the log-sum-exp NLL and the curvature
  ``sum_k r_k Sigma_k^-1`` (``GMMPrior.nll_gradient_responsibility``, formed in the blocks' layout).

* **Shape**: the init term's betas residual (never capped) and the shape bound
  ``w_shape sum_k max(0, |beta_k| - bound)^2`` (exact: a quadratic in the betas).

Every step is checked on the exact energy: the gain ratio of actual to predicted decrease
accepts or rejects it and adapts each track's damping (Nielsen's rule). The damping is
Marquardt's, ``lambda diag(H)`` with a floor, so it is invariant to the variables' units.
A trial point is judged on its energy alone (a forward pass, about 1/25 of a
linearisation), so a rejected step costs a solve and a forward pass, not a
linearisation. Two cheap corrections along the step's own direction, energies only:
an accepted step is stretched (``STRETCH``) while E keeps falling, because IRLS
over-estimates the robust penalties' curvature (measured gain ratios 1.1-1.3: the model's
step stops short); a rejected one is shortened (``BACKTRACK``) before the damping grows.
On the 8 x 250 benchmark tracks the two took the iterations from 231 to 204 (at
``lm_ftol`` 1e-3) with equal or lower energies.

Batched over tracks, with per-track damping, accept/reject and stopping as masks: the
iteration has no host synchronisation (no ``.item()``, no branch on tensor values). The
driver looks at the tracks' state every ``check_every`` iterations (1 on a CPU, where a
look is free and finished tracks drop out of the batch at once; more on a GPU).

Jacobians are analytic (``BodyModel.jacobians``): ``bench.lm_jacobians`` measured them 29x
faster than ``torch.func.vmap(jacrev)`` over frames and 14x faster than ``vmap(jacfwd)``
(104 frames, CPU, one thread), equal to 4e-7 in float32.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from optimize.blocks import solve_bordered_tridiagonal
from optimize.energy import (
    TrackBatch, energy_terms, init_parts, init_per_candidate, joints_init_scale, reprojection_penalty, shape_excess,
    temporal_widths, track_total,
)
from optimize.losses import bounded_huber, huber, squared_norm
from optimize.problem import NUM_BETAS, NUM_CAMERA, NUM_POSE
from optimize.solver import SolverResult

FRAME = NUM_POSE + NUM_CAMERA  # 75 variables per frame: pose, camera (log s, tx / u, ty / u)
_DAMPING_FLOOR = 1e-6  # relative to the track's mean diagonal entry
BACKTRACK = (0.5, 0.25)  # fractions of a rejected step tried before the damping grows
STRETCH = (2.0,)  # multiples of an accepted step tried (the largest that lowers E further is taken)


@dataclass(frozen=True)
class LMSettings:
    """Levenberg-Marquardt settings (see :class:`optimize.config.BAConfig`, ``lm_*`` fields).

    Attributes:
        max_iter: iterations (linear solves) per track and stage.
        ftol: stop when an accepted step lowers the per-frame energy by less than this.
        gtol: stop when every entry of the per-frame energy's gradient is below this.
        initial_damping: lambda at the start, relative to diag(H).
        max_damping: a track whose damping exceeds this cannot descend further: it stops
            (converged: every direction the model proposes fails to lower E).
        check_every: iterations between looks at the tracks' state (host syncs).
    """

    max_iter: int = 25
    ftol: float = 1e-4
    gtol: float = 1e-5
    initial_damping: float = 1e-3
    max_damping: float = 1e8
    check_every: int = 1

    @classmethod
    def from_config(cls, config, device: torch.device) -> "LMSettings":
        check = config.lm_check_every or (1 if device.type == "cpu" else 5)
        return cls(max_iter=config.lm_max_iter, ftol=config.lm_ftol, gtol=config.gtol,
                   initial_damping=config.lm_initial_damping, check_every=check)


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
    t and pairwise terms on ``f(t) - f(t-1)``. The rows of all such terms are registered with
    :meth:`rows`, their Jacobians written into :attr:`jac` and :attr:`jac_betas`, their
    weights into the per-row tensors; :meth:`assemble` then forms each block with one batched
    product over all rows. The other terms (the betas' init term, the camera's temporal term,
    the GMM prior) are added to the blocks after :meth:`assemble`.

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
        scalar = self.curvature + w + _next_frame(w)  # (b, T, R): C of the rows without 2 x 2 blocks
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
        # J^T B and J^T r as (B^T J)^T and r^T J: the product with J on the right is 3x faster
        border = torch.bmm(betas_rows.view(n, R, NUM_BETAS).transpose(1, 2), jac.view(n, R, FRAME))
        self.border = border.transpose(1, 2).contiguous().view(b, T, FRAME, NUM_BETAS)
        self.corner += self.sum_frames(change.transpose(-1, -2) @ change_w)
        wd = w * self.pair_residual
        residual_rows = self.weighted_residual + wd - _next_frame(wd)
        # r^T J per frame as R multiply-adds over all frames at once, not a (1 x R) (R x 75)
        # bmm: BLAS's thin paths (M = 1 or 2) rounded the first columns differently with the
        # frame's memory offset, i.e. with the batch (measured: 13 ms for 2,032 frames,
        # against 5 ms for the bmm and 38 ms for one (b, T, R, 75) product and sum). On a
        # GPU, where batch independence is not promised (kernels are chosen by shape), the
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


def _next_frame(values: Tensor) -> Tensor:
    """values (b, T, ...) at frame t + 1, stored at t (0 at the last frame)."""
    return torch.cat((values[:, 1:], torch.zeros_like(values[:, :1])), 1)


def _times_2x2(blocks: Tensor, rows: Tensor) -> Tensor:
    """Each pair of rows times its 2 x 2 block (elementwise: a batched 2 x 2 matmul is slow).

    blocks (b, T, K, 2, 2), rows (b, T, 2 K, C) -> (b, T, 2 K, C).
    """
    pairs = rows.reshape(*rows.shape[:2], -1, 2, rows.shape[-1])
    x, y = pairs[..., 0, :], pairs[..., 1, :]
    out = torch.stack((blocks[..., 0, 0, None] * x + blocks[..., 0, 1, None] * y,
                       blocks[..., 1, 0, None] * x + blocks[..., 1, 1, None] * y), dim=-2)
    return out.reshape(rows.shape)


def _keypoint_curvature(residual: Tensor, squared: Tensor, slope: Tensor, config) -> Tensor:
    """2 x 2 curvature of the reprojection penalty of each keypoint, per unit of 2 lambda c.

    The Hessian of ``phi(|r|)`` (``phi(n) = rho(n^2)``) is ``phi''(n) u u^T + phi'(n) / n
    (I - u u^T)``, u = r / n. IRLS keeps ``phi'(n) / n`` in both directions; that misses the
    hinge's radial curvature ``1 / smoothing`` in its blend zone just past the margin (the
    model then promised about twice the decrease the steps gave, and the damping grew).
    Here: radial ``phi''(n)`` in the hinge's blend zone and in Huber's quadratic zone, IRLS's
    ``phi'(n) / n`` (an over-estimate, safe) in the L1 tail, tangential ``phi'(n) / n``;
    inside the hinge's margin (where the penalty is flat) both fade from the blend zone's
    values at the margin to 0 at the detection, so a keypoint there cannot be moved out of
    the margin for free.

    Args:
        residual: (b, T, 17, 2) px. squared: (b, T, 17) px^2. slope: (b, T, 17) rho'(s).

    Returns:
        (b, T, 17, 2, 2).
    """
    norm = torch.sqrt(squared.clamp(min=1e-12))
    if config.reprojection_loss == "hinge":
        margin, width = config.hinge_margin_px, config.hinge_smoothing_px
        knee = margin + width
        inside = (norm / max(margin, 1e-6)).clamp(max=1.0) ** 2  # 0 at the detection, 1 at the margin
        tangential = torch.where(norm < knee, inside / knee, 2.0 * slope)
        # radial: phi''(n) = 1 / width in the blend zone (m, m + width), fading to 0 inside
        radial = torch.where(norm < knee, inside / width, 2.0 * slope)
    else:
        delta = config.huber_delta_px
        tangential = 2.0 * slope
        radial = torch.where(norm <= delta, torch.full_like(norm, 1.0 / delta), 2.0 * slope)
    unit = residual / norm[..., None]
    unit = torch.where((squared > 1e-12)[..., None], unit, torch.tensor([1.0, 0.0], dtype=residual.dtype, device=residual.device))
    outer = unit[..., :, None] * unit[..., None, :]
    eye = torch.eye(2, dtype=residual.dtype, device=residual.device)
    return 0.5 * (radial[..., None, None] * outer + tangential[..., None, None] * (eye - outer))


def _slope(penalty: Callable[[Tensor], Tensor], squared: Tensor) -> Tensor:
    """d penalty / d s, elementwise, for a penalty of the squared norm s (the losses' own code)."""
    with torch.enable_grad():
        s = squared.detach().requires_grad_(True)
        (slope,) = torch.autograd.grad(penalty(s).sum(), s)
    return slope.detach()


class LMProblem:
    """The energy of a packed batch and its linearisation in the solver's variables.

    Args:
        packed: :class:`optimize.bundle_adjust.PackedTracks` (decode, scale_ref, betas_scale).
        body_model: with ``jacobians`` and ``joints_and_keypoints``.
        prior: GMM prior (``nll``, ``nll_gradient_responsibility``, ``precision``) or None.
        config: the stage's :class:`optimize.config.BAConfig` (weights, caps).
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
        """E, its gradient and the Gauss-Newton blocks at x (b, n) for the tracks ``index`` (b,)."""
        config = self.config
        batch = self.batch(index)
        pose, betas, camera = self.packed.decode(x, index)
        b, T = pose.shape[:2]
        n = b * T
        dtype, device = x.dtype, x.device
        widths = temporal_widths(batch, config, dtype)
        # the residual rows: 34 keypoint coordinates (px), 72 joint coordinates (m)
        on_keypoints = config.use_reprojection or (config.use_temporal and config.w_temporal_2d > 0)
        on_joints = (config.use_prior and config.w_init > 0) or (config.use_temporal and config.w_temporal_3d > 0)
        normal = _Normal(b, T, 34 * on_keypoints + 72 * on_joints, dtype, device,
                         lambda name, shape: self._workspace(name, shape, dtype, device))
        kp = normal.rows(34) if on_keypoints else None
        jr = normal.rows(72) if on_joints else None
        joints_pose = None  # the joints' pose Jacobian, written by the body model straight into their rows
        if jr is not None and self.body.dtype == dtype:
            joints_pose = normal.jac[:, :, jr, :NUM_POSE].view(n, 24, 3, NUM_POSE)
        jac = self.body.jacobians(pose.reshape(n, NUM_POSE),
                                  betas[:, None].expand(b, T, NUM_BETAS).reshape(n, NUM_BETAS),
                                  joints_pose_out=joints_pose)
        if jr is not None and joints_pose is None:
            normal.jac[:, :, jr, :NUM_POSE] = jac["joints_pose"].reshape(b, T, 72, NUM_POSE)
        joints = jac["joints"].reshape(b, T, 24, 3)
        keypoints = jac["keypoints"].reshape(b, T, 17, 3)
        terms = energy_terms(pose, betas, camera, batch, self.body, self.prior, config, self.offset,
                             body_outputs=(joints, keypoints))
        energy = track_total(terms.per_frame_total())

        per_beta = (1.0 / self.packed.betas_scale[index])[:, None, None, None, None]  # d beta / d z
        unit = (self.translation_unit * self.packed.scale_ref[index])[:, None, None]  # (b, 1, 1) px per variable
        scale = camera[..., 0][..., None, None, None]  # (b, T, 1, 1, 1) px / m
        per = per_beta[:, :, 0, 0, 0]  # (b, 1) d beta / d z

        zero = torch.zeros((), dtype=dtype, device=device)
        present = batch.has_candidate
        pair_mask = batch.pair_mask

        def rows(values: Tensor, width: int) -> Tensor:
            """(b, T, K) per point -> (b, T, K * width) per residual row."""
            return values[..., None].expand(*values.shape, width).reshape(b, T, -1)

        def differences(values: Tensor) -> Tensor:
            diff = torch.zeros_like(values)
            diff[:, 1:] = values[:, 1:] - values[:, :-1]
            return diff

        # ---- terms on the 17 projected keypoints (pixels): E_R and the 2D temporal term
        if on_keypoints:
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
            if config.use_reprojection:
                matched = terms.matched.clamp(min=0)  # (b, T)
                gather = matched[:, :, None, None, None].expand(b, T, 1, 17, 2)
                detection = batch.candidates.gather(2, gather)[:, :, 0]  # (b, T, 17, 2)
                confidence = batch.confidence.gather(2, matched[:, :, None, None].expand(b, T, 1, 17))[:, :, 0]
                residual = terms.keypoints2d - detection
                squared = squared_norm(residual)
                slope = _slope(lambda s: reprojection_penalty(s, config), squared)
                curvature = _keypoint_curvature(residual, squared, slope, config)  # (b, T, 17, 2, 2)
                live = (present & (terms.frame_error < config.tau_r_px))[..., None]  # a capped frame is constant
                factor = torch.where(live, 2.0 * config.w_reprojection * confidence, zero)
                normal.weighted_residual[:, :, kp] = rows(factor * slope, 2) * residual.reshape(b, T, 34)
                normal.add_blocks(kp, factor[..., None, None] * curvature)
            if config.use_temporal and config.w_temporal_2d > 0:
                diff = differences(terms.keypoints2d)
                slope = _slope(lambda s: huber(s, widths.keypoints_px), squared_norm(diff))
                normal.pair_residual[:, :, kp] = diff.reshape(b, T, 34)
                normal.pair_weight[:, :, kp] = rows(
                    torch.where(pair_mask[..., None], 2.0 * config.w_temporal_2d * slope, zero), 2)

        # ---- terms on the 24 joints (metres): the init term and the 3D temporal term
        if on_joints:
            normal.jac[:, :, jr, NUM_POSE:] = 0.0  # the joints do not depend on the camera
            normal.jac_betas[:, :, jr] = (
                jac["joints_betas"].reshape(b, T, 24, 3, NUM_BETAS) * per_beta).reshape(b, T, 72, NUM_BETAS)
        if config.use_prior and config.w_init > 0:
            parts = init_parts(joints, betas, batch, config)
            _, chosen = init_per_candidate(joints, betas, batch, config, parts).min(-1)
            joint_part = parts[0].gather(2, chosen[..., None])[..., 0]
            live = present & (joint_part < config.tau_i)  # the joints' part is capped, the betas' is not
            joints_scale = joints_init_scale(batch)  # the joints' part only (the betas' keeps lambda_I)
            lam = config.w_init * (joints_scale[..., 0] if isinstance(joints_scale, Tensor)
                                   else torch.ones((b, 1), dtype=dtype, device=device))
            target = batch.init_joints.gather(2, chosen[:, :, None, None, None].expand(b, T, 1, 24, 3))[:, :, 0]
            residual = joints - target
            slope = _slope(lambda s: huber(s, config.init_delta_m), squared_norm(residual))
            weight = rows(torch.where(live[..., None], 2.0 * lam[..., None] * slope, zero), 3)
            normal.weighted_residual[:, :, jr] = weight * residual.reshape(b, T, 72)
            normal.curvature[:, :, jr] = weight
            # the betas' own residual: beta - beta~ (d / d z = 1 / sqrt(T))
            target_betas = batch.init_betas.gather(2, chosen[:, :, None, None].expand(b, T, 1, NUM_BETAS))[:, :, 0]
            residual_betas = betas[:, None] - target_betas  # (b, T, 10)
            slope = _slope(lambda s: huber(s, config.init_betas_delta), squared_norm(residual_betas))
            weight_betas = torch.where(present, 2.0 * config.w_init * config.w_init_betas * slope, zero)  # (b, T)
            normal.gradient_betas += per * normal.sum_frames(weight_betas[..., None] * residual_betas)
            eye = torch.eye(NUM_BETAS, dtype=dtype, device=device)
            normal.corner += (per * per * normal.sum_frames(weight_betas[..., None]))[..., None] * eye
        if config.use_prior and config.w_shape > 0:
            # the shape bound: w sum_k max(0, |beta_k| - bound)^2 on every real frame (exact GN)
            excess = shape_excess(betas, config)  # (b, 10)
            count = batch.frame_mask.sum(-1, keepdim=True).to(dtype)  # (b, 1)
            normal.gradient_betas += per * count * 2.0 * config.w_shape * excess * torch.sign(betas)
            normal.corner += torch.diag_embed(per * per * count * 2.0 * config.w_shape * (excess > 0).to(dtype))
        if config.use_temporal and config.w_temporal_3d > 0:
            diff = differences(joints)
            slope = _slope(lambda s: huber(s, widths.joints_m), squared_norm(diff))
            normal.pair_residual[:, :, jr] = diff.reshape(b, T, 72)
            normal.pair_weight[:, :, jr] = rows(
                torch.where(pair_mask[..., None], 2.0 * config.w_temporal_3d * slope, zero), 3)
        # ---- the GMM prior: exact gradient, curvature sum_k r_k P_k (GMMPrior.nll_gradient_responsibility),
        # formed by one product straight in the 75 x 75 layout, which assemble() then adds J^T C J to
        gmm_gradient = None
        if config.use_prior and config.w_gmm > 0 and self.prior is not None:
            _, grad, responsibility = self.prior.nll_gradient_responsibility(pose[..., 3:].reshape(n, NUM_POSE - 3))
            mask = batch.frame_mask[..., None]
            gmm_gradient = torch.where(mask, config.w_gmm * grad.reshape(b, T, -1), zero)
            weights = responsibility.to(dtype) * (config.w_gmm * mask.to(dtype)).view(n, 1)  # 0 on padded frames
            normal.diagonal = torch.mm(weights, self._block_precision(dtype, device)).view(b, T, FRAME, FRAME)
        normal.assemble()

        # ---- the camera translation's temporal term (pixels)
        if config.use_temporal and config.w_temporal_camera > 0:
            diff = differences(camera[..., 1:])
            slope = _slope(lambda s: bounded_huber(s, widths.camera_px, widths.camera_bound_px), squared_norm(diff))
            weight = torch.where(pair_mask, 2.0 * config.w_temporal_camera * slope, zero)[..., None]  # (b, T, 1)
            unit2 = unit * unit  # d translation / d variable = u
            w_next = _next_frame(weight)
            wd = weight * diff
            wd_next = _next_frame(wd)
            cols = torch.arange(NUM_POSE + 1, FRAME, device=device)
            normal.diagonal[..., cols, cols] += unit2 * (weight + w_next)
            normal.lower[..., cols, cols] -= unit2 * weight
            normal.gradient[..., NUM_POSE + 1:] += unit * (wd - wd_next)

        if gmm_gradient is not None:
            normal.gradient[..., 3:NUM_POSE] += gmm_gradient

        return normal.result(energy)


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
    # curvature over-estimates the robust penalties' (measured gain ratios 1.1-1.3), so
    # the model's steps fall short of the minimum along their direction
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
