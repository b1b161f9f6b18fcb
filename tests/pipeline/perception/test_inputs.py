"""Input listing: globs, Kinetics CSVs (bad rows -> rejections), manifests, keypoint lookup."""

from __future__ import annotations

import json

import pytest

from pipeline.perception.inputs import (
    InputSpec,
    clip_from_video_path,
    keypoint_candidates,
    locate_keypoints,
    read_inputs,
)
from pipeline.records import ClipRef, PerceptionResult, RejectReason, clip_id_for


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    _touch(root / "train" / "walk" / "abc_000010_000020.mp4")
    _touch(root / "train" / "walk" / "abc_000010_000020.coco.json", b"{}")
    _touch(root / "val" / "jump" / "xyz-1_000000_000010.mp4")
    _touch(root / "val" / "jump" / "xyz-1_000000_000010.gt.npz")
    _touch(root / "other" / "holiday clip.mov")
    _touch(root / "notes.txt")
    return root


def test_glob_lists_videos_with_deterministic_ids(corpus):
    listing = read_inputs(InputSpec(str(corpus / "**" / "*")))
    ids = [c.clip_id for c in listing.clips]
    assert ids == sorted(ids) and len(ids) == 3
    by_id = {c.clip_id: c for c in listing.clips}
    walk = by_id["abc_000010_000020"]
    assert (walk.label, walk.split, walk.time_start, walk.time_end) == ("walk", "train", None, None)
    assert by_id["xyz-1_000000_000010"].split == "val"
    other = [c for c in listing.clips if c.uri.endswith(".mov")][0]
    assert other.clip_id.startswith("holiday_clip-") and other.label == "other" and other.split == ""
    # The same corpus listed through its folder gives the same ids.
    again = read_inputs(InputSpec(str(corpus)))
    assert [c.clip_id for c in again.clips] == ids
    assert listing.rejected == ()


def test_glob_with_explicit_extension_keeps_non_videos(corpus):
    listing = read_inputs(InputSpec(str(corpus / "*.txt")))
    assert [c.uri.rsplit("/", 1)[-1] for c in listing.clips] == ["notes.txt"]


def test_empty_glob_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="matches no video"):
        read_inputs(InputSpec(str(tmp_path / "*.mp4")))


def test_kinetics_csv_rows_bad_rows_and_duplicates(corpus):
    _touch(corpus / "full" / "fullvid.mp4")
    csv_path = corpus / "train.csv"
    csv_path.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "walk,abc,10,20,train\n"          # cut clip found by its stem
        "dance,fullvid,3.0,13.0,train\n"  # full video: time range kept
        "run,missing,0,10,train\n"        # no file: expected path, perception says missing_file
        "walk,abc,10,20,train\n"          # duplicate
        "bad,row\n"                       # wrong column count
        "walk,def,ten,20,train\n"         # not a number
        "walk,ghi,20,10,train\n"          # empty range
        "walk,,0,10,train\n"              # no id
        "\n"
    )
    listing = read_inputs(InputSpec(str(csv_path), video_root=str(corpus)))
    by_id = {c.clip_id: c for c in listing.clips}
    assert set(by_id) == {"abc_000010_000020", "fullvid_000003_000013", "missing_000000_000010"}
    assert by_id["abc_000010_000020"].uri.endswith("train/walk/abc_000010_000020.mp4")
    assert by_id["abc_000010_000020"].time_start is None
    full = by_id["fullvid_000003_000013"]
    assert (full.time_start, full.time_end, full.label) == (3.0, 13.0, "dance")
    assert by_id["missing_000000_000010"].uri.endswith("train/run/missing_000000_000010.mp4")
    assert len(listing.rejected) == 5
    assert all(r.reject_reason == RejectReason.BAD_INPUT_ROW for r in listing.rejected)
    messages = " | ".join(r.message for r in listing.rejected)
    for text in ("duplicate clip id", "expected 5 columns", "not numbers", "bad time range", "bad youtube_id"):
        assert text in messages
    assert any(":6:" in r.message for r in listing.rejected)  # file:line
    assert len({r.clip.clip_id for r in listing.rejected}) == 5
    assert listing.num_inputs == 8
    assert read_inputs(InputSpec(str(csv_path), video_root=str(corpus))) == listing  # deterministic


def test_csv_without_header_columns_is_an_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        read_inputs(InputSpec(str(path)))


def test_manifest(tmp_path):
    _touch(tmp_path / "videos" / "clip one.mp4")
    lines = [
        {"uri": "videos/clip one.mp4", "label": "wave", "split": "train", "source": "lab"},
        {"uri": "/abs/k_000001_000011.mp4", "youtube_id": "k", "time_start": 1, "time_end": 11},
        {"uri": "x.mp4", "clip_id": "custom-id", "keypoints_uri": "kp/x.coco.json"},
        {"label": "no uri"},
        "not an object",
        {"uri": "y.mp4", "time_start": 5, "time_end": 2},
    ]
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n# comment\n{broken\n")
    listing = read_inputs(InputSpec(str(path)))
    by_id = {c.clip_id: c for c in listing.clips}
    assert "k_000001_000011" in by_id and "custom-id" in by_id
    one = [c for c in listing.clips if c.uri.endswith("clip one.mp4")][0]
    assert one.uri == str(tmp_path / "videos" / "clip one.mp4")
    assert (one.label, one.split, one.extra) == ("wave", "train", {"source": "lab"})
    assert by_id["custom-id"].keypoints_uri == str(tmp_path / "kp" / "x.coco.json")
    assert len(listing.rejected) == 4
    assert all("manifest.jsonl:" in r.message for r in listing.rejected)


def test_clip_id_for_kinetics_names():
    clip = clip_from_video_path("/d/train/a b/-x_Yz_000003_000013.mp4")
    assert clip.clip_id == clip_id_for("-x_Yz", 3, 13) == "-x_Yz_000003_000013"
    assert (clip.label, clip.split) == ("a b", "train")


def test_keypoints_next_to_video_and_under_root(corpus, tmp_path):
    clip = read_inputs(InputSpec(str(corpus))).clips[0]
    assert clip.clip_id == "abc_000010_000020"
    found = locate_keypoints(clip)
    assert isinstance(found, ClipRef) and found.keypoints_uri.endswith("walk/abc_000010_000020.coco.json")

    root = tmp_path / "kp"
    missing = locate_keypoints(clip, str(root))
    assert isinstance(missing, PerceptionResult) and missing.reject_reason == RejectReason.MISSING_KEYPOINTS
    assert str(root) in missing.message and "tried" in missing.message
    _touch(root / "abc_000010_000020.coco.json")
    assert locate_keypoints(clip, str(root)).keypoints_uri == str(root / "abc_000010_000020.coco.json")
    _touch(root / "train" / "walk" / "abc_000010_000020.coco.json")  # the split/label path wins
    assert locate_keypoints(clip, str(root)).keypoints_uri == str(root / "train" / "walk" / "abc_000010_000020.coco.json")
    candidates = keypoint_candidates(clip, str(root))
    assert candidates[0].endswith("train/walk/abc_000010_000020.coco.json")
    assert any(c.endswith("_openpose") for c in candidates)


def test_manifest_keypoints_that_do_not_exist_are_rejected(tmp_path):
    clip = ClipRef("c", str(tmp_path / "c.mp4"), keypoints_uri=str(tmp_path / "nope.coco.json"))
    result = locate_keypoints(clip)
    assert isinstance(result, PerceptionResult) and "nope.coco.json" in result.message
