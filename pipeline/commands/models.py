"""Body-model subcommands: ``convert-smpl``, ``make-body-model`` and ``fit-prior``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def _convert_smpl(args: argparse.Namespace) -> int:
    from models.smpl_io import convert_smpl, load_smpl_arrays

    out = convert_smpl(args.input, args.output)
    arrays = load_smpl_arrays(out)  # read back without pickles: proves the result loads
    print(f"wrote {out} ({', '.join(sorted(arrays))})")
    return 0


def _make_body_model(args: argparse.Namespace) -> int:
    from models.standin import make_standin

    paths = make_standin(args.out_dir)
    for item in (paths.neutral, paths.male, paths.female, paths.gmm):
        print(item)
    return 0


def _fit_prior(args: argparse.Namespace) -> int:
    from models.gmm_prior import (
        STANDIN_PRIOR_SAMPLES,
        fit_gmm,
        read_pose_corpus,
        sample_standin_poses,
        save_gmm,
    )

    if args.standin_corpus:
        if args.inputs:
            raise ValueError("give either pose files or --standin-corpus, not both")
        poses = sample_standin_poses(args.samples or STANDIN_PRIOR_SAMPLES, args.seed)
    else:
        if not args.inputs:
            raise ValueError("no pose files given: pass AMASS-style .npz files/folders or --standin-corpus")
        poses = read_pose_corpus(args.inputs, stride=args.stride)
        if args.samples and len(poses) > args.samples:
            import numpy as np

            keep = np.random.default_rng(args.seed).choice(len(poses), args.samples, replace=False)
            poses = poses[np.sort(keep)]
    logger.info("fitting %d components to %d poses", args.components, len(poses))
    means, covars, weights = fit_gmm(poses, args.components, seed=args.seed)
    out = save_gmm(args.output, means, covars, weights)
    print(f"wrote {out} ({args.components} components, {len(poses)} poses)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``convert-smpl``, ``make-body-model`` and ``fit-prior`` to the CLI."""
    p = subparsers.add_parser(
        "convert-smpl",
        help="convert an official SMPL .pkl (chumpy) to a pickle-free .npz",
        description=(
            "Read an official SMPL .pkl with a restricted unpickler (no chumpy needed, no "
            "pickled code executed) and write its arrays to an .npz that loads with "
            "allow_pickle=False."
        ),
    )
    p.add_argument("input", type=Path, help="SMPL .pkl (e.g. basicModel_neutral_lbs_10_207_0_v1.0.0.pkl)")
    p.add_argument("output", type=Path, help="output .npz")
    p.set_defaults(func=_convert_smpl)

    p = subparsers.add_parser(
        "make-body-model",
        help="generate the synthetic stand-in body models and pose prior",
        description=(
            "Write smpl_vid2mesh_standin_{neutral,male,female}.pkl (SMPL's file format, synthetic "
            "body, deterministic) and the stand-in GMM pose prior into OUT_DIR."
        ),
    )
    p.add_argument("out_dir", type=Path, help="output folder")
    p.set_defaults(func=_make_body_model)

    p = subparsers.add_parser(
        "fit-prior",
        help="fit a GMM pose prior (SMPLify's gmm_08.pkl layout) to a pose corpus",
        description=(
            "Fit a K-component full-covariance Gaussian mixture (scikit-learn) to the 69 body "
            "pose values of AMASS-style .npz files (key 'poses') and write it in SMPLify's "
            "layout (means, covars, weights)."
        ),
    )
    p.add_argument("output", type=Path, help="output .pkl (never name it gmm_08.pkl)")
    p.add_argument("inputs", nargs="*", type=Path, help=".npz pose files or folders (searched recursively)")
    p.add_argument("-k", "--components", type=int, default=8, help="mixture components (default 8)")
    p.add_argument("--stride", type=int, default=1, help="keep every N-th frame of each sequence")
    p.add_argument("--samples", type=int, default=0, help="cap on the number of poses (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="random seed (fit and subsampling)")
    p.add_argument(
        "--standin-corpus",
        action="store_true",
        help="fit on the procedural stand-in pose corpus instead (how the shipped stand-in prior is made)",
    )
    p.set_defaults(func=_fit_prior)
