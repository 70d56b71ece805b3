"""Runs on Dask: a LocalCluster of single-threaded workers on this machine (``--workers N``) or an
existing cluster (``--scheduler tcp://HOST:PORT``).

Each Dask task runs one spec through the same run path as everywhere: inside the Dask worker, a
run-worker process of its own (:class:`~benchmarks.runpath.worker.Worker`, kept warm across tasks)
runs :func:`~benchmarks.runpath.execute.execute`; a timeout or crash there is that run's record, not a
task failure. Dask reschedules a task whose Dask worker died, on another worker; the client writes
each record once, when its future completes, so a retried run is never recorded twice.

Honest timings: every task asks for the resource ``run: 1`` and every worker offers one, so a worker
runs one spec at a time. A LocalCluster splits this machine's CPUs between its workers and pins each
worker's run-worker to its share (``sched_setaffinity``), so a run holds its cores alone; the record
says where it ran (``machine``, ``worker``, ``cpus``). Workers of a remote cluster are started with
``dask worker --nthreads 1 --resources run=1`` (README), one per machine or per core share.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from collections.abc import Callable

from models.errors import UsageError

from .executors import Done
from .spec import RunSpec
from .worker import Worker, WorkerLost

__all__ = ["DaskExecutor", "ExecutorLost", "run_task", "RESOURCE"]

#: the Dask worker resource a run holds while it runs (one per worker)
RESOURCE = "run"
#: seconds the client waits for the scheduler before it counts as lost
CONNECT_TIMEOUT_S = 30

#: in a Dask worker process: one warm run-worker per (environment, overrides, cpus)
_WORKERS: dict[tuple, Worker] = {}


def _lost_errors() -> tuple[type[BaseException], ...]:
    """What a lost scheduler or connection raises from a future (imported with Dask, when asked for)."""
    from distributed.comm.core import CommClosedError

    return (CommClosedError, concurrent.futures.CancelledError, asyncio.CancelledError, OSError, TimeoutError)


class ExecutorLost(RuntimeError):
    """The cluster went away (scheduler lost): the matrix stops; --resume finishes it."""


def _cpu_share() -> list[int] | None:
    """This Dask worker's CPUs when it runs in a LocalCluster started by the suite (its env names its
    index and the worker count), else None (a remote worker: its machine's CPUs are all its own)."""
    index, count = os.environ.get("EIGHT_SCHOOLS_WORKER_INDEX"), os.environ.get("EIGHT_SCHOOLS_WORKER_COUNT")
    if index is None or count is None:
        return None
    cpus = sorted(os.sched_getaffinity(0))
    i, n = int(index), int(count)
    share = cpus[i::n] if n <= len(cpus) else [cpus[i % len(cpus)]]
    return share


def run_task(wire: dict, env: dict | None, overrides: dict | None, timeout_s: float | None) -> dict:
    """The Dask task: one spec through a warm run-worker in this Dask worker. Never raises for the run."""
    cpus = _cpu_share()
    env = dict(env or {})
    if cpus is not None:
        env["EIGHT_SCHOOLS_CPUS"] = ",".join(map(str, cpus))
    key = (tuple(sorted(env.items())), tuple(sorted((overrides or {}).items())))
    worker = _WORKERS.get(key)
    if worker is None:
        worker = _WORKERS[key] = Worker(env=env, overrides=overrides)
    t0 = time.perf_counter()
    try:
        reply = worker.run(wire, timeout_s)
    except WorkerLost as lost:
        return {"reply": None, "lost": {"kind": lost.kind, "message": str(lost)}, "wall_s": time.perf_counter() - t0}
    return {"reply": reply, "lost": None, "wall_s": time.perf_counter() - t0}


def _worker_setup(index: int, count: int) -> Callable:
    def setup() -> None:
        os.environ["EIGHT_SCHOOLS_WORKER_INDEX"] = str(index)
        os.environ["EIGHT_SCHOOLS_WORKER_COUNT"] = str(count)
    return setup


class DaskExecutor:
    def __init__(self, *, workers: int | None = None, scheduler: str | None = None, timeout_s: float | None = 600.0,
                 env: dict | None = None, overrides: dict | None = None) -> None:
        from distributed import Client, LocalCluster  # Dask is imported only when asked for

        self._lost = _lost_errors()
        # distributed logs every reconnection attempt with a traceback; a lost cluster is reported once,
        # as ExecutorLost, by next_done()
        for name in ["distributed", *[n for n in logging.root.manager.loggerDict if n.startswith("distributed.")]]:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self.created = time.perf_counter()
        self.timeout_s = timeout_s
        self.env, self.overrides = env, overrides
        self.cluster = None
        self.scheduler = scheduler
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError, ValueError) as e:  # ValueError: an address Dask cannot parse
                raise UsageError(f"--scheduler = {scheduler!r}: cannot connect ({e})") from None
        else:
            if workers is None or workers < 1:
                raise UsageError(f"--workers = {workers!r}: must be >= 1")
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        resources={RESOURCE: 1}, dashboard_address=None, silence_logs=40)
            self.client = Client(self.cluster)
            for i, (address, _) in enumerate(sorted(self.client.scheduler_info()["workers"].items())):
                self.client.run(_worker_setup(i, workers), workers=[address])
        info = self.client.scheduler_info()["workers"]
        self.capacity = max(1, sum(int(w.get("resources", {}).get(RESOURCE, 0)) for w in info.values()))
        if not any(w.get("resources", {}).get(RESOURCE) for w in info.values()):
            raise UsageError(f"--scheduler = {scheduler!r}: no worker offers the resource {RESOURCE!r}; start "
                             f"workers with `dask worker {scheduler} --nthreads 1 --resources {RESOURCE}=1`")
        self._futures: dict = {}
        self._done = None

    def describe(self) -> str:
        info = self.client.scheduler_info()["workers"]
        hosts = sorted({w.get("host", "?") for w in info.values()})
        where = f"LocalCluster of {len(info)} worker{'s' if len(info) != 1 else ''} on this machine" if self.cluster else \
            f"cluster at {self.scheduler}: {len(info)} workers on {len(hosts)} machines"
        return (f"on Dask ({where}), one run per worker at a time"
                + (", each worker's run pinned to its share of this machine's CPUs" if self.cluster else ""))

    def map_plain(self, fn: Callable, args: list[tuple]) -> list:
        """Work that runs no engine (the reference's exact draws), spread over the cluster's workers, one
        task per worker at a time like a run; results in the order of ``args``."""
        futures = [self.client.submit(fn, *a, pure=False, resources={RESOURCE: 1}) for a in args]
        try:
            return self.client.gather(futures)
        except self._lost as e:
            raise ExecutorLost(f"the Dask cluster was lost ({type(e).__name__}); rerun with --resume") from None

    def submit(self, spec: RunSpec, wire: dict) -> None:
        from distributed import as_completed

        fut = self.client.submit(run_task, wire, self.env, self.overrides, self.timeout_s, pure=False,
                                 resources={RESOURCE: 1}, key=f"run-{spec.key}-{len(self._futures)}")
        self._futures[fut] = (spec, time.perf_counter())
        if self._done is None:
            self._done = as_completed([fut])
        else:
            self._done.add(fut)

    def next_done(self) -> Done:
        try:
            fut = next(self._done)
            spec, _ = self._futures.pop(fut)
            out = fut.result()
        except StopIteration:
            raise RuntimeError("next_done() with nothing submitted") from None
        except self._lost as e:  # the scheduler or the connection is gone (a task's own error is re-raised)
            why = (str(e).strip().splitlines() or [""])[0][:200]
            raise ExecutorLost(f"the Dask cluster was lost ({type(e).__name__}: {why}); the finished runs are "
                               "saved: rerun with --resume") from None
        lost = WorkerLost(out["lost"]["kind"], out["lost"]["message"]) if out["lost"] else None
        return Done(spec, out["reply"], lost, out["wall_s"])

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
