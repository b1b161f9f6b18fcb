"""The pseudo-ground-truth job: video clips in, versioned Parquet SMPL datasets out.

    python -m beam_jobs.pseudo_gt --input 'corpus/**/*.mp4' --output out/ [options]
    vid2mesh run --input corpus/train.csv --video_root corpus --output out/ [options]

Locally (no ``--runner``, or ``--runner DirectRunner``) the job runs on Beam's FnApiRunner,
the batch engine behind the DirectRunner, directly: Beam 2.77's DirectRunner would first try
to download its Prism binary, so the local default makes no network attempt.
``--direct_running_mode multi_processing --direct_num_workers N`` runs N worker processes.
Any other ``--runner`` (DataflowRunner, FlinkRunner, PrismRunner ...) is used as given.

Before the pipeline starts, the launcher checks the model files (a missing one stops the
job with the flag to pass), reads the input listing, and resumes: clips already committed
under ``--output`` are skipped, and says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from beam_jobs.logs import quiet_gcp_import_noise, setup_logging

quiet_gcp_import_noise()  # before Beam's import logs its GCP notes

import apache_beam as beam  # noqa: E402
from apache_beam.metrics import MetricsFilter  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TestOptions, WorkerOptions  # noqa: E402

from beam_jobs import dataflow  # noqa: E402
from beam_jobs.options import InputOptions, ModelOptions, OptimisationOptions, OutputOptions, check_option_values
from beam_jobs.preflight import preflight
from pipeline.dataset import schema
from pipeline.perception.inputs import InputListing, InputSpec, clip_from_json, clip_to_json, read_inputs
from pipeline.dataset.progress import ManifestPoller, ProgressMonitor, format_rate
from pipeline.dataset.card import write_card
from pipeline.dataset.manifests import MANIFESTS, completed_clips, failed_clips
from pipeline.dataset.selection.commit import commit_frames_mode
from pipeline.dataset.selection.rules import SelectionConfig
from pipeline.dataset.selection.table import SELECTION, read_selection_summary
from pipeline.dataset.writer import WriterConfig, remove_orphan_shards, retire_clips
from transforms import metrics, storage
from transforms.model_stages import ModelFiles, ModelPerception, ModelBundleAdjust, resolve_model_files
from transforms.pipeline import JobSettings, PseudoGroundTruth
from transforms.stages import BundleAdjustStage, PerceptionStage
from transforms.write import finish_run

LOGGER = logging.getLogger("vid2mesh.run")
LOCAL_RUNNERS = {None, "", "directrunner", "direct", "fnapirunner", "switchingdirectrunner"}


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


def local_runner(options: PipelineOptions):
    """The runner to use: the FnApiRunner for the local default (no Prism download)."""
    name = options.view_as(StandardOptions).runner
    if name is None or name.lower() in LOCAL_RUNNERS:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return FnApiRunner()
    return None  # Beam builds the named runner


def worker_torch_threads(options: PipelineOptions) -> int:
    """torch intra-op threads per worker: ``--torch_threads``, or CPU cores / worker processes.

    Beam's workers and torch's own thread pool otherwise oversubscribe the cores (measured
    on a busy 2-core machine: bundle adjustment 5.8x slower than with one torch thread).
    """
    optim = options.view_as(OptimisationOptions)
    direct = options.view_as(beam.options.pipeline_options.DirectOptions)
    runner = options.view_as(StandardOptions).runner
    local = runner is None or runner.lower() in LOCAL_RUNNERS
    cores = os.cpu_count() or 1
    requested = direct.direct_num_workers
    workers = (cores if requested == 0 else max(1, int(requested or 1))) if local else 1  # Beam: 0 = one per core
    threads = optim.torch_threads if optim.torch_threads > 0 else max(1, cores // workers)
    LOGGER.info("torch intra-op threads per worker: %d (%s)", threads,
                "--torch_threads" if optim.torch_threads > 0 else f"{cores} cores / {workers} worker processes")
    return threads


def selection_config(opts: OptimisationOptions) -> SelectionConfig:
    mode = opts.selection or ("threshold" if opts.e_norm_threshold is not None else "fraction")
    changes = {"mode": mode}
    for flag, name in (("e_norm_threshold", "e_norm_threshold"), ("keep_fraction", "keep_fraction"),
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
        cache_dir=models.model_cache, keypoints_mode=inp.keypoints, exists=storage.exists,
    )
    overrides = dict(models.perception_config or {})
    out = options.view_as(OutputOptions)
    if out.store_crops:
        if out.crop_size < 16:
            raise ValueError(f"--crop_size {out.crop_size}: use at least 16 pixels")
        crop = dict(overrides.get("crop") or {})
        crop["size"] = out.crop_size
        overrides.update(store_crops=True, crop=crop)
    perception = ModelPerception(files, models.device, inp.keypoints, inp.keypoints_root, overrides)
    bundle_adjust = ModelBundleAdjust(files, models.device, optim.ba_config or {})
    return perception, bundle_adjust, files


def plan_inputs(options: PipelineOptions, dry_run: bool = False) -> tuple[InputListing, InputListing, int, list[str]]:
    """Read the input and drop what an earlier run already wrote (``dry_run``: delete nothing).

    A clip committed as ``failed`` (a fault of that run: a lost device, out of memory, a
    preempted worker) is not done: unless ``--no_retry_failed`` is given, its rows are taken
    out of the committed shards (:func:`pipeline.dataset.writer.retire_clips`) and it is
    processed again, so its new rows replace the old ones. ``rejected`` is a verdict on the
    input and stays.

    Returns:
        (everything listed, what is left to do, number of clips skipped, ids of the failed
        clips of earlier runs that this run retries).
    """
    inp, out = options.view_as(InputOptions), options.view_as(OutputOptions)
    listing = read_inputs(
        InputSpec(inp.input, inp.video_root, inp.input_format, inp.limit),
        list_files=storage.list_files, read_text=storage.read_text,
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
    return listing, todo, skipped, failed if out.retry_failed else []


def _clear_output(output: str, beam_storage: storage.BeamStorage) -> None:
    removed = 0
    for folder in (*schema.DATASETS, MANIFESTS, SELECTION):
        for path in beam_storage.list(beam_storage.join(output, folder)):
            beam_storage.delete(path)
            removed += 1
    LOGGER.info("--overwrite: removed %d files of an earlier run under %s", removed, output)


def write_listing(output: str, todo: InputListing, write: bool = True) -> str:
    """Write the clips of this run as JSON lines under ``<output>/_runs/`` and return the
    path: the pipeline reads them from there (a listing of 300k Kinetics clips is too big
    to embed in a Dataflow job graph), and the file records what the run processed."""
    lines = "".join(clip_to_json(c) + "\n" for c in todo.clips)
    digest = hashlib.sha256(lines.encode()).hexdigest()[:12]
    beam_storage = storage.BeamStorage()
    path = beam_storage.join(output, "_runs", f"clips-{digest}.jsonl")
    if write:
        beam_storage.write_bytes(path, lines.encode())
    return path


def run_metadata(files: ModelFiles, config: dict[str, Any]) -> schema.RunMetadata:
    info = schema.BodyModelInfo(files.body_model_variant, files.gender, os.path.basename(files.body_model), files.body_model_sha256)
    return schema.RunMetadata(body_model=info, config=config, code_version=schema.code_version())


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
    """
    if options is None:
        argv = ["--dry_run=True" if a == "--dry_run" else a for a in (argv or [])]  # Beam's flag wants a value
        check_flags(argv)
    options = options or PipelineOptions(list(argv or []))
    check_option_values(options)  # every numeric flag and config field: type and range
    dry_run = str(options.view_as(TestOptions).dry_run).lower() in ("true", "1", "yes")
    runner_name = options.view_as(StandardOptions).runner
    if dataflow.is_dataflow(runner_name):
        dataflow.check_launcher(options.view_as(WorkerOptions).sdk_container_image)
    checked: list[str] = []
    if dry_run:
        values = options.get_all_options(drop_default=True)
        problems = dataflow.validate_paths(options.get_all_options(), path_exists, dataflow.is_dataflow(runner_name))
        if problems:
            raise ValueError("--dry_run found problems: " + "; ".join(problems))
        checked = ["options:", *("  " + line for line in dataflow.option_lines(values)),
                   "paths: input, roots, model files, output, temp and staging locations exist or can be written"]
    inp, out, optim = options.view_as(InputOptions), options.view_as(OutputOptions), options.view_as(OptimisationOptions)
    if not inp.input:
        raise ValueError("no --input: pass a glob of videos, a Kinetics CSV (with --video_root) or a manifest")
    if not out.output:
        raise ValueError("no --output: pass the folder to write frames/, tracks/ and rejected/ into")
    start = time.perf_counter()
    files = None
    if perception is None or bundle_adjust is None:
        perception, bundle_adjust, files = build_stages(options)
        run_meta = run_metadata(files, {})
    else:
        run_meta = schema.RunMetadata(body_model or schema.BodyModelInfo("unknown", "neutral", "", ""), {}, schema.code_version())
    if dry_run:  # the same checks without the output's write probe: a dry run writes nothing
        from beam_jobs.preflight import check_model_files
        from models.device import check_device_name

        try:
            check_device_name(options.view_as(ModelOptions).device)
        except (ValueError, RuntimeError) as exc:  # models.device.DeviceError
            raise ValueError(f"--dry_run found problems: {exc}") from None
        if files is not None:
            check_model_files(files)
    else:
        preflight(out.output, options.view_as(ModelOptions).device, files,  # output, device, model files: exit 2 if bad
                  local_workers=(options.view_as(StandardOptions).runner or "").lower() in LOCAL_RUNNERS)
    selection = selection_config(optim)
    writer = WriterConfig(out.output, row_group_size=out.row_group_size, store_crops=out.store_crops)
    config = {
        "perception": perception.describe(),
        "bundle_adjust": bundle_adjust.describe(),
        "selection": dataclasses.asdict(selection),
        "frames": _frames_mode(out),
        "keypoints": inp.keypoints,
        "input": inp.input,
    }
    run_meta = dataclasses.replace(run_meta, config=config)
    listing, todo, skipped, retried = plan_inputs(options, dry_run)
    if todo.num_inputs == 0 and not dry_run:
        LOGGER.info("nothing to do: all %d clips of the input are already written under %s; selecting over them",
                    listing.num_inputs, out.output)
        # the selection, _common_metadata and the card (finishing an output a killed run left without them)
        stats = finish_run(writer, run_meta, selection, {"input": listing.description})
        return JobReport(out.output, listing.num_inputs, skipped, 0, {}, {}, stats, time.perf_counter() - start, "SKIPPED")
    settings = JobSettings(
        selection=selection, writer=writer, run=run_meta, frames_mode=_frames_mode(out),
        clips_per_shard=max(1, out.clips_per_shard),
        batch_max_frames=optim.ba_batch_frames, batch_max_tracks=optim.ba_batch_tracks,
        heartbeat_s=out.ba_heartbeat_seconds,
        torch_threads=worker_torch_threads(options),
        card_extra={"input": listing.description},
    )
    LOGGER.info("processing %d clips (%d bad input rows) into %s; shards of about %d clips are committed as "
                "their clips are fitted", len(todo.clips), len(todo.rejected), out.output, settings.clips_per_shard)
    runner = local_runner(options)
    if runner is not None:
        LOGGER.info("local run on Beam's FnApiRunner (%s mode, %s workers); nothing is downloaded",
                    options.view_as(beam.options.pipeline_options.DirectOptions).direct_running_mode,
                    options.view_as(beam.options.pipeline_options.DirectOptions).direct_num_workers)
    listing_file = write_listing(out.output, todo, write=not dry_run)
    pipeline = beam.Pipeline(runner=runner, options=options)
    _ = (
        pipeline
        | "ReadListing" >> beam.io.ReadFromText(listing_file, validate=not dry_run)
        | "ParseClips" >> beam.Map(clip_from_json)
        | "Spread" >> beam.Reshuffle()
        | "PseudoGT" >> PseudoGroundTruth(perception, bundle_adjust, settings, todo.rejected)
    )
    if dry_run:
        checked.append(f"pipeline: built for {runner_name or 'the local FnApiRunner'} with {todo.num_inputs} clips "
                       f"({skipped} already written)")
        if runner is None:  # Beam's own dry run: the Dataflow job is translated, not submitted
            result = pipeline.run()
            job = getattr(result, "job", None)
            if job is not None:
                region = options.get_all_options().get("region")
                checked.append(f"dataflow job: {job.proto.name or '(unnamed)'} in {job.proto.location or region}, "
                               f"{len(job.proto_pipeline.components.transforms)} transforms; not submitted")
        return JobReport(out.output, listing.num_inputs, skipped, todo.num_inputs, {}, {}, {},
                         time.perf_counter() - start, "DRY_RUN", tuple(checked))
    every = out.progress_clips if out.progress_clips > 0 else max(1, todo.num_inputs // 20)
    monitor = ProgressMonitor(todo.num_inputs, ManifestPoller.starting_now(out.output, storage.BeamStorage()),
                              interval_s=out.progress_seconds, every_clips=every,
                              poll_s=1.0 if not storage.is_remote(out.output) else min(30.0, out.progress_seconds))
    with monitor:
        result = pipeline.run()
        state = result.wait_until_finish()
    counters, distributions = job_metrics(result)
    wall = time.perf_counter() - start
    now = completed_clips(out.output, storage.BeamStorage())
    still_failing = sum(1 for k in retried if now.get(k, {}).get("outcome") == "failed")
    last_run = {
        "clips_in": todo.num_inputs, "clips_skipped": skipped, "wall_seconds": round(wall, 2),
        "clips_per_second": round(todo.num_inputs / wall, 4) if wall > 0 else None,
        "failed_retried": len(retried), "failed_still_failing": still_failing,
        "counters": counters, "state": str(state),
    }
    stats = write_card(out.output, run_meta, storage.BeamStorage(),
                       {"input": listing.description, "last_run": last_run,
                        "selection": read_selection_summary(out.output, storage.BeamStorage())})
    return JobReport(out.output, listing.num_inputs, skipped, todo.num_inputs, counters, distributions, stats, wall, str(state),
                     failed_retried=len(retried), failed_still_failing=still_failing)


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


def summary_lines(report: JobReport) -> list[str]:
    if report.state == "DRY_RUN":
        return [f"dry run: nothing was run or written under {report.output}", *report.dry_run]
    c, s = report.counters, report.stats
    lines = [
        f"output: {report.output}",
        f"this run: {report.clips_in} clips in -> {c.get('clips_kept', 0)} kept, {c.get('clips_rejected', 0)} rejected, "
        f"{c.get('clips_failed', 0)} failed; {report.clips_skipped} already written (skipped)",
        *([f"retried {report.failed_retried} clips that failed in an earlier run: "
           f"{report.failed_retried - report.failed_still_failing} done now, {report.failed_still_failing} still fail"]
          if report.failed_retried else []),
        f"tracks fitted {c.get('tracks_fitted', 0)}, selected {c.get('tracks_selected', 0)}; frames written "
        f"{c.get('frames_written', 0)} (the selected tracks hold {c.get('inlier_frames', 0)} inlier frames)",
        f"wall {report.wall_seconds:.1f} s, {format_rate(report.clips_in, report.wall_seconds, c.get('frames_written', 0), c.get('tracks_fitted', 0))}",
        f"dataset (all runs): {s.get('clips', 0)} clips, {s.get('clips_kept', 0)} kept, {s.get('clips_rejected', 0)} "
        f"rejected, {s.get('clips_failed', 0)} failed; rejected by reason {s.get('rejected_by_reason', {})}",
    ]
    return lines


def configure_logging(verbose: bool = False) -> None:
    setup_logging(verbose)


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    try:
        report = run(sys.argv[1:] if argv is None else argv)
    except (FileNotFoundError, ValueError) as exc:
        print(f"pseudo_gt: error: {exc}", file=sys.stderr)
        return 2
    for line in summary_lines(report):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
