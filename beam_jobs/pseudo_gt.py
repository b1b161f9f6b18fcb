"""The pseudo-ground-truth job: video clips in, versioned Parquet SMPL datasets out.

    python -m beam_jobs.pseudo_gt --input 'corpus/**/*.mp4' --output out/ [options]
    vid2mesh run --input corpus/train.csv --video_root corpus --output out/ [options]

The launcher checks the model files (a missing one stops the job with the flag to pass),
reads the input listing and resumes (clips already committed under ``--output`` are
skipped, and it says so). It writes the clips of the run as one JSON-lines listing and
plans fit batches over it (consecutive clips, deterministic), commits the bad input rows
itself, and runs a pipeline of ``Create(batches) | Reshuffle | ParDo`` in which each batch
is perceived, fitted and committed as one shard. After the pipeline it selects over the
whole output, writes the card and closes the books: clips in = kept + rejected + failed,
from the committed rows, or the run fails naming the lost or doubled clips.

Runners: :mod:`beam_jobs.runners` (local FnApiRunner by default, ``--runner dask``, Dataflow).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from beam_jobs.logs import quiet_gcp_import_noise, setup_logging, storage_error

quiet_gcp_import_noise()  # before Beam's import logs its GCP notes

import apache_beam as beam  # noqa: E402
from apache_beam.metrics import MetricsFilter  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions, TestOptions, WorkerOptions  # noqa: E402

from beam_jobs import dataflow, runners  # noqa: E402
from beam_jobs.options import InputOptions, ModelOptions, OptimisationOptions, OutputOptions, RunnerOptions, check_option_values
from beam_jobs.preflight import preflight
from pipeline.dataset.books import RunBooks, run_books
from pipeline.dataset import schema
from pipeline.perception.inputs import InputListing, InputSpec, read_inputs
from pipeline.dataset.progress import ManifestPoller, ProgressMonitor, format_rate
from pipeline.dataset.card import write_card
from pipeline.dataset.lock import OutputLock
from pipeline.dataset.manifests import MANIFESTS, completed_clips, failed_clips, read_manifests
from pipeline.dataset.selection.commit import commit_frames_mode
from pipeline.dataset.selection.publish import SELECTED_VIEW
from pipeline.dataset.selection.rules import SelectionConfig, threshold_from_flags
from pipeline.dataset.selection.table import (SELECTION, read_selection_outcomes, read_selection_summary,
                                              read_selection_track_reasons)
from pipeline.dataset.writer import WriterConfig, remove_orphan_shards, retire_clips
from transforms import metrics, storage
from transforms.model_stages import ModelFiles, ModelPerception, ModelBundleAdjust, resolve_model_files
from transforms.pipeline import JobSettings, PseudoGroundTruth, listing_bytes, plan_batches
from transforms.provenance import source_hash
from transforms.stages import BundleAdjustStage, PerceptionStage
from transforms.write import commit_input_rejections, finish_run

LOGGER = logging.getLogger("vid2mesh.run")


@dataclass(frozen=True)
class JobReport:
    """What a finished (or skipped) run did.

    Attributes:
        output: the output folder.
        clips_listed: clips the input listed (bad rows included).
        clips_skipped: clips already written by an earlier run (resume).
        clips_in: clips this run processed.
        counters: Beam counters of this run (namespace vid2mesh), name -> value.
        distributions: Beam distributions, name -> {count, sum, min, max, mean}.
        stats: the output's stats.json (every run into this output).
        wall_seconds: launcher wall time of the run.
        state: the pipeline's final state ("DONE", "SKIPPED" when nothing was left, or
            "DRY_RUN": built, validated and not run).
        dry_run: with ``--dry_run``: the options and what was checked, as lines.
        failed_retried: clips that had failed in an earlier run and were processed again.
        failed_still_failing: of those, the clips that failed again.
        books: where this run's clips ended, from the committed rows (None: nothing ran).
        body_model: the fits' body model variant ("smpl", "standin"; "" when not known).
        notes: warnings the summary repeats (clips already written with other settings).
        keypoint_sources: this run's clips by ``keypoint_source`` (the detector and its hash,
            or ``keypoints:<file>`` counted as ``keypoint files``; "" as ``undecided``).
    """

    output: str
    clips_listed: int
    clips_skipped: int
    clips_in: int
    counters: dict[str, int]
    distributions: dict[str, dict[str, float]]
    stats: dict[str, Any]
    wall_seconds: float
    state: str
    dry_run: tuple[str, ...] = ()
    failed_retried: int = 0
    failed_still_failing: int = 0
    books: RunBooks | None = None
    body_model: str = ""
    keypoint_sources: dict[str, int] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()


def selection_config(opts: OptimisationOptions, warn: bool = False) -> SelectionConfig:
    """The selection settings the flags give (``warn``: log the deprecated flags' warning)."""
    threshold = threshold_from_flags(opts.selection_threshold, opts.e_norm_threshold, warn)
    changes = {"mode": opts.selection or ("threshold" if threshold is not None else "fraction")}
    if threshold is not None:
        changes["e_norm_threshold"] = threshold
    for flag, name in (("selection_score", "score"), ("keep_fraction", "keep_fraction"),
                       ("min_inlier_fraction", "min_inlier_fraction"), ("min_track_frames", "min_frames")):
        if getattr(opts, flag) is not None:
            changes[name] = getattr(opts, flag)
    return SelectionConfig(**changes)


def _frames_mode(out: OutputOptions) -> str:
    return "all" if out.write_all_frames else commit_frames_mode(out.frames)


def build_stages(options: PipelineOptions) -> tuple[PerceptionStage, BundleAdjustStage, ModelFiles]:
    """The real perception and bundle-adjustment stages from the options (checks files)."""
    inp, models, optim = options.view_as(InputOptions), options.view_as(ModelOptions), options.view_as(OptimisationOptions)
    files = resolve_model_files(
        smpl_model=models.smpl_model, gender=models.gender, gmm_prior=models.gmm_prior,
        pose_model=models.pose_model, hmr_checkpoint=models.hmr_checkpoint, hmr_mean_params=models.hmr_mean_params,
        cache_dir=models.model_cache, keypoints_source=inp.keypoints, exists=storage.exists,
    )
    overrides = dict(models.perception_config or {})
    out = options.view_as(OutputOptions)
    if out.store_crops:
        if out.crop_size < 16:
            raise ValueError(f"--crop_size {out.crop_size}: use at least 16 pixels")
        crop = dict(overrides.get("crop") or {})
        crop["size"] = out.crop_size
        overrides.update(store_crops=True, crop=crop)
    if files.pose_model and models.detector_runtime != "torch":
        from models.pose_runtime import check_runtime

        check_runtime(models.detector_runtime)  # a missing package stops the launcher, not every worker
    export_dir = None if storage.is_remote(out.output or "") else os.path.join(out.output, "_cache", "detector")
    if files.pose_model and inp.keypoints == "auto":
        LOGGER.info("keypoints: --pose_model %s finds the people of every clip; keypoint files next to the videos are "
                    "not used (a manifest's keypoints_uri and files under --keypoints_root are); pass --keypoints "
                    "precomputed to use the files", files.pose_model)
    perception = ModelPerception(files, models.device, inp.keypoints, inp.keypoints_root, overrides,
                                 models.detector_runtime, export_dir)
    bundle_adjust = ModelBundleAdjust(files, models.device, optim.ba_config or {})
    return perception, bundle_adjust, files


def plan_inputs(options: PipelineOptions, dry_run: bool = False,
                settings_hash: str = "") -> tuple[InputListing, InputListing, int, list[str], int]:
    """Read the input and drop what an earlier run already wrote (``dry_run``: delete nothing).

    A clip committed as ``failed`` (a fault of that run: a lost device, out of memory, a
    preempted worker) is not done: unless ``--no_retry_failed`` is given, its rows are taken
    out of the committed shards (:func:`pipeline.dataset.writer.retire_clips`) and it is
    processed again, so its new rows replace the old ones. ``rejected`` is a verdict on the
    input and stays.

    A skipped clip keeps the settings it was fitted with: when its manifest entry records
    another ``settings_hash`` than this run's, a warning says so and names ``--overwrite``.

    Returns:
        (everything listed, what is left to do, number of clips skipped, ids of the failed
        clips of earlier runs that this run retries, number of skipped clips fitted with
        other settings).
    """
    inp, out = options.view_as(InputOptions), options.view_as(OutputOptions)
    listing = read_inputs(
        InputSpec(inp.input, inp.video_root, inp.input_format, inp.limit),
        list_files=storage.list_files, read_text=storage.read_text, scheme_problem=storage.scheme_problem,
    )
    LOGGER.info("input: %s", listing.description)
    beam_storage = storage.BeamStorage()
    if out.overwrite and not dry_run:
        _clear_output(out.output, beam_storage)
    if not dry_run:
        remove_orphan_shards(out.output, beam_storage)
    done = completed_clips(out.output, beam_storage)
    listed = {c.clip_id for c in listing.clips} | {r.clip.clip_id for r in listing.rejected}
    failed = [k for k in failed_clips(out.output, beam_storage, done) if k in listed]
    if failed and out.retry_failed:
        if not dry_run:
            writer = WriterConfig(out.output, row_group_size=out.row_group_size, store_crops=out.store_crops)
            retire_clips(out.output, failed, writer, beam_storage)
        for clip_id in failed:
            done.pop(clip_id)
        LOGGER.info("retry: %d clips failed in an earlier run (a fault of that run, not of the input); processing "
                    "them again and replacing their rows (pass --no_retry_failed to keep them as failed)", len(failed))
    elif failed:
        LOGGER.info("--no_retry_failed: keeping %d failed clips of an earlier run as they are", len(failed))
    todo = InputListing(
        tuple(c for c in listing.clips if c.clip_id not in done),
        tuple(r for r in listing.rejected if r.clip.clip_id not in done),
        listing.description,
    )
    skipped = listing.num_inputs - todo.num_inputs
    if skipped:
        LOGGER.info("resume: %d of %d clips are already written under %s; skipping them (pass --overwrite to redo)",
                    skipped, listing.num_inputs, out.output)
    skipped_ids = listed - {c.clip_id for c in todo.clips} - {r.clip.clip_id for r in todo.rejected}
    stale = sum(1 for k in skipped_ids if settings_hash and done.get(k, {}).get("settings_hash") != settings_hash)
    if stale:
        LOGGER.warning(stale_settings_line(stale, skipped, out.output, settings_hash))
    return listing, todo, skipped, failed if out.retry_failed else [], stale


def _clear_output(output: str, beam_storage: storage.BeamStorage) -> None:
    removed = 0
    for folder in (*schema.DATASETS, MANIFESTS, SELECTION, SELECTED_VIEW):
        for path in beam_storage.list(beam_storage.join(output, folder)):
            beam_storage.delete(path)
            removed += 1
    LOGGER.info("--overwrite: removed %d files of an earlier run under %s", removed, output)


def write_listing(output: str, todo: InputListing, write: bool = True) -> tuple[str, list[bytes]]:
    """Write the clips of this run as JSON lines under ``<output>/_runs/``; returns the path
    and the lines. The batches of the pipeline are byte ranges of this file (a listing of
    300k Kinetics clips is too big to embed in a job graph), and it records what the run
    processed."""
    lines = listing_bytes(list(todo.clips))
    data = b"".join(lines)
    beam_storage = storage.BeamStorage()
    path = beam_storage.join(output, "_runs", f"clips-{hashlib.sha256(data).hexdigest()[:12]}.jsonl")
    if write:
        beam_storage.write_bytes(path, data)
    return path, lines


def manifest_snapshot(output: str, beam_storage) -> dict[str, frozenset]:
    """shard name -> its clip ids, for every committed shard of the output now."""
    return {m["shard"]: frozenset(m["clips"]) for m in read_manifests(output, beam_storage)}


def manifests_since(output: str, before: dict[str, frozenset], beam_storage) -> list[dict]:
    """The manifests committed after ``before`` was taken (new shards, or shards that now
    hold other clips)."""
    return [m for m in read_manifests(output, beam_storage) if before.get(m["shard"]) != frozenset(m["clips"])]


def run_metadata(files: ModelFiles, config: dict[str, Any]) -> schema.RunMetadata:
    info = schema.BodyModelInfo(files.body_model_variant, files.gender, os.path.basename(files.body_model), files.body_model_sha256)
    return schema.RunMetadata(body_model=info, config=config, code_version=schema.code_version())


def _dry_run_checks(options: PipelineOptions, files: ModelFiles | None) -> list[str]:
    """The options and paths of a dry run, checked without writing anything.

    Raises:
        ValueError: naming every problem found.
    """
    from beam_jobs.preflight import check_model_files
    from models.device import check_device_name

    values = options.get_all_options(drop_default=True)
    on_dataflow = dataflow.is_dataflow(runners.runner_name(options))
    problems = dataflow.validate_paths(options.get_all_options(), path_exists, on_dataflow)
    if problems:
        raise ValueError("--dry_run found problems: " + "; ".join(problems))
    try:
        check_device_name(options.view_as(ModelOptions).device)
    except (ValueError, RuntimeError) as exc:  # models.device.DeviceError
        raise ValueError(f"--dry_run found problems: {exc}") from None
    if files is not None:
        check_model_files(files)
    return ["options:", *("  " + line for line in dataflow.option_lines(values)),
            "paths: input, roots, model files, output, temp and staging locations exist or can be written"]


def _stages(options: PipelineOptions, perception: PerceptionStage | None, bundle_adjust: BundleAdjustStage | None,
            body_model: schema.BodyModelInfo | None):
    """The stages and the run metadata (model files resolved and checked when the stages are the real ones)."""
    if perception is None or bundle_adjust is None:
        perception, bundle_adjust, files = build_stages(options)
        return perception, bundle_adjust, files, run_metadata(files, {})
    body = body_model or schema.BodyModelInfo("unknown", "neutral", "", "")
    return perception, bundle_adjust, None, schema.RunMetadata(body, {}, schema.code_version())


def _parse_options(argv: Sequence[str] | None, options: PipelineOptions | None) -> tuple[PipelineOptions, bool]:
    if options is None:
        argv = ["--dry_run=True" if a == "--dry_run" else a for a in (argv or [])]  # Beam's flag wants a value
        runners.register_dask_options(argv)
        check_flags(argv)
        options = PipelineOptions(list(argv))
    check_option_values(options)  # every numeric flag and config field: type and range
    selection_config(options.view_as(OptimisationOptions), warn=True)  # the flags agree; a deprecated one warns once
    inp, out = options.view_as(InputOptions), options.view_as(OutputOptions)
    if not inp.input:
        raise ValueError("no --input: pass a glob of videos, a Kinetics CSV (with --video_root) or a manifest")
    if not out.output:
        raise ValueError("no --output: pass the folder to write frames/, tracks/ and rejected/ into")
    if dataflow.is_dataflow(runners.runner_name(options)):
        dataflow.check_launcher(options.view_as(WorkerOptions).sdk_container_image,
                                allow_image_mismatch=options.view_as(RunnerOptions).allow_image_mismatch,
                                service_options=options.get_all_options().get("dataflow_service_options"))
    dry_run = str(options.view_as(TestOptions).dry_run).lower() in ("true", "1", "yes")
    return options, dry_run


def _job_settings(options: PipelineOptions, perception, bundle_adjust, run_meta: schema.RunMetadata) -> JobSettings:
    inp, out, optim = options.view_as(InputOptions), options.view_as(OutputOptions), options.view_as(OptimisationOptions)
    selection = selection_config(optim)
    config = {
        "perception": perception.describe(),
        "bundle_adjust": bundle_adjust.describe(),
        "selection": dataclasses.asdict(selection),
        "frames": _frames_mode(out),
        "keypoints": inp.keypoints,
        "input": inp.input,
    }
    return JobSettings(
        selection=selection,
        writer=WriterConfig(out.output, row_group_size=out.row_group_size, store_crops=out.store_crops),
        run=dataclasses.replace(run_meta, config=config, settings_hash=fit_settings_hash(config, run_meta)),
        frames_mode=_frames_mode(out),
        batch_max_frames=optim.ba_batch_frames, batch_max_tracks=optim.ba_batch_tracks,
        heartbeat_s=out.ba_heartbeat_seconds, torch_threads=runners.worker_torch_threads(options),
        source_hash=source_hash(), allow_source_mismatch=options.view_as(RunnerOptions).allow_image_mismatch,
    )


def fit_settings_hash(config: dict[str, Any], run_meta: schema.RunMetadata) -> str:
    """:func:`pipeline.dataset.schema.settings_hash` of what a clip's rows depend on: the
    perception and bundle-adjustment configs (model files by file name, not by path), the
    keypoint source flag and the body model's sha256. The selection is not part of it (it is
    recomputed over the whole output at the end of every run)."""

    def without_paths(value):
        if isinstance(value, dict):
            return {k: (os.path.basename(v) if isinstance(v, str) and k in _PATH_SETTINGS else without_paths(v))
                    for k, v in value.items() if k not in ("device", "keypoints_root")}
        return value

    return schema.settings_hash({
        "perception": without_paths(config["perception"]),
        "bundle_adjust": without_paths(config["bundle_adjust"]),
        "keypoints": config["keypoints"],
        "body_model_sha256": run_meta.body_model.sha256,
    })


# Settings that hold a model file's path (machine-specific): hashed by file name.
_PATH_SETTINGS = ("detector_weights", "hmr_checkpoint", "smpl_mean_params")


def stale_settings_line(stale: int, skipped: int, output: str, current: str) -> str:
    """The warning that ``stale`` of the ``skipped`` clips already written under ``output``
    were fitted with other settings than this run's (settings hash ``current``)."""
    return (f"settings changed: {stale} of the {skipped} clips already written under {output} were fitted with other "
            f"perception or bundle-adjustment settings than this run's (settings hash {current}); they are skipped and "
            f"keep their old rows and settings. Pass --overwrite to refit every clip with these settings (or write to "
            f"a new --output)")


def clips_per_batch(options: PipelineOptions, num_clips: int) -> int:
    """Clips of one fit batch (= one shard): ``--clips_per_shard``, but small enough that
    every worker process of a run on this machine gets a batch."""
    per_shard = max(1, options.view_as(OutputOptions).clips_per_shard)
    workers = runners.worker_processes(options) or 1
    return max(1, min(per_shard, math.ceil(num_clips / workers))) if num_clips else per_shard


def run(
    argv: Sequence[str] | None = None,
    options: PipelineOptions | None = None,
    perception: PerceptionStage | None = None,
    bundle_adjust: BundleAdjustStage | None = None,
    body_model: schema.BodyModelInfo | None = None,
) -> JobReport:
    """Run the job to completion and report.

    Args:
        argv: command-line flags (ignored when ``options`` is given).
        options: ready PipelineOptions.
        perception, bundle_adjust, body_model: stages to use instead of the model-backed
            ones (tests, benchmarks); ``body_model`` describes the fits for the metadata.

    Raises:
        ValueError / FileNotFoundError: bad flags, missing model files, unreadable input;
            raised before the pipeline starts.
        OutputLocked (a ValueError): another run is writing into ``--output`` (its lock,
            ``<output>/_lock.json``, names it; ``--force_unlock`` clears a stale one).
        BooksError: the run's committed outcomes do not add up to the clips it took in
            (a runner lost or doubled clips); raised after the run, naming the clips.
    """
    options, dry_run = _parse_options(argv, options)
    out = options.view_as(OutputOptions)
    start = time.perf_counter()
    perception, bundle_adjust, files, run_meta = _stages(options, perception, bundle_adjust, body_model)
    if dry_run:
        checked = _dry_run_checks(options, files)
    else:
        preflight(out.output, options.view_as(ModelOptions).device, files,  # output, device, model files: exit 2 if bad
                  local_workers=runners.is_local(options))
    # one writer per output: a second run into a live output is refused here, before it plans
    with OutputLock(out.output, force=out.force_unlock) if not dry_run else contextlib.nullcontext():
        return _plan_and_run(options, dry_run, perception, bundle_adjust, run_meta, start, checked if dry_run else [])


def _plan_and_run(options: PipelineOptions, dry_run: bool, perception: PerceptionStage, bundle_adjust: BundleAdjustStage,
                  run_meta: schema.RunMetadata, start: float, checked: list[str]) -> JobReport:
    """Plan the input, build and run the pipeline, then finish the output (under its lock)."""
    out = options.view_as(OutputOptions)
    settings = _job_settings(options, perception, bundle_adjust, run_meta)
    listing, todo, skipped, retried, stale = plan_inputs(options, dry_run, settings.run.settings_hash)
    notes = (stale_settings_line(stale, skipped, out.output, settings.run.settings_hash),) if stale else ()
    extra = {"input": listing.description}
    if todo.num_inputs == 0 and not dry_run:
        LOGGER.info("nothing to do: all %d clips of the input are already written under %s; selecting over them",
                    listing.num_inputs, out.output)
        # the selection, _common_metadata and the card (finishing an output a killed run left without them)
        stats = finish_run(settings.writer, settings.run, settings.selection, extra)
        return JobReport(out.output, listing.num_inputs, skipped, 0, {}, {}, stats, time.perf_counter() - start, "SKIPPED",
                         notes=notes)
    path, lines = write_listing(out.output, todo, write=not dry_run)
    batches = plan_batches(path, lines, clips_per_batch(options, len(todo.clips)))
    runner = runners.make_runner(options, len(batches), start_cluster=not dry_run)
    pipeline = beam.Pipeline(runner=runner.runner, options=options)
    _ = (pipeline
         | "Batches" >> beam.Create(batches, reshuffle=False)
         | "Spread" >> beam.Reshuffle()
         | "PseudoGT" >> PseudoGroundTruth(perception, bundle_adjust, settings))
    where = runner.description or runners.runner_name(options)
    if dry_run:
        checked += _dry_run_graph(pipeline, options, where, todo, skipped, batches)
        return JobReport(out.output, listing.num_inputs, skipped, todo.num_inputs, {}, {}, {},
                         time.perf_counter() - start, "DRY_RUN", tuple(checked))
    LOGGER.info("processing %d clips (%d bad input rows) into %s in %d batches of at most %d clips on %s; each batch is "
                "committed as one shard as soon as it is fitted", len(todo.clips), len(todo.rejected), out.output,
                len(batches), max((b.num_clips for b in batches), default=0), where)
    expected = {c.clip_id for c in todo.clips} | {r.clip.clip_id for r in todo.rejected}
    before = manifest_snapshot(out.output, storage.BeamStorage())
    if todo.rejected:  # bad input rows: committed here, the launcher has them already
        commit_input_rejections(todo.rejected, settings.writer, settings.run)
    state, counters, distributions = _execute(pipeline, runner, options, len(todo.clips))
    report = _finish(options, settings, listing, skipped, retried, expected, before, extra,
                     (state, counters, distributions), start)
    return dataclasses.replace(report, notes=notes)


def _dry_run_graph(pipeline, options: PipelineOptions, where: str, todo: InputListing, skipped: int,
                   batches: list) -> list[str]:
    """What the run would submit: the graph, built and translated, never run."""
    proto = pipeline.to_runner_api()
    lines = [f"pipeline: built for {where} with {todo.num_inputs} clips ({skipped} already written) in "
             f"{len(batches)} batches; {len(proto.components.transforms)} transforms; not run"]
    if dataflow.is_dataflow(runners.runner_name(options)):
        lines.append(dataflow.translate_job(pipeline, options))
    return lines


def _execute(pipeline, runner: runners.Runner, options: PipelineOptions, num_clips: int):
    out = options.view_as(OutputOptions)
    every = out.progress_clips if out.progress_clips > 0 else max(1, num_clips // 20)
    monitor = ProgressMonitor(num_clips, ManifestPoller.starting_now(out.output, storage.BeamStorage()),
                              interval_s=out.progress_seconds, every_clips=every,
                              poll_s=1.0 if not storage.is_remote(out.output) else min(30.0, out.progress_seconds))
    result = None
    try:
        with monitor:
            result = pipeline.run()
            state = result.wait_until_finish()
    finally:
        runner.close(result)
    counters, distributions = job_metrics(result)
    return str(state), counters, distributions


def _finish(options: PipelineOptions, settings: JobSettings, listing: InputListing, skipped: int, retried: list[str],
            expected: set[str], before: dict[str, frozenset], extra: dict, executed: tuple, start: float) -> JobReport:
    """After the pipeline: the selection and the card, then the books of the run."""
    state, counters, distributions = executed
    out = options.view_as(OutputOptions)
    beam_storage = storage.BeamStorage()
    finish_run(settings.writer, settings.run, settings.selection, extra)
    committed = manifests_since(out.output, before, beam_storage)
    books = run_books(expected, committed, read_selection_outcomes(out.output, beam_storage),
                      read_selection_track_reasons(out.output, beam_storage))
    sources = keypoint_source_counts(committed, expected)
    counters = {**counters, **books.counters()}  # the clip counts come from the committed rows
    wall = time.perf_counter() - start
    done = completed_clips(out.output, beam_storage)
    still_failing = sum(1 for k in retried if done.get(k, {}).get("outcome") == "failed")
    last_run = {
        "clips_in": len(expected), "clips_skipped": skipped, "wall_seconds": round(wall, 2),
        "clips_per_second": round(len(expected) / wall, 4) if wall > 0 else None,
        "failed_retried": len(retried), "failed_still_failing": still_failing,
        "books": books.to_json(), "counters": counters, "state": state, "keypoint_sources": sources,
    }
    stats = write_card(out.output, settings.run, beam_storage,
                       {**extra, "last_run": last_run, "selection": read_selection_summary(out.output, beam_storage)})
    report = JobReport(out.output, listing.num_inputs, skipped, len(expected), counters, distributions, stats, wall, state,
                       failed_retried=len(retried), failed_still_failing=still_failing, books=books,
                       body_model=settings.run.body_model.variant, keypoint_sources=sources)
    if not books.balanced:
        raise BooksError(report, f"the run's books do not balance: {books.problems()}; the output keeps what was "
                                 f"committed; run the job again to process the missing clips")
    return report


def keypoint_source_counts(manifests: list[dict], clips: set[str]) -> dict[str, int]:
    """Clips of ``clips`` by keypoint source in the committed ``manifests``: each detector
    (``detector:<weights>@sha256:<hash>``) apart, every keypoint file as ``keypoint files``,
    a clip rejected before its source was decided as ``undecided``."""
    counts: dict[str, int] = {}
    for manifest in manifests:
        for clip_id, entry in manifest.get("clips", {}).items():
            if clip_id not in clips:
                continue
            source = entry.get("keypoint_source") or ""
            key = "keypoint files" if source.startswith("keypoints:") else (source or "undecided")
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


class BooksError(RuntimeError):
    """The end-of-run accounting failed (clips lost, doubled or unexpected); ``report`` holds
    what the run did."""

    def __init__(self, report: JobReport, message: str):
        super().__init__(message)
        self.report = report


def path_exists(path: str) -> bool:
    """An existing file, folder, object or bucket (what ``--dry_run`` checks paths with)."""
    return storage.exists(path)


def beam_flag_names() -> set[str]:
    """Option strings of every PipelineOptions class Beam (and this job) registers."""
    return {f"--{name}" for name in PipelineOptions([]).get_all_options()}


def check_flags(argv: Sequence[str]) -> None:
    """Refuse a flag that looks like one of the job's but is not (``--keep-fraction``):
    Beam would drop it with a warning and the run would go on with the default.

    Raises:
        ValueError: naming the flag and the one meant.
    """
    from beam_jobs.flags import job_flag_names, lookalike_error

    ours = job_flag_names()
    unknown = [t for t in argv if t.startswith("--") and t.split("=", 1)[0] not in ours]
    message = lookalike_error(unknown, ours, beam_flag_names() - ours) if unknown else None
    if message:
        raise ValueError(message)


def job_metrics(result) -> tuple[dict[str, int], dict[str, dict[str, float]]]:
    """This run's counters and distributions of the vid2mesh namespace."""
    try:
        query = result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))
    except (NotImplementedError, AttributeError):  # a runner without metrics
        return {}, {}
    counters: dict[str, int] = {}
    for c in query["counters"]:  # one entry per step: sum them
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + int(c.committed or 0)
    merged: dict[str, list] = {}
    for d in query["distributions"]:
        value = d.committed
        if value is None or not value.count:
            continue
        m = merged.setdefault(d.key.metric.name, [0, 0, value.min, value.max])
        m[0] += value.count
        m[1] += value.sum
        m[2], m[3] = min(m[2], value.min), max(m[3], value.max)
    distributions = {name: {"count": n, "sum": total, "min": lo, "max": hi, "mean": total / n}
                     for name, (n, total, lo, hi) in merged.items()}
    return counters, distributions


def process_seconds() -> float | None:
    """Seconds since the operating system started this process (Python's start-up and every
    import included), from ``/proc``; None where ``/proc`` is not available."""
    try:
        with open("/proc/self/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def wall_line(report: JobReport, since_start: float | None = None) -> str:
    """The summary's wall-time line: from the process start when known (``since_start``,
    seconds), with the job's part (model checks, pipeline, selection, card) beside it."""
    c = report.counters
    tracks = report.books.tracks if report.books else c.get("tracks_fitted", 0)
    rate = format_rate(report.clips_in, report.wall_seconds, c.get("frames_written", 0), tracks)
    job = f"{report.wall_seconds:.1f} s"
    if since_start is None:
        return f"wall {job} for the job (model checks, pipeline, selection and card; process start-up not counted), {rate}"
    startup = max(0.0, since_start - report.wall_seconds)
    return (f"wall {since_start:.1f} s since the process started: {startup:.1f} s start-up (Python, imports, "
            f"options) + {job} job (model checks, pipeline, selection and card); job rate {rate}")


STANDIN_SUMMARY = ("body model: the fits use the generated STAND-IN body model, not SMPL: they are not real SMPL "
                   "fits (for testing the pipeline only); pass --smpl_model (and --gmm_prior) to fit real SMPL")


def summary_lines(report: JobReport, since_start: float | None = None) -> list[str]:
    """The run's summary, one fact a line.

    Args:
        report: what the run did.
        since_start: seconds since the process started (:func:`process_seconds`); None:
            the wall line covers the job only and says so.
    """
    if report.state == "DRY_RUN":
        return [f"dry run: nothing was run or written under {report.output}", *report.dry_run]
    c, s, books = report.counters, report.stats, report.books
    lines = [
        f"output: {report.output}",
        f"this run: {report.clips_in} clips in -> {c.get('clips_kept', 0)} kept, {c.get('clips_rejected', 0)} rejected, "
        f"{c.get('clips_failed', 0)} failed; {report.clips_skipped} already written (skipped)",
        *([f"books: {books.problems()}"] if books is not None and not books.balanced else []),
        *([f"retried {report.failed_retried} clips that failed in an earlier run: "
           f"{report.failed_retried - report.failed_still_failing} done now, {report.failed_still_failing} still fail"]
          if report.failed_retried else []),
        f"this run's {_track_line(books)}; frames written "
        f"{c.get('frames_written', 0)} (the selected tracks hold {c.get('inlier_frames', 0)} inlier frames)",
        *([f"keypoints by source (this run's clips): {report.keypoint_sources}"] if report.keypoint_sources else []),
        wall_line(report, since_start),
        f"dataset (all runs): {s.get('clips', 0)} clips, {s.get('clips_kept', 0)} kept, {s.get('clips_rejected', 0)} "
        f"rejected, {s.get('clips_failed', 0)} failed; rejected by reason {s.get('rejected_by_reason', {})}",
        *([STANDIN_SUMMARY] if report.body_model == "standin" else []),
        *report.notes,
    ]
    return lines


def _track_line(books: RunBooks | None) -> str:
    """The run's track counts (kept, split, rejected by reason) from the committed rows."""
    if books is None:
        return "tracks: none committed"
    verdicts = books.track_verdicts
    if verdicts.total != books.tracks:  # no selection ran: the committed rows, undecided
        return f"{books.tracks} tracks committed, no selection ran"
    return verdicts.line()


def configure_logging(verbose: bool = False) -> None:
    setup_logging(verbose)


def run_and_summarise(prog: str, launch) -> int:
    """Call ``launch()`` (which returns a :class:`JobReport`), print the summary and return
    the exit status: 0 done, 1 the books do not balance, 2 a user error or a full, over-quota,
    unwritable or read-only output (one line naming the path, the OS error and what to do)."""
    try:
        report = launch()
    except BooksError as exc:
        for line in summary_lines(exc.report, process_seconds()):
            print(line)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as exc:  # user errors: their message names the input and the fix
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 -- storage errors become one line; others re-raise
        line = storage_error(exc)
        if line is None:
            raise
        print(f"{prog}: error: {line}", file=sys.stderr)
        return 2
    for line in summary_lines(report, process_seconds()):
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    return run_and_summarise("pseudo_gt", lambda: run(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
