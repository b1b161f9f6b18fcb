"""The selection rules: one track's verdict and one clip's (paper section 4, extended to every person).

A track is kept when its fit is sound (status ``ok``, converged, long enough, moving, enough
inlier frames) and its selection score (``SelectionConfig.score``, :func:`track_score`)
passes the run's threshold. The threshold is either derived from the run itself
(``mode="fraction"``, the default: keep the best ``keep_fraction`` of the eligible tracks,
as the paper kept about 10 % of Kinetics) or fixed (``mode="threshold"``, e.g. the
threshold an earlier run recorded). Inlier frames are the fit's own flags
(the track's own detection on the frame and its reprojection energy below tau_R, in the
fit's size-invariant units) on frames whose 3D pose the fit determines (finite predicted
error), so inlier frames <= detected frames.

A fit that stopped at its iteration budget without meeting its own stopping criterion
(``TrackFit.converged`` False) is never selected: it is rejected as ``not_converged``.

A track that bundle adjustment cut at identity switches (status ``split``) is never
selected itself (reason ``split``); :func:`expand_pieces` gives its pieces, which are
selected like any track, except that a piece with fewer than ``min_frames`` detected frames
is rejected as ``identity_switch``.

A clip is *kept* when at least one of its tracks is selected; otherwise it is rejected
with ``no_track_selected``, or ``all_tracks_diverged`` when no track fitted soundly, or
counted *failed* when every track's fit raised. :func:`bound_note` names the option and
value behind a track's reason in ``rejected/`` messages.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.records import RejectReason, TrackFit, TrackProblem

logger = logging.getLogger(__name__)

SELECTION_MODES = ("threshold", "fraction")
SELECTION_SCORES = ("e_norm", "predicted_error", "predicted_x_energy")


class TrackReason:
    """``selection_reason`` values of ``tracks/``."""

    SELECTED = "selected"
    E_NORM_ABOVE_THRESHOLD = "e_norm_above_threshold"
    BELOW_BEST_FRACTION = "below_best_fraction"
    TOO_FEW_INLIERS = "too_few_inliers"
    TOO_SHORT = "too_short"
    NOT_MOVING = "not_moving"
    DIVERGED = "diverged"
    UNDETERMINED = "undetermined"  # the selection score is not finite: the fit does not determine the person
    NOT_CONVERGED = "not_converged"  # the solver stopped at its iteration budget, not at its own criterion
    FAILED = "failed"
    SPLIT = "split"  # the track was cut at identity switches; its pieces have rows of their own
    IDENTITY_SWITCH = "identity_switch"  # a piece between identity switches too short to keep


@dataclass(frozen=True)
class SelectionConfig:
    """How tracks are selected.

    Attributes:
        mode: "fraction" (default: keep the ``keep_fraction`` of eligible tracks with the
            lowest score in the run) or "threshold" (keep score <= ``e_norm_threshold``, the
            ``--selection_threshold`` flag).
        score: the selection score (:func:`track_score`, lower is better), one of
            :data:`SELECTION_SCORES`; written to ``tracks.selection_score`` when a shard is
            committed, so the selection over a whole output thresholds what was committed.
            The default, the track's predicted 3D joint error, is the score of
            ``bench.selection`` that ranks true error best on its tuning generator
            (docs/bundle_adjustment.md, "Selection score").
        e_norm_threshold: score bound of ``threshold`` mode, ``--selection_threshold`` (the
            field keeps the name of the column and the recorded config; its units are the score's:
            E_norm in the fit's size-invariant units, the predicted error in mm). It depends
            on the bundle-adjustment weights, so there is no default: take it from an
            earlier run's ``tracks.e_norm_threshold`` or from the score distribution of a
            ``--frames all`` run.
        keep_fraction: fraction in (0, 1] of eligible tracks ``fraction`` mode keeps (the
            paper kept about 10 % of Kinetics).
        min_frames: tracks with fewer detected frames are ``too_short``.
        min_inlier_fraction: tracks whose inlier frames / detected frames is below this
            are ``too_few_inliers``.
        min_trajectory_length_m: tracks whose 3D trajectory is shorter (metres summed
            over joints and frames) are ``not_moving``: their E_norm is meaningless.
    """

    mode: str = "fraction"
    score: str = "predicted_error"
    e_norm_threshold: float | None = None
    keep_fraction: float = 0.1
    min_frames: int = 8
    min_inlier_fraction: float = 0.5
    min_trajectory_length_m: float = 1e-3

    def __post_init__(self) -> None:
        if self.mode not in SELECTION_MODES:
            raise ValueError(f"selection mode {self.mode!r}: use one of {SELECTION_MODES}")
        if self.score not in SELECTION_SCORES:
            raise ValueError(f"selection score {self.score!r}: use one of {SELECTION_SCORES}")
        if not 0 < self.keep_fraction <= 1:
            raise ValueError(f"keep_fraction={self.keep_fraction}: must be in (0, 1]")
        if self.mode == "threshold" and self.e_norm_threshold is None:
            raise ValueError("selection mode 'threshold' needs a threshold on the selection score: pass "
                             "--selection_threshold (or --selection fraction --keep_fraction F)")
        if self.e_norm_threshold is not None and not self.e_norm_threshold > 0:
            raise ValueError(f"e_norm_threshold={self.e_norm_threshold}: must be > 0")
        if not 0 <= self.min_inlier_fraction <= 1:
            raise ValueError(f"min_inlier_fraction={self.min_inlier_fraction}: must be in [0, 1]")


@dataclass(frozen=True)
class TrackSelection:
    """The selection verdict for one fitted track.

    Attributes:
        selected: the track's frames go to ``frames/``.
        reason: a :class:`TrackReason` value.
        threshold: the E_norm threshold applied (NaN when the run had no eligible track).
        num_detected_frames: frames where the tracker kept a detection.
        num_inlier_frames: inlier frames of the fit.
        score: the track's selection score (``SelectionConfig.score``; lower is better).
    """

    selected: bool
    reason: str
    threshold: float
    num_detected_frames: int
    num_inlier_frames: int
    score: float = math.nan


def expand_pieces(problem: TrackProblem, fit: TrackFit) -> list[tuple[TrackProblem, TrackFit]]:
    """(problem, fit), then one (piece problem, piece fit) per piece of a track cut at identity
    switches (``fit.status == "split"``); pure, so any stage that selects can call it.

    Selection of a run should see the pieces: ``[pf for p, f in fitted for pf in expand_pieces(p, f)]``.
    """
    out = [(problem, fit)]
    for piece in getattr(fit, "pieces", ()) or ():
        sub = problem.piece(piece.piece_start, piece.piece_start + piece.num_frames, piece.track_id)
        out.append((sub, piece))
    return out


def inlier_mask(problem: TrackProblem, fit: TrackFit) -> np.ndarray:
    """(T,) bool: the fit's inlier frames that count: the track's own detection on the frame,
    and a determined 3D pose (a frame whose predicted error is inf or NaN is uncertain,
    never an inlier, whatever its reprojection)."""
    mask = np.asarray(fit.inlier, dtype=bool) & np.asarray(problem.has_detection, dtype=bool)
    predicted = getattr(fit, "pred_err_mm", None)
    if predicted is not None:
        mask &= np.isfinite(np.asarray(predicted, dtype=np.float64))
    return mask


def track_score(fit: TrackFit, score: str) -> float:
    """A fit's selection score (lower is better); inf when the fit does not define it.

    Args:
        fit: the fitted track.
        score: a :data:`SELECTION_SCORES` value: ``e_norm`` (``fit.e_norm``, see
            ``BAConfig.e_norm``), ``predicted_error`` (the track's predicted 3D joint error,
            mm, :func:`optimize.track_metrics.predicted_error`) or ``predicted_x_energy``
            (predicted error x sqrt(E_norm): the uncertainty, with the fit's residual as a
            guard against a well-determined fit of the wrong detections).
    """
    if score == "e_norm":
        return float(fit.e_norm)
    if score not in SELECTION_SCORES:
        raise ValueError(f"selection score {score!r}: use one of {SELECTION_SCORES}")
    from optimize.track_metrics import predicted_error

    predicted = float(predicted_error(fit)) if getattr(fit, "pred_err_mm", None) is not None else math.inf
    if score == "predicted_error":
        return predicted
    energy = float(fit.e_norm)
    return predicted * math.sqrt(energy) if math.isfinite(energy) and energy >= 0 else math.inf


def eligibility(problem: TrackProblem, fit: TrackFit, config: SelectionConfig) -> str | None:
    """The reason a track cannot be selected whatever the threshold, or None if eligible."""
    if fit.status == "split":
        return TrackReason.SPLIT
    if fit.status == "failed":
        return TrackReason.FAILED
    # A fit with non-finite numbers is never written as data, whatever its status says.
    if fit.status != "ok" or not (np.isfinite(fit.pose).all() and np.isfinite(fit.camera).all()):
        return TrackReason.DIVERGED
    # A fit stopped by its iteration budget is not a solution: its energy and its predicted
    # error describe an iterate, so no score can vouch for it.
    if not fit.converged:
        return TrackReason.NOT_CONVERGED
    detected = int(problem.has_detection.sum())
    if detected < config.min_frames:
        return TrackReason.IDENTITY_SWITCH if getattr(fit, "parent_track_id", -1) >= 0 else TrackReason.TOO_SHORT
    if not fit.trajectory_length >= config.min_trajectory_length_m or not math.isfinite(fit.e_norm):
        return TrackReason.NOT_MOVING
    inliers = int(inlier_mask(problem, fit).sum())
    if detected == 0 or inliers / detected < config.min_inlier_fraction:
        return TrackReason.TOO_FEW_INLIERS
    if config.score != "e_norm" and not math.isfinite(track_score(fit, config.score)):
        return TrackReason.UNDETERMINED
    return None


def fraction_threshold(e_norms: Sequence[float], keep_fraction: float) -> float:
    """E_norm threshold keeping the best ``keep_fraction`` of the given (eligible) tracks.

    Keeps ``ceil(keep_fraction * n)`` tracks (at least one when n > 0; ties at the
    threshold are all kept). NaN when there is no track.
    """
    values = np.sort(np.asarray([v for v in e_norms if math.isfinite(v)], dtype=np.float64))
    if values.size == 0:
        return float("nan")
    keep = max(1, math.ceil(keep_fraction * values.size - 1e-9))
    return float(values[keep - 1])


def run_threshold(e_norms: Sequence[float], config: SelectionConfig) -> float:
    """The E_norm threshold of the run: fixed, or from the eligible tracks' E_norms."""
    if config.mode == "threshold":
        return float(config.e_norm_threshold)
    return fraction_threshold(e_norms, config.keep_fraction)


def select_track(problem: TrackProblem, fit: TrackFit, config: SelectionConfig, threshold: float) -> TrackSelection:
    """Apply the eligibility checks and the run's threshold on the selection score to one track."""
    detected = int(problem.has_detection.sum())
    # an inlier is a frame with the track's own detection (fits made before that rule too)
    inliers = int(inlier_mask(problem, fit).sum()) if fit.status == "ok" else 0
    reason = eligibility(problem, fit, config)
    score = track_score(fit, config.score) if fit.status == "ok" else math.inf
    if reason is None:
        if math.isfinite(threshold) and score <= threshold:
            reason = TrackReason.SELECTED
        elif config.mode == "fraction":
            reason = TrackReason.BELOW_BEST_FRACTION
        else:
            reason = TrackReason.E_NORM_ABOVE_THRESHOLD
    return TrackSelection(reason == TrackReason.SELECTED, reason, float(threshold), detected, inliers, float(score))


def clip_verdict(selections: Sequence[TrackSelection]) -> tuple[str, str | None]:
    """Outcome of a clip from its tracks' verdicts.

    Returns:
        ("kept", None), ("rejected", RejectReason) or ("failed", RejectReason.FAILED).
    """
    if any(s.selected for s in selections):
        return "kept", None
    selections = [s for s in selections if s.reason != TrackReason.SPLIT]  # its pieces speak for it
    if selections and all(s.reason == TrackReason.FAILED for s in selections):
        return "failed", RejectReason.FAILED
    if selections and all(s.reason in (TrackReason.FAILED, TrackReason.DIVERGED) for s in selections):
        return "rejected", RejectReason.ALL_TRACKS_DIVERGED
    return "rejected", RejectReason.NO_TRACK_SELECTED


def bound_note(fit: TrackFit, verdict: TrackSelection, config: SelectionConfig) -> str:
    """The bound (option and value) behind a track's selection reason, for messages."""
    reason = verdict.reason
    name = "E_norm" if config.score == "e_norm" else config.score
    if reason == TrackReason.E_NORM_ABOVE_THRESHOLD:
        return f" ({name} {verdict.score:.4g} > --selection_threshold {verdict.threshold:.4g})"
    if reason == TrackReason.BELOW_BEST_FRACTION:
        return (f" ({name} {verdict.score:.4g} > {verdict.threshold:.4g}, the run's best --keep_fraction "
                f"{config.keep_fraction:g}; raise it or pass --selection_threshold)")
    if reason == TrackReason.UNDETERMINED:
        return (f" ({name} is not finite: the fit leaves the person's 3D pose undetermined, {verdict.num_inlier_frames} "
                f"of {verdict.num_detected_frames} detected frames inliers; check the clip's keypoints, or select "
                "by --selection_score e_norm)")
    if reason == TrackReason.TOO_SHORT:
        return f" ({verdict.num_detected_frames} detected frames < --min_track_frames {config.min_frames})"
    if reason == TrackReason.TOO_FEW_INLIERS:
        return (f" ({verdict.num_inlier_frames} of {verdict.num_detected_frames} frames inliers < "
                f"--min_inlier_fraction {config.min_inlier_fraction:g})")
    if reason == TrackReason.NOT_CONVERGED:
        return (f" (stopped after {fit.iterations} iterations without meeting its stopping criterion; "
                "raise --ba_config lm_max_iter / max_iter or inspect the track)")
    if reason == TrackReason.NOT_MOVING:
        return f" (trajectory {fit.trajectory_length:.3g} m < {config.min_trajectory_length_m:g} m)"
    return ""


THRESHOLD_FLAG = "--selection_threshold"
DEPRECATED_THRESHOLD_FLAG = "--e_norm_threshold"  # the old name of THRESHOLD_FLAG, still accepted


def threshold_from_flags(selection_threshold: float | None, e_norm_threshold: float | None,
                         warn: bool = True) -> float | None:
    """The threshold the flags give: ``--selection_threshold``, or the value of its deprecated
    alias ``--e_norm_threshold`` (with ``warn``, one warning naming the new flag).

    Args:
        selection_threshold: ``--selection_threshold`` (None: not given).
        e_norm_threshold: ``--e_norm_threshold`` (None: not given).
        warn: log the deprecation (once per command: the caller that parses the flags).

    Raises:
        ValueError: both are given with different values.
    """
    if e_norm_threshold is None:
        return selection_threshold
    if selection_threshold is not None and selection_threshold != e_norm_threshold:
        raise ValueError(f"{THRESHOLD_FLAG} {selection_threshold:g} and {DEPRECATED_THRESHOLD_FLAG} {e_norm_threshold:g}: "
                         f"pass only {THRESHOLD_FLAG} ({DEPRECATED_THRESHOLD_FLAG} is its deprecated old name)")
    if warn:
        logger.warning("%s is deprecated: pass %s %g instead (the same bound on the selection score, in the "
                       "score's own units: mm for the default predicted_error)", DEPRECATED_THRESHOLD_FLAG,
                       THRESHOLD_FLAG, e_norm_threshold)
    return e_norm_threshold
