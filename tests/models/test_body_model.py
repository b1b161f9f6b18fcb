"""BodyModel: the fast joints path equals smplx's output and is differentiable."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import smplx
import torch

from models.body_model import BodyModel, smplx_rodrigues
from models.joint_names import COCO17_BODY_SMPL24_IDS, COCO17_FACE_VERTEX_IDS, COCO17_INDEX
from models.smpl_io import ModelFileError

# smplx's joint output order for the face vertices: nose, reye, leye, rear, lear.
SMPLX_FACE_TO_COCO = [24, 26, 25, 28, 27]


def _smplx(path, dtype):
    with contextlib.redirect_stdout(io.StringIO()):
        return smplx.SMPL(model_path=str(path), dtype=dtype)


def _inputs(batch, dtype, scale=0.6, seed=0):
    g = torch.Generator().manual_seed(seed)
    pose = torch.randn(batch, 72, generator=g, dtype=torch.float64) * scale
    pose[0] = 0.0  # the rest pose, where Rodrigues is singular
    pose[1, 3:6] = torch.tensor([np.pi - 1e-4, 0.0, 0.0])  # near pi
    betas = torch.randn(batch, 10, generator=g, dtype=torch.float64) * 1.5
    return pose.to(dtype), betas.to(dtype)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-9)])
def test_fast_path_matches_smplx(standin, dtype, tol):
    model = BodyModel.from_file(standin.neutral, dtype=dtype)
    ref = _smplx(standin.neutral, dtype)
    pose, betas = _inputs(32, dtype, scale=1.0)
    out = ref(betas=betas, global_orient=pose[:, :3], body_pose=pose[:, 3:])
    joints, keypoints = model.joints_and_keypoints(pose, betas)
    assert joints.dtype == dtype
    assert (joints - out.joints[:, :24]).abs().max() <= tol
    assert (keypoints[:, :5] - out.joints[:, SMPLX_FACE_TO_COCO]).abs().max() <= tol
    assert (keypoints[:, :5] - out.vertices[:, list(COCO17_FACE_VERTEX_IDS)]).abs().max() <= tol
    assert torch.equal(keypoints[:, 5:], joints[:, list(COCO17_BODY_SMPL24_IDS)])
    assert (model.vertices(pose, betas) - out.vertices).abs().max() <= tol
    assert torch.equal(model.joints(pose, betas), joints)
    assert torch.equal(model.keypoints(pose, betas), keypoints)


def test_gradients_match_smplx_and_gradcheck(standin):
    model = BodyModel.from_file(standin.neutral, dtype=torch.float64)
    ref = _smplx(standin.neutral, torch.float64)
    pose, betas = _inputs(4, torch.float64, seed=3)
    pose.requires_grad_(True)
    betas.requires_grad_(True)
    weights = torch.randn(4, 41, 3, dtype=torch.float64)

    joints, keypoints = model.joints_and_keypoints(pose, betas)
    loss = (torch.cat([joints, keypoints], 1) * weights).sum()
    grad_pose, grad_betas = torch.autograd.grad(loss, (pose, betas))

    out = ref(betas=betas, global_orient=pose[:, :3], body_pose=pose[:, 3:])
    ref_kp = torch.cat(
        [out.joints[:, SMPLX_FACE_TO_COCO], out.joints[:, list(COCO17_BODY_SMPL24_IDS)]], dim=1
    )
    ref_loss = (torch.cat([out.joints[:, :24], ref_kp], 1) * weights).sum()
    ref_pose, ref_betas = torch.autograd.grad(ref_loss, (pose, betas))
    assert torch.allclose(grad_pose, ref_pose, atol=1e-9)
    assert torch.allclose(grad_betas, ref_betas, atol=1e-9)

    small_pose = pose[2:3].detach().clone().requires_grad_(True)
    small_betas = betas[2:3].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda p, b: model.joints_and_keypoints(p, b), (small_pose, small_betas), atol=1e-7, fast_mode=True
    )
    # Finite gradient at the exact rest pose.
    zero = torch.zeros(1, 72, dtype=torch.float64, requires_grad=True)
    model.keypoints(zero, small_betas.detach()).sum().backward()
    assert torch.isfinite(zero.grad).all()


def test_any_batch_shape_and_broadcasting(body_model):
    pose = torch.randn(3, 5, 72) * 0.3
    betas = torch.randn(3, 1, 10)
    joints, keypoints = body_model.joints_and_keypoints(pose, betas)
    assert joints.shape == (3, 5, 24, 3) and keypoints.shape == (3, 5, 17, 3)
    flat = body_model.joints(pose.reshape(15, 72), betas.expand(3, 5, 10).reshape(15, 10))
    assert torch.allclose(joints.reshape(15, 24, 3), flat, atol=1e-6)
    assert body_model.joints(torch.zeros(72), torch.zeros(10)).shape == (24, 3)
    assert body_model.vertices(pose[0, :2], betas[0]).shape == (2, 6890, 3)
    assert body_model.faces.shape == (13776, 3) and body_model.faces.dtype == np.int64
    assert list(body_model.parameters()) == []
    with pytest.raises(ValueError, match=r"pose must have shape \(\.\.\., 72\)"):
        body_model.joints(torch.zeros(2, 69), torch.zeros(2, 10))
    with pytest.raises(ValueError, match="betas"):
        body_model.joints(torch.zeros(2, 72), torch.zeros(2, 9))


def test_rest_joints_and_global_orientation(body_model):
    betas = torch.randn(4, 10)
    rest = body_model.rest_joints(betas)
    assert torch.allclose(body_model.joints(torch.zeros(4, 72), betas), rest, atol=1e-6)
    # An upright person facing the camera has global orient (pi, 0, 0): y down, z away.
    pose = torch.zeros(72)
    pose[0] = np.pi
    joints = body_model.joints(pose, torch.zeros(10))
    head, ankle = joints[15], joints[7]
    assert head[1] < ankle[1]
    keypoints = body_model.keypoints(pose, torch.zeros(10))
    assert keypoints[COCO17_INDEX["nose"], 2] < joints[15, 2]  # the nose points at the camera


def test_smplx_rodrigues_is_smplx(body_model):
    from smplx.lbs import batch_rodrigues

    r = torch.randn(100, 3, dtype=torch.float64)
    assert torch.allclose(smplx_rodrigues(r), batch_rodrigues(r), atol=1e-15)


def test_extra_regressor(standin, tmp_path):
    rng = np.random.default_rng(0)
    regressor = np.zeros((3, 6890))
    for row in regressor:
        cols = rng.choice(6890, 6, replace=False)
        row[cols] = rng.random(6)
        row /= row.sum()
    npy = tmp_path / "extra.npy"
    np.save(npy, regressor)
    npz = tmp_path / "extra_named.npz"
    np.savez(npz, J_regressor=regressor, names=np.array(["left_hip", "right_hip", "chin"]))

    pose, betas = _inputs(6, torch.float64, seed=5)
    plain = BodyModel.from_file(standin.neutral, dtype=torch.float64, extra_regressor=npy)
    named = BodyModel.from_file(standin.neutral, dtype=torch.float64, extra_regressor=npz)
    base = BodyModel.from_file(standin.neutral, dtype=torch.float64)
    verts = base.vertices(pose, betas)
    expected = torch.einsum("ev,nvd->ned", torch.as_tensor(regressor), verts)
    assert torch.allclose(plain.extra_joints(pose, betas), expected, atol=1e-12)
    assert torch.allclose(plain.keypoints(pose, betas), base.keypoints(pose, betas), atol=1e-12)
    keypoints = named.keypoints(pose, betas)
    assert torch.allclose(keypoints[:, COCO17_INDEX["left_hip"]], expected[:, 0], atol=1e-12)
    assert torch.allclose(keypoints[:, COCO17_INDEX["right_hip"]], expected[:, 1], atol=1e-12)
    assert torch.allclose(keypoints[:, COCO17_INDEX["left_knee"]], base.keypoints(pose, betas)[:, 13], atol=1e-12)
    assert base.extra_joints(pose, betas).shape == (6, 0, 3)

    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 100)))
    with pytest.raises(ModelFileError, match=r"bad.npy.*\(3, 100\)"):
        BodyModel.from_file(standin.neutral, extra_regressor=bad)
    with pytest.raises(FileNotFoundError, match="nothing.npy"):
        BodyModel.from_file(standin.neutral, extra_regressor=tmp_path / "nothing.npy")


def test_genders_and_quiet_loading(standin, capsys):
    male = BodyModel.from_file(standin.directory, gender="male")
    assert male.gender == "male" and male.source == str(standin.male)
    assert BodyModel.from_file(standin.female).gender == "female"
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # smplx's print() warning is muted
    neutral = BodyModel.from_file(standin.neutral)
    height = lambda m: float(np.ptp(m.v_template[:, 1].numpy()))  # noqa: E731
    assert height(male) > height(neutral)


def test_analytic_jacobians_match_autograd(standin):
    """BodyModel.jacobians (for a Gauss-Newton solver) against autograd, float64."""
    body = BodyModel.from_file(standin.neutral, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    pose = 0.4 * torch.randn(3, 72, generator=g, dtype=torch.float64)
    pose[0, 6:9] = 0.0  # a joint at the zero rotation (series branch)
    betas = torch.randn(3, 10, generator=g, dtype=torch.float64)
    out = body.jacobians(pose, betas)
    joints, keypoints = body.joints_and_keypoints(pose, betas)
    assert torch.allclose(out["joints"], joints, atol=1e-12) and torch.allclose(out["keypoints"], keypoints, atol=1e-12)
    by_pose = torch.autograd.functional.jacobian(lambda p: body.joints_and_keypoints(p, betas), pose)
    by_betas = torch.autograd.functional.jacobian(lambda b: body.joints_and_keypoints(pose, b), betas)
    rows = torch.arange(3)
    for name, auto in (("joints_pose", by_pose[0]), ("keypoints_pose", by_pose[1]),
                       ("joints_betas", by_betas[0]), ("keypoints_betas", by_betas[1])):
        # smplx's Rodrigues perturbs the angle by 1e-8 rad: agreement to ~1e-8, not 1e-15
        assert torch.allclose(out[name], auto[rows, :, :, rows], atol=5e-8), name


def test_analytic_jacobians_with_extra_regressor(standin, tmp_path):
    """Keypoints taken from an extra regressor (hips) and its Jacobians against autograd."""
    rng = np.random.default_rng(1)
    regressor = np.zeros((2, 6890))
    for row in regressor:
        row[rng.choice(6890, 6, replace=False)] = rng.random(6)
        row /= row.sum()
    npz = tmp_path / "extra_named.npz"
    np.savez(npz, J_regressor=regressor, names=np.array(["right_hip", "left_hip"]))
    body = BodyModel.from_file(standin.neutral, dtype=torch.float64, extra_regressor=npz)
    pose, betas = _inputs(2, torch.float64, seed=3)
    out = body.jacobians(pose, betas)
    assert torch.allclose(out["keypoints"], body.keypoints(pose, betas), atol=1e-12)
    by_pose = torch.autograd.functional.jacobian(lambda p: body.keypoints(p, betas), pose)
    by_betas = torch.autograd.functional.jacobian(lambda b: body.keypoints(pose, b), betas)
    rows = torch.arange(2)
    assert torch.allclose(out["keypoints_pose"], by_pose[rows, :, :, rows], atol=5e-8)
    assert torch.allclose(out["keypoints_betas"], by_betas[rows, :, :, rows], atol=5e-8)
