"""Does the filter pick the good fits? Track selection against known true error, on three generators.

Tracks come from three independent generators, each reported on its own and pooled:

* ``synth``: the synthetic corpus's tracks (``pipeline.synth.tracks``, every motion; the
  generator the bundle-adjustment weights were tuned on). Any weight or threshold of a
  selection score is tuned on this one only; the other two are held out.
* ``selection``: the benchmark's own (:func:`make_selection_tracks` below): a 1280 x 720
  frame at 30 fps, people 80-450 px tall (log-uniform inside three bands, 80-150, 150-250
  and 250-450 px, each kind of track in each band equally often), the held-out motions
  only, a panning and zooming camera, heavy-tailed (Laplace) detector jitter with a 1 px
  floor, one or two other people as extra candidates, and four kinds of track in equal
  shares: ``clean`` (light jitter), ``noisy`` (strong jitter, 8 % missing keypoints, 3 %
  gross outliers, 8 % dropped frames), ``swaps`` (12 % full-body and 12 % single-limb
  left/right swaps) and ``switch`` (clean detections that jump to another person 0.5-1.5
  body heights away, 0.7-1.4 x the size, at 30-70 % of the track). The init is the
  HMR-like regressor error model of ``pipeline.synth.tracks``, its strength drawn per
  track (x 0.5 to x 2).
* ``hard``: ``pipeline.synth.hard_tracks``: depth-ambiguous views (walking towards or away
  from the camera, side views, crouching), occlusion gaps of 0.5-2 s, identity switches
  between people of the same size 0.1-0.4 body heights apart, and heavy-noise tracks with
  a look-alike next to them and no switch.

Every track is bundle-adjusted with the default :class:`~optimize.config.BAConfig` (quick:
the L-BFGS budget ``max_iter`` lowered to 60 per stage; LM keeps its own). A track's true
error is its MPJPE (mm, pelvis-aligned) against the person whose detection it follows on
each frame; pieces of split tracks are tracks of their own. For each candidate score
(:data:`SCORES`; lower = better) and each generator and the pool:

* Spearman against true MPJPE per track, and per frame (the frame form of the score);
  the scores' track / frame forms: ``energy_per_frame`` E / T / the frame's energy,
  ``energy_per_length`` E / trajectory length on every frame, ``predicted_error`` (the
  default) the track's predicted error / the frame score ``TrackFit.frame_score_mm``
  (geometric mean of the frame's and the track's predicted error and the frame's
  sqrt(pred^2 + fit-to-init disagreement^2)), ``posterior_only`` the track's predicted error
  / the frame's own ``pred_err_mm``, ``frame_score_mean`` the mean frame score over the
  determined frames / the frame score, ``predicted_x_energy`` the predicted error x
  sqrt(energy) and ``rank_product`` rank of the energy x rank of the predicted error (track:
  the track's, frame: the frame's ``pred_err_mm`` and energy);
* AUC of the frame score for "frame error > 100 mm";
* kept vs rejected MPJPE under the default :class:`SelectionConfig` keep rule, the score in
  place of the default one;
* yield against error: the mean MPJPE of the best 10, 25 and 50 % by the score (and by
  the true error, the oracle). The oracle row also gives the ceiling of a track-level
  score: per frame, the Spearman of the track's true MPJPE given to each of its frames
  (undetermined frames last), and its kept / rejected ratio.

Also: identity-switch recall and precision (a split within 5 frames of a true switch; a
cut elsewhere is false), the selection reasons of the default score, and, for every score
and target it misses, the generator that defeats it and the tracks that fool it.
``--compare`` also fits with the paper's units and score (``BAConfig.paper()``).

    python -m bench.selection [--quick] [--compare] [--tracks N] [--generators synth,selection,hard] [--threads 1]
                              [--dump frames.npz]

``--dump`` also saves every frame of every fitted track (default config) with its true error
and the per-frame quantities a frame score can be built from (:func:`dump_frames`), to
study frame scores offline without refitting.

The last output line is a JSON object (``spearman_pooled``, ``spearman_min_generator``,
``spearman_frame``, ``kept_over_rejected_max``, ``switch_recall``, ``switch_precision`` for
the default score, then every figure).
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
from pipeline.synth.hard_tracks import assemble_candidates, swap_sides
from optimize.bundle_adjust import bundle_adjust
from optimize.config import BAConfig
from optimize.problem import TrackProblem
from optimize.track_metrics import e_norm as trajectory_e_norm
from optimize.track_metrics import per_frame_energy
from pipeline.dataset.selection.rules import SelectionConfig, eligibility, expand_pieces, fraction_threshold
from pipeline.qa.metrics import mpjpe
from pipeline.synth.motions import BACKGROUND_MOTIONS, HELDOUT_MOTIONS, rot_y, sample_motion

IMAGE_SIZE = (1280, 720)
FPS = 30.0
KINDS = ("clean", "noisy", "swaps", "switch")
HEIGHT_STRATA = ((80, 150), (150, 250), (250, 450))  # px, log-uniform inside
SWITCH_TOLERANCE = 5  # frames
ERROR_BAD_MM = 100.0  # a frame worse than this is "bad" (AUC)
YIELDS = (10, 25, 50)  # percent kept, best first
TARGETS = {"spearman_track": 0.5, "spearman_pooled": 0.6, "spearman_frame": 0.5, "kept_over_rejected": 0.7,
           "switch_recall": 0.9, "switch_precision": 0.9}
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
    """A benchmark track of any generator and its ground truth."""

    problem: TrackProblem
    kind: str
    height_px: float
    gt_joints: np.ndarray  # (T, 24, 3) of the person each frame's detection belongs to
    switch: int  # frame position of the identity switch, -1 if none
    generator: str = "selection"


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
    swap_sides(rng, kp, noise.body_swap, noise.limb_swap)
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
    candidates, mask, init_pose, init_betas, init_camera, selected, keypoints, boxes = assemble_candidates(
        rng, dets, inits, identity, dropped)
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


def synth_tracks(body_model, num_tracks: int, frames: tuple[int, int], seed: int = 0) -> list[Track]:
    """Generator 1: the synthetic corpus's tracks (``pipeline.synth.tracks``, every motion)."""
    from pipeline.synth.tracks import TUNING_MOTIONS, motions_for
    from pipeline.synth.tracks import make_track as make_synth_track

    rng = np.random.default_rng(seed + 15_485_863)
    names = motions_for("all")
    out = []
    for i in range(num_tracks):
        motion = names[i % len(names)]
        split = "tuning" if motion in TUNING_MOTIONS else "heldout"
        length = int(rng.integers(frames[0], frames[1] + 1))
        t = make_synth_track(body_model, motion, length, seed * 100_003 + 300_007 + i, split=split)
        out.append(Track(t.problem, split, float(np.median(t.gt_camera[:, 0]) * 1.7), t.gt_joints, -1, "synth"))
    return out


def hard_tracks(body_model, num_tracks: int, frames: tuple[int, int], seed: int = 0) -> list[Track]:
    """Generator 3: depth-ambiguous views, occlusion gaps, look-alike switches (``pipeline.synth.hard_tracks``)."""
    from pipeline.synth.hard_tracks import make_hard_tracks

    return [Track(t.problem, t.kind, t.height_px, t.gt_joints, t.switch, "hard")
            for t in make_hard_tracks(body_model, num_tracks, frames, seed)]


def selection_tracks(body_model, num_tracks: int, frames: tuple[int, int], seed: int = 0) -> list[Track]:
    """Generator 2: the benchmark's own (:func:`make_selection_tracks`)."""
    return make_selection_tracks(body_model, num_tracks, frames, seed)


GENERATORS = {"synth": synth_tracks, "selection": selection_tracks, "hard": hard_tracks}
TUNING_GENERATOR = "synth"  # weights and thresholds of the scores are tuned on it only


# ---------------------------------------------------------------- scores


def _frame_energy(fit) -> np.ndarray:
    return np.asarray(fit.frame_energies.get("total", np.full(fit.pose.shape[0], np.nan)), dtype=np.float64)


def _predicted(fit) -> tuple[float, np.ndarray, np.ndarray]:
    """Track predicted 3D error (mm), the frame score (``fit.frame_score_mm``, mm) and the frame
    predicted error (``fit.pred_err_mm``, mm) of a fit; NaN when the fit carries none."""
    frames = getattr(fit, "pred_err_mm", None)
    if frames is None:
        nan = np.full(fit.pose.shape[0], np.nan)
        return math.nan, nan, nan
    from optimize.track_metrics import predicted_error

    score = getattr(fit, "frame_score_mm", None)
    score = np.full(fit.pose.shape[0], np.nan) if score is None else np.asarray(score, dtype=np.float64)
    return float(predicted_error(fit)), score, np.asarray(frames, dtype=np.float64)


def _determined_mean(values: np.ndarray) -> float:
    """Mean over the finite values; inf when ``UNDETERMINED_FRACTION`` or more are not finite."""
    from optimize.track_metrics import UNDETERMINED_FRACTION

    finite = np.isfinite(values)
    if values.size == 0 or np.isnan(values).all():
        return math.nan
    return float(values[finite].mean()) if finite.any() and 1.0 - finite.mean() < UNDETERMINED_FRACTION else math.inf


def track_scores(fit, num_frames: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Every candidate score of one fit: track values and (T,) frame values (lower = better).

    A score with no per-frame form gives its track value to every frame.
    """
    total = fit.energies.get("total", math.inf)
    energy = per_frame_energy(total, num_frames)
    frame_energy = _frame_energy(fit)
    length = trajectory_e_norm(total, fit.trajectory_length)
    predicted, frame_score, frame_predicted = _predicted(fit)
    with np.errstate(invalid="ignore", over="ignore"):
        track = {
            "energy_per_frame": energy,
            "energy_per_length": length,
            "predicted_error": predicted,
            "posterior_only": predicted,
            "frame_score_mean": _determined_mean(frame_score),
            "predicted_x_energy": predicted * math.sqrt(energy) if math.isfinite(energy) else math.inf,
        }
        frame = {
            "energy_per_frame": frame_energy,
            "energy_per_length": np.full(num_frames, length),
            "predicted_error": frame_score,
            "posterior_only": frame_predicted,
            "frame_score_mean": frame_score,
            "predicted_x_energy": frame_predicted * np.sqrt(np.maximum(frame_energy, 0.0)),
        }
    return track, frame


def _rank(values: np.ndarray) -> np.ndarray:
    """Ranks in (0, 1] (inf last, NaN stays NaN)."""
    from scipy.stats import rankdata

    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape, np.nan)
    keep = ~np.isnan(values)
    if keep.any():
        out[keep] = rankdata(values[keep]) / keep.sum()
    return out


def add_rank_product(rows: list["Row"]) -> None:
    """The run-relative score: rank of E/T x rank of the predicted error over all rows (and frames)."""
    for level in ("track", "frame"):
        if level == "track":
            a = np.array([r.track["energy_per_frame"] for r in rows])
            b = np.array([r.track["predicted_error"] for r in rows])
            product = _rank(a) * _rank(b)
            for r, v in zip(rows, product):
                r.track["rank_product"] = float(v)
        else:
            sizes = [r.fit.pose.shape[0] for r in rows]
            a = np.concatenate([r.frame["energy_per_frame"] for r in rows]) if rows else np.zeros(0)
            b = np.concatenate([r.frame["posterior_only"] for r in rows]) if rows else np.zeros(0)
            parts = np.split(_rank(a) * _rank(b), np.cumsum(sizes)[:-1]) if rows else []
            for r, v in zip(rows, parts):
                r.frame["rank_product"] = v


# the bench's name of each SelectionConfig.score (``e_norm``: BAConfig.e_norm, energy per frame by default)
BENCH_SCORE = {"e_norm": "energy_per_frame"}
SCORES = ("energy_per_frame", "energy_per_length", "predicted_error", "posterior_only", "frame_score_mean",
          "predicted_x_energy", "rank_product")


@dataclass
class Row:
    """One output track (a whole track, or a piece of a split one) and what is known of it."""

    problem: TrackProblem
    fit: object
    generator: str
    kind: str
    height: float
    mpjpe: float  # mean over frames, mm; NaN unless the fit is ok
    frame_error: np.ndarray  # (T,) mm
    track: dict
    frame: dict


def fit_rows(tracks: list[Track], fits) -> list[Row]:
    rows = []
    for track, fit in zip(tracks, fits):
        for problem, piece in expand_pieces(track.problem, fit):
            if piece.status == "split":
                continue
            start = piece.piece_start
            gt = track.gt_joints[start : start + piece.num_frames]
            ok = piece.status == "ok"
            frame_error = mpjpe(piece.joints3d.astype(np.float64), gt) if ok else np.full(piece.num_frames, np.nan)
            track_values, frame_values = track_scores(piece, piece.num_frames)
            rows.append(Row(problem, piece, track.generator, track.kind, track.height_px,
                            float(np.mean(frame_error)) if ok else math.nan, frame_error, track_values, frame_values))
    return rows


# ---------------------------------------------------------------- metrics


def _finite_last(values) -> np.ndarray:
    """inf -> above every finite value (an undetermined score ranks worst); NaN kept."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    top = (finite.max() if finite.size else 0.0) + 1.0 + abs(finite.max() if finite.size else 0.0)
    return np.where(np.isposinf(values), top, values)


def spearman(a, b) -> float:
    a, b = _finite_last(a), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0:
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(a[keep], b[keep]).statistic)


def auc(score, positive) -> float:
    """P(score of a positive > score of a negative), ties half (Mann-Whitney)."""
    from scipy.stats import rankdata

    score = _finite_last(score)
    keep = np.isfinite(score)
    score, positive = score[keep], np.asarray(positive, bool)[keep]
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_fraction_error(score, error, percent: float) -> float:
    """Mean error of the best ``percent`` % by score (inf last)."""
    score, error = _finite_last(score), np.asarray(error, float)
    keep = ~np.isnan(score) & np.isfinite(error)
    if not keep.any():
        return float("nan")
    order = np.argsort(score[keep], kind="stable")
    n = max(1, math.ceil(percent / 100.0 * keep.sum() - 1e-9))
    return float(error[keep][order[:n]].mean())


def keep_rule(rows: list[Row], score: str, config: SelectionConfig) -> np.ndarray:
    """(N,) bool: the rows the selection keeps with ``score`` (its eligibility checks and keep rule)."""
    eligible = np.array([eligibility(r.problem, r.fit, config) is None for r in rows], bool)
    values = np.array([r.track[score] for r in rows], np.float64)
    if config.mode == "threshold":
        threshold = float(config.e_norm_threshold)
    else:
        threshold = fraction_threshold([v for v, e in zip(values, eligible) if e and math.isfinite(v)],
                                       config.keep_fraction)
    with np.errstate(invalid="ignore"):
        return eligible & np.isfinite(values) & (values <= threshold)


def score_metrics(rows: list[Row], score: str, config: SelectionConfig) -> dict:
    ok = [r for r in rows if r.fit.status == "ok" and math.isfinite(r.mpjpe)]
    values = np.array([r.track[score] for r in ok], np.float64)
    errors = np.array([r.mpjpe for r in ok], np.float64)
    if not ok or np.isnan(values).all():
        return {"available": False}
    frame_values = np.concatenate([r.frame[score] for r in ok])
    frame_errors = np.concatenate([r.frame_error for r in ok])
    kept = keep_rule(ok, score, config)
    kept_mm = float(errors[kept].mean()) if kept.any() else math.nan
    rejected_mm = float(errors[~kept].mean()) if (~kept).any() else math.nan
    return {
        "available": True,
        "spearman_track": spearman(values, errors),
        "spearman_frame": spearman(frame_values, frame_errors),
        "auc_frame_over_100mm": auc(frame_values, frame_errors > ERROR_BAD_MM),
        "kept": int(kept.sum()), "rejected": int((~kept).sum()),
        "kept_mpjpe_mm": kept_mm, "rejected_mpjpe_mm": rejected_mm,
        "kept_over_rejected": kept_mm / rejected_mm if rejected_mm else math.nan,
        "best_mpjpe_mm": {str(p): best_fraction_error(values, errors, p) for p in YIELDS},
        "undetermined_tracks": int(np.isposinf(values).sum()),
    }


def switch_metrics(tracks: list[Track], fits) -> dict:
    """Identity-switch recall and precision: a split within ``SWITCH_TOLERANCE`` frames of a true switch;
    ``candidates``: the candidate cuts the detections gave, confirmed (split) or not."""
    detected, hits, false_cuts = 0, 0, 0
    candidates = sum(len(getattr(fit, "switch_candidates", ())) for fit in fits)
    for track, fit in zip(tracks, fits):
        found = [int(np.searchsorted(track.problem.frame_index, f)) for f in fit.switch_frames]
        detected += len(found)
        near = [f for f in found if track.switch >= 0 and abs(f - track.switch) <= SWITCH_TOLERANCE]
        hits += int(bool(near))
        false_cuts += len(found) - min(1, len(near))
    true = sum(t.switch >= 0 for t in tracks)
    return {"true_switches": true, "candidates": candidates, "splits": detected, "hits": hits, "false_cuts": false_cuts,
            "recall": hits / true if true else math.nan,
            "precision": (detected - false_cuts) / detected if detected else (math.nan if not true else 0.0)}


def oracle_bounds(rows: list[Row], config: SelectionConfig) -> dict:
    """What the true track error itself reaches as a score: the ceiling of any track-level score.

    Per frame, every frame gets its track's true MPJPE (undetermined frames, ``pred_err_mm``
    inf, last, as every score ranks them); kept / rejected under the keep rule with the true
    MPJPE as the score.
    """
    ok = [r for r in rows if r.fit.status == "ok" and math.isfinite(r.mpjpe)]
    if not ok:
        return {"spearman_frame": math.nan, "kept_over_rejected": math.nan}
    frame_values = np.concatenate([np.where(np.isfinite(r.frame["posterior_only"]), r.mpjpe, np.inf) for r in ok])
    frame_errors = np.concatenate([r.frame_error for r in ok])
    errors = np.array([r.mpjpe for r in ok])
    eligible = np.array([eligibility(r.problem, r.fit, config) is None for r in ok], bool)
    kept = eligible & (errors <= fraction_threshold(errors[eligible], config.keep_fraction))
    ratio = errors[kept].mean() / errors[~kept].mean() if kept.any() and (~kept).any() else math.nan
    return {"spearman_frame": spearman(frame_values, frame_errors), "kept_over_rejected": float(ratio)}


def evaluate(name: str, tracks: list[Track], fits, rows: list[Row], config: SelectionConfig) -> dict:
    ok = [r for r in rows if r.fit.status == "ok" and math.isfinite(r.mpjpe)]
    errors = np.array([r.mpjpe for r in ok])
    reasons: dict[str, int] = {}
    score = BENCH_SCORE.get(config.score, config.score)
    eligible_values = [r.track[score] for r in rows if eligibility(r.problem, r.fit, config) is None]
    threshold = fraction_threshold(eligible_values, config.keep_fraction) if config.mode == "fraction" \
        else float(config.e_norm_threshold)
    for r in rows:
        reason = eligibility(r.problem, r.fit, config)
        if reason is None:
            reason = "selected" if r.track[score] <= threshold else "not_selected"
        reasons[reason] = reasons.get(reason, 0) + 1
    kinds = sorted({r.kind for r in ok})
    return {
        "generator": name, "tracks": len(tracks), "rows": len(rows), "ok_rows": len(ok),
        "frames": int(sum(t.problem.num_frames for t in tracks)),
        "kinds": {k: sum(r.kind == k for r in ok) for k in kinds},
        "mpjpe_mm": float(errors.mean()) if ok else math.nan,
        "converged": int(sum(bool(r.fit.converged) for r in ok)),
        "oracle_best_mpjpe_mm": {str(p): best_fraction_error(errors, errors, p) for p in YIELDS},
        "oracle": oracle_bounds(rows, config),
        "scores": {s: score_metrics(rows, s, config) for s in SCORES},
        "by_kind_spearman": {k: spearman([r.track[score] for r in ok if r.kind == k],
                                         [r.mpjpe for r in ok if r.kind == k]) for k in kinds},
        "switches": switch_metrics(tracks, fits),
        "reasons": dict(sorted(reasons.items())),
    }


def _gap_distance(has_detection: np.ndarray) -> np.ndarray:
    """(T,) frames to the nearest frame without a detection or beyond either end of the track."""
    T = has_detection.shape[0]
    missing = np.concatenate([[-1], np.flatnonzero(~has_detection), [T]])
    t = np.arange(T)
    return np.abs(t[:, None] - missing[None, :]).min(1)


def dump_frames(path: str, rows: list[Row]) -> None:
    """Save every frame of the ok rows with its true error and candidate per-frame features (npz).

    Per frame: ``generator``, ``row`` (index into the saved rows), ``kind``, ``frame_error``
    (true MPJPE, mm), ``pred_err_mm``, the fit's per-frame energies (``energy_<term>``),
    ``reprojection_error_rel``/``_px``, ``pose_nll``, ``detection_energy``, ``inlier``,
    ``has_detection``, ``gap_distance`` (frames to the nearest gap or track end),
    ``init_disagreement_mm`` and ``frame_score_mm`` (the fit's), ``joint_acceleration`` (m/s^2), ``orientation_change`` (rad),
    ``pose_density_outliers``, ``joint_limit_violations``; and each frame's track values:
    ``track_mpjpe``, ``track_pred``, ``track_energy_per_frame``, ``track_energy_per_detected``,
    ``track_frames``, ``track_converged``, ``track_height_px``.
    """
    from optimize.track_metrics import joint_acceleration, orientation_change, predicted_error

    ok = [r for r in rows if r.fit.status == "ok" and math.isfinite(r.mpjpe)]
    columns: dict[str, list] = {}

    def put(name, values, T):
        columns.setdefault(name, []).append(np.broadcast_to(np.asarray(values), (T,)).copy())

    for index, r in enumerate(ok):
        fit, problem, T = r.fit, r.problem, r.fit.num_frames
        has = np.asarray(problem.selected) >= 0
        total = fit.energies.get("total", math.inf)
        for name, value in (("generator", r.generator), ("row", index), ("kind", r.kind), ("frame_error", r.frame_error),
                            ("pred_err_mm", fit.pred_err_mm), ("reprojection_error_rel", fit.reprojection_error_rel),
                            ("reprojection_error_px", fit.reprojection_error_px), ("pose_nll", fit.pose_nll),
                            ("detection_energy", fit.detection_energy), ("inlier", fit.inlier), ("has_detection", has),
                            ("gap_distance", _gap_distance(has)), ("init_disagreement_mm", fit.init_disagreement_mm),
                            ("frame_score_mm", fit.frame_score_mm),
                            ("joint_acceleration", joint_acceleration(fit.joints3d, problem.fps)),
                            ("orientation_change", orientation_change(fit.pose)),
                            ("pose_density_outliers", fit.pose_density_outliers),
                            ("joint_limit_violations", fit.joint_limit_violations),
                            ("track_mpjpe", r.mpjpe), ("track_pred", predicted_error(fit)),
                            ("track_pred_every", fit.pred_err_track_mm),
                            ("track_energy_per_frame", per_frame_energy(total, T)),
                            ("track_energy_per_detected", per_frame_energy(total, int(has.sum()))),
                            ("track_frames", T), ("track_converged", bool(fit.converged)),
                            ("track_height_px", r.height)):
            put(name, np.nan if value is None else value, T)
        for term, values in fit.frame_energies.items():
            put(f"energy_{term}", values, T)
    np.savez_compressed(path, **{k: np.concatenate(v) for k, v in columns.items()})


def _why(rows: list[Row], score: str) -> str:
    """The rows a score ranks among its best quarter although their true error is in the worst half."""
    ok = [r for r in rows if r.fit.status == "ok" and math.isfinite(r.mpjpe)]
    if len(ok) < 4:
        return "too few tracks"
    values = _finite_last([r.track[score] for r in ok])
    errors = np.array([r.mpjpe for r in ok])
    good = values <= np.nanquantile(values, 0.25)
    bad = errors >= np.median(errors)
    culprits = sorted((i for i in np.flatnonzero(good & bad)), key=lambda i: -errors[i])[:3]
    if not culprits:
        return "no track of the worst half ranks in the best quarter: the ranking is weak but not fooled"
    return "ranked among its best quarter with errors in the worst half: " + ", ".join(
        f"{ok[i].kind} {errors[i]:.0f} mm" for i in culprits)


def _fmt(v: float, spec: str = "+.2f") -> str:
    return format(v, spec) if isinstance(v, (int, float)) and math.isfinite(v) else "  n/a"


def _print(r: dict) -> None:
    sw = r["switches"]
    print(f"[{r['generator']}] {r['tracks']} tracks ({r['frames']} frames), {r['ok_rows']} fitted tracks and pieces "
          f"{r['kinds']}; MPJPE {r['mpjpe_mm']:.1f} mm; converged {r['converged']}/{r['ok_rows']}")
    print(f"  {'score':<20} {'Spearman':>8} {'frame':>6} {'AUC>100':>7} {'kept/rejected mm (ratio)':>26}   best "
          + "/".join(str(p) for p in YIELDS) + " % mm")
    for name, m in r["scores"].items():
        if not m["available"]:
            print(f"  {name:<20} (not available: the fits carry no predicted error)")
            continue
        best = "/".join(_fmt(v, ".1f") for v in m["best_mpjpe_mm"].values())
        print(f"  {name:<20} {_fmt(m['spearman_track']):>8} {_fmt(m['spearman_frame']):>6} "
              f"{_fmt(m['auc_frame_over_100mm'], '.2f'):>7} {m['kept']:>3} {_fmt(m['kept_mpjpe_mm'], '.1f'):>5} / "
              f"{m['rejected']:>3} {_fmt(m['rejected_mpjpe_mm'], '.1f'):>5} ({_fmt(m['kept_over_rejected'], '.2f')})   {best}")
    oracle = r["oracle"]
    print(f"  {'oracle (true error)':<20} {'':>8} {_fmt(oracle['spearman_frame']):>6} {'':>7} "
          f"{'(' + _fmt(oracle['kept_over_rejected'], '.2f') + ')':>26}   "
          + "/".join(_fmt(v, ".1f") for v in r["oracle_best_mpjpe_mm"].values()))
    print(f"  default score by kind: " + ", ".join(f"{k} {_fmt(v)}" for k, v in r["by_kind_spearman"].items()))
    print(f"  identity switches: recall {_fmt(sw['recall'], '.2f')} precision {_fmt(sw['precision'], '.2f')} "
          f"({sw['candidates']} candidate cuts, {sw['splits']} splits, {sw['hits']} of {sw['true_switches']} true switches found, {sw['false_cuts']} false cuts)")
    print(f"  selection reasons (default score): {r['reasons']}", flush=True)


def misses(results: dict[str, dict], rows_by: dict[str, list[Row]]) -> dict[str, list[str]]:
    """score -> the targets it misses, each with the generator that defeats it and why."""
    out: dict[str, list[str]] = {}
    for score in SCORES:
        lines = []
        for name, r in results.items():
            m = r["scores"][score]
            if not m["available"]:
                continue
            floor = TARGETS["spearman_pooled"] if name == "pooled" else TARGETS["spearman_track"]
            checks = (("Spearman per track", m["spearman_track"], floor, ">=", "+.2f"),
                      ("Spearman per frame", m["spearman_frame"], TARGETS["spearman_frame"], ">=", "+.2f"),
                      ("kept/rejected", m["kept_over_rejected"], TARGETS["kept_over_rejected"], "<=", ".2f"))
            for label, value, bound, sense, spec in checks:
                good = math.isfinite(value) and (value >= bound if sense == ">=" else value <= bound)
                if not good:
                    ceiling = {"Spearman per frame": r["oracle"]["spearman_frame"],
                               "kept/rejected": r["oracle"]["kept_over_rejected"]}.get(label)
                    lines.append(f"{name} defeats it: {label} {_fmt(value, spec)} (target {sense} {bound}"
                                 + ("" if ceiling is None else f"; the true track error itself: {_fmt(ceiling, spec)}")
                                 + "); " + _why(rows_by[name], score))
        out[score] = lines if any(r["scores"][score]["available"] for r in results.values()) else ["not available"]
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="12 tracks x 60-90 frames per generator, L-BFGS lowered to 60 iterations per stage")
    parser.add_argument("--tracks", type=int, default=None, help="tracks per generator (default 52, quick 12)")
    parser.add_argument("--generators", default=",".join(GENERATORS), help="comma-separated subset of "
                        + ", ".join(GENERATORS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-iter", type=int, default=None, help="L-BFGS iterations per stage (default: BAConfig's, quick 60)")
    parser.add_argument("--compare", action="store_true", help="also fit with BAConfig.paper() (pixels, E/length)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dump", default=None, help="save every frame's true error and features here (.npz)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from bench.ba_accuracy import load_models

    wall, cpu = time.perf_counter(), time.process_time()
    body_model, prior = load_models()
    num = args.tracks or (12 if args.quick else 52)
    frames = (60, 90) if args.quick else (90, 150)
    names = [g for g in args.generators.split(",") if g]
    unknown = set(names) - set(GENERATORS)
    if unknown:
        raise SystemExit(f"--generators {sorted(unknown)}: use some of {sorted(GENERATORS)}")
    tracks = {g: GENERATORS[g](body_model, num, frames, args.seed) for g in names}
    gen_cpu = time.process_time() - cpu
    print(f"{num} tracks per generator ({', '.join(names)}), {frames[0]}-{frames[1]} frames, "
          f"{sum(t.problem.num_frames for g in tracks.values() for t in g)} frames in all; generated in "
          f"{gen_cpu:.1f} CPU s", flush=True)
    overrides = {"max_iter": args.max_iter or 60} if (args.max_iter or args.quick) else {}
    configs = {"default": BAConfig(**overrides)}
    if args.compare:
        configs["paper"] = BAConfig.paper(**overrides)
    selection = SelectionConfig()
    everything = [t for g in names for t in tracks[g]]
    out: dict = {}
    for config_name, config in configs.items():
        fit_cpu = time.process_time()
        fits = bundle_adjust([t.problem for t in everything], body_model, prior, config)
        fit_cpu = time.process_time() - fit_cpu
        fits_by = {}
        k = 0
        for g in names:
            fits_by[g] = fits[k : k + len(tracks[g])]
            k += len(tracks[g])
        rows_by = {g: fit_rows(tracks[g], fits_by[g]) for g in names}
        rows_by["pooled"] = [r for g in names for r in rows_by[g]]
        add_rank_product(rows_by["pooled"])
        if args.dump and config_name == "default":
            dump_frames(args.dump, rows_by["pooled"])
        results = {g: evaluate(g, tracks[g], fits_by[g], rows_by[g], selection) for g in names}
        results["pooled"] = evaluate("pooled", everything, fits, rows_by["pooled"], selection)
        print(f"== {config_name} BAConfig (units={config.units}, e_norm={config.e_norm}); selection score "
              f"{selection.score!r}, keep rule {selection.mode} {selection.keep_fraction:g}; fitted in {fit_cpu:.0f} CPU s")
        for r in results.values():
            _print(r)
        out[config_name] = {"results": results, "fit_cpu_s": round(fit_cpu, 1), "misses": misses(results, rows_by)}
    results, missed = out["default"]["results"], out["default"]["misses"]
    default = BENCH_SCORE.get(selection.score, selection.score)
    per_generator = {g: results[g]["scores"][default] for g in names}
    hard = results.get("hard", results["pooled"])["switches"]
    summary = {
        "default_score": default,
        "spearman_pooled": results["pooled"]["scores"][default].get("spearman_track", math.nan),
        "spearman_min_generator": min((m.get("spearman_track", math.nan) for m in per_generator.values()), default=math.nan),
        "spearman_frame": results["pooled"]["scores"][default].get("spearman_frame", math.nan),
        "spearman_frame_min_generator": min((m.get("spearman_frame", math.nan) for m in per_generator.values()),
                                            default=math.nan),
        "kept_over_rejected_max": max((m.get("kept_over_rejected", math.nan) for m in per_generator.values()),
                                      default=math.nan),
        "switch_recall": hard["recall"], "switch_precision": hard["precision"],
        "switch_generator": "hard" if "hard" in results else "pooled",
    }
    print("\nmissed targets (target: Spearman >= 0.5 per generator, >= 0.6 pooled, frame >= 0.5, kept/rejected <= 0.7):")
    for score, lines in missed.items():
        print(f"  {score}: " + ("all met" if not lines else ""))
        for line in lines:
            print(f"    {line}")
    switch_ok = (summary["switch_recall"] >= TARGETS["switch_recall"]
                 and summary["switch_precision"] >= TARGETS["switch_precision"])
    print(f"identity switches on {summary['switch_generator']}: recall {_fmt(summary['switch_recall'], '.2f')}, "
          f"precision {_fmt(summary['switch_precision'], '.2f')} (targets >= 0.9): {'met' if switch_ok else 'missed'}")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"wall {wall:.0f} s, {cpu:.0f} CPU s", flush=True)
    summary.update({"tracks_per_generator": num, "frames": frames, "targets": TARGETS,
                    "targets_missed": missed, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                    "details": {k: v["results"] for k, v in out.items()}})
    print(json.dumps(summary, default=float))
    return summary


if __name__ == "__main__":
    main()
