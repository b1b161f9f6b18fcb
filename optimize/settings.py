"""The energy's and the solvers' settings: the one place their defaults are written.

:class:`optimize.config.BAConfig` carries the same values as flat fields (the
``--ba_config`` JSON keys: the energy's names, ``lm_*`` for Levenberg-Marquardt, the bare
names for L-BFGS), taking its defaults from here; :meth:`BAConfig.energy_settings`,
:meth:`BAConfig.lm_settings` and :meth:`BAConfig.lbfgs_settings` build these records from
it. Meanings and calibration: ``docs/bundle_adjustment.md``, "The objective" and "Solver".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EnergySettings:
    """The weights, widths, caps, losses and switches of the energy (:mod:`optimize.terms`).

    ``_px`` values are solver pixels (reference pixels in relative units), ``_m`` metres;
    one line per field in :class:`optimize.config.BAConfig`'s docstring.
    """

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


@dataclass(frozen=True)
class SolverSettings:
    """L-BFGS settings (:func:`optimize.solver.lbfgs_batched`).

    Attributes:
        max_iter: iterations per track and continuation stage.
        max_eval: objective evaluations per track (line-search trials included).
        history_size: L-BFGS memory.
        line_search_max_evals: trials per strong-Wolfe line search.
        c1, c2: strong-Wolfe sufficient decrease and curvature constants.
        ftol: stop when the per-frame objective changes by less than this (absolute).
        xtol: stop when no variable moves by more than this in one step.
        gtol: stop when every gradient entry of the per-frame objective is below this.
    """

    max_iter: int = 300
    max_eval: int = 750
    history_size: int = 10
    line_search_max_evals: int = 25
    c1: float = 1e-4
    c2: float = 0.9
    ftol: float = 1e-4
    xtol: float = 1e-7
    gtol: float = 1e-5


@dataclass(frozen=True)
class LMSettings:
    """Levenberg-Marquardt settings (:func:`optimize.lm.levenberg_marquardt`).

    Attributes:
        max_iter: iterations (linear solves) per track and continuation stage.
        ftol: stop when an accepted step lowers the per-frame energy by less than this.
        gtol: stop when every entry of the per-frame energy's gradient is below this.
        initial_damping: lambda at the start, relative to diag(H).
        max_damping: a track whose damping exceeds this cannot descend further: it stops
            (converged: every direction the model proposes fails to lower E).
        check_every: iterations between looks at the tracks' state (host syncs); 0: 1 on a
            CPU, 5 on a GPU (:meth:`on`).
    """

    max_iter: int = 25
    ftol: float = 1e-2
    gtol: float = SolverSettings.gtol
    initial_damping: float = 1.0
    max_damping: float = 1e8
    check_every: int = 0

    def on(self, device: torch.device) -> "LMSettings":
        """These settings with ``check_every`` resolved for ``device``."""
        if self.check_every:
            return self
        return dataclasses.replace(self, check_every=1 if device.type == "cpu" else 5)
