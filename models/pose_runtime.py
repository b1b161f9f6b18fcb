"""Exported runtimes of a YOLO pose detector: ultralytics' own ONNX Runtime and OpenVINO exports.

:func:`exported_pose_model` turns the user's ``*-pose.pt`` into an ONNX file or an OpenVINO
folder once and caches it under ``<cache_dir>/<sha256[:16]>-<runtime>-<image_size>/``, so
every worker of a run (and every later run into the same output) reuses one export. The
weights go through the same restricted loading as the PyTorch detector
(:func:`models.pose_detector.load_yolo_checkpoint`) before ultralytics' exporter sees them,
and nothing is downloaded or installed: the runtime's packages must be installed already
(the ``export`` extra), ultralytics' requirement auto-install is switched off
(``YOLO_AUTOINSTALL=0``), and a missing package is a :class:`MissingRuntimeError` naming it.

The export keeps the input size dynamic, so frames are letterboxed to the same rectangle as
for the PyTorch model and the keypoints agree with PyTorch's to float rounding.

An exported runtime runs on as many threads as torch does in the worker
(``torch.get_num_threads()``, i.e. ``--torch_threads``): left alone, ONNX Runtime and
OpenVINO start a thread per core in every worker process, and the threads spin while they
wait, which costs CPU time without making a loaded machine faster.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from models.pose_detector import YoloPoseDetector, _import_ultralytics_safely, load_yolo_checkpoint

logger = logging.getLogger(__name__)

# The values of --detector_runtime.
DETECTOR_RUNTIMES = ("torch", "onnx", "openvino")

# Python modules each exported runtime needs (export and inference), and their pip names.
RUNTIME_MODULES: dict[str, tuple[tuple[str, str], ...]] = {
    "torch": (),
    "onnx": (("onnx", "onnx"), ("onnxruntime", "onnxruntime")),
    "openvino": (("openvino", "openvino"),),
}

# What ultralytics' exporter writes next to ``<stem>.pt``.
_EXPORT_NAME = {"onnx": "model.onnx", "openvino": "model_openvino_model"}

__all__ = [
    "DETECTOR_RUNTIMES",
    "MissingRuntimeError",
    "check_runtime",
    "disable_autoinstall",
    "exported_pose_model",
    "weights_sha256",
    "yolo_pose_detector",
]


class MissingRuntimeError(RuntimeError):
    """A detector runtime whose Python packages are not installed (nothing is installed for you)."""


def check_runtime(runtime: str) -> None:
    """Refuse an unknown runtime or one whose packages are missing.

    Args:
        runtime: one of :data:`DETECTOR_RUNTIMES`.

    Raises:
        ValueError: an unknown runtime (the message names ``--detector_runtime``).
        MissingRuntimeError: a package the runtime needs is not installed; the message names
            it and the pip extra that installs it.
    """
    if runtime not in DETECTOR_RUNTIMES:
        raise ValueError(f"--detector_runtime {runtime!r}: use one of {DETECTOR_RUNTIMES}")
    missing = [pip for module, pip in RUNTIME_MODULES[runtime] if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingRuntimeError(
            f"--detector_runtime {runtime} needs the Python package(s) {', '.join(missing)}, which are not installed; "
            "install them with `pip install 'vid2mesh[export]'` (pinned in constraints.txt) or use "
            "--detector_runtime torch. vid2mesh never installs packages at run time."
        )


def disable_autoinstall() -> None:
    """Switch off ultralytics' requirement auto-install (``pip install`` from inside a run).

    ``YOLO_AUTOINSTALL`` is read when ultralytics is first imported; the copy that
    ``ultralytics.utils.checks.check_requirements`` reads is switched off here too, so a
    missing package fails the export instead of starting pip.
    """
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import ultralytics.utils as utils
    import ultralytics.utils.checks as checks

    utils.AUTOINSTALL = False
    checks.AUTOINSTALL = False


def weights_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a weights file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def yolo_pose_detector(weights: str | os.PathLike, runtime: str = "torch", export_dir: str | os.PathLike | None = None,
                       device: str = "cpu", threads: int | None = None, **options) -> YoloPoseDetector:
    """A :class:`models.pose_detector.YoloPoseDetector` on ``runtime``.

    Args:
        weights: local ultralytics ``*-pose.pt``.
        runtime: "torch" (the checkpoint, any device), or "onnx" / "openvino" (its export, CPU
            only, fp32).
        export_dir: local folder caching the export (needed with an exported runtime).
        device: torch device string.
        threads: threads of an exported runtime (None: ``torch.get_num_threads()``).
        **options: the other :class:`YoloPoseDetector` arguments (confidence, iou, image_size, ...).

    Raises:
        ValueError: an unknown runtime, or an exported one without ``export_dir``, on a GPU
            or in fp16.
        MissingRuntimeError: the runtime's packages are not installed.
    """
    check_runtime(runtime)
    if runtime != "torch" and (export_dir is None or not str(device).startswith("cpu") or options.get("half")):
        raise ValueError(
            f"--detector_runtime {runtime} runs on the CPU in fp32 with an export folder; got device {device!r}, "
            f"half={options.get('half', False)}, export_dir={export_dir!r} (use --detector_runtime torch on a GPU)."
        )
    detector = YoloPoseDetector(weights, device=device, **options)  # restricted loading, pose-model check
    if runtime != "torch":
        from ultralytics import YOLO

        path = exported_pose_model(weights, runtime, export_dir, detector.image_size)
        detector.use_runtime(YOLO(path, task="pose"), runtime)
        if threads is None:
            import torch

            threads = torch.get_num_threads()
        _pin_threads(detector, runtime, path, int(threads))
    return detector


def _pin_threads(detector: YoloPoseDetector, runtime: str, path: str, threads: int) -> None:
    """Rebuild the exported model's session with ``threads`` threads (ultralytics starts it
    with one per core and offers no option for it)."""
    detector.detect(np.zeros((1, 32, 32, 3), np.uint8))  # ultralytics builds its predictor and backend
    backend = detector.model.predictor.model.backend
    if runtime == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        backend.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    else:
        import openvino

        core = openvino.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        backend.compile_model = partial(core.compile_model, device_name="CPU", config=config)
        backend.ov_compiled_model = backend.compile_model(core.read_model(str(next(Path(path).glob("*.xml")))))
    logger.info("detector runtime %s on %d threads", runtime, threads)


def exported_pose_model(weights: str | os.PathLike, runtime: str, cache_dir: str | os.PathLike, image_size: int) -> str:
    """The exported model of ``weights`` for ``runtime``, exported on first use and cached.

    Concurrent workers may export at once: each exports into a temporary folder beside the
    cache entry and moves it into place; the first to finish wins and the others reuse it.

    Args:
        weights: local ultralytics ``*-pose.pt`` (checked by the restricted loader first).
        runtime: "onnx" or "openvino".
        cache_dir: local folder of the exports (e.g. ``<output>/_cache/detector``).
        image_size: the detector's inference size (longest side, pixels); the export keeps
            the input shape dynamic, the size only names the cache entry and traces the model.

    Returns:
        Path of the ``.onnx`` file or the OpenVINO model folder, loadable with
        ``ultralytics.YOLO(path, task="pose")``.

    Raises:
        FileNotFoundError / UnsafeWeightsError: as :func:`models.pose_detector.load_yolo_checkpoint`.
        MissingRuntimeError: the runtime's packages are not installed.
        RuntimeError: the export failed (the message names the weights and the runtime).
    """
    if runtime == "torch" or runtime not in DETECTOR_RUNTIMES:
        raise ValueError(f"exported_pose_model: runtime must be one of {DETECTOR_RUNTIMES[1:]}, got {runtime!r}")
    check_runtime(runtime)
    load_yolo_checkpoint(weights)  # refuses unsafe files before the exporter unpickles them
    entry = Path(cache_dir) / f"{weights_sha256(weights)[:16]}-{runtime}-{int(image_size)}"
    target = entry / _EXPORT_NAME[runtime]
    if target.exists():
        return str(target)
    _import_ultralytics_safely()
    disable_autoinstall()
    from ultralytics import YOLO

    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=cache_dir))
    try:
        shutil.copyfile(weights, work / "model.pt")
        try:
            options = {"simplify": False} if runtime == "onnx" else {}  # onnxslim is not needed
            written = YOLO(str(work / "model.pt"), task="pose").export(
                format=runtime, imgsz=int(image_size), dynamic=True, device="cpu", verbose=False, **options
            )
        except Exception as exc:
            raise RuntimeError(
                f"exporting YOLO pose weights {str(weights)!r} to {runtime} failed ({type(exc).__name__}: {exc}); "
                "use --detector_runtime torch"
            ) from exc
        if not written or not (work / _EXPORT_NAME[runtime]).exists():
            raise RuntimeError(f"exporting YOLO pose weights {str(weights)!r} to {runtime} wrote nothing; use --detector_runtime torch")
        (work / "model.pt").unlink()
        try:
            os.rename(work, entry)
        except OSError:  # another worker finished first: use its export
            if not target.exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("exported %s to %s (%s)", weights, runtime, target)
    return str(target)
