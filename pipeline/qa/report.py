"""The dataset report of a run (``vid2mesh report OUTPUT_DIR`` -> ``OUTPUT_DIR/report.html``).

One self-contained HTML page (plots and thumbnails embedded as PNG data URIs, no script,
no network) that answers "can I trust this run, and what did it keep?":

* this run's counterpart of the paper's Table 3 (videos in, videos selected, frames in
  selected videos, bundle-adjustment inliers), next to the paper's Kinetics figures;
* the E_norm histogram of every fitted track with the selection threshold, its axis named
  from the run's ``BAConfig.e_norm`` (energy per frame, or per metre of trajectory);
* the borderline tracks: those nearest the threshold, kept just below and rejected just above,
  next to the kept tracks with the lowest predicted error, each with its predicted 3D error
  (``tracks.pred_err_mm``, the fit's own uncertainty) and, with ground truth, its true MPJPE;
* with ``ReportConfig.ground_truth`` (a ``vid2mesh synth`` corpus, e.g. the demo's): the
  predicted against the true per-track error (:func:`plot_predicted_error`);
* kept clips per label;
* the CDF of the per-frame reprojection error, with tau_R;
* the inlier fraction per track; bundle-adjustment iterations;
* rejections by reason and track verdicts by reason;
* thumbnails: overlays of a few kept clips (:mod:`pipeline.qa.overlay`).

Everything is read back from the run's ``tracks/``, ``frames/`` and ``rejected/`` datasets
and its ``stats.json``; the figures are recomputed from the rows, so the report also works
for a folder that several runs wrote into.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipeline.dataset import fs as vfs
from pipeline.dataset import schema
from pipeline.dataset.reader import read_clips, read_frames, read_tracks

LOGGER = logging.getLogger(__name__)

__all__ = ["PAPER_TABLE3", "ReportConfig", "RunSummary", "load_summary", "render_report", "table3", "write_report"]

REPORT_FILE = "report.html"
# Arnab et al. 2019, Table 3 (Kinetics-400).
PAPER_TABLE3 = {"videos_in": 106_589, "videos_selected": 15_046, "frames": 3_730_672, "inlier_frames": 3_045_603}
_FRAME_COLUMNS = ["clip_id", "track_id", "label", "has_detection", "reprojection_error", "inlier", "track_selected"]
_SELECTED_COLOR = "#1b7837"
_OTHER_COLOR = "#b2abd2"


@dataclass(frozen=True)
class ReportConfig:
    """What the report shows.

    Attributes:
        thumbnails: kept clips to show an overlay of (0: none).
        background: draw thumbnails on grey instead of decoding the source videos.
        smpl_model: the SMPL file of a run fitted with real SMPL (thumbnails need it).
        model_cache: the run's ``--model_cache`` (stand-in body model).
        thumbnail_scale: magnification of the thumbnails.
        check_hash: refuse a body-model file whose sha256 differs from the run's.
        ground_truth: a ``vid2mesh synth`` corpus folder the run was made from (None:
            none): the report then plots predicted against true per-track error.
    """

    thumbnails: int = 4
    background: bool = False
    smpl_model: str | None = None
    model_cache: str | None = None
    thumbnail_scale: float = 1.0
    check_hash: bool = True
    ground_truth: str | None = None


@dataclass(frozen=True)
class RunSummary:
    """The rows a report is made of (arrow tables; ``frames`` has only a few columns).

    Attributes:
        output: the run's output folder.
        tracks, frames, rejected: the datasets (empty tables when a dataset has no file).
        stats: ``stats.json`` (empty when missing).
        metadata: decoded schema metadata of the run (``pipeline.dataset.schema.read_metadata``).
    """

    output: str
    tracks: pa.Table
    frames: pa.Table
    rejected: pa.Table
    stats: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def _read_dataset(output: str, dataset: str, columns: list[str] | None = None, filesystem=None) -> pa.Table:
    fs, inner = vfs.resolve(output, filesystem)
    files = vfs.list_files(fs, vfs.join(fs, inner, dataset), ".parquet")
    target = schema.schema_for(dataset)
    if not files:
        empty = target.empty_table()
        return empty.select(columns) if columns else empty
    data = ds.dataset(files, format="parquet", filesystem=fs)
    return data.to_table(columns=columns)


def _rejected_with_selection(output: str, rejected: pa.Table, filesystem=None) -> pa.Table:
    """``rejected/`` plus a row per clip the selection rejected at the end
    (``no_track_selected``: not in ``rejected/``, which is written as clips are fitted)."""
    try:
        clips = read_clips(output, filesystem)
    except FileNotFoundError:
        return rejected
    present = set(rejected.column("clip_id").to_pylist())
    extra = [r for r in clips.to_pylist() if r["outcome"] != "kept" and r["clip_id"] not in present]
    if not extra:
        return rejected
    target = rejected.schema
    columns = {}
    for f in target:
        values = [r.get(f.name) for r in extra]
        columns[f.name] = pa.array(values if f.name in clips.column_names else [None] * len(extra), f.type)
    return pa.concat_tables([rejected, pa.table(columns, schema=target)])


def load_summary(output: str, filesystem=None) -> RunSummary:
    """Read what the report needs from a run's output folder (local, ``gs://...``, any
    pyarrow/fsspec filesystem; see :mod:`pipeline.dataset.fs`). ``tracks`` carries the
    final selection (``selection/``), ``rejected`` the clips the selection rejected too.

    Raises:
        FileNotFoundError: the folder holds none of tracks/, rejected/ or frames/.
    """
    fs, inner = vfs.resolve(output, filesystem)
    if not any(vfs.is_dir(fs, vfs.join(fs, inner, d)) for d in schema.DATASETS):
        raise FileNotFoundError(f"{output} holds no frames/, tracks/ or rejected/ folder: pass the --output folder of `vid2mesh run`")
    try:
        tracks = read_tracks(inner, filesystem=fs)
    except FileNotFoundError:
        tracks = schema.schema_for("tracks").empty_table()
    rejected = _rejected_with_selection(inner, _read_dataset(inner, "rejected", filesystem=fs), fs)
    try:
        frames = read_frames(inner, columns=_FRAME_COLUMNS, filesystem=fs)
    except FileNotFoundError:
        frames = schema.schema_for("frames").empty_table().select(_FRAME_COLUMNS)
    metadata: dict[str, Any] = {}
    for dataset in ("frames", "tracks", "rejected"):
        folder = vfs.join(fs, inner, dataset)
        common = vfs.join(fs, folder, "_common_metadata")
        candidates = [common] if vfs.is_file(fs, common) else vfs.list_files(fs, folder, ".parquet")
        if candidates:
            metadata = schema.read_metadata(pq.read_schema(candidates[0], filesystem=fs))
            break
    stats_path = vfs.join(fs, inner, "stats.json")
    stats = json.loads(vfs.read_bytes(fs, stats_path)) if vfs.is_file(fs, stats_path) else {}
    return RunSummary(output, tracks, frames, rejected, stats, metadata)


def _np(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False) if table.num_rows else np.zeros(0)


def table3(summary: RunSummary) -> dict[str, int]:
    """This run's counterpart of the paper's Table 3, from the rows.

    Returns:
        videos_in (every input clip: fitted or rejected), videos_selected (clips with a
        selected track), frames (frames of the selected tracks, first to last frame they
        were seen), inlier_frames (their bundle-adjustment inlier frames), plus
        tracks_fitted and tracks_selected.
    """
    tracks, rejected = summary.tracks, summary.rejected
    clips = set(tracks.column("clip_id").to_pylist()) | set(rejected.column("clip_id").to_pylist())
    selected = _np(tracks, "selected").astype(bool)
    kept = {c for c, s in zip(tracks.column("clip_id").to_pylist(), selected) if s}
    return {
        "videos_in": len(clips),
        "videos_selected": len(kept),
        "frames": int(_np(tracks, "num_frames")[selected].sum()) if tracks.num_rows else 0,
        "inlier_frames": int(_np(tracks, "num_inlier_frames")[selected].sum()) if tracks.num_rows else 0,
        "tracks_fitted": int(tracks.num_rows),
        "tracks_selected": int(selected.sum()),
    }


# ------------------------------------------------------------------------------ plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:
        if ax.get_ylabel() in ("tracks", "clips") or ax.get_xlabel() == "clips":
            (ax.xaxis if ax.get_xlabel() == "clips" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def _empty_plot(title: str, message: str) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return _png(fig)


def _thresholds(tracks: pa.Table) -> list[float]:
    values = _np(tracks, "e_norm_threshold")
    return sorted({float(v) for v in values if math.isfinite(v)})


E_NORM_LABELS = {
    "per_frame": "E_norm (mean bundle-adjustment energy per frame, E / T)",
    "trajectory": "E_norm (energy per metre of 3D joint trajectory)",
}


def e_norm_mode(metadata: dict[str, Any]) -> str | None:
    """The run's ``BAConfig.e_norm`` ("per_frame" or "trajectory") from its metadata, None
    when the run did not record it."""
    mode = _ba_setting(metadata, "e_norm")
    return mode if isinstance(mode, str) else None


def e_norm_label(mode: str | None) -> str:
    """Axis label of E_norm for a ``BAConfig.e_norm`` setting (None: not recorded)."""
    if mode is None:
        return "E_norm (score setting not recorded in the run's metadata)"
    return E_NORM_LABELS.get(mode, f"E_norm ({mode})")


def plot_e_norm(tracks: pa.Table, mode: str | None = None) -> bytes:
    """Histogram of E_norm over fitted tracks (selected vs not) with the threshold.

    Args:
        tracks: the tracks/ table.
        mode: the run's ``BAConfig.e_norm`` (names the axis; None: not recorded).
    """
    title = "E_norm of fitted tracks"
    ok = np.array([s == "ok" for s in tracks.column("fit_status").to_pylist()], bool) if tracks.num_rows else np.zeros(0, bool)
    e_norm = _np(tracks, "e_norm")
    finite = ok & np.isfinite(e_norm) & (e_norm > 0)
    if not finite.any():
        return _empty_plot(title, "no fitted track with a finite E_norm")
    plt = _pyplot()
    selected = _np(tracks, "selected").astype(bool)
    values = e_norm[finite]
    lo, hi = values.min(), values.max()
    bins = np.geomspace(lo / 1.05, hi * 1.05, 30) if hi > lo * 1.5 else np.linspace(lo * 0.9, hi * 1.1 + 1e-9, 20)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.hist([e_norm[finite & selected], e_norm[finite & ~selected]], bins=bins, stacked=True,
            color=[_SELECTED_COLOR, _OTHER_COLOR], label=["selected", "not selected"])
    if hi > lo * 1.5:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
    for i, threshold in enumerate(_thresholds(tracks)):
        ax.axvline(threshold, color="#d73027", linestyle="--", label="threshold" if i == 0 else None)
    ax.set_xlabel(e_norm_label(mode))
    ax.set_ylabel("tracks")
    ax.set_title(f"{title} ({int(finite.sum())})")
    ax.legend(frameon=False)
    return _png(fig)


def plot_labels(tracks: pa.Table, rejected: pa.Table) -> bytes:
    """Kept clips per label (bars), over all input clips of the label (light bars)."""
    title = "Kept clips per label"
    label_of: dict[str, str] = {}
    for table in (tracks, rejected):
        for clip, label in zip(table.column("clip_id").to_pylist(), table.column("label").to_pylist()):
            label_of[clip] = label or "(none)"
    if not label_of:
        return _empty_plot(title, "no clips")
    kept_clips = {c for c, s in zip(tracks.column("clip_id").to_pylist(), _np(tracks, "selected").astype(bool)) if s}
    total = Counter(label_of.values())
    kept = Counter(label_of[c] for c in kept_clips)
    labels = sorted(total, key=lambda lab: (-kept[lab], -total[lab], lab))[:40]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 0.8 + 0.22 * len(labels)))
    y = np.arange(len(labels))
    ax.barh(y, [total[lab] for lab in labels], color="#d9d9d9", label="input clips")
    ax.barh(y, [kept[lab] for lab in labels], color=_SELECTED_COLOR, label="kept clips")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("clips")
    ax.set_title(title + (f" (top {len(labels)} of {len(total)})" if len(total) > len(labels) else ""))
    ax.legend(frameon=False, loc="lower right")
    return _png(fig)


def plot_reprojection_cdf(frames: pa.Table, tau_r: float | None = None) -> bytes:
    """CDF of the per-frame reprojection error (pixels) of frames with the track's own detection.

    ``reprojection_error`` is a pixel distance; tau_R bounds a robust energy in the fit's
    reference pixels (``reprojection_energy``), a different unit, so it is not drawn here
    (``tau_r`` is accepted for compatibility and ignored).
    """
    del tau_r
    title = "Reprojection error per frame"
    detected = _np(frames, "has_detection").astype(bool)
    error = _np(frames, "reprojection_error").astype(np.float64)
    usable = detected & np.isfinite(error)
    if not usable.any():
        return _empty_plot(title, "no frame with a detection in frames/")
    plt = _pyplot()
    selected = _np(frames, "track_selected").astype(bool)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for mask, name, color in ((usable & selected, "selected tracks", _SELECTED_COLOR), (usable & ~selected, "other tracks", "#762a83")):
        if mask.any():
            values = np.sort(error[mask])
            ax.step(values, np.arange(1, values.size + 1) / values.size, where="post", color=color, label=f"{name} ({values.size} frames)")
    upper = np.percentile(error[usable], 99)
    ax.set_xlim(0, max(upper, 1e-6))
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("reprojection error (px, mean over keypoints vs the track's detection)")
    ax.set_ylabel("fraction of frames")
    ax.set_title(title)
    ax.legend(frameon=False, loc="lower right")
    return _png(fig)


def plot_inlier_fraction(tracks: pa.Table, min_fraction: float | None) -> bytes:
    """Histogram of inlier frames / detected frames per fitted track."""
    title = "Inlier fraction per track"
    detected = _np(tracks, "num_detected_frames").astype(np.float64)
    usable = detected > 0
    if not usable.any():
        return _empty_plot(title, "no fitted track")
    plt = _pyplot()
    fraction = np.where(usable, _np(tracks, "num_inlier_frames") / np.maximum(detected, 1), np.nan)
    selected = _np(tracks, "selected").astype(bool)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.hist([fraction[usable & selected], fraction[usable & ~selected]], bins=np.linspace(0, 1, 21), stacked=True,
            color=[_SELECTED_COLOR, _OTHER_COLOR], label=["selected", "not selected"])
    if min_fraction is not None:
        ax.axvline(min_fraction, color="#d73027", linestyle="--", label=f"min inlier fraction {min_fraction:g}")
    ax.set_xlabel("inlier frames / detected frames")
    ax.set_ylabel("tracks")
    ax.set_title(title)
    ax.legend(frameon=False, loc="upper left")
    return _png(fig)


SOLVER_NAMES = {"batched": "L-BFGS", "lm": "Levenberg-Marquardt", "summed": "L-BFGS (summed)",
                "per_track": "L-BFGS (per track)"}


def _iteration_limit(meta) -> tuple[str | None, int | None]:
    """The run's solver and its iterations limit per track over all stages (None: unknown)."""
    from optimize.config import BAConfig

    solver = _ba_setting(meta, "solver")
    solver = solver if isinstance(solver, str) else BAConfig().solver
    schedule = _ba_setting(meta, "tau_r_schedule")
    stages = len(schedule) if isinstance(schedule, (list, tuple)) else len(BAConfig().tau_r_schedule)
    key = "lm_max_iter" if solver == "lm" else "max_iter"
    per_stage = _ba_setting(meta, key)
    per_stage = per_stage if isinstance(per_stage, int) else getattr(BAConfig(), key)
    return solver, per_stage * stages


def iteration_warning(tracks: pa.Table, solver: str | None = None, cap: int | None = None) -> str | None:
    """A sentence for the report when fitted tracks stopped without converging, else None.

    Such a track's energy, E_norm and inlier flags are those of an unfinished fit, so its
    selection is too: the report says how many, and what to try.

    Args:
        tracks: the tracks/ table (``converged``, ``fit_status``, ``iterations``).
        solver: ``BAConfig.solver`` of the run (None: unknown). cap: its iteration limit.
    """
    if tracks.num_rows == 0 or "converged" not in tracks.column_names:
        return None
    converged = _np(tracks, "converged").astype(bool)
    fitted = (_np(tracks, "fit_status") == "ok") if "fit_status" in tracks.column_names \
        else np.ones(tracks.num_rows, dtype=bool)
    stopped = int((fitted & ~converged).sum())
    if stopped == 0:
        return None
    name = SOLVER_NAMES.get(solver or "", "the solver")
    limit = f" ({cap} iterations)" if cap else ""
    advice = ("try --ba_config '{\"solver\": \"lm\"}' (Levenberg-Marquardt, tens of iterations; see "
              "docs/bundle_adjustment.md for what it changes)" if solver != "lm"
              else "raise lm_max_iter in --ba_config")
    return (f"{stopped} of {int(fitted.sum())} fitted tracks stopped at {name}'s iteration limit{limit} "
            f"without converging: their energy, E_norm, inlier flags and selection are those of an "
            f"unfinished fit. To converge them, {advice}.")


def plot_iterations(tracks: pa.Table, solver: str | None = None, cap: int | None = None) -> bytes:
    """Histogram of solver iterations per track (converged vs stopped at the limit).

    Args:
        tracks: the tracks/ table (``iterations``, ``converged``).
        solver: ``BAConfig.solver`` of the run (names the axis), None if unknown.
        cap: the iteration limit per track (all stages), drawn as a line, None if unknown.
    """
    title = "Bundle-adjustment iterations"
    iterations = _np(tracks, "iterations").astype(np.float64)
    if iterations.size == 0:
        return _empty_plot(title, "no fitted track")
    plt = _pyplot()
    converged = _np(tracks, "converged").astype(bool)
    top = max(iterations.max(), 1)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.hist([iterations[converged], iterations[~converged]], bins=np.linspace(0, top + 1, 25), stacked=True,
            color=["#2166ac", "#f4a582"], label=[f"converged ({int(converged.sum())})", f"stopped at the limit ({int((~converged).sum())})"])
    if cap is not None:
        ax.axvline(cap, color="#d73027", linestyle="--", label=f"limit {cap}")
    ax.set_xlabel(f"{SOLVER_NAMES.get(solver or '', 'solver')} iterations")
    ax.set_ylabel("tracks")
    ax.set_title(f"{title} (median {np.median(iterations):.0f})")
    ax.legend(frameon=False)
    return _png(fig)


BORDERLINE_COLUMNS = ["clip_id", "track_id", "e_norm", "e_norm_threshold", "num_detected_frames",
                      "num_inlier_frames", "selection_reason", "pred_err_mm"]


def borderline_tracks(tracks: pa.Table, count: int = 5) -> tuple[list[dict], list[dict]]:
    """The fitted tracks nearest the E_norm selection threshold on each side.

    Args:
        tracks: the tracks/ table (``e_norm``, ``e_norm_threshold``, ``selected``,
            ``selection_reason``, ``fit_status``).
        count: tracks per side.

    Returns:
        (kept, rejected): up to ``count`` selected tracks with E_norm at or below their
        threshold, nearest it first, and up to ``count`` unselected tracks with E_norm
        above it, nearest it first; rows of ``BORDERLINE_COLUMNS`` plus ``ratio``
        (E_norm / threshold).
    """
    if tracks.num_rows == 0:
        return [], []
    columns = [c for c in BORDERLINE_COLUMNS if c in tracks.column_names]
    rows = [r for r in tracks.select(columns + ["selected", "fit_status"]).to_pylist()
            if r["fit_status"] == "ok" and r["e_norm"] is not None and r["e_norm_threshold"] is not None
            and math.isfinite(r["e_norm"]) and math.isfinite(r["e_norm_threshold"]) and r["e_norm_threshold"] > 0]
    for r in rows:
        r["ratio"] = r["e_norm"] / r["e_norm_threshold"]
    kept = sorted((r for r in rows if r["selected"] and r["ratio"] <= 1), key=lambda r: (-r["ratio"], r["clip_id"], r["track_id"]))
    rejected = sorted((r for r in rows if not r["selected"] and r["ratio"] > 1), key=lambda r: (r["ratio"], r["clip_id"], r["track_id"]))
    return kept[:count], rejected[:count]


def best_kept_tracks(tracks: pa.Table, count: int = 5) -> list[dict]:
    """The selected tracks with the lowest predicted error (``pred_err_mm``), rows of
    ``BORDERLINE_COLUMNS``; [] when the run has no such column."""
    if tracks.num_rows == 0 or "pred_err_mm" not in tracks.column_names:
        return []
    rows = [r for r in tracks.select(BORDERLINE_COLUMNS + ["selected"]).to_pylist()
            if r["selected"] and r["pred_err_mm"] is not None and math.isfinite(r["pred_err_mm"])]
    return sorted(rows, key=lambda r: (r["pred_err_mm"], r["clip_id"], r["track_id"]))[:count]


def _mm(value) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _borderline_section(tracks: pa.Table, mode: str | None, true_errors: dict[tuple[str, int], float] | None = None) -> str:
    kept, rejected = borderline_tracks(tracks)
    best = best_kept_tracks(tracks)
    truth = true_errors or {}
    parts = [f"<h2>Borderline tracks</h2><p class='meta'>The fitted tracks nearest the selection threshold: kept "
             f"just below it and rejected just above it, next to the kept tracks with the lowest predicted error. "
             f"{html.escape(e_norm_label(mode))}; inlier frames / detected frames; predicted: the fit's own 3D "
             "error estimate (tracks.pred_err_mm, mm; inf: undetermined)"
             + ("; true: MPJPE against the ground truth (mm)" if true_errors else "") + ".</p><div class='grid'>"]
    headers = ["track", "E_norm", "threshold", "E_norm / threshold", "inliers", "predicted mm", "true mm", "reason"]
    for title, rows in (("kept, just below the threshold", kept), ("rejected, just above the threshold", rejected),
                        ("kept, lowest predicted error", best)):
        parts.append(_table([title, *headers],
                            [[r["clip_id"], r["track_id"], f"{r['e_norm']:.4g}",
                              f"{r['e_norm_threshold']:.4g}" if r["e_norm_threshold"] is not None else "-",
                              f"{r['ratio']:.3f}" if "ratio" in r else "-",
                              f"{r['num_inlier_frames']} / {r['num_detected_frames']}",
                              _mm(r.get("pred_err_mm")) if r.get("pred_err_mm") != math.inf else "inf",
                              _mm(truth.get((r["clip_id"], r["track_id"]))),
                              r["selection_reason"] or "-"] for r in rows] or [["none"] + ["-"] * len(headers)]))
    parts.append("</div>")
    return "".join(parts)


def true_track_errors(output: str, ground_truth: str) -> dict[tuple[str, int], float]:
    """(clip_id, track_id) -> true MPJPE (mm) of every track with frames in the run's
    ``frames/``, against a ``vid2mesh synth`` corpus (:func:`pipeline.qa.evaluate.track_mpjpe`)."""
    from pipeline.qa.evaluate import find_ground_truth, load_predictions, track_mpjpe
    from pipeline.synth.truth import ClipTruth

    truths = {clip_id: ClipTruth.load(path) for clip_id, path in find_ground_truth(ground_truth).items()}
    return track_mpjpe(truths, load_predictions(output))


def plot_predicted_error(tracks: pa.Table, true_errors: dict[tuple[str, int], float]) -> bytes:
    """Predicted (``tracks.pred_err_mm``) against true per-track MPJPE, selected vs not, with Spearman's rho."""
    title = "Predicted vs true 3D error per track"
    if tracks.num_rows == 0 or "pred_err_mm" not in tracks.column_names:
        return _empty_plot(title, "the run has no pred_err_mm column")
    rows = [(r["pred_err_mm"], true_errors[(r["clip_id"], r["track_id"])], bool(r["selected"]))
            for r in tracks.select(["clip_id", "track_id", "pred_err_mm", "selected"]).to_pylist()
            if (r["clip_id"], r["track_id"]) in true_errors and r["pred_err_mm"] is not None
            and math.isfinite(r["pred_err_mm"]) and math.isfinite(true_errors[(r["clip_id"], r["track_id"])])]
    if not rows:
        return _empty_plot(title, "no track with a finite predicted and true error")
    predicted, true, selected = (np.array(v) for v in zip(*rows))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for mask, color, label in ((selected, _SELECTED_COLOR, "selected"), (~selected, _OTHER_COLOR, "not selected")):
        if mask.any():
            ax.scatter(predicted[mask], true[mask], s=18, color=color, label=label)
    top = float(max(predicted.max(), true.max())) * 1.05
    ax.plot([0, top], [0, top], color="#888888", linewidth=0.8, linestyle=":", label="true = predicted")
    if len(rows) >= 3:
        from scipy.stats import spearmanr

        title += f" (Spearman {spearmanr(predicted, true).statistic:+.2f}, {len(rows)} tracks)"
    ax.set_xlabel("predicted error, tracks.pred_err_mm (mm)")
    ax.set_ylabel("true MPJPE (mm)")
    ax.set_title(title, fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    return _png(fig)





# ------------------------------------------------------------------------------ thumbnails


def pick_thumbnail_frames(summary: RunSummary, count: int) -> list[tuple[str, int]]:
    """(clip id, decoded frame index) of up to ``count`` kept clips, one label after another
    (deterministic): the middle frame of each clip's longest selected track."""
    tracks = summary.tracks
    if count <= 0 or tracks.num_rows == 0:
        return []
    rows = [r for r in tracks.select(["clip_id", "label", "selected", "first_frame", "last_frame", "num_frames"]).to_pylist() if r["selected"]]
    best: dict[str, dict] = {}
    for r in rows:
        if r["clip_id"] not in best or r["num_frames"] > best[r["clip_id"]]["num_frames"]:
            best[r["clip_id"]] = r
    by_label: dict[str, list[dict]] = {}
    for r in sorted(best.values(), key=lambda r: r["clip_id"]):
        by_label.setdefault(r["label"], []).append(r)
    picked = []
    while len(picked) < count and any(by_label.values()):
        for label in sorted(by_label):
            if by_label[label] and len(picked) < count:
                r = by_label[label].pop(0)
                picked.append((r["clip_id"], (r["first_frame"] + r["last_frame"]) // 2))
    return picked


def render_thumbnails(summary: RunSummary, config: ReportConfig, body_model=None) -> tuple[list[tuple[str, int, bytes]], list[str]]:
    """PNG overlays of the picked frames, and notes on what could not be drawn.

    Args:
        body_model: a loaded ``BodyModel``; default: the run's, from its metadata.
    """
    picks = pick_thumbnail_frames(summary, config.thumbnails)
    if not picks:
        return [], ([] if config.thumbnails <= 0 else ["no kept clip to show"])
    from pipeline.qa.overlay import OverlayConfig, body_model_for_dataset, overlay_frames

    if body_model is None:
        try:
            body_model = body_model_for_dataset(summary.metadata, config.smpl_model, config.model_cache, config.check_hash)
        except (ValueError, FileNotFoundError) as exc:
            return [], [f"thumbnails skipped: {exc}"]
    import cv2

    out, notes = [], []
    overlay = OverlayConfig(scale=config.thumbnail_scale)
    for clip_id, frame in picks:
        try:
            rendered = list(overlay_frames(summary.output, clip_id, body_model, overlay, frames=[frame], background=config.background))
        except (ValueError, FileNotFoundError) as exc:
            if config.background:
                notes.append(f"{clip_id}: {exc}")
                continue
            notes.append(f"{clip_id}: source video unavailable ({exc}); drawn on grey")
            rendered = list(overlay_frames(summary.output, clip_id, body_model, overlay, frames=[frame], background=True))
        for index, image, _ in rendered:
            ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            if ok:
                out.append((clip_id, index, data.tobytes()))
    return out, notes


# ------------------------------------------------------------------------------ page


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f} %" if whole else "-"


def _config_value(metadata: dict[str, Any], *path: str) -> Any:
    value: Any = metadata.get(schema.KEY_CONFIG) or {}
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _ba_setting(metadata: dict[str, Any], key: str) -> Any:
    """A ``BAConfig`` field of the run: the job records the stage's description, with the
    config under ``bundle_adjust.config``; older or hand-made metadata has it flat under
    ``bundle_adjust`` (None: not recorded)."""
    value = _config_value(metadata, "bundle_adjust", "config", key)
    return value if value is not None else _config_value(metadata, "bundle_adjust", key)


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1180px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:1em} .grid figure{margin:0} .grid img{max-width:560px;border:1px solid #eee}
.thumbs img{max-width:360px;border:1px solid #ccc} figcaption{font-size:.85em;color:#555}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:.5em 1em} .meta{color:#555;font-size:.9em}
"""


def render_report(summary: RunSummary, config: ReportConfig = ReportConfig(), body_model=None) -> str:
    """The report page of a run as an HTML string (``body_model``: see :func:`render_thumbnails`)."""
    meta = summary.metadata
    counts = table3(summary)
    body = meta.get(schema.KEY_BODY_MODEL) or {}
    tau_r = _ba_setting(meta, "tau_r_px")
    tau_r = float(tau_r) if isinstance(tau_r, (int, float)) else 50.0
    min_fraction = _config_value(meta, "selection", "min_inlier_fraction")
    solver, iteration_cap = _iteration_limit(meta)
    e_mode = e_norm_mode(meta)
    parts = [f"<h1>vid2mesh dataset report</h1><p class='meta'>{html.escape(summary.output if '://' in summary.output else os.path.abspath(summary.output))}<br>"
             f"schema {html.escape(str(meta.get(schema.KEY_SCHEMA_VERSION, '?')))} &middot; "
             f"{html.escape(str(meta.get(schema.KEY_CODE_VERSION, '')))} &middot; body model "
             f"{html.escape(str(body.get('variant', '?')))} ({html.escape(str(body.get('gender', '')))}, "
             f"{html.escape(str(body.get('file_name', '')))})</p>"]
    if body.get("variant") == "standin":
        parts.append("<p class='warn'>Fitted with the generated <b>stand-in</b> body model, not SMPL: "
                     "for testing the pipeline only, not for training.</p>")
    paper = PAPER_TABLE3
    parts.append("<h2>Table 3 of this run</h2>")
    parts.append(_table(
        ["", "this run", "", "paper (Kinetics-400)", ""],
        [
            ["Total videos", counts["videos_in"], "", f"{paper['videos_in']:,}", ""],
            ["Selected videos", counts["videos_selected"], _pct(counts["videos_selected"], counts["videos_in"]),
             f"{paper['videos_selected']:,}", _pct(paper["videos_selected"], paper["videos_in"])],
            ["Total frames in selected videos", counts["frames"], "", f"{paper['frames']:,}", ""],
            ["BA inliers", counts["inlier_frames"], _pct(counts["inlier_frames"], counts["frames"]),
             f"{paper['inlier_frames']:,}", _pct(paper["inlier_frames"], paper["frames"])],
        ],
    ))
    parts.append(f"<p class='meta'>Frames are those of the selected person tracks, first to last frame seen "
                 f"({counts['tracks_selected']} of {counts['tracks_fitted']} fitted tracks selected); inliers have the track's own "
                 f"detection and a reprojection energy below tau_R = {tau_r:g} (reference px: pixels of a person "
                 "rescaled to BAConfig.reference_height_px). The paper selected whole videos by E_norm; "
                 "vid2mesh selects every person track.</p>")
    stats = summary.stats
    if stats:
        mismatch = stats.get("clips") not in (None, counts["videos_in"]) or stats.get("clips_kept") not in (None, counts["videos_selected"])
        parts.append(_table(["stats.json", "value"], [
            ["clips in", stats.get("clips", "-")], ["kept", stats.get("clips_kept", "-")],
            ["rejected", stats.get("clips_rejected", "-")], ["failed", stats.get("clips_failed", "-")],
            ["frames rows", stats.get("frames_written", "-")], ["shards", stats.get("shards", "-")],
        ]))
        if mismatch:
            parts.append("<p class='warn'>stats.json disagrees with the rows (a run still writing, or an interrupted one).</p>")
    parts.append("<h2>Quality</h2><div class='grid'>")
    plots = [
        (plot_e_norm(summary.tracks, e_mode), "E_norm histogram with the selection threshold"),
        (plot_reprojection_cdf(summary.frames, tau_r), "Reprojection-error CDF of frames/ rows"),
        (plot_inlier_fraction(summary.tracks, float(min_fraction) if isinstance(min_fraction, (int, float)) else None),
         "Inlier fraction per fitted track"),
        (plot_iterations(summary.tracks, solver, iteration_cap),
         f"{SOLVER_NAMES.get(solver or '', 'Solver')} iterations per track (all continuation stages)"),
        (plot_labels(summary.tracks, summary.rejected), "Kept clips per label"),
    ]
    true_errors = None
    if config.ground_truth:
        true_errors = true_track_errors(summary.output, config.ground_truth)
        plots.append((plot_predicted_error(summary.tracks, true_errors),
                      "Predicted (the fit's own uncertainty) vs true per-track 3D error, against the ground truth"))
    parts += [f"<figure>{_img(png, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>" for png, caption in plots]
    parts.append("</div>")
    unconverged = iteration_warning(summary.tracks, solver, iteration_cap)
    if unconverged:
        parts.append(f"<p class='warn'>{html.escape(unconverged)}</p>")
    parts.append(_borderline_section(summary.tracks, e_mode, true_errors))
    reasons = Counter(zip(summary.rejected.column("outcome").to_pylist(), summary.rejected.column("reason").to_pylist()))
    verdicts = Counter(summary.tracks.column("selection_reason").to_pylist())
    parts.append("<h2>Where the clips went</h2><div class='grid'>")
    parts.append(_table(["rejected / failed clips", "reason", "clips"],
                        [[o, r, n] for (o, r), n in sorted(reasons.items())] or [["-", "-", 0]]))
    parts.append(_table(["fitted tracks by verdict", "tracks"], sorted(verdicts.items()) or [["-", 0]]))
    parts.append("</div>")
    if config.thumbnails > 0:
        thumbs, notes = render_thumbnails(summary, config, body_model)
        parts.append("<h2>Thumbnails</h2><p class='meta'>Fitted mesh (one colour per track), fitted skeleton and "
                     "detected keypoints (white) over the source frame; a label says \"no detection\" on a frame "
                     "where the track has no detection and \"outlier\" on a detected frame whose reprojection "
                     "energy is above tau_R; regenerate any clip with "
                     "<code>vid2mesh render OUTPUT_DIR --clip CLIP_ID</code>.</p><div class='grid thumbs'>")
        parts += [f"<figure>{_img(png, clip)}<figcaption>{html.escape(clip)} frame {index}</figcaption></figure>"
                  for clip, index, png in thumbs]
        parts.append("</div>")
        parts += [f"<p class='meta'>{html.escape(n)}</p>" for n in notes]
    config_json = meta.get(schema.KEY_CONFIG)
    if config_json:
        parts.append("<h2>Run configuration</h2><pre>" + html.escape(json.dumps(config_json, indent=1, sort_keys=True)[:20000]) + "</pre>")
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>vid2mesh report</title><style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n"


def write_report(output: str, config: ReportConfig = ReportConfig(), path: str | None = None, body_model=None) -> str:
    """Write ``OUTPUT_DIR/report.html`` (or ``path``); returns the path written."""
    summary = load_summary(output)
    page = render_report(summary, config, body_model)
    fs, inner = vfs.resolve(path or output)
    target = inner if path else vfs.join(fs, inner, REPORT_FILE)
    vfs.write_bytes(fs, target, page.encode("utf-8"))
    target = path or (target if vfs.is_local(fs) else f"{output.rstrip('/')}/{REPORT_FILE}")
    LOGGER.info("wrote %s (%d KB)", target, len(page) // 1024)
    return target
