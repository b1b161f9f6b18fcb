"""Crops and initialisers: crop geometry round trip, keypoint-only init, batched HMR init."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.hmr import CROP_SIZE, crop_camera_to_image, image_camera_to_crop
from models.pose_detector import FrameDetections
from pipeline.perception.init import (
    FACING_AWAY_ORIENT,
    FACING_CAMERA_ORIENT,
    KeypointInitializer,
    crop_boxes,
    crop_people,
)


def _model_keypoints(body_model, orient):
    pose = torch.zeros(1, 72)
    pose[0, :3] = torch.tensor(orient)
    return body_model.keypoints(pose, torch.zeros(1, 10))[0].detach().double().numpy()


def _blob_centroid(crop):
    w = crop[..., 0].astype(np.float64)
    ys, xs = np.mgrid[: w.shape[0], : w.shape[1]]
    return np.array([(w * (xs + 0.5)).sum() / w.sum(), (w * (ys + 0.5)).sum() / w.sum()])


@pytest.mark.parametrize("size_scale", [1.0, 3.0])
def test_projected_body_cropped_and_mapped_back(body_model, size_scale):
    """Joints projected into an image, cropped, land where the crop camera puts them."""
    joints = _model_keypoints(body_model, FACING_CAMERA_ORIENT)
    camera = np.array([180.0, 330.0, 290.0]) * size_scale
    pixels = camera[0] * joints[:, :2] + camera[1:]
    height, width = int(600 * size_scale), int(700 * size_scale)
    keypoints = np.concatenate([pixels, np.ones((17, 1))], 1)[None]
    center, size = crop_boxes(keypoints, np.full((1, 4), np.nan))
    crop_cam = image_camera_to_crop(camera, center[0], size[0])
    ys, xs = np.mgrid[:height, :width]
    for joint in (0, 5, 10, 11, 16):
        x, y = pixels[joint]
        sigma = 2.0 * size_scale
        blob = np.exp(-((xs + 0.5 - x) ** 2 + (ys + 0.5 - y) ** 2) / (2 * sigma**2))
        frame = np.repeat((255 * blob).astype(np.uint8)[..., None], 3, axis=2)
        crop = crop_people(frame, center, size)[0]
        assert crop.shape == (CROP_SIZE, CROP_SIZE, 3)
        expected = CROP_SIZE / 2 * (1 + crop_cam[0] * (joints[joint, :2] + crop_cam[1:]))
        np.testing.assert_allclose(_blob_centroid(crop), expected, atol=0.35)
    back = crop_camera_to_image(crop_cam, center[0], size[0])
    np.testing.assert_allclose(back[0] * joints[:, :2] + back[1:], pixels, atol=1e-9)


def test_crop_boxes_use_keypoints_then_detector_box():
    kp = np.zeros((2, 17, 3))
    kp[0, :, 0] = np.linspace(100, 200, 17)
    kp[0, :, 1] = np.linspace(50, 350, 17)
    kp[0, :, 2] = 0.9
    boxes = np.array([[0, 0, 10, 10], [10, 20, 110, 220]], float)
    center, size = crop_boxes(kp, boxes)
    np.testing.assert_allclose(center, [[150, 200], [60, 120]])
    np.testing.assert_allclose(size, [1.2 * 300, 1.2 * 200])


def test_keypoint_initializer_recovers_camera_and_facing(body_model):
    init = KeypointInitializer(body_model)
    camera = np.array([210.0, 400.0, 260.0])
    front = _model_keypoints(body_model, FACING_CAMERA_ORIENT)
    back = _model_keypoints(body_model, FACING_AWAY_ORIENT)
    kp = np.zeros((3, 17, 3), np.float32)
    kp[0, :, :2] = camera[0] * front[:, :2] + camera[1:]
    kp[1, :, :2] = camera[0] * back[:, :2] + camera[1:]
    kp[2, :, :2] = kp[0, :, :2]
    kp[..., 2] = 0.9
    kp[2, 11:, 2] = 0.0  # hips and legs unseen: fall back to the keypoint extent
    out = init(kp)
    assert out.pose.shape == (3, 72) and out.betas.shape == (3, 10) and out.camera.shape == (3, 3)
    np.testing.assert_allclose(out.pose[0, :3], FACING_CAMERA_ORIENT, atol=1e-6)
    np.testing.assert_allclose(out.pose[1, :3], FACING_AWAY_ORIENT, atol=1e-6)
    np.testing.assert_allclose(out.camera[0], camera, rtol=1e-4, atol=0.05)
    np.testing.assert_allclose(out.camera[1], camera, rtol=1e-4, atol=0.05)
    np.testing.assert_allclose(out.camera[2], camera, rtol=1e-3, atol=0.5)
    assert init(np.zeros((0, 17, 3))).pose.shape == (0, 72)


@pytest.mark.slow
def test_hmr_initialize_batches_every_detection(tmp_path):
    from models.geometry import axis_angle_to_matrix
    from models.hmr import HMR, HMRRegressor, load_mean_params, matrix_to_spin_6d
    from pipeline.perception.init import hmr_initialize

    rot = torch.eye(3).repeat(24, 1, 1)
    rot[0] = axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0]))
    mean = tmp_path / "vid2mesh_test_mean_params.npz"
    np.savez(mean, pose=matrix_to_spin_6d(rot).reshape(144).numpy(), shape=np.zeros(10), cam=np.array([0.9, 0, 0]))
    torch.manual_seed(0)
    regressor = HMRRegressor(HMR(load_mean_params(mean)), batch_size=2)
    frames = np.random.default_rng(0).integers(0, 255, (3, 120, 160, 3), dtype=np.uint8)
    kp = np.zeros((2, 17, 3), np.float32)
    kp[..., 0] = np.linspace(40, 80, 17)
    kp[..., 1] = np.linspace(20, 100, 17)
    kp[..., 2] = 0.9
    boxes = np.array([[40, 20, 80, 100]] * 2, np.float32)
    dets = [
        FrameDetections(kp, boxes, np.ones(2, np.float32)),
        FrameDetections(kp[:0], boxes[:0], np.ones(0, np.float32)),
        FrameDetections(kp[:1], boxes[:1], np.ones(1, np.float32)),
    ]
    out = hmr_initialize(regressor, frames, dets)
    assert [o.pose.shape[0] for o in out] == [2, 0, 1]
    assert out[0].camera.shape == (2, 3) and out[0].betas.shape == (2, 10)
    # The crop camera is mapped into the image: its centre follows the crop box.
    center, size = crop_boxes(kp[:1], boxes[:1])
    crop = image_camera_to_crop(out[2].camera.astype(np.float64), center[0], size[0])
    np.testing.assert_allclose(crop_camera_to_image(crop, center[0], size[0]), out[2].camera, rtol=1e-5)
