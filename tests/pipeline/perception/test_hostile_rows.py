"""Hostile input rows become one clip or a ``bad_input_row`` rejection, never a crash:
duplicate rows, one file under two names, long or path-like labels and splits, remote
URIs of schemes the job cannot read, and hidden files a glob leaves out (with a log line)."""

from __future__ import annotations

import json
import logging
import os

import pytest

from pipeline.perception.inputs import InputSpec, name_problem, read_inputs
from pipeline.records import RejectReason


def _touch(path, data=b"video bytes"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _ids(listing):
    return [c.clip_id for c in listing.clips], [r.clip.clip_id for r in listing.rejected]


@pytest.mark.parametrize("copies", [3, 200])
def test_duplicate_csv_rows_become_one_clip_and_unique_rejections(tmp_path, copies):
    _touch(tmp_path / "videos" / "goodA_000000_000001.mp4")
    rows = ["label,youtube_id,time_start,time_end,split"] + ["walk,goodA,0,1,train"] * copies
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    spec = InputSpec(str(tmp_path / "list.csv"), str(tmp_path / "videos"))
    listing = read_inputs(spec)
    clips, rejected = _ids(listing)
    assert clips == ["goodA_000000_000001"]
    assert len(rejected) == copies - 1 and len(set(rejected)) == copies - 1  # every id unique
    assert all(r.reject_reason == RejectReason.BAD_INPUT_ROW for r in listing.rejected)
    assert all("duplicate" in r.message and "remove" in r.message for r in listing.rejected)
    assert _ids(read_inputs(spec)) == (clips, rejected)  # the same ids on a rerun


def test_a_symlink_to_a_listed_file_is_one_clip(tmp_path):
    video = _touch(tmp_path / "corpus" / "walk" / "holiday.mp4")
    os.symlink(video, tmp_path / "corpus" / "walk" / "alias.mp4")
    listing = read_inputs(InputSpec(str(tmp_path / "corpus" / "**" / "*.mp4")))
    assert len(listing.clips) == 1 and len(listing.rejected) == 1
    (rejected,) = listing.rejected
    assert rejected.reject_reason == RejectReason.BAD_INPUT_ROW
    assert "same file" in rejected.message and listing.clips[0].clip_id in rejected.message
    manifest = tmp_path / "m.jsonl"  # the same file twice in a manifest, spelled two ways
    manifest.write_text(json.dumps({"uri": str(video)}) + "\n" + json.dumps({"uri": "corpus/walk/../walk/alias.mp4"}) + "\n")
    listing = read_inputs(InputSpec(str(manifest)))
    assert len(listing.clips) == 1 and [r.reject_reason for r in listing.rejected] == [RejectReason.BAD_INPUT_ROW]


def test_one_full_video_cut_into_two_ranges_stays_two_clips(tmp_path):
    _touch(tmp_path / "videos" / "full.mp4")
    rows = ["label,youtube_id,time_start,time_end,split", "walk,full,0,2,train", "walk,full,2,4,train"]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    listing = read_inputs(InputSpec(str(tmp_path / "list.csv"), str(tmp_path / "videos")))
    assert len(listing.clips) == 2 and not listing.rejected


BAD_NAMES = {
    "long_split": ("walk", "S" * 250),
    "parent_label": ("../outside", "train"),
    "dotdot_split": ("walk", ".."),
    "slash_label": ("a/b", "train"),
    "control_split": ("walk", "tr\x01ain"),
}


@pytest.mark.parametrize("case", list(BAD_NAMES))
def test_csv_labels_and_splits_that_are_not_names_are_bad_rows(tmp_path, case):
    label, split = BAD_NAMES[case]
    _touch(tmp_path / "root" / "videos" / "goodA_000000_000001.mp4")
    _touch(tmp_path / "root" / "outside" / "goodB_000000_000001.mp4")  # reachable by ../outside
    _touch(tmp_path / "root" / "videos" / "goodB.mp4")  # a file named like a path component
    rows = ["label,youtube_id,time_start,time_end,split", "walk,goodA,0,1,train",
            f'"{label}",goodB,0,1,"{split}"', f'"{label}",goodC,0,1,"{split}"']  # fmt: skip
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    listing = read_inputs(InputSpec(str(tmp_path / "list.csv"), str(tmp_path / "root" / "videos")))
    assert [c.clip_id for c in listing.clips] == ["goodA_000000_000001"]
    assert len(listing.rejected) == 2
    for result in listing.rejected:
        assert result.reject_reason == RejectReason.BAD_INPUT_ROW
        assert "list.csv:" in result.message and ("shorten" in result.message or "give a plain" in result.message)
    for clip in listing.clips:
        assert os.path.commonpath([clip.uri, str(tmp_path / "root" / "videos")]) == str(tmp_path / "root" / "videos")


@pytest.mark.parametrize("case", list(BAD_NAMES))
def test_manifest_labels_and_splits_that_are_not_names_are_bad_rows(tmp_path, case):
    label, split = BAD_NAMES[case]
    video = _touch(tmp_path / "v.mp4")
    (tmp_path / "m.jsonl").write_text(json.dumps({"uri": str(video), "label": label, "split": split}) + "\n")
    listing = read_inputs(InputSpec(str(tmp_path / "m.jsonl")))
    assert not listing.clips
    (result,) = listing.rejected
    assert result.reject_reason == RejectReason.BAD_INPUT_ROW and "m.jsonl:1" in result.message


def test_ordinary_kinetics_labels_are_names():
    for label in ("playing guitar", "passing American football (in game)", "val", "train", "", "Ünïcode label"):
        assert name_problem("label", label) is None


@pytest.mark.parametrize("scheme", ["http", "https", "ftp", "sftp", "data"])
def test_unsupported_uri_schemes_are_rejected_with_a_reason(tmp_path, scheme):
    video = _touch(tmp_path / "v.mp4")
    lines = [json.dumps({"uri": str(video)}), json.dumps({"uri": f"{scheme}://example.com/clip.mp4"}),
             json.dumps({"uri": str(video), "clip_id": "kp", "keypoints_uri": f"{scheme}://example.com/k.coco.json"})]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    listing = read_inputs(InputSpec(str(tmp_path / "m.jsonl")))
    assert len(listing.clips) == 1
    assert len(listing.rejected) == 2
    for result in listing.rejected:
        assert result.reject_reason == RejectReason.BAD_INPUT_ROW
        assert f"{scheme}://" in result.message and "gs://" in result.message and "local path" in result.message
        assert "\n" not in result.message


def test_supported_remote_schemes_are_kept_and_the_check_is_injectable(tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"uri": "gs://bucket/a.mp4"}) + "\n" + json.dumps({"uri": "s3://b/c.mp4"}) + "\n")
    listing = read_inputs(InputSpec(str(tmp_path / "m.jsonl")))
    assert len(listing.clips) == 2 and not listing.rejected
    listing = read_inputs(InputSpec(str(tmp_path / "m.jsonl")), scheme_problem=lambda uri: "no s3 here" if "s3" in uri else None)
    assert len(listing.clips) == 1 and "no s3 here" in listing.rejected[0].message


def test_hidden_files_left_out_of_a_glob_are_logged_once(tmp_path, caplog):
    _touch(tmp_path / "c" / "seen.mp4")
    _touch(tmp_path / "c" / ".hidden.mp4")
    _touch(tmp_path / "c" / ".cache" / "inner.mp4")
    with caplog.at_level(logging.INFO, logger="pipeline.perception.inputs"):
        listing = read_inputs(InputSpec(str(tmp_path / "c" / "**" / "*.mp4")))
    assert len(listing.clips) == 1
    lines = [r.getMessage() for r in caplog.records if "hidden" in r.getMessage()]
    assert len(lines) == 1 and "2 hidden" in lines[0] and "manifest" in lines[0], lines
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.perception.inputs"):
        read_inputs(InputSpec(str(tmp_path / "c" / "seen.mp4")))
    assert not [r for r in caplog.records if "hidden" in r.getMessage()]


def test_an_input_of_an_unreadable_scheme_is_one_whole_run_error():
    with pytest.raises(ValueError, match=r"--input https://example.com/x/\*\.mp4: the job cannot read https:// URIs"):
        read_inputs(InputSpec("https://example.com/x/*.mp4"))
    with pytest.raises(ValueError, match="--video_root ftp://host/videos"):
        read_inputs(InputSpec("list.csv", video_root="ftp://host/videos"))
