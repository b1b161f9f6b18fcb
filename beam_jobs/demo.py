"""``make demo``: a synthetic corpus through the whole job on the local runner.

1. generates a small Kinetics-style corpus with ``vid2mesh synth`` code (once; reused while
   its settings are unchanged): rendered clips with 1-4 people, one crowded clip, a
   zero-byte file and a file of garbage bytes, each with simulated detector keypoints;
2. runs ``beam_jobs.pseudo_gt`` on Beam's local FnApiRunner (no network attempt) with the
   precomputed keypoints and the keypoint-only initialiser, logging each clip and batch;
3. prints where the output is and a summary (``README.md``, ``stats.json``).

    python -m beam_jobs.demo [--clips 6] [--out out/demo] [--workers 1] [--resume]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

LOGGER = logging.getLogger("vid2mesh.demo")


def demo_synth_config():
    from pipeline.synth.corpus import SynthConfig

    return SynthConfig(width=320, height=240, fps=10.0, duration=3.0, max_people=2, supersample=2)


def ensure_corpus(folder: Path, clips: int, seed: int) -> Path:
    """Generate the demo corpus unless the same one is already there."""
    import dataclasses

    from pipeline.synth.corpus import generate_corpus

    config = demo_synth_config()
    wanted = {"clips": clips, "seed": seed, "config": json.loads(json.dumps(dataclasses.asdict(config)))}
    stamp = folder / "demo-corpus.json"
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        LOGGER.info("corpus: reusing %s (%d clips, seed %d)", folder, clips, seed)
        return folder
    LOGGER.info("corpus: generating %d synthetic clips + 1 crowded + 2 corrupt files into %s ...", clips, folder)
    start = time.perf_counter()
    generate_corpus(folder, clips, seed, config, crowded=1, corrupt=2, workers=min(2, os.cpu_count() or 1))
    LOGGER.info("corpus: done in %.1f s", time.perf_counter() - start)
    stamp.write_text(json.dumps(wanted))
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beam_jobs.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=4, help="normal clips in the corpus (plus 1 crowded, 2 corrupt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="out/demo", help="folder for corpus/ and dataset/")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes (multi_processing when > 1)")
    parser.add_argument("--resume", action="store_true", help="keep an earlier demo output and only add missing clips")
    args = parser.parse_args(argv)
    from beam_jobs.logs import setup_logging

    setup_logging()
    os.environ.setdefault("YOLO_OFFLINE", "1")

    from beam_jobs import pseudo_gt  # imports Beam (after the logging set-up: quiet)

    out = Path(args.out)
    corpus = ensure_corpus(out / "corpus", args.clips, args.seed)
    dataset = out / "dataset"
    flags = [
        "--input", str(corpus / "**" / "*.mp4"),
        "--output", str(dataset),
        "--keypoints", "precomputed",
        "--perception_config", json.dumps({"decode": {"target_fps": 10}}),
        # A handful of clips: keep the better 60 % of the tracks rather than the paper's 10 %.
        "--selection", "fraction", "--keep_fraction", "0.6",
        "--frames", "eligible",
        "--clips_per_shard", "4",
    ]
    if not args.resume:
        flags.append("--overwrite")
    if args.workers > 1:
        flags += ["--direct_running_mode", "multi_processing", "--direct_num_workers", str(args.workers)]
    LOGGER.info("job: python -m beam_jobs.pseudo_gt %s", " ".join(flags))
    report = pseudo_gt.run(flags)
    print()
    print("=" * 72)
    for line in pseudo_gt.summary_lines(report):
        print(line)
    print(f"dataset card: {dataset / 'README.md'}")
    print(f"stats:        {dataset / 'stats.json'}")
    print(f"datasets:     {dataset / 'frames'}  {dataset / 'tracks'}  {dataset / 'rejected'}")
    try:
        from pipeline.qa.report import ReportConfig, write_report

        page = write_report(str(dataset), ReportConfig(ground_truth=str(corpus)))  # the corpus has ground truth
        print(f"report:       {page}")
    except Exception:  # the dataset is written; a broken report must not hide that
        LOGGER.exception("the QA report could not be written; run `vid2mesh report %s` to retry", dataset)
    print("=" * 72)
    return 0


if __name__ == "__main__":
    sys.exit(main())
