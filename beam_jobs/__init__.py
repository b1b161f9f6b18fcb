"""Beam job entry points, their PipelineOptions, and the ``vid2mesh`` console script."""
