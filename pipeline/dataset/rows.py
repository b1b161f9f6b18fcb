"""Rows of the output datasets: (clip, track problems, fits, selection) -> arrow tables.

One :class:`ClipOutcome` per input clip holds that clip's rows of ``frames/``, ``tracks/``
and ``rejected/`` as arrow tables in the columns of :mod:`pipeline.dataset.schema` (no schema
metadata: the writer adds the run's). Arrays go column-wise from numpy to nested
fixed-size lists, never through Python lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from optimize.plausibility import BETAS_LIMIT, betas_absmax, implausible_fraction
from optimize.track_metrics import (
    frame_score_mm, joint_acceleration, keypoint_error_px, orientation_change, predicted_error, relative_error,
)
from pipeline.dataset import schema
from pipeline.records import ClipRef, PerceptionResult, RejectReason, TrackFit, TrackProblem
from pipeline.dataset.selection.rules import TrackSelection, inlier_mask

MAX_MESSAGE_CHARS = 4000


@dataclass(frozen=True)
class ClipOutcome:
    """Where one input clip ended, with its rows.

    Attributes:
        clip_id: the clip.
        outcome: "kept", "rejected" or "failed".
        reason: RejectReason code for rejected/failed clips, None when kept.
        stage: stage that decided ("input", "perceive", "bundle_adjust", "select").
        frames, tracks, rejected: the clip's rows of each dataset (None: no rows).
        num_tracks: person tracks fitted (or found, for perception rejects).
        num_selected_tracks: tracks that passed selection.
        num_frames_written: rows in ``frames``.
        num_inlier_frames: inlier frames among the selected tracks' frames.
        track_reasons: the ``selection_reason`` of each of the clip's track rows at commit
            (``eligible``: the selection at the end of the run decides).
        keypoint_source: the ``keypoint_source`` of the clip's rows ("" when not decided).
    """

    clip_id: str
    outcome: str
    reason: str | None
    stage: str
    frames: pa.Table | None = None
    tracks: pa.Table | None = None
    rejected: pa.Table | None = None
    num_tracks: int = 0
    num_selected_tracks: int = 0
    num_frames_written: int = 0
    num_inlier_frames: int = 0
    track_reasons: tuple[str, ...] = ()
    keypoint_source: str = ""

    def table(self, dataset: str) -> pa.Table | None:
        return {"frames": self.frames, "tracks": self.tracks, "rejected": self.rejected}[dataset]


def _bare_schema(dataset: str) -> pa.Schema:
    return pa.schema([c.field() for c in schema.COLUMNS[dataset]])


def _array(values: np.ndarray, dtype: pa.DataType) -> pa.Array:
    """Arrow array of ``dtype`` (possibly nested fixed-size lists) from an (N, ...) numpy array."""
    if isinstance(dtype, pa.FixedSizeListType):
        sizes = []
        inner = dtype
        while isinstance(inner, pa.FixedSizeListType):
            sizes.append(inner.list_size)
            inner = inner.value_type
        values = np.ascontiguousarray(values, dtype=inner.to_pandas_dtype())
        n = values.shape[0]
        if values.shape[1:] != tuple(sizes):
            raise ValueError(f"array of shape {values.shape} does not fit arrow type {dtype}")
        array: pa.Array = pa.array(values.reshape(-1), type=inner)
        for size in reversed(sizes):
            array = pa.FixedSizeListArray.from_arrays(array, size)
        assert len(array) == n
        return array
    return pa.array(values, type=dtype)


def _table(dataset: str, columns: dict[str, object], num_rows: int) -> pa.Table:
    arrays = []
    for column in schema.COLUMNS[dataset]:
        value = columns[column.name]
        if isinstance(value, pa.Array):
            arrays.append(value)
        elif isinstance(value, np.ndarray):
            arrays.append(_array(value, column.type))
        elif isinstance(value, list):
            arrays.append(pa.array(value, type=column.type))
        else:  # a scalar repeated on every row
            arrays.append(pa.array([value] * num_rows, type=column.type))
    return pa.Table.from_arrays(arrays, schema=_bare_schema(dataset))


def _clip_columns(clip: ClipRef) -> dict[str, object]:
    return {"clip_id": clip.clip_id, "label": clip.label, "split": clip.split, "source_uri": clip.uri}


def truncate_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Keep the head and the tail of a long message (tracebacks end with the error)."""
    if len(message) <= limit:
        return message
    half = limit // 2 - 10
    return f"{message[:half]}\n[...]\n{message[-half:]}"


def _init_columns(problem: TrackProblem, keep: np.ndarray) -> dict[str, np.ndarray]:
    """The tracked detection's per-frame init (pose, betas, camera), NaN on skipped frames."""
    selected = np.asarray(problem.selected)
    frames = np.arange(problem.num_frames)
    index = np.clip(selected, 0, None)
    detected = (selected >= 0)[:, None]
    out = {}
    for name, values in (("init_pose", problem.init_pose), ("init_betas", problem.init_betas),
                         ("init_camera", problem.init_camera)):
        chosen = np.asarray(values, dtype=np.float32)[frames, index]
        out[name] = np.where(detected, chosen, np.float32(np.nan))[keep]
    return out


def _per_frame(fit: TrackFit, name: str, T: int, missing: float = np.nan) -> np.ndarray:
    """(T,) float32 per-frame array ``name`` of the fit, ``missing`` when the fit does not carry it."""
    value = getattr(fit, name, None)
    if value is None or np.asarray(value).shape != (T,):
        return np.full(T, missing, np.float32)
    return np.asarray(value, dtype=np.float32)


def _count(fit: TrackFit, name: str, T: int) -> np.ndarray:
    """(T,) int32 per-frame count ``name`` of the fit, -1 (not checked) when the fit does not carry it."""
    value = getattr(fit, name, None)
    if value is None or np.asarray(value).shape != (T,):
        return np.full(T, -1, np.int32)
    return np.asarray(value, dtype=np.int32)


def _frame_score(fit: TrackFit, T: int) -> np.ndarray:
    """(T,) float32 ``fit.frame_score_mm``, or, on a fit that does not carry it, the score
    from its predicted errors and init disagreement (inf without a predicted error)."""
    if getattr(fit, "frame_score_mm", None) is not None and np.asarray(fit.frame_score_mm).shape == (T,):
        return np.asarray(fit.frame_score_mm, dtype=np.float32)
    if getattr(fit, "pred_err_mm", None) is None or np.asarray(fit.pred_err_mm).shape != (T,):
        return np.full(T, np.inf, np.float32)
    score = frame_score_mm(fit.pred_err_mm, predicted_error(fit), _per_frame(fit, "init_disagreement_mm", T))
    return score.astype(np.float32)


def frame_quality(problem: TrackProblem, fit: TrackFit) -> dict[str, np.ndarray]:
    """Per-frame quality columns of ``frames/`` (each (T,)), see :mod:`pipeline.dataset.schema`.

    The pixel error is recomputed from the fit's reprojection and the track's own detection
    when the fit does not carry it; it is NaN on frames without the track's own detection.
    """
    T = problem.num_frames
    has = np.asarray(problem.has_detection, dtype=bool)
    error_px = _per_frame(fit, "reprojection_error_px", T)
    if not np.isfinite(error_px[has]).any() and has.any():
        error_px = keypoint_error_px(fit.reprojection, problem.keypoints).astype(np.float32)
    error_px = np.where(has, error_px, np.nan).astype(np.float32)
    error_rel = _per_frame(fit, "reprojection_error_rel", T)
    if not np.isfinite(error_rel[has]).any() and has.any():
        error_rel = relative_error(error_px, np.asarray(fit.camera)[:, 0]).astype(np.float32)
    return {
        "reprojection_error": error_px,
        "reprojection_error_rel": np.where(has, error_rel, np.nan).astype(np.float32),
        "reprojection_energy": np.where(has, _per_frame(fit, "detection_energy", T), np.nan).astype(np.float32),
        "inlier": inlier_mask(problem, fit),
        "interpolated": ~has,
        "pose_nll": _per_frame(fit, "pose_nll", T),
        "joint_acceleration": joint_acceleration(fit.joints3d, problem.fps).astype(np.float32),
        "orientation_change": orientation_change(fit.pose).astype(np.float32),
        "pred_err_mm": _per_frame(fit, "pred_err_mm", T, np.inf),
        "init_disagreement_mm": np.where(has, _per_frame(fit, "init_disagreement_mm", T), np.nan).astype(np.float32),
        "frame_score_mm": _frame_score(fit, T),
        "pose_density_outliers": _count(fit, "pose_density_outliers", T),
        "joint_limit_violations": _count(fit, "joint_limit_violations", T),
    }


def frames_table(
    clip: ClipRef,
    problem: TrackProblem,
    fit: TrackFit,
    selection: TrackSelection,
    inliers_only: bool = False,
    keypoint_source: str | None = None,
) -> pa.Table:
    """``frames/`` rows of one fitted track (every frame, or its inlier frames only).

    Args:
        clip: the source clip (label, split, uri).
        problem: the track problem (frame ids, detections, boxes).
        fit: the track's fit, status "ok" (shapes (T, ...) as in :class:`TrackFit`).
        selection: the track's verdict (``track_selected`` column).
        inliers_only: keep only the inlier frames.
        keypoint_source: the clip's keypoint source (None: the problem's
            ``meta["keypoint_source"]``, "" when it has none).
    """
    if fit.status != "ok":
        raise ValueError(f"track {clip.clip_id}#{fit.track_id} has fit status {fit.status!r}; only 'ok' fits become frames")
    T = problem.num_frames
    if fit.num_frames != T:
        raise ValueError(f"track {clip.clip_id}#{fit.track_id}: fit has {fit.num_frames} frames, problem {T}")
    quality = frame_quality(problem, fit)
    keep = quality["inlier"] if inliers_only else np.ones(T, dtype=bool)
    n = int(keep.sum())
    width, height = problem.image_size
    columns = {
        **_clip_columns(clip),
        "keypoint_source": _source(problem, keypoint_source),
        "track_id": int(fit.track_id),
        "frame_index": np.asarray(problem.frame_index, dtype=np.int32)[keep],
        "frame_time": np.asarray(problem.frame_time, dtype=np.float64)[keep],
        "fps": float(problem.fps),
        "image_width": int(width),
        "image_height": int(height),
        "has_detection": np.asarray(problem.has_detection, dtype=bool)[keep],
        "box": np.asarray(problem.boxes, dtype=np.float32)[keep],
        "keypoints_2d": np.asarray(problem.keypoints, dtype=np.float32)[keep],
        "betas": np.broadcast_to(np.asarray(fit.betas, dtype=np.float32), (T, schema.NUM_BETAS))[keep],
        "pose": np.asarray(fit.pose, dtype=np.float32)[keep],
        "camera": np.asarray(fit.camera, dtype=np.float32)[keep],
        "joints_3d": np.asarray(fit.joints3d, dtype=np.float32)[keep],
        "keypoints_3d": np.asarray(fit.keypoints3d, dtype=np.float32)[keep],
        "reprojection_2d": np.asarray(fit.reprojection, dtype=np.float32)[keep],
        **{name: values[keep] for name, values in quality.items()},
        "matched_candidate": np.asarray(fit.matched_candidate, dtype=np.int32)[keep],
        "track_selected": bool(selection.selected),
        "e_norm": float(fit.e_norm),
        **_init_columns(problem, keep),
        "init_source": problem.init_source,
    }
    table = _table("frames", columns, n)
    crops = getattr(problem, "crops", None)
    if crops:  # the run stores person crops (pipeline.perception.crops)
        from pipeline.perception.crops import crop_column

        table = table.append_column(schema.CROP_COLUMN.field(), crop_column(crops, T, keep))
    return table


def track_plausibility(fit: TrackFit) -> dict[str, object]:
    """The ``tracks/`` columns of the fit's uncertainty and plausibility flags."""
    absmax = betas_absmax(fit.betas)
    T = fit.num_frames
    counts = [c for c in (_count(fit, "pose_density_outliers", T), _count(fit, "joint_limit_violations", T))
              if (c >= 0).all()]
    return {
        "pred_err_mm": predicted_error(fit),
        "betas_absmax": absmax,
        "betas_out_of_range": bool(absmax > BETAS_LIMIT),
        "implausible_frame_fraction": implausible_fraction(*counts) if fit.status == "ok" else float("nan"),
    }


def detection_columns(result: PerceptionResult | None) -> dict[str, float | int]:
    """The clip's detection columns (``schema._DETECTION_COLUMNS``) from its perception result
    (None: not perceived)."""
    if result is None:
        return {"detections_median": 0.0, "detections_max": 0, "smallest_person_px": float("nan"), "duplicate_tracks": 0}
    return {
        "detections_median": float(result.detections_median),
        "detections_max": int(result.detections_max),
        "smallest_person_px": float(result.smallest_person_px),
        "duplicate_tracks": int(result.duplicate_tracks),
    }


def _source(problem: TrackProblem, keypoint_source: str | None) -> str:
    return problem.meta.get("keypoint_source", "") if keypoint_source is None else keypoint_source


def tracks_table(clip: ClipRef, fitted: Sequence[tuple[TrackProblem, TrackFit, TrackSelection]],
                 perceived: PerceptionResult | None = None, keypoint_source: str | None = None) -> pa.Table:
    """``tracks/`` rows, one per fitted track of the clip (in track order); ``perceived``
    gives the clip's detection columns, ``keypoint_source`` as in :func:`frames_table`."""
    rows: dict[str, list] = {c.name: [] for c in schema.TRACKS_COLUMNS}
    for problem, fit, selection in sorted(fitted, key=lambda item: item[1].track_id):
        width, height = problem.image_size
        energies = {k: float(v) for k, v in fit.energies.items()}
        values = {
            **_clip_columns(clip),
            "keypoint_source": _source(problem, keypoint_source),
            "track_id": int(fit.track_id),
            "fit_status": fit.status,
            "num_frames": problem.num_frames,
            "num_detected_frames": selection.num_detected_frames,
            "num_inlier_frames": selection.num_inlier_frames,
            "first_frame": int(problem.frame_index[0]),
            "last_frame": int(problem.frame_index[-1]),
            "fps": float(problem.fps),
            "image_width": int(width),
            "image_height": int(height),
            "energy": energies.get("total", float("nan")),
            "energy_terms": [{"term": k, "value": v} for k, v in sorted(energies.items()) if k != "total"],
            "trajectory_length": float(fit.trajectory_length),
            "e_norm": float(fit.e_norm),
            "selection_score": float(selection.score),
            **track_plausibility(fit),
            "iterations": int(fit.iterations),
            "converged": bool(fit.converged),
            "betas": [float(b) for b in np.asarray(fit.betas, dtype=np.float32).reshape(-1)],
            "selected": selection.selected,
            "selection_reason": selection.reason,
            "e_norm_threshold": selection.threshold,
            "init_source": problem.init_source,
            "person_scale": float(getattr(fit, "person_scale", float("nan"))),
            "parent_track_id": int(getattr(fit, "parent_track_id", -1)),
            "split_frame": int(getattr(fit, "split_frame", -1)),
            "message": truncate_message(fit.message),
            **detection_columns(perceived),
        }
        for name, value in values.items():
            rows[name].append(value)
    return pa.Table.from_pydict(rows, schema=_bare_schema("tracks"))


def rejected_table(
    clip: ClipRef,
    outcome: str,
    reason: str,
    stage: str,
    message: str,
    num_frames: int = 0,
    max_people: int = 0,
    num_tracks: int = 0,
    perceived: PerceptionResult | None = None,
    keypoint_source: str = "",
) -> pa.Table:
    """The one ``rejected/`` row of a rejected or failed clip (``perceived``: its detection
    columns, None where perception did not run)."""
    columns = {
        **_clip_columns(clip),
        "keypoint_source": keypoint_source,
        "outcome": outcome,
        "reason": reason,
        "stage": stage,
        "message": truncate_message(message),
        "num_frames": int(num_frames),
        "max_people": int(max_people),
        "num_tracks": int(num_tracks),
        **detection_columns(perceived),
    }
    return _table("rejected", columns, 1)


def outcome_from_rejection(result: PerceptionResult, stage: str = "perceive") -> ClipOutcome:
    """The outcome of a clip that perception (or input reading) rejected.

    ``RejectReason.FAILED`` makes it a failure; every other reason a rejection.
    """
    if result.reject_reason is None:
        raise ValueError(f"clip {result.clip.clip_id} was not rejected: build its rows with commit_outcome (pipeline.dataset.selection.commit)")
    outcome = "failed" if result.reject_reason == RejectReason.FAILED else "rejected"
    table = rejected_table(
        result.clip, outcome, result.reject_reason, stage, result.message,
        result.num_frames, result.max_people, len(result.problems), result, result.keypoint_source,
    )
    return ClipOutcome(result.clip.clip_id, outcome, result.reject_reason, stage, rejected=table,
                       num_tracks=len(result.problems), keypoint_source=result.keypoint_source)


def failed_outcome(clip: ClipRef, stage: str, message: str) -> ClipOutcome:
    """The outcome of a clip whose processing raised an unexpected error."""
    table = rejected_table(clip, "failed", RejectReason.FAILED, stage, message)
    return ClipOutcome(clip.clip_id, "failed", RejectReason.FAILED, stage, rejected=table)
