"""Configuration of whole-clip bundle adjustment: weights, caps, robust losses, solver.

Every number the objective or the solver uses lives in :class:`BAConfig` (a frozen
dataclass; derive variants with :meth:`BAConfig.replace`). Units are in the field names:
``_m`` metres, ``_px`` pixels: *reference pixels* with ``units="relative"`` (the default:
each track's pixel inputs are rescaled so that the person is ``reference_height_px`` tall,
so a value means the same fraction of the body for a 80 px and a 450 px person), image
pixels of the decoded frame with ``units="pixels"`` (the paper's). The defaults are calibrated on the
tuning motions of ``bench.ba_accuracy`` (see ``docs/bundle_adjustment.md``).

The energy (paper sections 3.2 and 4), summed over the frames t of a track::

    E_R = w_reprojection * min(min_p sum_i c_i h(x_i - x_det,i^p), tau_r)
    E_T = w_temporal_3d * sum_i rho(X_i^t - X_i^{t-1})
        + w_temporal_2d * sum_i rho(x_i^t - x_i^{t-1})
        + w_temporal_camera * min(rho(u^t - u^{t-1}), rho(0.1 W))   (scale free)
    E_P = w_gmm * (GMM NLL(theta_body) - its minimum over the component means)
        + w_init * min_p [min(sum_i rho(X_i - X~_i^p), tau_i) + w_init_betas rho(beta - beta~^p)]
        + w_shape * sum_k max(0, |beta_k| - shape_bound)^2
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from optimize.validate import boolean, choice, declare_ranges, integer, real, sequence, validate_fields

REPROJECTION_LOSSES = ("hinge", "huber")
SOLVERS = ("lm", "batched", "summed", "per_track")
UNITS = ("relative", "pixels")
E_NORM_MODES = ("per_frame", "trajectory")
REFERENCE_BODY_HEIGHT_M = 1.7  # metres: a person's height in units of the camera scale s (px/m)


@dataclass(frozen=True)
class BAConfig:
    """Weights, caps, robust-loss settings, term switches and solver settings.

    Attributes:
        units: "relative" (default) or "pixels". In "relative" units every pixel-valued
            input of a track (detections, init camera s, tx, ty, image size) is multiplied
            by ``reference_height_px / (1.7 m x s_track)`` before the fit, with s_track the
            track's median init camera scale (px/m) over its detected frames, so the
            ``_px`` values below apply to a person ``reference_height_px`` tall and E,
            E_norm and the inlier test do not change when the video is zoomed. "pixels"
            is the paper's (image pixels).
        reference_height_px: the person height (pixels, a 1.7 m body) at which the
            ``_px`` values hold in "relative" units. 200 px: about the middle of the
            heights the weights were calibrated on (150-280 px) and of a person in a
            340p Kinetics clip, where the paper set its 5 px / 50 px.
        e_norm: the selection score of a track: "per_frame" (default, E / T: mean energy
            per frame) or "trajectory" (the paper's eq. 11, E / trajectory length in
            metres). See docs/bundle_adjustment.md for the measured ranking of both.
        match_skipped_frames: False (default): on a frame where the tracker kept no
            detection for the track, E_R and the init term are off (the fit there is
            regularised by the temporal and prior terms, i.e. towards the track) instead of
            taking the minimum over the other people's detections. True: the paper's min
            over all candidates on every frame.
        split_identity_switches: detect frames where the track's detections jump to another
            person (``optimize.selection.identity_switches``) and fit the pieces as tracks
            of their own.
        switch_speed_heights_per_s: fastest plausible torso motion in the image, person
            heights per second (4 ~ 7 m/s for a 1.7 m person).
        switch_slack_heights: allowance for detector noise on the torso centre, heights.
        switch_size_ratio: a persistent change of the person's scale by more than this
            factor between consecutive detected frames is a switch too.
        switch_persistence: detected frames after a jump that must stay with the new
            position (a shorter excursion is a tracker slip, handled by the min over
            candidates, not a switch).
        reprojection_loss: "hinge" (in the wild: 0 below ``hinge_margin_px``, L1 above)
            or "huber" (controlled setting), applied to each keypoint's pixel error norm.
        huber_delta_px: width of the quadratic zone of the Huber reprojection loss, px.
        hinge_margin_px: errors below this cost nothing under the hinge, px (paper: 5).
        hinge_smoothing_px: quadratic blend after the margin so the hinge is C1, px.
        tau_r_px: per-frame cap of the reprojection energy (outer min), px (paper: 50).
        tau_i: per-frame cap of the init term's joint part, in its units (robust metres
            summed over the 24 joints). The shape residual is not capped: beta is shared
            by every frame, and a cap on every frame would leave it free.
        w_reprojection: lambda_R.
        w_temporal_3d: lambda_1, on the 24 SMPL joints (per metre of robust displacement).
        temporal_3d_delta_m: Huber width of the 3D temporal term, metres.
        w_temporal_2d: lambda_2, on the 17 projected COCO keypoints (per pixel).
        temporal_2d_delta_px: Huber width of the 2D temporal term, px.
        w_temporal_camera: lambda_3, on the camera translation (per pixel).
        temporal_camera_delta_px: Huber width of the camera term, px.
        camera_translation_cap: bound of the camera translation penalty as a fraction
            of the image width (paper: 0.1). Camera scale is never penalised.
        temporal_reference_fps: the frame rate (Hz) at which the three temporal terms'
            Huber widths and the camera bound hold (25: the rate they were calibrated at,
            and the decoder's default output rate). A track at ``fps`` uses them times
            ``temporal_reference_fps / fps``, i.e. its frame differences are measured as
            velocities and each pair weighs the time it spans, so a motion costs the same per
            second at 10, 25 or 60 fps (see ``optimize.energy.temporal_energy``). None:
            per-frame widths at every rate (before 2026-12-04).
        w_gmm: weight of the GMM pose prior (negative log-likelihood, offset to be about
            0 at the best mixture mean).
        w_init: lambda_I, weight of the stay-close-to-init term.
        keypoint_init_scale: the init term's joints' part is multiplied by this for tracks
            whose init came from the keypoint-only initialiser (``TrackProblem.init_source
            == "keypoints"``): its "estimate" is the mean pose, so a full-weight pull towards
            it fights the keypoints (demo corpus, L-BFGS: inlier frames 54 % at 1.0, 91 % at
            0.1). The betas' part keeps lambda_I: the keypoint init's betas are the mean
            shape, the population prior (``optimize.energy.joints_init_scale``). 0.3:
            calibrated on synthetic tuning tracks with the keypoint-only init (24 tracks,
            both solvers; at 0.1 L-BFGS stopped at its cap on nearly every track, so the
            earlier 0.1 was chosen on unconverged fits), checked on held-out tracks and the
            demo (docs/bundle_adjustment.md, "Calibration").
        w_init_betas: lambda_beta inside the init term (per unit of robust beta distance).
        init_delta_m: Huber width of the init term on joints, metres.
        init_betas_delta: Huber width of the init term on betas.
        shape_bound: |beta_k| (SMPL's standard deviations) beyond which the shape bound
            applies; 0 cost inside it.
        w_shape: weight of the shape bound, per frame and squared standard deviation beyond
            ``shape_bound``; 0 switches it off. Part of E_P (dropped with ``use_prior``).
        use_reprojection, use_temporal, use_prior: term switches (the ablation). With
            ``use_prior`` off both the GMM and the init term are dropped.
        tau_r_schedule: continuation on the reprojection cap: the solver runs once per
            entry with tau_R multiplied by it, each run warm-started from the previous; the
            last entry must be 1 (the paper's objective). A per-frame regressor's init often
            reprojects worse than tau_R, and a capped frame has no reprojection gradient, so
            a first pass with a looser cap pulls such frames in before the outer min makes
            the remaining ones inert. ``(1.0,)`` solves the final objective directly.
        solver: "lm" (default since 2026-12-04: Levenberg-Marquardt on the block
            tridiagonal normal equations, ``optimize.lm``: every measured track converges
            in tens of iterations, 4-5x less CPU time per frame than L-BFGS, equal or
            better 3D accuracy; see docs/bundle_adjustment.md, "Levenberg-Marquardt"),
            "batched" (per-track L-BFGS histories, step sizes, line searches and stopping,
            many tracks per call; hundreds of iterations, the default before), "summed"
            (torchmin L-BFGS on the sum of all tracks' objectives: one shared line search;
            for measurement) or "per_track" (torchmin L-BFGS on one track at a time; the
            reference).
        lm_max_iter: Levenberg-Marquardt iterations (linear solves) per track and stage;
            what a stage leaves unused carries over to the next, so a track gets at most
            ``lm_max_iter x len(tau_r_schedule)`` in all (measured on the demo: a track
            that took 13 iterations in the first stage needed 26 in the second).
        lm_ftol: LM stops when an accepted step lowers E / T by less than this. 1e-2 (not
            L-BFGS's 1e-4): an LM step gains far more than an L-BFGS step; LM's tail
            converges linearly (rate about 0.5), so the energy left is about the last
            decrease, 1e-2 of an E / T of 20-80 (measured on the 8 x 250 benchmark tracks:
            within 0.05 % of the energy reached with 1e-3, in 143 iterations instead of 204).
        lm_initial_damping: lambda at the start of the first stage, relative to diag(H)
            (later stages start from the previous minimum with 1e-3). 1.0: the first steps
            are short, and a track whose init is flipped on some frames less often ends in
            a worse minimum than L-BFGS's (1e-3: 2 of 8 benchmark tracks > 1 % above
            L-BFGS's energy; 1.0: 1 of 8).
        lm_check_every: LM iterations between looks at which tracks are done (host
            synchronisations); 0: 1 on a CPU, 5 on a GPU.
        lm_max_batch_frames: with ``solver="lm"``, padded frames per solver call (the
            smaller of this and ``max_batch_frames``). LM holds per-frame Jacobians and
            75 x 75 blocks, about 270 KB per frame in float32 (measured: +540 MB for 2,000
            frames), so 4,096 frames is about 1.1 GB; a larger batch is no faster on a CPU
            (the block work is per matrix). Raise it on a GPU.
        max_iter: L-BFGS iterations per track.
        max_eval: objective evaluations per track (line-search trials included).
        history_size: L-BFGS memory.
        line_search_max_evals: trials per strong-Wolfe line search.
        c1, c2: strong-Wolfe sufficient decrease and curvature constants.
        ftol: stop when the per-frame objective changes by less than this (absolute).
        xtol: stop when no parameter moves by more than this in one step.
        gtol: stop when every gradient entry of the per-frame objective is below this.
        max_abs_pose_rad: a pose entry beyond this marks the track diverged.
        max_batch_frames: padded frames (tracks x longest track) per solver call; larger
            inputs are split into length-sorted batches. A single track is never split.
        dtype: "float32" (default) or "float64".
    """

    units: str = "relative"
    reference_height_px: float = 200.0
    e_norm: str = "per_frame"
    match_skipped_frames: bool = False
    split_identity_switches: bool = True
    switch_speed_heights_per_s: float = 4.0
    switch_slack_heights: float = 0.25
    switch_size_ratio: float = 1.5
    switch_persistence: int = 3

    reprojection_loss: str = "hinge"
    huber_delta_px: float = 5.0
    hinge_margin_px: float = 5.0
    hinge_smoothing_px: float = 2.0
    tau_r_px: float = 50.0
    tau_i: float = 4.0

    w_reprojection: float = 1.0
    w_temporal_3d: float = 50.0
    temporal_3d_delta_m: float = 0.05
    w_temporal_2d: float = 0.2
    temporal_2d_delta_px: float = 10.0
    w_temporal_camera: float = 0.2
    temporal_camera_delta_px: float = 10.0
    camera_translation_cap: float = 0.1
    temporal_reference_fps: float | None = 25.0
    w_gmm: float = 0.2
    w_init: float = 20.0
    keypoint_init_scale: float = 0.3
    w_init_betas: float = 0.1
    init_delta_m: float = 0.05
    init_betas_delta: float = 1.0
    shape_bound: float = 3.0
    w_shape: float = 1.0

    use_reprojection: bool = True
    use_temporal: bool = True
    use_prior: bool = True

    tau_r_schedule: tuple[float, ...] = (8.0, 1.0)
    solver: str = "lm"
    lm_max_iter: int = 25
    lm_ftol: float = 1e-2
    lm_initial_damping: float = 1.0
    lm_check_every: int = 0
    lm_max_batch_frames: int = 4096
    max_iter: int = 300
    max_eval: int = 750
    history_size: int = 10
    line_search_max_evals: int = 25
    c1: float = 1e-4
    c2: float = 0.9
    ftol: float = 1e-4
    xtol: float = 1e-7
    gtol: float = 1e-5
    max_abs_pose_rad: float = 100.0
    max_batch_frames: int = 32768
    dtype: str = "float32"

    def __post_init__(self) -> None:
        validate_fields(self)  # types and ranges: BA_RANGES below
        if self.reprojection_loss not in REPROJECTION_LOSSES:
            raise ValueError(
                f"BAConfig.reprojection_loss={self.reprojection_loss!r}; use one of {REPROJECTION_LOSSES}."
            )
        if self.units not in UNITS:
            raise ValueError(f"BAConfig.units={self.units!r}; use one of {UNITS}.")
        if self.e_norm not in E_NORM_MODES:
            raise ValueError(f"BAConfig.e_norm={self.e_norm!r}; use one of {E_NORM_MODES}.")
        if not self.switch_size_ratio > 1:
            raise ValueError(f"BAConfig.switch_size_ratio={self.switch_size_ratio!r} must be > 1.")
        if self.solver not in SOLVERS:
            raise ValueError(f"BAConfig.solver={self.solver!r}; use one of {SOLVERS}.")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"BAConfig.dtype={self.dtype!r}; use 'float32' or 'float64'.")
        positive = (
            "huber_delta_px", "hinge_smoothing_px", "tau_r_px", "tau_i", "temporal_3d_delta_m",
            "temporal_2d_delta_px", "temporal_camera_delta_px", "camera_translation_cap",
            "init_delta_m", "init_betas_delta", "max_abs_pose_rad", "reference_height_px",
            "switch_speed_heights_per_s", "switch_slack_heights",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"BAConfig.{name}={getattr(self, name)!r} must be > 0.")
        non_negative = (
            "hinge_margin_px", "w_reprojection", "w_temporal_3d", "w_temporal_2d",
            "w_temporal_camera", "w_gmm", "w_init", "keypoint_init_scale", "w_init_betas", "w_shape", "shape_bound",
            "ftol", "xtol", "gtol",
        )
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"BAConfig.{name}={getattr(self, name)!r} must be >= 0.")
        for name in ("max_iter", "max_eval", "history_size", "line_search_max_evals", "max_batch_frames",
                     "switch_persistence"):
            if getattr(self, name) < 1:
                raise ValueError(f"BAConfig.{name}={getattr(self, name)!r} must be >= 1.")
        if not self.tau_r_schedule or self.tau_r_schedule[-1] != 1.0 or min(self.tau_r_schedule) <= 0:
            raise ValueError(
                f"BAConfig.tau_r_schedule={self.tau_r_schedule!r}: positive multipliers ending with 1.0."
            )
        if not 0 < self.c1 < self.c2 < 1:
            raise ValueError(f"BAConfig needs 0 < c1 < c2 < 1, got c1={self.c1}, c2={self.c2}.")

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32

    def replace(self, **changes) -> "BAConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def paper(cls, **changes) -> "BAConfig":
        """The paper's units and selection: image pixels, E / trajectory length, the min over
        every candidate on skipped frames, no identity-switch splitting."""
        return cls(**{**dict(units="pixels", e_norm="trajectory", match_skipped_frames=True,
                             split_identity_switches=False), **changes})

    @classmethod
    def ablation(cls, terms: str, **changes) -> "BAConfig":
        """The paper's Table 1 rows: terms in {"R", "R+P", "R+P+T"}."""
        rows = {
            "R": dict(use_prior=False, use_temporal=False),
            "R+P": dict(use_prior=True, use_temporal=False),
            "R+P+T": dict(use_prior=True, use_temporal=True),
        }
        if terms not in rows:
            raise ValueError(f"BAConfig.ablation({terms!r}): use one of {sorted(rows)}.")
        return cls(**{**rows[terms], **changes})


BA_RANGES = declare_ranges(BAConfig, {
    # Types and ranges of every BAConfig field, checked by optimize.validate on construction
    # (a --ba_config override that breaks one fails on the launcher, naming field and range).
    "reprojection_loss": choice(*REPROJECTION_LOSSES),
    "huber_delta_px": real(gt=0),
    "hinge_margin_px": real(ge=0),
    "hinge_smoothing_px": real(gt=0),
    "tau_r_px": real(gt=0),
    "tau_i": real(gt=0),
    "w_reprojection": real(ge=0),
    "w_temporal_3d": real(ge=0),
    "temporal_3d_delta_m": real(gt=0),
    "w_temporal_2d": real(ge=0),
    "temporal_2d_delta_px": real(gt=0),
    "w_temporal_camera": real(ge=0),
    "temporal_camera_delta_px": real(gt=0),
    "camera_translation_cap": real(gt=0),
    "temporal_reference_fps": real(gt=0, le=1000, optional=True),
    "w_gmm": real(ge=0),
    "w_init": real(ge=0),
    "keypoint_init_scale": real(ge=0),
    "w_init_betas": real(ge=0),
    "init_delta_m": real(gt=0),
    "init_betas_delta": real(gt=0),
    "shape_bound": real(ge=0),
    "w_shape": real(ge=0),
    "use_reprojection": boolean(),
    "use_temporal": boolean(),
    "use_prior": boolean(),
    "tau_r_schedule": sequence(real(gt=0)),
    "solver": choice(*SOLVERS),
    "lm_max_iter": integer(ge=1),
    "lm_ftol": real(ge=0),
    "lm_initial_damping": real(gt=0),
    "lm_check_every": integer(ge=0),
    "lm_max_batch_frames": integer(ge=1),
    "max_iter": integer(ge=1),
    "max_eval": integer(ge=1),
    "history_size": integer(ge=1),
    "line_search_max_evals": integer(ge=1),
    "c1": real(gt=0, lt=1),
    "c2": real(gt=0, lt=1),
    "ftol": real(ge=0),
    "xtol": real(ge=0),
    "gtol": real(ge=0),
    "max_abs_pose_rad": real(gt=0),
    "max_batch_frames": integer(ge=1),
    "dtype": choice("float32", "float64"),
    "units": choice(*UNITS),
    "reference_height_px": real(gt=0),
    "e_norm": choice(*E_NORM_MODES),
    "match_skipped_frames": boolean(),
    "split_identity_switches": boolean(),
    "switch_speed_heights_per_s": real(gt=0),
    "switch_slack_heights": real(gt=0),
    "switch_size_ratio": real(gt=1),
    "switch_persistence": integer(ge=1),
})
