"""The terms of the bundle-adjustment energy, each defined once.

A term (:class:`Term`) gives, in one class, its per-frame value (``value``: what
:func:`optimize.energy.energy_terms` sums) and its Gauss-Newton rows (``linearize``: its
residuals, its IRLS weights and curvatures, written into the normal equations that
:class:`optimize.lm.LMProblem` assembles). Adding a term means writing one class and
listing it in :data:`TERMS`.

A term's residuals live on a *quantity*: the 17 projected keypoints (34 rows, pixels),
the 24 joints (72 rows, metres), the camera translation or the betas. The Jacobian rows of
the keypoints and joints (the chain rule through the body model and the camera) are formed
once per linearisation by the solver and shared by every term on them; a term declares its
quantity (:attr:`Term.quantity`) and fills its residual and weight rows:

* a unary term ``lambda rho(|r|^2)`` of frame t: ``W r`` and curvature ``C`` (``W = 2
  lambda rho'(s)``, taken from the penalty functions of :mod:`optimize.losses` themselves,
  so the gradient is the exact gradient of the energy);
* a pairwise term on ``f(t) - f(t-1)``: the difference and its weight, stored at t.

Weights and weighted residuals are added (``+=``) to the rows, so several terms may share
a quantity's rows; a pairwise term writes the quantity's difference itself.

Outer minima over candidates use the candidate achieving the minimum at the current
iterate; a capped frame's term is constant (weight 0).

Shapes: ``B`` tracks, ``T`` frames, ``P`` candidates, 24 SMPL joints, 17 COCO keypoints;
every value is (B, T), 0 on padded frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from optimize.losses import bounded_huber, hinge, huber, squared_norm
from optimize.problem import NUM_BETAS, NUM_CAMERA, NUM_POSE

if TYPE_CHECKING:
    from optimize.settings import EnergySettings
    from optimize.track_batch import TrackBatch

FRAME = NUM_POSE + NUM_CAMERA  # 75 variables per frame: pose, camera (log s, tx / u, ty / u)


@dataclass
class TermInputs:
    """What every term reads at one iterate of a padded batch.

    Attributes:
        batch: the fixed data (:class:`optimize.track_batch.TrackBatch`).
        config: weights, widths, caps and switches.
        pose: (B, T, 72) axis-angle, radians. betas: (B, 10).
        camera: (B, T, 3) s px/m, tx px, ty px.
        joints3d: (B, T, 24, 3) metres. keypoints2d: (B, T, 17, 2) pixels.
        prior: GMM prior with ``nll`` (None without the GMM term).
        gmm_offset: see :func:`gmm_nll_offset`.
    """

    batch: TrackBatch
    config: EnergySettings
    pose: Tensor | None = None
    betas: Tensor | None = None
    camera: Tensor | None = None
    joints3d: Tensor | None = None
    keypoints2d: Tensor | None = None
    prior: object = None
    gmm_offset: float = 0.0
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def widths(self) -> TemporalWidths:
        """The temporal terms' widths at the batch's frame rates (computed once)."""
        if "widths" not in self._cache:
            self._cache["widths"] = temporal_widths(self.batch, self.config, self.joints3d.dtype)
        return self._cache["widths"]

    def reprojection(self) -> tuple[Tensor, Tensor, Tensor]:
        """:func:`reprojection_energy` of these inputs (computed once)."""
        if "reprojection" not in self._cache:
            self._cache["reprojection"] = reprojection_energy(self.keypoints2d, self.batch, self.config)
        return self._cache["reprojection"]


@dataclass
class RowInputs:
    """What a term's ``linearize`` writes into and reads, besides :class:`TermInputs`.

    Attributes:
        normal: the normal equations being built (:class:`optimize.lm._Normal`): per-row
            ``weighted_residual``, ``curvature``, ``pair_residual``, ``pair_weight`` (b, T, R),
            ``add_blocks``, ``corner`` (b, 10, 10), ``gradient_betas`` (b, 10), and after
            assembly ``diagonal``, ``lower`` (b, T, 75, 75) and ``gradient`` (b, T, 75).
        energy: the terms' values at this iterate (matched candidates, frame errors).
        keypoint_rows, joint_rows: the rows (slices of axis 2) of the 34 keypoint
            coordinates and the 72 joint coordinates, or None where no term uses them.
        per_beta: (b, 1) d beta / d betas variable.
        unit: (b, 1, 1) pixels per camera translation variable.
        block_precision: () -> (K, 75 * 75) the GMM's precisions in a frame block's layout.
        after_assembly: callbacks run, in order, once the blocks are assembled.
    """

    normal: object
    energy: object  # optimize.energy.EnergyTerms (not imported: energy imports this module)
    keypoint_rows: slice | None
    joint_rows: slice | None
    per_beta: Tensor
    unit: Tensor
    block_precision: Callable[[], Tensor]
    after_assembly: list[Callable[[], None]] = field(default_factory=list)

    def rows(self, values: Tensor, width: int) -> Tensor:
        """(b, T, K) per point -> (b, T, K * width) per residual row."""
        b, T = values.shape[:2]
        return values[..., None].expand(*values.shape, width).reshape(b, T, -1)


class Term:
    """One term of E: its value and its Gauss-Newton rows.

    Attributes:
        name: the key of the term in :class:`optimize.energy.EnergyTerms`.
        quantity: "keypoints" or "joints" when its rows are on those points' Jacobian
            rows, else None (it writes its blocks itself).
    """

    name: str = ""
    quantity: str | None = None

    def enabled(self, config: EnergySettings) -> bool:
        """Whether the term is part of E (its value is 0 otherwise)."""
        raise NotImplementedError

    def linearized(self, config: EnergySettings, prior) -> bool:
        """Whether the term contributes to the normal equations (a zero weight does not)."""
        return self.enabled(config)

    def value(self, inputs: TermInputs) -> Tensor:
        """(B, T) the term's per-frame energy."""
        raise NotImplementedError

    def linearize(self, inputs: TermInputs, rows: RowInputs) -> None:
        """Write the term's residuals, weights and curvatures into ``rows.normal``."""
        raise NotImplementedError


def _zero(inputs: TermInputs) -> Tensor:
    return torch.zeros((), dtype=inputs.pose.dtype, device=inputs.pose.device)


def _differences(values: Tensor) -> Tensor:
    """values (b, T, ...) minus the previous frame's, 0 at t = 0."""
    diff = torch.zeros_like(values)
    diff[:, 1:] = values[:, 1:] - values[:, :-1]
    return diff


def next_frame(values: Tensor) -> Tensor:
    """values (b, T, ...) at frame t + 1, stored at t (0 at the last frame)."""
    return torch.cat((values[:, 1:], torch.zeros_like(values[:, :1])), 1)


def slope(penalty: Callable[[Tensor], Tensor], squared: Tensor) -> Tensor:
    """d penalty / d s, elementwise, for a penalty of the squared norm s (the losses' own code)."""
    with torch.enable_grad():
        s = squared.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(penalty(s).sum(), s)
    return grad.detach()


# ---- E_R: reprojection -------------------------------------------------------------------


def reprojection_penalty(squared_error: Tensor, config: EnergySettings) -> Tensor:
    """The per-keypoint reprojection loss (hinge or Huber). squared_error: (...) px^2 -> (...) px."""
    if config.reprojection_loss == "hinge":
        return hinge(squared_error, config.hinge_margin_px, config.hinge_smoothing_px)
    return huber(squared_error, config.huber_delta_px)


def reprojection_energy(
    keypoints2d: Tensor, batch: TrackBatch, config: EnergySettings
) -> tuple[Tensor, Tensor, Tensor]:
    """E_R per frame: min(min_p sum_i w_i h(x_i - x_det,i^p), tau_R).

    Args:
        keypoints2d: (B, T, 17, 2) projected COCO keypoints, pixels.
        batch: the candidates, confidences and masks.
        config: loss choice, tau_R and lambda_R.

    Returns:
        energy: (B, T) lambda_R * capped energy; 0 on frames without candidates.
        frame_error: (B, T) the inner minimum before the cap, px; +inf without candidates.
        matched: (B, T) long, the candidate achieving it; -1 without candidates.
    """
    residual = keypoints2d.unsqueeze(2) - batch.candidates  # (B, T, P, 17, 2)
    per_keypoint = reprojection_penalty(squared_norm(residual), config)
    per_candidate = (batch.confidence * per_keypoint).sum(-1)  # (B, T, P)
    inf = torch.full_like(per_candidate, float("inf"))
    per_candidate = torch.where(batch.candidate_mask, per_candidate, inf)
    frame_error, matched = per_candidate.min(-1)
    present = batch.has_candidate
    capped = torch.clamp(frame_error, max=config.tau_r_px)
    energy = torch.where(present, config.w_reprojection * capped, torch.zeros_like(capped))
    matched = torch.where(present, matched, torch.full_like(matched, -1))
    return energy, frame_error, matched


def keypoint_curvature(residual: Tensor, squared: Tensor, slope: Tensor, config: EnergySettings) -> Tensor:
    """2 x 2 curvature of the reprojection penalty of each keypoint, per unit of 2 lambda c.

    The Hessian of ``phi(|r|)`` (``phi(n) = rho(n^2)``) is ``phi''(n) u u^T + phi'(n) / n
    (I - u u^T)``, u = r / n. IRLS keeps ``phi'(n) / n`` in both directions; that misses the
    hinge's radial curvature ``1 / smoothing`` in its blend zone just past the margin (the
    model then promises about twice the decrease the steps give, and the damping grows).
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


class Reprojection(Term):
    """E_R: ``lambda_R min(min_p sum_i c_i h(x_i - x_det,i^p), tau_R)`` per frame with a candidate.

    Residual: the matched candidate's keypoints' pixel errors (34 rows); weight ``2 lambda_R
    c_i h'`` with the 2 x 2 curvature of :func:`keypoint_curvature`; 0 on capped frames.
    """

    name, quantity = "reprojection", "keypoints"

    def enabled(self, config: EnergySettings) -> bool:
        return config.use_reprojection

    def value(self, inputs: TermInputs) -> Tensor:
        return inputs.reprojection()[0]

    def linearize(self, inputs: TermInputs, rows: RowInputs) -> None:
        config, batch, terms = inputs.config, inputs.batch, rows.energy
        b, T = inputs.pose.shape[:2]
        matched = terms.matched.clamp(min=0)  # (b, T)
        gather = matched[:, :, None, None, None].expand(b, T, 1, 17, 2)
        detection = batch.candidates.gather(2, gather)[:, :, 0]  # (b, T, 17, 2)
        confidence = batch.confidence.gather(2, matched[:, :, None, None].expand(b, T, 1, 17))[:, :, 0]
        residual = terms.keypoints2d - detection
        squared = squared_norm(residual)
        rho_slope = slope(lambda s: reprojection_penalty(s, config), squared)
        curvature = keypoint_curvature(residual, squared, rho_slope, config)  # (b, T, 17, 2, 2)
        live = (batch.has_candidate & (terms.frame_error < config.tau_r_px))[..., None]  # a capped frame is constant
        factor = torch.where(live, 2.0 * config.w_reprojection * confidence, _zero(inputs))
        kp = rows.keypoint_rows
        rows.normal.weighted_residual[:, :, kp] += rows.rows(factor * rho_slope, 2) * residual.reshape(b, T, 34)
        rows.normal.add_blocks(kp, factor[..., None, None] * curvature)


# ---- E_T: temporal terms ----------------------------------------------------------------


@dataclass(frozen=True)
class TemporalWidths:
    """The temporal terms' Huber widths and camera bound for a batch, at its frame rates.

    Floats when every track runs at the reference rate (``batch.temporal_scale`` None);
    otherwise tensors shaped to broadcast against the per-pair squared norms:
    ``joints_m`` and ``keypoints_px`` (B, 1, 1), ``camera_px`` (B, 1).
    ``camera_bound_px`` is always a (B, 1) tensor (it holds the image width).
    """

    joints_m: float | Tensor
    keypoints_px: float | Tensor
    camera_px: float | Tensor
    camera_bound_px: Tensor


def temporal_widths(batch: TrackBatch, config: EnergySettings, dtype: torch.dtype) -> TemporalWidths:
    """The temporal terms' widths for ``batch``.

    The weights and Huber widths hold at ``config.temporal_reference_fps``. At another
    frame rate the widths and the camera bound are multiplied by ``batch.temporal_scale`` =
    reference / fps, which is the same as measuring each difference as a velocity (per
    reference frame) and weighting each pair by the time it spans: rho is in L1 units, so
    ``(1 / r) rho_delta(r d) = rho_(delta / r)(d)`` with r = fps / reference. A motion then
    costs the same per second of video at any frame rate, in both of Huber's regimes.
    """
    bound = (config.camera_translation_cap * batch.image_width).to(dtype)[:, None]  # (B, 1) px
    if batch.temporal_scale is None:
        return TemporalWidths(config.temporal_3d_delta_m, config.temporal_2d_delta_px,
                              config.temporal_camera_delta_px, bound)
    r = batch.temporal_scale.to(dtype)
    return TemporalWidths(config.temporal_3d_delta_m * r[:, None, None], config.temporal_2d_delta_px * r[:, None, None],
                          config.temporal_camera_delta_px * r[:, None], bound * r[:, None])


class _PointMotion(Term):
    """``lambda sum_i rho(f_i(t) - f_i(t-1))`` on pair (t-1, t), stored at t (frame 0: none).

    Residual: the difference of each point (pairwise rows); weight ``2 lambda rho'``.
    """

    def weight(self, config: EnergySettings) -> float:
        raise NotImplementedError

    def points(self, inputs: TermInputs) -> Tensor:
        """(B, T, K, D) the points whose motion is penalised."""
        raise NotImplementedError

    def delta(self, widths: TemporalWidths) -> float | Tensor:
        raise NotImplementedError

    def enabled(self, config: EnergySettings) -> bool:
        return config.use_temporal

    def linearized(self, config: EnergySettings, prior) -> bool:
        return config.use_temporal and self.weight(config) > 0

    def value(self, inputs: TermInputs) -> Tensor:
        pair = inputs.batch.pair_mask
        points = self.points(inputs)
        zero = torch.zeros(pair.shape, dtype=points.dtype, device=points.device)
        diff = points[:, 1:] - points[:, :-1]
        per_item = huber(squared_norm(diff), self.delta(inputs.widths)).sum(-1)
        out = zero.clone()
        out[:, 1:] = per_item
        return torch.where(pair, self.weight(inputs.config) * out, zero)

    def linearize(self, inputs: TermInputs, rows: RowInputs) -> None:
        points = self.points(inputs)
        b, T, K, D = points.shape
        delta = self.delta(inputs.widths)
        diff = _differences(points)
        rho_slope = slope(lambda s: huber(s, delta), squared_norm(diff))
        at = rows.keypoint_rows if self.quantity == "keypoints" else rows.joint_rows
        rows.normal.pair_residual[:, :, at] = diff.reshape(b, T, K * D)
        rows.normal.pair_weight[:, :, at] += rows.rows(torch.where(
            inputs.batch.pair_mask[..., None], 2.0 * self.weight(inputs.config) * rho_slope, _zero(inputs)), D)


class JointMotion(_PointMotion):
    """E_T's 3D part: lambda_1 on the 24 SMPL joints (metres)."""

    name, quantity = "temporal_3d", "joints"

    def weight(self, config: EnergySettings) -> float:
        return config.w_temporal_3d

    def points(self, inputs: TermInputs) -> Tensor:
        return inputs.joints3d

    def delta(self, widths: TemporalWidths) -> float | Tensor:
        return widths.joints_m


class KeypointMotion(_PointMotion):
    """E_T's 2D part: lambda_2 on the 17 projected keypoints (pixels)."""

    name, quantity = "temporal_2d", "keypoints"

    def weight(self, config: EnergySettings) -> float:
        return config.w_temporal_2d

    def points(self, inputs: TermInputs) -> Tensor:
        return inputs.keypoints2d

    def delta(self, widths: TemporalWidths) -> float | Tensor:
        return widths.keypoints_px


class CameraMotion(Term):
    """E_T's camera part: ``lambda_3 min(rho(u^t - u^{t-1}), rho(bound))`` on the translation u.

    The scale is never penalised; the bound is ``camera_translation_cap`` x image width.
    Its rows are the two translation variables themselves (d u / d variable = the
    translation unit), so it writes its blocks after the others are assembled.
    """

    name = "temporal_camera"

    def enabled(self, config: EnergySettings) -> bool:
        return config.use_temporal

    def linearized(self, config: EnergySettings, prior) -> bool:
        return config.use_temporal and config.w_temporal_camera > 0

    def value(self, inputs: TermInputs) -> Tensor:
        pair = inputs.batch.pair_mask
        camera, widths = inputs.camera, inputs.widths
        zero = torch.zeros(pair.shape, dtype=inputs.joints3d.dtype, device=inputs.joints3d.device)
        translation = camera[..., 1:]
        diff = translation[:, 1:] - translation[:, :-1]  # (B, T-1, 2)
        ecam = zero.clone()
        ecam[:, 1:] = bounded_huber(squared_norm(diff), widths.camera_px, widths.camera_bound_px)
        ecam = inputs.config.w_temporal_camera * ecam
        return torch.where(pair, ecam, zero)

    def linearize(self, inputs: TermInputs, rows: RowInputs) -> None:
        rows.after_assembly.append(lambda: self._add_blocks(inputs, rows))

    def _add_blocks(self, inputs: TermInputs, rows: RowInputs) -> None:
        normal, widths, unit = rows.normal, inputs.widths, rows.unit
        diff = _differences(inputs.camera[..., 1:])
        rho_slope = slope(lambda s: bounded_huber(s, widths.camera_px, widths.camera_bound_px), squared_norm(diff))
        weight = torch.where(inputs.batch.pair_mask, 2.0 * inputs.config.w_temporal_camera * rho_slope,
                             _zero(inputs))[..., None]  # (b, T, 1)
        unit2 = unit * unit  # d translation / d variable = u
        w_next = next_frame(weight)
        wd = weight * diff
        wd_next = next_frame(wd)
        cols = torch.arange(NUM_POSE + 1, FRAME, device=diff.device)
        normal.diagonal[..., cols, cols] += unit2 * (weight + w_next)
        normal.lower[..., cols, cols] -= unit2 * weight
        normal.gradient[..., NUM_POSE + 1:] += unit * (wd - wd_next)


# ---- E_P: GMM pose prior, init term, shape bound -------------------------------------------


def gmm_nll_offset(prior) -> float:
    """The smallest NLL over the mixture means: subtracted so E_J is about 0 at best.

    The exact log-sum-exp NLL of a 69-D mixture is a large negative number (it holds
    the normalisers); the offset keeps E, and so E_norm, readable. It does not change
    the minimiser.
    """
    means = getattr(prior, "means", None)
    if means is None:
        return 0.0
    with torch.no_grad():
        return float(prior.nll(torch.as_tensor(means)).min())


class PosePrior(Term):
    """``w_gmm (GMM NLL(theta_body) - offset)`` per real frame (:func:`gmm_nll_offset`).

    Not a least-squares term: the exact gradient of the log-sum-exp NLL and the curvature
    ``sum_k r_k P_k`` (``GMMPrior.nll_gradient_responsibility``), formed by one product
    straight in the 75 x 75 layout, which the assembly then adds the rows' J^T C J to.
    """

    name = "gmm"

    def enabled(self, config: EnergySettings) -> bool:
        return config.use_prior and config.w_gmm > 0

    def linearized(self, config: EnergySettings, prior) -> bool:
        return self.enabled(config) and prior is not None

    def value(self, inputs: TermInputs) -> Tensor:
        if inputs.prior is None:
            raise ValueError("BAConfig.use_prior with w_gmm > 0 needs a GMM prior; pass prior= or set w_gmm=0.")
        nll = inputs.prior.nll(inputs.pose[..., 3:]) - inputs.gmm_offset
        return torch.where(inputs.batch.frame_mask, inputs.config.w_gmm * nll, torch.zeros_like(nll))

    def linearize(self, inputs: TermInputs, rows: RowInputs) -> None:
        b, T = inputs.pose.shape[:2]
        n, dtype, w_gmm = b * T, inputs.pose.dtype, inputs.config.w_gmm
        _, grad, responsibility = inputs.prior.nll_gradient_responsibility(inputs.pose[..., 3:].reshape(n, NUM_POSE - 3))
        mask = inputs.batch.frame_mask[..., None]
        gradient = torch.where(mask, w_gmm * grad.reshape(b, T, -1), _zero(inputs))
        weights = responsibility.to(dtype) * (w_gmm * mask.to(dtype)).view(n, 1)  # 0 on padded frames
        rows.normal.diagonal = torch.mm(weights, rows.block_precision()).view(b, T, FRAME, FRAME)

        def add_gradient() -> None:
            rows.normal.gradient[..., 3:NUM_POSE] += gradient

        rows.after_assembly.append(add_gradient)


def joints_init_scale(batch: TrackBatch) -> float | Tensor:
    """The multiplier of the init term's joints' part per track: 1.0, or (B, 1, 1) from
    ``batch.init_scale`` (``BAConfig.keypoint_init_scale`` on keypoint-only inits).

    Only the joints' part is scaled: a keypoint-only init's betas are the mean shape,
    SMPL's population prior, not an estimate to distrust; scaled with the joints, the
    shared betas lose their pull and trade body size against the camera scale.
    """
    return 1.0 if batch.init_scale is None else batch.init_scale[:, None, None]


def init_parts(joints3d: Tensor, betas: Tensor, batch: TrackBatch, config: EnergySettings) -> tuple[Tensor, Tensor]:
    """The two parts of E_I per candidate, before the cap, the weights and the candidate
    mask: ``sum_i rho(X_i - X~_i^p)`` and ``rho(beta - beta~^p)``, (B, T, P) each."""
    joint_term = huber(
        squared_norm(joints3d.unsqueeze(2) - batch.init_joints), config.init_delta_m
    ).sum(-1)  # (B, T, P)
    beta_term = huber(squared_norm(betas[:, None, None, :] - batch.init_betas), config.init_betas_delta)
    return joint_term, beta_term


def init_per_candidate(joints3d: Tensor, betas: Tensor, batch: TrackBatch, config: EnergySettings,
                       parts: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """E_I of each candidate before the min: (B, T, P), +inf where no candidate.

    ``k min(sum_i rho(X_i - X~_i^p), tau_I) + lambda_beta rho(beta - beta~^p)``, with k the
    track's ``batch.init_scale`` (1 without). ``parts``: :func:`init_parts` of the same
    arguments, when the caller has them already.
    """
    joint_term, beta_term = init_parts(joints3d, betas, batch, config) if parts is None else parts
    per_candidate = joints_init_scale(batch) * torch.clamp(joint_term, max=config.tau_i) + config.w_init_betas * beta_term
    return torch.where(batch.candidate_mask, per_candidate, torch.full_like(per_candidate, float("inf")))


class InitTerm(Term):
    """lambda_I E_I per frame: ``min_p [min(sum_i rho(X_i - X~_i^p), tau_I) + lambda_beta rho(beta - beta~^p)]``.

    The cap tau_I is on the joints' part only: a frame whose init *pose* is wrong stops
    pulling, while beta, shared by all frames, keeps its pull (a capped shape residual
    would leave it free once every frame is capped). Residuals: the matched candidate's
    joints (72 rows, weight ``2 lambda_I k rho'``, 0 on capped frames) and the betas'
    own residual ``beta - beta~`` (weight ``2 lambda_I lambda_beta rho'``, never capped).
    """

    name, quantity = "init", "joints"

    def enabled(self, config: EnergySettings) -> bool:
        return config.use_prior and config.w_init > 0

    def value(self, inputs: TermInputs) -> Tensor:
        batch, config = inputs.batch, inputs.config
        best = init_per_candidate(inputs.joints3d, inputs.betas, batch, config).min(-1).values
        return torch.where(batch.has_candidate, config.w_init * best, torch.zeros_like(best))

    def linearize(self, inputs: TermInputs, rows: RowInputs) -> None:
        config, batch, joints, betas = inputs.config, inputs.batch, inputs.joints3d, inputs.betas
        normal, zero, per = rows.normal, _zero(inputs), rows.per_beta
        b, T = joints.shape[:2]
        dtype, device = joints.dtype, joints.device
        present = batch.has_candidate
        parts = init_parts(joints, betas, batch, config)
        _, chosen = init_per_candidate(joints, betas, batch, config, parts).min(-1)
        joint_part = parts[0].gather(2, chosen[..., None])[..., 0]
        live = present & (joint_part < config.tau_i)  # the joints' part is capped, the betas' is not
        joints_scale = joints_init_scale(batch)  # the joints' part only (the betas' keeps lambda_I)
        lam = config.w_init * (joints_scale[..., 0] if isinstance(joints_scale, Tensor)
                               else torch.ones((b, 1), dtype=dtype, device=device))
        target = batch.init_joints.gather(2, chosen[:, :, None, None, None].expand(b, T, 1, 24, 3))[:, :, 0]
        residual = joints - target
        rho_slope = slope(lambda s: huber(s, config.init_delta_m), squared_norm(residual))
        weight = rows.rows(torch.where(live[..., None], 2.0 * lam[..., None] * rho_slope, zero), 3)
        normal.weighted_residual[:, :, rows.joint_rows] += weight * residual.reshape(b, T, 72)
        normal.curvature[:, :, rows.joint_rows] += weight
        # the betas' own residual: beta - beta~ (d / d z = per_beta)
        target_betas = batch.init_betas.gather(2, chosen[:, :, None, None].expand(b, T, 1, NUM_BETAS))[:, :, 0]
        residual_betas = betas[:, None] - target_betas  # (b, T, 10)
        rho_slope = slope(lambda s: huber(s, config.init_betas_delta), squared_norm(residual_betas))
        weight_betas = torch.where(present, 2.0 * config.w_init * config.w_init_betas * rho_slope, zero)  # (b, T)
        normal.gradient_betas += per * normal.sum_frames(weight_betas[..., None] * residual_betas)
        eye = torch.eye(NUM_BETAS, dtype=dtype, device=device)
        normal.corner += (per * per * normal.sum_frames(weight_betas[..., None]))[..., None] * eye


def shape_excess(betas: Tensor, config: EnergySettings) -> Tensor:
    """(B, 10) how far each beta lies beyond +-``config.shape_bound`` (0 inside)."""
    return torch.relu(betas.abs() - config.shape_bound)


class ShapeBound(Term):
    """``w_shape sum_k max(0, |beta_k| - shape_bound)^2`` on every real frame.

    SMPL's betas are in standard deviations of its training bodies, so a |beta_k| beyond
    about 3 is not a person; the weak-perspective scale trades against body size, so
    without a bound the fit can reach an implausible shape that reprojects slightly
    better. Zero inside the bound. Its Gauss-Newton model is exact (a quadratic in betas).
    """

    name = "shape"

    def enabled(self, config: EnergySettings) -> bool:
        return config.use_prior and config.w_shape > 0

    def value(self, inputs: TermInputs) -> Tensor:
        betas, config = inputs.betas, inputs.config
        per_track = config.w_shape * shape_excess(betas, config).square().sum(-1)  # (B,)
        return torch.where(inputs.batch.frame_mask, per_track[:, None],
                           torch.zeros((), dtype=betas.dtype, device=betas.device))

    def linearize(self, inputs: TermInputs, rows: RowInputs) -> None:
        betas, config, normal, per = inputs.betas, inputs.config, rows.normal, rows.per_beta
        excess = shape_excess(betas, config)  # (b, 10)
        count = inputs.batch.frame_mask.sum(-1, keepdim=True).to(betas.dtype)  # (b, 1)
        normal.gradient_betas += per * count * 2.0 * config.w_shape * excess * torch.sign(betas)
        normal.corner += torch.diag_embed(per * per * count * 2.0 * config.w_shape * (excess > 0).to(betas.dtype))


# The terms of E in the order their per-frame values are added (see EnergyTerms.per_frame_total).
TERMS: tuple[Term, ...] = (
    Reprojection(), JointMotion(), KeypointMotion(), CameraMotion(), PosePrior(), InitTerm(), ShapeBound(),
)
TERM_NAMES = tuple(term.name for term in TERMS)
