"""The reference check beside the diagnostics: a helper process of the worker's.

After an engine returns, the run path computes arviz-stats' diagnostics and the reference check, each
~35 ms of single-threaded NumPy on this model; no engine is timed then. Where the worker may use two
CPUs, a helper process started with the worker (spawned, not forked: the worker runs JAX and XLA's
threads) runs the check on the draws while the worker computes the diagnostics. The helper imports the
check's modules at its start, beside the worker's own imports, and the worker says it is ready only
once the helper is too, so that no import runs beside a timed run; between runs it waits on its pipe.
It is a child of the worker, in its process group: a timeout, a crash or the worker's watchdog takes it
down with the worker. The verdict is the same function on the same draws (tests/test_runpath.py); if
the helper is gone, the check runs in the worker as before.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

__all__ = ["ENABLED", "start", "stop", "submit", "result"]

#: whether a worker starts the helper (where it may use two CPUs or more)
ENABLED = True
#: how long the worker waits for the helper to start (its imports) before going on without it
START_TIMEOUT_S = 120.0

_pool: ProcessPoolExecutor | None = None


def _warm() -> int:
    """The helper's first task: import what the check needs, so that no import runs during a run."""
    import reference.check  # noqa: F401 - the import is the point
    import reference.core  # noqa: F401

    return os.getpid()


def _check(data, prior, posterior):
    """Runs in the helper: the reference check of a run's posterior draws (an xarray Dataset)."""
    from reference.check import check
    from reference.core import posterior as exact

    return check({"posterior": posterior}, exact(data, prior))


def start() -> None:
    """Start the helper and wait until it has imported the check's modules (no-op with one CPU)."""
    global _pool
    if _pool is not None or not ENABLED or len(os.sched_getaffinity(0)) < 2:
        return
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        pool.submit(_warm).result(timeout=START_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - no helper: the worker checks in process, as without one
        pool.shutdown(wait=False, cancel_futures=True)
        return
    _pool = pool


def stop() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None


def submit(data, prior, draws) -> Future | None:
    """The check of ``draws`` (a DataTree with a posterior group) against the exact posterior of (data,
    prior), running in the helper; None where there is no helper (the caller checks in process)."""
    if _pool is None:
        return None
    try:
        return _pool.submit(_check, data, prior, draws["posterior"].to_dataset())
    except (BrokenProcessPool, RuntimeError):
        _lost()
        return None


def result(future: Future | None):
    """The helper's verdict, or None where the helper is gone (the caller checks in process). The
    check's own errors (draws it cannot use) are raised here as in process."""
    if future is None:
        return None
    try:
        return future.result()
    except BrokenProcessPool:
        _lost()
        return None


def _lost() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None
