"""Kill and resume: a multi-process local run is SIGKILLed after some of its
shards are committed, then rerun into the same output; the sorted rows of all three
datasets must equal a clean run's, with no orphan file. The same for a run whose failed
clips are being retried when it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from beam_jobs import pseudo_gt
from pipeline.dataset import schema
from pipeline.dataset.manifests import read_manifests
from helpers.scripted import ScriptedBundleAdjust

from test_retry_failed import BODY, FlakyPerception, dataset_rows

ROOT = Path(__file__).resolve().parents[2]
NUM_CLIPS = 24
FLAGS = ["--clips_per_shard", "1", "--selection_threshold", "30", "--min_inlier_fraction", "0"]

DRIVER = textwrap.dedent("""
    import sys, time
    from beam_jobs import pseudo_gt
    from pipeline.dataset import schema
    from helpers.scripted import ScriptedBundleAdjust, ScriptedPerception

    class SlowBundleAdjust(ScriptedBundleAdjust):
        # Shards commit as their clips are fitted: a slow fit spreads the commits out.
        def __call__(self, problems):
            time.sleep(0.3)
            return super().__call__(problems)

    pseudo_gt.run(sys.argv[1:], perception=ScriptedPerception(), bundle_adjust=SlowBundleAdjust(),
                  body_model=schema.BodyModelInfo("standin", "neutral", "vid2mesh_standin_neutral.pkl", "12" * 32))
""")


def _corpus(root: Path) -> Path:
    folder = root / "train" / "walk"
    folder.mkdir(parents=True)
    names = [f"k{i:02d}_{i:06d}_{i + 10:06d}" for i in range(NUM_CLIPS - 2)] + ["crowded_000000_000010", "zero_000000_000010"]
    for name in names:
        (folder / f"{name}.mp4").write_bytes(b"" if name.startswith("zero") else b"scripted")
    return root


def _argv(corpus: Path, out: Path) -> list[str]:
    return ["--input", str(corpus / "**" / "*.mp4"), "--output", str(out), *FLAGS]


def _run_inline(corpus: Path, out: Path, fail=()):
    return pseudo_gt.run(_argv(corpus, out), perception=FlakyPerception(fail), bundle_adjust=ScriptedBundleAdjust(),
                         body_model=BODY)


def _kill_after_first_commit(corpus: Path, out: Path, tmp: Path) -> int:
    """Start a 2-worker multi-process run, SIGKILL its whole process group as soon as a new
    shard manifest appears; returns the clips committed at the kill."""
    driver = tmp / "driver.py"
    driver.write_text(DRIVER)
    manifests = out / "_manifests"

    def stamps():  # a retried clip's new shard can reuse the name of the one retired
        return {(p.name, p.stat().st_mtime_ns) for p in manifests.glob("shard-*.json")} if manifests.is_dir() else set()

    before = stamps()
    command = [sys.executable, str(driver), *_argv(corpus, out),
               "--direct_running_mode", "multi_processing", "--direct_num_workers", "2"]  # fmt: skip
    log = open(tmp / "killed.log", "wb")
    proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "tests")))})
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if stamps() - before:
                    break
            except FileNotFoundError:  # a manifest replaced while listing
                pass
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL, (tmp / "killed.log").read_text()[-3000:]
    return sum(len(m["clips"]) for m in read_manifests(str(out)))


def _assert_no_orphans(out: Path) -> None:
    committed = {m["shard"] for m in read_manifests(str(out))}
    for dataset in schema.DATASETS:
        names = {p.name.split(".")[0] for p in (out / dataset).iterdir()} - {"_common_metadata"}
        assert names <= committed, f"orphan files in {dataset}/: {names - committed}"
    assert not [p for p in out.rglob("*") if ".tmp" in p.name], "temporary files left behind"
    ids = [c for m in read_manifests(str(out)) for c in m["clips"]]
    assert len(ids) == len(set(ids)) == NUM_CLIPS


@pytest.mark.slow
def test_sigkilled_multiprocess_run_resumes_to_the_clean_rows(tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    clean = tmp_path / "clean"
    _run_inline(corpus, clean)
    expected = dataset_rows(clean)

    out = tmp_path / "out"
    committed = _kill_after_first_commit(corpus, out, tmp_path)
    assert 0 < committed < NUM_CLIPS, f"the kill did not land mid-write: {committed} of {NUM_CLIPS} clips committed"
    report = _run_inline(corpus, out)
    assert report.clips_skipped == committed and report.clips_in == NUM_CLIPS - committed
    assert dataset_rows(out) == expected
    _assert_no_orphans(out)

    # A run retrying failed clips, killed mid-write, then resumed: the same rows again.
    retried = tmp_path / "retried"
    first = _run_inline(corpus, retried, fail=("k03_", "k07_", "k12_", "k19_"))
    assert first.counters["clips_failed"] == 4
    committed = _kill_after_first_commit(corpus, retried, tmp_path)
    assert committed < NUM_CLIPS
    again = _run_inline(corpus, retried)
    # The killed run took the failed clips out of their shards; the resume finishes them.
    assert again.stats["clips_failed"] == 0 and again.clips_in == NUM_CLIPS - committed
    assert dataset_rows(retried) == expected
    _assert_no_orphans(retried)
