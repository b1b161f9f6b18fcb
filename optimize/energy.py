"""The bundle-adjustment energy E = E_R + E_T + E_P over padded batches of tracks.

Each term's value and Gauss-Newton rows are defined once, in :mod:`optimize.terms`;
this module holds the batch they read (:class:`TrackBatch`) and sums them
(:func:`energy_terms`). Shapes: ``B`` tracks, ``T`` frames (the longest track; shorter ones are padded and
masked by ``frame_mask``), ``P`` candidate detections per frame (masked by
``candidate_mask``), 24 SMPL joints, 17 COCO keypoints. Every term returns a per-frame
energy ``(B, T)`` that is 0 on padded frames, so a track's energy is a sum over its
frames and tracks never interact.

A frame without any candidate detection has no reprojection and no init term: it keeps
only its temporal and GMM terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from models.geometry import weak_perspective_project
from optimize.settings import EnergySettings
from optimize.track_batch import TrackBatch  # noqa: F401  (re-exported: where the solvers import it from)
from optimize.terms import (  # noqa: F401  (re-exported: the terms' public helpers)
    TERM_NAMES, TERMS, InitTerm, JointMotion, KeypointMotion, CameraMotion, ShapeBound, TermInputs, gmm_nll_offset,
    reprojection_energy, reprojection_penalty, temporal_widths,
)


def temporal_energy(
    joints3d: Tensor, keypoints2d: Tensor, camera: Tensor, batch: TrackBatch, config: EnergySettings
) -> dict[str, Tensor]:
    """E_T per frame t (pair t-1, t; frame 0 carries none): the values of the three
    temporal terms of :mod:`optimize.terms`, {"temporal_3d", "temporal_2d",
    "temporal_camera"}: (B, T) each. Shapes as in :class:`optimize.terms.TermInputs`."""
    inputs = TermInputs(batch, config, joints3d=joints3d, keypoints2d=keypoints2d, camera=camera)
    return {term.name: term.value(inputs) for term in (JointMotion(), KeypointMotion(), CameraMotion())}


def init_energy(joints3d: Tensor, betas: Tensor, batch: TrackBatch, config: EnergySettings) -> Tensor:
    """lambda_I E_I per frame, (B, T) (:class:`optimize.terms.InitTerm`)."""
    return InitTerm().value(TermInputs(batch, config, betas=betas, joints3d=joints3d))


def shape_energy(betas: Tensor, batch: TrackBatch, config: EnergySettings) -> Tensor:
    """The shape bound per frame, (B, T) (:class:`optimize.terms.ShapeBound`)."""
    return ShapeBound().value(TermInputs(batch, config, betas=betas))


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
        inputs: what the terms read (the Levenberg-Marquardt linearisation reuses it).
    """

    terms: dict[str, Tensor]
    frame_error: Tensor
    matched: Tensor
    joints3d: Tensor
    keypoints3d: Tensor
    keypoints2d: Tensor
    inputs: TermInputs | None = None

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
    config: EnergySettings,
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
    inputs = TermInputs(batch, config, pose, betas, camera, joints3d, keypoints2d, prior, gmm_offset)
    _, frame_error, matched = inputs.reprojection()
    for term in TERMS:
        if term.enabled(config):
            terms[term.name] = term.value(inputs)
    return EnergyTerms(
        terms=terms,
        frame_error=frame_error,
        matched=matched,
        joints3d=joints3d,
        keypoints3d=keypoints3d,
        keypoints2d=keypoints2d,
        inputs=inputs,
    )
