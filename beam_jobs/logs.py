"""Logging of every entry point: one format, and Beam's GCP import notes dropped.

Importing Apache Beam without the GCP extra logs two notes (``apitools not found ...`` on
the root logger, ``No module named google.cloud.bigquery_storage_v1 ...`` on
``apache_beam.io.gcp.bigquery``) that say nothing about a vid2mesh run. Every entry point
(``vid2mesh``, ``python -m beam_jobs.pseudo_gt``, ``python -m beam_jobs.demo``) calls
:func:`setup_logging` before Beam is imported; it installs :class:`GcpImportNoise` on those
two loggers and on the root handlers.

Worker processes (``--direct_running_mode multi_processing``) send their log records to the
launcher, where Beam logs each on ``apache_beam.runners.portability.local_job_service`` as
one ``Worker: severity: ... message: "..."`` line. :class:`WorkerRecords` turns each back
into an ordinary record (the worker's level, time, message and source module) and applies
the launcher's rules to it: the GCP notes dropped, Beam's own harness chatter (below ERROR)
dropped, so a multi-process run prints what a single-process run does.

A full, over-quota, unwritable or read-only output ends the run with one line
(:func:`storage_error`: the path, the OS error, what to do); Beam's own ERROR record of the
failed step, with its traceback, is dropped then (:class:`BeamStorageErrorEcho`). No Beam
import at module level.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sys

NOISE_PREFIXES = ("apitools not found", "No module named google.cloud.bigquery_storage_v1")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class GcpImportNoise(logging.Filter):
    """Drops Beam's notes that the GCP client libraries are absent."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISE_PREFIXES)


_FILTER = GcpImportNoise()


# errno -> what to do; the errors of a full, over-quota, unwritable or read-only output.
STORAGE_ERRNOS = {
    errno.ENOSPC: "free space on that disk (or pass an --output on another disk) and run the job again; "
                  "committed clips are kept and skipped",
    errno.EDQUOT: "free space within your disk quota (or pass an --output elsewhere) and run the job again; "
                  "committed clips are kept and skipped",
    errno.EACCES: "fix the permissions of that path (the job must read and write under --output) or pass "
                  "another --output",
    errno.EROFS: "that file system is read-only: pass an --output on a writable disk",
}
_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\] ([^:\n'\"\[\]\\]+)(?:: '([^'\n]*)')?")


def _storage_errors_in_text(text: str):
    """(errno, OS error text, path or None) of each ``[Errno N] text: 'path'`` of a storage errno."""
    for match in _ERRNO_TEXT.finditer(text):
        code = int(match.group(1))
        if code in STORAGE_ERRNOS:
            yield code, match.group(2).strip(), match.group(3)


def storage_error(exc: BaseException) -> str | None:
    """One line for a disk-full, quota, permission or read-only error, else None.

    The OSError is looked for in ``exc`` and its ``__cause__`` / ``__context__`` chain; a
    worker's error reaches the launcher wrapped by the runner, as text: then the
    ``[Errno N] message: 'path'`` of its message is used.

    Returns:
        "PATH: OS error ([Errno N]); what to do", or None for any other error.
    """
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            path = current.filename or "the output"
            return f"{path}: {current.strerror or os.strerror(current.errno)} ([Errno {current.errno}]); {STORAGE_ERRNOS[current.errno]}"
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]
    for current in (exc, *(e for e in (exc.__cause__, exc.__context__) if e is not None)):
        for code, text, path in _storage_errors_in_text(str(current)):
            return f"{path or 'the output'}: {text} ([Errno {code}]); {STORAGE_ERRNOS[code]}"
    return None


class BeamStorageErrorEcho(logging.Filter):
    """Drops Beam's ERROR record (with its traceback) of a step that failed on a storage
    error: the entry point prints that error as one line (:func:`storage_error`).

    Attributes:
        verbose: keep them (``-v``).
    """

    verbose = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose or not record.name.startswith("apache_beam") or record.levelno < logging.ERROR:
            return True
        return next(_storage_errors_in_text(record.getMessage()), None) is None


_ECHO_FILTER = BeamStorageErrorEcho()

WORKER_RELAY = "apache_beam.runners.portability.local_job_service"
_WORKER_PREFIX = "Worker: "
_LEVELS = {"CRITICAL": logging.CRITICAL, "ERROR": logging.ERROR, "WARN": logging.WARNING, "NOTICE": logging.INFO,
           "INFO": logging.INFO, "DEBUG": logging.DEBUG, "TRACE": logging.DEBUG}
_SOURCE = re.compile(r"(?:^|/)((?:apache_beam|beam_jobs|transforms|pipeline|optimize|models)/[^:]*?)\.py:")


def _module_of(location: str) -> str:
    """``/x/site-packages/apache_beam/runners/worker/sdk_worker_main.py:421`` ->
    ``apache_beam.runners.worker.sdk_worker_main`` (the file's base name for other files)."""
    match = _SOURCE.search(location)
    if match:
        return match.group(1).replace("/", ".")
    base = os.path.basename(location.split(":", 1)[0])
    return base[:-3] if base.endswith(".py") else (base or "worker")


def parse_worker_entry(text: str) -> dict | None:
    """The fields of a worker's ``LogEntry`` as Beam's relay prints it (the proto's text
    format on one line): severity, seconds (float), message, trace, log_location; None if
    it does not parse."""
    try:
        from apache_beam.portability.api import beam_fn_api_pb2
        from google.protobuf import text_format

        entry = text_format.Parse(text, beam_fn_api_pb2.LogEntry())
    except Exception:  # noqa: BLE001 -- any parse failure: keep Beam's line as it is
        return None
    return {
        "severity": beam_fn_api_pb2.LogEntry.Severity.Enum.Name(entry.severity),
        "seconds": entry.timestamp.seconds + entry.timestamp.nanos / 1e9,
        "message": entry.message, "trace": entry.trace, "log_location": entry.log_location,
    }


class WorkerRecords(logging.Filter):
    """Rewrites the relayed ``Worker: ...`` records of Beam's local job service into the
    worker's own record and filters them as the launcher filters its own records.

    Attributes:
        verbose: keep Beam's harness notes and DEBUG lines (``-v``).
    """

    verbose = False

    def filter(self, record: logging.LogRecord) -> bool:
        verbose = self.verbose
        if not (isinstance(record.msg, str) and record.msg.startswith(_WORKER_PREFIX)):
            return verbose or record.levelno >= logging.WARNING  # the relay's own lines: Beam's level
        text = record.msg % record.args if record.args else record.msg
        entry = parse_worker_entry(text[len(_WORKER_PREFIX):])
        if entry is None:
            return True
        level = _LEVELS.get(entry["severity"], record.levelno)
        module = _module_of(entry["log_location"])
        message = entry["message"]
        if message.startswith(NOISE_PREFIXES):
            return False
        if module.startswith("apache_beam.") and level < logging.ERROR and not verbose:
            return False  # the worker harness's start-up and shutdown notes
        if level < logging.INFO and not verbose:
            return False
        if entry["trace"].strip() and entry["trace"].strip() not in message:
            message = f"{message}\n{entry['trace'].rstrip()}"
        record.name, record.levelno, record.levelname = f"{module} (worker)", level, logging.getLevelName(level)
        record.msg, record.args = message, ()
        record.created = entry["seconds"] or record.created
        record.msecs = (record.created - int(record.created)) * 1000
        return True


_WORKER_FILTER = WorkerRecords()


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
        for installed in (_FILTER, _ECHO_FILTER):
            if installed not in handler.filters:
                handler.addFilter(installed)


def setup_logging(verbose: bool = False, stream=None) -> None:
    """INFO (DEBUG with ``verbose``) lines in one format on ``stream`` (stdout), Beam's own
    loggers at WARNING unless ``verbose``, GCP import noise dropped, worker processes' lines
    in the same format (:class:`WorkerRecords`). Safe to call again after Beam's import (it
    resets the level Beam's import may have set)."""
    root = logging.getLogger()
    if not [h for h in root.handlers if not isinstance(h, logging.NullHandler)]:
        handler = logging.StreamHandler(stream or sys.stdout)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("apache_beam").setLevel(logging.INFO if verbose else logging.WARNING)
    _WORKER_FILTER.verbose = _ECHO_FILTER.verbose = verbose
    relay = logging.getLogger(WORKER_RELAY)  # workers' INFO lines reach the filter, which applies the levels
    relay.setLevel(logging.DEBUG if verbose else logging.INFO)
    if _WORKER_FILTER not in relay.filters:
        relay.addFilter(_WORKER_FILTER)
    quiet_gcp_import_noise()
