"""Pure geometry functions over any batch shape (pytorch3d ``rotation_conversions`` style).

All functions take and return torch tensors, keep the leading batch dimensions ``...``,
work in float32 and float64 and are differentiable (finite gradients at the identity).
Rotation matrices act on column vectors (``x' = R @ x``).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Below this squared angle (rad^2) the Rodrigues coefficients use their Taylor series.
_SMALL_ANGLE_SQ = 1e-6


def _check_last_dims(name: str, tensor: Tensor, shape: tuple[int, ...]) -> None:
    if tensor.shape[tensor.dim() - len(shape) :] != shape or tensor.dim() < len(shape):
        raise ValueError(
            f"{name} must have shape (..., {', '.join(map(str, shape))}), "
            f"got {tuple(tensor.shape)}"
        )


def skew(vector: Tensor) -> Tensor:
    """Cross-product matrix ``[v]_x`` with ``[v]_x @ w = v x w``.

    Args:
        vector: (..., 3).

    Returns:
        (..., 3, 3).
    """
    _check_last_dims("vector", vector, (3,))
    x, y, z = vector.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack(
        (zero, -z, y, z, zero, -x, -y, x, zero), dim=-1
    ).reshape(vector.shape[:-1] + (3, 3))


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Rodrigues' formula, with Taylor series near 0 (exact and smooth at the identity).

    Args:
        axis_angle: (..., 3) rotation vectors, radians (direction = axis, norm = angle).

    Returns:
        (..., 3, 3) rotation matrices.
    """
    _check_last_dims("axis_angle", axis_angle, (3,))
    theta_sq = (axis_angle * axis_angle).sum(-1)
    small = theta_sq < _SMALL_ANGLE_SQ
    # Evaluate the closed form only where it is well conditioned; the other branch sees a
    # dummy angle so that neither value nor gradient becomes NaN.
    safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    theta = safe_sq.sqrt()
    a_big = torch.sin(theta) / theta  # sin(t) / t
    b_big = (1.0 - torch.cos(theta)) / safe_sq  # (1 - cos t) / t^2
    a_small = 1.0 - theta_sq / 6.0 + theta_sq * theta_sq / 120.0
    b_small = 0.5 - theta_sq / 24.0 + theta_sq * theta_sq / 720.0
    a = torch.where(small, a_small, a_big)[..., None, None]
    b = torch.where(small, b_small, b_big)[..., None, None]
    k = skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a * k + b * (k @ k)


def _sqrt_positive(x: Tensor) -> Tensor:
    """sqrt(max(0, x)) with a zero (not NaN) gradient at 0."""
    positive = x > 0
    out = torch.zeros_like(x)
    out[positive] = torch.sqrt(x[positive])
    return out


def matrix_to_quaternion(matrix: Tensor) -> Tensor:
    """Rotation matrix to unit quaternion (w, x, y, z) with w >= 0.

    Picks the best-conditioned of the four closed forms, so it is accurate near 180 deg.

    Args:
        matrix: (..., 3, 3) rotation matrices.

    Returns:
        (..., 4) quaternions, real part first.
    """
    _check_last_dims("matrix", matrix, (3, 3))
    batch = matrix.shape[:-2]
    m = matrix.reshape(batch + (9,))
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.unbind(-1)
    q_abs = _sqrt_positive(
        torch.stack(
            (
                1.0 + m00 + m11 + m22,
                1.0 + m00 - m11 - m22,
                1.0 - m00 + m11 - m22,
                1.0 - m00 - m11 + m22,
            ),
            dim=-1,
        )
    )
    # Row i is the quaternion scaled by 2 * q_i, computed from the i-th candidate.
    candidates = torch.stack(
        (
            torch.stack((q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01), dim=-1),
            torch.stack((m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20), dim=-1),
            torch.stack((m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21), dim=-1),
            torch.stack((m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2), dim=-1),
        ),
        dim=-2,
    )
    floor = torch.tensor(0.1, dtype=q_abs.dtype, device=q_abs.device)
    candidates = candidates / (2.0 * torch.maximum(q_abs[..., None], floor))
    best = q_abs.argmax(dim=-1)
    quat = torch.gather(candidates, -2, best[..., None, None].expand(batch + (1, 4)))[..., 0, :]
    quat = torch.where(quat[..., :1] < 0, -quat, quat)
    return quat / quat.norm(dim=-1, keepdim=True)


def quaternion_to_axis_angle(quaternion: Tensor) -> Tensor:
    """Unit quaternion (w, x, y, z) to rotation vector with angle in [0, pi].

    Args:
        quaternion: (..., 4), real part first.

    Returns:
        (..., 3) rotation vectors, radians.
    """
    _check_last_dims("quaternion", quaternion, (4,))
    quaternion = torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)
    w = quaternion[..., 0]
    v = quaternion[..., 1:]
    sin_half_sq = (v * v).sum(-1)
    small = sin_half_sq < _SMALL_ANGLE_SQ
    safe_sq = torch.where(small, torch.ones_like(sin_half_sq), sin_half_sq)
    sin_half = safe_sq.sqrt()
    half = torch.atan2(sin_half, w)
    scale_big = 2.0 * half / sin_half
    # 2 * atan(s / w) / s by its series (w ~ 1 here since the angle is small).
    safe_w = torch.where(small, w, torch.ones_like(w))
    ratio_sq = sin_half_sq / (safe_w * safe_w)
    scale_small = (2.0 / safe_w) * (1.0 - ratio_sq / 3.0 + ratio_sq * ratio_sq / 5.0)
    scale = torch.where(small, scale_small, scale_big)
    return v * scale[..., None]


def matrix_to_axis_angle(matrix: Tensor) -> Tensor:
    """Rotation matrix to rotation vector, accurate near 0 and near pi.

    Args:
        matrix: (..., 3, 3) rotation matrices.

    Returns:
        (..., 3) rotation vectors, radians, angle in [0, pi] (at exactly pi either of the
        two equivalent vectors).
    """
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def rotation_6d_to_matrix(rotation_6d: Tensor) -> Tensor:
    """Continuous 6D rotation representation (Zhou et al. 2019) to rotation matrix.

    Gram-Schmidt on the two 3-vectors; they become the first two rows of the matrix
    (pytorch3d's convention).

    Args:
        rotation_6d: (..., 6).

    Returns:
        (..., 3, 3) rotation matrices.
    """
    _check_last_dims("rotation_6d", rotation_6d, (6,))
    a1, a2 = rotation_6d[..., :3], rotation_6d[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = torch.nn.functional.normalize(b2, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-2)


def matrix_to_rotation_6d(matrix: Tensor) -> Tensor:
    """Rotation matrix to the 6D representation (its first two rows).

    Args:
        matrix: (..., 3, 3).

    Returns:
        (..., 6).
    """
    _check_last_dims("matrix", matrix, (3, 3))
    return matrix[..., :2, :].reshape(matrix.shape[:-2] + (6,))


def weak_perspective_project(points: Tensor, camera: Tensor) -> Tensor:
    """Weak-perspective projection ``x = s * X + tx``, ``y = s * Y + ty`` (paper eq. 3).

    The global rotation R of ``x = s * Pi(R X) + u`` is already applied: ``points`` are
    SMPL joints after the global orientation (x right, y down, metres).

    Args:
        points: (..., N, 3) metres.
        camera: (..., 3) ``(s, tx, ty)``: s in pixels per metre, tx, ty in pixels.

    Returns:
        (..., N, 2) pixels.
    """
    _check_last_dims("points", points, (3,))
    _check_last_dims("camera", camera, (3,))
    if points.dim() < 2:
        raise ValueError(f"points must have shape (..., N, 3), got {tuple(points.shape)}")
    scale = camera[..., None, :1]
    offset = camera[..., None, 1:]
    return scale * points[..., :2] + offset


def procrustes_align(pred: Tensor, target: Tensor) -> Tensor:
    """Similarity (scale, rotation, translation) alignment of ``pred`` onto ``target``.

    Least-squares Umeyama solution without reflections; used for PA-MPJPE.

    Args:
        pred: (..., N, 3) points.
        target: (..., N, 3) points, same shape.

    Returns:
        (..., N, 3) ``pred`` after the best similarity transform onto ``target``.
    """
    _check_last_dims("pred", pred, (3,))
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    mu_pred = pred.mean(dim=-2, keepdim=True)
    mu_target = target.mean(dim=-2, keepdim=True)
    x = pred - mu_pred
    y = target - mu_target
    var_x = (x * x).sum(dim=(-2, -1))
    cov = x.transpose(-1, -2) @ y  # (..., 3, 3) = sum_i x_i y_i^T
    u, sigma, vh = torch.linalg.svd(cov)
    v = vh.transpose(-1, -2)
    # Reflection guard: flip the weakest axis if det(V U^T) < 0.
    det = torch.linalg.det(v @ u.transpose(-1, -2))
    sign = torch.ones_like(sigma)
    sign[..., 2] = torch.where(det < 0, -1.0, 1.0).to(sigma.dtype)
    rotation = v @ (sign[..., :, None] * u.transpose(-1, -2))  # maps x -> y
    scale = (sigma * sign).sum(-1) / var_x.clamp_min(torch.finfo(pred.dtype).tiny)
    aligned = scale[..., None, None] * (x @ rotation.transpose(-1, -2))
    return aligned + mu_target
