"""pipeline.synth.corpus: a generated clip decodes, shows its people where the ground truth
puts them, and is reproducible from its seed."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.commands import synth as synth_command
from pipeline.synth.corpus import SynthConfig, _Body, generate_clip, generate_corpus, plan_corpus
from pipeline.synth.render import Mesh, rasterize
from pipeline.synth.truth import COCO_SUFFIX, GT_SUFFIX, INIT_SUFFIX, VISIBLE, ClipTruth

pytestmark = pytest.mark.slow

SEED = 11
CONFIG = SynthConfig.quick()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, standin):
    out = tmp_path_factory.mktemp("corpus")
    info = generate_corpus(out, num_clips=2, seed=SEED, config=CONFIG, body_model_path=standin.neutral, crowded=1, corrupt=2)
    return out, info


@pytest.fixture(scope="module")
def body(standin):
    return _Body(str(standin.neutral))


def _decode(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])
    capture.release()
    return np.stack(frames)


def _normal_clips(info) -> list[dict]:
    return [c for c in info["clips"] if c["kind"] == "normal"]


def test_layout_csv_and_metadata(corpus):
    out, info = corpus
    rows = []
    for split_csv in sorted(out.glob("*.csv")):
        with open(split_csv) as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames == ["label", "youtube_id", "time_start", "time_end", "split"]
            rows += list(reader)
    assert len(rows) == 5  # 2 normal + 1 crowded + 2 corrupt, every one listed
    for row in rows:
        stem = f"{row['youtube_id']}_{int(row['time_start']):06d}_{int(row['time_end']):06d}"
        assert (out / row["split"] / row["label"] / f"{stem}.mp4").is_file()
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["seed"] == SEED and meta["versions"]["corpus_format"] == "1"
    assert set(meta["motion_split"]["tuning"]).isdisjoint(meta["motion_split"]["heldout"])
    kinds = sorted(c["kind"] for c in meta["clips"])
    assert kinds == ["crowded", "garbage", "normal", "normal", "zero_byte"]
    for clip in meta["clips"]:
        video = out / clip["path"]
        if clip["kind"] == "zero_byte":
            assert video.stat().st_size == 0
        elif clip["kind"] == "garbage":
            assert video.stat().st_size > 0 and cv2.VideoCapture(str(video)).read()[0] is False
        else:
            stem = str(video)[: -len(".mp4")]
            for suffix in (GT_SUFFIX, COCO_SUFFIX, INIT_SUFFIX):
                assert Path(stem + suffix).is_file()
            assert clip["motion_set"] in ("tuning", "heldout")


def test_crowded_clip_has_more_than_six_detections_in_a_frame(corpus):
    out, info = corpus
    clip = next(c for c in info["clips"] if c["kind"] == "crowded")
    coco = json.loads((out / clip["path"]).with_suffix("").with_suffix(COCO_SUFFIX).read_text())
    per_frame = np.bincount([a["image_id"] for a in coco["annotations"] if a["synth_gt_track"] >= 0])
    assert per_frame.max() > 6
    truth = ClipTruth.load(str(out / clip["path"])[:-4] + GT_SUFFIX)
    assert truth.num_people >= 7


def test_clip_decodes_to_the_configured_video(corpus):
    out, info = corpus
    for clip in _normal_clips(info):
        frames = _decode(out / clip["path"])
        assert frames.shape == (CONFIG.num_frames, CONFIG.height, CONFIG.width, 3)
        capture = cv2.VideoCapture(str(out / clip["path"]))
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(CONFIG.fps)
        truth = ClipTruth.load(str(out / clip["path"])[:-4] + GT_SUFFIX)
        assert truth.num_frames == CONFIG.num_frames and truth.image_size == (CONFIG.width, CONFIG.height)


def test_ground_truth_is_self_consistent(corpus, body_model):
    out, info = corpus
    for clip in _normal_clips(info):
        truth = ClipTruth.load(str(out / clip["path"])[:-4] + GT_SUFFIX)
        T, P = truth.num_frames, truth.num_people
        with torch.no_grad():
            joints, keypoints = body_model.joints_and_keypoints(
                torch.from_numpy(truth.pose), torch.from_numpy(np.broadcast_to(truth.betas, (T, P, 10)).copy())
            )
        assert np.allclose(joints.numpy(), truth.joints3d, atol=1e-5)
        assert np.allclose(keypoints.numpy(), truth.keypoints3d, atol=1e-5)
        projected = truth.camera[..., None, :1] * truth.keypoints3d[..., :2] + truth.camera[..., None, 1:]
        assert np.allclose(projected, truth.keypoints2d, atol=1e-3)
        # Upright people: the global orientation is close to (pi, 0, 0) up to heading and roll.
        assert (truth.visibility <= VISIBLE).all() and truth.visibility.max() == VISIBLE


def _ground_truth_silhouettes(truth: ClipTruth, body_model, frame: int) -> np.ndarray:
    """(H, W) bool union of the people's meshes drawn from the ground-truth parameters alone."""
    with torch.no_grad():
        verts = body_model.vertices(torch.from_numpy(truth.pose[frame]), torch.from_numpy(truth.betas)).double().numpy()
    meshes = []
    for p in range(truth.num_people):
        s, tx, ty = truth.camera[frame, p].astype(np.float64)
        v = verts[p]
        meshes.append(Mesh(np.column_stack([s * v[:, 0] + tx, s * v[:, 1] + ty, s * v[:, 2]]), body_model.faces, np.ones(3)))
    width, height = truth.image_size
    return rasterize(meshes, height, width).covered


def test_rendered_people_are_where_the_ground_truth_puts_them(corpus, body, body_model, tmp_path):
    """Decode a clip and the same clip drawn without people: their difference is the people.

    The people's pixels must coincide with the silhouettes drawn from the ground-truth pose,
    shape and camera, and the visible keypoints must land on them."""
    out, info = corpus
    plans = {p.clip_id: p for p in plan_corpus(2, SEED, CONFIG)}
    checked_keypoints = 0
    on_changed_pixels = 0
    for clip in _normal_clips(info):
        plan = plans[clip["clip_id"]]
        generate_clip(plan, dataclasses.replace(CONFIG, render_people=False), body, tmp_path)
        with_people = _decode(out / clip["path"]).astype(np.int16)
        background = _decode(tmp_path / plan.relative_path()).astype(np.int16)
        truth = ClipTruth.load(str(out / clip["path"])[:-4] + GT_SUFFIX)
        assert ClipTruth.load(str(tmp_path / plan.relative_path())[:-4] + GT_SUFFIX).keypoints2d.tobytes() == truth.keypoints2d.tobytes()
        for t in range(0, truth.num_frames, 3):
            people = np.abs(with_people[t] - background[t]).max(axis=2) > 24
            people = cv2.morphologyEx(people.astype(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)).astype(bool)
            silhouette = _ground_truth_silhouettes(truth, body_model, t)
            if silhouette.sum() < 30:
                continue
            grown = cv2.dilate(silhouette.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            # Nearly every changed pixel belongs to a ground-truth silhouette (props aside) ...
            assert (people & grown).sum() / max(people.sum(), 1) > 0.9
            # ... and most silhouette pixels changed (clothes may match the background).
            assert (people & silhouette).sum() / silhouette.sum() > 0.75
            near = cv2.dilate(people.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            for p in range(truth.num_people):
                for k in np.nonzero(truth.visibility[t, p] == VISIBLE)[0]:
                    x, y = truth.keypoints2d[t, p, k]
                    # Every visible keypoint lies on the drawn body ...
                    assert grown[int(y), int(x)], (clip["clip_id"], t, p, k)
                    on_changed_pixels += bool(near[int(y), int(x)])
                    checked_keypoints += 1
    assert checked_keypoints > 100
    # ... and on pixels that changed (a pale face on a pale wall may not).
    assert on_changed_pixels / checked_keypoints > 0.9


def test_generation_is_deterministic(corpus, body, tmp_path):
    out, info = corpus
    clip = _normal_clips(info)[0]
    plan = next(p for p in plan_corpus(2, SEED, CONFIG) if p.clip_id == clip["clip_id"])
    again = generate_clip(plan, CONFIG, body, tmp_path)
    assert again["num_people"] == clip["num_people"]
    stem_a = str(out / clip["path"])[:-4]
    stem_b = str(tmp_path / plan.relative_path())[:-4]
    for suffix in (GT_SUFFIX, INIT_SUFFIX):
        a, b = np.load(stem_a + suffix), np.load(stem_b + suffix)
        assert a.files == b.files
        for key in a.files:
            assert np.array_equal(a[key], b[key]), (suffix, key)
    assert json.loads(Path(stem_a + COCO_SUFFIX).read_text()) == json.loads(Path(stem_b + COCO_SUFFIX).read_text())
    # x264 with one thread and bit-exact flags: the videos are identical too.
    assert Path(stem_a + ".mp4").read_bytes() == Path(stem_b + ".mp4").read_bytes()


def test_plans_depend_only_on_the_seed():
    a = plan_corpus(4, 3, CONFIG, crowded=1, corrupt=1)
    b = plan_corpus(4, 3, CONFIG, crowded=1, corrupt=1)
    c = plan_corpus(4, 4, CONFIG)
    assert a == b
    assert [p.clip_id for p in a[:4]] != [p.clip_id for p in c]
    assert len({p.clip_id for p in a}) == len(a)
    # A bigger corpus starts with the same clips.
    assert plan_corpus(6, 3, CONFIG)[:4] == a[:4]


def test_synth_command_writes_a_corpus(tmp_path, standin):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    synth_command.register(sub)
    args = parser.parse_args(
        ["synth", "--out", str(tmp_path), "--clips", "1", "--seed", "2", "--quick", "--duration", "1",
         "--workers", "1", "--body-model", str(standin.neutral)]  # fmt: skip
    )
    assert args.func(args) == 0
    meta = json.loads((tmp_path / "corpus.json").read_text())
    assert meta["config"]["duration"] == 1.0 and len(meta["clips"]) == 1
    with pytest.raises(ValueError, match="duration"):
        SynthConfig(duration=0.5)
    with pytest.raises(ValueError, match="even"):
        SynthConfig(width=161)
