"""The solvers' settings: the one place their defaults are written.

:class:`optimize.config.BAConfig` carries the same values as flat fields (the
``--ba_config`` JSON keys: ``lm_*`` for Levenberg-Marquardt, the bare names for L-BFGS),
taking its defaults from here; :meth:`BAConfig.lm_settings` and
:meth:`BAConfig.lbfgs_settings` build these records from it. Meanings and calibration:
``docs/bundle_adjustment.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


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
