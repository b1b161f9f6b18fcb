"""Which code a worker runs: a hash of the project's source, compared between launcher and workers.

A Dataflow job runs the code baked into its worker image and a Dask cluster the code
installed on its workers; neither is the launcher's checkout. The launcher passes its
:func:`source_hash` into the job, and every worker compares it with the hash of the code it
imported before it processes anything, so an image built from other code fails the job at
start-up instead of writing rows of another version.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from pathlib import Path

LOGGER = logging.getLogger(__name__)
PACKAGES = ("models", "optimize", "pipeline", "transforms", "beam_jobs")
HASH_CHARS = 16


def source_hash() -> str:
    """sha256 (first 16 hex digits) over the path and bytes of every ``.py`` file of the
    project's packages, as imported by this interpreter (a checkout or an installed image)."""
    digest = hashlib.sha256()
    for name in PACKAGES:
        root = Path(importlib.import_module(name).__file__).resolve().parent
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            digest.update(f"{name}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()[:HASH_CHARS]


class SourceMismatch(RuntimeError):
    """A worker runs other code than the launcher."""


def check_worker_source(expected: str | None, allow_mismatch: bool = False) -> None:
    """Compare this worker's :func:`source_hash` with the launcher's.

    Raises:
        SourceMismatch: naming both hashes and the fix, unless ``allow_mismatch``.
    """
    if not expected:
        return
    actual = source_hash()
    if actual == expected:
        return
    message = (f"this worker runs vid2mesh source {actual} but the launcher's checkout is {expected}: rebuild and push "
               "the worker image from the launcher's checkout (docs/dataflow.md), or pass --allow_image_mismatch to "
               "run the image's code anyway")
    if allow_mismatch:
        LOGGER.warning("%s (--allow_image_mismatch given: going on)", message)
        return
    raise SourceMismatch(message)
