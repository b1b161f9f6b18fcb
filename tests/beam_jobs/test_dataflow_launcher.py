"""The Dataflow launcher: version and extra checks, path validation, and a `--dry_run` that
builds and translates the Dataflow job up to submission, against a fake gs:// filesystem and
with the network disabled."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from beam_jobs import dataflow, pseudo_gt
from pipeline.dataset import schema
from pipeline.dataset.fs import ArrowStorage
from pipeline.perception.inputs import local_list_files
from transforms import storage
from helpers.scripted import ScriptedBundleAdjust, ScriptedPerception

BODY = schema.BodyModelInfo("standin", "neutral", "vid2mesh_standin_neutral.pkl", "0" * 64)
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def test_worker_versions_and_launcher_check():
    assert dataflow.dockerfile_versions() == {"beam": "2.77.0", "python": "3.11"}
    assert dataflow.image_versions("apache/beam_python3.12_sdk:2.78.0") == {"python": "3.12", "beam": "2.78.0"}
    assert dataflow.image_versions("us-docker.pkg.dev/p/vid2mesh/worker:0.1.0") is None
    assert dataflow.launcher_problems("2.77.0", "3.11", "us-docker.pkg.dev/p/vid2mesh/worker:0.1.0", gcp=True) == []
    problems = dataflow.launcher_problems("2.76.0", "3.12", None, gcp=False)
    assert len(problems) == 3
    assert "make setup-dataflow" in problems[0]
    assert "Beam 2.76.0" in problems[1] and "Beam 2.77.0" in problems[1]
    assert "Python 3.12" in problems[2] and "Python 3.11" in problems[2]
    image = dataflow.launcher_problems("2.77.0", "3.11", "apache/beam_python3.11_sdk:2.78.0", gcp=True)
    assert len(image) == 1 and "Beam 2.78.0" in image[0]


def test_validate_paths():
    present = {"gs://b/", "gs://b/models/smpl.pkl", "gs://b/videos", "/tmp"}
    exists = present.__contains__
    values = {"input": "gs://b/train.csv", "video_root": "gs://b/videos", "smpl_model": "gs://b/models/smpl.pkl",
              "gmm_prior": "gs://b/models/gmm.pkl", "output": "gs://b/out", "temp_location": "gs://b/tmp"}
    assert dataflow.validate_paths(values, exists, dataflow=True) == ["--gmm_prior gs://b/models/gmm.pkl does not exist"]
    bad = dataflow.validate_paths({**values, "gmm_prior": None, "input": "corpus/train.csv", "output": "gs://nobucket/out",
                                   "temp_location": "/tmp"}, exists, dataflow=True)
    assert any("--input corpus/train.csv is a local path" in p for p in bad)
    assert any("bucket gs://nobucket/ does not exist" in p for p in bad)
    assert any("--temp_location /tmp: Dataflow needs a gs:// location" in p for p in bad)
    assert dataflow.validate_paths({"input": "c", "output": "/tmp/out"}, exists, dataflow=False) == []


@pytest.fixture
def fake_gcs(tmp_path, monkeypatch):
    """gs://bucket/... served from a local folder through the launcher's storage layer."""
    root = tmp_path / "bucket"
    root.mkdir()
    prefix = "gs://bucket"

    def local(path):
        return str(root) + path[len(prefix):] if path.startswith(prefix) else path

    def remote(path):
        return prefix + path[len(str(root)):] if path.startswith(str(root)) else path

    class FakeStorage(ArrowStorage):
        def join(self, *parts):
            return "/".join(p.rstrip("/") for p in parts)

        def write_bytes(self, path, data):
            return super().write_bytes(local(path), data)

        def read_bytes(self, path):
            return super().read_bytes(local(path))

        def list(self, folder):
            return [remote(p) for p in super().list(local(folder))]

        def delete(self, path):
            return super().delete(local(path))

        def exists(self, path):
            return super().exists(local(path))

    monkeypatch.setattr(storage, "list_files", lambda pattern: [remote(p) for p in local_list_files(local(pattern))])
    monkeypatch.setattr(storage, "read_text", lambda path: open(local(path)).read())
    monkeypatch.setattr(storage, "exists", lambda path: os.path.exists(local(path)))
    monkeypatch.setattr(storage, "BeamStorage", FakeStorage)
    folder = root / "corpus" / "train" / "walk"
    folder.mkdir(parents=True)
    for name in ("a1_000001_000011", "a2_000002_000012", "crowded_000000_000010"):
        (folder / f"{name}.mp4").write_bytes(b"scripted")
    return root


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def connect(self, address):
        attempts.append(address)
        raise OSError(f"network disabled in tests: {address}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


DATAFLOW_FLAGS = ["--runner", "DataflowRunner", "--project", "test-project", "--region", "us-central1",
                  "--temp_location", "gs://bucket/tmp", "--staging_location", "gs://bucket/staging", "--no_auth",
                  "--sdk_container_image", "us-docker.pkg.dev/test-project/vid2mesh/worker:0.1.0",
                  "--sdk_location", "container", "--job_name", "vid2mesh-dry-run",
                  "--input", "gs://bucket/corpus", "--output", "gs://bucket/out", "--dry_run"]


def test_dataflow_dry_run_translates_the_job_without_network(fake_gcs, no_network):
    if not dataflow.has_gcp_extra():
        pytest.skip("apache-beam[gcp] is not installed (the `dataflow` extra): run `make setup-dataflow` to test the "
                    "Dataflow launcher")
    import apache_beam

    problems = dataflow.launcher_problems(apache_beam.__version__, PYTHON, None)
    if problems:
        pytest.skip(f"this interpreter cannot launch the worker image: {problems}")
    report = pseudo_gt.run(DATAFLOW_FLAGS, perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(), body_model=BODY)
    assert report.state == "DRY_RUN" and report.clips_in == 3
    lines = pseudo_gt.summary_lines(report)
    assert "  --runner=DataflowRunner" in lines and "  --temp_location=gs://bucket/tmp" in lines
    job = [line for line in lines if line.startswith("dataflow job: ")]
    assert job and "vid2mesh-dry-run in us-central1" in job[0] and job[0].endswith("not submitted")
    assert not (fake_gcs / "out").exists()  # nothing written, not even the clip listing
    assert no_network == []
    # A path that does not exist stops the dry run, naming it.
    with pytest.raises(ValueError, match="--gmm_prior gs://bucket/models/gmm.pkl does not exist"):
        pseudo_gt.run(DATAFLOW_FLAGS + ["--gmm_prior", "gs://bucket/models/gmm.pkl"], perception=ScriptedPerception(),
                      bundle_adjust=ScriptedBundleAdjust(), body_model=BODY)


def test_local_dry_run_builds_and_writes_nothing(tmp_path):
    corpus = tmp_path / "corpus" / "train" / "walk"
    corpus.mkdir(parents=True)
    (corpus / "a1_000001_000011.mp4").write_bytes(b"scripted")
    report = pseudo_gt.run(["--input", str(tmp_path / "corpus"), "--output", str(tmp_path / "out"), "--dry_run"],
                           perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(), body_model=BODY)
    assert report.state == "DRY_RUN" and report.clips_in == 1 and not (tmp_path / "out").exists()
    report = pseudo_gt.run(["--input", str(tmp_path / "corpus"), "--output", str(tmp_path / "new" / "out"), "--dry_run"],
                           perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(), body_model=BODY)
    assert report.state == "DRY_RUN" and not (tmp_path / "new").exists()  # a run would create it; a dry run does not
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="afile is a file, so the folder cannot be created"):
        pseudo_gt.run(["--input", str(tmp_path / "corpus"), "--output", str(tmp_path / "afile" / "out"), "--dry_run"],
                      perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(), body_model=BODY)
