"""Every listed entry accounted for, unique absolute clip ids, and hostile input rows.

Glob entries that are not readable regular video files become rejections with their own
reason; single files, globs, CSVs and manifests give unique, stable ids and
absolute URIs; NaN/Inf times, byte-order marks, fractional ranges and deeply
nested manifest lines are handled."""

from __future__ import annotations

import json
import logging
import os

import pytest

from pipeline.perception.inputs import InputSpec, local_file_problem, read_inputs, video_rejection
from pipeline.records import ClipRef, RejectReason, clip_id_for


def _touch(path, data=b"video bytes"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def hostile_corpus(tmp_path):
    root = tmp_path / "corpus"
    _touch(root / "good.mp4")
    _touch(root / "sub" / "also good.mp4")
    os.symlink(root / "gone.mp4", root / "dangling.mp4")
    os.symlink(root / "loop-b.mp4", root / "loop-a.mp4")
    os.symlink(root / "loop-a.mp4", root / "loop-b.mp4")
    (root / "folder.mp4").mkdir()
    os.mkfifo(root / "pipe.mp4")
    return root


def test_every_glob_entry_is_a_clip_or_a_rejection_with_its_reason(hostile_corpus, caplog):
    caplog.set_level(logging.WARNING)
    listing = read_inputs(InputSpec(str(hostile_corpus / "**" / "*.mp4")))
    assert sorted(os.path.basename(c.uri) for c in listing.clips) == ["also good.mp4", "good.mp4"]
    reasons = {os.path.basename(r.clip.uri): (r.reject_reason, r.message) for r in listing.rejected}
    assert {name: reason for name, (reason, _) in reasons.items()} == {
        "dangling.mp4": RejectReason.MISSING_FILE,
        "loop-a.mp4": RejectReason.MISSING_FILE,
        "loop-b.mp4": RejectReason.MISSING_FILE,
        "folder.mp4": RejectReason.NOT_A_FILE,
        "pipe.mp4": RejectReason.NOT_A_FILE,
    }
    assert "dangling symlink" in reasons["dangling.mp4"][1]
    assert "symlink loop" in reasons["loop-a.mp4"][1]
    assert "is a directory" in reasons["folder.mp4"][1]
    assert "FIFO" in reasons["pipe.mp4"][1]
    for name, (_, message) in reasons.items():
        assert str(hostile_corpus / name) in message  # names the file ...
        assert any(name in record.getMessage() for record in caplog.records)  # ... and logs a line
    assert listing.num_inputs == 7
    assert "5 not readable" in listing.description
    ids = [c.clip_id for c in listing.clips] + [r.clip.clip_id for r in listing.rejected]
    assert len(set(ids)) == len(ids)


def test_a_folder_pattern_and_a_glob_give_the_same_accounting(hostile_corpus):
    by_glob = read_inputs(InputSpec(str(hostile_corpus / "**" / "*.mp4")))
    by_folder = read_inputs(InputSpec(str(hostile_corpus)))
    assert by_folder == dataclass_replace_description(by_glob, by_folder.description)


def dataclass_replace_description(listing, description):
    import dataclasses

    return dataclasses.replace(listing, description=description)


def test_permission_errors_are_unreadable_not_missing(hostile_corpus, monkeypatch):
    """Files and folders that cannot be read (simulated: the suite may run as root)."""
    secret = hostile_corpus / "secret.mp4"
    _touch(secret)
    hidden = hostile_corpus / "locked"
    _touch(hidden / "inside.mp4")
    real_access, real_scandir = os.access, os.scandir

    def access(path, mode, *args, **kwargs):
        return False if os.fspath(path) == str(secret) else real_access(path, mode, *args, **kwargs)

    def scandir(path="."):
        if os.fspath(path) == str(hidden):
            raise PermissionError(13, "Permission denied", str(hidden))
        return real_scandir(path)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "scandir", scandir)
    listing = read_inputs(InputSpec(str(hostile_corpus / "**" / "*.mp4")))
    by_uri = {r.clip.uri: r for r in listing.rejected}
    assert by_uri[str(secret)].reject_reason == RejectReason.UNREADABLE
    assert "permission denied" in by_uri[str(secret)].message and "chmod" in by_uri[str(secret)].message
    assert by_uri[str(hidden)].reject_reason == RejectReason.UNREADABLE
    assert "cannot list the folder" in by_uri[str(hidden)].message


def test_fifo_and_devices_have_their_own_message(tmp_path):
    os.mkfifo(tmp_path / "p.mp4")
    reason, message = local_file_problem(str(tmp_path / "p.mp4"))
    assert reason == RejectReason.NOT_A_FILE and "FIFO" in message and "0 bytes" not in message
    reason, message = local_file_problem("/dev/zero")
    assert reason == RejectReason.NOT_A_FILE and "character device" in message
    rejected = video_rejection(ClipRef("z", "/dev/zero"))
    assert rejected.reject_reason == RejectReason.NOT_A_FILE and "/dev/zero" in rejected.message
    assert local_file_problem(str(_touch(tmp_path / "ok.mp4"))) is None
    assert local_file_problem("gs://bucket/x.mp4") is None


def test_single_files_with_one_name_get_different_ids_and_absolute_uris(tmp_path, monkeypatch):
    a = _touch(tmp_path / "a" / "video.avi", b"one")
    b = _touch(tmp_path / "b" / "video.avi", b"two")
    monkeypatch.chdir(tmp_path / "a")
    one = read_inputs(InputSpec("video.avi")).clips[0]
    monkeypatch.chdir(tmp_path)
    two = read_inputs(InputSpec("b/video.avi")).clips[0]
    assert one.clip_id != two.clip_id
    assert one.uri == str(a) and two.uri == str(b)
    assert one.clip_id.startswith("video-") and not one.clip_id.endswith("da39a3ee")
    # Stable: the same file through another spelling (absolute, glob, symlink) keeps its id.
    assert read_inputs(InputSpec(str(a))).clips[0].clip_id == one.clip_id
    assert read_inputs(InputSpec(str(tmp_path / "a" / "*.avi"))).clips[0].clip_id == one.clip_id
    os.symlink(tmp_path / "a", tmp_path / "link")
    assert read_inputs(InputSpec(str(tmp_path / "link" / "video.avi"))).clips[0].clip_id == one.clip_id
    # Two globs of different folders into one output never share ids either.
    both = read_inputs(InputSpec(str(tmp_path / "*" / "video.avi")))
    assert len({c.clip_id for c in both.clips}) == len(both.clips) >= 2
    assert all(os.path.isabs(c.uri) for c in both.clips)


def test_manifest_and_csv_uris_are_absolute(tmp_path, monkeypatch):
    _touch(tmp_path / "data" / "videos" / "x.mp4")
    _touch(tmp_path / "data" / "videos" / "abc.mp4")
    (tmp_path / "data" / "m.jsonl").write_text(json.dumps({"uri": "videos/x.mp4"}) + "\n")
    (tmp_path / "data" / "k.csv").write_text("label,youtube_id,time_start,time_end,split\nwalk,abc,1,3,train\n")
    monkeypatch.chdir(tmp_path)
    manifest = read_inputs(InputSpec("data/m.jsonl")).clips[0]
    assert manifest.uri == str(tmp_path / "data" / "videos" / "x.mp4")
    csv_clip = read_inputs(InputSpec("data/k.csv", video_root="data/videos")).clips[0]
    assert csv_clip.uri == str(tmp_path / "data" / "videos" / "abc.mp4")


def test_fractional_ranges_keep_distinct_ids():
    assert clip_id_for("v", 10, 20) == "v_000010_000020"
    assert clip_id_for("v", 1.2, 3.4) == "v_000001.2_000003.4"
    assert clip_id_for("v", 1.4, 3.2) != clip_id_for("v", 1.2, 3.4)
    assert clip_id_for("v", 0.000001, 2.5) == "v_000000.000001_000002.5"


def test_csv_bom_nan_inf_and_fractional_rows(tmp_path):
    _touch(tmp_path / "v.mp4")
    path = tmp_path / "k.csv"
    path.write_bytes(
        "\ufefflabel,youtube_id,time_start,time_end,split\n"
        "walk,v,1.2,3.4,train\n"
        "walk,v,1.4,3.2,train\n"
        "walk,v,nan,3,train\n"
        "walk,v,0,inf,train\n".encode("utf-8")
    )
    listing = read_inputs(InputSpec(str(path)))
    assert sorted(c.clip_id for c in listing.clips) == ["v_000001.2_000003.4", "v_000001.4_000003.2"]
    assert all(c.label == "walk" for c in listing.clips)  # the BOM did not eat the label column
    assert [r.reject_reason for r in listing.rejected] == [RejectReason.BAD_INPUT_ROW] * 2
    assert all("finite" in r.message for r in listing.rejected)


def test_manifest_nan_inf_bool_and_deep_nesting_are_bad_rows(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("\ufeff" + "\n".join([
        '{"uri": "a.mp4", "time_start": NaN, "time_end": 3}',
        '{"uri": "b.mp4", "time_start": 0, "time_end": Infinity}',
        '{"uri": "c.mp4", "time_start": true, "time_end": 3}',
        '{"uri": "d.mp4", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"uri": "ok.mp4", "time_start": 0.5, "time_end": 2}',
    ]) + "\n")
    listing = read_inputs(InputSpec(str(path)))
    assert [os.path.basename(c.uri) for c in listing.clips] == ["ok.mp4"]
    assert len(listing.rejected) == 4
    assert all(r.reject_reason == RejectReason.BAD_INPUT_ROW and "m.jsonl:" in r.message for r in listing.rejected)
    messages = " | ".join(r.message for r in listing.rejected)
    assert "finite" in messages and "nested too deeply" in messages and "True" in messages


def test_unlistable_folder_matched_by_a_plain_wildcard(tmp_path, monkeypatch):
    _touch(tmp_path / "a" / "x.mp4")
    _touch(tmp_path / "b" / "y.mp4")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(tmp_path / "b"):
            raise PermissionError(13, "Permission denied", str(tmp_path / "b"))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    listing = read_inputs(InputSpec(str(tmp_path / "*" / "*.mp4")))
    assert [os.path.basename(c.uri) for c in listing.clips] == ["x.mp4"]
    assert [(r.clip.uri, r.reject_reason) for r in listing.rejected] == [(str(tmp_path / "b"), RejectReason.UNREADABLE)]
