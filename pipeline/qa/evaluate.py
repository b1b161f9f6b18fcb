"""Compare predicted person tracks with the synthetic corpus's exact ground truth.

``vid2mesh evaluate`` runs :func:`evaluate_corpus`; benchmarks call :func:`evaluate` with
in-memory :class:`TrackPrediction` records, so nothing here depends on the Parquet
schema except the thin loader :func:`load_predictions`.

Per clip and frame, predicted people are matched one-to-one to true people by the mean
distance between the prediction's 2D reprojection and the true 2D keypoints (Hungarian;
a pair counts when that distance is below ``match_threshold`` times the true person's box
height). On matched pairs:

* MPJPE and PA-MPJPE (mm) on the 24 SMPL joints (pelvis-aligned), and on the 17 COCO
  keypoints in 3D when predictions carry them;
* PCK of the reprojection on the true person's visible keypoints, threshold
  ``pck_threshold`` times the larger side of the true box;
* acceleration error (mm/frame^2) along each predicted track, on runs of consecutive
  frames matched to the track's main true person;

and for tracking, ID switches (a true person's matched track changes), track purity
(share of a predicted track's frames on its main true person), recall (matched / true
person-frames with at least ``min_visible_keypoints`` visible keypoints) and precision
(matched / predicted track-frames).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.qa import metrics
from pipeline.synth.motions import HELDOUT_MOTIONS
from pipeline.synth.truth import GT_SUFFIX, VISIBLE, ClipTruth

__all__ = [
    "EvaluationConfig",
    "EvaluationResult",
    "TrackPrediction",
    "evaluate",
    "evaluate_clip",
    "evaluate_corpus",
    "find_ground_truth",
    "track_mpjpe",
    "load_predictions",
    "regressor_baseline",
]

# Column names of the frames/ dataset (docs/schema.md), with accepted alternatives.
_COLUMNS = {
    "joints3d": ("joints_3d", "joints3d"),
    "keypoints3d": ("keypoints_3d", "keypoints3d"),
    "reprojection": ("reprojection_2d", "reprojection"),
}


@dataclass(frozen=True)
class TrackPrediction:
    """One predicted person track of one clip.

    Attributes:
        clip_id: the clip (``<youtube_id>_<start:06d>_<end:06d>``).
        track_id: predicted track id within the clip.
        frame_index: (T,) int decoded frame indices.
        reprojection: (T, 17, 2) COCO-17 reprojection, pixels (used for matching).
        joints3d: optional (T, 24, 3) SMPL joints, metres (body frame, no translation).
        keypoints3d: optional (T, 17, 3) COCO-17 joints in 3D, metres.
        frame_time: optional (T,) seconds from the clip start. With it, frames are
            matched to the ground truth by time: the job decodes at ``min(source rate,
            decode.target_fps)``, so its ``frame_index`` counts *decoded* frames, which
            are the truth's frames only when the clip was decoded at its own rate.
    """

    clip_id: str
    track_id: int
    frame_index: np.ndarray
    reprojection: np.ndarray
    joints3d: np.ndarray | None = None
    keypoints3d: np.ndarray | None = None
    frame_time: np.ndarray | None = None

    def __post_init__(self) -> None:
        T = np.shape(self.frame_index)[0]
        where = f"prediction {self.clip_id}#{self.track_id}"
        if np.shape(self.reprojection) != (T, 17, 2):
            raise ValueError(f"{where}: reprojection has shape {np.shape(self.reprojection)}, expected ({T}, 17, 2) pixels")
        if self.joints3d is not None and np.shape(self.joints3d) != (T, 24, 3):
            raise ValueError(f"{where}: joints3d has shape {np.shape(self.joints3d)}, expected ({T}, 24, 3) metres")
        if self.keypoints3d is not None and np.shape(self.keypoints3d) != (T, 17, 3):
            raise ValueError(f"{where}: keypoints3d has shape {np.shape(self.keypoints3d)}, expected ({T}, 17, 3) metres")
        if self.frame_time is not None and np.shape(self.frame_time) != (T,):
            raise ValueError(f"{where}: frame_time has shape {np.shape(self.frame_time)}, expected ({T},) seconds")


@dataclass(frozen=True)
class EvaluationConfig:
    """Matching and metric thresholds.

    Attributes:
        match_threshold: a prediction matches a true person when the mean reprojection
            distance is below this fraction of the true box height.
        pck_threshold: PCK threshold as a fraction of the larger side of the true box.
        min_visible_keypoints: true person-frames with fewer visible keypoints do not
            count in recall (they may still be matched).
    """

    match_threshold: float = 0.25
    pck_threshold: float = 0.1
    min_visible_keypoints: int = 4


_SUMS = ("mpjpe", "pa_mpjpe", "mpjpe_coco", "pa_mpjpe_coco", "pck", "accel_error")


@dataclass
class _Tally:
    """Sums and counts that aggregate over clips (means are taken at the end)."""

    sums: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in _SUMS})
    counts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in _SUMS})
    true_frames: int = 0
    matched_true_frames: int = 0
    predicted_frames: int = 0
    matched_predicted_frames: int = 0
    id_switches: int = 0
    pure_frames: float = 0.0
    tracks: int = 0
    clips: int = 0
    # (clip_id, track_id) -> the track's MPJPE over its matched frames, mm
    track_mpjpe: dict[tuple[str, int], float] = field(default_factory=dict)

    def add_values(self, name: str, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        values = values[np.isfinite(values)]
        self.sums[name] += float(values.sum())
        self.counts[name] += int(values.size)

    def merge(self, other: "_Tally") -> None:
        for k in _SUMS:
            self.sums[k] += other.sums[k]
            self.counts[k] += other.counts[k]
        for name in ("true_frames", "matched_true_frames", "predicted_frames", "matched_predicted_frames", "id_switches", "tracks", "clips"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.pure_frames += other.pure_frames
        self.track_mpjpe.update(other.track_mpjpe)

    def summary(self) -> dict[str, float]:
        def mean(name):
            return self.sums[name] / self.counts[name] if self.counts[name] else float("nan")

        def ratio(a, b):
            return a / b if b else float("nan")

        return {
            "mpjpe_mm": mean("mpjpe"),
            "pa_mpjpe_mm": mean("pa_mpjpe"),
            "mpjpe_coco_mm": mean("mpjpe_coco"),
            "pa_mpjpe_coco_mm": mean("pa_mpjpe_coco"),
            "accel_error_mm_per_frame2": mean("accel_error"),
            "pck": mean("pck"),
            "recall": ratio(self.matched_true_frames, self.true_frames),
            "precision": ratio(self.matched_predicted_frames, self.predicted_frames),
            "id_switches": float(self.id_switches),
            "track_purity": ratio(self.pure_frames, self.predicted_frames),
            "matched_frames": float(self.counts["pck"]),
            "true_frames": float(self.true_frames),
            "predicted_frames": float(self.predicted_frames),
            "tracks": float(self.tracks),
            "clips": float(self.clips),
        }


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics over all clips and broken down.

    Attributes:
        overall: metric name -> value (see :meth:`_Tally.summary` names; NaN when undefined).
        per_clip: clip id -> metrics.
        per_label: clip label -> metrics.
        per_motion_set: "tuning" / "heldout" -> metrics (the recorded motion split).
        unknown_clips: predicted clip ids without ground truth (ignored).
        missing_clips: ground-truth clips without any prediction (count in recall).
    """

    overall: dict[str, float]
    per_clip: dict[str, dict[str, float]]
    per_label: dict[str, dict[str, float]]
    per_motion_set: dict[str, dict[str, float]]
    unknown_clips: tuple[str, ...] = ()
    missing_clips: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON-friendly dict (NaN written as null)."""

        def clean(value):
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [clean(v) for v in value]
            if isinstance(value, float) and not math.isfinite(value):
                return None
            return value

        return clean(asdict(self))

    def format_table(self) -> str:
        """A short human-readable table (overall and per motion set)."""
        keys = ("mpjpe_mm", "pa_mpjpe_mm", "accel_error_mm_per_frame2", "pck", "recall", "precision", "id_switches", "track_purity")
        rows = [("overall", self.overall)] + sorted(self.per_motion_set.items())
        head = f"{'':10s}" + "".join(f"{k[:12]:>13s}" for k in keys)
        lines = [head]
        for name, m in rows:
            lines.append(f"{name:10s}" + "".join(f"{m.get(k, float('nan')):13.3f}" for k in keys))
        return "\n".join(lines)


def _box_sizes(truth: ClipTruth) -> tuple[np.ndarray, np.ndarray]:
    """(T, P) box height and larger side, pixels."""
    w = truth.bbox[..., 2] - truth.bbox[..., 0]
    h = truth.bbox[..., 3] - truth.bbox[..., 1]
    return np.maximum(h, 1.0), np.maximum(np.maximum(w, h), 1.0)


def truth_positions(truth: ClipTruth, track: TrackPrediction) -> np.ndarray:
    """(T_pred,) the truth frame (position along ``truth``'s frames) of each predicted frame, -1 if none.

    By time when the prediction has ``frame_time``: the truth frame nearest in time, if
    within half a truth frame interval (a clip decoded at 25 fps from a 60 fps source
    lands on every 2nd or 3rd source frame; its decoded frame 31 is source frame 74).
    Otherwise by ``frame_index`` (predictions decoded at the clip's own rate).
    """
    frames = np.asarray(track.frame_index).reshape(-1)
    truth_time = np.asarray(truth.frame_time, np.float64).reshape(-1)
    if track.frame_time is None or truth_time.size == 0:
        frame_pos = {int(f): i for i, f in enumerate(truth.frame_index)}
        return np.array([frame_pos.get(int(f), -1) for f in frames], np.int64)
    time = np.asarray(track.frame_time, np.float64).reshape(-1)
    order = np.argsort(truth_time, kind="stable")
    sorted_time = truth_time[order]
    right = np.clip(np.searchsorted(sorted_time, time), 0, sorted_time.size - 1)
    left = np.clip(right - 1, 0, sorted_time.size - 1)
    nearest = np.where(np.abs(sorted_time[left] - time) <= np.abs(sorted_time[right] - time), left, right)
    tolerance = 0.5 / float(truth.fps) + 1e-6 if truth.fps and truth.fps > 0 else 1e-6
    return np.where(np.abs(sorted_time[nearest] - time) <= tolerance, order[nearest], -1).astype(np.int64)


def evaluate_clip(truth: ClipTruth, tracks: Iterable[TrackPrediction], config: EvaluationConfig = EvaluationConfig()) -> _Tally:
    """Match one clip's predicted tracks to its ground truth and tally the metrics.

    Predicted frames are put on the truth's frames by :func:`truth_positions` (by time when
    the predictions carry ``frame_time``).
    """
    tracks = list(tracks)
    tally = _Tally(clips=1, tracks=len(tracks))
    T, P = truth.num_frames, truth.num_people
    positions = [truth_positions(truth, track) for track in tracks]
    visible = truth.visibility == VISIBLE  # (T, P, 17)
    in_image = truth.visibility > 0
    height, box_side = _box_sizes(truth)
    countable = visible.sum(axis=2) >= config.min_visible_keypoints  # (T, P)
    tally.true_frames = int(countable.sum())
    # Per frame: which (track, row) predicts something there.
    by_frame: dict[int, list[tuple[int, int]]] = {}
    for k, track in enumerate(tracks):
        for row, t in enumerate(positions[k].tolist()):
            if t >= 0:
                by_frame.setdefault(t, []).append((k, row))
    tally.predicted_frames = sum(len(v) for v in by_frame.values())
    matched_gt = [np.full(len(tr.frame_index), -1, dtype=np.int64) for tr in tracks]  # per track row
    pairs_frame, pairs_person, pairs_track = [], [], []
    for t, entries in sorted(by_frame.items()):
        candidates = np.nonzero(in_image[t].any(axis=1))[0]
        if candidates.size == 0:
            continue
        pred2d = np.stack([tracks[k].reprojection[row] for k, row in entries])
        matches = metrics.match_people(
            pred2d,
            truth.keypoints2d[t, candidates],
            in_image[t, candidates],
            max_distance=config.match_threshold * height[t, candidates],
        )
        for i, j in matches:
            k, row = entries[i]
            p = int(candidates[j])
            matched_gt[k][row] = p
            pairs_frame.append(t)
            pairs_person.append(int(truth.track_id[p]))
            pairs_track.append(int(tracks[k].track_id))
            if countable[t, p]:
                tally.matched_true_frames += 1
    tally.matched_predicted_frames = len(pairs_frame)
    if pairs_frame:
        tally.id_switches = metrics.id_switches(np.array(pairs_frame), np.array(pairs_person), np.array(pairs_track))
    # Per-pair pose metrics and per-track purity / acceleration.
    for k, track in enumerate(tracks):
        rows = np.nonzero(matched_gt[k] >= 0)[0]
        if rows.size == 0:
            continue
        t_idx = positions[k][rows]
        p_idx = matched_gt[k][rows]
        gt2d = truth.keypoints2d[t_idx, p_idx]
        tally.add_values("pck", metrics.pck(track.reprojection[rows], gt2d, config.pck_threshold * box_side[t_idx, p_idx], visible[t_idx, p_idx]))
        if track.joints3d is not None:
            pred, gt = track.joints3d[rows], truth.joints3d[t_idx, p_idx]
            errors = metrics.mpjpe(pred, gt)
            tally.add_values("mpjpe", errors)
            tally.track_mpjpe[(track.clip_id, int(track.track_id))] = float(np.nanmean(errors))
            tally.add_values("pa_mpjpe", metrics.pa_mpjpe(pred, gt))
        if track.keypoints3d is not None:
            pred, gt = track.keypoints3d[rows], truth.keypoints3d[t_idx, p_idx]
            tally.add_values("mpjpe_coco", metrics.mpjpe(pred, gt))
            tally.add_values("pa_mpjpe_coco", metrics.pa_mpjpe(pred, gt))
        main = int(np.bincount(p_idx).argmax())
        tally.pure_frames += float((p_idx == main).sum())
        if track.joints3d is not None:
            tally.add_values("accel_error", _track_accel(track, matched_gt[k], main, positions[k], truth))
    return tally


def _track_accel(track: TrackPrediction, matched: np.ndarray, person: int, positions: np.ndarray, truth: ClipTruth) -> np.ndarray:
    """Acceleration errors on triples of consecutive (decoded) frames matched to ``person``.

    ``positions``: (T_pred,) each predicted frame's truth frame (:func:`truth_positions`).
    """
    frames = np.asarray(track.frame_index).reshape(-1)
    order = np.argsort(frames, kind="stable")
    frames, matched, positions = frames[order], matched[order], np.asarray(positions)[order]
    joints = track.joints3d[order]
    ok = (matched == person) & (positions >= 0)
    if frames.size < 3:
        return np.zeros(0)
    t_idx = np.where(positions >= 0, positions, 0)
    consecutive = np.diff(frames) == 1
    valid = ok.copy()
    err = metrics.accel_error(joints, truth.joints3d[t_idx, person], valid=valid)
    # A triple also needs consecutive frame indices.
    triple_ok = consecutive[:-1] & consecutive[1:]
    return err[triple_ok]


def _split_of(label: str) -> str:
    return "heldout" if label in HELDOUT_MOTIONS else "tuning"


def evaluate(
    truths: Mapping[str, ClipTruth],
    predictions: Iterable[TrackPrediction],
    config: EvaluationConfig = EvaluationConfig(),
) -> EvaluationResult:
    """Evaluate predicted tracks against ground truth.

    Args:
        truths: clip id -> ground truth (every clip counts, predicted or not).
        predictions: tracks of any of these clips (others are listed as unknown).
        config: thresholds.
    """
    grouped: dict[str, list[TrackPrediction]] = {}
    for track in predictions:
        grouped.setdefault(track.clip_id, []).append(track)
    unknown = tuple(sorted(set(grouped) - set(truths)))
    missing = tuple(sorted(set(truths) - set(grouped)))
    overall = _Tally()
    per_label: dict[str, _Tally] = {}
    per_set: dict[str, _Tally] = {}
    per_clip: dict[str, dict[str, float]] = {}
    for clip_id in sorted(truths):
        truth = truths[clip_id]
        tally = evaluate_clip(truth, grouped.get(clip_id, []), config)
        per_clip[clip_id] = tally.summary()
        overall.merge(tally)
        per_label.setdefault(truth.label, _Tally()).merge(tally)
        per_set.setdefault(_split_of(truth.label), _Tally()).merge(tally)
    return EvaluationResult(
        overall=overall.summary(),
        per_clip=per_clip,
        per_label={k: v.summary() for k, v in sorted(per_label.items())},
        per_motion_set={k: v.summary() for k, v in sorted(per_set.items())},
        unknown_clips=unknown,
        missing_clips=missing,
    )


def track_mpjpe(
    truths: Mapping[str, ClipTruth],
    predictions: Iterable[TrackPrediction],
    config: EvaluationConfig = EvaluationConfig(),
) -> dict[tuple[str, int], float]:
    """Each predicted track's MPJPE (mm) over its frames matched to a true person (the
    matching of :func:`evaluate_clip`); tracks of unknown clips, without ``joints3d`` or
    without a matched frame are left out."""
    grouped: dict[str, list[TrackPrediction]] = {}
    for track in predictions:
        grouped.setdefault(track.clip_id, []).append(track)
    out: dict[tuple[str, int], float] = {}
    for clip_id, tracks in sorted(grouped.items()):
        if clip_id in truths:
            out.update(evaluate_clip(truths[clip_id], tracks, config).track_mpjpe)
    return out


def find_ground_truth(corpus_dir: str | os.PathLike) -> dict[str, Path]:
    """Map clip id -> ``.gt.npz`` path for every clip under a synthetic corpus folder."""
    root = Path(corpus_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"corpus folder {os.fspath(corpus_dir)!r} does not exist; generate one with vid2mesh synth")
    found = {p.name[: -len(GT_SUFFIX)]: p for p in sorted(root.rglob(f"*{GT_SUFFIX}"))}
    if not found:
        raise FileNotFoundError(f"no *{GT_SUFFIX} ground truth under {root}; is it a vid2mesh synth corpus?")
    return found


def _column(table, names: tuple[str, ...], shape: tuple[int, ...], required: bool, source: str) -> np.ndarray | None:
    import pyarrow as pa

    name = next((n for n in names if n in table.column_names), None)
    if name is None:
        if required:
            raise ValueError(f"{source}: no column {' or '.join(names)}; is this a vid2mesh frames/ dataset?")
        return None
    column = table.column(name).combine_chunks()
    if column.null_count:
        raise ValueError(f"{source}: column {name!r} has {column.null_count} null rows; rewrite the dataset")
    values = column
    while pa.types.is_list(values.type) or pa.types.is_fixed_size_list(values.type) or pa.types.is_large_list(values.type):
        values = values.flatten()
    flat = values.to_numpy(zero_copy_only=False).astype(np.float32)
    expected = len(table) * int(np.prod(shape))
    if flat.size != expected:
        raise ValueError(f"{source}: column {name!r} holds {flat.size} values, expected {len(table)} x {shape}")
    return flat.reshape(len(table), *shape)


def load_predictions(path: str | os.PathLike, inliers_only: bool = False, selected_only: bool = False,
                     filesystem=None) -> list[TrackPrediction]:
    """Read predicted tracks from a job's ``frames/`` Parquet dataset (through
    :mod:`pipeline.dataset.reader`: local, ``gs://``, any pyarrow/fsspec filesystem; the
    run's ``selection/`` joined).

    Args:
        path: the job output folder (containing ``frames/``) or the ``frames/`` folder.
        inliers_only: keep only rows with ``inlier`` True (when the column exists).
        selected_only: keep only the tracks the selection kept (default: every fitted
            track of frames/).
        filesystem: a ``pyarrow.fs`` or fsspec filesystem holding ``path``.

    Returns:
        One :class:`TrackPrediction` per (clip_id, track_id), frames sorted.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    from pipeline.dataset.reader import SelectionJoin, locate_frames, shard_of

    try:
        fs, files, output = locate_frames(path, filesystem)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"predictions {os.fspath(path)!r} not found; pass the job output folder or its frames/ folder "
                                f"({exc})") from exc
    dataset = ds.dataset(files, format="parquet", filesystem=fs)
    wanted = (["clip_id", "track_id", "frame_index", "frame_time"] + [n for names in _COLUMNS.values() for n in names]
              + ["inlier"])
    columns = [c for c in wanted if c in dataset.schema.names]
    join = SelectionJoin.load(fs, output) if output is not None else None
    if join is not None and {"clip_id", "track_id"} <= set(columns):
        table = dataset.to_table(columns=[*columns, "__filename"])
        shards = pa.array([shard_of(f) for f in table.column("__filename").to_pylist()], pa.string())
        table = join.apply(table.drop_columns(["__filename"]), shards, selected_only)
    elif selected_only and "track_selected" in dataset.schema.names:
        table = dataset.to_table(columns=columns, filter=ds.field("track_selected") == True)  # noqa: E712
    else:
        table = dataset.to_table(columns=columns)
    source = os.fspath(path)
    for name in ("clip_id", "track_id", "frame_index"):
        if name not in table.column_names:
            raise ValueError(f"{source}: no column {name!r}; is this a vid2mesh frames/ dataset?")
    if inliers_only and "inlier" in table.column_names:
        table = table.filter(table.column("inlier"))
    clip = np.asarray(table.column("clip_id").to_pylist(), dtype=object)
    track = table.column("track_id").to_numpy().astype(np.int64)
    frame = table.column("frame_index").to_numpy().astype(np.int64)
    frame_time = (table.column("frame_time").to_numpy(zero_copy_only=False).astype(np.float64)
                  if "frame_time" in table.column_names else None)
    reproj = _column(table, _COLUMNS["reprojection"], (17, 2), True, source)
    joints = _column(table, _COLUMNS["joints3d"], (24, 3), False, source)
    keypoints = _column(table, _COLUMNS["keypoints3d"], (17, 3), False, source)
    out = []
    keys = sorted(set(zip(clip.tolist(), track.tolist())))
    key_index: dict[tuple[str, int], list[int]] = {k: [] for k in keys}
    for i, key in enumerate(zip(clip.tolist(), track.tolist())):
        key_index[key].append(i)
    for key in keys:
        rows = np.array(key_index[key])
        rows = rows[np.argsort(frame[rows], kind="stable")]
        out.append(
            TrackPrediction(
                clip_id=str(key[0]),
                track_id=int(key[1]),
                frame_index=frame[rows],
                reprojection=reproj[rows],
                joints3d=None if joints is None else joints[rows],
                keypoints3d=None if keypoints is None else keypoints[rows],
                frame_time=None if frame_time is None else frame_time[rows],
            )
        )
    return out


def regressor_baseline(corpus_dir: str | os.PathLike, body_model) -> list[TrackPrediction]:
    """Tracks made of the simulated per-frame regressor estimates (``.init.npz``).

    Each true person's detections are chained by their ``synth_gt_track`` (the best-scoring
    one per frame): perfect tracking, per-frame 3D, i.e. the starting point that bundle
    adjustment has to improve on.

    Args:
        corpus_dir: synthetic corpus folder.
        body_model: a ``models.body_model.BodyModel`` (joints and keypoints of the estimates).
    """
    import torch

    out = []
    for clip_id, gt_path in find_ground_truth(corpus_dir).items():
        init_path = Path(str(gt_path)[: -len(GT_SUFFIX)] + ".init.npz")
        coco_path = Path(str(gt_path)[: -len(GT_SUFFIX)] + ".coco.json")
        if not init_path.is_file() or not coco_path.is_file():
            continue
        init = dict(np.load(init_path))
        scores = {a["id"]: a["score"] for a in json.loads(coco_path.read_text())["annotations"]}
        score = np.array([scores.get(int(i), 0.0) for i in init["annotation_id"]])
        with torch.no_grad():
            joints, keypoints = body_model.joints_and_keypoints(torch.from_numpy(init["pose"]), torch.from_numpy(init["betas"]))
        joints, keypoints = joints.double().numpy(), keypoints.double().numpy()
        cam = init["camera"].astype(np.float64)
        reproj = cam[:, None, :1] * keypoints[..., :2] + cam[:, None, 1:]
        for person in np.unique(init["synth_gt_track"]):
            if person < 0:
                continue
            idx = np.nonzero(init["synth_gt_track"] == person)[0]
            best: dict[int, int] = {}
            for d in idx:
                f = int(init["frame_index"][d])
                if f not in best or score[d] > score[best[f]]:
                    best[f] = d
            rows = np.array([best[f] for f in sorted(best)])
            out.append(
                TrackPrediction(
                    clip_id=clip_id,
                    track_id=int(person),
                    frame_index=init["frame_index"][rows].astype(np.int64),
                    reprojection=reproj[rows],
                    joints3d=joints[rows],
                    keypoints3d=keypoints[rows],
                )
            )
    return out


def evaluate_corpus(
    corpus_dir: str | os.PathLike,
    predictions: str | os.PathLike | list[TrackPrediction],
    config: EvaluationConfig = EvaluationConfig(),
    inliers_only: bool = False,
    selected_only: bool = False,
) -> EvaluationResult:
    """Evaluate a job's ``frames/`` output (or given tracks) against a synthetic corpus."""
    truths = {clip_id: ClipTruth.load(path) for clip_id, path in find_ground_truth(corpus_dir).items()}
    tracks = predictions if isinstance(predictions, list) else load_predictions(
        predictions, inliers_only=inliers_only, selected_only=selected_only)
    return evaluate(truths, tracks, config)
