"""Which Beam runner executes the job, and how: local (FnApiRunner), Dask, Dataflow, others.

* Local (no ``--runner``, or ``DirectRunner``): Beam's FnApiRunner, the batch engine behind
  the DirectRunner, used directly: Beam's DirectRunner would first try to download its
  Prism binary, so the local default makes no network attempt.
  ``--direct_running_mode multi_processing --direct_num_workers N`` runs N processes.
* ``--runner dask`` (or ``DaskRunner``): Beam's DaskRunner on a dask.distributed cluster:
  the one at ``--dask_client_address`` (or ``--dask_scheduler_file``), or a local cluster
  of ``--dask_workers`` processes that the launcher starts and stops itself.
* Any other ``--runner`` (DataflowRunner, FlinkRunner, SparkRunner, PrismRunner ...) is
  built by Beam from its name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from beam_jobs.options import OptimisationOptions, RunnerOptions

LOGGER = logging.getLogger("vid2mesh.run")
LOCAL_RUNNERS = {None, "", "directrunner", "direct", "fnapirunner", "switchingdirectrunner"}
DASK_RUNNERS = {"dask", "daskrunner"}
DASK_HINT = "install the Dask extra: pip install -c constraints.txt -e '.[dask]' (make test installs it)"


def runner_name(options: PipelineOptions) -> str:
    """The runner's name in lower case ('' for the local default)."""
    return (options.view_as(StandardOptions).runner or "").lower()


def is_local(options: PipelineOptions) -> bool:
    return runner_name(options) in LOCAL_RUNNERS


def is_dask(options: PipelineOptions) -> bool:
    return runner_name(options) in DASK_RUNNERS


def register_dask_options(argv: Sequence[str] = ()) -> bool:
    """Import Beam's DaskOptions (``--dask_client_address`` ...) so that they parse; True when
    the Dask extra is installed. Only imported when asked for: ``dask.distributed`` is heavy."""
    if not any(str(a).lower().startswith(("--dask", "--runner=dask")) or str(a).lower() in DASK_RUNNERS
               for a in argv):
        return False
    try:
        import apache_beam.runners.dask.dask_runner  # noqa: F401  (registers DaskOptions)
        import dask.distributed  # noqa: F401
    except ImportError:
        return False
    return True


def worker_processes(options: PipelineOptions) -> int | None:
    """Worker processes of a run on this machine (None: the workers run elsewhere)."""
    cores = os.cpu_count() or 1
    if is_local(options):
        requested = options.view_as(DirectOptions).direct_num_workers
        return cores if requested == 0 else max(1, int(requested or 1))  # Beam: 0 = one per core
    if is_dask(options) and not _dask_address(options):
        return options.view_as(RunnerOptions).dask_workers or cores
    return None


def worker_torch_threads(options: PipelineOptions) -> int:
    """torch intra-op threads per worker: ``--torch_threads``; on this machine CPU cores /
    worker processes (Beam's workers and torch's own thread pool otherwise oversubscribe
    the cores); on remote workers 0 (torch's default there: the worker's own cores)."""
    optim = options.view_as(OptimisationOptions)
    if optim.torch_threads > 0:
        LOGGER.info("torch intra-op threads per worker: %d (--torch_threads)", optim.torch_threads)
        return optim.torch_threads
    workers = worker_processes(options)
    if workers is None:
        return 0
    cores = os.cpu_count() or 1
    threads = max(1, cores // workers)
    LOGGER.info("torch intra-op threads per worker: %d (%d cores / %d worker processes)", threads, cores, workers)
    return threads


def _dask_address(options: PipelineOptions) -> str | None:
    values = options.get_all_options()
    return values.get("address") or values.get("scheduler_file")


@dataclass
class Runner:
    """A runner for ``beam.Pipeline(runner=...)`` (None: Beam builds it from ``--runner``),
    and what has to be closed after the run (a Dask client and the local cluster)."""

    runner: Any = None
    description: str = ""
    closers: list = field(default_factory=list)

    def close(self, result=None) -> None:
        client = getattr(result, "client", None)
        if client is not None:
            client.close()
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # noqa: BLE001  (a cluster already gone)
                LOGGER.debug("closing %s failed", close, exc_info=True)
        self.closers.clear()


def make_runner(options: PipelineOptions, num_batches: int, start_cluster: bool = True) -> Runner:
    """The runner of this run.

    Args:
        options: the job's options (for Dask, ``--dask_npartitions`` is set to one
            partition per batch unless a partitioning was given).
        num_batches: fit batches of the run.
        start_cluster: start the local Dask cluster (False for ``--dry_run``).

    Raises:
        ValueError: ``--runner dask`` without the Dask extra installed.
    """
    if is_local(options):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        direct = options.view_as(DirectOptions)
        return Runner(FnApiRunner(), f"the local FnApiRunner ({direct.direct_running_mode} mode, "
                                     f"{direct.direct_num_workers} workers; nothing is downloaded)")
    if is_dask(options):
        return _dask_runner(options, num_batches, start_cluster)
    return Runner(None, options.view_as(StandardOptions).runner)


def _dask_runner(options: PipelineOptions, num_batches: int, start_cluster: bool) -> Runner:
    try:
        from apache_beam.runners.dask.dask_runner import DaskOptions, DaskRunner
        import dask.distributed  # noqa: F401
    except ImportError as exc:
        raise ValueError(f"--runner dask: {exc}; {DASK_HINT}") from None
    dask_options = options.view_as(DaskOptions)
    if not (dask_options.npartitions or dask_options.partition_size):
        dask_options.npartitions = max(1, num_batches)  # one batch per partition: every worker gets work
    runner = Runner(DaskRunner())
    address = _dask_address(options)
    if address:
        runner.description = f"Beam's DaskRunner on the Dask cluster at {address}"
        return runner
    workers = options.view_as(RunnerOptions).dask_workers or (os.cpu_count() or 1)
    runner.description = f"Beam's DaskRunner on a local Dask cluster of {workers} worker processes"
    if start_cluster:
        from dask.distributed import LocalCluster

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        runner.closers.append(cluster.close)
        dask_options.address = cluster.scheduler_address
        runner.description += f" ({cluster.scheduler_address})"
    return runner
