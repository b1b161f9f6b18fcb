"""Small vid2mesh output folders for the reader, overlay, report and HF tests.

The rows go through the job's own code path (``pipeline.dataset.selection.commit.commit_outcome``
/ ``pipeline.dataset.rows.outcome_from_rejection``, ``pipeline.dataset.writer.write_shard``,
``pipeline.dataset.selection.table.select_output``, ``pipeline.dataset.card.write_card``) from
generated track problems and fits, so no Beam job is needed. Arrays are plausible
(a skeleton-shaped weak-perspective projection, per-frame errors around a few pixels with
some outlier frames) but not a body-model fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset import card, rows, schema, writer
from pipeline.dataset.rows import ClipOutcome
from pipeline.dataset.selection.commit import commit_outcome
from pipeline.dataset.selection.rules import SelectionConfig
from pipeline.dataset.selection.table import SelectionSummary, select_output
from pipeline.perception.crops import CropConfig, crop_person, encode_crop
from pipeline.records import ClipRef, PerceptionResult, RejectReason, TrackFit, TrackProblem

LABELS = ("dancing", "jumping", "running", "waving")
REJECT_REASONS = (RejectReason.NO_PERSON, RejectReason.CROWDED, RejectReason.UNREADABLE, RejectReason.FAILED)


@dataclass(frozen=True)
class BuiltRun:
    """What :func:`build_run` wrote."""

    output: str
    run: schema.RunMetadata
    clip_ids: tuple[str, ...]
    stats: dict = field(default_factory=dict)


def _problem(clip: ClipRef, track_id: int, T: int, rng: np.random.Generator, size=(320, 240), fps=25.0) -> TrackProblem:
    width, height = size
    base = np.array([width * (0.3 + 0.4 * rng.random()), height * 0.5])
    t = np.arange(T)
    centre = base + np.stack([8 * np.sin(t / 6.0 + track_id), 3 * np.cos(t / 5.0)], 1)
    offsets = rng.normal(0, 25, (17, 2)) * np.array([0.6, 1.6])
    keypoints = np.concatenate([centre[:, None, :] + offsets[None], np.full((T, 17, 1), 0.9)], axis=2).astype(np.float32)
    selected = np.zeros(T, np.int32)
    skipped = rng.random(T) < 0.05
    selected[skipped] = -1
    keypoints[skipped, :, 2] = 0
    boxes = np.concatenate([keypoints[..., :2].min(1), keypoints[..., :2].max(1)], 1).astype(np.float32)
    boxes[skipped] = np.nan
    pose = np.zeros((T, 1, 72), np.float32)
    pose[..., 0] = np.pi
    return TrackProblem(
        clip_id=clip.clip_id, track_id=track_id, image_size=size, fps=fps,
        frame_index=t.astype(np.int32), frame_time=t / fps, selected=selected, keypoints=keypoints,
        boxes=boxes, candidates=keypoints[:, None].copy(), candidate_mask=~skipped[:, None],
        init_pose=pose, init_betas=np.zeros((T, 1, 10), np.float32),
        init_camera=np.tile(np.array([150.0, base[0], base[1]], np.float32), (T, 1, 1)),
        meta={"label": clip.label},
    )


def _fit(problem: TrackProblem, e_norm: float, outlier_rate: float, rng: np.random.Generator) -> TrackFit:
    T = problem.num_frames
    joints = rng.normal(0, 0.3, (24, 3)).astype(np.float32)
    joints3d = joints[None] + np.cumsum(rng.normal(0, 0.01, (T, 24, 3)), 0).astype(np.float32)
    kp3d = joints3d[:, :17].copy()
    camera = np.tile(problem.init_camera[:, 0], (1, 1)).astype(np.float32)
    reprojection = problem.keypoints[..., :2] + rng.normal(0, 2.0, (T, 17, 2)).astype(np.float32)
    error = rng.gamma(2.0, 8.0, T).astype(np.float32)
    outliers = rng.random(T) < outlier_rate
    error[outliers] += 60
    detected = problem.has_detection
    inlier = detected & (error < 50)
    length = float(np.linalg.norm(np.diff(joints3d, axis=0), axis=-1).sum())
    pose = np.tile(problem.init_pose[:, 0], (1, 1)) + rng.normal(0, 0.1, (T, 72)).astype(np.float32)
    return TrackFit(
        clip_id=problem.clip_id, track_id=problem.track_id, status="ok",
        betas=rng.normal(0, 0.5, 10).astype(np.float32), pose=pose.astype(np.float32), camera=camera,
        joints3d=joints3d, keypoints3d=kp3d, reprojection=reprojection.astype(np.float32), frame_error=error,
        matched_candidate=np.where(detected, 0, -1).astype(np.int32), inlier=inlier,
        frame_energies={"reprojection": error},
        energies={"total": e_norm * length, "reprojection": 0.6 * e_norm * length, "temporal": 0.1 * e_norm * length,
                  "prior": 0.3 * e_norm * length},
        trajectory_length=length, e_norm=float(e_norm), iterations=int(rng.integers(20, 200)),
        converged=bool(rng.random() < 0.9),
        # a predicted error that follows the frame's error (no extra draw: the stream stays as it was)
        pred_err_mm=np.where(detected, 20.0 + error, np.inf).astype(np.float32),
    )


def build_run(
    output: str,
    num_clips: int = 12,
    num_rejected: int = 3,
    seed: int = 0,
    frames_per_track: tuple[int, int] = (20, 60),
    max_tracks: int = 2,
    row_group_size: int = 64,
    clips_per_shard: int = 4,
    frames_mode: str = "eligible",
    e_norm_threshold: float = 25.0,
    e_norm_median: float = 20.0,
    store_crops: bool = False,
    crop_config: CropConfig = CropConfig(size=32),
) -> BuiltRun:
    """Write frames/ tracks/ rejected/, manifests, README.md and stats.json under ``output``.

    Args:
        num_clips: clips that reach bundle adjustment (kept or rejected by selection).
        num_rejected: clips rejected or failed before bundle adjustment.
        frames_per_track: (min, max) frames of a track.
        row_group_size: rows per Parquet row group (small: many units for the reader).
        clips_per_shard: clips per shard file.
        frames_mode: "eligible", "inliers" or "all" (``--frames``).
        e_norm_threshold: the run's selection threshold.
        e_norm_median: median of the tracks' (log-normal) E_norm.
        store_crops: write the ``crop_jpeg`` column (real JPEG crops of a generated frame),
            as ``--store_crops`` runs do.
    """
    rng = np.random.default_rng(seed)
    info = schema.BodyModelInfo("standin", "neutral", "vid2mesh_standin_neutral.pkl", "0" * 64)
    run = schema.RunMetadata(info, {"bundle_adjust": {"tau_r_px": 50.0}, "selection": {"mode": "threshold",
                             "e_norm_threshold": e_norm_threshold}, "frames": frames_mode}, "vid2mesh test")
    config = SelectionConfig(mode="threshold", score="e_norm", e_norm_threshold=e_norm_threshold, min_frames=8)
    outcomes = []
    background = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    for c in range(num_clips):
        label = LABELS[c % len(LABELS)]
        clip = ClipRef(f"yt{c:04d}_000010_000020", f"/corpus/train/{label}/yt{c:04d}_000010_000020.mp4", label, "train" if c % 3 else "val")
        fitted = []
        for track_id in range(1 + int(rng.integers(0, max_tracks))):
            T = int(rng.integers(*frames_per_track))
            problem = _problem(clip, track_id, T, rng)
            if store_crops:
                crops = tuple(
                    b"" if s < 0 else encode_crop(crop_person(background, box, crop_config), crop_config.quality)
                    for s, box in zip(problem.selected, problem.boxes)
                )
                problem = problem.replace(crops=crops)
            e_norm = float(np.exp(rng.normal(np.log(e_norm_median), 0.6)))
            fitted.append((problem, _fit(problem, e_norm, 0.08, rng)))
        header = PerceptionResult(clip, tuple(p for p, _ in fitted), num_frames=60, image_size=(320, 240), fps=25.0, max_people=len(fitted))
        outcomes.append(commit_outcome(header, fitted, config, frames_mode))
    for r in range(num_rejected):
        clip = ClipRef(f"bad{r:03d}_000000_000010", f"/corpus/train/waving/bad{r:03d}.mp4", "waving", "train")
        reason = REJECT_REASONS[r % len(REJECT_REASONS)]
        outcomes.append(rows.outcome_from_rejection(PerceptionResult(clip, reject_reason=reason, message=f"generated {reason}")))
    config_w = writer.WriterConfig(output, row_group_size=row_group_size, store_crops=store_crops)
    shards = [outcomes[start:start + clips_per_shard] for start in range(0, len(outcomes), clips_per_shard)]
    selection = commit_and_select(output, shards, config, run, config_w)
    stats = card.write_card(output, run, extra={"e_norm_threshold": selection.threshold})
    return BuiltRun(output, run, tuple(o.clip_id for o in outcomes), stats)


def build_run_from_truth(
    output: str,
    video: str,
    body_model,
    e_norms: tuple[float, ...] = (8.0, 14.0, 20.0, 26.0),
    init_noise: float | None = None,
    seed: int = 0,
) -> BuiltRun:
    """A run whose fits are the exact ground truth of a synthetic clip (``<stem>.gt.npz``).

    Every person becomes a track over the frames where they are seen; the fit is the
    true pose, shape and camera, so an overlay must cover the rendered people exactly.

    Args:
        video: the clip's ``.mp4`` (its ``.gt.npz`` sits next to it).
        body_model: the body model the corpus was rendered with.
        e_norms: E_norm of track p (cycled).
        init_noise: when given, the per-frame init (``init_pose`` column) is the truth plus
            this much Gaussian pose noise (radians); otherwise the init equals the truth.
    """
    import torch

    from pipeline.synth.truth import ClipTruth

    truth = ClipTruth.load(video[: -len(".mp4")] + ".gt.npz")
    rng = np.random.default_rng(seed)
    clip = ClipRef(truth.clip_id, video, truth.label, truth.split)
    info = schema.BodyModelInfo("standin", "neutral", "vid2mesh_standin_neutral.pkl", "0" * 64)
    run = schema.RunMetadata(info, {"bundle_adjust": {"tau_r_px": 50.0}}, "vid2mesh test")
    fitted = []
    for p in range(truth.num_people):
        seen = np.nonzero(truth.in_view[:, p])[0]
        if seen.size < 2:
            continue
        T = seen.size
        kp = np.concatenate([truth.keypoints2d[seen, p], (truth.visibility[seen, p] == 2)[..., None] * 0.9], -1).astype(np.float32)
        pose, camera = truth.pose[seen, p], truth.camera[seen, p]
        betas = np.broadcast_to(truth.betas[p], (T, 10))
        init_pose = pose if init_noise is None else pose + rng.normal(0, init_noise, pose.shape).astype(np.float32)
        with torch.no_grad():
            joints, keypoints3d = body_model.joints_and_keypoints(torch.as_tensor(pose), torch.as_tensor(betas.copy()))
        problem = TrackProblem(
            clip_id=clip.clip_id, track_id=p, image_size=truth.image_size, fps=truth.fps,
            frame_index=truth.frame_index[seen].astype(np.int32), frame_time=truth.frame_time[seen],
            selected=np.zeros(T, np.int32), keypoints=kp, boxes=truth.bbox[seen, p].astype(np.float32),
            candidates=kp[:, None].copy(), candidate_mask=np.ones((T, 1), bool),
            init_pose=init_pose[:, None].astype(np.float32), init_betas=betas[:, None].astype(np.float32),
            init_camera=camera[:, None].astype(np.float32),
        )
        e_norm = e_norms[p % len(e_norms)]
        fit = TrackFit(
            clip_id=clip.clip_id, track_id=p, status="ok", betas=truth.betas[p].astype(np.float32),
            pose=pose.astype(np.float32), camera=camera.astype(np.float32), joints3d=joints.numpy(),
            keypoints3d=keypoints3d.numpy(), reprojection=truth.keypoints2d[seen, p].astype(np.float32),
            frame_error=np.full(T, 3.0, np.float32), matched_candidate=np.zeros(T, np.int32), inlier=np.ones(T, bool),
            frame_energies={}, energies={"total": e_norm}, trajectory_length=1.0, e_norm=e_norm, iterations=50, converged=True,
            pred_err_mm=np.full(T, 20.0 + 10.0 * p, np.float32),
        )
        fitted.append((problem, fit))
    header = PerceptionResult(clip, tuple(p for p, _ in fitted), num_frames=truth.num_frames,
                              image_size=truth.image_size, fps=truth.fps, max_people=truth.num_people)
    config = SelectionConfig(mode="threshold", score="e_norm", e_norm_threshold=100.0, min_frames=2)
    commit_and_select(output, [[commit_outcome(header, fitted, config)]], config, run)
    stats = card.write_card(output, run)
    return BuiltRun(output, run, (clip.clip_id,), stats)


def commit_and_select(
    output: str,
    shards: Sequence[Sequence[ClipOutcome]],
    config: SelectionConfig,
    run: schema.RunMetadata,
    writer_config: writer.WriterConfig | None = None,
) -> SelectionSummary:
    """Commit each group of clip outcomes as a shard of ``output``, then run the selection
    over the output, as the job does: the verdicts are in ``selection/`` and the summary.

    Args:
        output: the output folder.
        shards: the clips of each shard (``commit_outcome`` / ``outcome_from_rejection`` rows).
        config: selection settings (the same the rows were committed with).
        run: the run's metadata (schema metadata of every file).
        writer_config: Parquet settings (default: :class:`WriterConfig` of ``output``).
    """
    writer_config = writer_config or writer.WriterConfig(output)
    writer.write_common_metadata(writer_config, run)
    for outcomes in shards:
        writer.write_shard(outcomes, writer_config, run)
    return select_output(output, config)


def read_with_verdicts(output: str, dataset: str) -> pa.Table:
    """Every row of ``frames/`` or ``tracks/`` with its track's final verdict from
    ``selection/tracks.parquet`` in ``track_selected`` / ``selected`` (the selection also writes
    it into the stored column), in the rows' own order."""
    table = pq.ParquetDataset(f"{output}/{dataset}").read()
    verdicts = pq.read_table(f"{output}/selection/tracks.parquet", columns=["clip_id", "track_id", "selected"]).to_pylist()
    selected = {(v["clip_id"], v["track_id"]): v["selected"] for v in verdicts}
    keys = zip(table.column("clip_id").to_pylist(), table.column("track_id").to_pylist())
    column = "track_selected" if dataset == "frames" else "selected"
    return table.set_column(table.schema.get_field_index(column), column, pa.array([selected[k] for k in keys], pa.bool_()))


def drop_init_columns(output: str) -> None:
    """Rewrite ``output``'s frames/ shards without the ``init_*`` columns, as schema 1.0.0
    runs (before the per-frame init was stored) wrote them."""
    import glob

    for path in glob.glob(f"{output}/frames/*.parquet"):
        table = pq.read_table(path)
        table = table.drop_columns([c for c in ("init_pose", "init_betas", "init_camera") if c in table.column_names])
        pq.write_table(table.replace_schema_metadata(pq.read_schema(path).metadata), path, compression="zstd")
