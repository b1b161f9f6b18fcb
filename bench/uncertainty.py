"""Does the fit's own uncertainty rank its true 3D error? Calibration and cost of ``pred_err_mm``.

Two track generators, each reported on its own:

* ``synth``: ``pipeline.synth.tracks.make_tracks`` on the tuning motions (the generator the
  bundle-adjustment weights were tuned on). ``--fit`` fits the single calibration factor
  ``optimize.uncertainty.PRED_ERR_CALIBRATION`` here and only here: the median over frames
  of true MPJPE / uncalibrated predicted error.
* ``selection``: ``bench.selection.make_selection_tracks`` (its own camera, sizes, noise
  kinds and identity switches; read only, never tuned on).

Every track is fitted with the default :class:`~optimize.config.BAConfig` (pieces of split
tracks are tracks of their own). Printed per generator: Spearman(predicted, true MPJPE) per
frame (frames with a finite prediction) and per track (``optimize.track_metrics.predicted_error``
against the mean MPJPE over the piece's frames, undetermined tracks ranked last), the same
for E / T and for the covariance without its residual scale sqrt(E / T) for comparison, the mean true / predicted ratio (the calibration away from the
tuning generator), and the uncertainty's process CPU time as a fraction of the fit's (the
fit's own time excludes it; run with ``--threads 1`` for a CPU-time figure).

    python -m bench.uncertainty [--quick] [--fit] [--tracks N] [--threads 1]

The last output line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from contextlib import contextmanager

import numpy as np
import torch

import optimize.bundle_adjust as bundle_adjust_module
from optimize.config import BAConfig
from optimize.track_metrics import per_frame_energy, predicted_error
from optimize.uncertainty import PRED_ERR_CALIBRATION
from pipeline.dataset.selection.rules import expand_pieces
from pipeline.qa.metrics import mpjpe


def rank_correlation(a, b) -> float:
    """Spearman's rho over pairs with a non-NaN value (inf ranks last), NaN under 3 pairs."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = ~np.isnan(a) & ~np.isnan(b)
    if keep.sum() < 3:
        return math.nan
    return float(spearmanr(a[keep], b[keep]).statistic)


@contextmanager
def timed_uncertainty(spent: list[float]):
    """Adds the process CPU time of each ``fit_uncertainty`` call of ``bundle_adjust`` to spent[0]."""
    original = bundle_adjust_module.fit_uncertainty

    def timed(*args, **kwargs):
        start = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += time.process_time() - start

    bundle_adjust_module.fit_uncertainty = timed
    try:
        yield
    finally:
        bundle_adjust_module.fit_uncertainty = original


def synth_tracks(body_model, num: int, frames: int, seed: int):
    """(problem, gt_joints (T, 24, 3)) of the tuning generator."""
    from pipeline.synth.tracks import make_tracks

    return [(t.problem, t.gt_joints) for t in make_tracks(body_model, "tuning", num, frames, seed=seed)]


def selection_tracks(body_model, num: int, frames: tuple[int, int], seed: int):
    """(problem, gt_joints) of bench.selection's generator."""
    from bench.selection import make_selection_tracks

    return [(t.problem, t.gt_joints) for t in make_selection_tracks(body_model, num, frames, seed)]


def evaluate(tracks, body_model, prior, config: BAConfig) -> dict:
    """Fit the tracks and compare the predicted error with the true one."""
    spent = [0.0]
    start = time.process_time()
    with timed_uncertainty(spent):
        fits = bundle_adjust_module.bundle_adjust([p for p, _ in tracks], body_model, prior, config)
    total = time.process_time() - start
    frame_pred, frame_true, track_pred, track_true, track_energy = [], [], [], [], []
    frame_unscaled, track_unscaled = [], []  # without the residual scale sqrt(E / T)
    for (problem, gt), fit in zip(tracks, fits):
        for _, piece in expand_pieces(problem, fit):
            if piece.status != "ok":
                continue
            truth = mpjpe(piece.joints3d.astype(np.float64), gt[piece.piece_start : piece.piece_start + piece.num_frames])
            finite = np.isfinite(piece.pred_err_mm)
            frame_pred.extend(piece.pred_err_mm[finite].tolist())
            frame_true.extend(truth[finite].tolist())
            track_pred.append(predicted_error(piece))
            track_true.append(float(np.mean(truth)))
            track_energy.append(per_frame_energy(piece.energies.get("total", math.inf), piece.num_frames))
            unscaled = piece.pred_err_mm[finite] / math.sqrt(max(track_energy[-1], 1e-12))
            frame_unscaled.extend(unscaled.tolist())
            track_unscaled.append(float(unscaled.mean()) if unscaled.size else math.inf)
    frame_pred, frame_true = np.asarray(frame_pred), np.asarray(frame_true)
    raw = frame_pred / PRED_ERR_CALIBRATION
    return {
        "tracks": len(track_pred),
        "frames": int(frame_pred.size),
        "spearman_frame": rank_correlation(frame_pred, frame_true),
        "spearman_track": rank_correlation(track_pred, track_true),
        "spearman_track_energy_per_frame": rank_correlation(track_energy, track_true),
        "spearman_frame_unscaled": rank_correlation(frame_unscaled, frame_true),
        "spearman_track_unscaled": rank_correlation(track_unscaled, track_true),
        "undetermined_tracks": int(sum(not math.isfinite(v) for v in track_pred)),
        "true_mpjpe_mm": float(np.mean(track_true)) if track_true else math.nan,
        "predicted_mm": float(np.mean(frame_pred)) if frame_pred.size else math.nan,
        "true_over_predicted": float(np.mean(frame_true) / np.mean(frame_pred)) if frame_pred.size else math.nan,
        "calibration_fit": float(np.median(frame_true / raw)) if raw.size else math.nan,
        "fit_cpu_s": round(total - spent[0], 2),
        "uncertainty_cpu_s": round(spent[0], 2),
        "uncertainty_fraction": spent[0] / max(total - spent[0], 1e-9),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 tracks per generator, 60-90 frames (minutes)")
    parser.add_argument("--tracks", type=int, default=None, help="tracks per generator (default 32, quick 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit", action="store_true", help="print the calibration factor fitted on the synth tracks")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from bench.ba_accuracy import load_models

    body_model, prior = load_models()
    num = args.tracks or (8 if args.quick else 32)
    frames = (60, 90) if args.quick else (100, 160)
    generators = {
        "synth": synth_tracks(body_model, num, frames[0], args.seed),
        "selection": selection_tracks(body_model, num, frames, args.seed),
    }
    results = {}
    for name, tracks in generators.items():
        r = results[name] = evaluate(tracks, body_model, prior, BAConfig())
        print(f"[{name}] {r['tracks']} tracks, {r['frames']} frames: Spearman(pred, true MPJPE) per frame "
              f"{r['spearman_frame']:+.3f}, per track {r['spearman_track']:+.3f} (E/T {r['spearman_track_energy_per_frame']:+.3f}; "
              f"without the residual scale {r['spearman_frame_unscaled']:+.3f} / {r['spearman_track_unscaled']:+.3f}); "
              f"true {r['true_mpjpe_mm']:.1f} mm, predicted {r['predicted_mm']:.1f} mm, true/predicted "
              f"{r['true_over_predicted']:.2f}; {r['undetermined_tracks']} undetermined tracks; uncertainty "
              f"{r['uncertainty_cpu_s']:.1f} s CPU = {100 * r['uncertainty_fraction']:.1f} % of the fit's "
              f"{r['fit_cpu_s']:.1f} s", flush=True)
    if args.fit:
        print(f"calibration fitted on synth: PRED_ERR_CALIBRATION = {results['synth']['calibration_fit']:.3f} "
              f"(now {PRED_ERR_CALIBRATION})")
    out = {
        "tracks_per_generator": num, "calibration": PRED_ERR_CALIBRATION,
        "spearman_frame_synth": results["synth"]["spearman_frame"],
        "spearman_track_synth": results["synth"]["spearman_track"],
        "spearman_frame_selection": results["selection"]["spearman_frame"],
        "spearman_track_selection": results["selection"]["spearman_track"],
        "uncertainty_fraction_max": max(r["uncertainty_fraction"] for r in results.values()),
        "results": results,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
