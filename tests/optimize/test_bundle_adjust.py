"""bundle_adjust end to end on small synthetic tracks from the stand-in body model."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from pipeline.synth.tracks import DetectionNoise, InitNoise, make_track
from optimize.bundle_adjust import PackedTracks, bundle_adjust, make_objective
from optimize.config import BAConfig
from optimize.energy import gmm_nll_offset
from pipeline.qa.metrics import mpjpe

CLEAN = DetectionNoise(jitter=0.0, miss_keypoint=0.0, outlier=0.0, body_swap=0.0, limb_swap=0.0,
                       drop_frame=0.0, distractor=False)
MILD = InitNoise(joint_bias=0.0, joint_noise=0.08, orient_noise=0.03, flip_on=0.0, betas_bias=0.3,
                      betas_noise=0.05, scale_noise=0.02, translation_noise=0.005)
F64 = dict(dtype="float64", max_iter=120, max_eval=300)


@pytest.fixture(scope="module")
def prior(standin):
    from models.gmm_prior import GMMPrior

    return GMMPrior.from_file(standin.gmm)


@pytest.mark.slow
def test_noise_free_keypoints_converge_to_ground_truth(body_model, prior):
    track = make_track(body_model, "waving", 8, seed=3, detection=CLEAN, regressor=MILD)
    config = BAConfig(reprojection_loss="huber", w_init=0.5, w_gmm=0.01, ftol=1e-7,
                      w_temporal_3d=10.0, w_temporal_2d=0.0, w_temporal_camera=0.0, **F64)
    (fit,) = bundle_adjust([track.problem], body_model, prior, config)
    assert fit.status == "ok"
    reprojection = np.linalg.norm(fit.reprojection - track.problem.keypoints[..., :2], axis=-1)
    before = mpjpe(track.init_joints, track.gt_joints).mean()
    after = mpjpe(fit.joints3d, track.gt_joints).mean()
    assert reprojection.mean() < 1.0  # pixels
    assert after < 0.5 * before and after < 25.0  # mm
    assert fit.inlier.all()


def test_outputs_are_consistent(body_model, prior):
    track = make_track(body_model, "walking", 10, seed=1)
    (fit,) = bundle_adjust([track.problem], body_model, prior, BAConfig(max_iter=20))
    T = track.problem.num_frames
    assert fit.pose.shape == (T, 72) and fit.camera.shape == (T, 3) and fit.betas.shape == (10,)
    assert fit.joints3d.shape == (T, 24, 3) and fit.keypoints3d.shape == (T, 17, 3)
    assert fit.reprojection.shape == (T, 17, 2)
    assert set(fit.frame_energies) == set(fit.energies)
    assert fit.energies["total"] == pytest.approx(sum(v for k, v in fit.energies.items() if k != "total"), rel=1e-5)
    steps = np.linalg.norm(np.diff(fit.joints3d.astype(np.float64), axis=0), axis=-1).sum()
    assert fit.trajectory_length == pytest.approx(steps, rel=1e-4)
    assert fit.e_norm == pytest.approx(fit.energies["total"] / T, rel=1e-6)  # default e_norm: E per frame
    projected = fit.camera[:, None, :1] * fit.keypoints3d[..., :2] + fit.camera[:, None, 1:]
    assert np.allclose(projected, fit.reprojection, atol=1e-2)
    has = track.problem.has_detection
    assert np.array_equal(fit.inlier, has & (np.nan_to_num(fit.detection_energy, nan=np.inf) < 50.0))
    assert np.isnan(fit.reprojection_error_px[~has]).all() and np.isfinite(fit.reprojection_error_px[has]).all()
    assert 0 < fit.iterations and all(np.isfinite(v).all() for v in fit.frame_energies.values())


def test_padding_and_masking_do_not_change_a_track(body_model, prior):
    short = make_track(body_model, "squatting", 6, seed=5).problem
    long = make_track(body_model, "boxing", 11, seed=6).problem
    config = BAConfig(max_iter=20, dtype="float64")
    together = bundle_adjust([short, long], body_model, prior, config)
    alone = bundle_adjust([short], body_model, prior, config)[0]
    assert together[0].pose.shape == (6, 72)
    assert np.allclose(together[0].pose, alone.pose, atol=1e-6)
    assert together[0].energies["total"] == pytest.approx(alone.energies["total"], rel=1e-7)
    assert together[0].iterations == alone.iterations


def test_multi_person_minimum_picks_the_tracked_person(body_model, prior):
    track = make_track(body_model, "walking", 12, seed=11, detection=DetectionNoise(drop_frame=0.0, body_swap=0.0))
    (fit,) = bundle_adjust([track.problem], body_model, prior, BAConfig(max_iter=30))
    assert track.problem.num_candidates == 2
    assert np.array_equal(fit.matched_candidate, track.problem.selected)


def test_frames_without_detection_keep_temporal_and_prior_terms(body_model, prior):
    problem = make_track(body_model, "walking", 8, seed=2).problem
    mask = problem.candidate_mask.copy()
    mask[3] = False
    selected = problem.selected.copy()
    selected[3] = -1
    problem = problem.replace(candidate_mask=mask, selected=selected)
    (fit,) = bundle_adjust([problem], body_model, prior, BAConfig(max_iter=20))
    assert fit.frame_energies["reprojection"][3] == 0 and fit.frame_energies["init"][3] == 0
    assert fit.frame_energies["temporal_3d"][3] > 0 and fit.frame_energies["gmm"][3] != 0
    assert fit.matched_candidate[3] == -1 and not fit.inlier[3] and math.isnan(fit.frame_error[3])


def test_caps_make_outlier_detections_inert(body_model, prior):
    base = make_track(body_model, "waving", 8, seed=7, detection=CLEAN, regressor=MILD).problem
    config = BAConfig(dtype="float64", max_iter=25, tau_r_schedule=(1.0,))
    far = base.candidates.copy()
    far[[2, 5], :, :, 0] += 400.0  # two frames whose detection is 400 px off
    silent = base.candidates.copy()
    silent[[2, 5], :, :, 2] = 0.0  # the same frames with zero confidence: no reprojection term
    far_own = base.keypoints.copy()
    far_own[[2, 5], :, 0] += 400.0  # the track's own detection is the shifted one
    with_outliers = bundle_adjust([base.replace(candidates=far, keypoints=far_own)], body_model, prior, config)[0]
    without = bundle_adjust([base.replace(candidates=silent)], body_model, prior, config)[0]
    assert np.allclose(with_outliers.pose, without.pose, atol=1e-8)
    assert with_outliers.frame_energies["reprojection"][[2, 5]] == pytest.approx([50.0, 50.0])
    assert not with_outliers.inlier[[2, 5]].any()


def test_diverging_and_invalid_problems_are_reported_not_written(body_model, prior):
    good = make_track(body_model, "walking", 6, seed=4).problem
    exploding = good.replace(clip_id="bad", candidates=np.where(np.isfinite(good.candidates), 1e30, 0).astype(np.float32))
    broken = good.replace(clip_id="broken", init_pose=good.init_pose[:, :, :70])
    no_rate = good.replace(clip_id="no_rate", fps=0.0)
    fits = bundle_adjust([good, exploding, broken, no_rate], body_model, prior, BAConfig(max_iter=10))
    assert [f.status for f in fits] == ["ok", "diverged", "failed", "failed"]
    assert "init_pose" in fits[2].message
    assert "fps=0.0" in fits[3].message
    for fit in fits[:2]:  # a diverged fit holds its last finite iterate
        for array in (fit.pose, fit.camera, fit.betas, fit.joints3d, fit.reprojection):
            assert np.isfinite(array).all()
    for fit in fits[2:]:  # a failed fit's numbers do not exist: NaN, shaped as a real fit's
        assert fit.pose.shape == good.init_pose[:, 0].shape and np.isnan(fit.pose).all() and np.isnan(fit.betas).all()
        assert not fit.inlier.any() and (fit.matched_candidate == -1).all()
    assert not fits[1].converged and not fits[1].inlier.any()


def test_full_energy_gradcheck_float64(body_model, prior):
    problem = make_track(body_model, "waving", 3, seed=9).problem
    body64 = copy.deepcopy(body_model).to(torch.float64)
    prior64 = copy.deepcopy(prior).to(torch.float64)
    config = BAConfig(dtype="float64", tau_r_px=1e6, tau_i=1e6)
    packed = PackedTracks([problem], body64, "cpu", torch.float64)
    objective = make_objective(packed, body64, prior64, config, gmm_nll_offset(prior64))
    index = torch.tensor([0])
    generator = torch.Generator().manual_seed(0)
    x = (packed.x0 + 0.01 * torch.randn(packed.x0.shape, generator=generator, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: objective(v, index), (x,), fast_mode=True)


@pytest.mark.parametrize("solver", ["summed", "per_track"])
def test_reference_solvers_run(body_model, prior, solver):
    problems = [make_track(body_model, "walking", 5, seed=s).problem for s in (20, 21)]
    fits = bundle_adjust(problems, body_model, prior, BAConfig(solver=solver, max_iter=15))
    assert [f.status for f in fits] == ["ok", "ok"]


def _same_fit(a, b) -> None:
    assert a.status == b.status and a.iterations == b.iterations and a.converged == b.converged
    for name in ("pose", "camera", "betas", "joints3d", "reprojection", "frame_error", "inlier", "pred_err_mm",
                 "pose_density_outliers", "joint_limit_violations"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=name == "frame_error"), name
    assert a.energies == b.energies and a.e_norm == b.e_norm


BATCH_SETTINGS = {
    # per solver, a converging and a budget-capped setting: stopping tests and budgets are per track
    "batched": (BAConfig(solver="batched", max_iter=12, tau_r_schedule=(1.0,), ftol=5e-2),
                BAConfig(solver="batched", max_iter=8)),
    "lm": (BAConfig(solver="lm"), BAConfig(solver="lm", lm_max_iter=2)),
}


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: with several, torch splits reductions by the tensor's size, so
    the last float32 digits of a fit can depend on the batch it shares."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("solver", sorted(BATCH_SETTINGS))
def test_a_fit_does_not_depend_on_its_batch(body_model, prior, solver, one_torch_thread):
    """The same track alone, in a batch of 5 and in a batch of 18, at different positions
    and beside copies of itself, gets the same parameters bit for bit (float32, one torch
    thread per worker), with either solver (LM: its thin products avoid BLAS's
    position-dependent vector paths, see ``optimize.blocks``)."""
    tracks = [make_track(body_model, ("walking", "boxing", "waving")[i % 3], 5 + (i * 3) % 7, seed=40 + i).problem
              for i in range(17)]
    target = make_track(body_model, "squatting", 8, seed=77).problem
    for config in BATCH_SETTINGS[solver]:
        (alone,) = bundle_adjust([target], body_model, prior, config)
        five = bundle_adjust(tracks[:2] + [target] + tracks[2:4], body_model, prior, config)
        eighteen = bundle_adjust(tracks[:15] + [target] + tracks[15:], body_model, prior, config)
        copies = bundle_adjust([target, tracks[16], target, target], body_model, prior, config)
        for fit in (five[2], eighteen[15], copies[0], copies[2], copies[3]):
            _same_fit(fit, alone)
    assert alone.iterations > 0


def test_length_buckets_keep_padding_under_five_percent():
    from optimize.bundle_adjust import _length_batches

    class _Track:
        def __init__(self, frames):
            self.num_frames = frames

    # 19 tracks of 86-570 frames of one clip: one batch would pad them all to 570
    lengths = [570, 86, 412, 300, 299, 150, 149, 148, 520, 95, 96, 97, 300, 410, 88, 200, 201, 560, 90]
    groups = _length_batches([_Track(n) for n in lengths], 32768)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        longest = max(lengths[i] for i in group)
        assert len(group) * longest - sum(lengths[i] for i in group) <= 0.05 * len(group) * longest
    padded = sum(len(g) * max(lengths[i] for i in g) for g in groups)
    assert padded - sum(lengths) <= 0.05 * sum(lengths)
    assert all(len(g) * max(lengths[i] for i in g) <= 1000 for g in _length_batches([_Track(n) for n in lengths], 1000)
               if len(g) > 1)


def test_temporal_scale_is_per_track_and_none_at_the_reference_rate(body_model):
    """reference / fps per track; None (plain float widths, the 25 fps objective bit for
    bit) when every track runs at the reference rate or there is no reference."""
    at_25 = make_track(body_model, "walking", 8, seed=1).problem
    at_10 = make_track(body_model, "walking", 8, seed=2, fps=10.0).problem
    assert at_25.fps == 25.0
    assert PackedTracks([at_25, at_25], body_model, "cpu", torch.float64,
                        temporal_reference_fps=25.0).batch.temporal_scale is None
    assert PackedTracks([at_25, at_10], body_model, "cpu", torch.float64).batch.temporal_scale is None
    mixed = PackedTracks([at_25, at_10], body_model, "cpu", torch.float64, temporal_reference_fps=25.0)
    torch.testing.assert_close(mixed.batch.temporal_scale, torch.tensor([1.0, 2.5], dtype=torch.float64))
