"""pipeline.qa.evaluate: matching, pose/tracking metrics and the frames/ Parquet loader."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.qa.evaluate import (
    EvaluationConfig,
    TrackPrediction,
    evaluate,
    evaluate_corpus,
    find_ground_truth,
    load_predictions,
    truth_positions,
)
from pipeline.synth.truth import OCCLUDED, VISIBLE, ClipTruth


def make_truth(clip_id="abc_000000_000010", label="walking", frames=30, people=2, seed=0) -> ClipTruth:
    """Random but well separated people (no rendering needed)."""
    rng = np.random.default_rng(seed)
    joints = rng.normal(scale=0.3, size=(frames, people, 24, 3)).astype(np.float32)
    joints += np.linspace(0, 0.2, frames)[:, None, None, None].astype(np.float32)  # smooth drift
    keypoints3d = joints[:, :, 7:24].copy()
    camera = np.zeros((frames, people, 3), np.float32)
    camera[..., 0] = 100.0
    camera[..., 1] = 100.0 + 250.0 * np.arange(people)
    camera[..., 2] = 150.0
    kp2d = camera[..., None, :1] * keypoints3d[..., :2] + camera[..., None, 1:]
    lo, hi = kp2d.min(axis=2), kp2d.max(axis=2)
    visibility = np.full((frames, people, 17), VISIBLE, np.uint8)
    visibility[:, :, 0] = OCCLUDED
    return ClipTruth(
        clip_id=clip_id, label=label, split="train", fps=25.0, image_size=(640, 360), camera_height=1.2,
        frame_index=np.arange(frames, dtype=np.int32), frame_time=np.arange(frames) / 25.0,
        track_id=np.arange(people, dtype=np.int32), motion=np.array([label] * people),
        betas=np.zeros((people, 10), np.float32), pose=np.zeros((frames, people, 72), np.float32), camera=camera,
        joints3d=joints, keypoints3d=keypoints3d, keypoints2d=kp2d.astype(np.float32), visibility=visibility,
        occluder=np.full((frames, people, 17), -1, np.int16), bbox=np.concatenate([lo, hi], -1).astype(np.float32),
        visible_pixels=np.full((frames, people), 500, np.int32), depth=np.full((frames, people), 4.0, np.float32),
        focal=np.full(frames, 400.0, np.float32), principal=np.tile([320.0, 180.0], (frames, 1)).astype(np.float32),
        roll=np.zeros(frames, np.float32),
    )  # fmt: skip


def perfect_tracks(truth: ClipTruth, frames=None) -> list[TrackPrediction]:
    frames = np.arange(truth.num_frames) if frames is None else np.asarray(frames)
    return [
        TrackPrediction(
            clip_id=truth.clip_id,
            track_id=10 + p,
            frame_index=frames,
            reprojection=truth.keypoints2d[frames, p].astype(np.float64),
            joints3d=truth.joints3d[frames, p].astype(np.float64),
            keypoints3d=truth.keypoints3d[frames, p].astype(np.float64),
        )
        for p in range(truth.num_people)
    ]


def test_perfect_predictions_score_perfectly():
    truth = make_truth()
    result = evaluate({truth.clip_id: truth}, perfect_tracks(truth))
    m = result.overall
    assert m["mpjpe_mm"] == pytest.approx(0, abs=1e-3) and m["pa_mpjpe_mm"] == pytest.approx(0, abs=1e-3)
    assert m["accel_error_mm_per_frame2"] == pytest.approx(0, abs=1e-3)
    assert m["pck"] == 1.0 and m["recall"] == 1.0 and m["precision"] == 1.0
    assert m["id_switches"] == 0 and m["track_purity"] == 1.0
    assert m["matched_frames"] == 60 and result.missing_clips == () and result.unknown_clips == ()
    assert set(result.per_motion_set) == {"tuning"}


def test_known_errors_are_measured():
    truth = make_truth()
    tracks = perfect_tracks(truth)
    shifted = []
    for track in tracks:
        joints = track.joints3d.copy()
        joints[:, 5] += [0.024, 0.0, 0.0]  # 24 mm on one of 24 joints -> 1 mm MPJPE
        reproj = track.reprojection + np.where(np.arange(17) < 4, 30.0, 0.0)[None, :, None]
        shifted.append(dataclasses.replace(track, joints3d=joints, reprojection=reproj))
    m = evaluate({truth.clip_id: truth}, shifted, EvaluationConfig(match_threshold=0.5)).overall
    assert m["mpjpe_mm"] == pytest.approx(1.0, abs=1e-3)
    # Keypoints 0..3 are 42 px off (> 10 % of the box); keypoint 0 is occluded and ignored.
    assert m["pck"] == pytest.approx(13 / 16)


def test_identity_swap_counts_switches_and_lowers_purity():
    truth = make_truth(frames=20)
    a, b = perfect_tracks(truth)
    half = 10
    # Track 10 follows person 0 then jumps to person 1; track 11 the other way round.
    swap_a = dataclasses.replace(a, reprojection=np.concatenate([a.reprojection[:half], b.reprojection[half:]]),
                                 joints3d=np.concatenate([a.joints3d[:half], b.joints3d[half:]]))  # fmt: skip
    swap_b = dataclasses.replace(b, reprojection=np.concatenate([b.reprojection[:half], a.reprojection[half:]]),
                                 joints3d=np.concatenate([b.joints3d[:half], a.joints3d[half:]]))  # fmt: skip
    m = evaluate({truth.clip_id: truth}, [swap_a, swap_b]).overall
    assert m["id_switches"] == 2
    assert m["track_purity"] == pytest.approx(0.5)
    assert m["mpjpe_mm"] == pytest.approx(0, abs=1e-3)  # each frame is still right


def test_missing_frames_clips_and_false_positives():
    truth = make_truth()
    other = make_truth(clip_id="zzz_000000_000010", label="running", seed=1)
    tracks = perfect_tracks(truth, frames=np.arange(0, 30, 2))[:1]
    ghost = TrackPrediction("abc_000000_000010", 99, np.arange(5), np.full((5, 17, 2), 5.0), np.zeros((5, 24, 3)))
    unknown = TrackPrediction("nope_000000_000010", 0, np.arange(3), np.zeros((3, 17, 2)))
    result = evaluate({truth.clip_id: truth, other.clip_id: other}, tracks + [ghost, unknown])
    m = result.overall
    assert m["recall"] == pytest.approx(15 / 120)  # 15 matched of 2 clips x 2 people x 30 frames
    assert m["precision"] == pytest.approx(15 / 20)
    assert result.missing_clips == ("zzz_000000_000010",) and result.unknown_clips == ("nope_000000_000010",)
    assert set(result.per_motion_set) == {"tuning", "heldout"}
    assert result.per_motion_set["heldout"]["recall"] == 0.0
    assert result.to_dict()["per_clip"]["zzz_000000_000010"]["mpjpe_mm"] is None
    assert "overall" in result.format_table()


def test_a_clip_decoded_below_its_rate_is_matched_by_time():
    """A 60 fps clip decoded at 25 fps: decoded frame k is the source frame nearest k / 25 s,
    so its frame_index is not the truth's; frame_time puts it on the right truth frame."""
    truth = make_truth(frames=120)
    truth = dataclasses.replace(truth, fps=60.0, frame_time=np.arange(120) / 60.0)
    source = np.round(np.arange(50) / 25.0 * 60.0).astype(int)  # 0, 2, 5, 7, 10, ...
    tracks = [dataclasses.replace(t, frame_index=np.arange(50), frame_time=source / 60.0)
              for t in perfect_tracks(truth, frames=source)]
    np.testing.assert_array_equal(truth_positions(truth, tracks[0]), source)
    result = evaluate({truth.clip_id: truth}, tracks)
    m = result.overall
    assert m["mpjpe_mm"] == pytest.approx(0, abs=1e-3) and m["pck"] == 1.0 and m["precision"] == 1.0
    assert m["id_switches"] == 0 and m["matched_frames"] == 100
    # without frame_time the same rows land on the truth's frames 0..49: the wrong frames
    # (here the people moved too far to match: 2 of 100 frames)
    by_index = [dataclasses.replace(t, frame_time=None) for t in tracks]
    assert evaluate({truth.clip_id: truth}, by_index).overall["matched_frames"] < 10
    # a time more than half a truth interval from every truth frame (after the clip) matches nothing
    late = dataclasses.replace(tracks[0], frame_time=120 / 60.0 + 0.6 / 60.0 + source / 60.0)
    assert (truth_positions(truth, late) == -1).all()
    nearly = dataclasses.replace(tracks[0], frame_time=source / 60.0 + 0.4 / 60.0)  # nearer its own frame
    np.testing.assert_array_equal(truth_positions(truth, nearly), source)


def test_prediction_shapes_are_checked():
    with pytest.raises(ValueError, match="reprojection"):
        TrackPrediction("c", 0, np.arange(3), np.zeros((3, 17, 3)))
    with pytest.raises(ValueError, match="joints3d"):
        TrackPrediction("c", 0, np.arange(3), np.zeros((3, 17, 2)), joints3d=np.zeros((3, 17, 3)))


def _frames_table(tracks: list[TrackPrediction], fixed_size: bool) -> pa.Table:
    rows = {"clip_id": [], "track_id": [], "frame_index": [], "joints_3d": [], "keypoints_3d": [], "reprojection_2d": [], "inlier": []}
    for track in tracks:
        for i, f in enumerate(track.frame_index):
            rows["clip_id"].append(track.clip_id)
            rows["track_id"].append(track.track_id)
            rows["frame_index"].append(int(f))
            rows["joints_3d"].append(track.joints3d[i].tolist())
            rows["keypoints_3d"].append(track.keypoints3d[i].tolist())
            rows["reprojection_2d"].append(track.reprojection[i].tolist())
            rows["inlier"].append(bool(f % 5))

    def nested(n, d):
        return pa.list_(pa.list_(pa.float32(), d), n) if fixed_size else pa.list_(pa.list_(pa.float32()))

    schema = pa.schema([("clip_id", pa.string()), ("track_id", pa.int32()), ("frame_index", pa.int32()),
                        ("joints_3d", nested(24, 3)), ("keypoints_3d", nested(17, 3)), ("reprojection_2d", nested(17, 2)),
                        ("inlier", pa.bool_())])  # fmt: skip
    return pa.table(rows, schema=schema)


@pytest.mark.parametrize("fixed_size", [True, False])
def test_parquet_frames_round_trip(tmp_path, fixed_size):
    truth = make_truth()
    tracks = perfect_tracks(truth)
    table = _frames_table(tracks[::-1], fixed_size)
    (tmp_path / "out" / "frames").mkdir(parents=True)
    pq.write_table(table.slice(0, 25), tmp_path / "out" / "frames" / "shard-a.parquet")
    pq.write_table(table.slice(25), tmp_path / "out" / "frames" / "shard-b.parquet")
    loaded = load_predictions(tmp_path / "out")
    assert [(t.clip_id, t.track_id) for t in loaded] == [(truth.clip_id, 10), (truth.clip_id, 11)]
    for got, want in zip(loaded, tracks):
        assert np.array_equal(got.frame_index, want.frame_index)
        assert np.allclose(got.joints3d, want.joints3d, atol=1e-6)
        assert np.allclose(got.reprojection, want.reprojection, atol=1e-4)
    inliers = load_predictions(tmp_path / "out" / "frames", inliers_only=True)
    assert all((t.frame_index % 5 != 0).all() for t in inliers)
    # The corpus-level entry point reads ground truth from a corpus folder.
    corpus = tmp_path / "corpus" / "train" / "walking"
    corpus.mkdir(parents=True)
    truth.save(corpus / f"{truth.clip_id}.gt.npz")
    assert list(find_ground_truth(tmp_path / "corpus")) == [truth.clip_id]
    result = evaluate_corpus(tmp_path / "corpus", tmp_path / "out")
    assert result.overall["mpjpe_mm"] == pytest.approx(0, abs=1e-2) and result.overall["recall"] == 1.0


def test_loader_and_corpus_errors_name_the_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="vid2mesh synth"):
        find_ground_truth(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="ground truth"):
        find_ground_truth(tmp_path)
    (tmp_path / "frames").mkdir()
    pq.write_table(pa.table({"clip_id": ["a"], "track_id": [0], "frame_index": [0]}), tmp_path / "frames" / "x.parquet")
    with pytest.raises(ValueError, match="reprojection_2d"):
        load_predictions(tmp_path)


def test_truth_save_load_round_trip(tmp_path):
    truth = make_truth()
    truth.save(tmp_path / "t.gt.npz")
    back = ClipTruth.load(tmp_path / "t.gt.npz")
    assert back.clip_id == truth.clip_id and back.image_size == (640, 360) and back.fps == 25.0
    assert np.array_equal(back.joints3d, truth.joints3d) and back.motion.tolist() == truth.motion.tolist()
    (tmp_path / "bad.gt.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="regenerate"):
        ClipTruth.load(tmp_path / "bad.gt.npz")
