"""The report and overlay labels tell what the run did: the E_norm axis names the run's
score setting, a frame without a detection is not called an outlier, and the borderline
tracks on both sides of the threshold are listed with their reasons."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline.dataset import schema
from pipeline.qa import overlay, report
from pipeline.qa.overlay import OverlayConfig, TrackGeometry, draw_overlay
from pipeline.qa.report import RunSummary, borderline_tracks, e_norm_label, e_norm_mode, render_report


def _meta(ba: dict) -> dict:
    return {schema.KEY_CONFIG: {"bundle_adjust": ba}}


def test_e_norm_mode_is_read_from_the_recorded_ba_config():
    # the job records the stage's description: the BAConfig under bundle_adjust.config
    assert e_norm_mode(_meta({"config": {"e_norm": "per_frame"}, "device": "cpu"})) == "per_frame"
    assert e_norm_mode(_meta({"e_norm": "trajectory"})) == "trajectory"
    assert e_norm_mode(_meta({"device": "cpu"})) is None
    assert "per frame" in e_norm_label("per_frame") and "metre" not in e_norm_label("per_frame")
    assert "per metre of 3D joint trajectory" in e_norm_label("trajectory")
    assert "not recorded" in e_norm_label(None)


def _tracks(rows: list[dict]) -> pa.Table:
    defaults = {"label": "walk", "fit_status": "ok", "num_frames": 20, "num_detected_frames": 18,
                "num_inlier_frames": 15, "first_frame": 0, "last_frame": 19, "iterations": 10, "converged": True}
    full = [{**defaults, **r} for r in rows]
    return pa.table({k: [r[k] for r in full] for k in full[0]})


TRACKS = _tracks([
    {"clip_id": "a", "track_id": 0, "e_norm": 0.50, "e_norm_threshold": 1.0, "selected": True, "selection_reason": "selected"},
    {"clip_id": "a", "track_id": 1, "e_norm": 0.95, "e_norm_threshold": 1.0, "selected": True, "selection_reason": "selected"},
    {"clip_id": "b", "track_id": 0, "e_norm": 1.02, "e_norm_threshold": 1.0, "selected": False, "selection_reason": "e_norm_above_threshold"},
    {"clip_id": "b", "track_id": 1, "e_norm": 3.00, "e_norm_threshold": 1.0, "selected": False, "selection_reason": "e_norm_above_threshold"},
    {"clip_id": "c", "track_id": 0, "e_norm": 0.20, "e_norm_threshold": 1.0, "selected": False, "selection_reason": "too_few_inliers"},
    {"clip_id": "c", "track_id": 1, "e_norm": float("nan"), "e_norm_threshold": 1.0, "selected": False,
     "selection_reason": "fit_failed", "fit_status": "failed"},
])


def test_borderline_tracks_nearest_the_threshold_on_both_sides():
    kept, rejected = borderline_tracks(TRACKS, count=5)
    assert [(r["clip_id"], r["track_id"]) for r in kept] == [("a", 1), ("a", 0)]
    assert [(r["clip_id"], r["track_id"]) for r in rejected] == [("b", 0), ("b", 1)]
    assert rejected[0]["ratio"] == pytest.approx(1.02) and rejected[0]["selection_reason"] == "e_norm_above_threshold"
    kept, rejected = borderline_tracks(TRACKS, count=1)
    assert len(kept) == len(rejected) == 1 and kept[0]["e_norm"] == 0.95 and rejected[0]["e_norm"] == 1.02


def _summary(ba: dict) -> RunSummary:
    empty_frames = schema.schema_for("frames").empty_table().select(
        ["clip_id", "track_id", "label", "has_detection", "reprojection_error", "inlier", "track_selected"])
    return RunSummary("out", TRACKS, empty_frames, schema.schema_for("rejected").empty_table(), {},
                      {schema.KEY_CONFIG: {"bundle_adjust": ba}})


@pytest.mark.parametrize("mode, expected", [("per_frame", "per frame"), ("trajectory", "per metre of 3D joint trajectory")])
def test_report_names_the_e_norm_axis_from_the_run(monkeypatch, mode, expected):
    xlabels = []
    real_png = report._png

    def capture(fig):
        xlabels.extend(ax.get_xlabel() for ax in fig.axes)
        return real_png(fig)

    monkeypatch.setattr(report, "_png", capture)
    page = render_report(_summary({"config": {"e_norm": mode}}), report.ReportConfig(thumbnails=0))
    e_norm_axes = [x for x in xlabels if x.startswith("E_norm")]
    assert e_norm_axes == [e_norm_label(mode)] and expected in e_norm_axes[0]
    other = "per metre" if mode == "per_frame" else "per frame"
    assert other not in e_norm_axes[0]
    # the borderline section: both sides, with scores and reasons
    section = page[page.index("<h2>Borderline tracks</h2>"):]
    section = section[:section.index("<h2>", 5)]
    assert "kept, just below the threshold" in section and "rejected, just above the threshold" in section
    assert "0.95" in section and "1.02" in section and "e_norm_above_threshold" in section
    assert expected in section


def _geometry(detected, inlier) -> TrackGeometry:
    t = len(detected)
    points = np.tile(np.linspace(20, 60, 17)[:, None], (t, 1, 2)).astype(np.float32)
    keypoints = np.concatenate([points, np.where(np.asarray(detected)[:, None, None], 0.9, 0.0) * np.ones((t, 17, 1))], axis=2)
    return TrackGeometry(track_id=3, color=np.array([0.2, 0.6, 0.2]), e_norm=0.5, selected=True,
                         frame_index=np.arange(t), vertices=np.full((t, 4, 3), np.nan, np.float32),
                         reprojection=points, keypoints=keypoints.astype(np.float32),
                         inlier=np.asarray(inlier, bool), detected=np.asarray(detected, bool))


def test_overlay_says_no_detection_not_outlier(monkeypatch):
    geom = _geometry(detected=[True, False, True], inlier=[True, False, False])
    assert [geom.frame_status(i) for i in range(3)] == ["", "no detection", "outlier"]
    texts = []
    monkeypatch.setattr(overlay, "_text", lambda image, text, *a, **k: texts.append(text))
    frame = np.zeros((80, 80, 3), np.uint8)
    config = OverlayConfig(mesh=False)
    faces = np.zeros((0, 3), np.int64)
    for index in range(3):
        draw_overlay(frame, index, [geom], faces, config)
    labels = [t for t in texts if t.startswith("#3")]
    assert labels[0] == "#3 E_norm 0.5"
    assert labels[1] == "#3 E_norm 0.5 no detection"
    assert labels[2] == "#3 E_norm 0.5 outlier"


def test_clip_geometry_reads_has_detection(monkeypatch):
    rows = {
        "clip_id": ["c"] * 2, "track_id": [0, 0], "frame_index": [0, 1], "e_norm": [0.5, 0.5],
        "track_selected": [True, True], "inlier": [False, False], "has_detection": [True, False],
    }
    table = pa.table(rows)
    monkeypatch.setattr(overlay, "_stack", lambda t, name: np.zeros((t.num_rows, 17, 3), np.float32))
    monkeypatch.setattr(overlay, "_mesh_vertices", lambda *a: np.zeros((2, 4, 3), np.float32))
    (geom,) = overlay.clip_geometry(table, body_model=None)
    assert geom.detected.tolist() == [True, False]
    assert [geom.frame_status(i) for i in range(2)] == ["outlier", "no detection"]
