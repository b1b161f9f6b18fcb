"""Bundle adjustment at real frame rates: the same motions sampled at 10-60 fps.

Clips arrive at 23.976, 24, 25, 29.97, 30 and 60 fps, and the job may decode them at a
lower rate (``decode.target_fps``; the demo uses 10). The temporal terms' Huber widths
were calibrated at 25 fps; ``BAConfig.temporal_reference_fps`` (default 25) scales them
per track so that a motion costs the same per second at every rate. This benchmark fits
synthetic tracks (``pipeline.synth.tracks``: the motion library's split, detector noise
with a distractor, an HMR-like init or the keypoint-only init) of the same length in
seconds at each rate, with per-second widths (the default) and with per-frame widths
(``temporal_reference_fps`` None), for each solver, and
reports MPJPE / PA-MPJPE (mm), the acceleration error in m/s^2 (comparable across rates),
iterations, how many tracks converged, and the inlier fraction.

    python -m bench.frame_rate [--quick] [--rates 10,23.976,30,60] [--seconds 4] [--tracks 8]
                               [--split heldout] [--init regressor|keypoints] [--solvers lm,batched]
                               [--variants per_second,per_frame] [--threads 1] [--json-out F]

``--rates 25 --init keypoints --split tuning`` is the set ``keypoint_init_scale`` was
calibrated on (see docs/bundle_adjustment.md, "Calibration"). The last output line is a
JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.synth.tracks import make_tracks, with_keypoint_init
from bench.ba_accuracy import fitted_joints, load_models, pose_metrics
from optimize.bundle_adjust import bundle_adjust
from optimize.config import SOLVERS, BAConfig

VARIANTS = {"per_second": BAConfig().temporal_reference_fps, "per_frame": None}


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _scored(pred: list[np.ndarray], tracks, fps: float) -> dict:
    """MPJPE / PA-MPJPE (mm) and the acceleration error converted to m/s^2 (comparable across rates)."""
    metrics = pose_metrics(pred, tracks)
    return {"mpjpe_mm": metrics["mpjpe_mm"], "pa_mpjpe_mm": metrics["pa_mpjpe_mm"],
            "accel_m_s2": metrics["accel"] * fps * fps / 1000.0}  # mm / frame^2 -> m / s^2


def fit_row(tracks, body_model, prior, config: BAConfig, fps: float) -> dict:
    """Fit ``tracks`` with ``config`` and score them against their ground truth."""
    start = time.perf_counter()
    fits = bundle_adjust([t.problem for t in tracks], body_model, prior, config)
    seconds = time.perf_counter() - start
    frames = sum(t.problem.num_frames for t in tracks)
    # the fits that were solved: a (falsely) split track's pieces in its place
    pieces = [p for f in fits for p in (f.pieces if f.status == "split" else (f,))]
    return {
        **_scored([fitted_joints(f, t) for f, t in zip(fits, tracks)], tracks, fps),
        "converged": int(sum(f.converged for f in pieces)),
        "tracks": len(pieces),
        "false_splits": int(sum(f.status == "split" for f in fits)),  # synthetic tracks have no switch
        "failed_or_diverged": int(sum(f.status in ("failed", "diverged") for f in fits)),
        "iterations": [int(f.iterations) for f in pieces],
        "inlier_fraction": float(np.mean(np.concatenate([f.inlier for f in pieces]))),
        "seconds": round(seconds, 2),
        "frames_per_second": round(frames / max(seconds, 1e-9), 1),
    }


def init_row(tracks, fps: float) -> dict:
    return _scored([t.init_joints for t in tracks], tracks, fps)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 tracks x 1.5 s at 10 and 30 fps, LM only")
    parser.add_argument("--rates", type=_floats, default=None, help="frame rates, Hz (default 10,23.976,30,60)")
    parser.add_argument("--seconds", type=float, default=None, help="track length, s (default 4)")
    parser.add_argument("--tracks", type=int, default=None, help="tracks per rate (default 8)")
    parser.add_argument("--split", default="heldout", choices=("heldout", "tuning", "all"))
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--init", default="regressor", choices=("regressor", "keypoints"),
                        help="the tracks' init: the HMR-like regressor's, or the keypoint-only initialiser's")
    parser.add_argument("--solvers", default=None, help=f"comma-separated, of {SOLVERS} (default lm,batched)")
    parser.add_argument("--variants", default="per_second,per_frame",
                        help="per_second: temporal_reference_fps 25 (default); per_frame: None")
    parser.add_argument("--ba-config", default="{}", help="JSON overrides of BAConfig for every row")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rates = args.rates or ([10.0, 30.0] if args.quick else [10.0, 23.976, 30.0, 60.0])
    seconds = args.seconds or (1.5 if args.quick else 4.0)
    num_tracks = args.tracks or (2 if args.quick else 8)
    solvers = (args.solvers or ("lm" if args.quick else "lm,batched")).split(",")
    variants = args.variants.split(",")
    for name in solvers:
        if name not in SOLVERS:
            parser.error(f"--solvers: {name!r} is not one of {SOLVERS}")
    for name in variants:
        if name not in VARIANTS:
            parser.error(f"--variants: {name!r} is not one of {tuple(VARIANTS)}")
    overrides = json.loads(args.ba_config)
    body_model, prior = load_models()
    rows = []
    print(f"{args.split} tracks, {args.init} init, {num_tracks} x {seconds:g} s per rate; threads {args.threads}")
    print(f"{'fps':>7} {'frames':>6} {'solver':>8} {'widths':>10} {'MPJPE':>6} {'PA':>6} {'accel':>6} "
          f"{'conv':>5} {'it mean/max':>11} {'inl':>5} {'fr/s':>6}")
    for fps in rates:
        frames = max(2, int(round(seconds * fps)))
        tracks = make_tracks(body_model, args.split, num_tracks, frames, seed=args.seed, fps=fps)
        if args.init == "keypoints":
            tracks = [with_keypoint_init(t, body_model) for t in tracks]
        init = init_row(tracks, fps)
        print(f"{fps:7.3f} {frames:6d} {'init':>8} {'':>10} {init['mpjpe_mm']:6.1f} {init['pa_mpjpe_mm']:6.1f} "
              f"{init['accel_m_s2']:6.1f}")
        rows.append({"fps": fps, "frames": frames, "solver": "init", **init})
        for solver in solvers:
            for variant in variants:
                config = BAConfig(**{**overrides, "solver": solver, "temporal_reference_fps": VARIANTS[variant]})
                row = fit_row(tracks, body_model, prior, config, fps)
                it = row["iterations"]
                print(f"{fps:7.3f} {frames:6d} {solver:>8} {variant:>10} {row['mpjpe_mm']:6.1f} {row['pa_mpjpe_mm']:6.1f} "
                      f"{row['accel_m_s2']:6.1f} {row['converged']:2d}/{row['tracks']:<2d} {np.mean(it):6.1f}/{max(it):<4d} "
                      f"{row['inlier_fraction']:5.3f} {row['frames_per_second']:6.1f}"
                      + (f"  ({row['false_splits']} falsely split)" if row["false_splits"] else ""), flush=True)
                rows.append({"fps": fps, "frames": frames, "solver": solver, "widths": variant, **row})
    result = {
        "split": args.split, "init": args.init, "tracks_per_rate": num_tracks, "seconds": seconds, "seed": args.seed,
        "threads": args.threads, "ba_config_overrides": overrides,
        "rows": rows,
    }
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
