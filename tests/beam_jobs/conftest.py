"""Fixtures of the job-level tests."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from helpers.scripted import write_scripted_corpus


@pytest.fixture
def scripted_corpus(tmp_path):
    """A folder of placeholder clips for the scripted stages (helpers.scripted.SCRIPTED_CLIPS)."""
    return write_scripted_corpus(tmp_path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A generated quick corpus (2 clips with people, 1 crowded, 2 corrupt) plus a truncated
    clip, one without keypoints, one with nobody, one with a broken keypoints file, a row
    without a video and two bad CSV rows; returns (root, rows of all.csv)."""
    from pipeline.synth.corpus import SynthConfig, generate_corpus

    root = tmp_path_factory.mktemp("e2e") / "corpus"
    info = generate_corpus(root, 2, 7, SynthConfig.quick(), crowded=1, corrupt=2)
    rows = []
    for split_csv in sorted(root.glob("*.csv")):
        with open(split_csv) as handle:
            rows += list(csv.DictReader(handle))
    normal = [c for c in info["clips"] if c["kind"] == "normal"]
    assert len(normal) == 2
    first = next(root.rglob(f"{normal[0]['clip_id']}.mp4"))
    # A truncated copy and a copy without its keypoints file, under new ids.
    truncated = first.with_name("trunc0000000_000000_000001.mp4")
    truncated.write_bytes(first.read_bytes()[: first.stat().st_size // 3])
    shutil.copy(first.with_name(first.stem + ".coco.json"), truncated.with_name(truncated.stem + ".coco.json"))
    shutil.copy(first, first.with_name("nokeypoints_000000_000001.mp4"))
    # Nobody detected in any frame; and a keypoints file that is not JSON.
    coco = json.loads(first.with_name(first.stem + ".coco.json").read_text())
    shutil.copy(first, first.with_name("nobody_000000_000001.mp4"))
    first.with_name("nobody_000000_000001.coco.json").write_text(json.dumps({**coco, "annotations": []}))
    shutil.copy(first, first.with_name("badkeypoints_000000_000001.mp4"))
    first.with_name("badkeypoints_000000_000001.coco.json").write_text("{broken")
    label, split = first.parent.name, first.parent.parent.name
    rows += [
        {"label": label, "youtube_id": "trunc0000000", "time_start": "0", "time_end": "1", "split": split},
        {"label": label, "youtube_id": "nokeypoints", "time_start": "0", "time_end": "1", "split": split},
        {"label": label, "youtube_id": "nobody", "time_start": "0", "time_end": "1", "split": split},
        {"label": label, "youtube_id": "badkeypoints", "time_start": "0", "time_end": "1", "split": split},
        {"label": label, "youtube_id": "notthere", "time_start": "0", "time_end": "1", "split": split},
    ]
    with open(root / "all.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["label", "youtube_id", "time_start", "time_end", "split"])
        writer.writeheader()
        writer.writerows(rows)
        handle.write("walking,broken-row,zero,ten,train\nonly,three,columns\n")
    return root, len(rows) + 2
