"""The model-backed stages: perception and bundle adjustment with the user's (or stand-in) files.

The launcher resolves and checks every model file before the job starts
(:func:`resolve_model_files`: a missing file stops the job with the flag to pass). Workers
load them in ``setup``: remote files (gs://...) are copied to a local cache first; the
generated stand-in body is regenerated on a worker that lacks it and must hash the same.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import typing
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from pipeline.perception.keypoint_source import check_keypoint_source
from pipeline.records import ClipRef, PerceptionResult, TrackFit, TrackProblem
from transforms import storage

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFiles:
    """Resolved model files of a run (paths or URLs, checked on the launcher).

    Attributes:
        body_model: SMPL-format body model file.
        body_model_variant: "smpl" (user's file) or "standin" (generated).
        body_model_sha256: hex digest of the body model file.
        gender: "neutral", "male" or "female".
        gmm_prior: SMPLify-format GMM pose prior file.
        standin_cache: where the stand-in was generated (None for user files).
        pose_model: ultralytics *-pose.pt weights, None = no detector.
        hmr_checkpoint, hmr_mean_params: SPIN-format HMR files, None = keypoint-only init.
    """

    body_model: str
    body_model_variant: str
    body_model_sha256: str
    gender: str
    gmm_prior: str
    standin_cache: str | None = None
    pose_model: str | None = None
    hmr_checkpoint: str | None = None
    hmr_mean_params: str | None = None


def default_cache_dir() -> str:
    """The cache root every stage shares (``models.standin.default_cache_root``)."""
    from models.standin import default_cache_root

    return str(default_cache_root())


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    if storage.is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(path) as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def resolve_model_files(
    smpl_model: str | None = None,
    gender: str | None = None,
    gmm_prior: str | None = None,
    pose_model: str | None = None,
    hmr_checkpoint: str | None = None,
    hmr_mean_params: str | None = None,
    cache_dir: str | None = None,
    keypoints_source: str = "auto",
    exists: Callable[[str], bool] = storage.exists,
) -> ModelFiles:
    """Check the model flags and files; fall back to the generated stand-in body.

    Args:
        gender: ``--gender``; None: the gender ``smpl_model``'s file name states
            (:func:`models.smpl_io.gender_from_file_name`), else neutral.

    Raises:
        FileNotFoundError: a given file does not exist, or a needed one was not given;
            the message names the flag to pass.
        ValueError: ``gender`` contradicts the gender ``smpl_model``'s file name states.
    """
    check_keypoint_source(keypoints_source)

    def check(flag: str, path: str | None, what: str) -> None:
        if path and not exists(path):
            raise FileNotFoundError(f"{flag} {path}: no such file; pass the path of {what}")

    check("--smpl_model", smpl_model, "your SMPL model file (SMPL_*.pkl or .npz from smpl.is.tue.mpg.de)")
    check("--gmm_prior", gmm_prior, "the SMPLify GMM pose prior (.pkl)")
    check("--pose_model", pose_model, "ultralytics YOLO pose weights (*-pose.pt); nothing is downloaded")
    check("--hmr_checkpoint", hmr_checkpoint, "a SPIN-format HMR checkpoint")
    check("--hmr_mean_params", hmr_mean_params, "the HMR checkpoint's smpl_mean_params.npz")
    if keypoints_source == "detect" and not pose_model:
        raise FileNotFoundError("--keypoints detect needs --pose_model (ultralytics *-pose.pt weights); "
                                "or pass --keypoints precomputed to use keypoint files")
    if bool(hmr_checkpoint) != bool(hmr_mean_params):
        raise FileNotFoundError("HMR needs both --hmr_checkpoint and --hmr_mean_params (smpl_mean_params.npz)")
    gender = _model_gender(smpl_model, gender)
    if smpl_model:
        if not gmm_prior:
            raise FileNotFoundError("--smpl_model needs --gmm_prior: pass the SMPLify GMM pose prior file (.pkl)")
        try:
            digest = file_sha256(smpl_model)
        except OSError as exc:  # a permission error: one line naming the flag, not a traceback
            raise ValueError(f"--smpl_model {smpl_model}: cannot read it ({exc.strerror or exc}); "
                             "fix its permissions or pass another file") from None
        return ModelFiles(smpl_model, "smpl", digest, gender, gmm_prior,
                          pose_model=pose_model, hmr_checkpoint=hmr_checkpoint, hmr_mean_params=hmr_mean_params)
    from models.standin import ensure_standin

    cache = os.path.join(cache_dir or default_cache_dir(), "standin")
    standin = ensure_standin(cache)
    body = str(getattr(standin, gender))
    LOGGER.warning(
        "NO --smpl_model GIVEN: fitting with the GENERATED STAND-IN body model %s (not SMPL; for testing the "
        "pipeline only). The output metadata records body_model variant 'standin'. Pass --smpl_model and "
        "--gmm_prior to fit real SMPL.", body,
    )
    prior = gmm_prior or str(standin.gmm)
    if not gmm_prior:
        LOGGER.warning("NO --gmm_prior GIVEN: using the generated stand-in GMM pose prior %s", prior)
    return ModelFiles(body, "standin", file_sha256(body), gender, prior, standin_cache=cache,
                      pose_model=pose_model, hmr_checkpoint=hmr_checkpoint, hmr_mean_params=hmr_mean_params)


def _model_gender(smpl_model: str | None, flag: str | None) -> str:
    """The run's body-model gender: ``--gender``, else what the model's file name states,
    else neutral; a flag the file name contradicts is an error naming both."""
    from models.smpl_io import gender_from_file_name

    named = gender_from_file_name(smpl_model) if smpl_model else None
    if flag and named and flag != named:
        raise ValueError(f"--gender {flag} contradicts --smpl_model {smpl_model}, whose file name says {named}; "
                         f"drop --gender or pass the {flag} model file")
    return flag or named or "neutral"


def build_dataclass(cls, values: dict[str, Any], flag: str):
    """``cls(**values)`` where dict values of dataclass-typed fields build those recursively
    (``{"decode": {"target_fps": 10}}``); unknown names raise ValueError naming ``flag``."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{flag}: unknown fields {unknown} of {cls.__name__}; it has {sorted(names)}")
    built = {}
    for name, value in values.items():
        kind = hints.get(name)
        if isinstance(value, dict) and dataclasses.is_dataclass(kind):
            value = build_dataclass(kind, value, f"{flag} {name}")
        elif isinstance(value, list):
            value = tuple(value)
        built[name] = value
    try:
        return cls(**built)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{flag}: {exc}") from exc


def _local(path: str | None, cache: str) -> str | None:
    """A local path for a (possibly remote) file, copied into ``cache`` once per worker."""
    if not path or not storage.is_remote(path):
        return path
    os.makedirs(cache, exist_ok=True)
    target = os.path.join(cache, hashlib.sha1(path.encode()).hexdigest()[:12] + "-" + path.rsplit("/", 1)[-1])
    if not os.path.exists(target):
        tmp = storage.stage_local(path, tempfile.mkdtemp(dir=cache))
        os.replace(tmp, target)
    return target


def _worker_cache() -> str:
    return os.path.join(tempfile.gettempdir(), "vid2mesh-models")


def _worker_standin():
    """The stand-in files on a worker: $VID2MESH_CACHE/standin (built into the container),
    else generated into a temporary folder (deterministic bytes)."""
    from models.standin import ensure_standin

    root = os.environ.get("VID2MESH_CACHE") or _worker_cache()
    return ensure_standin(os.path.join(root, "standin"))


def local_body_model_path(files: ModelFiles) -> str:
    """The body model file on this worker (the stand-in is regenerated when missing)."""
    worker_cache = _worker_cache()
    if files.body_model_variant == "standin" and not os.path.exists(files.body_model):
        standin = _worker_standin()
        path = str(getattr(standin, files.gender))
        if file_sha256(path) != files.body_model_sha256:
            raise RuntimeError(
                f"the stand-in body generated on this worker ({path}) differs from the launcher's "
                f"(sha256 {files.body_model_sha256[:12]}); install the same vid2mesh version on both"
            )
        return path
    return _local(files.body_model, worker_cache)


def local_prior_path(files: ModelFiles) -> str:
    if files.body_model_variant == "standin" and files.standin_cache and not os.path.exists(files.gmm_prior):
        return str(_worker_standin().gmm)
    return _local(files.gmm_prior, _worker_cache())


def load_body_model(files: ModelFiles):
    from models.body_model import BodyModel

    return BodyModel.from_file(local_body_model_path(files))


@dataclass
class ModelPerception:
    """:class:`transforms.stages.PerceptionStage` over :func:`pipeline.perception.perceive.perceive_clip`.

    Args:
        files: the run's model files.
        device: "auto", "cpu", "cuda", ...
        keypoints_source: "auto", "precomputed" or "detect" (``--keypoints``).
        keypoints_root: folder of precomputed keypoints (None: next to the videos).
        overrides: PerceptionConfig field overrides (``--perception_config``).
        detector_runtime: "torch", "onnx" or "openvino" (``--detector_runtime``).
        export_dir: local folder caching the detector's export (None: a folder of the
            worker's temporary directory).
    """

    files: ModelFiles
    device: str = "auto"
    keypoints_source: str = "auto"
    keypoints_root: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    detector_runtime: str = "torch"
    export_dir: str | None = None

    def __post_init__(self) -> None:
        check_keypoint_source(self.keypoints_source)
        self.config()  # bad overrides fail on the launcher, not on every worker

    @property
    def has_detector(self) -> bool:
        return self.files.pose_model is not None

    def config(self, local: Callable[[str | None], str | None] = lambda p: p):
        """The PerceptionConfig: overrides, then the model files (``local`` maps a path to
        this machine) and the keypoint source."""
        from pipeline.perception.perceive import PerceptionConfig

        values = dict(self.overrides)
        values.update(
            keypoints_source=self.keypoints_source,
            detector_weights=local(self.files.pose_model),
            detector_runtime=self.detector_runtime,
            hmr_checkpoint=local(self.files.hmr_checkpoint),
            smpl_mean_params=local(self.files.hmr_mean_params),
        )
        return build_dataclass(PerceptionConfig, values, "--perception_config")

    def describe(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.config()),
            "keypoints_root": self.keypoints_root,
            "device": self.device,
            "init": "hmr" if self.files.hmr_checkpoint else "keypoints",
        }

    def setup(self) -> None:
        from pipeline.perception.perceive import load_perception_models

        from models.device import check_device

        cache = _worker_cache()
        self._device = check_device(self.device)  # raises: Beam retries or fails the job, no clip is marked failed
        self._config = self.config(lambda p: _local(p, cache))
        export_dir = self.export_dir or os.path.join(cache, "detector")
        self._models = load_perception_models(self._config, load_body_model(self.files), self._device, export_dir)
        LOGGER.info("perception models loaded on %s (init: %s)", self._device,
                    "HMR" if self.files.hmr_checkpoint else "keypoint-only")

    def video_rejection(self, clip: ClipRef) -> PerceptionResult | None:
        from pipeline.perception.inputs import video_rejection

        return video_rejection(clip, self._config.decode.timeout_s)

    def __call__(self, clip: ClipRef) -> PerceptionResult:
        from pipeline.perception.perceive import perceive_clip

        return perceive_clip(clip, self._config, self._models)


@dataclass
class ModelBundleAdjust:
    """:class:`transforms.stages.BundleAdjustStage` over :func:`optimize.bundle_adjust.bundle_adjust`."""

    files: ModelFiles
    device: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.config()

    def config(self):
        from optimize.config import BAConfig

        return build_dataclass(BAConfig, self.overrides, "--ba_config")

    def describe(self) -> dict[str, Any]:
        return {"config": dataclasses.asdict(self.config()), "device": self.device}

    def setup(self) -> None:
        from models.gmm_prior import GMMPrior

        from models.device import check_device

        self._device = check_device(self.device)  # raises: Beam retries or fails the job, no clip is marked failed
        self._config = self.config()
        self._body_model = load_body_model(self.files)
        self._prior = GMMPrior.from_file(local_prior_path(self.files))
        LOGGER.info("bundle adjustment on %s", self._device)

    def __call__(self, problems: Sequence[TrackProblem]) -> list[TrackFit]:
        from optimize.bundle_adjust import bundle_adjust

        return bundle_adjust(list(problems), self._body_model, self._prior, self._config, self._device)
