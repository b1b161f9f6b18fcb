"""--torch_threads: torch intra-op threads per worker."""

from __future__ import annotations

import os

import torch
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs.runners import worker_torch_threads
from transforms.bundle_adjust import set_torch_threads


def test_threads_are_cores_over_workers_unless_set():
    cores = os.cpu_count() or 1
    assert worker_torch_threads(PipelineOptions([])) == cores
    options = PipelineOptions(["--direct_running_mode", "multi_processing", "--direct_num_workers", str(2 * cores)])
    assert worker_torch_threads(options) == 1
    assert worker_torch_threads(PipelineOptions(["--torch_threads", "3", "--direct_num_workers", "2"])) == 3
    # A local Dask cluster of N processes: cores / N; remote workers keep torch's default (their own cores).
    assert worker_torch_threads(PipelineOptions(["--runner", "dask", "--dask_workers", str(2 * cores)])) == 1
    assert worker_torch_threads(PipelineOptions(["--runner", "DataflowRunner"])) == 0


def test_worker_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        set_torch_threads(1)
        assert torch.get_num_threads() == 1
        set_torch_threads(0)  # 0 leaves it alone
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_summary_rate_shows_tracks_and_frames_when_clips_per_second_rounds_to_zero():
    from beam_jobs.pseudo_gt import JobReport, summary_lines

    def line(clips, seconds):
        report = JobReport("out", clips, 0, clips, {"tracks_fitted": 19, "frames_written": 4689}, {}, {}, seconds, "DONE")
        return next(text for text in summary_lines(report) if text.startswith("wall"))

    job = "for the job (model checks, pipeline, selection and card; process start-up not counted)"
    assert line(1, 3900.0) == f"wall 3900.0 s {job}, 0.000256 clips/s (1.2 frames/s, 0.00487 tracks/s)"
    assert line(7, 29.0) == f"wall 29.0 s {job}, 0.24 clips/s"
