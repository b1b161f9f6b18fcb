"""pipeline.qa.metrics: known answers, invariances and a reference Procrustes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pipeline.qa import metrics


def _random_joints(rng, shape=(5, 24)):
    return rng.normal(scale=0.3, size=(*shape, 3))


def test_mpjpe_known_offset_and_root_alignment():
    rng = np.random.default_rng(0)
    gt = _random_joints(rng)
    # A global translation is removed by root alignment.
    assert np.allclose(metrics.mpjpe(gt + [1.0, -2.0, 3.0], gt), 0.0, atol=1e-9)
    # Moving one joint (not the root) by 24 mm among 24 joints gives 1 mm.
    pred = gt.copy()
    pred[:, 5, 0] += 0.024
    assert np.allclose(metrics.mpjpe(pred, gt), 1.0)
    # Without root alignment a 10 cm shift is 100 mm.
    assert np.allclose(metrics.mpjpe(gt + [0.1, 0, 0], gt, root=None), 100.0)
    # COCO-17 uses the hip midpoint.
    coco = _random_joints(rng, (3, 17))
    shifted = coco.copy()
    shifted[:, 0] += [0.017, 0, 0]
    assert np.allclose(metrics.mpjpe(shifted, coco), 1.0)


def test_mpjpe_mask_and_nan_when_nothing_valid():
    rng = np.random.default_rng(1)
    gt = _random_joints(rng, (2, 24))
    pred = gt.copy()
    pred[:, 3] += [1.0, 0, 0]  # a 1 m error on joint 3 only
    valid = np.ones((2, 24), bool)
    valid[:, 3] = False
    assert np.allclose(metrics.mpjpe(pred, gt, valid=valid), 0.0)
    out = metrics.mpjpe(pred, gt, valid=np.array([True, False]))
    assert np.isfinite(out[0]) and np.isnan(out[1])


def _reference_procrustes(x, y):
    """Textbook similarity Procrustes (scipy orthogonal_procrustes) on one sample."""
    from scipy.linalg import orthogonal_procrustes

    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    r, s = orthogonal_procrustes(xc, yc)
    scale = s / (xc**2).sum()
    return scale * xc @ r + my


def test_procrustes_matches_reference_and_removes_similarity():
    rng = np.random.default_rng(2)
    gt = _random_joints(rng, (4, 24))
    rot = Rotation.random(4, random_state=3).as_matrix()
    pred = 1.7 * np.einsum("bij,bnj->bni", rot, gt) + rng.normal(size=(4, 1, 3))
    assert np.allclose(metrics.pa_mpjpe(pred, gt), 0.0, atol=1e-6)
    noisy = pred + rng.normal(scale=0.02, size=pred.shape)
    aligned = metrics.procrustes_align(noisy, gt)
    for b in range(4):
        assert np.allclose(aligned[b], _reference_procrustes(noisy[b], gt[b]), atol=1e-9)
    assert np.all(metrics.pa_mpjpe(noisy, gt) <= metrics.mpjpe(noisy, gt, root=None) + 1e-9)


def test_procrustes_agrees_with_models_geometry_when_present():
    geometry = pytest.importorskip("models.geometry")
    if not hasattr(geometry, "procrustes_align"):
        pytest.skip("models.geometry.procrustes_align not available")
    import torch

    rng = np.random.default_rng(4)
    a, b = _random_joints(rng, (3, 24)), _random_joints(rng, (3, 24))
    ours = metrics.procrustes_align(a, b)
    theirs = geometry.procrustes_align(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert np.allclose(ours, theirs, atol=1e-6)


def test_pa_mpjpe_with_missing_joints():
    rng = np.random.default_rng(5)
    gt = _random_joints(rng, (2, 24))
    pred = 0.5 * gt
    pred[0, 7] += 5.0  # garbage on a joint marked invalid
    valid = np.ones((2, 24), bool)
    valid[0, 7] = False
    valid[1, 2:] = False  # only 2 valid joints: undefined
    out = metrics.pa_mpjpe(pred, gt, valid=valid)
    assert out[0] == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(out[1])


def test_accel_error_constant_velocity_is_free_and_units():
    t = np.arange(10, dtype=float)
    gt = np.zeros((10, 24, 3))
    gt[..., 0] = 0.01 * t[:, None]  # uniform motion: zero acceleration
    assert np.allclose(metrics.accel_error(gt + 0.3, gt, root=None), 0.0)
    pred = gt.copy()
    pred[4, :, 1] += 0.002  # a 2 mm bump at frame 4 -> 2 / -4 / 2 mm/frame^2
    err = metrics.accel_error(pred, gt, root=None)
    assert err.shape == (8,)
    assert np.allclose(err[[2, 3, 4]], [2.0, 4.0, 2.0])
    valid = np.ones(10, bool)
    valid[4] = False
    err_v = metrics.accel_error(pred, gt, valid=valid, root=None)
    assert np.isnan(err_v[[2, 3, 4]]).all() and np.isfinite(err_v[[0, 1, 5, 6, 7]]).all()


def test_pck_threshold_and_visibility():
    gt = np.zeros((2, 17, 2))
    pred = gt.copy()
    pred[0, :4, 0] = 20.0
    assert metrics.pck(pred, gt, threshold=10.0)[0] == pytest.approx(13 / 17)
    assert metrics.pck(pred, gt, threshold=np.array([30.0, 1.0]))[0] == 1.0
    vis = np.ones((2, 17), bool)
    vis[0, :4] = False
    vis[1] = False
    out = metrics.pck(pred, gt, threshold=10.0, visible=vis)
    assert out[0] == 1.0 and np.isnan(out[1])


def test_match_people_hungarian_and_distance_gate():
    rng = np.random.default_rng(6)
    gt = rng.uniform(0, 300, size=(3, 17, 2))
    pred = gt[[2, 0]] + 1.0  # two of three people, shuffled
    pairs = metrics.match_people(pred, gt, max_distance=10.0)
    assert sorted(pairs) == [(0, 2), (1, 0)]
    assert metrics.match_people(pred + 50.0, gt, max_distance=10.0) == []
    assert metrics.match_people(np.zeros((0, 17, 2)), gt) == []


def test_id_switches_and_purity():
    # Person 0 is tracked by track 5 then by track 7 (1 switch); person 1 always by 6.
    frames = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    person = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    track = np.array([5, 5, 7, 7, 6, 6, 6, 6])
    assert metrics.id_switches(frames, person, track) == 1
    # Order of rows does not matter; gaps do not reset the id.
    perm = np.random.default_rng(7).permutation(8)
    assert metrics.id_switches(frames[perm], person[perm], track[perm]) == 1
    assert metrics.id_switches([0, 5], [0, 0], [3, 3]) == 0
    # Track 1 covers person 0 for 3 frames, person 1 for 1 frame, 1 false positive.
    pred_id = np.array([1, 1, 1, 1, 1, 2, 2])
    target_id = np.array([0, 0, 0, 1, -1, 1, 1])
    per = metrics.track_purity_per_track(pred_id, target_id)
    assert per == {1: pytest.approx(0.6), 2: 1.0}
    assert metrics.track_purity(pred_id, target_id) == pytest.approx(5 / 7)
    assert np.isnan(metrics.track_purity([], []))


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="same shape"):
        metrics.mpjpe(np.zeros((2, 24, 3)), np.zeros((2, 17, 3)))
    with pytest.raises(ValueError, match="root"):
        metrics.mpjpe(np.zeros((2, 24, 3)), np.zeros((2, 24, 3)), root="pelvis")
