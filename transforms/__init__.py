"""Beam DoFns and PTransforms wrapping the pipeline stages (thin layer)."""
