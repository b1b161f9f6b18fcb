"""Logging of every entry point: one format, and Beam's GCP import notes dropped.

Importing Apache Beam without the GCP extra logs two notes (``apitools not found ...`` on
the root logger, ``No module named google.cloud.bigquery_storage_v1 ...`` on
``apache_beam.io.gcp.bigquery``) that say nothing about a vid2mesh run. Every entry point
(``vid2mesh``, ``python -m beam_jobs.pseudo_gt``, ``python -m beam_jobs.demo``) calls
:func:`setup_logging` before Beam is imported; it installs :class:`GcpImportNoise` on those
two loggers and on the root handlers. No Beam import here.
"""

from __future__ import annotations

import logging
import sys

NOISE_PREFIXES = ("apitools not found", "No module named google.cloud.bigquery_storage_v1")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class GcpImportNoise(logging.Filter):
    """Drops Beam's notes that the GCP client libraries are absent."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISE_PREFIXES)


_FILTER = GcpImportNoise()


def quiet_gcp_import_noise() -> None:
    """Install the filter on the loggers that emit the notes and on every root handler.

    When the root logger has no handler yet, a ``NullHandler`` keeps ``logging.warning``
    (which Beam's import calls) from configuring a default one in another format."""
    if not logging.getLogger().handlers:
        logging.getLogger().addHandler(logging.NullHandler())
    for name in ("", "apache_beam.io.gcp.bigquery"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def setup_logging(verbose: bool = False, stream=None) -> None:
    """INFO (DEBUG with ``verbose``) lines in one format on ``stream`` (stdout), Beam's own
    loggers at WARNING unless ``verbose``, GCP import noise dropped. Safe to call again
    after Beam's import (it resets the level Beam's import may have set)."""
    root = logging.getLogger()
    if not [h for h in root.handlers if not isinstance(h, logging.NullHandler)]:
        handler = logging.StreamHandler(stream or sys.stdout)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("apache_beam").setLevel(logging.INFO if verbose else logging.WARNING)
    quiet_gcp_import_noise()
