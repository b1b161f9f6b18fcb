"""``vid2mesh run``: the pseudo-ground-truth Beam job, with the options of
``python -m beam_jobs.pseudo_gt``. Flags the job does not declare (``--runner``,
``--direct_num_workers``, ``--project``, ...) pass through to Beam."""

from __future__ import annotations

import argparse

from beam_jobs import flags as job_options


class _PassThroughParser(argparse.ArgumentParser):
    """Keeps the flags it does not know in ``beam_args`` instead of failing on them."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        namespace.beam_args = list(getattr(namespace, "beam_args", []) or []) + list(extras)
        return namespace, []


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        allow_abbrev=False,
        help="run the pseudo-ground-truth Beam job (locally by default)",
        description="Fit SMPL to every person of every clip and write frames/, tracks/ and rejected/ Parquet "
        "datasets. Beam flags (--runner DataflowRunner, --direct_running_mode multi_processing "
        "--direct_num_workers 4, ...) pass through. See docs/running.md and docs/dataflow.md.",
    )
    parser.__class__ = _PassThroughParser
    for add in job_options.ADDERS:
        add(parser)
    parser.add_argument("--dry_run", action="store_true", help="print the options, check the launcher and every "
                        "path, build the pipeline (on Dataflow: translate the job) and stop before running or "
                        "submitting it (default: off)")
    parser.set_defaults(func=_run)


def _job_values(args: argparse.Namespace) -> dict:
    probe = argparse.ArgumentParser(add_help=False)
    for add in job_options.ADDERS:
        add(probe)
    return {a.dest: getattr(args, a.dest) for a in probe._actions if hasattr(args, a.dest)}


def _run(args: argparse.Namespace) -> int:
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_jobs import pseudo_gt, runners

    from beam_jobs.logs import setup_logging

    setup_logging(args.verbose)  # Beam's import may have set the root level to WARNING
    runners.register_dask_options(args.beam_args + [f"--runner={a}" for a in args.beam_args if a.lower() in runners.DASK_RUNNERS])
    pseudo_gt.check_flags(args.beam_args)
    options = PipelineOptions(flags=args.beam_args, **_job_values(args), **({"dry_run": True} if args.dry_run else {}))
    return pseudo_gt.run_and_summarise("vid2mesh run", lambda: pseudo_gt.run(options=options))
