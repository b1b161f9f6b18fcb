"""pipeline.qa.overlay and `vid2mesh render`: meshes land on the people, colours, side by side,
MP4 + PNG output, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from dataset_builders import build_run_from_truth, drop_init_columns
from models.joint_names import COCO17_FACE_VERTEX_IDS
from pipeline.dataset import schema
from pipeline.qa.overlay import (
    OverlayConfig,
    body_model_for_dataset,
    clip_geometry,
    draw_overlay,
    image_space_vertices,
    overlay_frames,
    render_clip,
    track_color,
)
from pipeline.dataset.reader import FrameFilter, read_frames
from pipeline.synth.truth import ClipTruth

PLAIN = OverlayConfig(alpha=1.0, supersample=1, skeleton=False, detections=False, labels=False)


@pytest.fixture(scope="module")
def clip_video(tmp_path_factory, standin):
    """One 12-frame 160x120 synthetic clip with two people (seed 1) and its ground truth."""
    from pipeline.synth.corpus import SynthConfig, generate_corpus

    out = tmp_path_factory.mktemp("overlay_corpus")
    corpus = generate_corpus(out, 1, 1, SynthConfig.quick(), body_model_path=standin.neutral)
    return str(out / corpus["clips"][0]["path"])


@pytest.fixture(scope="module")
def truth_run(tmp_path_factory, clip_video, body_model):
    return build_run_from_truth(str(tmp_path_factory.mktemp("overlay_run")), clip_video, body_model)


@pytest.fixture(scope="module")
def init_run(tmp_path_factory, clip_video, body_model):
    return build_run_from_truth(str(tmp_path_factory.mktemp("overlay_init")), clip_video, body_model, init_noise=0.25)


def _truth(clip_video) -> ClipTruth:
    return ClipTruth.load(clip_video[:-4] + ".gt.npz")


def test_image_space_vertices_is_the_weak_perspective_camera():
    vertices = np.array([[[0.1, -0.2, 0.3], [0.0, 0.0, 0.0]]])
    camera = np.array([[200.0, 50.0, 60.0]])
    np.testing.assert_allclose(image_space_vertices(vertices, camera), [[[70.0, 20.0, 60.0], [50.0, 60.0, 0.0]]], rtol=1e-6)


@pytest.mark.slow
def test_mesh_lands_where_the_fit_says(truth_run, clip_video, body_model):
    """The mesh's nose vertex projects onto the fitted nose keypoint, and the drawn mesh
    covers the person's amodal ground-truth box."""
    truth = _truth(clip_video)
    table = read_frames(truth_run.output, filter=FrameFilter(clip_ids=truth_run.clip_ids))
    tracks = clip_geometry(table, body_model)
    assert [g.track_id for g in tracks] == [0, 1] and truth.num_people == 2
    faces = np.asarray(body_model.faces)
    for geom in tracks:
        nose = geom.vertices[:, COCO17_FACE_VERTEX_IDS[0], :2]
        np.testing.assert_allclose(nose, geom.reprojection[:, 0], atol=0.05)
        row = len(geom.frame_index) // 2
        frame_index = int(geom.frame_index[row])
        grey = np.full((120, 160, 3), 90, np.uint8)
        drawn = draw_overlay(grey, frame_index, [geom], faces, PLAIN)
        covered = np.nonzero((drawn != grey).any(axis=2))
        box = truth.bbox[frame_index, geom.track_id]
        got = np.array([covered[1].min(), covered[0].min(), covered[1].max() + 1, covered[0].max() + 1], float)
        clipped = np.clip(box, 0, [160, 120, 160, 120])
        np.testing.assert_allclose(got, clipped, atol=1.5)


def test_each_track_has_its_own_colour(truth_run, body_model):
    colours = {tuple(track_color(i)) for i in range(12)}
    assert len(colours) == 12 and tuple(track_color(3)) == tuple(track_color(15))
    table = read_frames(truth_run.output, filter=FrameFilter(clip_ids=truth_run.clip_ids))
    tracks = clip_geometry(table, body_model)
    faces = np.asarray(body_model.faces)
    grey = np.zeros((120, 160, 3), np.uint8)
    frame_index = int(np.intersect1d(tracks[0].frame_index, tracks[1].frame_index)[0])
    drawn = draw_overlay(grey, frame_index, tracks, faces, PLAIN).astype(float)
    for geom in tracks:
        alone = draw_overlay(grey, frame_index, [geom], faces, PLAIN)
        mask = alone.any(axis=2)
        mean = drawn[mask].mean(axis=0)
        # Shading scales the colour: compare chromaticities.
        np.testing.assert_allclose(mean / mean.sum(), geom.color / geom.color.sum(), atol=0.06)


def test_semi_transparent_mesh_keeps_the_frame_visible(truth_run, body_model):
    table = read_frames(truth_run.output, filter=FrameFilter(clip_ids=truth_run.clip_ids))
    geom = clip_geometry(table, body_model, tracks=[0])[0]
    faces = np.asarray(body_model.faces)
    frame_index = int(geom.frame_index[0])
    config = OverlayConfig(alpha=0.5, supersample=1, skeleton=False, detections=False, labels=False)
    black = draw_overlay(np.zeros((120, 160, 3), np.uint8), frame_index, [geom], faces, config).astype(int)
    white = draw_overlay(np.full((120, 160, 3), 255, np.uint8), frame_index, [geom], faces, config).astype(int)
    inside = np.asarray(draw_overlay(np.zeros((120, 160, 3), np.uint8), frame_index, [geom], faces, PLAIN)).any(axis=2)
    difference = (white - black)[inside]
    assert np.abs(difference - 127.5).max() <= 2  # half of the frame shows through the mesh


@pytest.mark.slow
def test_render_clip_writes_mp4_and_pngs(truth_run, tmp_path, body_model):
    clip = truth_run.clip_ids[0]
    result = render_clip(truth_run.output, clip, str(tmp_path), body_model, OverlayConfig(scale=2, supersample=1), frames=range(2, 9))
    truth_frames = read_frames(truth_run.output, columns=["frame_index"], filter=FrameFilter(clip_ids=(clip,)))
    assert result.frames == tuple(f for f in sorted(set(truth_frames.column("frame_index").to_pylist())) if 2 <= f < 9)
    assert result.source == "video" and len(result.png_paths) == len(result.frames)
    png = cv2.imread(result.png_paths[0])
    assert png.shape == (240, 320, 3)
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", result.mp4_path],
        capture_output=True, text=True, check=True).stdout)["streams"][0]
    assert (probe["width"], probe["height"]) == (320, 240)
    assert int(probe["nb_read_frames"]) == len(result.frames)
    assert probe["codec_name"] in ("h264", "mpeg4")


def test_overlay_draws_on_the_decoded_video(truth_run, clip_video, body_model):
    """Frames come from the source video, decoded like the job decoded them."""
    from pipeline.perception.decode import DecodeConfig, decode_video

    _, batches = decode_video(clip_video, DecodeConfig(target_fps=10.0, max_side=160, max_pixels=160 * 120))
    decoded = np.concatenate([b.frames for b in batches])
    config = OverlayConfig(alpha=0.0, skeleton=False, detections=False, labels=False)
    for index, image, source in overlay_frames(truth_run.output, truth_run.clip_ids[0], body_model, config, frames=[2, 5]):
        assert source == "video"
        np.testing.assert_array_equal(image, decoded[index])


@pytest.mark.slow
def test_side_by_side_init_and_fit(truth_run, init_run, tmp_path, body_model):
    config = OverlayConfig(side_by_side=True, alpha=1.0, skeleton=False, detections=False, labels=False, supersample=1)
    clip = init_run.clip_ids[0]
    with_init = render_clip(init_run.output, clip, str(tmp_path / "a"), body_model, config, mp4=False, frames=[4])
    image = cv2.imread(with_init.png_paths[0])
    assert image.shape == (120, 2 * 160 + 4, 3) and not with_init.notes
    left, right = image[:, :160].astype(int), image[:, 164:].astype(int)
    assert np.abs(left - right).mean() > 1.0  # init (noisy pose) differs from the fit
    legacy = tmp_path / "legacy"  # a schema 1.0.0 run: frames/ without the init_* columns
    shutil.copytree(truth_run.output, legacy)
    drop_init_columns(str(legacy))
    without = render_clip(str(legacy), clip, str(tmp_path / "b"), body_model, config, mp4=False, frames=[4])
    assert "no init_pose" in without.notes[0]
    image = cv2.imread(without.png_paths[0])
    fit_only = cv2.imread(render_clip(truth_run.output, clip, str(tmp_path / "c"), body_model,
                                      OverlayConfig(alpha=1.0, skeleton=False, detections=False, labels=False, supersample=1),
                                      mp4=False, frames=[4]).png_paths[0])
    np.testing.assert_array_equal(image[:, 164:], fit_only)  # right panel = the fit
    np.testing.assert_array_equal(image[:, :160], cv2.imread(render_clip(
        truth_run.output, clip, str(tmp_path / "d"), body_model, OverlayConfig(mesh=False, skeleton=False, detections=False, labels=False), mp4=False,
        frames=[4]).png_paths[0]))  # left panel = the bare frame: no init to draw


def test_missing_video_and_background(truth_run, tmp_path, body_model):
    source = sorted((__import__("pathlib").Path(truth_run.output) / "frames").glob("*.parquet"))[0]
    table = pq.read_table(source)
    moved = tmp_path / "moved"
    (moved / "frames").mkdir(parents=True)
    __import__("shutil").copytree(source.parent.parent / "selection", moved / "selection")  # the verdicts travel with the rows
    table = table.set_column(table.schema.get_field_index("source_uri"), "source_uri",
                             __import__("pyarrow").array(["/nowhere/clip.mp4"] * table.num_rows))
    pq.write_table(table, moved / "frames" / source.name)
    clip = truth_run.clip_ids[0]
    with pytest.raises(FileNotFoundError, match="--video PATH"):
        list(overlay_frames(str(moved), clip, body_model, frames=[0]))
    ((index, image, source),) = overlay_frames(str(moved), clip, body_model, frames=[0], background=True)
    assert source == "background" and image.shape == (120, 160, 3)
    with pytest.raises(ValueError, match="has no selected rows"):
        list(overlay_frames(str(moved), "no_such_clip", body_model))


def test_body_model_for_dataset_checks_the_file(standin):
    real = schema.file_sha256(standin.neutral)
    meta = {schema.KEY_BODY_MODEL: {"variant": "smpl", "gender": "neutral", "file_name": "model.pkl", "sha256": real}}
    with pytest.raises(ValueError, match="--smpl_model"):
        body_model_for_dataset(meta)
    assert body_model_for_dataset(meta, smpl_model=str(standin.neutral)).faces.shape == (13776, 3)
    meta[schema.KEY_BODY_MODEL]["sha256"] = "ab" * 32
    with pytest.raises(ValueError, match="not the file this dataset was fitted with"):
        body_model_for_dataset(meta, smpl_model=str(standin.neutral))
    assert body_model_for_dataset(meta, smpl_model=str(standin.neutral), check_hash=False) is not None


def test_render_cli(truth_run, tmp_path, standin):
    from beam_jobs.cli import main

    out = tmp_path / "renders"
    code = main(["render", truth_run.output, "--frames", "0:3", "--no_mp4", "--scale", "1.5", "--side_by_side", "--alpha", "0.5",
                 "--out", str(out), "--smpl_model", str(standin.neutral)])
    assert code == 0
    pngs = sorted((out / truth_run.clip_ids[0]).glob("frame_*.png"))
    assert [p.name for p in pngs] == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    assert cv2.imread(str(pngs[0])).shape == (180, 2 * 240 + 4, 3)
    assert main(["render", truth_run.output, "--clip", "missing_clip", "--out", str(out),
                 "--smpl_model", str(standin.neutral)]) == 2
    with pytest.raises(SystemExit):
        main(["render", truth_run.output, "--frames", "a:b"])


def test_label_gives_the_frames_predicted_error():
    from pipeline.qa.overlay import TrackGeometry

    geom = TrackGeometry(track_id=0, color=np.zeros(3), e_norm=1.0, selected=True, frame_index=np.arange(2),
                         vertices=np.zeros((2, 1, 3)), reprojection=np.zeros((2, 17, 2)),
                         keypoints=np.zeros((2, 17, 3)), inlier=np.ones(2, bool),
                         pred_err_mm=np.array([44.6, np.inf]))
    assert geom.predicted(0) == " ~45 mm" and geom.predicted(1) == " 3D undetermined"
    assert TrackGeometry(**{**geom.__dict__, "pred_err_mm": None}).predicted(0) == ""


def test_label_gives_the_tracks_selection_score_and_verdict():
    from pipeline.qa.overlay import TrackGeometry

    geom = TrackGeometry(track_id=0, color=np.zeros(3), e_norm=1.25, selected=False, frame_index=np.arange(2),
                         vertices=np.zeros((2, 1, 3)), reprojection=np.zeros((2, 17, 2)),
                         keypoints=np.zeros((2, 17, 3)), inlier=np.ones(2, bool))
    assert geom.track_label() == "E_norm 1.25" and geom.verdict() == " (not selected)"  # no selection known
    scored = TrackGeometry(**{**geom.__dict__, "score_name": "predicted_error", "score": 51.6, "reason": "below_best_fraction"})
    assert scored.track_label() == "track ~52 mm" and scored.verdict() == " (not selected: below_best_fraction)"
    assert TrackGeometry(**{**scored.__dict__, "score": float("inf")}).track_label() == "track 3D undetermined"
    assert TrackGeometry(**{**scored.__dict__, "score_name": "e_norm", "score": 0.84}).track_label() == "E_norm 0.84"


def test_overlay_tracks_carry_the_runs_selection(truth_run, body_model):
    from pipeline.qa.overlay import _with_selection

    table = read_frames(truth_run.output, filter=FrameFilter(clip_ids=truth_run.clip_ids, selected_only=False))
    for output in (truth_run.output, f"{truth_run.output}/frames"):
        geometry = _with_selection(clip_geometry(table, body_model), output, truth_run.clip_ids[0])
        assert geometry and all(g.score_name == "e_norm" and g.score == g.e_norm for g in geometry)
        assert all(g.reason == "selected" for g in geometry if g.selected)
