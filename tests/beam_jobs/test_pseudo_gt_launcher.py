"""The launcher with scripted stages: options, resume, no network, `vid2mesh run`, errors."""

from __future__ import annotations

import json
import logging
import socket
import urllib.request

import pyarrow.dataset as ds
import pytest

from beam_jobs import pseudo_gt
from beam_jobs.cli import build_parser
from pipeline.dataset import schema
from helpers.scripted import ScriptedBundleAdjust, ScriptedPerception

BODY = schema.BodyModelInfo("standin", "neutral", "vid2mesh_standin_neutral.pkl", "12" * 32)


def _corpus(root, names):
    folder = root / "train" / "walk"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.mp4").write_bytes(b"scripted")
    return root


def _run(argv):
    return pseudo_gt.run(argv, perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(), body_model=BODY)


@pytest.fixture
def no_network(monkeypatch):
    """Fail on any attempt to reach a non-loopback address from Python (Prism's download
    goes through urllib)."""
    attempts = []
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
            return real_connect(self, address)
        attempts.append(address)
        raise OSError(f"network disabled in tests: {address}")

    def urlopen(url, *args, **kwargs):
        attempts.append(url)
        raise OSError(f"network disabled in tests: {url}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return attempts


def test_local_default_runs_without_network_and_reruns_add_nothing(tmp_path, no_network, caplog):
    corpus = _corpus(tmp_path / "corpus", ["a1_000001_000011", "a2_000002_000012", "crowded_000000_000010"])
    out = tmp_path / "out"
    argv = ["--input", str(corpus / "**" / "*.mp4"), "--output", str(out), "--clips_per_shard", "2",
            "--selection_threshold", "30", "--min_inlier_fraction", "0"]
    first = _run(argv)
    assert first.state == "DONE" and first.clips_in == 3 and first.clips_skipped == 0
    c = first.counters
    assert c["clips_in"] == c.get("clips_kept", 0) + c.get("clips_rejected", 0) + c.get("clips_failed", 0) == 3
    assert first.stats["clips"] == 3 and first.distributions["ms_perceive"]["count"] == 3
    rows = {d: ds.dataset(out / d, format="parquet").count_rows() for d in ("frames", "tracks", "rejected")}
    files = sorted(p.name for p in out.rglob("*.parquet"))
    meta = schema.read_metadata(ds.dataset(out / "tracks", format="parquet").schema)
    assert meta["vid2mesh.body_model"]["variant"] == "standin"
    assert meta["vid2mesh.config"]["selection"]["e_norm_threshold"] == 30.0

    # Rerun into the same output: every clip is skipped, and the log says so.
    with caplog.at_level(logging.INFO, logger="vid2mesh.run"):
        second = _run(argv)
    assert second.state == "SKIPPED" and second.clips_skipped == 3 and second.clips_in == 0
    assert "3 of 3 clips are already written" in caplog.text
    # One new clip: only it is processed; nothing is duplicated.
    _corpus(corpus, ["a3_000003_000013"])
    third = _run(argv)
    assert third.clips_in == 1 and third.clips_skipped == 3 and third.counters["clips_in"] == 1
    tracks = ds.dataset(out / "tracks", format="parquet").to_table()
    keys = list(zip(tracks.column("clip_id").to_pylist(), tracks.column("track_id").to_pylist()))
    assert len(keys) == len(set(keys))
    assert ds.dataset(out / "rejected", format="parquet").count_rows() == rows["rejected"] + (third.counters.get("clips_rejected", 0))
    assert set(files) <= {p.name for p in out.rglob("*.parquet")}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["clips"] == 4 == stats["clips_kept"] + stats["clips_rejected"] + stats["clips_failed"]
    assert no_network == []


def test_orphans_of_a_killed_run_are_removed_and_overwrite(tmp_path):
    corpus = _corpus(tmp_path / "corpus", ["a1_000001_000011"])
    out = tmp_path / "out"
    argv = ["--input", str(corpus), "--output", str(out)]
    _run(argv)
    orphan = out / "frames" / "shard-deadbeef.parquet"
    orphan.write_bytes(b"partial")
    _run(argv)
    assert not orphan.exists()
    again = _run(argv + ["--overwrite"])
    assert again.clips_in == 1 and again.clips_skipped == 0


def test_missing_flags_and_model_files_stop_before_start(tmp_path):
    with pytest.raises(ValueError, match="--input"):
        pseudo_gt.run(["--output", str(tmp_path)])
    with pytest.raises(ValueError, match="--output"):
        pseudo_gt.run(["--input", str(tmp_path)])
    base = ["--input", str(tmp_path), "--output", str(tmp_path / "o")]
    with pytest.raises(FileNotFoundError, match="--smpl_model .*no such file"):
        pseudo_gt.run(base + ["--smpl_model", str(tmp_path / "nope.pkl")])
    model = tmp_path / "model.pkl"
    model.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="needs --gmm_prior"):
        pseudo_gt.run(base + ["--smpl_model", str(model)])
    with pytest.raises(FileNotFoundError, match="--keypoints detect needs --pose_model"):
        pseudo_gt.run(base + ["--smpl_model", str(model), "--gmm_prior", str(model), "--keypoints", "detect"])
    with pytest.raises(FileNotFoundError, match="--pose_model"):
        pseudo_gt.run(base + ["--smpl_model", str(model), "--gmm_prior", str(model), "--pose_model", str(tmp_path / "x.pt")])
    assert not (tmp_path / "o").exists()


def test_a_detector_runtime_without_its_package_stops_the_launcher(tmp_path, monkeypatch):
    """Named, before any worker starts; nothing is installed."""
    import importlib.util

    from models.pose_runtime import MissingRuntimeError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    weights = tmp_path / "pose.pt"
    weights.write_bytes(b"x")
    argv = ["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--pose_model", str(weights),
            "--detector_runtime", "openvino"]
    with pytest.raises(MissingRuntimeError, match=r"--detector_runtime openvino needs .*openvino.*vid2mesh\[export\]"):
        pseudo_gt.run(argv)
    assert not (tmp_path / "o").exists()


def test_vid2mesh_run_parses_job_and_beam_flags():
    args = build_parser().parse_args([
        "run", "--input", "c/*.mp4", "--output", "o", "--write_all_frames", "--ba_config", '{"max_iter": 5}',
        "--runner", "DirectRunner", "--direct_num_workers", "2", "--direct_running_mode", "multi_processing",
    ])
    assert args.func.__module__ == "beam_jobs.commands"
    assert (args.input, args.output, args.write_all_frames, args.ba_config) == ("c/*.mp4", "o", True, {"max_iter": 5})
    assert args.beam_args == ["--runner", "DirectRunner", "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

    from beam_jobs.commands import _job_values
    from beam_jobs.options import OutputOptions

    options = PipelineOptions(flags=args.beam_args, **_job_values(args))
    assert options.view_as(OutputOptions).write_all_frames is True
    assert options.view_as(DirectOptions).direct_num_workers == 2
    from beam_jobs.runners import make_runner

    assert make_runner(options, 1).runner.__class__.__name__ == "FnApiRunner"
    assert make_runner(PipelineOptions(["--runner", "DataflowRunner"]), 1).runner is None
