"""Plausibility flags of a fit, as the published pseudo-ground-truth pipelines use them.

Three checks, each with its threshold here:

* **Shape:** ``max_k |beta_k|`` above :data:`BETAS_LIMIT` (3, the bound of EFT and 4DHumans:
  SMPL's shape space is a PCA of real bodies in units of standard deviations, so 3 is the
  edge of the population).
* **Per-joint pose density** (4DHumans' per-joint check, here against the fit's own GMM
  pose prior instead of AMASS): each body joint's 3 rotation values have a marginal that is
  itself a 3-D mixture (the 3-D sub-blocks of the GMM's means and covariances, the same
  weights). A joint is flagged when its log density is below that marginal's
  :data:`DENSITY_QUANTILE` quantile over poses sampled from the full GMM
  (:func:`density_thresholds`: computed from the prior, once per prior), i.e. a pose the
  prior itself produces about once in a thousand draws for that joint.
* **Anatomical limits** of the four hinge joints (:data:`HINGE_LIMITS`, degrees): knee and
  elbow flexion, measured in the joint's local frame as the angle by which the child bone
  turns in the flexion plane (knees: about the lateral x axis; elbows: about the vertical
  y axis, the arm pointing along x in SMPL's rest pose), and the knee's out-of-plane
  (varus/valgus) turn. Normal ranges of motion are knee flexion 0-135 degrees and elbow
  flexion 0-150 degrees with a few degrees of hyperextension (American Academy of
  Orthopaedic Surgeons, "Joint Motion: Method of Measuring and Recording", 1965; Soucie et
  al., Haemophilia 17(3), 2011, normal ROM by age and sex); the limits here add a
  :data:`LIMIT_MARGIN_DEG` margin on each side for fitting noise and extreme bodies.

Per frame: the number of flagged joints of each check; per track: ``betas_absmax`` and
the fraction of frames with any flag.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
from torch import Tensor

from optimize.problem import NUM_JOINTS

BETAS_LIMIT = 3.0
DENSITY_QUANTILE = 1e-3
DENSITY_SAMPLES = 20_000  # GMM draws behind each joint's density threshold
DENSITY_SEED = 0
LIMIT_MARGIN_DEG = 15.0

# SMPL joint index -> (index of the axis the joint flexes about, the child bone's rest
# direction, the sign of the forward (+z) component that flexion gives the bone, (min, max)
# flexion in degrees before the margin). SMPL's rest pose faces +z with y up and the left
# arm along +x: the knee flexes about x and moves the ankle backwards (-z), the elbow
# flexes about y and moves the wrist forwards (+z).
HINGE_LIMITS: dict[int, tuple[int, tuple[float, float, float], float, tuple[float, float]]] = {
    4: (0, (0.0, -1.0, 0.0), -1.0, (0.0, 150.0)),  # left knee
    5: (0, (0.0, -1.0, 0.0), -1.0, (0.0, 150.0)),  # right knee
    18: (1, (1.0, 0.0, 0.0), 1.0, (0.0, 150.0)),  # left elbow
    19: (1, (-1.0, 0.0, 0.0), 1.0, (0.0, 150.0)),  # right elbow
}
KNEES = (4, 5)
KNEE_OUT_OF_PLANE_DEG = 15.0  # varus/valgus of the knee, before the margin


def betas_absmax(betas: np.ndarray) -> float:
    """max_k |beta_k| of a track's shape (10,); NaN when not finite."""
    betas = np.asarray(betas, np.float64)
    return float(np.abs(betas).max()) if betas.size and np.isfinite(betas).all() else math.nan


def _joint_marginals(prior) -> tuple[Tensor, Tensor, Tensor]:
    """Per joint: means (J, K, 3), precisions (J, K, 3, 3) and log normalisers (J, K) incl. log weights, float64."""
    means = prior.means.double().reshape(prior.means.shape[0], NUM_JOINTS - 1, 3).transpose(0, 1)  # (J, K, 3)
    covars = prior.covars.double()
    k = covars.shape[0]
    blocks = torch.stack([covars[:, 3 * j:3 * j + 3, 3 * j:3 * j + 3] for j in range(NUM_JOINTS - 1)], 0)  # (J, K, 3, 3)
    precision = torch.linalg.inv(blocks)
    log_norm = (torch.log(prior.weights.double())[None].expand(NUM_JOINTS - 1, k)
                - 0.5 * torch.logdet(blocks) - 1.5 * math.log(2 * math.pi))
    return means, precision, log_norm


def joint_log_density(prior, body_pose: Tensor) -> Tensor:
    """Log density of each body joint's rotation under its 3-D marginal of the GMM.

    Args:
        prior: :class:`models.gmm_prior.GMMPrior`.
        body_pose: (N, 69) axis-angle of the 23 body joints, radians.

    Returns:
        (N, 23) float64 log density (per rad^3).
    """
    means, precision, log_norm = _joint_marginals(prior)
    x = body_pose.double().to(means.device).reshape(-1, NUM_JOINTS - 1, 3)
    diff = x[:, :, None, :] - means[None]  # (N, J, K, 3)
    mahalanobis = torch.einsum("njki,jkil,njkl->njk", diff, precision, diff)
    return torch.logsumexp(log_norm[None] - 0.5 * mahalanobis, -1)


_THRESHOLDS: dict[str, Tensor] = {}


def _prior_key(prior) -> str:
    """A digest of the prior's arrays at float32 precision (the same for its float32 and float64 copies)."""
    digest = hashlib.sha1()
    for name in ("means", "covars", "weights"):
        digest.update(getattr(prior, name).detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()


def density_thresholds(prior) -> Tensor:
    """(23,) per-joint log-density threshold: the :data:`DENSITY_QUANTILE` quantile of each
    joint's marginal log density over :data:`DENSITY_SAMPLES` poses drawn from the full GMM
    (fixed seed; computed once per prior's contents)."""
    key = _prior_key(prior)
    cached = _THRESHOLDS.get(key)
    if cached is not None:
        return cached
    generator = torch.Generator().manual_seed(DENSITY_SEED)
    as_float32 = lambda name: getattr(prior, name).detach().cpu().float().double()  # noqa: E731
    component = torch.multinomial(as_float32("weights"), DENSITY_SAMPLES, replacement=True, generator=generator)
    chol = torch.linalg.cholesky(as_float32("covars"))
    noise = torch.randn(DENSITY_SAMPLES, chol.shape[-1], generator=generator, dtype=torch.float64)
    samples = as_float32("means")[component] + (chol[component] @ noise[..., None])[..., 0]
    density = torch.cat([joint_log_density(prior, part) for part in samples.split(20_000)], 0)
    thresholds = torch.quantile(density, DENSITY_QUANTILE, dim=0)
    _THRESHOLDS[key] = thresholds
    return thresholds


def pose_density_outliers(prior, pose: np.ndarray) -> np.ndarray:
    """(T,) int32 number of body joints whose rotation is below its density threshold.

    Args:
        prior: the GMM prior (None: no check, all 0).
        pose: (T, 72) SMPL pose, radians.
    """
    pose = np.asarray(pose, np.float64)
    if prior is None or pose.shape[0] == 0:
        return np.zeros(pose.shape[0], np.int32)
    density = joint_log_density(prior, torch.as_tensor(np.nan_to_num(pose[:, 3:])))
    below = density < density_thresholds(prior).to(density.device)[None]
    return below.sum(-1).cpu().numpy().astype(np.int32)


def hinge_angles(pose: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Flexion and out-of-plane angle (degrees) of each joint of :data:`HINGE_LIMITS`.

    Args:
        pose: (T, 72) SMPL pose, radians.

    Returns:
        joint -> ((T,) flexion, (T,) out-of-plane turn), degrees.
    """
    from models.geometry import axis_angle_to_matrix

    pose = np.asarray(pose, np.float64)
    out = {}
    for joint, (axis, rest, forward, _) in HINGE_LIMITS.items():
        rotation = axis_angle_to_matrix(torch.as_tensor(pose[:, 3 * joint:3 * joint + 3])).numpy()
        bone = rotation @ np.asarray(rest)  # (T, 3) the child bone's direction in the joint's rest frame
        flexion = np.degrees(np.arctan2(forward * bone[:, 2], bone @ np.asarray(rest)))
        out_of_plane = np.degrees(np.arcsin(np.clip(np.abs(bone[:, axis]), 0.0, 1.0)))
        out[joint] = (flexion, out_of_plane)
    return out


def joint_limit_violations(pose: np.ndarray) -> np.ndarray:
    """(T,) int32 number of hinge joints outside their limits (flexion outside the range
    widened by :data:`LIMIT_MARGIN_DEG`, or a knee turned out of its plane by more than
    :data:`KNEE_OUT_OF_PLANE_DEG` + the margin)."""
    pose = np.asarray(pose, np.float64)
    count = np.zeros(pose.shape[0], np.int32)
    for joint, (flexion, out_of_plane) in hinge_angles(np.nan_to_num(pose)).items():
        low, high = HINGE_LIMITS[joint][3]
        bad = (flexion < low - LIMIT_MARGIN_DEG) | (flexion > high + LIMIT_MARGIN_DEG)
        if joint in KNEES:
            bad |= out_of_plane > KNEE_OUT_OF_PLANE_DEG + LIMIT_MARGIN_DEG
        count += bad.astype(np.int32)
    return count


def implausible_fraction(*counts: np.ndarray) -> float:
    """Fraction of frames with any flag in any of the per-frame ``counts`` (T,); NaN without frames."""
    if not counts or counts[0].size == 0:
        return math.nan
    return float(np.mean(np.any(np.stack([np.asarray(c) > 0 for c in counts]), 0)))
