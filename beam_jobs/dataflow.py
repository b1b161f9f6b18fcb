"""Launcher-side checks of a Dataflow launch, and what ``--dry_run`` prints and validates.

* :func:`check_launcher`: the launcher has the GCP extra (``make setup-dataflow``) and the
  same Beam and Python versions as the worker image (the ``Dockerfile``'s
  ``BEAM_VERSION`` and Python base image, or the versions in an official
  ``apache/beam_pythonX.Y_sdk:V`` image name). A mismatch fails before submission with a
  message saying what to install.
* :func:`validate_paths`: every path a run reads or writes (input, video and keypoints
  roots, model files, output, temp and staging locations) exists or can be written; on
  Dataflow the temp and staging locations must be ``gs://``.
* :func:`option_lines`: the options of the run as ``--flag=value`` lines (non-defaults).

No Beam import at module level; the caller passes what it needs.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATAFLOW_RUNNERS = {"dataflowrunner", "dataflow"}
GCP_EXTRA_HINT = ("install the launcher with `make setup-dataflow` (or: pip install -c constraints-dataflow.txt "
                  "-e '.[dataflow]'), which adds apache-beam[gcp] pinned to the worker image's versions")


def is_dataflow(runner: str | None) -> bool:
    return bool(runner) and runner.lower() in DATAFLOW_RUNNERS


def dockerfile_versions(dockerfile: Path = ROOT / "Dockerfile") -> dict[str, str]:
    """{"beam": "2.77.0", "python": "3.11"} of the worker image the ``Dockerfile`` builds."""
    text = dockerfile.read_text()
    beam = re.search(r"^ARG BEAM_VERSION=(\S+)", text, flags=re.M)
    python = re.search(r"^FROM python:(\d+\.\d+)", text, flags=re.M) or re.search(r"beam_python(\d+\.\d+)_sdk", text)
    return {"beam": beam.group(1) if beam else "", "python": python.group(1) if python else ""}


def image_versions(image: str | None) -> dict[str, str] | None:
    """Versions an official Beam SDK image name states (``apache/beam_python3.11_sdk:2.77.0``);
    None for a custom image (its versions are the Dockerfile's)."""
    match = re.search(r"beam_python(\d+\.\d+)_sdk:(\d+\.\d+\.\d+)", image or "")
    return {"python": match.group(1), "beam": match.group(2)} if match else None


def has_gcp_extra() -> bool:
    """apache-beam[gcp] is installed (the GCS filesystem and the Dataflow API client)."""
    return all(importlib.util.find_spec(name) is not None for name in ("google.cloud.storage", "apitools"))


def launcher_problems(beam_version: str, python_version: str, image: str | None,
                      dockerfile: Path = ROOT / "Dockerfile", gcp: bool | None = None) -> list[str]:
    """What stops this launcher from submitting to workers of ``image`` (empty: nothing)."""
    problems = []
    if not (has_gcp_extra() if gcp is None else gcp):
        problems.append(f"the launcher lacks apache-beam[gcp] (GCS and the Dataflow client): {GCP_EXTRA_HINT}")
    worker = image_versions(image) or dockerfile_versions(dockerfile)
    source = f"the worker image {image}" if image_versions(image) else f"the worker image built by {dockerfile.name}"
    if worker["beam"] and worker["beam"] != beam_version:
        problems.append(f"the launcher runs Beam {beam_version} but {source} has Beam {worker['beam']}: the job "
                        f"would fail on the workers; pip install apache-beam[gcp]=={worker['beam']} here, or rebuild "
                        "the image with --build-arg BEAM_VERSION=" + beam_version)
    if worker["python"] and worker["python"] != python_version:
        problems.append(f"the launcher runs Python {python_version} but {source} has Python {worker['python']}: "
                        f"pickled code does not cross Python versions; launch from a Python {worker['python']} venv "
                        "(make setup-dataflow PYTHON=python" + worker["python"] + ")")
    return problems


IMAGE_SOURCE_TAG = re.compile(r"src-([0-9a-f]{16})\b")
DRIVER_HINT = ("add ':latest' (worker_accelerator=type:...;count:1;install-nvidia-driver:latest): the image's torch is a "
               "CUDA 13 build that needs NVIDIA driver 580 or newer, and Dataflow's default driver branch can be older")


def image_source_problem(image: str | None, launcher_source: str) -> str | None:
    """Why the worker image runs other code than this checkout (None: same code, or the
    image name carries no source hash; then each worker checks at start-up).

    The image tag records the source hash it was built from (``make image`` tags
    ``worker:<version>-src-<16 hex digits>``, see docs/dataflow.md).
    """
    match = IMAGE_SOURCE_TAG.search(image or "")
    if match and match.group(1) != launcher_source:
        return (f"the worker image {image} was built from vid2mesh source {match.group(1)} but this checkout is "
                f"{launcher_source}: rebuild and push the image (make image), or pass --allow_image_mismatch")
    return None


def driver_problem(service_options: list[str] | None) -> str | None:
    """A GPU request whose driver option may give a driver too old for the image's CUDA build."""
    for option in service_options or []:
        for part in str(option).split(";"):
            if part.strip() in ("install-nvidia-driver", "install-nvidia-driver:default"):
                return f"--dataflow_service_options {option}: {DRIVER_HINT}"
    return None


def check_launcher(image: str | None, dockerfile: Path = ROOT / "Dockerfile", allow_image_mismatch: bool = False,
                   service_options: list[str] | None = None) -> None:
    """Raise ValueError listing :func:`launcher_problems` of this interpreter, a worker image
    built from other code (unless ``allow_image_mismatch``) and a GPU driver option too old
    for the image's CUDA build (none: return)."""
    import apache_beam

    problems = launcher_problems(apache_beam.__version__, f"{sys.version_info[0]}.{sys.version_info[1]}", image, dockerfile)
    if not allow_image_mismatch:
        from transforms.provenance import source_hash

        problems.append(image_source_problem(image, source_hash()))
    problems.append(driver_problem(service_options))
    problems = [p for p in problems if p]
    if problems:
        raise ValueError("cannot launch on Dataflow: " + "; ".join(problems))


def translate_job(pipeline, options) -> str:
    """Translate the pipeline into the Dataflow job it would submit, and submit nothing.

    Beam's DataflowRunner returns before any API call when ``--dry_run`` is set; this is
    checked here first, so a job can never be submitted from a dry run.
    """
    from apache_beam.options.pipeline_options import GoogleCloudOptions, TestOptions
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    if str(options.view_as(TestOptions).dry_run).lower() not in ("true", "1", "yes"):
        raise RuntimeError("translate_job is for dry runs only")
    runner = DataflowRunner()
    runner.run_pipeline(pipeline, options)  # dry_run: translated, returns before submission
    job = runner.job
    region = options.view_as(GoogleCloudOptions).region
    return (f"dataflow job: {job.proto.name or '(unnamed)'} in {job.proto.location or region}, "
            f"{len(job.proto_pipeline.components.transforms)} transforms; not submitted")


def option_lines(options: Mapping[str, Any]) -> list[str]:
    """``--name=value`` lines of the non-default options, sorted."""
    return [f"--{k}={v}" for k, v in sorted(options.items()) if v is not None and v is not False and v != []]


def _bucket(path: str) -> str:
    scheme, rest = path.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}/"


def _local_output_problem(output: str) -> str | None:
    """Why a local output folder cannot be created and written (None: it can)."""
    import os

    path = Path(output).resolve()
    if path.exists() and not path.is_dir():
        return "exists and is not a folder"
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, so the folder cannot be created"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot write in {ancestor}"
    return None


def validate_paths(values: Mapping[str, Any], exists: Callable[[str], bool], dataflow: bool) -> list[str]:
    """Problems with the paths of a run (empty: all fine).

    Args:
        values: option name -> value (``input``, ``video_root``, ``keypoints_root``,
            ``smpl_model``, ``gmm_prior``, ``pose_model``, ``hmr_checkpoint``,
            ``hmr_mean_params``, ``output``, ``temp_location``, ``staging_location``).
        exists: True for an existing file, folder, object or bucket (``transforms.storage.exists``).
        dataflow: the run goes to Dataflow (workers read every path: none may be local).
    """
    problems = []
    for name in ("video_root", "keypoints_root", "smpl_model", "gmm_prior", "pose_model", "hmr_checkpoint", "hmr_mean_params"):
        path = values.get(name)
        if not path:
            continue
        if not exists(path):
            problems.append(f"--{name} {path} does not exist")
        elif dataflow and "://" not in path:
            problems.append(f"--{name} {path} is a local path: Dataflow workers cannot read it; copy it to gs://")
    source = values.get("input")
    if source and dataflow and "://" not in source:
        problems.append(f"--input {source} is a local path: Dataflow workers cannot read the videos; put them on gs://")
    output = values.get("output")
    if output:
        if dataflow and "://" not in output:
            problems.append(f"--output {output} is a local path: Dataflow workers write it; use gs://BUCKET/...")
        elif "://" in output and not exists(_bucket(output)):
            problems.append(f"--output {output}: bucket {_bucket(output)} does not exist or is not readable")
        elif "://" not in output:
            problem = _local_output_problem(output)
            if problem:
                problems.append(f"--output {output}: {problem}")
    for name in ("temp_location", "staging_location"):
        path = values.get(name)
        if dataflow and not path and name == "temp_location":
            problems.append("--temp_location is required on Dataflow (gs://BUCKET/tmp)")
        if not path:
            continue
        if dataflow and not path.startswith("gs://"):
            problems.append(f"--{name} {path}: Dataflow needs a gs:// location")
        elif "://" in path and not exists(_bucket(path)):
            problems.append(f"--{name} {path}: bucket {_bucket(path)} does not exist or is not readable")
    return problems
