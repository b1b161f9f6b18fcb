"""How well the fit is determined: per-frame marginal covariances and a predicted 3D error.

At the solution, the undamped Gauss-Newton matrix H of a track's energy E (the normal
matrix that :class:`optimize.lm.LMProblem` assembles: ``J^T W J`` plus the prior terms'
curvatures, the Hessian of E to first order in the residuals) is the precision of the
Laplace approximation of ``exp(-E)``: its inverse is the covariance of the track's
variables. H is bordered block tridiagonal (T frame blocks of n = 75, coupled to their
neighbours by the temporal terms, and a border of m = 10 shared betas), so each frame's
marginal covariance, the n x n diagonal block of ``H^-1``, and its m x n cross block with
the betas come from a selected inversion in O(T (n^3 + n^2 m)) without forming ``H^-1``:

With ``H = [[A, E], [E^T, C]]`` (A block tridiagonal) and the block LDL^T of A
(``D_0 = A_00``, ``P_t = A[t, t-1] D_{t-1}^-1``, ``D_t = A_tt - P_t A[t, t-1]^T``)::

    forward:   R_t = E_t - P_t R_{t-1}                 (R = L^-1 E)
               S   = C - sum_t R_t^T D_t^-1 R_t        (the Schur complement of A)
    backward:  X_t = D_t^-1 R_t - P_{t+1}^T X_{t+1}    (X = A^-1 E)
               (A^-1)_tt = D_t^-1 + P_{t+1}^T (A^-1)_{t+1,t+1} P_{t+1}
    then:      Sigma_bb = S^-1,  Sigma_tb = -X_t S^-1,  Sigma_tt = (A^-1)_tt + X_t S^-1 X_t^T.

The covariance is propagated to the pelvis-aligned SMPL joints (what
``pipeline.qa.metrics.mpjpe`` compares): with ``J_t`` = d joints(t) / d frame t's
variables and ``J_b`` = d joints(t) / d betas variables, each joint's 3 x 3 covariance is
the joint's rows of ``J_t Sigma_tt J_t^T + 2 sym(J_t Sigma_tb J_b^T) + J_b Sigma_bb J_b^T``.
As in the Gauss-Newton covariance estimate ``sigma^2 (J^T J)^-1``, the covariance is scaled
by the track's residual level, ``sigma^2 = E / T_det`` (its energy per frame with a
detection, in the fit's size-invariant units): ``H^-1`` alone says how well the data determine the parameters if the
terms' weights were the noise's, the scale says how well the track's data agree with the
model. A frame's predicted error is ``PRED_ERR_CALIBRATION`` x the mean over the 24 joints
of ``sqrt(sigma^2 trace)`` of that covariance, in millimetres (the pelvis itself counts as
0, as in MPJPE).

Undetermined is ``inf``: a frame without the track's own detection, every frame of a track
whose H is not positive definite at the solution (a Cholesky factorisation fails:
singular or indefinite), or whose propagated variance is not finite. Never a small number.
The inversion runs in float64 whatever the fit's dtype.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from optimize.problem import NUM_BETAS, NUM_JOINTS, NUM_POSE

# One factor from the residual-scaled covariance to the expected 3D error: E's weights are
# not noise variances. Fitted by ``python -m bench.uncertainty --fit`` on the tuning
# generator's tracks (pipeline.synth.tracks) only: the median over frames of true
# per-frame MPJPE / uncalibrated predicted error.
PRED_ERR_CALIBRATION = 0.294
PELVIS = 0
# frames (tracks x padded frames) per selected inversion: bounds the float64 blocks kept
# between the forward and the backward pass (about 2 x 45 kB per frame)
CHUNK_FRAMES = 1024


@dataclass(frozen=True)
class SelectedInverse:
    """Blocks of ``H^-1`` for a batch of bordered block-tridiagonal H.

    Attributes:
        frames: (B, T, n, n) Sigma_tt, the diagonal blocks (identity on masked frames).
        cross: (B, T, n, m) Sigma_tb, the frame-border blocks (0 on masked frames).
        border: (B, m, m) Sigma_bb.
        ok: (B,) bool, False where H was not positive definite (the blocks are then not
            meaningful).
    """

    frames: Tensor
    cross: Tensor
    border: Tensor
    ok: Tensor


def _masked(diagonal: Tensor, lower: Tensor, border: Tensor, frame_mask: Tensor | None):
    """float64 blocks with masked frames replaced by the identity and decoupled."""
    diagonal, lower, border = diagonal.double(), lower.double(), border.double()
    if frame_mask is None:
        return diagonal, lower, border
    eye = torch.eye(diagonal.shape[-1], dtype=torch.float64, device=diagonal.device)
    pair = torch.zeros_like(frame_mask)
    pair[:, 1:] = frame_mask[:, 1:] & frame_mask[:, :-1]
    diagonal = torch.where(frame_mask[..., None, None], diagonal, eye)
    lower = torch.where(pair[..., None, None], lower, 0.0)
    border = torch.where(frame_mask[..., None, None], border, 0.0)
    return diagonal, lower, border


def _cholesky(block: Tensor) -> tuple[Tensor, Tensor]:
    """Cholesky factor of the symmetric part of (B, k, k) blocks, the identity where it fails
    (so that a failed system's values stay finite and apart), and ok (B,)."""
    factor, info = torch.linalg.cholesky_ex(0.5 * (block + block.transpose(-1, -2)))
    good = info == 0
    eye = torch.eye(block.shape[-1], dtype=block.dtype, device=block.device)
    return torch.where(good[:, None, None], factor, eye), good


def _selected_blocks(diagonal: Tensor, lower: Tensor, border: Tensor, corner: Tensor,
                     frame_mask: Tensor | None) -> tuple[Iterator[tuple[int, Tensor, Tensor]], Tensor, Tensor]:
    """The forward pass, then an iterator over the backward pass (the module docstring's recursion).

    Returns:
        an iterator of (t, Sigma_tt (B, n, n), Sigma_tb (B, n, m)) from the last frame to
        the first, Sigma_bb (B, m, m) and ok (B,), all float64.
    """
    diagonal, lower, border = _masked(diagonal, lower, border, frame_mask)
    corner = corner.double()
    B, T, n, _ = diagonal.shape
    ok = torch.ones(B, dtype=torch.bool, device=diagonal.device)
    inverses, couplings, reduced = [], [None], []  # D_t^-1, P_t (from t = 1), R_t
    schur = corner.clone()
    for t in range(T):
        block, right = diagonal[:, t], border[:, t]
        if t > 0:
            coupling = lower[:, t] @ inverses[-1]  # P_t
            block = block - coupling @ lower[:, t].transpose(-1, -2)
            right = right - coupling @ reduced[-1]
            couplings.append(coupling)
        factor, good = _cholesky(block)
        ok &= good
        inverse = torch.cholesky_inverse(factor)
        inverses.append(inverse)
        reduced.append(right)
        schur = schur - right.transpose(-1, -2) @ inverse @ right
    schur_factor, good = _cholesky(schur)
    ok &= good
    sigma_bb = torch.cholesky_inverse(schur_factor)

    def backward() -> Iterator[tuple[int, Tensor, Tensor]]:
        a_inv = solved = None  # (A^-1)_{t+1,t+1}, X_{t+1}
        for t in reversed(range(T)):
            a_t = inverses[t]
            x_t = inverses[t] @ reduced[t]
            if a_inv is not None:
                following = couplings[t + 1]
                a_t = a_t + following.transpose(-1, -2) @ a_inv @ following
                x_t = x_t - following.transpose(-1, -2) @ solved
            a_inv, solved = a_t, x_t
            cross = -x_t @ sigma_bb
            yield t, a_t + x_t @ sigma_bb @ x_t.transpose(-1, -2), cross

    return backward(), sigma_bb, ok


def selected_inverse(diagonal: Tensor, lower: Tensor, border: Tensor, corner: Tensor,
                     frame_mask: Tensor | None = None) -> SelectedInverse:
    """The diagonal and border blocks of ``H^-1`` (float64), blocks as in
    :func:`optimize.blocks.solve_bordered_tridiagonal`.

    Args:
        diagonal: (B, T, n, n) H[t, t]. lower: (B, T, n, n) H[t, t-1] (entry 0 ignored).
        border: (B, T, n, m) H[t, border]. corner: (B, m, m) H[border, border].
        frame_mask: optional (B, T) bool; masked frames are decoupled identity blocks.

    Returns:
        :class:`SelectedInverse`.
    """
    blocks, sigma_bb, ok = _selected_blocks(diagonal, lower, border, corner, frame_mask)
    B, T, n, _ = diagonal.shape
    frames = torch.empty(B, T, n, n, dtype=torch.float64, device=diagonal.device)
    cross = torch.empty(B, T, n, corner.shape[-1], dtype=torch.float64, device=diagonal.device)
    for t, sigma_tt, sigma_tb in blocks:
        frames[:, t], cross[:, t] = sigma_tt, sigma_tb
    return SelectedInverse(frames, cross, sigma_bb, ok)


def joint_variances(diagonal: Tensor, lower: Tensor, border: Tensor, corner: Tensor, frame_mask: Tensor,
                    joints_frame: Tensor, joints_border: Tensor) -> tuple[Tensor, Tensor]:
    """Each joint's positional variance (trace of its 3 x 3 covariance) from ``H^-1``.

    Args:
        diagonal, lower, border, corner, frame_mask: H's blocks (:func:`selected_inverse`).
        joints_frame: (B, T, R, n) d joint coordinates(t) / d frame t's variables (R = 3 x
            joints rows, pelvis-aligned, metres per variable unit).
        joints_border: (B, T, R, m) d joint coordinates(t) / d border variables.

    Returns:
        (B, T, R // 3) float64 trace of each joint's covariance, m^2; ok (B,).
    """
    blocks, sigma_bb, ok = _selected_blocks(diagonal, lower, border, corner, frame_mask)
    B, T, R, _ = joints_frame.shape
    out = torch.empty(B, T, R, dtype=torch.float64, device=diagonal.device)
    for t, sigma_tt, sigma_tb in blocks:
        jf, jb = joints_frame[:, t].double(), joints_border[:, t].double()
        row_var = ((jf @ sigma_tt) * jf).sum(-1) + 2.0 * ((jf @ sigma_tb) * jb).sum(-1) + ((jb @ sigma_bb) * jb).sum(-1)
        out[:, t] = row_var
    return out.view(B, T, R // 3, 3).sum(-1), ok


def predicted_joint_error_mm(trace: Tensor, ok: Tensor, determined: Tensor) -> Tensor:
    """Per-frame predicted error, mm: ``PRED_ERR_CALIBRATION`` x mean over joints of sqrt(trace).

    Args:
        trace: (B, T, J) joint covariance traces, m^2 (:func:`joint_variances`).
        ok: (B,) H positive definite.
        determined: (B, T) frames that can be determined (the track's own detection).

    Returns:
        (B, T) float64, inf where undetermined (not ``ok``, not ``determined``, a negative
        or non-finite variance).
    """
    bad = ~torch.isfinite(trace).all(-1) | (trace < -1e-12).any(-1)
    error = PRED_ERR_CALIBRATION * 1000.0 * trace.clamp(min=0.0).sqrt().mean(-1)
    usable = ok[:, None] & determined & ~bad & torch.isfinite(error)
    return torch.where(usable, error, torch.full_like(error, float("inf")))


def fit_uncertainty(problem, x: Tensor, determined: Tensor, chunk_frames: int = CHUNK_FRAMES) -> tuple[Tensor, Tensor]:
    """Predicted per-frame 3D joint error of a batch of fitted tracks, mm.

    Args:
        problem: :class:`optimize.lm.LMProblem` of the energy minimised last (its
            ``packed`` tracks, body model, prior and settings).
        x: (B, 10 + 75 T) the solution, solver variables.
        determined: (B, T) bool, frames with the track's own detection.
        chunk_frames: tracks are linearised and inverted in groups of about this many
            padded frames (memory).

    Returns:
        (B, T) float64 predicted error per frame, mm, inf where undetermined (see the module
        docstring); and (B, T) the same on every real frame, frames without a detection
        included (the error of a pose the fit interpolates; inf only where the normal matrix
        is not positive definite or the variance not finite), for the track's summary.
    """
    B = x.shape[0]
    T = problem.packed.num_frames_max
    per = max(1, chunk_frames // max(T, 1))
    out, masked = [], []
    with torch.no_grad():
        for start in range(0, B, per):
            index = torch.arange(start, min(B, start + per), device=x.device)
            lin = problem.linearize(x[index], index)
            pose, betas, _ = problem.packed.decode(x[index], index)
            b = index.numel()
            n_frames = b * T
            jac = problem.body.jacobians(pose.reshape(n_frames, NUM_POSE),
                                         betas[:, None].expand(b, T, NUM_BETAS).reshape(n_frames, NUM_BETAS))
            joints_pose = jac["joints_pose"].double().reshape(b, T, NUM_JOINTS, 3, NUM_POSE)
            joints_betas = jac["joints_betas"].double().reshape(b, T, NUM_JOINTS, 3, NUM_BETAS)
            joints_pose = joints_pose - joints_pose[:, :, PELVIS : PELVIS + 1]
            joints_betas = joints_betas - joints_betas[:, :, PELVIS : PELVIS + 1]
            per_beta = (1.0 / problem.packed.betas_scale[index].double())[:, None, None, None, None]
            frame_rows = torch.zeros(b, T, 3 * NUM_JOINTS, lin.diagonal.shape[-1], dtype=torch.float64, device=x.device)
            frame_rows[..., :NUM_POSE] = joints_pose.reshape(b, T, 3 * NUM_JOINTS, NUM_POSE)
            border_rows = (joints_betas * per_beta).reshape(b, T, 3 * NUM_JOINTS, NUM_BETAS)
            mask = problem.packed.batch.frame_mask[index]
            trace, ok = joint_variances(lin.diagonal, lin.lower, lin.border, lin.corner, mask, frame_rows, border_rows)
            # sigma^2 = E / T_detected: the residual scale of the Gauss-Newton covariance
            # estimate, per frame that has residuals (frames in a detection gap add none, and
            # counting them would shrink the scale of exactly the tracks the data hold least)
            frames = (determined[index] & mask).sum(1).double().clamp(min=1.0)
            residual_scale = (lin.energy.double() / frames).clamp(min=0.0)
            every = predicted_joint_error_mm(trace * residual_scale[:, None, None], ok, mask)
            out.append(every)
            masked.append(torch.where(determined[index], every, torch.full_like(every, float("inf"))))
    return torch.cat(masked, 0), torch.cat(out, 0)
