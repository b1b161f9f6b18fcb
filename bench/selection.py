"""Does the filter pick the good fits? Track selection against known true error.

Tracks come from a generator of its own (``make_selection_tracks`` below), *not* the one
the bundle-adjustment weights were calibrated on (``pipeline.synth.tracks``): a 1280 x 720
frame at 30 fps, people 80-450 px tall (log-uniform inside three bands, 80-150, 150-250
and 250-450 px, each kind of track in each band equally often), 100-160 frames (quick: 60-90), the
held-out motions only, a panning and zooming camera, heavy-tailed (Laplace) detector
jitter with a 1 px floor, one or two other people as extra candidates, and four kinds of
track in equal shares:

* ``clean``: light jitter, no swaps;
* ``noisy``: strong jitter, 8 % missing keypoints, 3 % gross outliers, 8 % dropped frames;
* ``swaps``: 12 % full-body and 12 % single-limb left/right swaps;
* ``switch``: clean detections that jump to another person (0.5-1.5 body heights away,
  0.7-1.4 x the size) at 30-70 % of the track, as a tracker identity switch does.

The init is the HMR-like regressor error model of ``pipeline.synth.tracks``, its
strength drawn per track (x 0.5 to x 2), so true errors spread within each kind.

Every track is bundle-adjusted with the default :class:`~optimize.config.BAConfig` (quick:
the L-BFGS budget ``max_iter`` lowered to 60 per stage; LM keeps its own) and
selected with the default :class:`~pipeline.dataset.selection.rules.SelectionConfig` (pieces of
split tracks included); a track's true error is its mean MPJPE (mm, pelvis-aligned) against
the person whose detection it follows on each frame. Printed: Spearman(E_norm, true MPJPE)
(and for the other E_norm normalisation), kept vs rejected MPJPE, inlier fraction by
person-height band, identity-switch recall and precision (a split within 5 frames of a
true switch). ``--compare`` also runs the paper's units and selection (``BAConfig.paper()``).

    python -m bench.selection [--quick] [--compare] [--tracks N] [--threads 1]

The last output line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.synth.tracks import OKS_SIGMAS, InitNoise, posed, regressor_init
from models.joint_names import COCO17_FLIP_INDEX, COCO17_INDEX
from optimize.bundle_adjust import bundle_adjust
from optimize.config import BAConfig
from optimize.problem import TrackProblem
from optimize.track_metrics import e_norm as trajectory_e_norm
from optimize.track_metrics import per_frame_energy
from pipeline.dataset.selection.rules import SelectionConfig, eligibility, expand_pieces, run_threshold, select_track
from pipeline.qa.metrics import mpjpe
from pipeline.synth.motions import BACKGROUND_MOTIONS, HELDOUT_MOTIONS, rot_y, sample_motion

IMAGE_SIZE = (1280, 720)
FPS = 30.0
KINDS = ("clean", "noisy", "swaps", "switch")
BANDS = ((0, 150), (150, 250), (250, 10_000))
HEIGHT_STRATA = ((80, 150), (150, 250), (250, 450))  # px, log-uniform inside
SWITCH_TOLERANCE = 5  # frames
TARGETS = {"spearman": 0.6, "kept_over_rejected_mpjpe": 0.7, "inlier_ratio_large_over_small": 0.9,
           "switch_recall": 0.9}
_R_X_PI = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class Noise:
    jitter: float
    missing: float
    outlier: float
    drop: float
    body_swap: float
    limb_swap: float


NOISE = {
    "clean": Noise(0.12, 0.02, 0.0, 0.02, 0.0, 0.0),
    "noisy": Noise(0.45, 0.08, 0.03, 0.08, 0.01, 0.02),
    "swaps": Noise(0.2, 0.03, 0.005, 0.03, 0.12, 0.12),
    "switch": Noise(0.12, 0.02, 0.0, 0.02, 0.0, 0.0),
}


@dataclass(frozen=True)
class Track:
    problem: TrackProblem
    kind: str
    height_px: float
    gt_joints: np.ndarray  # (T, 24, 3) of the person each frame's detection belongs to
    switch: int  # frame position of the identity switch, -1 if none


def _person(rng, body_model, motion, T, height, centre):
    """GT pose, betas, camera (T, 3) with a pan + zoom camera, joints, 2D keypoints."""
    times = np.arange(T) / FPS
    sample = sample_motion(motion, times, rng)
    heading = sample.heading + rng.uniform(-1.0, 1.0)
    orient = _R_X_PI @ rot_y(heading)
    pose = np.zeros((T, 72))
    from models.geometry import matrix_to_axis_angle

    pose[:, :3] = matrix_to_axis_angle(torch.as_tensor(orient)).numpy()
    pose[:, 3:] = sample.body_pose
    betas = np.clip(rng.normal(scale=1.0, size=10), -3, 3)
    s0 = height / 1.7
    zoom = np.exp(np.linspace(0, rng.uniform(-0.15, 0.15), T))
    pan = np.linspace(0, rng.uniform(-0.1, 0.1) * IMAGE_SIZE[0], T)
    walk = np.cumsum(sample.speed * np.sin(heading)) / FPS * s0
    s = s0 * zoom
    tx = centre[0] + pan + walk + rng.normal(scale=1.0, size=T)
    ty = centre[1] - sample.lift * s0 + rng.normal(scale=1.0, size=T)
    camera = np.stack([s, tx, ty], -1)
    joints, kp3d = posed(body_model, pose, betas)
    kp2d = camera[:, None, :1] * kp3d[..., :2] + camera[:, None, 1:]
    return pose, betas, camera, joints, kp2d


def _detect(rng, kp2d, height, noise: Noise):
    T = kp2d.shape[0]
    jitter = rng.laplace(size=(T, 17, 2)) * (noise.jitter * height * OKS_SIGMAS)[None, :, None] / math.sqrt(2)
    kp = kp2d + jitter + rng.normal(scale=1.0, size=(T, 17, 2))  # 1 px floor
    conf = rng.uniform(0.5, 1.0, (T, 17))
    out = rng.random((T, 17)) < noise.outlier
    kp[out] += rng.normal(size=(int(out.sum()), 2)) * 0.25 * height
    flip = np.array(COCO17_FLIP_INDEX)
    swap = rng.random(T) < noise.body_swap
    kp[swap] = kp[swap][:, flip]
    for t in np.flatnonzero(rng.random(T) < noise.limb_swap):
        limb = ("elbow", "wrist", "knee", "ankle")[rng.integers(4)]
        a, b = COCO17_INDEX[f"left_{limb}"], COCO17_INDEX[f"right_{limb}"]
        kp[t, [a, b]] = kp[t, [b, a]]
    miss = rng.random((T, 17)) < noise.missing
    conf[miss] = 0.0
    kp[miss] = 0.0
    return np.concatenate([kp, conf[..., None]], -1)


def make_track(body_model, index: int, T: int, seed: int) -> Track:
    rng = np.random.default_rng(seed)
    kind = KINDS[index % len(KINDS)]
    noise = NOISE[kind]
    W, H = IMAGE_SIZE
    lo, hi = HEIGHT_STRATA[(index // len(KINDS)) % len(HEIGHT_STRATA)]  # every kind in every band
    height = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    centre = np.array([rng.uniform(0.3, 0.7) * W, rng.uniform(0.45, 0.6) * H])
    strength = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    base = InitNoise()
    regressor = InitNoise(
        joint_bias=base.joint_bias * strength, joint_noise=base.joint_noise * strength,
        orient_noise=base.orient_noise * strength, flip_on=base.flip_on * strength, flip_off=base.flip_off,
        betas_bias=base.betas_bias * strength, betas_noise=base.betas_noise, scale_noise=base.scale_noise,
        translation_noise=base.translation_noise,
    )
    motion = HELDOUT_MOTIONS[rng.integers(len(HELDOUT_MOTIONS))]
    pose, betas, camera, joints, kp2d = _person(rng, body_model, motion, T, height, centre)
    people = [(kp2d, joints, height, pose, betas)]
    # other people: a switch partner (for switch tracks) and a bystander
    others = 2 if kind == "switch" else 1 + int(rng.random() < 0.5)
    for k in range(others):
        h2 = height * rng.uniform(0.7, 1.4)
        away = rng.uniform(0.5, 1.5) if (kind == "switch" and k == 0) else rng.uniform(1.5, 3.0)
        c2 = centre + np.array([rng.choice([-1, 1]) * away * max(height, h2), rng.uniform(-0.05, 0.05) * H])
        m2 = (HELDOUT_MOTIONS if k == 0 else BACKGROUND_MOTIONS)[rng.integers(2)]
        p2, b2, cam2, j2, kp2 = _person(rng, body_model, m2, T, h2, c2)
        people.append((kp2, j2, h2, p2, b2))
    dets, inits = [], []
    for kp, _, h, p, b in people:
        dets.append(_detect(rng, kp, h, noise))
        inits.append(regressor_init(rng, body_model, p, b, kp, h, regressor)[:3])
    switch = int(rng.uniform(0.3, 0.7) * T) if kind == "switch" else -1
    identity = np.zeros(T, int)
    if switch > 0:
        identity[switch:] = 1
    dropped = rng.random(T) < noise.drop
    dropped[0] = False
    if switch > 0:
        dropped[switch] = False
    P = len(people)
    candidates = np.zeros((T, P, 17, 3), np.float32)
    mask = np.zeros((T, P), bool)
    init_pose = np.zeros((T, P, 72), np.float32)
    init_betas = np.zeros((T, P, 10), np.float32)
    init_camera = np.zeros((T, P, 3), np.float32)
    selected = np.full(T, -1, np.int32)
    for t in range(T):
        slot = 0
        for person in rng.permutation(P):
            if person == identity[t] and dropped[t]:
                continue
            candidates[t, slot] = dets[person][t]
            init_pose[t, slot], init_betas[t, slot], init_camera[t, slot] = (a[t] for a in inits[person])
            mask[t, slot] = True
            if person == identity[t]:
                selected[t] = slot
            slot += 1
    keypoints = np.zeros((T, 17, 3), np.float32)
    boxes = np.full((T, 4), np.nan, np.float32)
    for t in np.flatnonzero(selected >= 0):
        keypoints[t] = candidates[t, selected[t]]
        seen = keypoints[t, :, 2] > 0
        boxes[t] = [*keypoints[t, seen, :2].min(0), *keypoints[t, seen, :2].max(0)]
    gt = np.where((identity == 0)[:, None, None], joints, people[1][1] if switch > 0 else joints)
    problem = TrackProblem(
        clip_id=f"selection_{seed}", track_id=0, image_size=IMAGE_SIZE, fps=FPS,
        frame_index=np.arange(T, dtype=np.int32), frame_time=np.arange(T) / FPS, selected=selected,
        keypoints=keypoints, boxes=boxes, candidates=candidates, candidate_mask=mask, init_pose=init_pose,
        init_betas=init_betas, init_camera=init_camera, init_source="hmr", meta={"kind": kind, "motion": motion},
    )
    return Track(problem, kind, height, gt, switch)


def make_selection_tracks(body_model, num_tracks: int, frames: tuple[int, int], seed: int = 0) -> list[Track]:
    rng = np.random.default_rng(seed + 7919)
    lengths = rng.integers(frames[0], frames[1] + 1, num_tracks)
    return [make_track(body_model, i, int(lengths[i]), seed * 1_000_003 + 500_009 + i) for i in range(num_tracks)]


def spearman(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3:
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(a[keep], b[keep]).statistic)


def evaluate(tracks: list[Track], fits, config: BAConfig) -> dict:
    selection = SelectionConfig()
    rows = []  # one per output track (pieces included)
    detected_switches, true_hits = 0, 0
    for track, fit in zip(tracks, fits):
        found = [int(np.searchsorted(track.problem.frame_index, f)) for f in fit.switch_frames]
        detected_switches += len(found)
        hit = [f for f in found if track.switch >= 0 and abs(f - track.switch) <= SWITCH_TOLERANCE]
        true_hits += int(bool(hit))
        for problem, piece in expand_pieces(track.problem, fit):
            if piece.status == "split":
                continue
            start = piece.piece_start
            gt = track.gt_joints[start : start + piece.num_frames]
            error = float(np.mean(mpjpe(piece.joints3d.astype(np.float64), gt))) if piece.status == "ok" else math.nan
            total = piece.energies.get("total", math.inf)
            rows.append(dict(
                problem=problem, fit=piece, kind=track.kind, height=track.height_px, mpjpe=error,
                trajectory=trajectory_e_norm(total, piece.trajectory_length),
                per_frame=per_frame_energy(total, piece.num_frames),
                detected=int(problem.has_detection.sum()),
                inliers=int((np.asarray(piece.inlier) & problem.has_detection).sum()),
                is_piece=piece.parent_track_id >= 0,
            ))
    eligible = [r for r in rows if eligibility(r["problem"], r["fit"], selection) is None]
    threshold = run_threshold([r["fit"].e_norm for r in eligible], selection)
    for r in rows:
        r["selected"] = select_track(r["problem"], r["fit"], selection, threshold).selected
    ok = [r for r in rows if r["fit"].status == "ok" and math.isfinite(r["mpjpe"])]
    kept = [r["mpjpe"] for r in ok if r["selected"]]
    rejected = [r["mpjpe"] for r in ok if not r["selected"]]
    bands = {}
    for lo, hi in BANDS:
        members = [r for r in ok if lo <= r["height"] < hi and r["kind"] != "switch"]
        det = sum(r["detected"] for r in members)
        bands[f"{lo}-{hi if hi < 10_000 else 'inf'}"] = sum(r["inliers"] for r in members) / det if det else math.nan
    band_values = list(bands.values())
    true_switches = sum(t.switch >= 0 for t in tracks)
    result = {
        "e_norm_mode": config.e_norm,
        "units": config.units,
        "spearman": spearman([r["fit"].e_norm for r in ok], [r["mpjpe"] for r in ok]),
        "spearman_per_frame": spearman([r["per_frame"] for r in ok], [r["mpjpe"] for r in ok]),
        "spearman_trajectory": spearman([r["trajectory"] for r in ok], [r["mpjpe"] for r in ok]),
        "spearman_e_norm_vs_height": spearman([r["fit"].e_norm for r in ok], [r["height"] for r in ok]),
        "spearman_clean": spearman([r["fit"].e_norm for r in ok if r["kind"] == "clean"],
                                   [r["mpjpe"] for r in ok if r["kind"] == "clean"]),
        "kept_tracks": len(kept),
        "rejected_tracks": len(rejected),
        "kept_mpjpe_mm": float(np.mean(kept)) if kept else math.nan,
        "rejected_mpjpe_mm": float(np.mean(rejected)) if rejected else math.nan,
        "inlier_fraction_by_height": bands,
        "inlier_ratio_large_over_small": band_values[-1] / band_values[0] if band_values[0] else math.nan,
        "switch_recall": true_hits / true_switches if true_switches else math.nan,
        "switch_precision": true_hits / detected_switches if detected_switches else math.nan,
        "true_switches": true_switches,
        "detected_switches": detected_switches,
        "inliers_le_detected": all(r["inliers"] <= r["detected"] for r in rows),
        "reasons": {reason: sum(select_track(r["problem"], r["fit"], selection, threshold).reason == reason for r in rows)
                    for reason in sorted({select_track(r["problem"], r["fit"], selection, threshold).reason for r in rows})},
    }
    result["kept_over_rejected_mpjpe"] = result["kept_mpjpe_mm"] / result["rejected_mpjpe_mm"]
    return result


def _print(name: str, r: dict) -> None:
    print(f"[{name}] units={r['units']} e_norm={r['e_norm_mode']}")
    print(f"  Spearman(E_norm, true MPJPE) {r['spearman']:+.3f}  (E/T {r['spearman_per_frame']:+.3f}, "
          f"E/length {r['spearman_trajectory']:+.3f}; clean tracks {r['spearman_clean']:+.3f}; "
          f"vs person height {r['spearman_e_norm_vs_height']:+.3f})")
    print(f"  kept {r['kept_tracks']} tracks: MPJPE {r['kept_mpjpe_mm']:.1f} mm; rejected {r['rejected_tracks']}: "
          f"{r['rejected_mpjpe_mm']:.1f} mm; ratio {r['kept_over_rejected_mpjpe']:.2f}")
    print("  inlier fraction by person height: " + ", ".join(f"{k} px {v:.3f}" for k, v in r["inlier_fraction_by_height"].items())
          + f"; large/small {r['inlier_ratio_large_over_small']:.3f}")
    print(f"  identity switches: recall {r['switch_recall']:.2f} precision {r['switch_precision']:.2f} "
          f"({r['detected_switches']} splits, {r['true_switches']} true switches)")
    print(f"  selection reasons: {r['reasons']}", flush=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 tracks x 60-90 frames, L-BFGS lowered to 60 iterations per stage (minutes)")
    parser.add_argument("--tracks", type=int, default=None, help="tracks (default 48, quick 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-iter", type=int, default=None, help="L-BFGS iterations per stage (default: BAConfig's, quick 60)")
    parser.add_argument("--compare", action="store_true", help="also run BAConfig.paper() (pixels, E/length)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from bench.ba_accuracy import load_models

    body_model, prior = load_models()
    num = args.tracks or (16 if args.quick else 48)
    frames = (60, 90) if args.quick else (100, 160)
    start = time.perf_counter()
    tracks = make_selection_tracks(body_model, num, frames, args.seed)
    print(f"{num} tracks, {sum(t.problem.num_frames for t in tracks)} frames, heights "
          f"{min(t.height_px for t in tracks):.0f}-{max(t.height_px for t in tracks):.0f} px, "
          f"generated in {time.perf_counter() - start:.1f} s", flush=True)
    overrides = {"max_iter": args.max_iter or 60} if (args.max_iter or args.quick) else {}
    configs = {"default": BAConfig(**overrides)}
    if args.compare:
        configs["paper"] = BAConfig.paper(**overrides)
    results = {}
    for name, config in configs.items():
        start = time.perf_counter()
        fits = bundle_adjust([t.problem for t in tracks], body_model, prior, config)
        results[name] = evaluate(tracks, fits, config)
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
        _print(name, results[name])
    r = results["default"]
    met = {
        "spearman": r["spearman"] >= TARGETS["spearman"],
        "kept_over_rejected_mpjpe": r["kept_over_rejected_mpjpe"] <= TARGETS["kept_over_rejected_mpjpe"],
        "inlier_ratio_large_over_small": r["inlier_ratio_large_over_small"] >= TARGETS["inlier_ratio_large_over_small"],
        "switch_recall": r["switch_recall"] >= TARGETS["switch_recall"],
    }
    print(f"targets met: {met}")
    out = {
        "tracks": num, "frames": frames, "spearman": r["spearman"], "kept_over_rejected_mpjpe": r["kept_over_rejected_mpjpe"],
        "inlier_ratio_large_over_small": r["inlier_ratio_large_over_small"], "switch_recall": r["switch_recall"],
        "switch_precision": r["switch_precision"], "targets": TARGETS, "targets_met": met,
        "results": {k: {kk: vv for kk, vv in v.items()} for k, v in results.items()},
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
