"""Explicit pyarrow schemas of the three output datasets: ``frames/``, ``tracks/``, ``rejected/``.

Every column is declared once here, as a :class:`Column` with its arrow type, shape, unit
and meaning. Each Parquet field carries them in its field metadata (``description``,
``unit``, ``shape``, ``joint_order``), and the column tables of ``docs/schema.md`` are
generated from them (:mod:`pipeline.dataset.schema_doc`; a test checks the committed file). Array columns are
(nested) fixed-size lists, so pyarrow, PyTorch readers and HuggingFace ``datasets`` all see
their shapes; the HF ``features`` are also written into the schema metadata under the
``huggingface`` key, which ``datasets.load_dataset("parquet", ...)`` reads.

Schema key-value metadata (all values are UTF-8 strings, JSON where noted):

* ``vid2mesh.schema_version``: :data:`SCHEMA_VERSION` (semver; bump the major on breaking
  column changes).
* ``vid2mesh.dataset``: ``frames`` / ``tracks`` / ``rejected``.
* ``vid2mesh.body_model`` (JSON): variant (``smpl`` or ``standin``), gender, file name, sha256.
* ``vid2mesh.joint_orders`` (JSON): column name -> list of joint names.
* ``vid2mesh.config`` (JSON): the run's perception, bundle-adjustment and selection config.
* ``vid2mesh.settings_hash``: :func:`settings_hash` of the perception and bundle-adjustment
  settings the shard's clips were fitted with (also in each clip's manifest entry; a rerun
  into the output compares it).
* ``vid2mesh.code_version``: package version and git commit when known.
* ``huggingface`` (JSON): ``{"info": {"features": ...}}`` for HuggingFace ``datasets``.

Conventions follow ``docs/conventions.md``: COCO-17 keypoints in pixels of the decoded frame
(origin top-left, x right, y down) with a confidence channel, SMPL-24 joints in metres in
the camera-aligned body frame (x right, y down, z away from the camera), weak-perspective
camera ``(s px/m, tx px, ty px)``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = "1.4.0"
DATASETS = ("frames", "tracks", "rejected")

# Metadata keys (bytes in the arrow schema).
KEY_SCHEMA_VERSION = "vid2mesh.schema_version"
KEY_DATASET = "vid2mesh.dataset"
KEY_BODY_MODEL = "vid2mesh.body_model"
KEY_JOINT_ORDERS = "vid2mesh.joint_orders"
KEY_CONFIG = "vid2mesh.config"
KEY_CODE_VERSION = "vid2mesh.code_version"
KEY_SETTINGS_HASH = "vid2mesh.settings_hash"
KEY_HUGGINGFACE = "huggingface"

# Field metadata keys (each column's own description, in every Parquet file).
FIELD_DESCRIPTION = b"description"
FIELD_UNIT = b"unit"
FIELD_SHAPE = b"shape"
FIELD_JOINT_ORDER = b"joint_order"

NUM_COCO = 17
NUM_SMPL_JOINTS = 24
NUM_POSE = 72
NUM_BETAS = 10


def _fixed(inner: pa.DataType, *shape: int) -> pa.DataType:
    """Nested fixed-size list of ``shape`` (outermost first) around ``inner``."""
    dtype = inner
    for size in reversed(shape):
        dtype = pa.list_(dtype, size)
    return dtype


@dataclass(frozen=True)
class Column:
    """One column of an output dataset.

    Attributes:
        name: column name.
        type: arrow type (fixed-size lists for arrays).
        shape: per-row shape, () for scalars.
        unit: unit or value domain ("px", "m", "rad", "s", "" for ids and text).
        description: what the column holds, in the field's words.
        joint_order: name of the joint order of the array's joint axis ("coco17", "smpl24").
    """

    name: str
    type: pa.DataType
    shape: tuple[int, ...]
    unit: str
    description: str
    joint_order: str | None = None

    def field(self) -> pa.Field:
        """The arrow field, carrying its description and unit (and shape, joint order) in
        its field metadata, so each Parquet file describes its own columns."""
        return pa.field(self.name, self.type, metadata=self.field_metadata())

    def field_metadata(self) -> dict[bytes, bytes]:
        """Field metadata: ``description``, ``unit`` (empty for ids, flags and text),
        ``shape`` (per row, ``scalar`` or e.g. ``17x3``) and ``joint_order`` when the array
        has a joint axis."""
        shape = "scalar" if not self.shape else ("variable" if self.shape == (-1,) else "x".join(map(str, self.shape)))
        meta = {FIELD_DESCRIPTION: self.description.encode(), FIELD_UNIT: self.unit.encode(), FIELD_SHAPE: shape.encode()}
        if self.joint_order:
            meta[FIELD_JOINT_ORDER] = self.joint_order.encode()
        return meta


F32 = pa.float32()
F64 = pa.float64()
I32 = pa.int32()
STR = pa.string()
BOOL = pa.bool_()

# Columns shared by every row that describes a clip.
_CLIP_COLUMNS = (
    Column("clip_id", STR, (), "", "Deterministic clip id, `<youtube_id>_<start:06d>_<end:06d>` for Kinetics clips."),
    Column("label", STR, (), "", "Action label of the clip (Kinetics class), empty when unknown."),
    Column("split", STR, (), "", "Source split: train / val / test, empty when unknown."),
    Column("source_uri", STR, (), "", "Path or URL of the source video."),
)

# What the detector saw of a clip (pipeline.records.PerceptionResult), on its tracks/ and rejected/ rows.
_DETECTION_COLUMNS = (
    Column("detections_median", F32, (), "people/frame", "Median over the clip's decoded frames of the people detected in a frame (every size, after pose-aware NMS; 0 if never detected)."),
    Column("detections_max", I32, (), "people/frame", "Most people detected in any frame of the clip (every size)."),
    Column("smallest_person_px", F32, (), "px", "Box height of the smallest person detected in the clip, pixels of the decoded frame; people shorter than PerceptionConfig.min_person_height are not tracked; NaN if nobody was detected."),
    Column("duplicate_tracks", I32, (), "", "Tracks of the clip dropped because another track follows the same person (hips within 0.1 body heights on most common frames)."),
)

# Where the clip's 2D keypoints came from (frames/, tracks/ and rejected/).
KEYPOINT_SOURCE_COLUMN = Column(
    "keypoint_source", STR, (), "",
    "Where the clip's 2D keypoints came from: detector:<weights file name>@sha256:<first 12 hex digits> (the pose "
    "detector, --pose_model) or keypoints:<path> (a precomputed keypoint file or folder, as the input named or "
    "found it); empty when the clip was rejected before its source was decided (pipeline.perception.keypoint_source).",
)

FRAMES_COLUMNS: tuple[Column, ...] = (
    *_CLIP_COLUMNS,
    KEYPOINT_SOURCE_COLUMN,
    Column("track_id", I32, (), "", "0-based person track within the clip (0 = first path the tracker extracted)."),
    Column("frame_index", I32, (), "", "Index of the decoded frame, counted from 0 at the decoded clip start."),
    Column("frame_time", F64, (), "s", "Seconds from the decoded clip start."),
    Column("fps", F32, (), "Hz", "Frame rate of the decoded frames."),
    Column("image_width", I32, (), "px", "Width of the decoded frame (all pixel coordinates refer to it)."),
    Column("image_height", I32, (), "px", "Height of the decoded frame."),
    Column("has_detection", BOOL, (), "", "True where the tracker kept a detection for this track in this frame; False on skipped frames."),
    Column("box", _fixed(F32, 4), (4,), "px", "Detection box x0, y0, x1, y1 of the tracked person; NaN on skipped frames."),
    Column("keypoints_2d", _fixed(F32, NUM_COCO, 3), (NUM_COCO, 3), "px + confidence", "Detected 2D keypoints (x, y, confidence in [0, 1]); confidence 0 = missing.", "coco17"),
    Column("betas", _fixed(F32, NUM_BETAS), (NUM_BETAS,), "", "SMPL shape coefficients, one vector per track (repeated on each frame)."),
    Column("pose", _fixed(F32, NUM_POSE), (NUM_POSE,), "rad", "SMPL pose, 24 joints x 3 axis-angle; the first 3 are the global orientation (upright, facing the camera ~ (pi, 0, 0)).", "smpl24"),
    Column("camera", _fixed(F32, 3), (3,), "px/m, px, px", "Weak-perspective camera (s, tx, ty): x_px = s * X + tx, y_px = s * Y + ty."),
    Column("joints_3d", _fixed(F32, NUM_SMPL_JOINTS, 3), (NUM_SMPL_JOINTS, 3), "m", "SMPL-24 joints after global orientation, body frame x right, y down, z away from the camera, no translation.", "smpl24"),
    Column("keypoints_3d", _fixed(F32, NUM_COCO, 3), (NUM_COCO, 3), "m", "COCO-17 keypoints as seen from the fitted SMPL body, same frame as joints_3d.", "coco17"),
    Column("reprojection_2d", _fixed(F32, NUM_COCO, 2), (NUM_COCO, 2), "px", "keypoints_3d projected with camera: where the fit lands in the image.", "coco17"),
    Column("reprojection_error", F32, (), "px", "Reprojection error in image pixels: confidence-weighted mean over keypoints of the distance between reprojection_2d and the track's own keypoints_2d; NaN where the track has no detection (interpolated frames)."),
    Column("reprojection_error_rel", F32, (), "fraction of body height", "reprojection_error divided by the fitted person's height in the frame (camera s x 1.7 m): the same figure for a 80 px and a 450 px person; NaN on interpolated frames."),
    Column("reprojection_energy", F32, (), "reference px", "Robust reprojection energy against the track's own detection, sum_i w_i rho(x_i - x_det,i) (hinge or Huber of bundle adjustment), in the fit's units: pixels of a person rescaled to BAConfig.reference_height_px (units relative, the default) or image pixels (units pixels); NaN on interpolated frames."),
    Column("matched_candidate", I32, (), "", "Index of the candidate detection the E_R minimum matched (-1: none)."),
    Column("inlier", BOOL, (), "", "Inlier frame: the track has its own detection on the frame and reprojection_energy < tau_R (paper section 4, in the fit's size-invariant units); never true on an interpolated frame."),
    Column("interpolated", BOOL, (), "", "The tracker kept no detection for the track on this frame: the fit there is regularised towards the track by the temporal and prior terms only (the negation of has_detection)."),
    Column("pose_nll", F32, (), "nats", "GMM pose-prior negative log-likelihood of the body pose minus its minimum over the mixture means (0 = the most likely pose); above 250 the pose is outside the prior's support (every ground-truth pose of the motion library scores below 245; docs/bundle_adjustment.md); NaN without a prior."),
    Column("joint_acceleration", F32, (), "m/s^2", "Largest 3D joint acceleration |X^{t+1} - 2 X^t + X^{t-1}| x fps^2 over the 24 joints (body frame); above 400 is beyond human limits (ground-truth motions: 99th percentile 214, max 377); NaN on the track's first and last frame."),
    Column("orientation_change", F32, (), "rad", "Angle between this frame's and the previous frame's global orientation; above pi/2 = a front/back flip (ground-truth motions: max 0.15; 0 on the first frame)."),
    Column("pred_err_mm", F32, (), "mm", "Predicted 3D joint error of the frame: the fit's own uncertainty (the Gauss-Newton covariance of the track's parameters at the solution, propagated to the pelvis-aligned SMPL-24 joints: mean over joints of the root of each joint's covariance trace, times one calibration factor; optimize.uncertainty), a prediction of MPJPE; inf where undetermined (no detection on the frame, a normal matrix that is not positive definite). Filter with FrameFilter.max_pred_err_mm."),
    Column("init_disagreement_mm", F32, (), "mm", "How far the fit moved from the per-frame init of the track's own detection: mean over the 24 joints of the distance between the fitted and the init joints, both pelvis-aligned (an MPJPE between fit and init; optimize.track_metrics.init_disagreement_mm); NaN on interpolated frames."),
    Column("frame_score_mm", F32, (), "mm", "The frame form of the selection score, a per-frame confidence (lower is better): cbrt(p x P x sqrt(p^2 + d^2)) with p this row's pred_err_mm, P the track's pred_err_mm and d init_disagreement_mm (a frame without d counts d = 0), the geometric mean of three estimates of the frame's 3D joint error (optimize.track_metrics.frame_score_mm); ranks true per-frame error better than pred_err_mm (docs/bundle_adjustment.md, Selection score); inf where the frame or its track is undetermined. Filter with FrameFilter.max_frame_score_mm."),
    Column("pose_density_outliers", I32, (), "joints", "Body joints (of 23) whose rotation is below its per-joint density threshold: the 0.1 % quantile of that joint's 3-D marginal of the GMM pose prior over poses drawn from the prior itself (optimize.plausibility); -1 without a prior."),
    Column("joint_limit_violations", I32, (), "joints", "Knees and elbows (of 4) outside anatomical limits: flexion outside 0-150 degrees widened by 15 degrees (hyperextension beyond 15 degrees included), or a knee turned more than 30 degrees out of its flexion plane (optimize.plausibility.HINGE_LIMITS)."),
    Column("track_selected", BOOL, (), "", "The track passed selection: false as committed (the selection comes after); readers join selection/tracks.parquet for the final value."),
    Column("e_norm", F64, (), "energy/frame", "The track's selection score E_norm (repeated on each frame), for filtering; see tracks.e_norm."),
    Column("init_pose", _fixed(F32, NUM_POSE), (NUM_POSE,), "rad", "Per-frame initial SMPL pose of the tracked detection (HMR or keypoint init) before bundle adjustment; NaN on skipped frames.", "smpl24"),
    Column("init_betas", _fixed(F32, NUM_BETAS), (NUM_BETAS,), "", "Per-frame initial SMPL shape of the tracked detection; NaN on skipped frames."),
    Column("init_camera", _fixed(F32, 3), (3,), "px/m, px, px", "Per-frame initial weak-perspective camera of the tracked detection; NaN on skipped frames."),
    Column("init_source", STR, (), "", "Initialiser of the fit: hmr (regressor) or keypoints (keypoint-only)."),
)

TRACKS_COLUMNS: tuple[Column, ...] = (
    *_CLIP_COLUMNS,
    KEYPOINT_SOURCE_COLUMN,
    Column("track_id", I32, (), "", "0-based person track within the clip."),
    Column("fit_status", STR, (), "", "Bundle-adjustment outcome: ok, diverged (never written as frames), failed, or split (identity switches found: the track's pieces were fitted as tracks of their own, ids track_id + 1000 k)."),
    Column("num_frames", I32, (), "", "Frames of the track (first to last frame it was seen, skipped frames included)."),
    Column("num_detected_frames", I32, (), "", "Frames where the tracker kept a detection."),
    Column("num_inlier_frames", I32, (), "", "Inlier frames after bundle adjustment (frames with the track's own detection only, so <= num_detected_frames)."),
    Column("first_frame", I32, (), "", "frame_index of the track's first frame."),
    Column("last_frame", I32, (), "", "frame_index of the track's last frame."),
    Column("fps", F32, (), "Hz", "Frame rate of the decoded frames."),
    Column("image_width", I32, (), "px", "Width of the decoded frame."),
    Column("image_height", I32, (), "px", "Height of the decoded frame."),
    Column("energy", F64, (), "", "Total bundle-adjustment energy E = E_R + E_T + E_P at the solution."),
    Column("energy_terms", pa.list_(pa.struct([("term", STR), ("value", F64)])), (-1,), "", "Each energy term's total at the solution (term name, value); terms as named by optimize.bundle_adjust."),
    Column("trajectory_length", F64, (), "m", "Sum over frames and joints of the 3D joint displacement norm(X_i^t - X_i^{t-1}) (trajectory length)."),
    Column("e_norm", F64, (), "energy/frame", "Selection score, BAConfig.e_norm: per_frame (default) E / num_frames, the mean energy per frame in the fit's size-invariant units; trajectory (the paper's eq. 11) E / trajectory_length, energy per metre; inf when undefined."),
    Column("selection_score", F64, (), "", "The score selection thresholds (lower is better), fixed when the shard is committed: SelectionConfig.score, e_norm (this row's e_norm) or predicted_error (the track's predicted 3D joint error, mm) or predicted_x_energy (predicted error x sqrt(e_norm)); inf when the fit is not ok or does not define it (reason undetermined)."),
    Column("pred_err_mm", F32, (), "mm", "The track's predicted 3D joint error: mean over all its frames of the propagated error, the frames of a detection gap (inf in frames.pred_err_mm) included with the error of the pose the priors hold there; inf when half or more of its frames have no detection, the normal matrix is not positive definite or the fit is not ok (optimize.track_metrics.predicted_error)."),
    Column("betas_absmax", F32, (), "", "max_k |betas_k| of the fitted shape; NaN when not finite."),
    Column("betas_out_of_range", BOOL, (), "", "betas_absmax > 3 (the shape bound of EFT and 4DHumans: the edge of SMPL's shape population)."),
    Column("implausible_frame_fraction", F32, (), "fraction", "Fraction of the track's frames with pose_density_outliers > 0 or joint_limit_violations > 0; NaN when the fit is not ok."),
    Column("iterations", I32, (), "", "Solver iterations the track took over all stages (Levenberg-Marquardt linear solves with solver=\"lm\", the default; L-BFGS steps with solver=\"batched\")."),
    Column("converged", BOOL, (), "", "The track met its own stopping criterion."),
    Column("betas", _fixed(F32, NUM_BETAS), (NUM_BETAS,), "", "Fitted SMPL shape of the track."),
    Column("selected", BOOL, (), "", "The track passed selection: false as committed; final in selection/tracks.parquet (the reader joins it)."),
    Column("selection_reason", STR, (), "", "As committed: eligible, or why no threshold can select the track (too_few_inliers, too_short, not_moving, diverged, failed, not_converged: stopped at its iteration budget; undetermined: the selection score is not finite; split: cut at identity switches, its pieces have rows; identity_switch: a piece too short to keep); after the selection (selection/tracks.parquet): selected, e_norm_above_threshold or below_best_fraction for eligible tracks."),
    Column("e_norm_threshold", F64, (), "", "NaN as committed; the threshold on selection_score (in its units) the selection used is in selection/tracks.parquet (fixed, or derived from the kept fraction of the whole output)."),
    Column("init_source", STR, (), "", "Initialiser of the fit: hmr or keypoints."),
    Column("person_scale", F64, (), "px/m", "The track's scale that sets its units: median init camera s over detected frames (a 1.7 m person is 1.7 x person_scale px tall); NaN when unknown."),
    Column("parent_track_id", I32, (), "", "-1, or for a piece of a track cut at identity switches the track_id of that track (fit_status split)."),
    Column("split_frame", I32, (), "", "-1, or for a piece the frame_index of the identity switch that starts it (the first piece: the switch that ends it)."),
    Column("message", STR, (), "", "Solver notes or failure reason."),
    *_DETECTION_COLUMNS,
)

CROP_COLUMN = Column(
    "crop_jpeg", pa.binary(), (), "JPEG bytes",
    "Optional (runs with --store_crops): JPEG of the square person crop around the box (pipeline.perception.crops); null on skipped frames.",
)

REJECTED_COLUMNS: tuple[Column, ...] = (
    *_CLIP_COLUMNS,
    KEYPOINT_SOURCE_COLUMN,
    Column("outcome", STR, (), "", "rejected (an expected outcome of the data) or failed (an unexpected error)."),
    Column("reason", STR, (), "", "Reason code (pipeline.records.RejectReason): missing_file, not_a_file, unreadable, no_video_stream, zero_frames, too_long, timeout, missing_keypoints, corrupt_keypoints, no_person, too_small, crowded, bad_input_row, no_track_selected, all_tracks_diverged, failed."),
    Column("stage", STR, (), "", "Stage that produced the record: input, perceive, bundle_adjust, select."),
    Column("message", STR, (), "", "Human-readable detail: decoder error, bad CSV line, exception and traceback tail."),
    Column("num_frames", I32, (), "", "Decoded frames (0 if never decoded)."),
    Column("max_people", I32, (), "", "Most people at least PerceptionConfig.min_person_height tall in any single frame, the crowd rule's count (0 if unknown)."),
    Column("num_tracks", I32, (), "", "Person tracks found (0 if perception did not get that far)."),
    *_DETECTION_COLUMNS,
)

COLUMNS: dict[str, tuple[Column, ...]] = {
    "frames": FRAMES_COLUMNS,
    "tracks": TRACKS_COLUMNS,
    "rejected": REJECTED_COLUMNS,
}

# Sort keys of the rows in each shard (deterministic files).
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "frames": ("clip_id", "track_id", "frame_index"),
    "tracks": ("clip_id", "track_id"),
    "rejected": ("clip_id",),
}


@dataclass(frozen=True)
class BodyModelInfo:
    """Which body model produced the fits (written into every schema).

    Attributes:
        variant: "smpl" (the user's licensed SMPL file) or "standin" (the generated stand-in).
        gender: "neutral", "male" or "female".
        file_name: base name of the model file (no directories: paths are machine-specific).
        sha256: hex digest of the model file's bytes.
    """

    variant: str
    gender: str
    file_name: str
    sha256: str

    @classmethod
    def from_file(cls, path: str | Path, variant: str, gender: str = "neutral") -> "BodyModelInfo":
        return cls(variant=variant, gender=gender, file_name=Path(path).name, sha256=file_sha256(path))

    def to_json(self) -> dict[str, str]:
        return {"variant": self.variant, "gender": self.gender, "file_name": self.file_name, "sha256": self.sha256}


@dataclass(frozen=True)
class RunMetadata:
    """Run-level facts stored in every output schema.

    Attributes:
        body_model: the body model of the fits.
        config: JSON-able mapping of the run's configs (perception, bundle adjustment,
            selection); written verbatim as ``vid2mesh.config``.
        code_version: see :func:`code_version`.
        settings_hash: :func:`settings_hash` of the perception and bundle-adjustment
            settings ("" when not known).
    """

    body_model: BodyModelInfo
    config: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    settings_hash: str = ""


def settings_hash(settings: dict[str, Any]) -> str:
    """16 hex digits of the sha256 of ``settings`` as sorted JSON: the identity of the
    settings a clip was fitted with (perception and bundle adjustment, model files by hash)."""
    text = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def code_version() -> str:
    """``vid2mesh <version>`` plus the git commit of the source tree when it is a checkout."""
    try:
        from importlib.metadata import version

        text = f"vid2mesh {version('vid2mesh')}"
    except Exception:  # not installed (e.g. a bare source tree on a worker)
        text = "vid2mesh (not installed)"
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        text += f" git {commit}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        pass
    return text


def joint_orders() -> dict[str, list[str]]:
    """Joint-name lists of the joint axes of the array columns (name -> list of names)."""
    from models.joint_names import COCO17_NAMES, SMPL24_NAMES

    return {"coco17": list(COCO17_NAMES), "smpl24": list(SMPL24_NAMES)}


def hf_feature(column: Column) -> dict[str, Any]:
    """HuggingFace ``datasets`` feature (its ``to_dict`` form) of one column."""
    return _hf_from_arrow(column.type)


def _hf_from_arrow(dtype: pa.DataType) -> dict[str, Any]:
    if isinstance(dtype, pa.FixedSizeListType):
        return {"_type": "List", "feature": _hf_from_arrow(dtype.value_type), "length": dtype.list_size}
    if isinstance(dtype, pa.ListType):
        return {"_type": "List", "feature": _hf_from_arrow(dtype.value_type)}
    if isinstance(dtype, pa.StructType):
        return {f.name: _hf_from_arrow(f.type) for f in dtype}
    names = {F32: "float32", F64: "float64", I32: "int32", STR: "string", BOOL: "bool", pa.int64(): "int64",
             pa.binary(): "binary"}
    return {"_type": "Value", "dtype": names[dtype]}


def columns_of(dataset: str, crops: bool = False) -> tuple[Column, ...]:
    """The columns of ``dataset``; ``frames`` gains ``crop_jpeg`` when the run stores crops."""
    if dataset not in COLUMNS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    return COLUMNS[dataset] + ((CROP_COLUMN,) if crops and dataset == "frames" else ())


def hf_features(dataset: str, crops: bool = False) -> dict[str, Any]:
    """HuggingFace ``Features.to_dict()``-style mapping of a dataset's columns."""
    return {c.name: hf_feature(c) for c in columns_of(dataset, crops)}


def schema_for(dataset: str, run: RunMetadata | None = None, crops: bool = False) -> pa.Schema:
    """The arrow schema of ``dataset`` ("frames", "tracks" or "rejected") with metadata.

    Args:
        dataset: one of :data:`DATASETS`.
        run: run-level metadata; None gives the bare schema with only the schema version,
            dataset name, joint orders and HF features (what a reader needs to check).
        crops: the run stores person crops (``frames`` gets the ``crop_jpeg`` column).
    """
    columns = columns_of(dataset, crops)
    metadata = {
        KEY_SCHEMA_VERSION: SCHEMA_VERSION,
        KEY_DATASET: dataset,
        KEY_JOINT_ORDERS: json.dumps(
            {c.name: joint_orders()[c.joint_order] for c in columns if c.joint_order}
        ),
        KEY_HUGGINGFACE: json.dumps({"info": {"features": hf_features(dataset, crops)}}),
    }
    if run is not None:
        metadata[KEY_BODY_MODEL] = json.dumps(run.body_model.to_json(), sort_keys=True)
        metadata[KEY_CONFIG] = json.dumps(run.config, sort_keys=True, default=str)
        metadata[KEY_CODE_VERSION] = run.code_version
        if run.settings_hash:
            metadata[KEY_SETTINGS_HASH] = run.settings_hash
    return pa.schema([c.field() for c in columns], metadata=metadata)


def read_metadata(schema: pa.Schema) -> dict[str, Any]:
    """Decode a vid2mesh schema's key-value metadata (JSON values parsed).

    Raises:
        ValueError: the schema carries no vid2mesh metadata, or a major version this code
            cannot read.
    """
    raw = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    if KEY_SCHEMA_VERSION not in raw:
        raise ValueError("not a vid2mesh dataset: its Parquet schema has no vid2mesh.schema_version metadata")
    major = raw[KEY_SCHEMA_VERSION].split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise ValueError(
            f"dataset schema version {raw[KEY_SCHEMA_VERSION]} is not readable by this code "
            f"(schema {SCHEMA_VERSION}); use a vid2mesh release of the same major version"
        )
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in (KEY_BODY_MODEL, KEY_JOINT_ORDERS, KEY_CONFIG, KEY_HUGGINGFACE):
            out[key] = json.loads(value)
        else:
            out[key] = value
    return out


def _type_text(dtype: pa.DataType) -> str:
    if isinstance(dtype, pa.FixedSizeListType):
        inner = dtype
        dims = []
        while isinstance(inner, pa.FixedSizeListType):
            dims.append(str(inner.list_size))
            inner = inner.value_type
        return f"{inner}[{']['.join(dims)}]"
    if isinstance(dtype, pa.ListType):
        return f"list<{_type_text(dtype.value_type)}>"
    if isinstance(dtype, pa.StructType):
        return "struct<" + ", ".join(f"{f.name}: {_type_text(f.type)}" for f in dtype) + ">"
    return str(dtype)


def markdown_table(dataset: str) -> str:
    """The column table of ``dataset`` as Markdown (``docs/schema.md`` embeds it verbatim,
    :mod:`pipeline.dataset.schema_doc` generates it)."""
    return markdown_table_of(COLUMNS[dataset])


def markdown_table_of(columns: tuple[Column, ...]) -> str:
    """A Markdown table of ``columns``: name, type, shape, unit, joint order, meaning."""
    lines = ["| column | type | shape | unit | joint order | meaning |", "| --- | --- | --- | --- | --- | --- |"]
    for c in columns:
        shape = "scalar" if not c.shape else ("variable" if c.shape == (-1,) else " x ".join(map(str, c.shape)))
        lines.append(
            f"| `{c.name}` | `{_type_text(c.type)}` | {shape} | {c.unit or '-'} | {c.joint_order or '-'} | {c.description} |"
        )
    return "\n".join(lines)
