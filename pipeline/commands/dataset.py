"""Dataset subcommands for the people who use a run's output: ``select``, ``render`` and ``report``.

    vid2mesh select OUTPUT_DIR [--keep_fraction 0.1 | --selection_threshold X]
    vid2mesh render OUTPUT_DIR [--clip CLIP_ID ...] [--side_by_side] [--out DIR]
    vid2mesh report OUTPUT_DIR [--thumbnails 4]

Body-model flags are those of ``vid2mesh run`` (``--smpl_model``, ``--model_cache``): the
overlay must use the file the run fitted with (its sha256 is in the schema metadata).
"""

from __future__ import annotations

import argparse
import logging
import os

logger = logging.getLogger(__name__)


def _frame_list(text: str) -> list[int]:
    """``"10:40"`` (half-open range), ``"10:40:5"`` (with a step) or ``"3,8,12"``."""
    try:
        if ":" in text:
            parts = [int(p) if p else None for p in text.split(":")]
            start, stop = parts[0] or 0, parts[1]
            step = parts[2] if len(parts) > 2 and parts[2] else 1
            if stop is None:
                raise ValueError
            return list(range(start, stop, step))
        return [int(p) for p in text.split(",") if p.strip()]
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"frames {text!r}: use START:STOP[:STEP] or a comma list like 3,8,12") from None


def _int_list(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use a comma list of track ids like 0,2") from None


def _add_body_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--smpl_model", default=None, help="the SMPL file the run fitted with (datasets of real SMPL fits)")
    parser.add_argument("--model_cache", default=None, help="the run's --model_cache (stand-in body model); "
                        "default $VID2MESH_CACHE or ~/.cache/vid2mesh")
    parser.add_argument("--no_hash_check", action="store_true", help="use the body-model file even if its sha256 differs "
                        "from the one the run recorded")


def _render(args: argparse.Namespace) -> int:
    from pipeline.dataset import schema
    from pipeline.qa.overlay import OverlayConfig, body_model_for_dataset, render_clip
    from pipeline.dataset.reader import FrameFilter, frames_schema, read_frames

    metadata = schema.read_metadata(frames_schema(args.output_dir))
    clips = args.clip
    if not clips:
        table = read_frames(args.output_dir, columns=["clip_id"], filter=FrameFilter(selected_only=not args.all_tracks))
        ids = sorted(set(table.column("clip_id").to_pylist()))
        if not ids:
            raise ValueError(f"{args.output_dir}/frames has no {'selected ' if not args.all_tracks else ''}rows to render")
        clips = ids[: args.max_clips]
        logger.info("no --clip given: rendering %d of %d clips (%s)", len(clips), len(ids), ", ".join(clips))
    if args.video and len(clips) > 1:
        raise ValueError("--video names one clip's source file: pass a single --clip with it")
    body_model = body_model_for_dataset(metadata, args.smpl_model, args.model_cache, check_hash=not args.no_hash_check)
    config = OverlayConfig(alpha=args.alpha, side_by_side=args.side_by_side, scale=args.scale,
                           skeleton=not args.no_skeleton, detections=not args.no_detections)
    remote = "://" in args.output_dir  # MP4s and PNGs are written locally: renders/ here
    out_dir = args.out or (os.path.join("renders", args.output_dir.rstrip("/").rsplit("/", 1)[-1]) if remote
                           else os.path.join(args.output_dir, "renders"))
    for clip in clips:
        result = render_clip(
            args.output_dir, clip, out_dir, body_model, config, png=not args.no_png, mp4=not args.no_mp4,
            frames=args.frames, tracks=args.tracks, selected_only=not args.all_tracks, video=args.video,
            background=args.background, time_range=(args.time_start, args.time_end),
        )
        for note in result.notes:
            logger.info("%s: %s", clip, note)
        where = result.mp4_path or os.path.dirname(result.png_paths[0])
        print(f"{clip}: {len(result.frames)} frames ({result.source}) -> {where}"
              + (f" and {len(result.png_paths)} PNGs in {os.path.join(out_dir, clip)}" if result.png_paths and result.mp4_path else ""))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pipeline.qa.report import ReportConfig, write_report

    config = ReportConfig(thumbnails=args.thumbnails, background=args.background, smpl_model=args.smpl_model,
                          model_cache=args.model_cache, thumbnail_scale=args.thumbnail_scale,
                          check_hash=not args.no_hash_check, ground_truth=args.ground_truth)
    path = write_report(args.output_dir, config, args.out)
    print(f"wrote {path}")
    return 0


def run_metadata_of(output: str, storage, inner: str):
    """The run metadata recorded in an output (for its card): from a ``_common_metadata``
    (written at the end of a run) or, in an interrupted output that has none, from the
    schema of a committed shard's file (every data file carries the same metadata)."""
    import pyarrow.parquet as pq

    from pipeline.dataset import schema
    from pipeline.dataset.manifests import manifest_files, read_manifests

    candidates = [storage.join(inner, dataset, "_common_metadata") for dataset in schema.DATASETS]
    candidates += [storage.join(inner, dataset, name) for manifest in read_manifests(inner, storage)
                   for dataset in schema.DATASETS for name in manifest_files(manifest, dataset)[:1]]
    for path in candidates:
        if storage.exists(path):
            meta = schema.read_metadata(pq.read_schema(path, filesystem=storage.filesystem))
            body = meta.get(schema.KEY_BODY_MODEL) or {}
            info = schema.BodyModelInfo(body.get("variant", "unknown"), body.get("gender", "neutral"),
                                        body.get("file_name", ""), body.get("sha256", ""))
            return schema.RunMetadata(info, meta.get(schema.KEY_CONFIG) or {}, meta.get(schema.KEY_CODE_VERSION) or "")
    raise FileNotFoundError(f"{output} has no committed shard (no data file listed in _manifests/ and no "
                            "*/_common_metadata): pass the --output folder of a `vid2mesh run` that committed at "
                            "least one shard")


def select_command(args: argparse.Namespace) -> int:
    """(Re)compute the selection over every committed shard of an output."""
    import dataclasses

    from pipeline.dataset.fs import ArrowStorage
    from pipeline.dataset.card import write_card
    from pipeline.dataset.selection.rules import SelectionConfig, threshold_from_flags
    from pipeline.dataset.selection.table import select_output

    storage, inner = ArrowStorage.for_path(args.output_dir)
    if not storage.exists(storage.join(inner, "_manifests")):
        raise FileNotFoundError(f"{args.output_dir} has no _manifests/: pass the --output folder of `vid2mesh run`")
    run = run_metadata_of(args.output_dir, storage, inner)
    recorded = (run.config or {}).get("selection") or {}
    threshold = threshold_from_flags(args.selection_threshold, args.e_norm_threshold)
    mode = args.selection or ("threshold" if threshold is not None else "fraction")
    changes = {k: v for k, v in recorded.items() if k in {f.name for f in dataclasses.fields(SelectionConfig)}}
    changes.update(mode=mode)
    if args.keep_fraction is not None:
        changes["keep_fraction"] = args.keep_fraction
    if threshold is not None:
        changes["e_norm_threshold"] = threshold
    config = SelectionConfig(**changes)
    summary = select_output(inner, config, storage)
    write_card(inner, dataclasses.replace(run, config={**run.config, "selection": dataclasses.asdict(config)}), storage,
               {"selection": summary.to_json()})
    bound = f"{summary.threshold:.4g}" if summary.threshold == summary.threshold else "none (no eligible track)"
    print(f"selection over {summary.clips} clips of {args.output_dir}: {summary.tracks_selected} of "
          f"{summary.tracks_eligible} eligible tracks selected ({config.score} <= {bound}); {summary.clips_kept} clips kept, "
          f"{summary.clips_rejected} rejected, {summary.clips_failed} failed")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``select``, ``render`` and ``report`` to the CLI."""
    select = subparsers.add_parser(
        "select", help="(re)compute the track selection over a whole output (no refit)",
        description="Fits are committed as clips finish; the selection (the best --keep_fraction of the eligible tracks, "
        "or selection score <= --selection_threshold) is computed over every committed shard of OUTPUT_DIR, across resumed runs, "
        "into OUTPUT_DIR/selection/ (which readers join), and the card and stats.json are rewritten. "
        "`vid2mesh run` ends with it; run it again to re-select without refitting.",
    )
    select.add_argument("output_dir", help="the --output folder of `vid2mesh run` (local, gs://..., any fsspec URI)")
    select.add_argument("--selection", default=None, choices=["threshold", "fraction"],
                        help="fraction (default), or threshold when --selection_threshold is given")
    select.add_argument("--keep_fraction", type=float, default=None,
                        help="fraction of eligible tracks to keep (default: the run's, else 0.1)")
    select.add_argument("--selection_threshold", type=float, default=None, help="keep tracks whose selection score is "
                        "<= this, in the score's own units (mm for the default predicted_error) (default: none)")
    select.add_argument("--e_norm_threshold", type=float, default=None,
                        help="deprecated old name of --selection_threshold (still accepted, with a warning) (default: none)")
    select.set_defaults(func=select_command)

    render = subparsers.add_parser(
        "render", help="overlay fitted meshes and skeletons on the source video (MP4 + PNG frames)",
        description="Draw each track's fitted SMPL mesh (shaded, semi-transparent, one colour per track), fitted "
        "skeleton and detected keypoints over the clip's decoded frames; writes OUT/<clip>.mp4 and "
        "OUT/<clip>/frame_<index>.png.",
    )
    render.add_argument("output_dir", help="the --output folder of `vid2mesh run`")
    render.add_argument("--clip", action="append", default=None, help="clip id to render (repeatable; default: the first "
                        "--max_clips clips of frames/)")
    render.add_argument("--max_clips", type=int, default=1, help="clips to render when no --clip is given")
    render.add_argument("--out", default=None, help="output folder (default OUTPUT_DIR/renders; renders/<name> here "
                        "for a remote OUTPUT_DIR)")
    render.add_argument("--frames", type=_frame_list, default=None, help="decoded frames: START:STOP[:STEP] or 3,8,12 (default: all)")
    render.add_argument("--tracks", type=_int_list, default=None, help="track ids, e.g. 0,2 (default: all)")
    render.add_argument("--all_tracks", action="store_true", help="also tracks that were not selected (runs with --frames all)")
    render.add_argument("--side_by_side", action="store_true", help="per-frame init (left) next to the bundle-adjusted fit (right)")
    render.add_argument("--alpha", type=float, default=0.6, help="mesh opacity in [0, 1]")
    render.add_argument("--scale", type=float, default=1.0, help="output magnification")
    render.add_argument("--no_skeleton", action="store_true", help="do not draw the fitted skeleton")
    render.add_argument("--no_detections", action="store_true", help="do not draw the detected keypoints")
    render.add_argument("--no_png", action="store_true", help="write the MP4 only")
    render.add_argument("--no_mp4", action="store_true", help="write PNG frames only")
    render.add_argument("--video", default=None, help="local copy of the clip's source video (default: its source_uri)")
    render.add_argument("--background", action="store_true", help="draw on grey instead of the source video")
    render.add_argument("--time_start", type=float, default=None, help="source second of decoded frame 0 (Kinetics CSV "
                        "input of uncut videos)")
    render.add_argument("--time_end", type=float, default=None, help="source second where the clip ends")
    _add_body_model_arguments(render)
    render.set_defaults(func=_render)

    report = subparsers.add_parser(
        "report", help="write OUTPUT_DIR/report.html: Table 3 counts, quality plots, thumbnails",
        description="A self-contained HTML report of a run: this run's Table 3 (videos in, selected, frames, inliers), "
        "E_norm histogram with the threshold, kept clips per label, reprojection-error CDF, inlier fraction per track, "
        "bundle-adjustment iterations and overlay thumbnails.",
    )
    report.add_argument("output_dir", help="the --output folder of `vid2mesh run`")
    report.add_argument("--out", default=None, help="where to write (default OUTPUT_DIR/report.html)")
    report.add_argument("--thumbnails", type=int, default=4, help="kept clips to show an overlay of (0: none)")
    report.add_argument("--thumbnail_scale", type=float, default=1.0, help="magnification of the thumbnails")
    report.add_argument("--background", action="store_true", help="draw thumbnails on grey (source videos not at hand)")
    report.add_argument("--ground_truth", default=None, help="the vid2mesh synth corpus the run was made from: plot "
                        "predicted against true per-track 3D error")
    _add_body_model_arguments(report)
    report.set_defaults(func=_report)
