"""Whole-clip bundle adjustment of many person tracks at once.

:func:`bundle_adjust` puts each :class:`~optimize.problem.TrackProblem` in the solver's
units (``BAConfig.units``: pixels of the person rescaled to ``reference_height_px``, so
energies and inliers do not depend on the person's size on screen), cuts tracks at
identity switches, packs them into padded,
masked batches (length buckets with at most 5 % padded frames and at most
``BAConfig.max_batch_frames`` padded frames per solver call), minimises every track's
energy (Levenberg-Marquardt, :mod:`optimize.lm`, or the batched L-BFGS of
:mod:`optimize.solver`, through the continuation on tau_R, :func:`continuation`), and unpacks one
:class:`~optimize.problem.TrackFit` per problem. A track's fit does not depend on the
other tracks of its batch, bit for bit on a CPU (see ``track_total`` and
``TAIL_PAD_FRAMES``; ``docs/bundle_adjustment.md``).

Parameters per track (the paper's 10 + 75 T): betas (10), and per frame the pose (72
axis-angle) and the camera. Inside the solver the camera is ``(log(s / s_ref),
tx / u, ty / u)`` with ``s_ref`` the track's median init scale and the translation unit
``u = TRANSLATION_UNIT * s_ref`` (the pixels of 20 cm on the body): the scale stays
positive, and one unit of every variable moves the keypoints by a comparable number of
pixels (curvatures of the same order), which a scalar-initialised L-BFGS needs. The betas enter as ``sqrt(T) * beta``: they act on all T frames, so
without this their curvature would be T times that of a frame's pose, an ill
conditioning that a scalar-initialised L-BFGS pays for in iterations. Each track minimises its energy divided by its frame count, so one
absolute ``ftol`` means the same for a 30-frame and a 1,000-frame track (the minimiser
is unchanged).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from models.geometry import axis_angle_to_matrix
from optimize.config import REFERENCE_BODY_HEIGHT_M, BAConfig
from optimize.lm import LMProblem, levenberg_marquardt
from optimize.energy import TERM_NAMES, TrackBatch, energy_terms, gmm_nll_offset, reprojection_penalty, track_total
from optimize.problem import NUM_BETAS, NUM_CAMERA, NUM_POSE, TrackFit, TrackProblem
from optimize.settings import EnergySettings
from optimize.track_metrics import (
    detection_inliers, e_norm, frame_score_mm, init_disagreement_mm, inlier_frames, keypoint_error_px,
    per_frame_energy, predicted_error, relative_error, switch_candidates, track_predicted_error, track_scale,
    trajectory_length,
)
from optimize.solver import SolverResult, lbfgs_batched, lbfgs_per_track, lbfgs_summed
from optimize.plausibility import joint_limit_violations, pose_density_outliers
from optimize.uncertainty import fit_uncertainty

logger = logging.getLogger(__name__)

FRAME_PARAMS = NUM_POSE + NUM_CAMERA  # 75
TRANSLATION_UNIT = 0.2  # metres: solver units of the camera translation
# Every batch gets this many masked frames after its longest track. Vectorised CPU kernels
# handle the last < 32 values of a tensor in a scalar loop, whose exp/log/sin/cos can round
# differently (1 ulp) from the vector path; with the padding no real frame of any track is
# ever in that tail, so a track computes the same bits alone or anywhere in a batch.
TAIL_PAD_FRAMES = 4
LM_WARM_START_FTOL = 10.0  # lm_ftol multiplier of the continuation stages before the last
# initial LM damping of the stages after the first, whose start is the previous stage's
# minimum (the first stage's, BAConfig.lm_initial_damping, is for a start far from it)
LM_CONTINUATION_DAMPING = 1e-3


class PackedTracks:
    """A padded batch of tracks: fixed data, starting point and the parameter layout.

    Attributes:
        problems: the B problems, in batch order.
        batch: :class:`TrackBatch` on the solver's device and dtype.
        x0: (B, 10 + 75 T) starting parameters (solver variables).
        scale_ref: (B,) s_ref, pixels per metre.

    ``pad_frames`` masked frames are added after the longest track (see
    ``TAIL_PAD_FRAMES``). ``starts``: per problem None (the init's starting point,
    :func:`_starting_point`) or a (pose (T, 72), camera (T, 3), betas (10,)) to start from,
    solver units.
    """

    def __init__(
        self, problems: list[TrackProblem], body_model, device, dtype: torch.dtype, keypoint_init_scale: float = 1.0,
        pad_frames: int = 0, temporal_reference_fps: float | None = None, starts: list | None = None,
    ):
        self.problems = problems
        B = len(problems)
        T = max(p.num_frames for p in problems) + pad_frames
        P = max(p.num_candidates for p in problems)
        frame_mask = np.zeros((B, T), bool)
        candidates = np.zeros((B, T, P, 17, 3), np.float64)
        candidate_mask = np.zeros((B, T, P), bool)
        init_pose = np.zeros((B, T, P, NUM_POSE), np.float64)
        init_betas = np.zeros((B, T, P, NUM_BETAS), np.float64)
        image_width = np.zeros(B, np.float64)
        pose0 = np.zeros((B, T, NUM_POSE), np.float64)
        camera0 = np.zeros((B, T, NUM_CAMERA), np.float64)
        betas0 = np.zeros((B, NUM_BETAS), np.float64)
        scale_ref = np.ones(B, np.float64)
        init_scale = np.array(
            [keypoint_init_scale if p.init_source == "keypoints" else 1.0 for p in problems], np.float64
        )
        for b, p in enumerate(problems):
            t, k = p.num_frames, p.num_candidates
            frame_mask[b, :t] = True
            candidates[b, :t, :k] = p.candidates
            candidate_mask[b, :t, :k] = p.candidate_mask
            init_pose[b, :t, :k] = p.init_pose
            init_betas[b, :t, :k] = p.init_betas
            image_width[b] = p.image_size[0]
            start = None if starts is None else starts[b]
            pose0[b, :t], camera0[b, :t], betas0[b], scale_ref[b] = (
                _starting_point(p) if start is None else _given_start(*start))
        # pad frames repeat the last real frame (finite, and never looked at)
        for b, p in enumerate(problems):
            pose0[b, p.num_frames :] = pose0[b, p.num_frames - 1]
            camera0[b, p.num_frames :] = camera0[b, p.num_frames - 1]

        def tensor(a: np.ndarray) -> Tensor:
            return torch.as_tensor(a, dtype=dtype, device=device)

        cand = tensor(candidates)
        cmask = torch.as_tensor(candidate_mask, device=device)
        init_pose_t = tensor(init_pose)
        init_betas_t = tensor(init_betas)
        with torch.no_grad():
            init_joints = body_model.joints(init_pose_t, init_betas_t)
        init_joints = torch.where(cmask[..., None, None], init_joints, torch.zeros_like(init_joints))
        self.batch = TrackBatch(
            frame_mask=torch.as_tensor(frame_mask, device=device),
            candidates=cand[..., :2],
            confidence=torch.where(cmask[..., None], cand[..., 2].clamp(0.0, 1.0), torch.zeros_like(cand[..., 2])),
            candidate_mask=cmask,
            init_joints=init_joints,
            init_betas=init_betas_t,
            image_width=tensor(image_width),
            init_scale=tensor(init_scale),
            temporal_scale=_temporal_scale(problems, temporal_reference_fps, tensor),
        )
        self.num_frames_max = T
        self.scale_ref = tensor(scale_ref)
        self.betas_scale = tensor(np.sqrt([p.num_frames for p in problems]))
        self.x0 = self.encode(tensor(pose0), tensor(betas0), tensor(camera0))

    def encode(self, pose: Tensor, betas: Tensor, camera: Tensor) -> Tensor:
        """Parameters -> solver variables (B, 10 + 75 T)."""
        s_ref = self.scale_ref[:, None]
        cam = torch.stack(
            (torch.log(camera[..., 0] / s_ref), camera[..., 1] / (TRANSLATION_UNIT * s_ref),
             camera[..., 2] / (TRANSLATION_UNIT * s_ref)), -1
        )
        frames = torch.cat((pose, cam), -1).reshape(pose.shape[0], -1)
        return torch.cat((betas * self.betas_scale[:, None], frames), -1)

    def decode(self, x: Tensor, index: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Solver variables (b, n) -> pose (b, T, 72), betas (b, 10), camera (b, T, 3)."""
        s_ref = self.scale_ref if index is None else self.scale_ref[index]
        betas_scale = self.betas_scale if index is None else self.betas_scale[index]
        s_ref = s_ref[:, None]
        betas = x[:, :NUM_BETAS] / betas_scale[:, None]
        frames = x[:, NUM_BETAS:].reshape(x.shape[0], self.num_frames_max, FRAME_PARAMS)
        pose = frames[..., :NUM_POSE]
        cam = frames[..., NUM_POSE:]
        unit = TRANSLATION_UNIT * s_ref
        camera = torch.stack((s_ref * torch.exp(cam[..., 0]), unit * cam[..., 1], unit * cam[..., 2]), -1)
        return pose, betas, camera


def _nearest_kept(selected: np.ndarray) -> np.ndarray:
    """(T,) index of the nearest frame with a selected detection (ties: earlier frame)."""
    kept = np.flatnonzero(selected >= 0)
    t = np.arange(selected.shape[0])
    pos = np.clip(np.searchsorted(kept, t), 0, len(kept) - 1)
    before = kept[np.clip(pos - 1, 0, len(kept) - 1)]
    after = kept[pos]
    return np.where(np.abs(t - before) <= np.abs(after - t), before, after)


# A frame whose init is front/back flipped against its neighbours' (a regressor's
# classic failure) starts from the nearest frame that is not: see flipped_start_frames.
# FLIP_COST: radians of heading discontinuity that flipping one frame must remove to pay
# (a flipped run of L frames is undone when its two ~pi jumps outweigh L * FLIP_COST,
# i.e. runs up to about 2 pi / FLIP_COST = 25 frames).
FLIP_COST = 0.25


def flipped_start_frames(root: np.ndarray, usable: np.ndarray, cost: float = FLIP_COST) -> np.ndarray:
    """Frames whose init root orientation is front/back flipped against the track's motion.

    Each usable frame is labelled as it is or flipped (its body forward axis, SMPL's +z
    turned by the root, rotated by pi about the camera's vertical axis: ``(x, y, z) ->
    (-x, y, -z)``) so that the sum of the angles between consecutive usable frames' forward
    axes plus ``cost`` per flipped frame is least (Viterbi over the two labels, O(T)). A
    steady turn costs nothing to keep and is never flagged; a run of flipped frames
    between unflipped ones (two jumps of about pi) is flagged when shorter than about
    2 pi / cost frames; the majority orientation is kept.

    Args:
        root: (T, 3) the init's global orientation (axis-angle, radians).
        usable: (T,) bool, frames whose init counts (a selected detection, finite).
        cost: radians per flipped frame.

    Returns:
        (T,) bool, the frames labelled flipped (a subset of ``usable``).
    """
    T = root.shape[0]
    flagged = np.zeros(T, bool)
    rotation = axis_angle_to_matrix(torch.as_tensor(np.nan_to_num(np.asarray(root, np.float64))))
    forward = rotation[:, :, 2].numpy()
    frames = np.flatnonzero(usable & np.isfinite(root).all(-1))
    if len(frames) < 3:
        return flagged
    f = forward[frames]
    g = np.stack([f, f * np.array([-1.0, 1.0, -1.0])], 1)  # (N, 2 labels, 3)
    # angle between label a at frame i-1 and label b at frame i: (N-1, 2, 2)
    cosine = np.einsum("nad,nbd->nab", g[:-1], g[1:]).clip(-1.0, 1.0)
    step = np.arccos(cosine)
    total = np.array([0.0, cost])
    back = np.zeros((len(frames), 2), np.int64)
    for i in range(1, len(frames)):
        candidates = total[:, None] + step[i - 1]  # (previous label, label)
        back[i] = candidates.argmin(0)
        total = candidates.min(0) + np.array([0.0, cost])
    label = np.zeros(len(frames), np.int64)
    label[-1] = int(total.argmin())
    for i in range(len(frames) - 1, 0, -1):
        label[i - 1] = back[i, label[i]]
    if label.sum() * 2 > len(frames):  # never flip the majority (the labels are symmetric)
        label = 1 - label
    flagged[frames[label == 1]] = True
    return flagged


def _starting_point(p: TrackProblem) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per-frame init of the selected detection; skipped frames copy the nearest kept one,
    and so do frames whose init is front/back flipped against its neighbours'
    (:func:`flipped_start_frames`: only the starting point; the init term still sees the
    frame's own estimate).

    Returns pose (T, 72), camera (T, 3), betas (10,) (median over kept frames), s_ref.
    """
    selected = p.selected.astype(np.int64)
    source = _nearest_kept(selected)
    pick = selected[source]
    pose = p.init_pose[source, pick].astype(np.float64)
    kept_mask = selected >= 0
    # a regressor's flips only: the keypoint-only init takes its facing from the keypoints
    # themselves (shoulder order), so a change there is the data's, e.g. a turn seen at a
    # low frame rate, which a flip looks exactly like
    flipped = np.zeros(p.num_frames, bool)
    if p.init_source != "keypoints":
        flipped = flipped_start_frames(pose[:, :3], kept_mask)
    if flipped.any() and (kept_mask & ~flipped).any():
        agree = np.where(kept_mask & ~flipped, selected, -1)
        pose = pose[_nearest_kept(agree)]
    camera = p.init_camera[source, pick].astype(np.float64)
    kept = np.flatnonzero(kept_mask)
    betas = np.median(p.init_betas[kept, selected[kept]].astype(np.float64), axis=0)
    scales = camera[:, 0]
    good = np.isfinite(scales) & (scales > 0)
    scale_ref = float(np.median(scales[good])) if good.any() else 1.0
    camera[~good, 0] = scale_ref
    return pose, camera, betas, scale_ref


def _given_start(pose: np.ndarray, camera: np.ndarray, betas: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A given starting point as :func:`_starting_point` returns one (s_ref: its median scale)."""
    camera = np.array(camera, np.float64)
    return np.asarray(pose, np.float64), camera, np.asarray(betas, np.float64), float(np.median(camera[:, 0]))


def _model_on(module, device, dtype):
    """``module`` on device/dtype, copied (never moved in place) when it differs."""
    if module is None or not isinstance(module, torch.nn.Module):
        return module
    tensors = list(module.buffers()) + list(module.parameters())
    if all(t.device == torch.device(device) and (not t.is_floating_point() or t.dtype == dtype) for t in tensors):
        return module
    return copy.deepcopy(module).to(device=device, dtype=dtype)


def _check_problem(problem: TrackProblem) -> str | None:
    """None if the problem can be solved, else the reason it cannot."""
    try:
        problem.validate()
    except ValueError as error:
        return str(error)
    if not (problem.selected >= 0).any():
        return (f"TrackProblem {problem.clip_id}#{problem.track_id} has no selected detection; "
                "the tracker must keep at least one frame of a track.")
    return None


SPLIT_TRACK_ID_STRIDE = 1000  # piece k (0-based) of track i gets id i + 1000 (k + 1)


def bundle_adjust(
    problems: list[TrackProblem],
    body_model,
    prior,
    config: BAConfig | None = None,
    device: str | torch.device = "cpu",
) -> list[TrackFit]:
    """Bundle-adjust every track over its whole clip (paper sections 3.2 and 4).

    Before the fit each track is put in the solver's units (``BAConfig.units``: in
    "relative" units its pixel inputs are rescaled to a ``reference_height_px`` person),
    its skipped frames lose their candidates (unless ``match_skipped_frames``), and, with
    ``split_identity_switches``, a track whose detections jump to another person is cut
    there and its pieces are fitted as tracks of their own. After the fit the image-space
    outputs go back to image pixels and each frame gets its quality figures (see
    :class:`~optimize.problem.TrackFit`).

    Args:
        problems: tracks to fit (any lengths; they are batched together).
        body_model: :class:`models.body_model.BodyModel` (``joints``,
            ``joints_and_keypoints``); copied to ``device``/``config.dtype`` if needed.
        prior: :class:`models.gmm_prior.GMMPrior` (``nll``); may be None when the prior
            term is off or ``w_gmm`` is 0.
        config: weights, caps, switches and solver settings (default :class:`BAConfig`).
        device: "cpu", "cuda", ...

    Returns:
        One :class:`TrackFit` per problem, in input order. A problem that cannot be
        solved (invalid arrays, no selected detection, no valid person scale) has status
        "failed" (message says why); a track whose energy or parameters stop being finite
        or explode has status "diverged" and its arrays hold the last finite iterate (never
        NaN or Inf); a track cut at identity switches has status "split" and its
        ``pieces``.
    """
    config = config or BAConfig()
    dtype = config.torch_dtype
    device = torch.device(device)
    body = _model_on(body_model, device, dtype)
    gmm = _model_on(prior, device, dtype)
    offset = gmm_nll_offset(gmm) if (gmm is not None and config.use_prior and config.w_gmm > 0) else 0.0

    fits: list[TrackFit | None] = [None] * len(problems)
    candidates: dict[int, list[int]] = {}
    steps: dict[int, list[int]] = {}  # the step and size candidates, which need confirming
    for i, problem in enumerate(problems):
        reason = _check_problem(problem)
        if reason is not None:
            fits[i] = TrackFit.failed(problem, reason)
            continue
        found = _identity_switches(problem, config) if config.split_identity_switches else []
        if found:
            candidates[i] = [t for t, _ in found]
            steps[i] = [t for t, test in found if test != "jump"]
    gains = {i: [math.nan] * len(cuts) for i, cuts in candidates.items()}
    if config.switch_confirm and any(steps.values()):
        tested = confirmation_gains({i: problems[i] for i in steps if steps[i]}, {i: c for i, c in steps.items() if c},
                                    body, gmm, offset, config, device)
        for i, cuts in tested.items():
            step_gain = dict(zip(steps[i], cuts))
            gains[i] = [step_gain.get(t, math.nan) for t in candidates[i]]
    # a jump candidate (the confirmation's statistic saturates there: the camera's temporal
    # term is capped), and an untested one (NaN: too few detections around it, or a failed
    # window fit), keep the detections' verdict
    switches = {i: [c for c, g in zip(cuts, gains[i]) if not g <= config.switch_confirm_gain]
                for i, cuts in candidates.items()}
    switches = {i: cuts for i, cuts in switches.items() if cuts}
    jobs: list[_Job] = []
    for i, problem in enumerate(problems):
        if fits[i] is not None:
            continue
        parts = _pieces(problem, switches[i]) if i in switches else [(problem, 0)]
        for part, start in parts:
            factor, scale = _unit_factor(part, config)
            if factor is None:
                jobs.append(_Job(i, part, start, 1.0, float("nan"), None, TrackFit.failed(part, (
                    f"TrackProblem {part.clip_id}#{part.track_id} has no valid person scale (no selected "
                    "detection with an init camera scale s > 0 or with 5 confident keypoints); its "
                    "reprojection cannot be put in relative units. Check the init camera and keypoints."
                )).replace(piece_start=start)))
                continue
            jobs.append(_Job(i, part, start, factor, scale, _to_solver_units(part, factor, config), None))
    todo = [j for j, job in enumerate(jobs) if job.fit is None]
    solved = _solve_all([jobs[j].solver_problem for j in todo], body, gmm, offset, config, device)
    for j, fit in zip(todo, solved):
        jobs[j].fit = _finish(fit, jobs[j], config)
    by_owner: dict[int, list[_Job]] = {}
    for job in jobs:
        by_owner.setdefault(job.owner, []).append(job)
    for i, owned in by_owner.items():
        if i in switches:
            fits[i] = _split_fit(problems[i], switches[i], owned)
        else:
            fits[i] = owned[0].fit
        if i in candidates:
            frame_index = problems[i].frame_index
            fits[i] = fits[i].replace(switch_candidates=tuple(int(frame_index[c]) for c in candidates[i]),
                                      switch_gain=tuple(float(g) for g in gains[i]))
    return fits  # type: ignore[return-value]


class _Job:
    """One track (or piece) to fit: where it came from and its units."""

    def __init__(self, owner, problem, start, factor, scale, solver_problem, fit):
        self.owner, self.problem, self.start = owner, problem, start
        self.factor, self.scale = factor, scale
        self.solver_problem, self.fit = solver_problem, fit


def _identity_switches(problem: TrackProblem, config: BAConfig) -> list[tuple[int, str]]:
    """:func:`~optimize.track_metrics.switch_candidates` with ``config``'s thresholds."""
    return switch_candidates(
        problem.keypoints, problem.selected, problem.init_camera, problem.fps,
        config.switch_speed_heights_per_s, config.switch_slack_heights, config.switch_size_ratio,
        config.switch_persistence, REFERENCE_BODY_HEIGHT_M, config.switch_step_heights, config.switch_step_sigmas,
        config.switch_step_window, config.switch_step_gap_heights_per_s, config.switch_step_shared,
    )


def _unit_factor(problem: TrackProblem, config: BAConfig) -> tuple[float | None, float]:
    """(solver pixels per image pixel, the person's scale px/m); (None, NaN) without a valid scale."""
    scale = track_scale(problem.init_camera, problem.selected, problem.keypoints)
    if scale is None or not math.isfinite(scale) or scale <= 0:
        return None, math.nan
    factor = config.reference_height_px / (REFERENCE_BODY_HEIGHT_M * scale) if config.units == "relative" else 1.0
    return factor, scale


def _solve_all(solver_problems: list[TrackProblem], body, gmm, offset, config: BAConfig, device,
               uncertainty: bool = True, starts: list | None = None) -> list[TrackFit]:
    """Solver-unit fits of ``solver_problems`` (in order), in length batches of solver calls
    (``starts``: see :class:`PackedTracks`)."""
    batch_frames = config.max_batch_frames
    if config.solver == "lm":
        batch_frames = min(batch_frames, config.lm_max_batch_frames)
    out: list[TrackFit | None] = [None] * len(solver_problems)
    for group in _length_batches(solver_problems, batch_frames):
        batch = [solver_problems[g] for g in group]
        given = None if starts is None else [starts[g] for g in group]
        for g, fit in zip(group, _solve_batch(batch, body, gmm, offset, config, device, uncertainty, given)):
            out[g] = fit
    return out  # type: ignore[return-value]


def own_detections(problem: TrackProblem) -> TrackProblem:
    """The problem with one candidate per frame, the track's own (selected) detection: a fit
    that must explain what the tracker followed, not whichever neighbour is closer."""
    slots = np.arange(problem.num_candidates)
    own = problem.candidate_mask & (slots[None, :] == np.asarray(problem.selected)[:, None])
    return problem.replace(candidate_mask=own)


class Window(NamedTuple):
    """A confirmation window around a candidate cut (:func:`confirmation_windows`).

    Attributes:
        whole: the window's frames as one track.
        before: its frames up to the last detected frame before the cut.
        after: its frames from the cut on.
        detected_frames: detected frames in the window.
        after_start: position of ``after``'s first frame in ``whole``.
    """

    whole: TrackProblem
    before: TrackProblem
    after: TrackProblem
    detected_frames: int
    after_start: int


def confirmation_windows(problem: TrackProblem, cuts: list[int], window: int) -> list[Window | None]:
    """Per candidate cut, the :class:`Window` around it.

    The window holds up to ``window`` detected frames on each side of the cut, never
    reaching past the neighbouring candidates; ``before`` ends at the last detected frame
    before the cut and ``after`` starts at the cut (a detected frame). None where a side has
    fewer than 3 detected frames (too few to fit a side on its own).
    """
    detected = np.flatnonzero(np.asarray(problem.selected) >= 0)
    bounds = [0, *cuts, problem.num_frames]
    out: list[Window | None] = []
    for k, cut in enumerate(cuts):
        before = detected[(detected >= bounds[k]) & (detected < cut)][-window:]
        after = detected[(detected >= cut) & (detected < bounds[k + 2])][:window]
        if len(before) < 3 or len(after) < 3:
            out.append(None)
            continue
        first, last = int(before[0]), int(after[-1]) + 1
        tid = problem.track_id
        out.append(Window(problem.piece(first, last, tid), problem.piece(first, int(before[-1]) + 1, tid),
                          problem.piece(int(after[0]), last, tid), len(before) + len(after), int(after[0]) - first))
    return out


def confirmation_gains(problems: dict[int, TrackProblem], candidates: dict[int, list[int]], body, gmm, offset,
                       config: BAConfig, device) -> dict[int, list[float]]:
    """Per track, per candidate cut: the energy that splitting its window saves per detected frame.

    Each candidate's window (:func:`confirmation_windows`, ``switch_confirm_window`` detected
    frames a side), restricted to the track's own detections (:func:`own_detections`), is
    fitted three times, as one track and as its two sides, by LM with
    ``switch_confirm_max_iter`` iterations per continuation stage, all windows of all tracks
    in the same solver calls, in the track's own units (so the three energies compare); the
    sides start from the whole window's solution. The
    gain is (E_whole - E_before - E_after) / the window's detected frames: what one body
    must pay to explain both sides (a jump in the temporal terms, one shape for two people),
    per frame, size invariant with ``units="relative"``. NaN where the window is too short
    or a fit is not ok.
    """
    gains = {i: [math.nan] * len(cuts) for i, cuts in candidates.items()}
    # (track, candidate, detected frames, frames of the side before, where the side after starts)
    where: list[tuple[int, int, int, int, int]] = []
    windows: list[TrackProblem] = []
    sides: list[TrackProblem] = []
    for i, cuts in candidates.items():
        problem = problems[i]
        factor, _ = _unit_factor(problem, config)
        if factor is None:
            continue
        for k, window in enumerate(confirmation_windows(own_detections(problem), cuts, config.switch_confirm_window)):
            if window is None:
                continue
            where.append((i, k, window.detected_frames, window.before.num_frames, window.after_start))
            windows.append(_to_solver_units(window.whole, factor, config))
            sides.extend(_to_solver_units(part, factor, config) for part in (window.before, window.after))
    if not windows:
        return gains
    confirm = config.replace(solver="lm", lm_max_iter=config.switch_confirm_max_iter)
    whole = _solve_all(windows, body, gmm, offset, confirm, device, uncertainty=False)
    # each side starts from the whole window's solution on its frames: splitting can then only
    # lower the energy, and the gain measures what the one body paid, not a second local minimum
    starts = []
    for fit, (_, _, _, end, start) in zip(whole, where):
        starts.append((fit.pose[:end], fit.camera[:end], fit.betas))
        starts.append((fit.pose[start:], fit.camera[start:], fit.betas))
    parts = _solve_all(sides, body, gmm, offset, confirm, device, uncertainty=False, starts=starts)
    for n, (i, k, frames, _, _) in enumerate(where):
        fits = (whole[n], parts[2 * n], parts[2 * n + 1])
        if all(f.status == "ok" for f in fits):
            energy = [f.energies["total"] for f in fits]
            gains[i][k] = (energy[0] - energy[1] - energy[2]) / frames
    return gains


def _pieces(problem: TrackProblem, cuts: list[int]) -> list[tuple[TrackProblem, int]]:
    """The pieces between identity switches (trimmed to detected frames), with their start."""
    detected = problem.selected >= 0
    bounds = [0, *cuts, problem.num_frames]
    out = []
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        kept = np.flatnonzero(detected[a:b])
        start, stop = a + int(kept[0]), a + int(kept[-1]) + 1
        piece_id = problem.track_id + SPLIT_TRACK_ID_STRIDE * (k + 1)
        out.append((problem.piece(start, stop, piece_id), start))
    return out


def in_solver_units(problem: TrackProblem, config: BAConfig) -> TrackProblem:
    """The problem as :func:`bundle_adjust` hands it to the solver (``config.units``, skipped
    frames without candidates; no identity-switch split), for a reference solver that must
    minimise the same objective (``bench.ba_speed``'s naive reference).

    Raises:
        ValueError: the problem has no valid person scale (see :func:`bundle_adjust`).
    """
    factor, _ = _unit_factor(problem, config)
    if factor is None:
        raise ValueError(f"TrackProblem {problem.clip_id}#{problem.track_id} has no valid person scale")
    return _to_solver_units(problem, factor, config)


def _to_solver_units(problem: TrackProblem, factor: float, config: BAConfig) -> TrackProblem:
    """The problem in solver units: pixel values x ``factor``; skipped frames without candidates."""
    candidates = np.array(problem.candidates, dtype=np.float32, copy=True)
    candidates[..., :2] *= factor
    keypoints = np.array(problem.keypoints, dtype=np.float32, copy=True)
    keypoints[..., :2] *= factor
    camera = np.asarray(problem.init_camera, dtype=np.float32) * np.float32(factor)
    mask = np.array(problem.candidate_mask, dtype=bool, copy=True)
    if not config.match_skipped_frames:
        mask[np.asarray(problem.selected) < 0] = False
    width, height = problem.image_size
    return problem.replace(
        candidates=candidates, keypoints=keypoints, boxes=np.asarray(problem.boxes, np.float32) * np.float32(factor),
        init_camera=camera, candidate_mask=mask, image_size=(width * factor, height * factor),
    )


def _finish(fit: TrackFit, job: _Job, config: BAConfig) -> TrackFit:
    """A solver-unit fit -> image-space outputs, per-frame quality, inliers and E_norm."""
    problem, factor = job.problem, job.factor
    has = np.asarray(problem.has_detection, bool)
    own = job.solver_problem.keypoints
    with torch.no_grad():
        residual = torch.as_tensor(fit.reprojection, dtype=torch.float64) - torch.as_tensor(own[..., :2], dtype=torch.float64)
        penalty = reprojection_penalty((residual * residual).sum(-1), config)
        energy = (torch.as_tensor(own[..., 2], dtype=torch.float64).clamp(0.0, 1.0) * penalty).sum(-1).numpy()
    detection_energy = np.where(has, energy, np.nan).astype(np.float32)
    camera = (fit.camera.astype(np.float64) / factor).astype(np.float32)
    reprojection = (fit.reprojection.astype(np.float64) / factor).astype(np.float32)
    error_px = np.where(has, keypoint_error_px(reprojection, problem.keypoints), np.nan)
    error_rel = relative_error(error_px, camera[:, 0], REFERENCE_BODY_HEIGHT_M)
    if config.use_prior and config.w_gmm > 0 and "gmm" in fit.frame_energies:
        pose_nll = fit.frame_energies["gmm"].astype(np.float64) / config.w_gmm
    else:
        pose_nll = np.full(problem.num_frames, np.nan)
    total = fit.energies.get("total", math.inf)
    score = (e_norm(total, fit.trajectory_length) if config.e_norm == "trajectory"
             else per_frame_energy(total, problem.num_frames))
    return fit.replace(
        camera=camera, reprojection=reprojection, inlier=detection_inliers(detection_energy, has, config.tau_r_px),
        e_norm=score, detection_energy=detection_energy, reprojection_error_px=error_px.astype(np.float32),
        reprojection_error_rel=error_rel.astype(np.float32), pose_nll=pose_nll.astype(np.float32),
        unit_scale=float(factor), person_scale=float(job.scale), piece_start=int(job.start),
    )


def _split_fit(problem: TrackProblem, cuts: list[int], jobs: list[_Job]) -> TrackFit:
    """The parent record of a track cut at identity switches: status "split", its pieces."""
    frames = [int(problem.frame_index[t]) for t in cuts]
    pieces = []
    for k, job in enumerate(jobs):
        first = int(job.problem.frame_index[0])
        split = frames[0] if k == 0 else first
        pieces.append(job.fit.replace(parent_track_id=int(problem.track_id), split_frame=split))
    ids = ", ".join(str(p.track_id) for p in pieces)
    message = (f"identity switch at frame(s) {frames}: the detections jump to another person; "
               f"fitted as {len(pieces)} tracks ({ids})")
    parent = TrackFit.failed(problem, message)
    return parent.replace(status="split", switch_frames=tuple(frames), pieces=tuple(pieces))


# Most padded frames a length bucket may hold, as a fraction of its frames (the tracks of
# one clip are fitted in length buckets, not padded to the longest).
MAX_PADDING_FRACTION = 0.05


def _length_batches(problems: list[TrackProblem], max_batch_frames: int,
                    max_padding: float = MAX_PADDING_FRACTION) -> list[list[int]]:
    """Indices grouped by length, longest first, into solver calls.

    A group takes the next (shorter) track while tracks x longest <= ``max_batch_frames``
    and the padded frames stay within ``max_padding`` of tracks x longest; otherwise the
    track starts a new group. (Batching saves per-call overhead only: a fit does not depend
    on its group.)
    """
    order = sorted(range(len(problems)), key=lambda i: (-problems[i].num_frames, i))
    groups: list[list[int]] = []
    real = 0
    for i in order:
        frames = problems[i].num_frames
        if groups:
            longest = problems[groups[-1][0]].num_frames
            padded = (len(groups[-1]) + 1) * longest
            if padded <= max_batch_frames and padded - (real + frames) <= max_padding * padded:
                groups[-1].append(i)
                real += frames
                continue
        groups.append([i])
        real = frames
    return groups


def make_objective(packed: PackedTracks, body_model, prior, config: EnergySettings, gmm_offset: float):
    """The per-track objective E_b / T_b as a function of solver variables (b, n) and index (b,)."""
    frames = packed.batch.num_frames.to(packed.x0.dtype)
    full = torch.arange(len(packed.problems), device=packed.x0.device)
    cache: dict[str, object] = {"index": full, "batch": packed.batch}

    def objective(x: Tensor, index: Tensor) -> Tensor:
        if not (cache["index"].shape == index.shape and bool((cache["index"] == index).all())):
            cache["index"], cache["batch"] = index, packed.batch.select(index)
        pose, betas, camera = packed.decode(x, index)
        terms = energy_terms(pose, betas, camera, cache["batch"], body_model, prior, config, gmm_offset)
        return track_total(terms.per_frame_total()) / frames[index]

    return objective


def _temporal_scale(problems: list[TrackProblem], reference_fps: float | None, tensor) -> torch.Tensor | None:
    """(B,) ``reference_fps / fps`` per track, or None (1 everywhere: no reference, or every
    track at the reference rate, so the widths stay plain floats)."""
    if reference_fps is None:
        return None
    scale = np.array([reference_fps / p.fps for p in problems], np.float64)
    return None if np.all(scale == 1.0) else tensor(scale)


def _solve_batch(problems, body_model, prior, gmm_offset, config, device, uncertainty: bool = True,
                 starts: list | None = None) -> list[TrackFit]:
    """Solver-unit fits of one batch; ``uncertainty`` False skips the predicted error and the
    plausibility counts (fits only compared by their energy); ``starts``: see :class:`PackedTracks`."""
    packed = PackedTracks(problems, body_model, device, config.torch_dtype, config.keypoint_init_scale,
                          pad_frames=TAIL_PAD_FRAMES, temporal_reference_fps=config.temporal_reference_fps,
                          starts=starts)
    T = packed.num_frames_max

    def is_diverged(x: Tensor) -> Tensor:
        frames = x[:, NUM_BETAS:].reshape(x.shape[0], T, FRAME_PARAMS)
        pose_bad = frames[..., :NUM_POSE].abs().amax((-1, -2)) > config.max_abs_pose_rad
        # the scale left [s_ref e^-20, s_ref e^20] or the translation left +-1e5 units
        cam_bad = (frames[..., NUM_POSE].abs().amax(-1) > 20) | (frames[..., NUM_POSE + 1 :].abs().amax((-1, -2)) > 1e5)
        return ~torch.isfinite(x).all(-1) | pose_bad | cam_bad

    stage_solver = _lm_stage if config.solver == "lm" else _lbfgs_stage
    result = continuation(packed.x0, config, stage_solver(packed, body_model, prior, gmm_offset, config, is_diverged))
    diverged = result.diverged | is_diverged(result.x)
    x = torch.where(torch.isfinite(result.x), result.x, packed.x0)
    x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
    with torch.no_grad():
        pose, betas, camera = packed.decode(x)
        terms = energy_terms(pose, betas, camera, packed.batch, body_model, prior, config.energy_settings(), gmm_offset)
        # per track on its own frames: a sum over the padded axis would round differently
        # with the longest track of the batch
        length = torch.cat([
            trajectory_length(terms.joints3d[b : b + 1, : p.num_frames], packed.batch.frame_mask[b : b + 1, : p.num_frames])
            for b, p in enumerate(problems)
        ])
        per_frame_total = terms.per_frame_total()
        diverged |= ~torch.isfinite(per_frame_total).all(-1)
    fits = [
        _unpack(b, p, pose, betas, camera, terms, per_frame_total, length, result, bool(diverged[b]), config)
        for b, p in enumerate(problems)
    ]
    if not uncertainty:
        return fits
    # the uncertainty at the solution, from the energy of the last continuation stage (tau_R x 1)
    determined = torch.zeros_like(packed.batch.frame_mask)
    for b, p in enumerate(problems):
        determined[b, : p.num_frames] = torch.as_tensor(p.has_detection, device=determined.device)
    last = LMProblem(packed, body_model, prior, config.energy_settings(), gmm_offset, TRANSLATION_UNIT)
    pred_err, pred_err_all = fit_uncertainty(last, x, determined & ~diverged[:, None])
    pred_err = pred_err.cpu().numpy().astype(np.float32)
    pred_err_all = pred_err_all.cpu().numpy()
    selected = torch.full(packed.batch.frame_mask.shape, -1, dtype=torch.long, device=x.device)
    for b, p in enumerate(problems):
        selected[b, : p.num_frames] = torch.as_tensor(np.asarray(p.selected), dtype=torch.long, device=x.device)
    with torch.no_grad():
        disagreement = init_disagreement_mm(terms.joints3d, packed.batch.init_joints, selected).cpu().numpy()
    use_prior = prior is not None and config.use_prior
    fits = [fit.replace(pred_err_mm=pred_err[b, : fit.num_frames],
                        pred_err_track_mm=track_predicted_error(pred_err_all[b, : fit.num_frames], fit.status),
                        init_disagreement_mm=disagreement[b, : fit.num_frames].astype(np.float32),
                        pose_density_outliers=pose_density_outliers(prior, fit.pose) if use_prior else None,
                        joint_limit_violations=joint_limit_violations(fit.pose))
            for b, fit in enumerate(fits)]
    return [fit.replace(frame_score_mm=frame_score_mm(fit.pred_err_mm, predicted_error(fit),
                                                      fit.init_disagreement_mm).astype(np.float32))
            for fit in fits]


# solve(stage config, stage index, x (B, n), iterations used so far (B,)) -> SolverResult
StageSolver = Callable[[BAConfig, int, Tensor, Tensor], SolverResult]


def continuation(x0: Tensor, config: BAConfig, solve: StageSolver) -> SolverResult:
    """Minimise through the continuation on tau_R: one solve per ``config.tau_r_schedule``
    entry, tau_R multiplied by it, each warm-started from the previous one's finite values.

    Returns:
        the last stage's result, with iterations and evaluations summed over the stages
        and ``diverged`` set where any stage diverged.
    """
    x = x0
    iterations = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
    evaluations = torch.zeros_like(iterations)
    diverged = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)
    for stage_index, multiplier in enumerate(config.tau_r_schedule):
        stage = config.replace(tau_r_px=config.tau_r_px * multiplier)
        result = solve(stage, stage_index, x, iterations)
        iterations += result.iterations
        evaluations += result.evaluations
        diverged |= result.diverged
        x = torch.where(torch.isfinite(result.x), result.x, x)
    return SolverResult(x=x, f=result.f, iterations=iterations, evaluations=evaluations,
                        converged=result.converged, diverged=diverged)


def _lm_stage(packed, body_model, prior, gmm_offset, config: BAConfig, is_diverged) -> StageSolver:
    """A continuation stage by Levenberg-Marquardt (:func:`optimize.lm.levenberg_marquardt`)."""
    last = len(config.tau_r_schedule) - 1

    def solve(stage: BAConfig, stage_index: int, x: Tensor, used: Tensor) -> SolverResult:
        problem = LMProblem(packed, body_model, prior, stage.energy_settings(), gmm_offset, TRANSLATION_UNIT)
        settings = config.lm_settings()
        if stage_index < last:
            # a looser cap is only a warm start for the next stage
            settings = dataclasses.replace(settings, ftol=settings.ftol * LM_WARM_START_FTOL)
        if stage_index > 0:
            settings = dataclasses.replace(
                settings, initial_damping=min(settings.initial_damping, LM_CONTINUATION_DAMPING))
        # lm_max_iter per stage, and what a track left unused in earlier stages
        budget = config.lm_max_iter * (stage_index + 1) - used
        return levenberg_marquardt(problem, x, settings, is_diverged, budget=budget)

    return solve


def _lbfgs_stage(packed, body_model, prior, gmm_offset, config: BAConfig, is_diverged) -> StageSolver:
    """A continuation stage by L-BFGS (``config.solver``: batched, summed or per_track)."""
    settings = config.lbfgs_settings()

    def solve(stage: BAConfig, stage_index: int, x: Tensor, used: Tensor) -> SolverResult:
        objective = make_objective(packed, body_model, prior, stage.energy_settings(), gmm_offset)
        if config.solver == "batched":
            return lbfgs_batched(objective, x, settings, is_diverged)
        if config.solver == "summed":
            return lbfgs_summed(objective, x, settings)
        return lbfgs_per_track(objective, x, settings)

    return solve


def _numpy(t: Tensor, dtype=np.float32) -> np.ndarray:
    return np.nan_to_num(t.detach().cpu().numpy().astype(dtype), nan=0.0, posinf=0.0, neginf=0.0)


def _unpack(b, problem, pose, betas, camera, terms, per_frame_total, length, result, diverged, config) -> TrackFit:
    T = problem.num_frames
    frame_error = terms.frame_error[b, :T].detach().cpu().numpy().astype(np.float32)
    frame_error = np.where(np.isfinite(frame_error), frame_error, np.nan).astype(np.float32)
    frame_energies = {name: _numpy(terms.terms[name][b, :T]) for name in TERM_NAMES}
    frame_energies["total"] = _numpy(per_frame_total[b, :T])
    energies = {name: float(values.sum(dtype=np.float64)) for name, values in frame_energies.items()}
    total = energies["total"]
    traj = float(length[b])
    if not math.isfinite(traj):
        traj, diverged = 0.0, True
    iterations = int(result.iterations[b])
    evaluations = int(result.evaluations[b])
    converged = bool(result.converged[b]) and not diverged
    if diverged:
        status, message = "diverged", (
            f"energy or parameters stopped being finite or bounded after {iterations} iterations; "
            "arrays hold the last finite iterate and must not be used as data"
        )
    else:
        status = "ok"
        message = f"{iterations} iterations, {evaluations} evaluations" + ("" if converged else ", budget reached")
    return TrackFit(
        clip_id=problem.clip_id,
        track_id=problem.track_id,
        status=status,
        betas=_numpy(betas[b]),
        pose=_numpy(pose[b, :T]),
        camera=_numpy(camera[b, :T]),
        joints3d=_numpy(terms.joints3d[b, :T]),
        keypoints3d=_numpy(terms.keypoints3d[b, :T]),
        reprojection=_numpy(terms.keypoints2d[b, :T]),
        frame_error=frame_error,
        matched_candidate=terms.matched[b, :T].cpu().numpy().astype(np.int32),
        inlier=inlier_frames(frame_error, config.tau_r_px),
        frame_energies=frame_energies,
        energies=energies,
        trajectory_length=traj,
        e_norm=e_norm(total, traj),
        iterations=iterations,
        converged=converged,
        message=message,
    )
