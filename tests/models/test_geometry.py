"""Geometry functions: float64 round trips, stability near 0 and pi, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from smplx.lbs import batch_rodrigues

from models.geometry import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    procrustes_align,
    rotation_6d_to_matrix,
    weak_perspective_project,
)

F64 = torch.float64


def _random_axis_angle(shape, angle, seed=0):
    g = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(torch.randn(*shape, 3, generator=g, dtype=F64), dim=-1)
    return axis * angle


def _is_rotation(matrix, tol=1e-12):
    eye = torch.eye(3, dtype=matrix.dtype)
    assert torch.allclose(matrix @ matrix.transpose(-1, -2), eye.expand_as(matrix), atol=tol)
    assert torch.allclose(torch.linalg.det(matrix), torch.ones(matrix.shape[:-2], dtype=matrix.dtype), atol=tol)


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-7, 1e-4, 0.5, 2.0, math.pi - 1e-3, math.pi - 1e-7])
def test_axis_angle_round_trip(angle):
    r = _random_axis_angle((4, 50), angle)
    matrix = axis_angle_to_matrix(r)
    assert matrix.shape == (4, 50, 3, 3)
    _is_rotation(matrix)
    back = matrix_to_axis_angle(matrix)
    assert torch.allclose(back, r, atol=1e-10, rtol=0)


def test_round_trip_at_pi_up_to_sign():
    r = _random_axis_angle((200,), math.pi)
    back = matrix_to_axis_angle(axis_angle_to_matrix(r))
    same = torch.minimum((back - r).norm(dim=-1), (back + r).norm(dim=-1))
    assert same.max() < 1e-7
    assert torch.allclose(axis_angle_to_matrix(back), axis_angle_to_matrix(r), atol=1e-12)


def test_matrix_to_axis_angle_random_rotations():
    g = torch.Generator().manual_seed(3)
    r = _random_axis_angle((1000,), 1.0)
    matrix = axis_angle_to_matrix(r * torch.rand(1000, 1, generator=g, dtype=F64) * 3.1)
    back = axis_angle_to_matrix(matrix_to_axis_angle(matrix))
    assert torch.allclose(back, matrix, atol=1e-12)
    assert matrix_to_quaternion(matrix)[..., 0].min() >= 0


def test_rodrigues_matches_smplx_and_exact_formula():
    r = _random_axis_angle((300,), 1.3, seed=4) * torch.rand(300, 1, dtype=F64)
    ours = axis_angle_to_matrix(r)
    assert torch.allclose(ours, batch_rodrigues(r), atol=1e-7)  # smplx perturbs by 1e-8
    # Rotating the axis itself leaves it unchanged.
    assert torch.allclose((ours @ r[..., None])[..., 0], r, atol=1e-14)


def test_gradients_are_finite_and_correct():
    x = _random_axis_angle((3,), 1.1).requires_grad_(True)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (x,))
    zero = torch.zeros(2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (zero,))
    tiny = torch.full((2, 3), 1e-5, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (tiny,))
    matrix = axis_angle_to_matrix(_random_axis_angle((2,), 2.0, seed=1)).requires_grad_(True)
    assert torch.autograd.gradcheck(matrix_to_axis_angle, (matrix,))
    six = torch.randn(2, 6, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(rotation_6d_to_matrix, (six,))


def test_rotation_6d():
    matrix = axis_angle_to_matrix(_random_axis_angle((5, 7), 2.5))
    six = matrix_to_rotation_6d(matrix)
    assert six.shape == (5, 7, 6)
    assert torch.allclose(rotation_6d_to_matrix(six), matrix, atol=1e-12)
    arbitrary = rotation_6d_to_matrix(torch.randn(100, 6, dtype=F64))
    _is_rotation(arbitrary)


def test_weak_perspective_project():
    points = torch.randn(2, 3, 17, 3, dtype=F64)
    camera = torch.tensor([[500.0, 320.0, 240.0], [250.0, 10.0, -5.0]], dtype=F64)[:, None].expand(2, 3, 3)
    pixels = weak_perspective_project(points, camera)
    assert pixels.shape == (2, 3, 17, 2)
    expected = camera[..., None, :1] * points[..., :2] + camera[..., None, 1:]
    assert torch.equal(pixels, expected)
    # x = s * X + tx exactly, depth ignored.
    assert pixels[1, 0, 4, 0] == 250.0 * points[1, 0, 4, 0] + 10.0
    with pytest.raises(ValueError, match="camera"):
        weak_perspective_project(points, camera[..., :2])


def test_procrustes_recovers_similarity():
    g = torch.Generator().manual_seed(7)
    pred = torch.randn(4, 2, 24, 3, generator=g, dtype=F64)
    rotation = axis_angle_to_matrix(_random_axis_angle((4, 2), 2.0, seed=8))
    scale = torch.rand(4, 2, 1, 1, generator=g, dtype=F64) + 0.5
    target = scale * pred @ rotation.transpose(-1, -2) + torch.randn(4, 2, 1, 3, generator=g, dtype=F64)
    aligned = procrustes_align(pred, target)
    assert aligned.shape == pred.shape
    assert torch.allclose(aligned, target, atol=1e-10)
    # Noisy target: the aligned error never exceeds the raw error and no reflection occurs.
    noisy = target + 0.05 * torch.randn(target.shape, generator=g, dtype=F64)
    aligned = procrustes_align(pred, noisy)
    assert ((aligned - noisy).norm(dim=-1).mean() <= (pred - noisy).norm(dim=-1).mean())
    mirrored = pred * torch.tensor([-1.0, 1.0, 1.0], dtype=F64)
    fitted = procrustes_align(pred, mirrored)
    centred = fitted - fitted.mean(-2, keepdim=True)
    original = pred - pred.mean(-2, keepdim=True)
    # The best proper rotation cannot reproduce a mirror image.
    assert (centred - mirrored + mirrored.mean(-2, keepdim=True)).abs().max() > 1e-3
    assert torch.linalg.det(torch.linalg.lstsq(original[0, 0], centred[0, 0]).solution) > 0
    with pytest.raises(ValueError, match="same shape"):
        procrustes_align(pred, target[..., :10, :])
