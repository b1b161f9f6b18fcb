"""The job's flags, in five groups (input, models, optimisation, output, runner), declared once.

Plain argparse, no Beam import: ``vid2mesh --help`` and the other sub-commands stay light.
``beam_jobs.options`` turns each group into a ``PipelineOptions`` subclass and
``beam_jobs.commands`` adds them to ``vid2mesh run``. Flag names follow Beam's own
(``--input``, ``--output``, underscores between words).
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Iterable

from pipeline.dataset.selection.rules import SELECTION_SCORES, SelectionConfig


MAX_FLAG_JSON_DEPTH = 16
"""Deepest nesting a JSON flag may have (the config objects nest two or three levels)."""


def _json_object(text: str) -> dict:
    """The argparse ``type`` of a JSON-object flag (argparse's error names the flag)."""
    from pipeline.perception.keypoints_io import json_depth

    shown = text if len(text) <= 80 else text[:77] + "..."
    depth = json_depth(text)
    if depth > MAX_FLAG_JSON_DEPTH:
        raise argparse.ArgumentTypeError(
            f"JSON nested {depth} levels deep, more than {MAX_FLAG_JSON_DEPTH}; give an object of overrides "
            "nested by section, such as '{\"decode\": {\"target_fps\": 10}}'")
    try:
        value = json.loads(text)
    except RecursionError:
        raise argparse.ArgumentTypeError("JSON nested too deeply; give an object of overrides nested by section") from None
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}): {shown!r}; put the JSON in single quotes") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"max_iter\": 100}}', got {shown!r}")
    return value


def add_input_arguments(parser) -> None:
    group = parser.add_argument_group("input") if isinstance(parser, argparse.ArgumentParser) else parser
    group.add_argument("--input", help="videos: a glob or folder (corpus/**/*.mp4), a Kinetics CSV "
                       "(label,youtube_id,time_start,time_end,split) with --video_root, or a JSON-lines manifest")
    group.add_argument("--input_format", default="auto", choices=["auto", "glob", "csv", "manifest"],
                       help="how to read --input (default: from its extension)")
    group.add_argument("--video_root", default=None, help="folder of the videos of a Kinetics CSV (default: the CSV's folder)")
    group.add_argument("--keypoints", default="auto", choices=["auto", "precomputed", "detect"],
                       help="2D keypoints: precomputed files (<stem>.coco.json or <stem>_openpose/ next to the "
                       "video or under --keypoints_root), the pose detector (--pose_model), or auto (default): a "
                       "manifest's keypoints_uri or a file under --keypoints_root first, then the detector when "
                       "--pose_model is given, files next to the video only without it (an explicit --pose_model is "
                       "never ignored); each row's keypoint_source column says which was used")
    group.add_argument("--keypoints_root", default=None, help="folder of precomputed keypoints "
                       "(<root>/<split>/<label>/<stem>.coco.json or <root>/<stem>.coco.json)")
    group.add_argument("--limit", type=int, default=0, help="process only the first N clips (by clip id)")


def add_model_arguments(parser) -> None:
    group = parser.add_argument_group("models") if isinstance(parser, argparse.ArgumentParser) else parser
    group.add_argument("--smpl_model", default=None, help="SMPL model file (.pkl/.npz from smpl.is.tue.mpg.de); "
                       "without it the job uses the generated stand-in body (for testing only)")
    group.add_argument("--gender", default=None, choices=["neutral", "male", "female"],
                       help="body model gender (default: the one --smpl_model's file name states, e.g. SMPL_MALE.pkl, "
                       "else neutral); a gender that contradicts the file name is an error")
    group.add_argument("--gmm_prior", default=None, help="SMPLify GMM pose prior (.pkl); required with --smpl_model")
    group.add_argument("--pose_model", default=None, help="ultralytics YOLO pose weights (*-pose.pt) for --keypoints detect/auto; under "
                       "auto they take precedence over keypoint files next to the videos")
    group.add_argument("--detector_runtime", default="torch", choices=["torch", "onnx", "openvino"],
                       help="how --pose_model runs: torch (the checkpoint, any device), or its ONNX Runtime or "
                       "OpenVINO export (CPU only; exported once per worker from the same file, cached under "
                       "<output>/_cache/detector, needs the export extra; docs/perception.md#runtimes) "
                       "(default: %(default)s)")
    group.add_argument("--hmr_checkpoint", default=None, help="SPIN-format HMR checkpoint; without it the "
                       "keypoint-only initialiser is used")
    group.add_argument("--hmr_mean_params", default=None, help="smpl_mean_params.npz of the HMR checkpoint")
    group.add_argument("--model_cache", default=None, help="folder for the generated stand-in model files "
                       "(default: $VID2MESH_CACHE or ~/.cache/vid2mesh)")
    group.add_argument("--device", default="auto", help="torch device for perception and bundle adjustment: "
                       "auto (cuda when a GPU is visible), cpu, cuda, cuda:1")
    group.add_argument("--perception_config", type=_json_object, default=None,
                       help="JSON object of pipeline.perception.perceive.PerceptionConfig overrides, nested by section, "
                       "e.g. '{\"decode\": {\"target_fps\": 10}}' (default: none)")


def add_optimisation_arguments(parser) -> None:
    group = parser.add_argument_group("optimisation") if isinstance(parser, argparse.ArgumentParser) else parser
    group.add_argument("--ba_config", type=_json_object, default=None,
                       help="JSON object of optimize.config.BAConfig overrides, e.g. '{\"max_iter\": 100}'")
    group.add_argument("--ba_batch_frames", type=int, default=32768,
                       help="most frames per bundle-adjustment batch (the batching boundary)")
    group.add_argument("--ba_batch_tracks", type=int, default=256, help="most tracks per bundle-adjustment batch")
    group.add_argument("--torch_threads", type=int, default=0,
                       help="torch intra-op threads per worker process (0: CPU cores / worker processes, at least 1); "
                       "logged at start-up")
    group.add_argument("--selection", default=None, choices=["threshold", "fraction"],
                       help="keep the best --keep_fraction of the output's eligible tracks (fraction, the default), or "
                       "tracks whose selection score is <= --selection_threshold (threshold; the default when that flag "
                       "is given); computed at the end over the whole output, again with `vid2mesh select`")
    group.add_argument("--selection_score", default=None, choices=list(SELECTION_SCORES),
                       help="the score selection thresholds, written with each shard (default: "
                       f"{SelectionConfig.score}, the track's predicted 3D joint error in mm; e_norm: the energy per frame)")
    group.add_argument("--selection_threshold", type=float, default=None, help="bound on the selection score of "
                       "--selection threshold, in the score's own units (mm for the default predicted_error; see "
                       "e_norm_threshold in selection/selection.json of an earlier run) (default: none)")
    group.add_argument("--e_norm_threshold", type=float, default=None,
                       help="deprecated old name of --selection_threshold (still accepted, with a warning) (default: none)")
    group.add_argument("--keep_fraction", type=float, default=None, help="fraction of eligible tracks --selection "
                       f"fraction keeps (default: {SelectionConfig.keep_fraction})")
    group.add_argument("--min_inlier_fraction", type=float, default=None, help="least inlier frames / detected frames of an eligible track "
                       f"(default: {SelectionConfig.min_inlier_fraction})")
    group.add_argument("--min_track_frames", type=int, default=None, help="least detected frames of an eligible track "
                       f"(default: {SelectionConfig.min_frames})")


def add_output_arguments(parser) -> None:
    group = parser.add_argument_group("output") if isinstance(parser, argparse.ArgumentParser) else parser
    group.add_argument("--output", help="output folder (local or gs://...): frames/, tracks/, rejected/, README.md, stats.json")
    group.add_argument("--frames", default="eligible", choices=["eligible", "inliers", "all", "selected"],
                       help="frames/ rows, written as each clip is fitted (before the selection): every frame of "
                       "the tracks any E_norm threshold could select (eligible), their inlier frames only, or every "
                       "frame of every fitted track (all); 'selected' is the old name of eligible (default: %(default)s)")
    group.add_argument("--write_all_frames", action="store_true", help="same as --frames all")
    group.add_argument("--store_crops", action="store_true",
                       help="add a crop_jpeg column to frames/: the tracked person's JPEG crop per frame "
                            "(box scaled 1.2, square), so a training set is self-contained")
    group.add_argument("--crop_size", type=int, default=160, help="side of the stored person crops in pixels")
    group.add_argument("--clips_per_shard", type=int, default=64, help="most clips (about) of one bundle-adjustment "
                       "batch, hence of one committed shard (default: %(default)s)")
    group.add_argument("--row_group_size", type=int, default=4096, help="rows per Parquet row group")
    group.add_argument("--progress_seconds", type=float, default=30.0,
                       help="seconds between progress lines (default: %(default)s)")
    group.add_argument("--progress_clips", type=int, default=0,
                       help="also a progress line every N committed clips (default: 0 = every 5%% of the run)")
    group.add_argument("--ba_heartbeat_seconds", type=float, default=60.0,
                       help="seconds between 'BA batch running' lines while a batch runs (default: %(default)s)")
    group.add_argument("--overwrite", action="store_true", help="delete what an earlier run wrote under --output first "
                       "(default: resume, skipping the clips already written)")
    group.add_argument("--force_unlock", action="store_true",
                       help="remove the output's lock (_lock.json) left by another run before starting; use it only "
                       "after checking that no run is writing into --output (a lock of a dead run on this host is "
                       "taken over without it)")
    group.add_argument("--no_retry_failed", dest="retry_failed", action="store_false", default=True,
                       help="on resume, keep the clips an earlier run marked failed as they are (default: process "
                       "them again and replace their rows; rejected clips are never redone)")


def add_runner_arguments(parser) -> None:
    group = parser.add_argument_group("runner") if isinstance(parser, argparse.ArgumentParser) else parser
    group.add_argument("--dask_workers", type=int, default=0,
                       help="with --runner dask and no --dask_client_address: start a local dask.distributed "
                       "cluster of this many worker processes (0: one per CPU core)")
    group.add_argument("--allow_image_mismatch", action="store_true",
                       help="launch onto a worker image whose recorded source hash differs from this checkout's "
                       "(Dataflow; default: refuse, since the workers would run other code)")


ADDERS = (add_input_arguments, add_model_arguments, add_optimisation_arguments, add_output_arguments,
          add_runner_arguments)


def job_flag_names() -> set[str]:
    """Every option string of the job's flags (``--input``, ``--keep_fraction``, ...)."""
    probe = argparse.ArgumentParser(add_help=False)
    for add in ADDERS:
        add(probe)
    return {o for a in probe._actions for o in a.option_strings}


def lookalike_error(unknown: Iterable[str], ours: Iterable[str], other: Iterable[str] = ()) -> str | None:
    """A message refusing the first unknown flag that looks like one of ours
    (``--keep-fraction`` for ``--keep_fraction``, a near miss such as ``--keep_fractoin``);
    None when every unknown flag is someone else's (``other``: Beam's) or unlike ours.

    Args:
        unknown: the command-line tokens no parser of ours took.
        ours: our option strings.
        other: option strings of the flags that pass through (Beam's), never refused.
    """
    ours, other = sorted(set(ours)), set(other)
    for token in unknown:
        if not token.startswith("--"):
            continue
        name = token.split("=", 1)[0]
        if name in other:
            continue
        snake = "--" + name[2:].replace("-", "_").lower()
        if snake in ours:
            return f"unknown flag {name}: did you mean {snake}? (the flags are snake_case)"
        close = difflib.get_close_matches(snake, ours, n=1, cutoff=0.85)
        if close and snake not in other:
            return f"unknown flag {name}: did you mean {close[0]}?"
    return None
