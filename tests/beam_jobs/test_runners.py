"""The same job on every runner: the DaskRunner on a local dask.distributed cluster writes the
local runner's rows; a dry run never runs a pipeline; a runner that loses clips fails the run
naming them."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from beam_jobs import pseudo_gt
from pipeline.dataset import schema
from helpers.scripted import SCRIPTED_CLIPS as NAMES, ScriptedBundleAdjust, ScriptedPerception

BODY = schema.BodyModelInfo("standin", "neutral", "m.pkl", "0" * 64)


def _scripted_run(argv):
    return pseudo_gt.run(argv, perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(), body_model=BODY)


def _rows(output, dataset: str) -> list[tuple]:
    """Every row of one dataset of an output, as sorted tuples (file layout and metadata ignored)."""
    paths = sorted((output / dataset).glob("*.parquet"))
    if not paths:
        return []
    rows = []
    for path in paths:
        table = pq.read_table(path)
        rows += [tuple(repr(r[name]) for name in sorted(table.column_names)) for r in table.to_pylist()]
    return sorted(rows)


def _selection(output) -> list[tuple]:
    """The selection's rows without the shard column (the batch layout, hence shard names,
    depends on the number of workers)."""
    table = pq.read_table(output / "selection" / "tracks.parquet")
    return sorted(tuple(repr(v) for k, v in r.items() if k != "shard") for r in table.to_pylist())


def _assert_same_rows(a, b):
    for dataset in schema.DATASETS:
        assert _rows(a, dataset) == _rows(b, dataset), dataset
    assert _selection(a) == _selection(b)


@pytest.mark.slow
def test_dask_runner_writes_the_local_runners_rows(corpus, tmp_path):
    """The real stages (stand-in models) on a generated corpus with good, crowded, corrupt and
    truncated clips and bad rows, at default settings: a local Dask cluster of 2 worker
    processes gives the rows, the selection and the books of the local runner.

    Both use one torch thread per process: CPU reductions round differently with another
    thread count (last float32 digits), whatever the runner."""
    root, num_inputs = corpus
    common = ["--input", str(root / "all.csv"), "--video_root", str(root), "--model_cache", str(tmp_path / "cache"),
              "--clips_per_shard", "3", "--torch_threads", "1"]
    local = pseudo_gt.run(common + ["--output", str(tmp_path / "local")])
    dask = pseudo_gt.run(common + ["--output", str(tmp_path / "dask"), "--runner", "dask", "--dask_workers", "2"])
    assert local.books.balanced and dask.books.balanced
    assert local.books.to_json() == dask.books.to_json() and dask.clips_in == num_inputs
    assert dask.books.kept >= 1
    _assert_same_rows(tmp_path / "local", tmp_path / "dask")


@pytest.mark.slow
def test_dask_runner_with_scripted_stages_and_an_existing_cluster(scripted_corpus, tmp_path):
    """``--dask_client_address``: the job runs on a cluster it did not start, one batch per
    partition, and closes only its own client."""
    from dask.distributed import LocalCluster

    local = _scripted_run(["--input", str(scripted_corpus), "--output", str(tmp_path / "local")])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask = _scripted_run(["--input", str(scripted_corpus), "--output", str(tmp_path / "dask"), "--runner", "dask",
                              "--dask_client_address", cluster.scheduler_address, "--clips_per_shard", "2"])
        assert cluster.scheduler_info["workers"]  # still up: the job did not close someone else's cluster
    assert dask.state == "DONE" and dask.books.balanced and dask.clips_in == len(NAMES)
    assert dask.books.to_json() == local.books.to_json()
    assert dask.books.rejected_by_reason.get("crowded") == 1 and dask.books.failed == 1
    _assert_same_rows(tmp_path / "local", tmp_path / "dask")


@pytest.mark.parametrize("runner", [[], ["--runner", "dask", "--dask_workers", "2"]], ids=["local", "dask"])
def test_dry_run_never_runs_a_pipeline(scripted_corpus, tmp_path, monkeypatch, runner):
    import apache_beam as beam

    def refuse(self, *args, **kwargs):
        raise AssertionError("a dry run ran the pipeline")

    monkeypatch.setattr(beam.Pipeline, "run", refuse)
    report = _scripted_run(["--input", str(scripted_corpus), "--output", str(tmp_path / "out"), "--dry_run", *runner])
    assert report.state == "DRY_RUN" and report.clips_in == len(NAMES)
    assert not (tmp_path / "out").exists()
    built = [line for line in pseudo_gt.summary_lines(report) if line.startswith("pipeline: built for")]
    assert built and built[0].endswith("not run") and f"with {len(NAMES)} clips" in built[0]
    if runner:
        assert "DaskRunner" in built[0] and "2 worker processes" in built[0]


def test_a_runner_that_loses_clips_fails_the_run_naming_them(scripted_corpus, tmp_path, monkeypatch, capsys):
    """A batch that never reaches its DoFn (as a runner that drops elements would do): the
    run commits what it got, then exits non-zero naming the lost clips."""
    from transforms.pipeline import PerceiveFitCommitFn

    original = PerceiveFitCommitFn.process

    def drop_second_batch(self, ref):
        if ref.index == 1:
            return iter(())
        return original(self, ref)

    monkeypatch.setattr(PerceiveFitCommitFn, "process", drop_second_batch)
    argv = ["--input", str(scripted_corpus), "--output", str(tmp_path / "out"), "--clips_per_shard", "2"]
    with pytest.raises(pseudo_gt.BooksError) as caught:
        _scripted_run(argv)
    books = caught.value.report.books
    lost = sorted(NAMES)[2:4]  # the second batch: listing order is clip-id order for a glob
    assert list(books.missing) == lost and not books.balanced
    assert all(clip_id in str(caught.value) for clip_id in lost)
    # main() prints the summary and exits 1.
    run = pseudo_gt.run
    monkeypatch.setattr(pseudo_gt, "run", lambda argv: run(argv, perception=ScriptedPerception(),
                                                           bundle_adjust=ScriptedBundleAdjust(), body_model=BODY))
    assert pseudo_gt.main(argv + ["--output", str(tmp_path / "again")]) == 1
    err = capsys.readouterr().err
    assert "books do not balance" in err and lost[0] in err


def test_each_clip_is_counted_once(scripted_corpus, tmp_path):
    """One rejected clip is one rejection in the summary and in stats.json."""
    report = _scripted_run(["--input", str(scripted_corpus / "train" / "walk" / "crowded_000000_000010.mp4"),
                            "--output", str(tmp_path / "out")])
    assert report.counters["clips_rejected"] == 1 == report.stats["clips_rejected"]
    assert report.stats["last_run"]["books"]["clips_rejected"] == 1
    assert "1 clips in -> 0 kept, 1 rejected, 0 failed" in "\n".join(pseudo_gt.summary_lines(report))


def test_workers_and_launcher_refuse_code_of_another_source():
    from beam_jobs.dataflow import driver_problem, image_source_problem
    from transforms.provenance import SourceMismatch, check_worker_source, source_hash

    ours, other = source_hash(), "0123456789abcdef"
    assert len(ours) == 16 and ours == source_hash()  # deterministic
    assert image_source_problem(f"r/p/vid2mesh/worker:0.1.0-src-{ours}", ours) is None
    assert image_source_problem("r/p/vid2mesh/worker:0.1.0", ours) is None  # no hash in the tag: the workers check
    problem = image_source_problem(f"r/p/vid2mesh/worker:0.1.0-src-{other}", ours)
    assert other in problem and ours in problem and "--allow_image_mismatch" in problem
    check_worker_source(ours)
    check_worker_source(None)
    with pytest.raises(SourceMismatch, match="rebuild and push the worker image"):
        check_worker_source(other)
    check_worker_source(other, allow_mismatch=True)  # logged, not raised
    plain = ["worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]
    assert ":latest" in driver_problem(plain) and "580" in driver_problem(plain)
    assert driver_problem(["worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver:latest"]) is None
    assert driver_problem(None) is None


def test_dataflow_dry_run_refuses_an_image_built_from_other_code(tmp_path):
    from beam_jobs import dataflow

    if not dataflow.has_gcp_extra():
        pytest.skip("apache-beam[gcp] is not installed (the `dataflow` extra)")
    flags = ["--runner", "DataflowRunner", "--project", "p", "--region", "us-central1", "--temp_location", "gs://b/tmp",
             "--sdk_container_image", "r/p/vid2mesh/worker:0.1.0-src-0123456789abcdef", "--input", "gs://b/c",
             "--output", "gs://b/out", "--dry_run"]
    with pytest.raises(ValueError, match="was built from vid2mesh source 0123456789abcdef"):
        _scripted_run(flags)
    with pytest.raises(ValueError, match="install-nvidia-driver:latest"):
        _scripted_run(flags + ["--allow_image_mismatch", "--dataflow_service_options",
                               "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"])
