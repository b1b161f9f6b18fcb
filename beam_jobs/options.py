"""``PipelineOptions`` of the pseudo-ground-truth job, in four groups: input, models,
optimisation, output.

The flags are declared once in :mod:`beam_jobs.flags`, which both these classes and the
``vid2mesh run`` sub-command use, so ``python -m beam_jobs.pseudo_gt`` and ``vid2mesh run``
take the same options.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs.flags import (
    ADDERS,
    add_input_arguments,
    add_model_arguments,
    add_optimisation_arguments,
    add_output_arguments,
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


OPTION_CLASSES = (InputOptions, ModelOptions, OptimisationOptions, OutputOptions)
