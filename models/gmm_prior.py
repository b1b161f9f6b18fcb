"""Gaussian-mixture pose prior in SMPLify's ``gmm_08.pkl`` layout.

The file is a pickle of a dict with ``means`` (K, 69), ``covars`` (K, 69, 69) and
``weights`` (K,) over the 23 body joints' axis-angle values (the SMPL pose without the
global orientation). SMPLify's own file is a Python-2 pickle; it is read with the
restricted unpickler of :mod:`models.smpl_io` (no code in it is executed).

:class:`GMMPrior` gives the negative log-likelihood as torch functions:

* :meth:`GMMPrior.nll`: exact ``-log sum_k w_k N(x; mu_k, Sigma_k)`` (log-sum-exp);
* :meth:`GMMPrior.nll_max_mixture`: SMPLify's max-mixture approximation
  ``min_k [-log w_k - log N(x; mu_k, Sigma_k)]`` (an upper bound of :meth:`nll`).

:func:`fit_gmm` fits a mixture to a pose corpus with scikit-learn (``vid2mesh fit-prior``);
:func:`sample_standin_poses` draws the procedural poses the shipped stand-in prior
(``models/data/vid2mesh_standin_pose_prior_gmm8.pkl``) was fitted on.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from models.joint_names import SMPL24_FLIP_INDEX, SMPL24_INDEX
from models.smpl_io import ModelFileError, load_npz_safely, load_pickle_safely

logger = logging.getLogger(__name__)

POSE_BODY_DIM = 69


class GMMPrior(nn.Module):
    """GMM over the 69 body-pose values (buffers only).

    Args:
        means: (K, 69) radians.
        covars: (K, 69, 69) symmetric positive definite.
        weights: (K,) mixture weights (normalised here).
        dtype: computation dtype.
    """

    def __init__(
        self,
        means: np.ndarray,
        covars: np.ndarray,
        weights: np.ndarray,
        *,
        dtype: torch.dtype = torch.float32,
        source: str = "<arrays>",
    ) -> None:
        super().__init__()
        means = np.asarray(means, dtype=np.float64)
        covars = np.asarray(covars, dtype=np.float64)
        weights = np.asarray(weights, dtype=np.float64)
        k = means.shape[0] if means.ndim == 2 else -1
        if (
            means.ndim != 2
            or means.shape[1] != POSE_BODY_DIM
            or covars.shape != (k, POSE_BODY_DIM, POSE_BODY_DIM)
            or weights.shape != (k,)
        ):
            raise ModelFileError(
                f"{source}: GMM arrays have shapes means {means.shape}, covars {covars.shape}, "
                f"weights {weights.shape}; expected (K, 69), (K, 69, 69), (K,) as in SMPLify's "
                "gmm_08.pkl"
            )
        if not (np.all(np.isfinite(means)) and np.all(np.isfinite(covars)) and np.all(weights > 0)):
            raise ModelFileError(f"{source}: GMM holds NaN/inf or non-positive weights; the file is corrupt")
        weights = weights / weights.sum()
        covars = 0.5 * (covars + np.swapaxes(covars, 1, 2))
        try:
            chol_cov = np.linalg.cholesky(covars)  # Sigma = C C^T
        except np.linalg.LinAlgError as exc:
            raise ModelFileError(f"{source}: a GMM covariance is not positive definite") from exc
        # Precision factor L with P = Sigma^-1 = L L^T: L = C^-T.
        eye = np.eye(POSE_BODY_DIM)
        prec_chol = np.swapaxes(np.linalg.solve(chol_cov, np.broadcast_to(eye, covars.shape)), 1, 2)
        log_det_cov = 2.0 * np.log(np.diagonal(chol_cov, axis1=1, axis2=2)).sum(-1)
        log_norm = np.log(weights) - 0.5 * (POSE_BODY_DIM * math.log(2.0 * math.pi) + log_det_cov)
        self.source = source
        self.register_buffer("means", torch.as_tensor(means).to(dtype))
        self.register_buffer("covars", torch.as_tensor(covars).to(dtype))
        self.register_buffer("weights", torch.as_tensor(weights).to(dtype))
        self.register_buffer("precision_cholesky", torch.as_tensor(prec_chol).to(dtype))
        self.register_buffer("log_norm", torch.as_tensor(log_norm).to(dtype))  # (K,)
        # The NLL as one GEMM (component_log_likelihood): [L_1 .. L_K] (69, K * 69) and
        # mu_k^T L_k flattened (K * 69,), precomputed in float64.
        precision = np.einsum("kij,klj->kil", prec_chol, prec_chol)  # P_k = L_k L_k^T
        self.register_buffer("precision", torch.as_tensor(precision).to(dtype), persistent=False)  # (K, 69, 69)
        stacked = np.concatenate(list(prec_chol), axis=1)
        self.register_buffer("stacked_precision_cholesky", torch.as_tensor(stacked).to(dtype), persistent=False)
        self.register_buffer(
            "whitened_means", torch.as_tensor(np.einsum("ki,kij->kj", means, prec_chol).reshape(-1)).to(dtype),
            persistent=False,
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, dtype: torch.dtype = torch.float32) -> GMMPrior:
        """Load SMPLify's ``gmm_08.pkl`` layout (``.pkl``, or ``.npz`` with the same keys)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no such GMM prior file; pass SMPLify's gmm_08.pkl, one made by "
                "`vid2mesh fit-prior`, or the stand-in (models.standin.ensure_standin)"
            )
        if path.suffix == ".npz":
            raw = load_npz_safely(path, "fit a prior with `vid2mesh fit-prior`")
        else:
            raw = load_pickle_safely(path)
        if not isinstance(raw, dict) or not all(k in raw for k in ("means", "covars", "weights")):
            found = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
            raise ModelFileError(
                f"{path}: not a GMM prior in SMPLify's layout (needs means, covars, weights; "
                f"found {found}); fit one with `vid2mesh fit-prior`"
            )
        return cls(raw["means"], raw["covars"], raw["weights"], dtype=dtype, source=str(path))

    @property
    def num_components(self) -> int:
        return int(self.means.shape[0])

    def component_log_likelihood(self, pose_body: Tensor) -> Tensor:
        """``log w_k + log N(x; mu_k, Sigma_k)`` for every component.

        Args:
            pose_body: (..., 69) axis-angle of joints 1..23, radians.

        Returns:
            (..., K).
        """
        if pose_body.shape[-1:] != (POSE_BODY_DIM,):
            raise ValueError(
                f"pose_body must have shape (..., {POSE_BODY_DIM}) (SMPL pose without the global "
                f"orientation), got {tuple(pose_body.shape)}"
            )
        # L_k^T (x - mu_k) for all k as one GEMM: x @ [L_1 .. L_K] - [mu_k^T L_k]_k.
        x = pose_body.to(self.means.dtype)
        whitened = x.reshape(-1, POSE_BODY_DIM) @ self.stacked_precision_cholesky - self.whitened_means
        whitened = whitened.reshape(*x.shape[:-1], self.num_components, POSE_BODY_DIM)
        return self.log_norm - 0.5 * (whitened * whitened).sum(-1)

    def nll(self, pose_body: Tensor) -> Tensor:
        """Exact negative log-likelihood (log-sum-exp over components).

        Args:
            pose_body: (..., 69) radians.

        Returns:
            (...,) nats.
        """
        return -torch.logsumexp(self.component_log_likelihood(pose_body), dim=-1)

    def nll_gradient_responsibility(self, pose_body: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The NLL, its exact gradient and the responsibilities ``r_k``, for Gauss-Newton.

        With responsibilities ``r_k`` (the softmax of the component log-likelihoods) and
        precisions ``P_k = L_k L_k^T`` (:attr:`precision`, (K, 69, 69)), the gradient is
        ``sum_k r_k P_k (x - mu_k)`` and the positive semi-definite curvature
        ``sum_k r_k P_k = r @ precision``: the Hessian without its (indefinite)
        responsibility-change part, exact where one component dominates, as SMPLify's
        max-mixture is. The caller forms that product in its own layout (``optimize.lm``
        writes it straight into its 75 x 75 blocks). No autograd.

        Args:
            pose_body: (N, 69) radians.

        Returns:
            nll (N,) nats, gradient (N, 69) nats/rad, responsibility (N, K).
        """
        x = pose_body.to(self.means.dtype)
        n, k = x.shape[0], self.num_components
        whitened = (x @ self.stacked_precision_cholesky - self.whitened_means).reshape(n, k, POSE_BODY_DIM)
        log_likelihood = self.log_norm - 0.5 * (whitened * whitened).sum(-1)  # (N, K)
        nll = -torch.logsumexp(log_likelihood, dim=-1)
        responsibility = torch.softmax(log_likelihood, dim=-1)  # (N, K)
        # sum_k r_k L_k w_k = [L_1 .. L_K] vec(r_k w_k)
        gradient = (responsibility[..., None] * whitened).reshape(n, -1) @ self.stacked_precision_cholesky.T
        return nll, gradient, responsibility

    def nll_max_mixture(self, pose_body: Tensor) -> Tensor:
        """SMPLify's max-mixture energy ``min_k [-log w_k - log N_k(x)]``.

        Args:
            pose_body: (..., 69) radians.

        Returns:
            (...,) nats, >= :meth:`nll`.
        """
        return -self.component_log_likelihood(pose_body).max(dim=-1).values

    def forward(self, pose_body: Tensor) -> Tensor:
        return self.nll(pose_body)


def save_gmm(path: str | os.PathLike, means: np.ndarray, covars: np.ndarray, weights: np.ndarray) -> Path:
    """Write a GMM in SMPLify's layout (a protocol-2 pickle of a dict of float64 arrays)."""
    path = Path(path)
    if path.name.endswith("gmm_08.pkl"):
        raise ValueError(f"{path}: refusing to write a file named like SMPLify's licensed gmm_08.pkl")
    data = {
        "means": np.asarray(means, dtype=np.float64),
        "covars": np.asarray(covars, dtype=np.float64),
        "weights": np.asarray(weights, dtype=np.float64),
    }
    GMMPrior(data["means"], data["covars"], data["weights"], source=str(path))  # validate
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        pickle.dump(data, handle, protocol=2)
    tmp.replace(path)
    return path


def body_poses_from_array(poses: np.ndarray, source: str = "<array>") -> np.ndarray:
    """The 69 body-pose values from an AMASS-style ``poses`` array.

    Args:
        poses: (T, 72) SMPL, or (T, >= 66) SMPL-H / SMPL-X (root, 21 body joints, hands...):
            there SMPL's two hand joints (22, 23) are set to 0.

    Returns:
        (T, 69) radians.
    """
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] < 66:
        raise ModelFileError(
            f"{source}: 'poses' has shape {poses.shape}; expected (T, 72) SMPL or (T, 156) "
            "SMPL-H axis-angle poses"
        )
    if poses.shape[1] == 72:
        return poses[:, 3:72].copy()
    body = poses[:, 3:66]
    return np.concatenate([body, np.zeros((len(poses), 6))], axis=1)


def read_pose_corpus(paths: Iterable[str | os.PathLike], stride: int = 1) -> np.ndarray:
    """Body poses of every AMASS-style ``.npz`` (key ``poses``) in ``paths`` (files/folders).

    Args:
        paths: ``.npz`` files or folders searched recursively.
        stride: keep every ``stride``-th frame of each sequence.

    Returns:
        (N, 69) radians.
    """
    files: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            files += sorted(p.rglob("*.npz"))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such pose file or folder")
    chunks = []
    for f in files:
        try:
            with np.load(f, allow_pickle=False) as data:
                if "poses" not in data.files:
                    logger.info("skipping %s: no 'poses' array", f)
                    continue
                poses = data["poses"]
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise ModelFileError(f"{f}: cannot read as .npz without pickles ({exc})") from exc
        chunks.append(body_poses_from_array(poses, str(f))[:: max(1, stride)])
    if not chunks:
        raise ModelFileError(
            "no poses found: pass AMASS-style .npz files (or folders of them) holding a 'poses' array"
        )
    return np.concatenate(chunks)


def fit_gmm(
    poses: np.ndarray, num_components: int = 8, *, seed: int = 0, reg_covar: float = 1e-4, max_iter: int = 300
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit a full-covariance GMM with scikit-learn.

    Args:
        poses: (N, 69) radians.
        num_components: K.
        seed: initialisation seed (the fit is deterministic for a given seed).
        reg_covar: added to covariance diagonals (rad^2), keeps constant joints valid.

    Returns:
        means (K, 69), covars (K, 69, 69), weights (K,).
    """
    from sklearn.mixture import GaussianMixture

    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != POSE_BODY_DIM:
        raise ValueError(f"poses must have shape (N, {POSE_BODY_DIM}), got {poses.shape}")
    if len(poses) < 2 * num_components:
        raise ValueError(f"{len(poses)} poses are too few to fit {num_components} components")
    gmm = GaussianMixture(
        n_components=num_components,
        covariance_type="full",
        reg_covar=reg_covar,
        max_iter=max_iter,
        random_state=seed,
        init_params="kmeans",
    )
    gmm.fit(poses)
    if not gmm.converged_:
        logger.info("GMM fit stopped after %d iterations without full convergence", gmm.n_iter_)
    return gmm.means_, gmm.covariances_, gmm.weights_


# ---------------------------------------------------------------------------------------
# Procedural pose corpus for the stand-in prior
# ---------------------------------------------------------------------------------------

# Axis-angle of named joints in SMPL's rest frame (y up, x = body's left, z forward):
# +x on hips = extension (thigh back), +x on knees = flexion, +x on the spine = bend
# forward; -z on the left shoulder lowers the left arm, -y on the left elbow flexes it.
_ARCHETYPES: dict[str, dict[str, tuple[float, float, float]]] = {
    "stand": {
        "left_shoulder": (0.0, 0.0, -1.2),
        "right_shoulder": (0.0, 0.0, 1.2),
        "left_elbow": (0.0, -0.2, 0.0),
        "right_elbow": (0.0, 0.2, 0.0),
    },
    "walk": {
        "left_hip": (-0.45, 0.0, 0.0),
        "right_hip": (0.3, 0.0, 0.0),
        "left_knee": (0.2, 0.0, 0.0),
        "right_knee": (0.6, 0.0, 0.0),
        "left_ankle": (-0.1, 0.0, 0.0),
        "left_shoulder": (0.0, 0.3, -1.3),
        "right_shoulder": (0.0, 0.3, 1.3),
        "left_elbow": (0.0, -0.4, 0.0),
        "right_elbow": (0.0, 0.3, 0.0),
    },
    "run": {
        "spine1": (0.15, 0.0, 0.0),
        "left_hip": (-0.9, 0.0, 0.0),
        "right_hip": (0.5, 0.0, 0.0),
        "left_knee": (1.2, 0.0, 0.0),
        "right_knee": (1.0, 0.0, 0.0),
        "left_shoulder": (0.0, 0.5, -1.1),
        "right_shoulder": (0.0, 0.5, 1.1),
        "left_elbow": (0.0, -1.5, 0.0),
        "right_elbow": (0.0, 1.5, 0.0),
    },
    "sit": {
        "left_hip": (-1.5, 0.0, 0.1),
        "right_hip": (-1.5, 0.0, -0.1),
        "left_knee": (1.5, 0.0, 0.0),
        "right_knee": (1.5, 0.0, 0.0),
        "left_shoulder": (0.0, -0.3, -1.2),
        "right_shoulder": (0.0, 0.3, 1.2),
        "left_elbow": (0.0, -1.0, 0.0),
        "right_elbow": (0.0, 1.0, 0.0),
    },
    "squat": {
        "spine1": (0.35, 0.0, 0.0),
        "left_hip": (-1.9, 0.0, 0.25),
        "right_hip": (-1.9, 0.0, -0.25),
        "left_knee": (2.1, 0.0, 0.0),
        "right_knee": (2.1, 0.0, 0.0),
        "left_ankle": (-0.3, 0.0, 0.0),
        "right_ankle": (-0.3, 0.0, 0.0),
        "left_shoulder": (0.0, -0.8, -0.6),
        "right_shoulder": (0.0, 0.8, 0.6),
    },
    "arms_up": {
        "left_shoulder": (0.0, 0.0, 1.1),
        "right_shoulder": (0.0, 0.0, -1.1),
        "left_elbow": (0.0, -0.3, 0.0),
        "right_elbow": (0.0, 0.3, 0.0),
        "neck": (-0.2, 0.0, 0.0),
    },
    "reach": {
        "spine2": (0.2, 0.0, 0.0),
        "left_shoulder": (0.0, -1.1, -0.4),
        "right_shoulder": (0.0, 1.1, 0.4),
        "left_elbow": (0.0, -0.3, 0.0),
        "right_elbow": (0.0, 0.3, 0.0),
    },
    "bend": {
        "spine1": (0.5, 0.0, 0.0),
        "spine2": (0.3, 0.0, 0.0),
        "spine3": (0.2, 0.0, 0.0),
        "left_hip": (-0.7, 0.0, 0.0),
        "right_hip": (-0.7, 0.0, 0.0),
        "left_shoulder": (0.0, -0.5, -1.0),
        "right_shoulder": (0.0, 0.5, 1.0),
    },
    "kick": {
        "left_hip": (-1.3, 0.0, 0.1),
        "left_knee": (0.3, 0.0, 0.0),
        "right_knee": (0.15, 0.0, 0.0),
        "left_shoulder": (0.0, 0.0, -0.5),
        "right_shoulder": (0.0, 0.0, 0.5),
        "spine1": (-0.1, 0.0, 0.0),
    },
    "wave": {
        "left_shoulder": (0.0, -0.3, 0.6),
        "left_elbow": (0.0, -1.4, 0.0),
        "right_shoulder": (0.0, 0.0, 1.25),
        "neck": (0.0, 0.3, 0.0),
    },
    "twist_throw": {
        "spine1": (0.0, 0.3, 0.0),
        "spine2": (0.0, 0.25, 0.0),
        "spine3": (0.0, 0.2, 0.0),
        "right_shoulder": (0.0, 0.3, -0.2),
        "right_elbow": (0.0, 1.2, 0.0),
        "left_shoulder": (0.0, -0.6, -0.6),
        "left_hip": (-0.3, 0.0, 0.0),
        "right_knee": (0.4, 0.0, 0.0),
    },
    "lean_side": {
        "spine1": (0.0, 0.0, 0.2),
        "spine2": (0.0, 0.0, 0.15),
        "left_shoulder": (0.0, 0.0, -1.3),
        "right_shoulder": (0.0, 0.0, 0.7),
        "left_hip": (0.0, 0.0, 0.2),
        "head": (0.0, 0.0, -0.15),
    },
}

# Per-joint noise (rad) around the archetypes.
_NOISE = {
    "spine1": 0.08,
    "spine2": 0.06,
    "spine3": 0.06,
    "neck": 0.12,
    "head": 0.12,
    "left_collar": 0.06,
    "right_collar": 0.06,
    "left_wrist": 0.25,
    "right_wrist": 0.25,
    "left_hand": 0.15,
    "right_hand": 0.15,
    "left_foot": 0.1,
    "right_foot": 0.1,
    "left_ankle": 0.12,
    "right_ankle": 0.12,
}
_DEFAULT_NOISE = 0.15


def _archetype_vector(spec: dict[str, tuple[float, float, float]]) -> np.ndarray:
    pose = np.zeros((24, 3))
    for name, value in spec.items():
        pose[SMPL24_INDEX[name]] = value
    return pose


def mirror_pose(pose: np.ndarray) -> np.ndarray:
    """Left/right mirror of SMPL poses (..., 24, 3): swap sides, negate the y and z parts."""
    return pose[..., list(SMPL24_FLIP_INDEX), :] * np.array([1.0, -1.0, -1.0])


def sample_standin_poses(count: int, seed: int = 0) -> np.ndarray:
    """Procedural, plausible body poses: blends of 12 archetypes, mirrored, with noise.

    Args:
        count: number of poses.
        seed: numpy RNG seed (deterministic).

    Returns:
        (count, 69) radians (joints 1..23).
    """
    rng = np.random.default_rng(seed)
    bank = np.stack([_archetype_vector(a) for a in _ARCHETYPES.values()])  # (A, 24, 3)
    a = rng.integers(0, len(bank), size=count)
    b = rng.integers(0, len(bank), size=count)
    # Mostly near one archetype, sometimes half-way to another; amplitude varies.
    mix = rng.beta(0.6, 2.0, size=count)[:, None, None]
    amplitude = rng.uniform(0.4, 1.15, size=count)[:, None, None]
    poses = amplitude * ((1.0 - mix) * bank[a] + mix * bank[b])
    flip = rng.random(count) < 0.5
    poses[flip] = mirror_pose(poses[flip])
    sigma = np.array([_NOISE.get(n, _DEFAULT_NOISE) for n in SMPL24_INDEX])[None, :, None]
    poses = poses + rng.normal(size=poses.shape) * sigma
    return poses[:, 1:].reshape(count, POSE_BODY_DIM)


STANDIN_PRIOR_SAMPLES = 20000
STANDIN_PRIOR_SEED = 0


def make_standin_prior(path: str | os.PathLike, *, samples: int = STANDIN_PRIOR_SAMPLES, seed: int = STANDIN_PRIOR_SEED) -> Path:
    """Fit the 8-component stand-in prior on :func:`sample_standin_poses` and save it."""
    poses = sample_standin_poses(samples, seed)
    means, covars, weights = fit_gmm(poses, 8, seed=seed)
    return save_gmm(path, means, covars, weights)
