"""HMR regressor: shapes, SPIN checkpoint loading, 6D layout and the crop camera."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.geometry import axis_angle_to_matrix
from models.hmr import (
    HMR,
    HMRRegressor,
    crop_camera_to_image,
    image_camera_to_crop,
    load_mean_params,
    matrix_to_spin_6d,
    spin_6d_to_matrix,
)


def write_mean_params(path):
    """A SPIN-format mean-parameter file (upright, facing the camera, rest body pose)."""
    rot = torch.eye(3).repeat(24, 1, 1)
    rot[0] = axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0]))
    np.savez(path, pose=matrix_to_spin_6d(rot).reshape(144).numpy(), shape=np.zeros(10), cam=np.array([0.9, 0.0, 0.0]))
    return path


@pytest.fixture(scope="module")
def mean_params(tmp_path_factory):
    return write_mean_params(tmp_path_factory.mktemp("hmr") / "vid2mesh_test_mean_params.npz")


def _spin_reference(x):
    """SPIN's rot6d_to_rotmat, verbatim in behaviour."""
    x = x.view(-1, 3, 2)
    a1, a2 = x[:, :, 0], x[:, :, 1]
    b1 = torch.nn.functional.normalize(a1)
    b2 = torch.nn.functional.normalize(a2 - torch.einsum("bi,bi->b", b1, a2).unsqueeze(-1) * b1)
    b3 = torch.cross(b1, b2, dim=1)
    return torch.stack((b1, b2, b3), dim=-1)


def test_spin_6d_layout():
    x = torch.randn(50, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(spin_6d_to_matrix(x).numpy(), _spin_reference(x).numpy(), atol=1e-12)
    rot = spin_6d_to_matrix(x)
    np.testing.assert_allclose(spin_6d_to_matrix(matrix_to_spin_6d(rot)).numpy(), rot.numpy(), atol=1e-12)


@pytest.mark.slow
def test_forward_shapes_and_checkpoint_round_trip(mean_params, tmp_path):
    torch.manual_seed(0)
    model = HMR(load_mean_params(mean_params)).eval()
    crops = np.random.default_rng(0).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        rotmat, betas, cam = model(x)
    assert rotmat.shape == (2, 24, 3, 3) and betas.shape == (2, 10) and cam.shape == (2, 3)
    eye = rotmat @ rotmat.transpose(-1, -2)
    np.testing.assert_allclose(eye.numpy(), np.broadcast_to(np.eye(3), eye.shape), atol=1e-5)

    wrapped = tmp_path / "hmr_test_weights.pt"
    torch.save({"model": model.state_dict(), "optimizer": {}, "epoch": 3}, wrapped)
    bare = tmp_path / "hmr_test_bare.pt"
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, bare)
    out = HMRRegressor.from_files(wrapped, mean_params, batch_size=1).predict(crops)
    assert out.pose.shape == (2, 72) and out.betas.shape == (2, 10) and out.crop_camera.shape == (2, 3)
    back = axis_angle_to_matrix(torch.from_numpy(out.pose).reshape(2, 24, 3).double())
    np.testing.assert_allclose(back.numpy(), rotmat.double().numpy(), atol=1e-4)
    np.testing.assert_allclose(out.betas, betas.numpy(), atol=1e-5)
    np.testing.assert_allclose(out.crop_camera, cam.numpy(), atol=1e-5)
    loaded = HMRRegressor.from_files(bare, mean_params).model.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(loaded[name], value), name


def test_bad_checkpoints(mean_params, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        HMRRegressor.from_files(tmp_path / "none.pt", mean_params)
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"conv1.weight": torch.zeros(1)}}, wrong)
    with pytest.raises((ValueError, RuntimeError)):
        HMRRegressor.from_files(wrong, mean_params)
    bad_mean = tmp_path / "bad_mean.npz"
    np.savez(bad_mean, pose=np.zeros(72), shape=np.zeros(10), cam=np.zeros(3))
    with pytest.raises(ValueError, match="pose"):
        load_mean_params(bad_mean)


def test_crop_camera_round_trip():
    rng = np.random.default_rng(1)
    points = rng.normal(0, 0.5, (5, 17, 3))
    camera = np.stack([rng.uniform(100, 400, 5), rng.uniform(0, 640, 5), rng.uniform(0, 480, 5)], 1)
    center = rng.uniform(100, 500, (5, 2))
    size = rng.uniform(150, 600, 5)
    crop = image_camera_to_crop(camera, center, size)
    np.testing.assert_allclose(crop_camera_to_image(crop, center, size), camera, rtol=1e-12)
    # crop pixels (SPIN: 112 + 112 * s_c (X + t_c)) mapped to the image = image projection
    crop_px = 112 + 112 * crop[:, None, :1] * (points[..., :2] + crop[:, None, 1:])
    image_px = center[:, None] + (crop_px - 112) * size[:, None, None] / 224
    np.testing.assert_allclose(image_px, camera[:, None, :1] * points[..., :2] + camera[:, None, 1:], atol=1e-9)
