"""Rows: fits -> arrow tables in the schema's columns, outcomes of every kind (committed, then selected)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.dataset import schema
from pipeline.records import ClipRef, PerceptionResult, RejectReason, TrackFit
from pipeline.dataset.rows import failed_outcome, frames_table, outcome_from_rejection
from pipeline.dataset.selection.commit import commit_outcome
from pipeline.dataset.selection.rules import SelectionConfig, select_track
from helpers.scripted import make_fit, make_problem

from dataset_builders import commit_and_select

CLIP = ClipRef("abc_000010_000020", "/data/train/walk/abc_000010_000020.mp4", "walk", "train")
CONFIG = SelectionConfig(mode="threshold", e_norm_threshold=10.0, min_inlier_fraction=0.0)
RUN = schema.RunMetadata(schema.BodyModelInfo("standin", "neutral", "m.pkl", "cd" * 32), {"k": 1}, "vid2mesh test")


def _header(problems=()):
    return PerceptionResult(CLIP, problems=tuple(problems), num_frames=30, image_size=(320, 240), fps=10.0, max_people=2)


def _bare(dataset):
    return pa.schema([c.field() for c in schema.COLUMNS[dataset]])


def test_frames_table_values_round_trip():
    problem = make_problem(CLIP.clip_id, 1, 12, seed=3)
    fit = make_fit(problem, 2.0)
    table = frames_table(CLIP, problem, fit, select_track(problem, fit, CONFIG, 10.0))
    assert table.schema == _bare("frames") and table.num_rows == 12
    rows = table.to_pylist()
    assert rows[0]["clip_id"] == CLIP.clip_id and rows[0]["label"] == "walk" and rows[0]["track_id"] == 1
    assert [r["frame_index"] for r in rows] == problem.frame_index.tolist()
    kp = np.array(table.column("keypoints_2d").to_pylist(), np.float32)
    np.testing.assert_array_equal(kp, problem.keypoints)
    joints = table.column("joints_3d").combine_chunks().flatten().flatten().to_numpy().reshape(-1, 24, 3)
    np.testing.assert_array_equal(joints, fit.joints3d)
    np.testing.assert_array_equal(np.array(table.column("pose").to_pylist(), np.float32), fit.pose)
    betas = np.array(table.column("betas").to_pylist(), np.float32)
    assert np.all(betas == fit.betas[None])
    assert table.column("inlier").to_pylist() == fit.inlier.tolist()
    assert table.column("has_detection").to_pylist() == problem.has_detection.tolist()
    box = np.array(table.column("box").to_pylist(), np.float32)
    assert np.isnan(box[6]).all()  # the skipped frame
    assert set(table.column("track_selected").to_pylist()) == {True}
    inliers = frames_table(CLIP, problem, fit, select_track(problem, fit, CONFIG, 10.0), inliers_only=True)
    assert inliers.num_rows == int(fit.inlier.sum()) and all(inliers.column("inlier").to_pylist())


def test_uncertainty_and_plausibility_columns():
    problem = make_problem(CLIP.clip_id, 1, 12, seed=3)
    has = problem.has_detection
    pred = np.where(has, np.linspace(20.0, 40.0, 12), np.inf).astype(np.float32)
    density = np.zeros(12, np.int32)
    density[2] = 1
    limits = np.zeros(12, np.int32)
    limits[[2, 5]] = [2, 1]
    betas = np.zeros(10, np.float32)
    betas[3] = -3.5
    fit = make_fit(problem, 2.0).replace(pred_err_mm=pred, pose_density_outliers=density, joint_limit_violations=limits,
                                         betas=betas)
    frames = frames_table(CLIP, problem, fit, select_track(problem, fit, CONFIG, 10.0))
    np.testing.assert_array_equal(np.array(frames.column("pred_err_mm").to_pylist(), np.float32), pred)
    assert frames.column("pose_density_outliers").to_pylist() == density.tolist()
    assert frames.column("joint_limit_violations").to_pylist() == limits.tolist()
    outcome = commit_outcome(_header([problem]), [(problem, fit)], CONFIG)
    (row,) = outcome.tracks.to_pylist()
    assert row["pred_err_mm"] == pytest.approx(float(pred[has].mean()), rel=1e-6)
    assert row["betas_absmax"] == 3.5 and row["betas_out_of_range"] is True
    assert row["implausible_frame_fraction"] == pytest.approx(2 / 12)
    # a fit without them: undetermined (inf) and "not checked" (-1)
    bare = make_fit(problem, 2.0).replace(pred_err_mm=None)
    frames = frames_table(CLIP, problem, bare, select_track(problem, bare, CONFIG, 10.0))
    assert np.isinf(frames.column("pred_err_mm").to_pylist()).all()
    assert set(frames.column("joint_limit_violations").to_pylist()) == {-1}
    (row,) = commit_outcome(_header([problem]), [(problem, bare)], CONFIG).tracks.to_pylist()
    assert row["pred_err_mm"] == float("inf") and np.isnan(row["implausible_frame_fraction"])


def test_frame_score_and_init_disagreement_columns():
    """frames.frame_score_mm: the fit's own, or from its predicted errors; inf where undetermined."""
    from optimize.track_metrics import frame_score_mm, predicted_error

    problem = make_problem(CLIP.clip_id, 1, 12, seed=3)
    has = problem.has_detection
    assert (~has).any()
    pred = np.where(has, np.linspace(20.0, 40.0, 12), np.inf).astype(np.float32)
    disagreement = np.where(has, 15.0, 3.0).astype(np.float32)  # a value off the detections is not written
    fit = make_fit(problem, 2.0).replace(pred_err_mm=pred, init_disagreement_mm=disagreement)
    frames = frames_table(CLIP, problem, fit, select_track(problem, fit, CONFIG, 10.0))
    score = np.array(frames.column("frame_score_mm").to_pylist())
    expect = frame_score_mm(pred, predicted_error(fit), disagreement)
    np.testing.assert_allclose(score[has], expect[has], rtol=1e-6)
    assert np.isinf(score[~has]).all()
    written = np.array(frames.column("init_disagreement_mm").to_pylist(), np.float64)
    assert (written[has] == 15.0).all() and np.isnan(written[~has]).all()
    assert frames.schema.field("frame_score_mm").metadata[b"unit"] == b"mm"
    # the fit's own score is written as it is
    own = fit.replace(frame_score_mm=np.full(12, 7.0, np.float32))
    frames = frames_table(CLIP, problem, own, select_track(problem, own, CONFIG, 10.0))
    assert frames.column("frame_score_mm").to_pylist() == [7.0] * 12
    # no predicted error: every frame undetermined
    bare = make_fit(problem, 2.0).replace(pred_err_mm=None)
    frames = frames_table(CLIP, problem, bare, select_track(problem, bare, CONFIG, 10.0))
    assert np.isinf(frames.column("frame_score_mm").to_pylist()).all()


def test_failed_fit_never_becomes_frames():
    problem = make_problem(CLIP.clip_id, 0, 12, seed=3)
    fit = TrackFit.failed(problem, "boom")
    with pytest.raises(ValueError, match="only 'ok' fits"):
        frames_table(CLIP, problem, fit, select_track(problem, fit, CONFIG, 10.0))


def _selected(tmp_path, outcome):
    """(final clip entry, track id -> final selection reason) after the selection over ``outcome``."""
    summary = commit_and_select(str(tmp_path), [[outcome]], CONFIG, RUN)
    tracks = pq.read_table(tmp_path / "selection" / "tracks.parquet").to_pylist()
    return summary.outcomes[outcome.clip_id], {t["track_id"]: t["selection_reason"] for t in tracks}


def test_outcome_kept_with_one_selected_track(tmp_path):
    p0, p1 = make_problem(CLIP.clip_id, 0, 12, 1), make_problem(CLIP.clip_id, 1, 15, 2)
    fit0 = make_fit(p0, 3.0)
    outcome = commit_outcome(_header(), [(p1, make_fit(p1, 30.0)), (p0, fit0)], CONFIG)
    assert (outcome.outcome, outcome.reason, outcome.rejected) == ("pending", None, None)
    assert outcome.frames.num_rows == 27 and set(outcome.frames.column("track_id").to_pylist()) == {0, 1}
    tracks = outcome.tracks.to_pylist()
    assert [t["track_id"] for t in tracks] == [0, 1]
    assert [(t["selected"], t["selection_reason"]) for t in tracks] == [(False, "eligible")] * 2
    assert tracks[0]["energy"] == pytest.approx(3.0 * 2.5)
    assert {t["term"] for t in tracks[0]["energy_terms"]} == {"reprojection", "temporal", "prior"}
    assert outcome.num_tracks == 2 and outcome.num_selected_tracks == 0 and outcome.num_frames_written == 27
    clip, reasons = _selected(tmp_path, outcome)
    assert clip == {"outcome": "kept", "reason": None, "selected_tracks": 1, "inlier_frames": int(fit0.inlier.sum())}
    assert reasons == {0: "selected", 1: "e_norm_above_threshold"}


def test_outcome_all_frames_mode_writes_every_ok_track(tmp_path):
    p0, p1, p2 = (make_problem(CLIP.clip_id, t, 12, t) for t in range(3))
    fitted = [(p0, make_fit(p0, 30.0)), (p1, make_fit(p1, 40.0)), (p2, make_fit(p2, 1.0, status="diverged"))]
    outcome = commit_outcome(_header(), fitted, CONFIG, frames_mode="all")
    assert outcome.outcome == "pending" and outcome.rejected is None
    assert outcome.frames.num_rows == 24 and not any(outcome.frames.column("track_selected").to_pylist())
    assert [t["selection_reason"] for t in outcome.tracks.to_pylist()] == ["eligible", "eligible", "diverged"]
    assert outcome.num_frames_written == 24 and outcome.num_tracks == 3
    clip, reasons = _selected(tmp_path, outcome)
    assert (clip["outcome"], clip["reason"], clip["selected_tracks"]) == ("rejected", RejectReason.NO_TRACK_SELECTED, 0)
    assert reasons == {0: "e_norm_above_threshold", 1: "e_norm_above_threshold", 2: "diverged"}
    row = pq.read_table(tmp_path / "selection" / "clips.parquet").to_pylist()[0]
    assert row["stage"] == "select"


def test_outcome_all_diverged_and_all_failed():
    p0 = make_problem(CLIP.clip_id, 0, 12, 1)
    diverged = commit_outcome(_header(), [(p0, make_fit(p0, 1.0, status="diverged"))], CONFIG)
    assert (diverged.outcome, diverged.reason, diverged.frames) == ("rejected", RejectReason.ALL_TRACKS_DIVERGED, None)
    failed = commit_outcome(_header(), [(p0, TrackFit.failed(p0, "Traceback ... ValueError: x"))], CONFIG)
    assert (failed.outcome, failed.reason) == ("failed", RejectReason.FAILED)
    assert failed.tracks.to_pylist()[0]["fit_status"] == "failed"
    assert "ValueError" in failed.rejected.to_pylist()[0]["message"]


def test_rejection_outcomes():
    crowded = outcome_from_rejection(
        PerceptionResult(CLIP, reject_reason=RejectReason.CROWDED, message="9 people", num_frames=50, max_people=9)
    )
    row = crowded.rejected.to_pylist()[0]
    assert crowded.outcome == "rejected" and crowded.frames is None and crowded.tracks is None
    assert (row["reason"], row["stage"], row["max_people"], row["num_frames"]) == ("crowded", "perceive", 9, 50)
    assert crowded.rejected.schema == _bare("rejected")
    failed = failed_outcome(CLIP, "perceive", "x" * 10000)
    assert failed.outcome == "failed" and len(failed.rejected.to_pylist()[0]["message"]) <= 4000
    with pytest.raises(ValueError, match="was not rejected"):
        outcome_from_rejection(_header())


def test_quality_columns_have_their_units_and_inliers_stay_on_detections():
    problem = make_problem(CLIP.clip_id, 0, 12, seed=3)
    fit = make_fit(problem, 2.0)
    shifted = problem.keypoints[..., :2] + np.array([3.0, 4.0], np.float32)  # 5 px off everywhere
    fit = fit.replace(reprojection=shifted, inlier=np.ones(12, bool))  # a fit that claims every frame
    table = frames_table(CLIP, problem, fit, select_track(problem, fit, CONFIG, 10.0))
    has = problem.has_detection
    error = np.array(table.column("reprojection_error").to_pylist(), dtype=np.float64)
    np.testing.assert_allclose(error[has], 5.0, rtol=1e-5)
    assert np.isnan(error[~has]).all()
    rel = np.array(table.column("reprojection_error_rel").to_pylist(), dtype=np.float64)
    np.testing.assert_allclose(rel[has], 5.0 / (fit.camera[has, 0] * 1.7), rtol=1e-5)
    assert table.column("interpolated").to_pylist() == (~has).tolist()
    assert table.column("inlier").to_pylist() == has.tolist()  # never on a skipped frame
    assert np.isfinite(np.array(table.column("orientation_change").to_pylist(), dtype=np.float64)).all()
    accel = np.array(table.column("joint_acceleration").to_pylist(), dtype=np.float64)
    assert np.isnan(accel[[0, -1]]).all() and (accel[1:-1] >= 0).all()
    tracks = commit_outcome(_header(), [(problem, fit)], CONFIG).tracks.to_pylist()
    assert tracks[0]["num_inlier_frames"] <= tracks[0]["num_detected_frames"]
    assert tracks[0]["parent_track_id"] == -1 and tracks[0]["split_frame"] == -1


def test_split_track_writes_its_pieces_with_their_parent(tmp_path):
    problem = make_problem(CLIP.clip_id, 2, 20, seed=4)
    pieces = []
    for k, (start, stop) in enumerate(((0, 12), (12, 20))):
        sub = problem.piece(start, stop, 2 + 1000 * (k + 1))
        pieces.append(make_fit(sub, 2.0 + k).replace(parent_track_id=2, split_frame=int(problem.frame_index[12]),
                                                     piece_start=start))
    parent = TrackFit.failed(problem, "identity switch").replace(status="split", switch_frames=(12,), pieces=tuple(pieces))
    outcome = commit_outcome(_header(), [(problem, parent)], CONFIG)
    tracks = {r["track_id"]: r for r in outcome.tracks.to_pylist()}
    assert tracks[2]["fit_status"] == "split" and tracks[2]["selection_reason"] == "split" and not tracks[2]["selected"]
    assert tracks[1002]["parent_track_id"] == tracks[2002]["parent_track_id"] == 2
    assert tracks[1002]["num_frames"] == 12 and tracks[2002]["first_frame"] == int(problem.frame_index[12])
    assert outcome.outcome == "pending"
    assert set(outcome.frames.column("track_id").to_pylist()) == {1002, 2002}
    clip, reasons = _selected(tmp_path, outcome)
    assert clip["outcome"] == "kept" and reasons == {2: "split", 1002: "selected", 2002: "selected"}
