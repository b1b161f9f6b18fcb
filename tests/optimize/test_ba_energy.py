"""Energy terms against hand-computed values; masking, the multi-person minimum, caps."""

from __future__ import annotations

import pytest
import torch

from optimize.config import BAConfig
from optimize.energy import TrackBatch, init_energy, reprojection_energy, temporal_energy

D = torch.float64


def _batch(B=1, T=2, P=2, frame_mask=None, candidate_mask=None, width=640.0):
    return TrackBatch(
        frame_mask=torch.ones(B, T, dtype=torch.bool) if frame_mask is None else frame_mask,
        candidates=torch.zeros(B, T, P, 17, 2, dtype=D),
        confidence=torch.ones(B, T, P, 17, dtype=D),
        candidate_mask=torch.ones(B, T, P, dtype=torch.bool) if candidate_mask is None else candidate_mask,
        init_joints=torch.zeros(B, T, P, 24, 3, dtype=D),
        init_betas=torch.zeros(B, T, P, 10, dtype=D),
        image_width=torch.full((B,), width, dtype=D),
    )


def _with(batch, **changes):
    fields = {name: getattr(batch, name) for name in batch.__dataclass_fields__}
    fields.update(changes)
    return TrackBatch(**fields)


def test_reprojection_hinge_hand_value_and_multi_person_minimum():
    config = BAConfig(reprojection_loss="hinge", hinge_margin_px=5.0, hinge_smoothing_px=2.0, tau_r_px=50.0)
    batch = _batch(T=1, P=2)
    kp = torch.zeros(1, 1, 17, 2, dtype=D)
    cand = torch.zeros(1, 1, 2, 17, 2, dtype=D)
    # candidate 0 (a distractor) is 100 px away on every keypoint; candidate 1 is 7 px off
    # on two keypoints (hinge: (7-5) -> 2 - 1 = 1 px each, weighted 0.5 and 1.0)
    cand[0, 0, 0, :, 0] = 100.0
    cand[0, 0, 1, 3, 0] = 7.0
    cand[0, 0, 1, 4, 1] = -7.0
    conf = torch.ones(1, 1, 2, 17, dtype=D)
    conf[0, 0, 1, 3] = 0.5
    batch = _with(batch, candidates=cand, confidence=conf)
    energy, frame_error, matched = reprojection_energy(kp, batch, config)
    assert matched.item() == 1
    assert frame_error.item() == pytest.approx(1.5)
    assert energy.item() == pytest.approx(1.5)


def test_reprojection_huber_hand_value():
    config = BAConfig(reprojection_loss="huber", huber_delta_px=4.0, w_reprojection=2.0)
    batch = _batch(T=1, P=1)
    cand = torch.zeros(1, 1, 1, 17, 2, dtype=D)
    cand[0, 0, 0, 0] = torch.tensor([3.0, 4.0], dtype=D)  # 5 px -> 5 - 2 = 3
    cand[0, 0, 0, 1] = torch.tensor([0.0, 2.0], dtype=D)  # 2 px -> 4 / 8 = 0.5
    energy, frame_error, _ = reprojection_energy(torch.zeros(1, 1, 17, 2, dtype=D), _with(batch, candidates=cand), config)
    assert frame_error.item() == pytest.approx(3.5)
    assert energy.item() == pytest.approx(7.0)


def test_reprojection_cap_makes_outliers_inert():
    config = BAConfig(tau_r_px=50.0)
    batch = _batch(T=2, P=1)
    cand = torch.zeros(1, 2, 1, 17, 2, dtype=D)
    cand[0, 1, 0, :, 0] = 300.0  # frame 1: a detection far from the model
    kp = torch.zeros(1, 2, 17, 2, dtype=D, requires_grad=True)
    energy, frame_error, _ = reprojection_energy(kp, _with(batch, candidates=cand), config)
    assert energy[0, 1].item() == pytest.approx(50.0)
    assert frame_error[0, 1].item() > 50.0
    energy.sum().backward()
    assert torch.equal(kp.grad[0, 1], torch.zeros(17, 2, dtype=D))


def test_reprojection_missing_candidates_and_padding_cost_nothing():
    config = BAConfig()
    frame_mask = torch.tensor([[True, True, False]])
    candidate_mask = torch.tensor([[[True], [False], [True]]])
    batch = _batch(T=3, P=1, frame_mask=frame_mask, candidate_mask=candidate_mask)
    cand = torch.full((1, 3, 1, 17, 2), 30.0, dtype=D)
    kp = torch.zeros(1, 3, 17, 2, dtype=D, requires_grad=True)
    energy, frame_error, matched = reprojection_energy(kp, _with(batch, candidates=cand), config)
    assert energy[0, 0] > 0 and energy[0, 1] == 0 and energy[0, 2] == 0
    assert matched.tolist() == [[0, -1, -1]]
    assert torch.isinf(frame_error[0, 1])
    energy.sum().backward()
    assert torch.isfinite(kp.grad).all() and not kp.grad[0, 1:].any()


def test_temporal_hand_values_camera_bound_and_scale_free():
    config = BAConfig(
        w_temporal_3d=2.0, temporal_3d_delta_m=0.1, w_temporal_2d=3.0, temporal_2d_delta_px=10.0,
        w_temporal_camera=5.0, temporal_camera_delta_px=10.0, camera_translation_cap=0.1,
    )
    batch = _batch(T=3, width=640.0)
    joints = torch.zeros(1, 3, 24, 3, dtype=D)
    joints[0, 1, 0, 0] = 0.05  # one joint moves 5 cm: 0.0025 / 0.2 = 0.0125
    kp = torch.zeros(1, 3, 17, 2, dtype=D)
    kp[0, 2, 0, 1] = 20.0  # one keypoint moves 20 px: 20 - 5 = 15
    camera = torch.zeros(1, 3, 3, dtype=D)
    camera[0, :, 0] = torch.tensor([100.0, 400.0, 50.0])  # scale changes are free
    camera[0, 1, 1] = 6.0  # 6 px: 36 / 20 = 1.8
    camera[0, 2, 1] = 206.0  # 200 px > 64 px bound: huber(64) = 59
    terms = temporal_energy(joints, kp, camera, batch, config)
    assert terms["temporal_3d"][0].tolist() == pytest.approx([0.0, 2 * 0.0125, 2 * 0.0125])
    assert terms["temporal_2d"][0].tolist() == pytest.approx([0.0, 0.0, 3 * 15.0])
    assert terms["temporal_camera"][0].tolist() == pytest.approx([0.0, 5 * 1.8, 5 * 59.0])


def test_temporal_ignores_pairs_across_padding():
    config = BAConfig()
    frame_mask = torch.tensor([[True, True, False]])
    batch = _batch(T=3, frame_mask=frame_mask)
    joints = torch.zeros(1, 3, 24, 3, dtype=D)
    joints[0, 2] = 100.0  # garbage in the padded frame
    kp = torch.zeros(1, 3, 17, 2, dtype=D)
    kp[0, 2] = 1e4
    camera = torch.zeros(1, 3, 3, dtype=D)
    camera[0, 2] = 1e4
    terms = temporal_energy(joints, kp, camera, batch, config)
    for value in terms.values():
        assert value[0, 2] == 0


def test_init_term_hand_value_min_over_candidates_and_cap():
    config = BAConfig(w_init=2.0, w_init_betas=0.5, init_delta_m=0.1, init_betas_delta=1.0, tau_i=1.0)
    batch = _batch(T=2, P=2)
    init_joints = torch.zeros(1, 2, 2, 24, 3, dtype=D)
    init_joints[0, :, 0, :, 2] = 0.5  # candidate 0: every joint 0.5 m off (a flip)
    init_joints[0, 0, 1, 3, 0] = 0.2  # candidate 1, frame 0: one joint 0.2 m off -> 0.15
    init_joints[0, 1, 1, :, 2] = -0.5  # frame 1: both candidates far: capped at tau_I
    init_betas = torch.zeros(1, 2, 2, 10, dtype=D)
    init_betas[0, 0, 1, 0] = 3.0  # -> huber 2.5, weighted 0.5 -> 1.25
    batch = _with(batch, init_joints=init_joints, init_betas=init_betas)
    joints = torch.zeros(1, 2, 24, 3, dtype=D, requires_grad=True)
    betas = torch.zeros(1, 10, dtype=D)
    energy = init_energy(joints, betas, batch, config)
    # frame 0: candidate 1 = 0.15 + 1.25 = 1.4 ; candidate 0: joints 24 * 0.45 = 10.8 capped at 1.0,
    # betas 0 -> 1.0 (the cap is on the joints' part only)
    config_loose = config.replace(tau_i=100.0)
    loose = init_energy(joints, betas, batch, config_loose)
    assert loose[0, 0].item() == pytest.approx(2 * 1.4)
    assert energy[0].tolist() == pytest.approx([2.0, 2.0])
    energy.sum().backward()
    assert not joints.grad.any()  # capped frames are inert


def test_init_cap_leaves_the_shape_pulled_and_the_shape_bound():
    """Every frame's init joints are far (capped): the betas are still pulled to the init
    betas (a cap on the shape residual too left them free: |beta| ~ 500 on the demo). Past
    +-shape_bound the shape bound adds w_shape * excess^2 per frame; inside it adds 0."""
    from optimize.energy import energy_terms, shape_energy

    config = BAConfig(w_init=2.0, w_init_betas=0.5, init_delta_m=0.1, init_betas_delta=1.0, tau_i=1.0,
                      shape_bound=3.0, w_shape=10.0)
    batch = _batch(T=2, P=1)
    init_joints = torch.zeros(1, 2, 1, 24, 3, dtype=D)
    init_joints[..., 2] = 0.5  # every joint 0.5 m off on both frames: the joints' part is capped
    batch = _with(batch, init_joints=init_joints)
    joints = torch.zeros(1, 2, 24, 3, dtype=D, requires_grad=True)
    betas = torch.zeros(1, 10, dtype=D)
    betas[0, 0] = 4.0
    betas.requires_grad_(True)
    energy = init_energy(joints, betas, batch, config)
    # per frame: min(10.8, 1.0) + 0.5 * huber(|4|, 1) = 1.0 + 0.5 * 3.5 = 2.75, x w_init 2
    assert energy[0].tolist() == pytest.approx([5.5, 5.5])
    energy.sum().backward()
    assert not joints.grad.any()
    assert betas.grad[0, 0].item() == pytest.approx(2 * 2.0 * 0.5 * 1.0)  # 2 frames x w_init x w_b x huber'
    assert not betas.grad[0, 1:].any()

    inside = torch.full((1, 10), 2.9, dtype=D)
    assert not shape_energy(inside, batch, config).any()
    beyond = inside.clone()
    beyond[0, 3] = -3.5
    beyond[0, 7] = 4.0
    assert shape_energy(beyond, batch, config)[0].tolist() == pytest.approx([10.0 * (0.25 + 1.0)] * 2)
    masked = _with(batch, frame_mask=torch.tensor([[True, False]]))
    assert shape_energy(beyond, masked, config)[0, 1].item() == 0.0
    # part of E_P: off with the prior, and with w_shape = 0
    pose, camera = torch.zeros(1, 2, 72, dtype=D), torch.ones(1, 2, 3, dtype=D)

    class NoBody:
        def joints_and_keypoints(self, pose, betas):
            return torch.zeros(*pose.shape[:2], 24, 3, dtype=D), torch.zeros(*pose.shape[:2], 17, 3, dtype=D)

    for cfg, expected in ((config.replace(w_gmm=0.0), 12.5), (config.replace(w_gmm=0.0, w_shape=0.0), 0.0),
                          (config.replace(use_prior=False), 0.0)):
        terms = energy_terms(pose, beyond, camera, batch, NoBody(), None, cfg, 0.0)
        assert terms.terms["shape"][0].tolist() == pytest.approx([expected] * 2)


def test_energy_terms_gradcheck_float64():
    torch.manual_seed(0)
    config = BAConfig(reprojection_loss="hinge", tau_r_px=1e6, tau_i=1e6)
    B, T, P = 1, 3, 2
    batch = _batch(B=B, T=T, P=P)
    batch = _with(
        batch,
        candidates=torch.randn(B, T, P, 17, 2, dtype=D) * 20,
        confidence=torch.rand(B, T, P, 17, dtype=D),
        init_joints=torch.randn(B, T, P, 24, 3, dtype=D) * 0.3,
        init_betas=torch.randn(B, T, P, 10, dtype=D),
    )

    def fn(joints, kp, camera, betas):
        terms = temporal_energy(joints, kp, camera, batch, config)
        e_r, _, _ = reprojection_energy(kp, batch, config)
        return e_r.sum() + sum(v.sum() for v in terms.values()) + init_energy(joints, betas, batch, config).sum()

    joints = (torch.randn(B, T, 24, 3, dtype=D) * 0.3).requires_grad_()
    kp = (torch.randn(B, T, 17, 2, dtype=D) * 20).requires_grad_()
    camera = (torch.randn(B, T, 3, dtype=D) * 20).requires_grad_()
    betas = torch.randn(B, 10, dtype=D).requires_grad_()
    assert torch.autograd.gradcheck(fn, (joints, kp, camera, betas), fast_mode=True)


def test_keypoint_init_tracks_get_a_scaled_init_weight_on_the_joints_only():
    """init_scale multiplies the joints' part of lambda_I per track: a keypoint-only init (the
    mean pose) must not pull as hard as a regressor's estimate. Its betas' part (the mean
    shape: the population prior) keeps the full weight."""
    config = BAConfig(w_init=20.0, tau_i=1e9)
    batch = _batch(B=2, T=1, P=1)
    joints = torch.full((2, 1, 24, 3), 0.01, dtype=D)
    betas = torch.zeros(2, 10, dtype=D)
    scaled_batch = _with(batch, init_scale=torch.tensor([1.0, 0.1], dtype=D))
    full = init_energy(joints, betas, batch, config)
    scaled = init_energy(joints, betas, scaled_batch, config)
    assert full[0, 0] > 0
    torch.testing.assert_close(scaled[0], full[0])
    torch.testing.assert_close(scaled[1], 0.1 * full[1])
    assert scaled_batch.select(torch.tensor([1])).init_scale.item() == 0.1
    # the betas' part alone (joints on their init): the same on both tracks
    shape = torch.full((2, 10), 0.5, dtype=D)
    zero_joints = torch.zeros(2, 1, 24, 3, dtype=D)
    betas_only = init_energy(zero_joints, shape, scaled_batch, config)
    assert betas_only[0, 0] > 0
    torch.testing.assert_close(betas_only[1], betas_only[0])
    torch.testing.assert_close(betas_only[0], init_energy(zero_joints, shape, batch, config)[0])


def _sampled_motion(fps: float, seconds: float = 3.0):
    """One smooth motion (joints, keypoints, camera translation) sampled at ``fps``: a
    sinusoid with speeds in both Huber regimes of every temporal term at 25 fps."""
    t = torch.arange(0.0, seconds, 1.0 / fps, dtype=D)
    T = t.shape[0]
    phase = torch.linspace(0.0, 3.0, 24, dtype=D)
    swing = torch.sin(2.0 * torch.pi * 0.6 * t[:, None] + phase)  # (T, 24)
    joints = torch.zeros(1, T, 24, 3, dtype=D)
    joints[0, :, :, 0] = 1.0 * swing  # up to 3.8 m/s: 0.15 m per 25 fps frame (> 0.05 m width)
    joints[0, :, :, 2] = 0.04 * swing  # 0.15 m/s: 6 mm per frame (quadratic zone)
    kp = torch.zeros(1, T, 17, 2, dtype=D)
    kp[0, :, :, 0] = 300.0 * swing[:, :17]
    kp[0, :, :, 1] = 10.0 * swing[:, :17]
    camera = torch.zeros(1, T, 3, dtype=D)
    camera[0, :, 0] = 300.0
    camera[0, :, 1] = 240.0 * torch.sin(2.0 * torch.pi * 0.6 * t)
    return joints, kp, camera, T


@pytest.mark.parametrize("fps", [10.0, 23.976, 29.97, 60.0])
def test_temporal_energy_per_second_does_not_depend_on_the_frame_rate(fps):
    """The same motion sampled at another frame rate costs the same over the clip (within the
    discretisation error) with ``temporal_scale`` = 25 / fps. Per-frame widths agreed only
    in Huber's linear zone (the path length); a slow motion cost 25 / fps times as much."""
    config = BAConfig()
    totals = {}
    for rate in (25.0, fps):
        joints, kp, camera, T = _sampled_motion(rate)
        batch = _batch(T=T, P=1)
        scaled = _with(batch, temporal_scale=torch.tensor([config.temporal_reference_fps / rate], dtype=D))
        totals[rate] = ({k: float(v.sum()) for k, v in temporal_energy(joints, kp, camera, scaled, config).items()},
                        {k: float(v.sum()) for k, v in temporal_energy(joints, kp, camera, batch, config).items()})
    for name in ("temporal_3d", "temporal_2d", "temporal_camera"):
        reference, per_frame_reference = totals[25.0][0][name], totals[25.0][1][name]
        assert reference == pytest.approx(per_frame_reference, rel=1e-12)  # scale 1 at 25 fps
        assert totals[fps][0][name] == pytest.approx(reference, rel=0.04), name
    # A slow motion (quadratic zone at every rate): per-frame widths made it cost 25 / fps
    # times as much, the scaled widths the same.
    slow = {}
    for rate in (25.0, fps):
        joints, kp, camera, T = _sampled_motion(rate)
        batch = _batch(T=T, P=1)
        scaled = _with(batch, temporal_scale=torch.tensor([config.temporal_reference_fps / rate], dtype=D))
        slow[rate] = [float(temporal_energy(0.05 * joints, kp, camera, b, config)["temporal_3d"].sum()) for b in (scaled, batch)]
    assert slow[fps][0] == pytest.approx(slow[25.0][0], rel=0.04)
    assert slow[fps][1] / slow[25.0][1] == pytest.approx(25.0 / fps, rel=0.04)


def test_temporal_scale_is_a_velocity_measure_hand_value():
    """At 10 fps (scale 2.5) a 5 cm step of one joint is 2 cm per reference frame: inside
    the 5 cm width, so quadratic: 0.05^2 / (2 x 0.125) = 0.01 per pair; the camera bound
    (0.1 W = 64 px at 25 fps) is 160 px."""
    config = BAConfig()
    batch = _with(_batch(T=2, width=640.0), temporal_scale=torch.tensor([2.5], dtype=D))
    joints = torch.zeros(1, 2, 24, 3, dtype=D)
    joints[0, 1, 0, 0] = 0.05
    kp = torch.zeros(1, 2, 17, 2, dtype=D)
    camera = torch.zeros(1, 2, 3, dtype=D)
    camera[0, 1, 1] = 1000.0  # beyond the bound: huber(160; 25) = 160 - 12.5
    terms = temporal_energy(joints, kp, camera, batch, config)
    assert float(terms["temporal_3d"][0, 1]) == pytest.approx(config.w_temporal_3d * 0.05**2 / (2 * 0.125))
    assert float(terms["temporal_camera"][0, 1]) == pytest.approx(config.w_temporal_camera * (160.0 - 12.5))
