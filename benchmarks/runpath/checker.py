"""The reference check beside the diagnostics: a helper process of the worker's.

After an engine returns, the run path computes arviz-stats' diagnostics and the reference check, each
~35 ms of single-threaded NumPy on this model; no engine is timed then. Where the worker may use two
CPUs, a helper process started with the worker runs the check on the draws while the worker computes
the diagnostics. The worker starts it once the run path's modules (the check's among them) are
imported and before any PPL is: then the helper is forked, inheriting those imports, and starts at
once instead of importing them all again beside the worker's own imports. Where a fork is not safe (a
runtime with threads of its own runs: benchmarks/forking.py) it is spawned and imports them.
Between runs it waits on its pipe. It is a child of the worker, in its process group: a timeout, a
crash or the worker's watchdog takes it down with the worker. The verdict is the same function on the
same draws (tests/test_runpath.py); if the helper is gone, the check runs in the worker as before.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ..forking import fork_is_safe, forking

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


def start_method() -> str:
    """"fork" while no runtime with threads of its own runs in this process (the child inherits the
    imports), else "spawn" (benchmarks/forking.py)."""
    return "fork" if fork_is_safe() else "spawn"


def _close(fds: tuple[int, ...]) -> None:
    """In a forked helper: close the worker's own descriptors it inherited (its pipes to the client), so
    that a worker that dies closes them for good and the client sees it at once."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def start(inherited: Sequence[int] = ()) -> None:
    """Start the helper and wait until it has the check's modules (no-op with one CPU). ``inherited``:
    the caller's descriptors a forked helper must not keep open (a spawned one inherits none)."""
    global _pool
    if _pool is not None or not ENABLED or len(os.sched_getaffinity(0)) < 2:
        return
    method = start_method()
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(method), initializer=_close,
                               initargs=(tuple(inherited) if method == "fork" else (),))
    try:
        with forking():
            future = pool.submit(_warm)  # the pool starts its process here
        future.result(timeout=START_TIMEOUT_S)
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
