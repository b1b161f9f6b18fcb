"""Progress a person can follow: committed clips of N, rates, ETA, and the running BA batch.

Plain Python, no Beam. Two parts:

* :func:`ba_batch` wraps one bundle-adjustment batch: it logs the batch's start and end and,
  from a heartbeat thread, a line at least every ``heartbeat_s`` seconds while the batch
  runs; it also records the running batch in a process-wide registry
  (:func:`running_batches`), which the local progress monitor shows.
* :class:`ProgressMonitor` polls what the job has committed under the output folder (the
  shard manifests, read once each) and prints a progress line every ``every_clips`` clips
  or every ``interval_s`` seconds: clips done of total, with eligible tracks / rejected /
  failed so far, clips/s (frames/s and tracks/s when clips/s rounds to 0), ETA, and the
  running BA batch with its tracks, frames and elapsed time. On a terminal it draws a
  ``tqdm`` bar on stderr instead of plain lines.

Because it reads committed manifests, the monitor works whatever runs the job (the
in-process FnApiRunner, its multi-process mode, or a remote runner writing to gs://).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

LOGGER = logging.getLogger("vid2mesh.progress")

_RUNNING: dict[int, dict[str, Any]] = {}
_LOCK = threading.Lock()
_NEXT_ID = [0]


def running_batches() -> list[dict[str, Any]]:
    """BA batches running in this process: {"tracks", "frames", "started"} (time.monotonic)."""
    with _LOCK:
        return [dict(b) for b in _RUNNING.values()]


@contextmanager
def ba_batch(tracks: int, frames: int, heartbeat_s: float = 60.0, logger: logging.Logger = LOGGER) -> Iterator[dict[str, Any]]:
    """Log a BA batch's start, a heartbeat line every ``heartbeat_s`` s while it runs, and
    register it for :func:`running_batches`; the caller logs the end (with its results).

    Args:
        tracks: tracks in the batch.
        frames: frames in the batch (sum of the tracks' frames).
        heartbeat_s: seconds between heartbeat lines (> 0).
    """
    started = time.monotonic()
    info = {"tracks": int(tracks), "frames": int(frames), "started": started}
    with _LOCK:
        key = _NEXT_ID[0]
        _NEXT_ID[0] += 1
        _RUNNING[key] = info
    logger.info("BA batch started: %d tracks, %d frames", tracks, frames)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(heartbeat_s):
            logger.info("BA batch running: %d tracks, %d frames, %.0f s elapsed", tracks, frames, time.monotonic() - started)

    thread = threading.Thread(target=beat, name="vid2mesh-ba-heartbeat", daemon=True)
    thread.start()
    try:
        yield info
    finally:
        stop.set()
        thread.join(timeout=1.0)
        with _LOCK:
            _RUNNING.pop(key, None)


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def format_rate(clips: int, seconds: float, frames: int = 0, tracks: int = 0) -> str:
    """"1.25 clips/s", or frames/s and tracks/s when clips/s rounds to 0.00."""
    if seconds <= 0:
        return "- clips/s"
    rate = clips / seconds
    if round(rate, 2) > 0 or (not frames and not tracks):
        return f"{rate:.2f} clips/s"
    # three significant figures: a 19-track clip fitted in an hour is 0.00528 tracks/s, not 0.00
    return f"{rate:.3g} clips/s ({frames / seconds:.3g} frames/s, {tracks / seconds:.3g} tracks/s)"


@dataclass
class Counts:
    """Clips committed so far by where they stand (pending = has an eligible track, to be
    kept or not by the selection at the end)."""

    done: int = 0
    pending: int = 0
    rejected: int = 0
    failed: int = 0
    tracks: int = 0
    frames: int = 0


@dataclass
class ManifestPoller:
    """Counts committed clips from ``<output>/_manifests`` (each manifest read once).

    Args:
        output: the output folder.
        storage: a :class:`pipeline.dataset.fs.Storage`.
        ignore: manifest paths present before the run started (earlier runs).
    """

    output: str
    storage: Any
    ignore: set[str] = field(default_factory=set)
    _seen: set[str] = field(default_factory=set)
    _counts: Counts = field(default_factory=Counts)

    @classmethod
    def starting_now(cls, output: str, storage) -> "ManifestPoller":
        poller = cls(output, storage)
        poller.ignore = set(poller._paths())
        return poller

    def _paths(self) -> list[str]:
        from pipeline.dataset.manifests import MANIFESTS

        return [p for p in self.storage.list(self.storage.join(self.output, MANIFESTS)) if p.endswith(".json")]

    def __call__(self) -> Counts:
        for path in self._paths():
            if path in self._seen or path in self.ignore:
                continue
            try:
                manifest = json.loads(self.storage.read_bytes(path))
            except (OSError, ValueError):  # being written: next poll
                continue
            self._seen.add(path)
            for entry in manifest.get("clips", {}).values():
                c = self._counts
                c.done += 1
                outcome = entry.get("outcome")
                if outcome in ("pending", "kept"):
                    c.pending += 1
                elif outcome == "failed":
                    c.failed += 1
                else:
                    c.rejected += 1
                c.tracks += int(entry.get("tracks") or 0)
                c.frames += int(entry.get("frames") or 0)
        return Counts(**vars(self._counts))


class ProgressMonitor:
    """Prints progress while a job runs (see the module docstring).

    Args:
        total: clips this run processes.
        poll: returns the :class:`Counts` committed so far by this run.
        interval_s: seconds between lines when few clips finish.
        every_clips: also a line each time this many more clips are done (0: off).
        poll_s: seconds between polls.
        bar: draw a tqdm bar on stderr (None: when stderr is a terminal).
        emit: where plain lines go (default: the ``vid2mesh.progress`` logger at INFO).
    """

    def __init__(self, total: int, poll: Callable[[], Counts], interval_s: float = 30.0, every_clips: int = 0,
                 poll_s: float = 1.0, bar: bool | None = None, emit: Callable[[str], None] | None = None):
        self.total = max(0, int(total))
        self.poll = poll
        self.interval_s = float(interval_s)
        self.every_clips = int(every_clips)
        self.poll_s = float(poll_s)
        self.bar = sys.stderr.isatty() if bar is None else bar
        self.emit = emit or LOGGER.info
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = time.monotonic()
        self._tqdm = None

    def line(self, counts: Counts, now: float | None = None) -> str:
        elapsed = (now if now is not None else time.monotonic()) - self._start
        done = counts.done
        pct = 100.0 * done / self.total if self.total else 100.0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else math.inf
        text = (f"progress: {done}/{self.total} clips ({pct:.0f}%): {counts.pending} with eligible tracks, "
                f"{counts.rejected} rejected, {counts.failed} failed; "
                f"{format_rate(done, elapsed, counts.frames, counts.tracks)}, elapsed {format_duration(elapsed)}, "
                f"ETA {format_duration(eta) if done < self.total else '0s'}")
        batches = running_batches()
        if batches:
            b = min(batches, key=lambda x: x["started"])
            text += (f"; BA batch: {b['tracks']} tracks, {b['frames']} frames, "
                     f"{format_duration(time.monotonic() - b['started'])} elapsed")
        return text

    def _report(self, counts: Counts) -> None:
        text = self.line(counts)
        self.lines.append(text)
        if self._tqdm is not None:
            self._tqdm.n = counts.done
            self._tqdm.set_postfix_str(text.split(": ", 1)[1].split("; ", 1)[-1][:120], refresh=True)
        else:
            self.emit(text)

    def _loop(self) -> None:
        last_time, last_done = time.monotonic(), 0
        while not self._stop.wait(self.poll_s):
            try:
                counts = self.poll()
            except Exception as exc:  # a transient listing error must not end the job
                LOGGER.debug("progress poll failed: %s", exc)
                continue
            now = time.monotonic()
            if (self.every_clips and counts.done - last_done >= self.every_clips) or now - last_time >= self.interval_s:
                self._report(counts)
                last_time, last_done = now, counts.done

    def __enter__(self) -> "ProgressMonitor":
        self._start = time.monotonic()
        if self.bar:
            try:
                from tqdm import tqdm

                self._tqdm = tqdm(total=self.total, unit="clip", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                self._tqdm = None
        self._thread = threading.Thread(target=self._loop, name="vid2mesh-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        try:
            counts = self.poll()
            if not self.lines or not self.lines[-1].startswith(f"progress: {counts.done}/"):
                self._report(counts)
        except Exception as error:
            LOGGER.debug("final progress poll failed: %s", error)
        if self._tqdm is not None:
            self._tqdm.close()
