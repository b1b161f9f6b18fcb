"""``vid2mesh synth`` (write a synthetic Kinetics-style corpus with exact ground truth) and
``vid2mesh evaluate`` (compare a job's frames/ output, or the simulated per-frame
regressor, with that ground truth). See docs/synthetic_corpus.md."""

from __future__ import annotations

import argparse
import json
import os
import sys


def register(subparsers) -> None:
    synth = subparsers.add_parser(
        "synth",
        help="write a synthetic Kinetics-style corpus with exact ground truth",
        description="Render clips of 1-4 people (stand-in SMPL bodies) doing motions of the motion library, "
        "encode them as H.264 mp4, and write ground truth (.gt.npz), simulated detector output (.coco.json) "
        "and simulated regressor estimates (.init.npz) next to each clip, plus <split>.csv files and corpus.json.",
    )
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--clips", type=int, default=4, help="number of normal clips (1-4 people; default 4)")
    synth.add_argument("--seed", type=int, default=0, help="corpus seed (same seed: same clips)")
    synth.add_argument("--quick", action="store_true", help="small clips for tests: 160x120, 10 fps, 1.2 s")
    synth.add_argument("--width", type=int, help="frame width, pixels (default 320)")
    synth.add_argument("--height", type=int, help="frame height, pixels (default 240)")
    synth.add_argument("--fps", type=float, help="frame rate (default 25)")
    synth.add_argument("--duration", type=float, help="clip length, seconds (default 10)")
    synth.add_argument("--supersample", type=int, help="anti-aliasing samples per pixel and axis (default 2; 1 renders faster, with jagged edges)")
    synth.add_argument("--crowded", type=int, default=0, help="extra clips with 7-9 people (the job rejects them)")
    synth.add_argument("--corrupt", type=int, default=0, help="extra unreadable videos (zero-byte / garbage)")
    synth.add_argument("--body-model", help="SMPL-format body model file (default: the generated stand-in)")
    synth.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel processes")
    synth.add_argument("--contact-sheet", help="also write a PNG grid of frames (with ground-truth keypoints)")
    synth.set_defaults(func=_synth)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="compare predictions with a synthetic corpus's ground truth",
        description="MPJPE, PA-MPJPE, acceleration error, PCK of reprojections, ID switches and track purity of "
        "a job's frames/ output (or of the simulated per-frame regressor, --baseline) against the ground truth "
        "of a vid2mesh synth corpus.",
    )
    evaluate.add_argument("--corpus", required=True, help="folder written by vid2mesh synth")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", help="job output folder (with frames/) or the frames/ folder")
    source.add_argument(
        "--baseline", action="store_true", help="evaluate the simulated per-frame regressor (.init.npz), perfectly tracked"
    )
    evaluate.add_argument("--inliers-only", action="store_true", help="only frames flagged inlier")
    evaluate.add_argument("--selected_only", action="store_true", help="only tracks the selection kept "
                          "(default: every fitted track of frames/)")
    evaluate.add_argument("--match-threshold", type=float, default=0.25, help="matching gate, fraction of box height")
    evaluate.add_argument("--pck-threshold", type=float, default=0.1, help="PCK threshold, fraction of box size")
    evaluate.add_argument("--body-model", help="body model for --baseline (default: the stand-in)")
    evaluate.add_argument("--json", help="also write the full report (per clip, per label) to this file")
    evaluate.set_defaults(func=_evaluate)


def _synth(args: argparse.Namespace) -> int:
    import dataclasses

    from pipeline.synth.corpus import SynthConfig, generate_corpus

    config = SynthConfig.quick() if args.quick else SynthConfig()
    changes = {k: getattr(args, k) for k in ("width", "height", "fps", "duration", "supersample") if getattr(args, k) is not None}
    config = dataclasses.replace(config, **changes)
    if args.clips < 0 or args.crowded < 0 or args.corrupt < 0:
        raise ValueError("--clips, --crowded and --corrupt must be >= 0")
    corpus = generate_corpus(
        args.out,
        num_clips=args.clips,
        seed=args.seed,
        config=config,
        body_model_path=args.body_model,
        crowded=args.crowded,
        corrupt=args.corrupt,
        workers=max(1, args.workers),
    )
    if args.contact_sheet:
        from pipeline.synth.sheet import contact_sheet

        contact_sheet(args.out, args.contact_sheet)
    timing = corpus["timing"]
    print(
        f"wrote {len(corpus['clips'])} clips to {args.out} in {timing['seconds']:.1f} s "
        f"({timing['clips_per_second']} clips/s, {timing['frames_per_second']} frames/s, {timing['workers']} workers)"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pipeline.qa.evaluate import EvaluationConfig, evaluate_corpus, regressor_baseline

    config = EvaluationConfig(match_threshold=args.match_threshold, pck_threshold=args.pck_threshold)
    if args.baseline:
        from models.body_model import BodyModel

        path = args.body_model
        if path is None:
            from models.standin import ensure_standin

            path = ensure_standin().neutral
        predictions = regressor_baseline(args.corpus, BodyModel.from_file(path))
    else:
        predictions = args.predictions
    result = evaluate_corpus(args.corpus, predictions, config, inliers_only=args.inliers_only,
                             selected_only=args.selected_only)
    print(result.format_table())
    if result.unknown_clips:
        print(f"ignored predictions of {len(result.unknown_clips)} clips without ground truth", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result.to_dict(), handle, indent=1)
    print(json.dumps({k: (None if v != v else round(v, 4)) for k, v in result.overall.items()}))
    return 0
