"""The job's flags, in four groups (input, models, optimisation, output), declared once.

Plain argparse, no Beam import: ``vid2mesh --help`` and the other sub-commands stay light.
``beam_jobs.options`` turns each group into a ``PipelineOptions`` subclass and
``beam_jobs.commands`` adds them to ``vid2mesh run``. Flag names follow Beam's own
(``--input``, ``--output``, underscores between words).
"""

from __future__ import annotations

import argparse
import json


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}): {text!r}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"max_iter\": 100}}', got {text!r}")
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
                       "video or under --keypoints_root), the pose detector (--pose_model), or auto: files where "
                       "present, else the detector if given (default)")
    group.add_argument("--keypoints_root", default=None, help="folder of precomputed keypoints "
                       "(<root>/<split>/<label>/<stem>.coco.json or <root>/<stem>.coco.json)")
    group.add_argument("--limit", type=int, default=0, help="process only the first N clips (by clip id)")


def add_model_arguments(parser) -> None:
    group = parser.add_argument_group("models") if isinstance(parser, argparse.ArgumentParser) else parser
    group.add_argument("--smpl_model", default=None, help="SMPL model file (.pkl/.npz from smpl.is.tue.mpg.de); "
                       "without it the job uses the generated stand-in body (for testing only)")
    group.add_argument("--gender", default="neutral", choices=["neutral", "male", "female"], help="body model gender")
    group.add_argument("--gmm_prior", default=None, help="SMPLify GMM pose prior (.pkl); required with --smpl_model")
    group.add_argument("--pose_model", default=None, help="ultralytics YOLO pose weights (*-pose.pt) for --keypoints detect/auto")
    group.add_argument("--hmr_checkpoint", default=None, help="SPIN-format HMR checkpoint; without it the "
                       "keypoint-only initialiser is used")
    group.add_argument("--hmr_mean_params", default=None, help="smpl_mean_params.npz of the HMR checkpoint")
    group.add_argument("--model_cache", default=None, help="folder for the generated stand-in model files "
                       "(default: $VID2MESH_CACHE or ~/.cache/vid2mesh)")
    group.add_argument("--device", default="auto", help="torch device for perception and bundle adjustment: "
                       "auto (cuda when a GPU is visible), cpu, cuda, cuda:1")
    group.add_argument("--perception_config", type=_json_object, default=None,
                       help="JSON object of pipeline.perception.perceive.PerceptionConfig overrides, e.g. '{\"decode\": {\"target_fps\": 10}}'")


def add_optimisation_arguments(parser) -> None:
    group = parser.add_argument_group("optimisation") if isinstance(parser, argparse.ArgumentParser) else parser
    group.add_argument("--ba_config", type=_json_object, default=None,
                       help="JSON object of optimize.config.BAConfig overrides, e.g. '{\"max_iter\": 100}'")
    group.add_argument("--ba_batch_frames", type=int, default=32768,
                       help="most frames per bundle-adjustment batch (the batching boundary)")
    group.add_argument("--ba_batch_tracks", type=int, default=256, help="most tracks per bundle-adjustment batch")
    group.add_argument("--selection", default=None, choices=["threshold", "fraction"],
                       help="keep the best --keep_fraction of the run's eligible tracks (fraction, the default), or "
                       "tracks with E_norm <= --e_norm_threshold (threshold; the default when that flag is given)")
    group.add_argument("--e_norm_threshold", type=float, default=None, help="E_norm bound of --selection threshold "
                       "(see tracks.e_norm_threshold of an earlier run)")
    group.add_argument("--keep_fraction", type=float, default=None, help="fraction of eligible tracks --selection "
                       "fraction keeps (default 0.1)")
    group.add_argument("--min_inlier_fraction", type=float, default=None, help="least inlier frames / detected frames of a kept track")
    group.add_argument("--min_track_frames", type=int, default=None, help="least detected frames of a kept track")


def add_output_arguments(parser) -> None:
    group = parser.add_argument_group("output") if isinstance(parser, argparse.ArgumentParser) else parser
    group.add_argument("--output", help="output folder (local or gs://...): frames/, tracks/, rejected/, README.md, stats.json")
    group.add_argument("--frames", default="selected", choices=["selected", "inliers", "all"],
                       help="frames/ rows: every frame of selected tracks (default), their inlier frames only, or "
                       "every frame of every fitted track with its flags (re-choose a threshold without recomputing)")
    group.add_argument("--write_all_frames", action="store_true", help="same as --frames all")
    group.add_argument("--store_crops", action="store_true",
                       help="add a crop_jpeg column to frames/: the tracked person's JPEG crop per frame "
                            "(box scaled 1.2, square), so a training set is self-contained")
    group.add_argument("--crop_size", type=int, default=160, help="side of the stored person crops in pixels")
    group.add_argument("--clips_per_shard", type=int, default=64, help="clips per Parquet shard (about)")
    group.add_argument("--row_group_size", type=int, default=4096, help="rows per Parquet row group")
    group.add_argument("--overwrite", action="store_true", help="delete what an earlier run wrote under --output first "
                       "(default: resume, skipping the clips already written)")
    group.add_argument("--no_retry_failed", dest="retry_failed", action="store_false", default=True,
                       help="on resume, keep the clips an earlier run marked failed as they are (default: process "
                       "them again and replace their rows; rejected clips are never redone)")


ADDERS = (add_input_arguments, add_model_arguments, add_optimisation_arguments, add_output_arguments)
