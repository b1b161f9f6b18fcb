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

from optimize.settings import EnergySettings as _E
from optimize.settings import LMSettings as _LM
from optimize.settings import SolverSettings as _LBFGS
from optimize.validate import boolean, choice, declare_ranges, integer, real, sequence, validate_fields

REPROJECTION_LOSSES = ("hinge", "huber")
SOLVERS = ("lm", "batched", "summed", "per_track")
UNITS = ("relative", "pixels")
E_NORM_MODES = ("per_frame", "trajectory")
REFERENCE_BODY_HEIGHT_M = 1.7  # metres: a person's height in units of the camera scale s (px/m)


@dataclass(frozen=True)
class BAConfig:
    """Every setting of whole-clip bundle adjustment, as the flat ``--ba_config`` JSON keys.

    The fields fall in three groups: the problem's units and track handling; the energy,
    whose defaults live in :class:`optimize.settings.EnergySettings` (:meth:`energy_settings`);
    and the solvers, whose defaults live in :class:`optimize.settings.LMSettings` and
    :class:`optimize.settings.SolverSettings` (:meth:`lm_settings`, :meth:`lbfgs_settings`). ``D`` below is
    ``docs/bundle_adjustment.md``; ``_px`` values are in reference pixels with ``units="relative"``.

    Attributes:
        units: "relative" (person rescaled to ``reference_height_px``) or "pixels" (D, "Units").
        reference_height_px: height of a 1.7 m person at which ``_px`` values hold (D, "Units").
        e_norm: selection score, "per_frame" (E / T) or "trajectory" (E / metres) (D, "Selection score").
        match_skipped_frames: match other people's detections on frames the tracker skipped (D, "Skipped frames").
        split_identity_switches: cut tracks where detections jump to another person (D, "Identity switches").
        switch_speed_heights_per_s: fastest plausible torso motion, heights / s (D, "Identity switches").
        switch_slack_heights: detector noise allowance on the torso centre, heights (D, "Identity switches").
        switch_size_ratio: persistent scale change that counts as a switch, > 1 (D, "Identity switches").
        switch_persistence: detected frames a jump must persist for (D, "Identity switches").
        switch_step_heights: smallest body-position step that counts as a switch, heights (D, "Identity switches").
        switch_step_sigmas: a step must also exceed this many robust position spreads (D, "Identity switches").
        switch_step_window: detected frames fitted on each side of a step (D, "Identity switches").
        switch_step_gap_heights_per_s: step allowance per second without detection, heights / s (D, "Identity switches").
        switch_step_shared: a step must be shared by two thirds of the body's points (True for
            cutting on the detections alone, ``switch_confirm`` False) (D, "Identity switches").
        switch_confirm: re-fit a window around each candidate cut, whole and in two, and cut only
            where splitting lowers the energy enough; False: cut at every candidate (D, "Identity switches").
        switch_confirm_window: detected frames of the confirmation window on each side of a cut (D, "Identity switches").
        switch_confirm_max_iter: LM iterations per continuation stage of a confirmation fit (D, "Identity switches").
        switch_confirm_gain: a cut is confirmed when (E_whole - E_before - E_after) / detected frames of
            the window exceeds this; solver energy units (reference pixels with ``units="relative"``)
            (D, "Identity switches").
        reprojection_loss: "hinge" (in the wild) or "huber" (controlled) per keypoint (D, "The objective").
        huber_delta_px: quadratic zone of the Huber reprojection loss, px (D, "The objective").
        hinge_margin_px: errors below this cost nothing under the hinge, px (D, "The objective").
        hinge_smoothing_px: quadratic blend after the hinge margin, px (D, "The objective").
        tau_r_px: per-frame cap tau_R of the reprojection energy, px (D, "The objective").
        tau_i: per-frame cap of the init term's joints' part, robust metres (D, "The objective").
        w_reprojection: lambda_R (D, "The objective").
        w_temporal_3d: lambda_1 on the 24 SMPL joints' motion (D, "The objective").
        temporal_3d_delta_m: Huber width of the 3D temporal term, m (D, "Frame rate").
        w_temporal_2d: lambda_2 on the 17 projected keypoints' motion (D, "The objective").
        temporal_2d_delta_px: Huber width of the 2D temporal term, px (D, "Frame rate").
        w_temporal_camera: lambda_3 on the camera translation's motion (D, "The objective").
        temporal_camera_delta_px: Huber width of the camera term, px (D, "Frame rate").
        camera_translation_cap: camera term's bound, fraction of the image width (D, "The objective").
        temporal_reference_fps: rate at which the temporal widths hold, Hz; None: per frame (D, "Frame rate").
        w_gmm: weight of the GMM pose prior (D, "The objective").
        w_init: lambda_I of the stay-close-to-init term (D, "The objective").
        keypoint_init_scale: init joints' weight on keypoint-only inits (D, "Calibration").
        w_init_betas: lambda_beta of the init term's betas part (D, "The objective").
        init_delta_m: Huber width of the init term on joints, m (D, "The objective").
        init_betas_delta: Huber width of the init term on betas (D, "The objective").
        shape_bound: |beta_k| beyond which the shape bound applies (D, "The objective").
        w_shape: weight of the shape bound; 0 switches it off (D, "The objective").
        use_reprojection: E_R on (the ablation) (D, "The objective").
        use_temporal: E_T on (D, "The objective").
        use_prior: GMM, init and shape terms on (D, "The objective").
        tau_r_schedule: tau_R multipliers of the continuation stages, ending with 1 (D, "Solver").
        solver: "lm", "batched" (L-BFGS), "summed" or "per_track" (references) (D, "Solver").
        lm_max_iter: LM iterations per track and stage, unused ones carry over (D, "Levenberg-Marquardt").
        lm_ftol: LM stops when a step lowers E / T by less (D, "Levenberg-Marquardt").
        lm_initial_damping: LM lambda of the first stage, relative to diag(H) (D, "Levenberg-Marquardt").
        lm_check_every: LM iterations between host looks; 0: 1 on a CPU, 5 on a GPU (D, "Levenberg-Marquardt").
        lm_max_batch_frames: padded frames per LM call (D, "Levenberg-Marquardt").
        max_iter: L-BFGS iterations per track and stage (D, "Solver").
        max_eval: L-BFGS objective evaluations per track (D, "Solver").
        history_size: L-BFGS memory (D, "Solver").
        line_search_max_evals: trials per strong-Wolfe line search (D, "Solver").
        c1: strong-Wolfe sufficient-decrease constant (D, "Solver").
        c2: strong-Wolfe curvature constant (D, "Solver").
        ftol: L-BFGS stops when E / T changes by less (D, "Solver").
        xtol: L-BFGS stops when no variable moves by more (D, "Solver").
        gtol: both solvers stop when every entry of grad(E / T) is below this (D, "Solver").
        max_abs_pose_rad: a pose entry beyond this marks the track diverged (D, "Solver").
        max_batch_frames: padded frames (tracks x longest) per solver call (D, "Batch independence").
        dtype: "float32" or "float64" (D, "Batch independence").
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
    switch_step_heights: float = 0.05
    switch_step_sigmas: float = 4.0
    switch_step_window: int = 6
    switch_step_gap_heights_per_s: float = 1.0
    switch_step_shared: bool = False
    switch_confirm: bool = True
    switch_confirm_window: int = 20
    switch_confirm_max_iter: int = 8
    switch_confirm_gain: float = 4.5

    reprojection_loss: str = _E.reprojection_loss
    huber_delta_px: float = _E.huber_delta_px
    hinge_margin_px: float = _E.hinge_margin_px
    hinge_smoothing_px: float = _E.hinge_smoothing_px
    tau_r_px: float = _E.tau_r_px
    tau_i: float = _E.tau_i

    w_reprojection: float = _E.w_reprojection
    w_temporal_3d: float = _E.w_temporal_3d
    temporal_3d_delta_m: float = _E.temporal_3d_delta_m
    w_temporal_2d: float = _E.w_temporal_2d
    temporal_2d_delta_px: float = _E.temporal_2d_delta_px
    w_temporal_camera: float = _E.w_temporal_camera
    temporal_camera_delta_px: float = _E.temporal_camera_delta_px
    camera_translation_cap: float = _E.camera_translation_cap
    temporal_reference_fps: float | None = _E.temporal_reference_fps
    w_gmm: float = _E.w_gmm
    w_init: float = _E.w_init
    keypoint_init_scale: float = _E.keypoint_init_scale
    w_init_betas: float = _E.w_init_betas
    init_delta_m: float = _E.init_delta_m
    init_betas_delta: float = _E.init_betas_delta
    shape_bound: float = _E.shape_bound
    w_shape: float = _E.w_shape

    use_reprojection: bool = _E.use_reprojection
    use_temporal: bool = _E.use_temporal
    use_prior: bool = _E.use_prior

    tau_r_schedule: tuple[float, ...] = (8.0, 1.0)
    solver: str = "lm"
    lm_max_iter: int = _LM.max_iter
    lm_ftol: float = _LM.ftol
    lm_initial_damping: float = _LM.initial_damping
    lm_check_every: int = _LM.check_every
    lm_max_batch_frames: int = 4096
    max_iter: int = _LBFGS.max_iter
    max_eval: int = _LBFGS.max_eval
    history_size: int = _LBFGS.history_size
    line_search_max_evals: int = _LBFGS.line_search_max_evals
    c1: float = _LBFGS.c1
    c2: float = _LBFGS.c2
    ftol: float = _LBFGS.ftol
    xtol: float = _LBFGS.xtol
    gtol: float = _LBFGS.gtol
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
        if self.switch_step_window < 3:
            raise ValueError(f"BAConfig.switch_step_window={self.switch_step_window!r} must be >= 3 (a line needs 3 frames).")
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
            "switch_speed_heights_per_s", "switch_slack_heights", "switch_step_heights", "switch_step_sigmas",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"BAConfig.{name}={getattr(self, name)!r} must be > 0.")
        non_negative = (
            "hinge_margin_px", "w_reprojection", "w_temporal_3d", "w_temporal_2d",
            "w_temporal_camera", "w_gmm", "w_init", "keypoint_init_scale", "w_init_betas", "w_shape", "shape_bound",
            "ftol", "xtol", "gtol", "switch_step_gap_heights_per_s",
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

    def energy_settings(self) -> _E:
        """The energy's settings of these fields."""
        return _E(**{name: getattr(self, name) for name in _E.__dataclass_fields__})

    def lm_settings(self) -> _LM:
        """The Levenberg-Marquardt settings of these fields (``check_every`` 0: per device)."""
        return _LM(max_iter=self.lm_max_iter, ftol=self.lm_ftol, gtol=self.gtol,
                   initial_damping=self.lm_initial_damping, check_every=self.lm_check_every)

    def lbfgs_settings(self) -> _LBFGS:
        """The L-BFGS settings of these fields."""
        return _LBFGS(**{name: getattr(self, name) for name in _LBFGS.__dataclass_fields__})

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
    "switch_step_heights": real(gt=0),
    "switch_step_sigmas": real(gt=0),
    "switch_step_window": integer(ge=3),
    "switch_step_gap_heights_per_s": real(ge=0),
    "switch_step_shared": boolean(),
    "switch_confirm": boolean(),
    "switch_confirm_window": integer(ge=3),
    "switch_confirm_max_iter": integer(ge=1),
    "switch_confirm_gain": real(ge=0),
})
