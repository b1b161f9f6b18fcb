"""Launcher preflight: the output folder, the device and every model file, before the pipeline.

A bad start-up condition stops the job within seconds with one line naming the path or the
device and the fix (:class:`PreflightError`, exit code 2 from ``main``), instead of a Beam
traceback from inside a worker after half a minute:

* ``--output`` can be created and written (a probe file is written and removed);
* ``--device`` exists and runs a small tensor op and model forward/backward
  (:func:`models.device.check_device`, which every worker's ``DoFn.setup`` runs again);
* every given model file opens through the same safe loader the workers use: the SMPL
  body model (restricted unpickler / ``allow_pickle=False``), the GMM prior (same), the YOLO
  pose weights (ultralytics' ``weights_only`` allow-list, :func:`models.pose_detector.
  load_yolo_checkpoint`), the HMR checkpoint (``torch.load(weights_only=True)``) and its
  mean parameters (``allow_pickle=False``). A corrupt, wrong-format or unsafe file is
  refused and nothing in it runs.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from transforms import storage
from transforms.model_stages import ModelFiles, _local, _worker_cache

LOGGER = logging.getLogger("vid2mesh.preflight")

__all__ = ["PreflightError", "check_model_files", "check_output", "preflight"]


class PreflightError(ValueError):
    """A start-up check failed; the message is one line naming what and how to fix it."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def check_output(output: str) -> None:
    """``output`` can be created and written: writes and deletes a small probe file.

    Raises:
        PreflightError: naming the folder, the OS error and the fix.
    """
    fix = "pass an --output folder you can write to"
    if not storage.is_remote(output):
        if os.path.exists(output) and not os.path.isdir(output):
            raise PreflightError(f"--output {output}: exists and is not a folder; {fix}")
        try:
            os.makedirs(output, exist_ok=True)
        except OSError as exc:
            raise PreflightError(f"--output {output}: cannot create the folder ({exc.strerror or exc}); {fix}") from None
    beam_storage = storage.BeamStorage()
    probe = beam_storage.join(output, f".vid2mesh-write-probe-{uuid.uuid4().hex[:8]}")
    try:
        beam_storage.write_bytes(probe, b"vid2mesh preflight\n")
        beam_storage.delete(probe)
    except Exception as exc:  # PermissionError, read-only file system, bucket access...
        detail = getattr(exc, "strerror", None) or _one_line(exc)[:200]
        raise PreflightError(f"--output {output}: cannot write there ({type(exc).__name__}: {detail}); {fix}") from None


def _open(flag: str, path: str, load: Callable[[str], Any], what: str) -> None:
    started = time.perf_counter()
    try:
        local = _local(path, _worker_cache())
        load(local)
    except PreflightError:
        raise
    except Exception as exc:  # every loader error becomes one line naming the flag and file
        message = _one_line(exc)[:500] or type(exc).__name__
        if isinstance(exc, PermissionError):
            message = f"cannot read it ({exc.strerror}); fix its permissions"
        raise PreflightError(f"{flag} {path}: {message} (expected {what})") from None
    LOGGER.info("preflight: %s %s opens (%.1f s)", flag, path, time.perf_counter() - started)


def check_model_files(files: ModelFiles) -> None:
    """Open every model file of the run once, through the workers' safe loaders.

    Raises:
        PreflightError: the flag, the file and why it was refused.
    """
    from models.body_model import BodyModel
    from models.gmm_prior import GMMPrior

    body_flag = "--smpl_model" if files.body_model_variant == "smpl" else "stand-in body model"
    _open(body_flag, files.body_model, BodyModel.from_file, "an SMPL model file, .pkl or .npz")
    generated_prior = bool(files.standin_cache) and files.gmm_prior.startswith(files.standin_cache)
    _open("stand-in GMM prior" if generated_prior else "--gmm_prior", files.gmm_prior, GMMPrior.from_file,
          "SMPLify's GMM pose prior, .pkl or .npz")
    if files.pose_model:
        from models.pose_detector import YoloPoseDetector

        _open("--pose_model", files.pose_model, YoloPoseDetector, "ultralytics YOLO pose weights, *-pose.pt")
    if files.hmr_mean_params:
        from models.hmr import load_mean_params

        _open("--hmr_mean_params", files.hmr_mean_params, load_mean_params, "the HMR smpl_mean_params.npz")
    if files.hmr_checkpoint:
        from models.hmr import HMRRegressor

        mean = _local(files.hmr_mean_params, _worker_cache())
        _open("--hmr_checkpoint", files.hmr_checkpoint, lambda p: HMRRegressor.from_files(p, mean),
              "a SPIN-format HMR checkpoint, .pt")


def preflight(output: str, device: str, files: ModelFiles | None, local_workers: bool = True) -> str:
    """All launcher checks: output, device, model files (``files`` None: stages were given).

    Args:
        local_workers: the workers run on this machine (the local runner). Otherwise (a
            Dataflow job with GPU workers launched from a laptop) only the device *name* is
            checked here, and each worker's ``DoFn.setup`` checks the device itself.

    Returns:
        The resolved device (``auto`` -> ``cuda`` or ``cpu``; unchanged for remote workers).

    Raises:
        PreflightError: the first failed check.
    """
    from models.device import DeviceError, check_device, check_device_name

    check_output(output)
    try:
        resolved = check_device(device) if local_workers else check_device_name(device)
    except DeviceError as exc:
        raise PreflightError(str(exc)) from None
    LOGGER.info("preflight: --device %s %s", device,
                f"works ({resolved})" if local_workers else "is a device name; the workers check it in setup")
    if files is not None:
        check_model_files(files)
    return resolved
