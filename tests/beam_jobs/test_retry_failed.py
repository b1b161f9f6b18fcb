"""Failed means "try again": a rerun into the same output processes the clips an
earlier run marked ``failed`` and replaces their rows; ``rejected`` clips stay;
``--no_retry_failed`` keeps the old behaviour; summary and stats count the retries."""

from __future__ import annotations

import pyarrow.dataset as ds

from beam_jobs import pseudo_gt
from pipeline.dataset import schema
from pipeline.dataset.manifests import completed_clips, read_manifests
from helpers.scripted import ScriptedBundleAdjust, ScriptedPerception

BODY = schema.BodyModelInfo("standin", "neutral", "vid2mesh_standin_neutral.pkl", "12" * 32)
NAMES = ["a1_000001_000011", "a2_000002_000012", "a3_000003_000013", "a4_000004_000014", "crowded_000000_000010"]


class FlakyPerception(ScriptedPerception):
    """ScriptedPerception whose clips named in ``fail`` raise (a lost GPU, say)."""

    def __init__(self, fail=()):
        super().__init__()
        self.fail = tuple(sorted(fail))

    def describe(self):
        return {**super().describe(), "fail": self.fail}

    def __call__(self, clip):
        if any(name in clip.clip_id for name in self.fail):
            raise RuntimeError(f"CUDA error: no kernel image is available ({clip.clip_id})")
        return super().__call__(clip)


def _corpus(root):
    folder = root / "train" / "walk"
    folder.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        (folder / f"{name}.mp4").write_bytes(b"scripted")
    return root


def _run(corpus, out, fail=(), extra=()):
    argv = ["--input", str(corpus / "**" / "*.mp4"), "--output", str(out), "--clips_per_shard", "2",
            "--selection_threshold", "30", "--min_inlier_fraction", "0", *extra]
    return pseudo_gt.run(argv, perception=FlakyPerception(fail), bundle_adjust=ScriptedBundleAdjust(), body_model=BODY)


def dataset_rows(out) -> dict[str, list[dict]]:
    """Every row of the three datasets as reprs (NaN == NaN), sorted by their sort keys."""
    rows = {}
    for dataset in schema.DATASETS:
        table = ds.dataset(str(out / dataset), format="parquet").to_table()
        keys = schema.SORT_KEYS[dataset]
        rows[dataset] = sorted(({k: repr(v) for k, v in r.items()} for r in table.to_pylist()),
                               key=lambda r: tuple(r[k] for k in keys))
    return rows


def test_rerun_retries_failed_clips_and_replaces_their_rows(tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    clean = tmp_path / "clean"
    _run(corpus, clean)
    out = tmp_path / "out"
    first = _run(corpus, out, fail=("a1", "a3"))
    assert first.counters["clips_failed"] == 2 and first.stats["clips_failed"] == 2

    second = _run(corpus, out)
    assert second.failed_retried == 2 and second.failed_still_failing == 0
    assert second.clips_in == 2 and second.clips_skipped == 3
    assert second.stats["clips_failed"] == 0 and second.stats["clips"] == len(NAMES)
    assert second.stats["last_run"]["failed_retried"] == 2 and second.stats["last_run"]["failed_still_failing"] == 0
    assert any("retried 2 clips that failed" in line for line in pseudo_gt.summary_lines(second))
    # The same rows as a run that never failed: nothing duplicated, nothing lost.
    assert dataset_rows(out) == dataset_rows(clean)
    ids = [clip for m in read_manifests(str(out)) for clip in m["clips"]]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == len(NAMES)
    # Every data file is committed by a manifest: no orphan.
    committed = {m["shard"] for m in read_manifests(str(out))}
    for dataset in schema.DATASETS:
        assert {p.name.split(".")[0] for p in (out / dataset).glob("shard-*")} <= committed


def test_still_failing_is_counted_and_no_retry_keeps_them(tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    _run(corpus, out, fail=("a1", "a2"))
    kept = _run(corpus, out, fail=("a1",), extra=["--no_retry_failed"])
    assert kept.state == "SKIPPED" and kept.failed_retried == 0 and kept.stats["clips_failed"] == 2
    again = _run(corpus, out, fail=("a1",))
    assert again.failed_retried == 2 and again.failed_still_failing == 1
    assert any("1 still fail" in line for line in pseudo_gt.summary_lines(again))
    done = completed_clips(str(out))
    assert done["a1_000001_000011"]["outcome"] == "failed" and done["a2_000002_000012"]["outcome"] != "failed"
    rejected = ds.dataset(str(out / "rejected"), format="parquet").to_table().column("clip_id").to_pylist()
    assert sorted(rejected) == sorted(set(rejected))  # one row per clip
    # Rejected clips (a verdict on the input) are never redone.
    assert done["crowded_000000_000010"]["outcome"] == "rejected"
    last = _run(corpus, out)
    assert last.failed_retried == 1 and last.failed_still_failing == 0 and last.clips_in == 1
