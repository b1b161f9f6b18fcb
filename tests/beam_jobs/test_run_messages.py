"""What the launcher prints: one line for a full, over-quota, unwritable or read-only output
(exit 2), the wall time from the process start, the stand-in body-model line in the
summary, and workers' log lines in the launcher's format and filtering."""

from __future__ import annotations

import contextlib
import errno
import io
import logging

import pytest

from beam_jobs import logs, pseudo_gt
from pipeline.dataset import schema
from pipeline.dataset.fs import ArrowStorage
from helpers.scripted import ScriptedBundleAdjust, ScriptedPerception, write_scripted_corpus

NAMES = ["a1_000001_000011", "a2_000002_000012"]


def _corpus(tmp_path):
    return write_scripted_corpus(tmp_path, NAMES)


def _scripted_run(corpus, output, variant="standin"):
    return lambda: pseudo_gt.run(["--input", str(corpus), "--output", str(output)], perception=ScriptedPerception(),
                                 bundle_adjust=ScriptedBundleAdjust(),
                                 body_model=schema.BodyModelInfo(variant, "neutral", "m.pkl", "0" * 64))


def test_full_disk_during_the_write_is_one_line(tmp_path, monkeypatch, capsys):
    real = ArrowStorage.write_bytes

    def full(self, path, data):
        if "/frames/" in path or "/tracks/" in path:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real(self, path, data)

    monkeypatch.setattr(ArrowStorage, "write_bytes", full)
    output = tmp_path / "out"
    with _entry_point_logging() as stream:
        status = pseudo_gt.run_and_summarise("pseudo_gt", _scripted_run(_corpus(tmp_path), output))
    printed = stream.getvalue()
    assert "Traceback" not in printed and "No space left" not in printed, printed  # Beam's echo of the step's error
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("pseudo_gt: error: ") and str(output) in err
    assert "No space left on device" in err and "[Errno 28]" in err and "free space" in err
    assert "Traceback" not in err


def test_unreadable_output_is_one_line_from_the_cli(tmp_path, monkeypatch, capsys):
    """The machine runs as root (chmod does not stop it): the launcher's read of the output
    raises EACCES by monkeypatch."""
    output = tmp_path / "out"
    output.mkdir()

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(output / "manifests"))

    monkeypatch.setattr(pseudo_gt, "plan_inputs", denied)
    monkeypatch.setattr(pseudo_gt, "preflight", lambda *a, **k: None)
    from beam_jobs import cli

    corpus = _corpus(tmp_path)
    status = cli.main(["run", "--input", str(corpus), "--output", str(output)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("vid2mesh run: error: ") and str(output / "manifests") in err
    assert "Permission denied" in err and "fix the permissions" in err


@pytest.mark.parametrize("code, advice", [(errno.EROFS, "read-only"), (errno.EDQUOT, "quota")])
def test_worker_error_wrapped_by_the_runner_is_unwrapped(code, advice, monkeypatch, capsys):
    def wrapped():
        try:
            raise OSError(code, "os error text", "/out/frames/shard.parquet")
        except OSError as exc:
            raise RuntimeError("Pipeline failed") from exc

    assert pseudo_gt.run_and_summarise("pseudo_gt", wrapped) == 2
    err = capsys.readouterr().err
    assert "/out/frames/shard.parquet" in err and advice in err and f"[Errno {code}]" in err

    def as_text():  # a worker's error reaches the launcher as text only
        raise RuntimeError(f"Traceback (most recent call last):\n  File ...\nOSError: [Errno {code}] os error text: "
                           "'/out/tracks/x.parquet'\n [while running 'PseudoGT/Commit']")

    assert pseudo_gt.run_and_summarise("pseudo_gt", as_text) == 2
    assert "/out/tracks/x.parquet" in capsys.readouterr().err


def test_beam_echo_of_a_storage_error_is_dropped_other_errors_kept():
    with _entry_point_logging() as stream:
        beam = logging.getLogger("apache_beam.runners.common")
        beam.error("OSError: [Errno 28] No space left on device: '/o/frames/x.parquet' [while running 'S']")
        beam.error("ZeroDivisionError: division by zero [while running 'S']")
        logging.getLogger("vid2mesh.run").error("[Errno 28] No space left on device: '/o/x'")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "ZeroDivisionError" in lines[0] and "vid2mesh.run" in lines[1]


def test_other_errors_still_raise():
    def boom():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        pseudo_gt.run_and_summarise("pseudo_gt", boom)
    with pytest.raises(OSError):
        pseudo_gt.run_and_summarise("pseudo_gt", lambda: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))


def test_summary_wall_time_from_the_process_start_and_stand_in_line(tmp_path, capsys):
    status = pseudo_gt.run_and_summarise("pseudo_gt", _scripted_run(_corpus(tmp_path), tmp_path / "out"))
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    wall = [line for line in out if line.startswith("wall ")]
    assert len(wall) == 1 and "since the process started" in wall[0] and "start-up" in wall[0], out
    since_start = float(wall[0].split()[1])
    job = float(wall[0].split(" + ")[1].split()[0])
    # the test process' age (pytest's start-up and the earlier tests included), not only the job's
    assert job < since_start <= pseudo_gt.process_seconds() + 0.1
    stand_in = [line for line in out if "STAND-IN" in line]
    assert len(stand_in) == 1 and "not real SMPL fits" in stand_in[0] and "--smpl_model" in stand_in[0]


def test_no_stand_in_line_for_smpl_fits_and_job_only_wall(tmp_path):
    report = _scripted_run(_corpus(tmp_path), tmp_path / "out", variant="smpl")()
    lines = pseudo_gt.summary_lines(report)
    assert not any("STAND-IN" in line for line in lines)
    assert any(line.startswith("wall ") and "process start-up not counted" in line for line in lines)
    since = pseudo_gt.summary_lines(report, since_start=report.wall_seconds + 12.0)
    assert any(f"{report.wall_seconds + 12.0:.1f} s since the process started: 12.0 s start-up" in line for line in since)


@contextlib.contextmanager
def _entry_point_logging(verbose=False):
    """The root logger as an entry point sets it up, printing to a StringIO (yielded)."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    try:
        logs.setup_logging(verbose, stream=stream)
        yield stream
    finally:
        root.handlers, _ = saved
        root.setLevel(saved[1])
        logs.setup_logging()


def _relay(entries, verbose=False) -> list[str]:
    """Log the entries as Beam's local job service relays a worker's records; the lines printed."""
    from apache_beam.portability.api import beam_fn_api_pb2

    with _entry_point_logging(verbose) as stream:
        relay = logging.getLogger(logs.WORKER_RELAY)
        for severity, message, location in entries:
            entry = beam_fn_api_pb2.LogEntry(severity=getattr(beam_fn_api_pb2.LogEntry.Severity, severity),
                                             message=message, log_location=location, thread="MainThread")
            entry.timestamp.seconds = 1_700_000_000
            relay.log(logging.WARNING if severity == "WARN" else getattr(logging, severity), "Worker: %s",
                      str(entry).replace("\n", " "))
        relay.info("starting control server on port 1")  # the relay's own chatter: Beam's level (WARNING)
    return stream.getvalue().splitlines()


BEAM = "/venv/site-packages/apache_beam/runners/worker/sdk_worker_main.py:421"
OURS = "/repo/transforms/commit.py:88"


def test_worker_lines_take_the_launchers_format_and_filtering():
    lines = _relay([
        ("WARN", "No semi_persistent_directory found: ...", BEAM),
        ("INFO", "Python sdk harness starting.", BEAM),
        ("WARN", "apitools not found: falling back to ...", "/venv/site-packages/apache_beam/internal/gcp/auth.py:20"),
        ("INFO", "clip a1: fitted 1 tracks, committed", OURS),
        ("WARN", "NO --smpl_model GIVEN: fitting with the stand-in", "/repo/transforms/model_stages.py:130"),
        ("ERROR", "harness failed", BEAM),
    ])
    assert len(lines) == 3, lines
    assert all(" Worker: " not in line and "severity:" not in line for line in lines)
    assert "apitools" not in "\n".join(lines) and "semi_persistent" not in "\n".join(lines)
    assert lines[0].endswith("INFO transforms.commit (worker): clip a1: fitted 1 tracks, committed")
    assert " WARNING transforms.model_stages (worker): NO --smpl_model GIVEN" in lines[1]
    assert " ERROR apache_beam.runners.worker.sdk_worker_main (worker): harness failed" in lines[2]
    # the launcher's format: "<date> <time>,<ms> LEVEL name: message"
    assert lines[0][:4].isdigit() and lines[0][19] == ","


def test_verbose_keeps_the_worker_harness_notes():
    lines = _relay([("INFO", "Python sdk harness starting.", BEAM)], verbose=True)
    assert any("Python sdk harness starting." in line for line in lines)


DRIVER = """
import sys
from beam_jobs import logs
logs.setup_logging()
from beam_jobs import pseudo_gt
from pipeline.dataset import schema
from helpers.scripted import ScriptedBundleAdjust, ScriptedPerception
sys.exit(pseudo_gt.run_and_summarise("pseudo_gt", lambda: pseudo_gt.run(
    sys.argv[1:], perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(),
    body_model=schema.BodyModelInfo("standin", "neutral", "m.pkl", "0" * 64))))
"""


def _driver_lines(tmp_path, corpus, name, *flags) -> list[str]:
    import subprocess
    import sys
    from pathlib import Path

    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    result = subprocess.run([sys.executable, str(driver), "--input", str(corpus), "--output", str(tmp_path / name), *flags],
                            capture_output=True, text=True, timeout=400, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return (result.stdout + result.stderr).splitlines()


@pytest.mark.slow
def test_multi_process_run_prints_what_a_single_process_run_prints(tmp_path):
    import re

    corpus = _corpus(tmp_path)
    for name in ("crowded_000000_000010", "explode_000000_000010"):
        (corpus / "train" / "walk" / f"{name}.mp4").write_bytes(b"scripted")
    single = _driver_lines(tmp_path, corpus, "single")
    multi = _driver_lines(tmp_path, corpus, "multi", "--direct_running_mode", "multi_processing", "--direct_num_workers", "2")
    text = "\n".join(multi)
    assert "Worker: " not in text and "severity:" not in text and "apitools" not in text
    assert "semi_persistent_directory" not in text and "sdk harness" not in text
    logged = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+( \(worker\))?: ")
    starts = [line for line in multi if line[:2] == "20"]
    assert starts and all(logged.match(line) for line in starts), starts
    assert sum("(worker)" in line for line in multi) >= 5  # the workers' clip lines come through
    assert text.count("Traceback (most recent call last)") == 1  # the scripted failure's, once
    assert len(multi) <= len(single) + 4, (len(single), len(multi), text)
