"""pipeline.qa.report and `vid2mesh report`: Table 3 counts, plots, thumbnails, a self-contained page."""

from __future__ import annotations

import base64
import html
import json
import re

import cv2
import numpy as np
import pyarrow.dataset as ds
import pytest

from dataset_builders import build_run, build_run_from_truth, read_with_verdicts
from pipeline.qa.report import ReportConfig, load_summary, pick_thumbnail_frames, render_report, table3, write_report

IMAGES = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)">')


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_run(str(tmp_path_factory.mktemp("report_run")), num_clips=16, num_rejected=5, seed=5, frames_mode="all")


@pytest.fixture(scope="module")
def video_run(tmp_path_factory, standin, body_model):
    from pipeline.synth.corpus import SynthConfig, generate_corpus

    corpus_dir = tmp_path_factory.mktemp("report_corpus")
    corpus = generate_corpus(corpus_dir, 1, 2, SynthConfig.quick(), body_model_path=standin.neutral)
    return build_run_from_truth(str(tmp_path_factory.mktemp("report_video")), str(corpus_dir / corpus["clips"][0]["path"]), body_model)


def _rows(output, dataset):
    if dataset in ("frames", "tracks"):  # with the selection's verdicts, as readers see them
        return read_with_verdicts(output, dataset).to_pylist()
    return ds.dataset(f"{output}/{dataset}", format="parquet").to_table().to_pylist()


def test_table3_counts_match_the_rows_and_stats(run):
    tracks, rejected = _rows(run.output, "tracks"), _rows(run.output, "rejected")
    frames = _rows(run.output, "frames")
    counts = table3(load_summary(run.output))
    clips = {r["clip_id"] for r in tracks} | {r["clip_id"] for r in rejected}
    assert counts["videos_in"] == len(clips) == run.stats["clips"] == 21
    kept = {r["clip_id"] for r in tracks if r["selected"]}
    assert counts["videos_selected"] == len(kept) == run.stats["clips_kept"]
    selected_frames = [f for f in frames if f["track_selected"]]
    assert counts["frames"] == len(selected_frames)  # frames/ holds every frame of each track
    assert counts["inlier_frames"] == sum(f["inlier"] for f in selected_frames) == run.stats["inlier_frames_selected"]
    assert 0 < counts["inlier_frames"] < counts["frames"]
    assert counts["tracks_selected"] == run.stats["tracks_selected"] < counts["tracks_fitted"]


@pytest.mark.slow
def test_report_is_self_contained_with_every_plot(run, body_model):
    page = render_report(load_summary(run.output), ReportConfig(thumbnails=2, background=True), body_model)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert re.findall(r'src="(?!data:image/png;base64,)', page) == []
    images = IMAGES.findall(page)
    alts = [alt for alt, _ in images]
    for caption in ("E_norm histogram", "Reprojection-error CDF", "Inlier fraction", "iterations", "Kept clips per label"):
        assert any(caption in alt for alt in alts), caption
    thumbnails = [alt for alt in alts if alt.startswith("yt")]
    assert len(thumbnails) == 2 and len(set(thumbnails)) == 2
    for _, data in images:
        image = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[0] > 100 and image.std() > 5
    counts = table3(load_summary(run.output))
    for value in (counts["videos_in"], counts["videos_selected"], counts["frames"], counts["inlier_frames"]):
        assert f"<td>{value}</td>" in page
    assert "106,589" in page and "stand-in" in page
    assert "no_track_selected" in page and "e_norm_above_threshold" in page


def test_thumbnails_one_label_after_another(run):
    summary = load_summary(run.output)
    picks = pick_thumbnail_frames(summary, 4)
    tracks = {(r["clip_id"]): r for r in _rows(run.output, "tracks") if r["selected"]}
    labels = [tracks[clip]["label"] for clip, _ in picks]
    assert len(picks) == 4 and len(set(labels)) == min(4, len({r["label"] for r in tracks.values()}))
    for clip, frame in picks:
        rows = [r for r in _rows(run.output, "tracks") if r["clip_id"] == clip and r["selected"]]
        assert any(r["first_frame"] <= frame <= r["last_frame"] for r in rows)
    assert pick_thumbnail_frames(summary, 0) == []


@pytest.mark.slow
def test_predicted_against_true_error_and_the_borderline_tracks_next_to_the_kept(video_run):
    import os

    from pipeline.qa.report import true_track_errors

    tracks = _rows(video_run.output, "tracks")
    corpus = os.path.dirname(tracks[0]["source_uri"])
    true = true_track_errors(video_run.output, corpus)
    assert set(true) == {(r["clip_id"], r["track_id"]) for r in tracks}
    assert all(0.0 <= v < 1.0 for v in true.values())  # the fits are the ground truth
    page = render_report(load_summary(video_run.output), ReportConfig(thumbnails=0, ground_truth=corpus))
    caption = "Predicted (the fit&#x27;s own uncertainty) vs true per-track 3D error, against the ground truth"
    assert caption in page and len(IMAGES.findall(page)) >= 6
    for title in ("kept, just below the threshold", "rejected, just above the threshold", "kept, lowest predicted error"):
        assert title in page
    best = min((r for r in tracks if r["selected"]), key=lambda r: r["pred_err_mm"])
    lowest = page.split("kept, lowest predicted error")[1].split("</table>")[0]
    assert f"<td>{best['pred_err_mm']:.1f}</td><td>0.0</td>" in lowest
    assert "true mm" in page and "against the ground truth" in page
    without = render_report(load_summary(video_run.output), ReportConfig(thumbnails=0))
    assert caption not in without and "kept, lowest predicted error" in without


def test_thumbnails_from_the_source_video(video_run, body_model, tmp_path):
    path = write_report(video_run.output, ReportConfig(thumbnails=2, thumbnail_scale=2), path=str(tmp_path / "r.html"),
                        body_model=body_model)
    page = open(path).read()
    thumbs = [(alt, data) for alt, data in IMAGES.findall(page) if alt == video_run.clip_ids[0]]
    assert len(thumbs) == 1 and "drawn on grey" not in page
    image = cv2.imdecode(np.frombuffer(base64.b64decode(thumbs[0][1]), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (240, 320, 3)


def test_report_of_a_run_that_kept_nothing(tmp_path):
    out = build_run(str(tmp_path / "none"), num_clips=3, num_rejected=2, seed=1, e_norm_threshold=0.01)
    page = open(write_report(out.output, ReportConfig(thumbnails=2))).read()
    assert "<td>0</td>" in page and "no kept clip to show" in page
    assert len(IMAGES.findall(page)) == 5


def test_report_cli(run, tmp_path):
    from beam_jobs.cli import main

    assert main(["report", run.output, "--thumbnails", "0", "--out", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Table 3" in page
    assert json.loads((__import__("pathlib").Path(run.output) / "stats.json").read_text())["clips"] == 21
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_iteration_warning_counts_fitted_tracks_stopped_at_the_limit():
    """The report says how many fitted tracks stopped without converging (the demo's
    L-BFGS tracks did, and the page showed it only as a histogram), and what to try."""
    import pyarrow as pa

    from pipeline.qa.report import iteration_warning

    tracks = pa.table({
        "converged": [False, True, False, False],
        "fit_status": ["ok", "ok", "ok", "split"],  # a split track's own fit is not a result
        "iterations": [600, 412, 600, 0],
    })
    text = iteration_warning(tracks, "batched", 600)
    assert text.startswith("2 of 3 fitted tracks stopped at L-BFGS's iteration limit (600 iterations)")
    assert '"solver": "lm"' in text
    assert "lm_max_iter" in iteration_warning(tracks, "lm", 50)
    done = pa.table({"converged": [True, True], "fit_status": ["ok", "ok"], "iterations": [20, 31]})
    assert iteration_warning(done, "lm", 50) is None
    assert iteration_warning(done.slice(0, 0), "lm", 50) is None


def test_report_page_carries_the_iteration_warning(run, body_model):
    summary = load_summary(run.output)
    page = render_report(summary, ReportConfig(thumbnails=0), body_model)
    from pipeline.qa.report import iteration_warning

    expected = iteration_warning(summary.tracks, *_limit(summary))
    assert expected is not None  # the built run has tracks that did not converge
    assert html.escape(expected) in page


def _limit(summary):
    from pipeline.qa.report import _iteration_limit

    return _iteration_limit(summary.metadata)
