"""Which Dask cluster runs the graph-building tasks.

:func:`dask_client` is a context manager yielding a ``dask.distributed.Client`` on one of

* an existing scheduler (``scheduler="tcp://host:8786"``): its workers are used as they are;
* a ``dask_jobqueue.SLURMCluster`` (``slurm={...}``): SLURM jobs each running ``processes``
  single-threaded worker processes, ``scale(jobs=...)`` of them;
* by default a ``LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)``.

Workers it starts run one Numba/BLAS thread each (one task = one shard, so the parallelism is
across shards), under :data:`WORKER_CONFIG` (no glibc memory trimming, no profiler). On exit the client and any cluster it started are closed (SLURM worker jobs
are cancelled).

``slurm`` keys (all optional except ``queue``/``account`` on most sites):

====================  =====================================================================
``queue``             partition (``sbatch -p``)
``account``           account (``sbatch -A``); set it, SLURM's default guess often fails
``cores``             CPUs per SLURM job (default 1)
``processes``         worker processes per job, one thread each (default ``cores``)
``memory``            memory per job, e.g. ``"8GB"`` (default ``"4GB"``)
``walltime``          ``"HH:MM:SS"`` per job (default ``"01:00:00"``)
``jobs``              SLURM jobs to start (default: enough jobs for ``workers`` processes)
``job_extra_directives``  more ``#SBATCH`` lines, e.g. ``["--qos=short"]``
``job_script_prologue``   shell lines run before the worker (e.g. ``module load ...``)
``interface``         network interface the scheduler and workers use (e.g. ``ib0``)
``log_directory``     where the worker jobs' SLURM logs go
``local_directory``   workers' scratch directory
``python``            Python executable on the nodes (default: this interpreter)
``wait_timeout``      seconds to wait for the first worker before giving up (default: wait)
====================  =====================================================================
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import sys
from contextlib import ExitStack, contextmanager
from typing import Iterator, Mapping

__all__ = ["dask_client", "WORKER_CONFIG", "WORKER_ENV", "SLURM_KEYS"]

log = logging.getLogger(__name__)

# one thread per worker process: the parallelism is across shards; Dask's own chatter (worker
# start and stop, connection teardown) stays out of the build's log, errors still reach it
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1", "DASK_LOGGING__DISTRIBUTED": "error"}


#: Dask settings under which the local cluster starts its workers. Dask's nanny sets
#: MALLOC_TRIM_THRESHOLD_=65536 in the workers it spawns, so that freed memory goes back to the
#: OS. Setting it turns off glibc's dynamic mmap threshold: every large array of every shard is
#: then a fresh mmap whose pages the kernel faults in and zeroes again (40x the page faults of
#: the serial build, and about a quarter more CPU per shard: docs/performance.md). A worker holds
#: one shard at a time, so keeping its freed pages costs no more than its peak. Neither the
#: statistical profiler (a stack sample of the task thread every 10 ms) nor a 20 ms event-loop
#: tick serve a build: without them an idle worker uses a quarter of the CPU. The memory monitor
#: (Dask: every 100 ms) and the system monitor (500 ms) check every 1 s and 5 s: each check wakes
#: the worker's event loop, which takes the GIL from the shard being built (a busy worker's
#: futex calls fell by 60 %, and its CPU per shard came closer to the serial build's:
#: docs/performance.md). SLURM worker jobs get the same settings (`worker_config_export`).
#:
#: Workers start by forking a Dask "forkserver" process (one per driver process), which imported
#: Dask, NumPy and pandas once, instead of each importing them in a freshly spawned interpreter;
#: a forked worker also ends with ``os._exit``, without the interpreter's teardown. That saved
#: about 0.3 CPU-s per worker's start and 0.4 s of wall time when the cluster closes (2 workers;
#: docs/performance.md). The forkserver is started with this process's environment once the
#: pre-spawn variables are set (so it, too, runs without MALLOC_TRIM_THRESHOLD_: below).
#:
#: The nanny sets its pre-spawn variables in its own process's ``os.environ`` and leaves them
#: there, so after any Dask cluster with the default settings (or with the variable in the
#: caller's environment) the workers would inherit MALLOC_TRIM_THRESHOLD_ from this process
#: all the same: :func:`dask_client` removes it from ``os.environ`` while its local cluster
#: runs, and the SLURM job script unsets it (:data:`UNSET_ENV`).
WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                 "distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s",
                 "distributed.worker.memory.monitor-interval": "1s",
                 "distributed.admin.system-monitor.interval": "5s",
                 "distributed.worker.multiprocessing-method": "forkserver"}

#: variables the build's worker processes must not inherit (see :data:`WORKER_CONFIG`)
UNSET_ENV = ("MALLOC_TRIM_THRESHOLD_",)


@contextmanager
def environ_without(names) -> Iterator[None]:
    """``os.environ`` without `names` inside the block, as it was again after it."""
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        for name in names:
            os.environ.pop(name, None)
        os.environ.update(saved)


class DaskChatter(logging.Filter):
    """Lets Dask's records through only from ERROR up: its info lines (workers starting,
    connections closing) and teardown warnings (a worker killed after a few seconds) would
    bury the build's own log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.split(".", 1)[0] in ("distributed", "bokeh", "tornado")
                    and record.levelno < logging.ERROR)


def quiet_dask_logs() -> None:
    """Put :class:`DaskChatter` on the root logger's handlers (once)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, DaskChatter) for f in handler.filters):
            handler.addFilter(DaskChatter())

SLURM_KEYS = frozenset({
    "queue", "account", "cores", "processes", "memory", "walltime", "jobs",
    "job_extra_directives", "job_script_prologue", "interface", "log_directory",
    "local_directory", "python", "wait_timeout",
})


def worker_config_export() -> str:
    """The job-script line giving SLURM workers' nannies `WORKER_CONFIG` (Dask reads the variable
    when it is imported)."""
    import dask

    nested: dict = {}
    dask.config.set(WORKER_CONFIG, config=nested)
    return f"export DASK_INTERNAL_INHERIT_CONFIG={shlex.quote(dask.config.serialize(nested))}"


def slurm_cluster_options(slurm: Mapping, workers: int) -> tuple[dict, int]:
    """The ``SLURMCluster`` keyword arguments of the ``slurm`` settings, and the jobs to start."""
    unknown = set(slurm) - SLURM_KEYS
    if unknown:
        raise ValueError(f"unknown preprocess SLURM option(s) {sorted(unknown)}; "
                         f"known: {sorted(SLURM_KEYS)}")
    cores = int(slurm.get("cores") or 1)
    processes = int(slurm.get("processes") or cores)
    if cores < 1 or processes < 1 or processes > cores:
        raise ValueError(f"need 1 <= processes ({processes}) <= cores ({cores})")
    jobs = slurm.get("jobs")
    jobs = int(jobs) if jobs else max(1, math.ceil(max(int(workers or 1), 1) / processes))
    prologue = [f"unset {k}" for k in UNSET_ENV]  # sbatch hands the job this process's environment
    prologue += [f"export {k}={v}" for k, v in WORKER_ENV.items()] + [worker_config_export()]
    prologue += list(slurm.get("job_script_prologue") or [])
    kwargs = dict(
        cores=cores,
        processes=processes,
        memory=str(slurm.get("memory") or "4GB"),
        walltime=str(slurm.get("walltime") or "01:00:00"),
        queue=slurm.get("queue"),
        account=slurm.get("account"),
        job_extra_directives=list(slurm.get("job_extra_directives") or []),
        job_script_prologue=prologue,
        # dask-jobqueue pastes the worker command into the job script unquoted: quote the paths
        python=shlex.quote(str(slurm.get("python") or sys.executable)),
        job_name="eqgat-dask",
        scheduler_options={"dashboard_address": ":0"},  # any free port
    )
    if slurm.get("local_directory"):
        kwargs["local_directory"] = shlex.quote(str(slurm["local_directory"]))
    if slurm.get("log_directory"):
        kwargs["log_directory"] = str(slurm["log_directory"])
    if slurm.get("interface"):  # also the scheduler's own setting, so checked rather than quoted
        interface = str(slurm["interface"])
        if not re.fullmatch(r"[\w.:@-]+", interface):
            raise ValueError(f"preprocess SLURM option interface {interface!r} is not a network interface name")
        kwargs["interface"] = interface
    return kwargs, jobs


def _slurm_cluster(slurm: Mapping, workers: int):
    """A started ``SLURMCluster`` scaled to the requested number of jobs."""
    kwargs, jobs = slurm_cluster_options(slurm, workers)
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("preprocess on SLURM needs dask-jobqueue: pip install dask-jobqueue") from exc
    cluster = SLURMCluster(**kwargs)
    log.info("SLURMCluster: %d job(s) of %d worker process(es); job script:\n%s",
             jobs, kwargs["processes"], cluster.job_script())
    cluster.scale(jobs=jobs)
    return cluster


@contextmanager
def dask_client(workers: int = 1, scheduler: str | None = None,
                slurm: Mapping | None = None) -> Iterator[distributed.Client]:  # noqa: F821
    """Yield a Dask client for building shards; close what was started on exit.

    ``scheduler`` (an address) wins over ``slurm`` (a dict, see the module docstring), which
    wins over the default local cluster of ``workers`` single-threaded processes.
    """
    import dask
    from dask.distributed import Client, LocalCluster

    quiet_dask_logs()
    if scheduler and slurm:
        raise ValueError("give either a scheduler address or SLURM options, not both")
    with ExitStack() as stack:
        if scheduler:
            log.info("connecting to Dask scheduler %s", scheduler)
            try:
                client = Client(scheduler)
            except (OSError, ValueError, TypeError) as exc:  # a bad address, refused, timed out
                raise ConnectionError(f"cannot connect to the Dask scheduler {scheduler!r} "
                                      f"(preprocess.scheduler): {exc}") from exc
        else:
            if slurm:
                cluster = _slurm_cluster(slurm, workers)
            else:
                log.info("starting LocalCluster with %d worker processes", workers)
                # unset while the cluster runs: for the forkserver and the workers it starts,
                # and any worker it restarts
                stack.enter_context(environ_without(UNSET_ENV))
                with dask.config.set(WORKER_CONFIG):
                    # the scheduler's HTTP server (also without a dashboard) on a free port: the
                    # default 8787 of a second cluster on the machine would warn into the build's log
                    cluster = LocalCluster(n_workers=max(int(workers or 1), 1), threads_per_worker=1,
                                           processes=True, dashboard_address=":0", env=dict(WORKER_ENV))
            stack.callback(cluster.close)
            client = Client(cluster)
        stack.callback(client.close)  # closed before the cluster
        if slurm and slurm.get("wait_timeout"):
            client.wait_for_workers(1, timeout=float(slurm["wait_timeout"]))
        yield client
