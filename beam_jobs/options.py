"""``PipelineOptions`` of the pseudo-ground-truth job, in four groups: input, models,
optimisation, output.

The flags are declared once in :mod:`beam_jobs.flags`, which both these classes and the
``vid2mesh run`` sub-command use, so ``python -m beam_jobs.pseudo_gt`` and ``vid2mesh run``
take the same options.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from optimize.validate import Range, integer, real
from beam_jobs.flags import (
    ADDERS,
    add_input_arguments,
    add_model_arguments,
    add_optimisation_arguments,
    add_output_arguments,
    add_runner_arguments,
)

class InputOptions(PipelineOptions):
    """Where the clips and their precomputed keypoints come from."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_input_arguments(parser)


class ModelOptions(PipelineOptions):
    """Body model, pose prior, detector, regressor, device."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_model_arguments(parser)


class OptimisationOptions(PipelineOptions):
    """Bundle adjustment, its batching boundary, and track selection."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_optimisation_arguments(parser)


class OutputOptions(PipelineOptions):
    """Output folder and Parquet layout."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_output_arguments(parser)


class RunnerOptions(PipelineOptions):
    """Runner-specific settings of the job (the runner itself is Beam's ``--runner``)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_runner_arguments(parser)


OPTION_CLASSES = (InputOptions, ModelOptions, OptimisationOptions, OutputOptions, RunnerOptions)


FLAG_RANGES: dict[str, Range] = {
    # Every numeric flag (by its dest), checked by check_option_values on the launcher before
    # anything starts; tests/beam_jobs/test_options.py fails on a numeric flag missing here.
    "limit": integer(ge=0),
    "ba_batch_frames": integer(ge=1),
    "ba_batch_tracks": integer(ge=1),
    "torch_threads": integer(ge=0),
    "selection_threshold": real(ge=0, optional=True),
    "e_norm_threshold": real(ge=0, optional=True),  # the deprecated old name of --selection_threshold
    "keep_fraction": real(gt=0, le=1, optional=True),
    "min_inlier_fraction": real(ge=0, le=1, optional=True),
    "min_track_frames": integer(ge=1, optional=True),
    "crop_size": integer(ge=16, le=2048),
    "clips_per_shard": integer(ge=1),
    "row_group_size": integer(ge=1),
    "progress_seconds": real(gt=0),
    "progress_clips": integer(ge=0),
    "ba_heartbeat_seconds": real(gt=0),
    "dask_workers": integer(ge=0),
}


def check_option_values(options: PipelineOptions) -> None:
    """Type- and range-check every numeric flag of the job.

    Raises:
        ValueError: ``--clips_per_shard 0: must be an integer >= 1``.
    """
    for cls in OPTION_CLASSES:
        view = options.view_as(cls)
        for dest, rule in FLAG_RANGES.items():
            if not hasattr(view, dest):
                continue
            value = getattr(view, dest)
            if not rule.accepts(value):
                raise ValueError(f"--{dest} {value!r}: must be {rule.describe().replace(' (or null)', '')}")
    check_config_overrides(options)


# PerceptionConfig fields the job sets from its own flags (--keypoints, --pose_model, ...).
_SET_BY_FLAGS = ("keypoints_source", "detector_weights", "detector_runtime", "hmr_checkpoint", "smpl_mean_params")


def check_config_overrides(options: PipelineOptions) -> None:
    """Build ``BAConfig`` and ``PerceptionConfig`` from ``--ba_config`` / ``--perception_config``
    once, so a bad field stops the launcher at once with the field, value and range (see
    :mod:`optimize.validate`), before any model file is touched.

    Raises:
        ValueError: ``--ba_config: BAConfig.max_iter=1.5 (float): must be an integer >= 1``.
    """
    from optimize.config import BAConfig
    from pipeline.perception.perceive import PerceptionConfig
    from transforms.model_stages import build_dataclass

    ba = options.view_as(OptimisationOptions).ba_config or {}
    build_dataclass(BAConfig, dict(ba), "--ba_config")
    perception = dict(options.view_as(ModelOptions).perception_config or {})
    for name in _SET_BY_FLAGS:
        perception.pop(name, None)
    build_dataclass(PerceptionConfig, perception, "--perception_config")
