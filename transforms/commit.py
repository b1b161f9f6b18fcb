"""Commit as you go: a batch of whole clips perceived, bundle-adjusted and written in one step.

::

    ClipRef --PerceiveClipFn--> PerceptionResult (with its tracks) | ClipOutcome (reject)
    [the batch's results] --FitAndCommitFn--> ShardSummary   (BA of the batch's tracks, rows,
        shard + manifest)

Both are used by :class:`transforms.pipeline.PerceiveFitCommitFn`, one element per batch.

No GroupByKey stands between perception, bundle adjustment and the write, so a batch's fits
reach storage as soon as the batch is fitted (in batch mode a GroupByKey would hold every
result until all clips were fitted). A batch never splits a clip, so each clip's rows are
in exactly one shard, committed by its manifest; the selection comes after, over the whole
output (:mod:`pipeline.dataset.selection.table`).
"""

from __future__ import annotations

import logging
from collections import Counter
import time

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared

from pipeline.dataset import schema
from pipeline.dataset.books import count_track_verdicts
from pipeline.dataset.progress import ba_batch
from pipeline.dataset.rows import ClipOutcome
from pipeline.dataset.selection.commit import ELIGIBLE, PENDING, commit_outcome
from pipeline.dataset.selection.rules import SelectionConfig
from pipeline.dataset.writer import WriterConfig, write_shard
from pipeline.records import PerceptionResult, TrackProblem
from transforms import metrics
from transforms.bundle_adjust import fit_tracks, set_torch_threads
from transforms.stages import BundleAdjustStage
from transforms.storage import BeamStorage

LOGGER = logging.getLogger("vid2mesh.clips")




def _chunks(problems: list[TrackProblem], max_frames: int, max_tracks: int) -> list[list[TrackProblem]]:
    chunks, current, frames = [], [], 0
    for p in problems:
        if current and (len(current) >= max_tracks or frames + p.num_frames > max_frames):
            chunks.append(current)
            current, frames = [], 0
        current.append(p)
        frames += p.num_frames
    if current:
        chunks.append(current)
    return chunks


class _Loaded:
    def __init__(self, stage):
        stage.setup()
        self.stage = stage


def _detection_note(outcome: ClipOutcome) -> str:
    """What the detector saw of the clip, from its rows' detection columns ("" without rows)."""
    table = outcome.tracks if outcome.tracks is not None and outcome.tracks.num_rows else outcome.rejected
    if table is None or not table.num_rows or "detections_max" not in table.column_names:
        return ""
    row = table.slice(0, 1).to_pylist()[0]
    if row.get("num_frames", 1) == 0:  # rejected before any frame was decoded
        return ""
    smallest = row["smallest_person_px"]
    return (f"; people per frame median {row['detections_median']:g}, max {row['detections_max']}, smallest "
            + (f"{smallest:.0f} px" if smallest == smallest else "none")
            + (f", {row['duplicate_tracks']} duplicate tracks dropped" if row["duplicate_tracks"] else ""))


def _clip_line(outcome: ClipOutcome) -> str:
    tracks = count_track_verdicts(outcome.track_reasons, undecided=ELIGIBLE)
    if outcome.outcome == PENDING:
        return (f"clip {outcome.clip_id}: committed, {tracks.line()}; {outcome.num_frames_written} frames "
                f"(the selection at the end of the run decides){_detection_note(outcome)}")
    table = outcome.rejected
    message = ""
    if table is not None and table.num_rows:
        message = str(table.column("message")[0].as_py() or "").strip().splitlines()
        message = message[-1][:400] if message else ""
    counts = f", {tracks.line()}" if tracks.total else ""
    return (f"clip {outcome.clip_id}: {outcome.outcome} ({outcome.reason}, stage {outcome.stage}){counts}"
            + (f": {message}" if message else "") + _detection_note(outcome))


def count_commit(outcome: ClipOutcome) -> None:
    """Commit-time counters: pending clips wait for the selection; rejected and failed are final."""
    metrics.inc("clips_committed")
    if outcome.outcome == PENDING:
        metrics.inc("clips_pending")
    else:
        metrics.inc(f"clips_{outcome.outcome}")
        metrics.inc(f"rejected_{outcome.reason}")
    metrics.inc("frames_written", outcome.num_frames_written)


class FitAndCommitFn(beam.DoFn):
    """[PerceptionResult | ClipOutcome] -> ShardSummary: bundle-adjust the batch's tracks
    (in chunks of at most ``max_frames`` frames and ``max_tracks`` tracks), build every
    clip's rows and write them as one committed shard.

    Also the Beam gauges ``ba_batch_tracks_running``, ``ba_batch_frames_running`` (the batch
    in progress; 0 when idle) and ``clips_committed_last`` (clips of the last shard).
    """

    def __init__(self, stage: BundleAdjustStage, selection: SelectionConfig, frames_mode: str, writer: WriterConfig,
                 run: schema.RunMetadata, max_frames: int, max_tracks: int, heartbeat_s: float = 60.0,
                 torch_threads: int = 0):
        self._stage = stage
        self._selection = selection
        self._frames_mode = frames_mode
        self._writer = writer
        self._run = run
        self._max_frames = max_frames
        self._max_tracks = max_tracks
        self._heartbeat_s = heartbeat_s
        self._torch_threads = torch_threads
        self._shared = Shared()

    def setup(self):
        set_torch_threads(self._torch_threads)
        self._loaded = self._shared.acquire(lambda: _Loaded(self._stage), tag=repr(self._stage.describe()))
        self._gauge_tracks = Metrics.gauge(metrics.NAMESPACE, "ba_batch_tracks_running")
        self._gauge_frames = Metrics.gauge(metrics.NAMESPACE, "ba_batch_frames_running")

    def _fit(self, problems: list[TrackProblem]) -> list:
        fits = []
        for chunk in _chunks(problems, self._max_frames, self._max_tracks):
            frames = sum(p.num_frames for p in chunk)
            self._gauge_tracks.set(len(chunk))
            self._gauge_frames.set(frames)
            start = time.perf_counter()
            with ba_batch(len(chunk), frames, self._heartbeat_s):
                chunk_fits = fit_tracks(self._loaded.stage, chunk)
            elapsed = time.perf_counter() - start
            ok = [f for f in chunk_fits if f.status == "ok"]
            unconverged = sum(not f.converged for f in ok)
            statuses = Counter(f.status for f in chunk_fits if f.status != "ok")
            LOGGER.info("BA batch done: %d tracks found by perception, %d frames in %.1f s: %d fitted%s%s", len(chunk), frames,
                        elapsed, len(ok), "".join(f", {n} {s}" for s, n in sorted(statuses.items())),
                        f" ({unconverged} stopped at the iteration limit without converging)" if unconverged else "")
            self._gauge_tracks.set(0)
            self._gauge_frames.set(0)
            metrics.seconds("bundle_adjust", elapsed)
            metrics.inc("ba_batches")
            metrics.observe("ba_batch_tracks", len(chunk))
            metrics.observe("ba_batch_frames", frames)
            for fit in chunk_fits:
                metrics.inc(f"tracks_{'fitted' if fit.status == 'ok' else fit.status}")
                if fit.status == "ok":
                    metrics.observe("ba_iterations", fit.iterations)
            fits += chunk_fits
        return fits

    def process(self, batch):
        results = [item for item in batch if isinstance(item, PerceptionResult)]
        outcomes = [item for item in batch if not isinstance(item, PerceptionResult)]
        problems = [p for r in results for p in r.problems]
        fits = self._fit(problems) if problems else []
        by_clip: dict[str, list] = {}
        for problem, fit in zip(problems, fits):
            by_clip.setdefault(problem.clip_id, []).append((problem, fit))
        for result in results:
            start = time.perf_counter()
            fitted = by_clip.get(result.clip.clip_id, [])
            outcome = commit_outcome(result, fitted, self._selection, self._frames_mode)
            metrics.seconds("select", time.perf_counter() - start)
            if any(fit.status == "ok" for _, fit in fitted):
                metrics.inc("clips_fitted")
            outcomes.append(outcome)
        if not outcomes:
            return
        start = time.perf_counter()
        summary = write_shard(outcomes, self._writer, self._run, BeamStorage())
        metrics.seconds("write", time.perf_counter() - start)
        metrics.inc("shards_written")
        Metrics.gauge(metrics.NAMESPACE, "clips_committed_last").set(len(outcomes))
        for outcome in sorted(outcomes, key=lambda o: o.clip_id):
            count_commit(outcome)
            LOGGER.info("%s", _clip_line(outcome))
        yield summary
