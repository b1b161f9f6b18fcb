"""Launcher preflight: bad --output, --device and model files stop the job before the
pipeline, with one line naming the path/device and the fix, exit code 2, no traceback; a
worker's setup raises on a bad device instead of failing every clip."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from beam_jobs import pseudo_gt
from beam_jobs.preflight import PreflightError, check_output, preflight
from models.device import DeviceError, check_device

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from test_malicious_weights import write_malicious  # noqa: E402


def _main(argv, capsys):
    code = pseudo_gt.main(argv)
    captured = capsys.readouterr()
    return code, captured.err.strip()


def _base(tmp_path, standin):
    return ["--input", str(tmp_path / "videos" / "*.mp4"), "--output", str(tmp_path / "out"),
            "--smpl_model", str(standin.neutral), "--gmm_prior", str(standin.gmm), "--device", "cpu"]


def _mean_params(path: Path) -> Path:
    np.savez(path, pose=np.zeros(144, np.float32), shape=np.zeros(10, np.float32), cam=np.array([0.9, 0, 0], np.float32))
    return path


CASES = [  # flag, format, suffix
    ("--pose_model", "zip", ".pt"), ("--pose_model", "legacy", ".pt"),
    ("--hmr_checkpoint", "zip", ".pt"), ("--hmr_checkpoint", "legacy", ".pt"),
    ("--smpl_model", "pickle", ".pkl"), ("--smpl_model", "npz", ".npz"),
    ("--smpl_model", "zip", ".pkl"), ("--smpl_model", "legacy", ".pkl"),
    ("--gmm_prior", "pickle", ".pkl"), ("--gmm_prior", "npz", ".npz"),
    ("--gmm_prior", "zip", ".pkl"), ("--gmm_prior", "legacy", ".pkl"),
    ("--hmr_mean_params", "npz", ".npz"),
]


@pytest.mark.parametrize("flag,fmt,suffix", CASES, ids=[f"{f[2:]}-{m}" for f, m, _ in CASES])
def test_malicious_model_file_stops_the_launcher_unrun(tmp_path, standin, capsys, flag, fmt, suffix):
    marker = tmp_path / "payload-ran"
    evil = write_malicious(tmp_path / f"evil{suffix}", marker, fmt)
    argv = _base(tmp_path, standin)
    if flag in argv:
        argv[argv.index(flag) + 1] = str(evil)
    else:
        argv += [flag, str(evil)]
    if flag == "--hmr_checkpoint":
        argv += ["--hmr_mean_params", str(_mean_params(tmp_path / "mean.npz"))]
    if flag == "--hmr_mean_params":
        argv += ["--hmr_checkpoint", str(evil)]  # the mean params are opened first
    code, err = _main(argv, capsys)
    assert code == 2, err
    assert not marker.exists(), "the payload ran"
    assert str(evil) in err and flag in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out" / "_runs").exists(), "the pipeline started"


def test_unreadable_or_garbage_model_files_are_one_line_errors(tmp_path, standin, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    for flag in ("--pose_model", "--hmr_checkpoint"):
        argv = _base(tmp_path, standin) + [flag, str(garbage)]
        if flag == "--hmr_checkpoint":
            argv += ["--hmr_mean_params", str(_mean_params(tmp_path / "mean.npz"))]
        code, err = _main(argv, capsys)
        assert code == 2 and str(garbage) in err and flag in err and len(err.splitlines()) == 1, err


def test_device_errors_name_the_device_and_what_to_pass(tmp_path, standin, capsys):
    code, err = _main(_base(tmp_path, standin)[:-2] + ["--device", "bogus"], capsys)
    assert code == 2 and "--device 'bogus' is not a torch device" in err and "cpu" in err, err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "_runs").exists()
    if not torch.cuda.is_available():
        code, err = _main(_base(tmp_path, standin)[:-2] + ["--device", "cuda"], capsys)
        assert code == 2 and "--device cuda" in err and "--device cpu" in err, err
        assert ("CPU-only build" in err) or ("driver" in err), err
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    code, err = _main(_base(tmp_path, standin)[:-2] + ["--device", f"cuda:{count + 3}"], capsys)
    assert code == 2 and f"cuda:{count + 3}" in err and "--device cpu" in err, err


def test_check_device_runs_an_op_and_a_forward():
    assert check_device("cpu") == "cpu"
    assert check_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="meta device"):
        check_device("meta")


def test_bad_output_folders(tmp_path, standin, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for output, words in ((a_file, "not a folder"), (a_file / "sub", "cannot create")):
        with pytest.raises(PreflightError, match=words):
            check_output(str(output))
        argv = _base(tmp_path, standin)
        argv[argv.index("--output") + 1] = str(output)
        code, err = _main(argv, capsys)
        assert code == 2 and str(output) in err and "pass an --output folder you can write to" in err, err
    check_output(str(tmp_path / "new" / "out"))
    assert (tmp_path / "new" / "out").is_dir() and not list((tmp_path / "new" / "out").iterdir())


@pytest.mark.skipif(hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0,
                    reason="root ignores folder permissions")
def test_read_only_output_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PreflightError, match="cannot write there"):
            check_output(str(folder))
    finally:
        folder.chmod(0o700)


def test_good_files_pass_and_workers_raise_on_a_bad_device(tmp_path, standin):
    from transforms.model_stages import ModelBundleAdjust, ModelPerception, resolve_model_files

    files = resolve_model_files(smpl_model=str(standin.neutral), gmm_prior=str(standin.gmm))
    assert preflight(str(tmp_path / "out"), "cpu", files) == "cpu"
    for stage in (ModelPerception(files, device="bogus"), ModelBundleAdjust(files, device="bogus")):
        with pytest.raises(DeviceError, match="bogus"):
            stage.setup()


def test_remote_workers_get_only_a_name_check_on_the_launcher(tmp_path):
    """A Dataflow launcher may lack the workers' GPU: it checks the name, the workers the rest."""
    assert preflight(str(tmp_path / "out"), "cuda:3", None, local_workers=False) == "cuda:3"
    with pytest.raises(PreflightError, match="not a torch device"):
        preflight(str(tmp_path / "out"), "bogus", None, local_workers=False)


def test_vid2mesh_run_exits_2_with_one_line(tmp_path, standin, capsys):
    from beam_jobs.cli import main

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    argv = ["run"] + _base(tmp_path, standin)
    argv[argv.index("--output") + 1] = str(a_file)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vid2mesh run: error: --output") and len(err.splitlines()) == 1, err


@pytest.mark.slow
def test_a_device_failing_in_worker_setup_fails_the_job_not_the_clips(tmp_path, standin):
    """The launcher's check passed (e.g. another machine), the worker's setup fails: the
    job stops with the device message and no clip is written as failed."""
    from pipeline.dataset import schema
    from transforms.model_stages import ModelPerception, resolve_model_files
    from helpers.scripted import ScriptedBundleAdjust

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a1_000001_000011.mp4").write_bytes(b"scripted")
    files = resolve_model_files(smpl_model=str(standin.neutral), gmm_prior=str(standin.gmm))
    out = tmp_path / "out"
    with pytest.raises(Exception, match="bogus"):
        pseudo_gt.run(["--input", str(corpus), "--output", str(out)], perception=ModelPerception(files, device="bogus"),
                      bundle_adjust=ScriptedBundleAdjust(),
                      body_model=schema.BodyModelInfo("standin", "neutral", "x.pkl", "12" * 32))
    assert not list(out.rglob("*.parquet")), "clips were written although the workers could not start"
    assert not (out / "_manifests").exists() or not list((out / "_manifests").iterdir())


@pytest.mark.parametrize("flag", ["--pose_model", "--hmr_checkpoint", "--smpl_model", "--gmm_prior"])
def test_unreadable_model_files_are_one_line_errors(tmp_path, standin, capsys, monkeypatch, flag):
    """A permission error (simulated: the suite may run as root) names the file, exit 2."""
    import builtins
    import shutil

    locked = tmp_path / ("locked.pt" if flag in ("--pose_model", "--hmr_checkpoint") else "locked.pkl")
    shutil.copy(standin.gmm if flag == "--gmm_prior" else standin.neutral, locked)
    real_open = builtins.open

    def denied(file, *args, **kwargs):
        if str(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    argv = _base(tmp_path, standin)
    if flag in argv:
        argv[argv.index(flag) + 1] = str(locked)
    else:
        argv += [flag, str(locked)]
    if flag == "--hmr_checkpoint":
        argv += ["--hmr_mean_params", str(_mean_params(tmp_path / "mean.npz"))]
    code, err = _main(argv, capsys)
    assert code == 2 and str(locked) in err and flag in err and "ermission" in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
