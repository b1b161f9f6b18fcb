"""The bundle-adjustment energy E = E_R + E_T + E_P over padded batches of tracks.

Shapes: ``B`` tracks, ``T`` frames (the longest track; shorter ones are padded and
masked by ``frame_mask``), ``P`` candidate detections per frame (masked by
``candidate_mask``), 24 SMPL joints, 17 COCO keypoints. Every term returns a per-frame
energy ``(B, T)`` that is 0 on padded frames, so a track's energy is a sum over its
frames and tracks never interact.

A frame without any candidate detection has no reprojection and no init term: it keeps
only its temporal and GMM terms.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from models.geometry import weak_perspective_project
from optimize.config import BAConfig
from optimize.losses import bounded_huber, hinge, huber, squared_norm

TERM_NAMES = (
    "reprojection",
    "temporal_3d",
    "temporal_2d",
    "temporal_camera",
    "gmm",
    "init",
    "shape",
)


@dataclass(frozen=True)
class TrackBatch:
    """The fixed (non-optimised) data of a padded batch of tracks.

    Attributes:
        frame_mask: (B, T) bool, True on the track's real frames.
        candidates: (B, T, P, 17, 2) candidate keypoints, pixels.
        confidence: (B, T, P, 17) keypoint confidences w_i in [0, 1] (0: missing).
        candidate_mask: (B, T, P) bool, True where a candidate detection exists.
        init_joints: (B, T, P, 24, 3) SMPL joints of each candidate's init estimate, m.
        init_betas: (B, T, P, 10) each candidate's init shape.
        image_width: (B,) decoded frame width, pixels.
        init_scale: (B,) multiplier of the init term's joints' part per track, or None for
            1 everywhere (``BAConfig.keypoint_init_scale`` for tracks whose init came from
            keypoints); the betas' part keeps lambda_I.
        temporal_scale: (B,) ``temporal_reference_fps / fps`` per track, or None for 1
            everywhere: the temporal terms' Huber widths and the camera bound are
            multiplied by it (see :func:`temporal_energy`).
    """

    frame_mask: Tensor
    candidates: Tensor
    confidence: Tensor
    candidate_mask: Tensor
    init_joints: Tensor
    init_betas: Tensor
    image_width: Tensor
    init_scale: Tensor | None = None
    temporal_scale: Tensor | None = None

    @property
    def num_frames(self) -> Tensor:
        """(B,) frames per track."""
        return self.frame_mask.sum(-1)

    @property
    def has_candidate(self) -> Tensor:
        """(B, T) bool, True where the frame has at least one detection."""
        return self.candidate_mask.any(-1) & self.frame_mask

    @property
    def pair_mask(self) -> Tensor:
        """(B, T) bool, True at frame t when frames t-1 and t both exist (t >= 1)."""
        pair = torch.zeros_like(self.frame_mask)
        pair[:, 1:] = self.frame_mask[:, 1:] & self.frame_mask[:, :-1]
        return pair

    def select(self, index: Tensor) -> "TrackBatch":
        """The sub-batch of tracks ``index`` (B',) long."""
        return TrackBatch(**{f.name: _maybe(getattr(self, f.name), lambda v: v[index]) for f in fields(self)})

    def to(self, device: torch.device | str, dtype: torch.dtype) -> "TrackBatch":
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = _maybe(value, lambda v: v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device))
        return TrackBatch(**out)


def _maybe(value: Tensor | None, fn) -> Tensor | None:
    return None if value is None else fn(value)


def reprojection_penalty(squared_error: Tensor, config: BAConfig) -> Tensor:
    """The per-keypoint reprojection loss (hinge or Huber). squared_error: (...) px^2 -> (...) px."""
    if config.reprojection_loss == "hinge":
        return hinge(squared_error, config.hinge_margin_px, config.hinge_smoothing_px)
    return huber(squared_error, config.huber_delta_px)


def reprojection_energy(
    keypoints2d: Tensor, batch: TrackBatch, config: BAConfig
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


def temporal_energy(
    joints3d: Tensor, keypoints2d: Tensor, camera: Tensor, batch: TrackBatch, config: BAConfig
) -> dict[str, Tensor]:
    """E_T per frame t (pair t-1, t; frame 0 carries none).

    The weights and Huber widths hold at ``config.temporal_reference_fps`` (25 Hz). At
    another frame rate the widths and the camera bound are multiplied by
    ``batch.temporal_scale`` = reference / fps, which is the same as measuring each
    difference as a velocity (per reference frame) and weighting each pair by the time it
    spans: rho is in L1 units, so ``(1 / r) rho_delta(r d) = rho_(delta / r)(d)`` with
    r = fps / reference. A motion then costs the same per second of video at 10, 25 or
    60 fps, in both of Huber's regimes (L1: the path length; quadratic: the integral of
    the squared speed); with per-frame widths, 10 fps clips met a 2.5x stiffer and
    mostly-linear smoothness term.

    Args:
        joints3d: (B, T, 24, 3) SMPL joints, metres.
        keypoints2d: (B, T, 17, 2) projected keypoints, pixels.
        camera: (B, T, 3) weak-perspective camera (s px/m, tx px, ty px); only the
            translation is penalised, bounded at ``camera_translation_cap`` x image width.
        batch: masks, image widths and the per-track ``temporal_scale``.
        config: weights and Huber widths.

    Returns:
        {"temporal_3d", "temporal_2d", "temporal_camera"}: (B, T) each.
    """
    pair = batch.pair_mask
    zero = torch.zeros(pair.shape, dtype=joints3d.dtype, device=joints3d.device)
    widths = temporal_widths(batch, config, joints3d.dtype)

    def _pairwise(values: Tensor, delta: float | Tensor) -> Tensor:
        diff = values[:, 1:] - values[:, :-1]
        per_item = huber(squared_norm(diff), delta).sum(-1)
        out = zero.clone()
        out[:, 1:] = per_item
        return out

    e3d = config.w_temporal_3d * _pairwise(joints3d, widths.joints_m)
    e2d = config.w_temporal_2d * _pairwise(keypoints2d, widths.keypoints_px)
    translation = camera[..., 1:]
    diff = translation[:, 1:] - translation[:, :-1]  # (B, T-1, 2)
    ecam = zero.clone()
    ecam[:, 1:] = bounded_huber(squared_norm(diff), widths.camera_px, widths.camera_bound_px)
    ecam = config.w_temporal_camera * ecam
    return {
        "temporal_3d": torch.where(pair, e3d, zero),
        "temporal_2d": torch.where(pair, e2d, zero),
        "temporal_camera": torch.where(pair, ecam, zero),
    }


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


def temporal_widths(batch: TrackBatch, config: BAConfig, dtype: torch.dtype) -> TemporalWidths:
    """The widths of :func:`temporal_energy` (and of LM's temporal rows) for ``batch``."""
    bound = (config.camera_translation_cap * batch.image_width).to(dtype)[:, None]  # (B, 1) px
    if batch.temporal_scale is None:
        return TemporalWidths(config.temporal_3d_delta_m, config.temporal_2d_delta_px,
                              config.temporal_camera_delta_px, bound)
    r = batch.temporal_scale.to(dtype)
    return TemporalWidths(config.temporal_3d_delta_m * r[:, None, None], config.temporal_2d_delta_px * r[:, None, None],
                          config.temporal_camera_delta_px * r[:, None], bound * r[:, None])


def init_energy(joints3d: Tensor, betas: Tensor, batch: TrackBatch, config: BAConfig) -> Tensor:
    """lambda_I * E_I per frame: min_p [min(sum_i rho(X_i - X~_i^p), tau_I) + lambda_beta rho(beta - beta~^p)].

    The cap tau_I is on the joints' part only. It lets a frame whose init *pose* is wrong
    (a flip, a misdetection) stop pulling; beta is shared by all the frames, so a capped
    shape residual would leave it with no pull at all once every frame is capped (a
    keypoint-only init, a failing regressor): on the demo corpus the betas then ran to
    |beta| ~ 500.

    Args:
        joints3d: (B, T, 24, 3) current SMPL joints, metres.
        betas: (B, 10) the track's shape.
        batch: per-candidate init joints and betas.
        config: weights, Huber widths and tau_I.

    Returns:
        (B, T) energy; 0 on frames without candidates.
    """
    best = init_per_candidate(joints3d, betas, batch, config).min(-1).values
    return torch.where(batch.has_candidate, config.w_init * best, torch.zeros_like(best))


def init_parts(joints3d: Tensor, betas: Tensor, batch: TrackBatch, config: BAConfig) -> tuple[Tensor, Tensor]:
    """The two parts of E_I per candidate, before the cap, the weights and the candidate
    mask: ``sum_i rho(X_i - X~_i^p)`` and ``rho(beta - beta~^p)``, (B, T, P) each."""
    joint_term = huber(
        squared_norm(joints3d.unsqueeze(2) - batch.init_joints), config.init_delta_m
    ).sum(-1)  # (B, T, P)
    beta_term = huber(squared_norm(betas[:, None, None, :] - batch.init_betas), config.init_betas_delta)
    return joint_term, beta_term


def init_per_candidate(joints3d: Tensor, betas: Tensor, batch: TrackBatch, config: BAConfig,
                       parts: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """E_I of each candidate before the min: (B, T, P), +inf where no candidate.

    ``k min(sum_i rho(X_i - X~_i^p), tau_I) + lambda_beta rho(beta - beta~^p)``, with k the
    track's ``batch.init_scale`` (1 without); shapes as in :func:`init_energy` (which
    multiplies by lambda_I). ``parts``: :func:`init_parts` of the same arguments, when the
    caller has them already.
    """
    joint_term, beta_term = init_parts(joints3d, betas, batch, config) if parts is None else parts
    per_candidate = joints_init_scale(batch) * torch.clamp(joint_term, max=config.tau_i) + config.w_init_betas * beta_term
    return torch.where(batch.candidate_mask, per_candidate, torch.full_like(per_candidate, float("inf")))


def shape_excess(betas: Tensor, config: BAConfig) -> Tensor:
    """(B, 10) how far each beta lies beyond +-``config.shape_bound`` (0 inside)."""
    return torch.relu(betas.abs() - config.shape_bound)


def shape_energy(betas: Tensor, batch: TrackBatch, config: BAConfig) -> Tensor:
    """The shape bound per frame: ``w_shape * sum_k max(0, |beta_k| - shape_bound)^2``, (B, T).

    SMPL's betas are in standard deviations of its training bodies, so a |beta_k| beyond
    about 3 is not a person. The init term's Huber tail holds beta only weakly (and the
    keypoint-only init's lambda_I is 0.1 x), and the weak-perspective scale trades
    against body size, so without a bound the fit can reach an implausible shape that
    reprojects slightly better (the demo corpus: |beta| up to 20 with the init term
    uncapped). Zero inside the bound: a plausible shape's energy is unchanged.
    """
    per_track = config.w_shape * shape_excess(betas, config).square().sum(-1)  # (B,)
    return torch.where(batch.frame_mask, per_track[:, None], torch.zeros((), dtype=betas.dtype, device=betas.device))


def joints_init_scale(batch: TrackBatch) -> float | Tensor:
    """The multiplier of the init term's joints' part per track: 1.0, or (B, 1, 1) from
    ``batch.init_scale`` (``BAConfig.keypoint_init_scale`` on keypoint-only inits).

    Only the joints' part is scaled. A keypoint-only init's betas are the mean shape, i.e.
    SMPL's population prior, not an estimate to distrust; scaled with the joints it held
    the shared betas at 0.3 x the regressor tracks' weight, and a converging solver traded
    body size against the weak-perspective scale (smaller bodies move fewer metres, so
    E_T and the init term shrink): |beta| reached the shape bound on 5 of 8 demo tracks.
    """
    return 1.0 if batch.init_scale is None else batch.init_scale[:, None, None]


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


def gmm_energy(pose: Tensor, prior, offset: float, frame_mask: Tensor, config: BAConfig) -> Tensor:
    """w_gmm * (GMM NLL of the 69 body pose values - offset) per frame.

    Args:
        pose: (B, T, 72) axis-angle, radians.
        prior: object with ``nll(pose_body (..., 69)) -> (...)``.
        offset: value subtracted from the NLL (see :func:`gmm_nll_offset`).
        frame_mask: (B, T) real frames.
        config: w_gmm.

    Returns:
        (B, T) energy, 0 on padded frames.
    """
    nll = prior.nll(pose[..., 3:]) - offset
    return torch.where(frame_mask, config.w_gmm * nll, torch.zeros_like(nll))


def track_total(per_frame: Tensor) -> Tensor:
    """Per-track sum over frames, (b, T) -> (b,), independent of the padding.

    A float32 sum's rounding depends on the row length, i.e. on the longest track of the
    batch; summing the same float32 values in float64 and rounding back gives the same
    value whatever the padding (padded frames hold exact zeros), so a track's objective,
    and with it every solver decision, does not depend on its batch.
    """
    return per_frame.sum(-1, dtype=torch.float64).to(per_frame.dtype)


@dataclass(frozen=True)
class EnergyTerms:
    """Per-frame energies and the quantities they were computed from.

    Attributes:
        terms: term name -> (B, T) per-frame energy (0 where the term is switched off).
        frame_error: (B, T) reprojection energy before the tau_R cap, px (+inf: no candidate).
        matched: (B, T) long matched candidate (-1: none).
        joints3d: (B, T, 24, 3) metres. keypoints3d: (B, T, 17, 3) metres.
        keypoints2d: (B, T, 17, 2) pixels.
    """

    terms: dict[str, Tensor]
    frame_error: Tensor
    matched: Tensor
    joints3d: Tensor
    keypoints3d: Tensor
    keypoints2d: Tensor

    def per_frame_total(self) -> Tensor:
        """(B, T) sum of all terms, added one term after the other.

        Elementwise adds in a fixed order round the same way for every frame; a reduction
        over a stacked axis may not (vectorised lanes and the scalar tail differ), which
        made a track's energy depend on its position in the batch.
        """
        values = list(self.terms.values())
        total = values[0]
        for value in values[1:]:
            total = total + value
        return total

    def total(self) -> Tensor:
        """(B,) E per track."""
        return self.per_frame_total().sum(-1)


def energy_terms(
    pose: Tensor,
    betas: Tensor,
    camera: Tensor,
    batch: TrackBatch,
    body_model,
    prior,
    config: BAConfig,
    gmm_offset: float = 0.0,
    body_outputs: tuple[Tensor, Tensor] | None = None,
) -> EnergyTerms:
    """Evaluate every term of E for a padded batch.

    Args:
        pose: (B, T, 72) axis-angle, radians.
        betas: (B, 10) one shape per track.
        camera: (B, T, 3) s px/m, tx px, ty px.
        batch: the fixed data.
        body_model: ``joints_and_keypoints(pose, betas) -> ((..., 24, 3), (..., 17, 3))``.
        prior: GMM prior with ``nll`` (may be None when ``config.use_prior`` is False
            or ``w_gmm`` is 0).
        config: weights and switches.
        gmm_offset: see :func:`gmm_nll_offset`.
        body_outputs: the body model's ``(joints (B, T, 24, 3), keypoints (B, T, 17, 3))`` at
            ``pose, betas`` when the caller has them already (the Levenberg-Marquardt
            linearisation); ``body_model`` is then not called.
    """
    B, T = pose.shape[:2]
    if body_outputs is None:
        frame_betas = betas[:, None, :].expand(B, T, betas.shape[-1])
        joints3d, keypoints3d = body_model.joints_and_keypoints(pose, frame_betas)
    else:
        joints3d, keypoints3d = body_outputs
    keypoints2d = weak_perspective_project(keypoints3d, camera)
    zero = torch.zeros((B, T), dtype=pose.dtype, device=pose.device)
    terms = dict.fromkeys(TERM_NAMES, zero)

    e_r, frame_error, matched = reprojection_energy(keypoints2d, batch, config)
    if config.use_reprojection:
        terms["reprojection"] = e_r
    if config.use_temporal:
        terms.update(temporal_energy(joints3d, keypoints2d, camera, batch, config))
    if config.use_prior:
        if config.w_gmm > 0:
            if prior is None:
                raise ValueError("BAConfig.use_prior with w_gmm > 0 needs a GMM prior; pass prior= or set w_gmm=0.")
            terms["gmm"] = gmm_energy(pose, prior, gmm_offset, batch.frame_mask, config)
        if config.w_init > 0:
            terms["init"] = init_energy(joints3d, betas, batch, config)
        if config.w_shape > 0:
            terms["shape"] = shape_energy(betas, batch, config)
    return EnergyTerms(
        terms=terms,
        frame_error=frame_error,
        matched=matched,
        joints3d=joints3d,
        keypoints3d=keypoints3d,
        keypoints2d=keypoints2d,
    )
