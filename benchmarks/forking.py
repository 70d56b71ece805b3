"""Whether this process may fork a child that goes on running Python (a report figure, the check's
helper) without the child inheriting a half-held lock of a runtime's native threads.

fork() copies only the calling thread. A runtime that runs native threads of its own (JAX's XLA once its
backends are up, numba's threading layer, torch) may hold a lock at that instant that the child then
waits on for ever; JAX itself warns on fork() once its backends exist. Merely imported, JAX runs no
thread (its backends start on first use), so a process that imported it but never computed with it
may fork.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

__all__ = ["THREADED_MODULES", "threaded_runtime", "fork_is_safe", "forking", "fork_child"]

#: modules whose import alone may start native threads (numba's threading layer, torch's pools)
THREADED_MODULES = ("numba", "torch")


def threaded_runtime() -> str | None:
    """The loaded runtime that makes a fork unsafe here, or None."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is not None and getattr(bridge, "_backends", None):
        return "JAX (its backends are running)"
    return next((m for m in THREADED_MODULES if m in sys.modules), None)


def fork_is_safe() -> bool:
    return "fork" in multiprocessing.get_all_start_methods() and threaded_runtime() is None


@contextmanager
def forking() -> Iterator[None]:
    """Around a fork that :func:`fork_is_safe` allowed: Python warns on fork() in any process with a
    second thread, but the threads left then are Python's own (a worker's watchdog, a progress bar's
    monitor), which hold no lock the child takes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def fork_child(body: Callable[[], int], close: Sequence[int] = ()) -> int:
    """Fork a child (where :func:`fork_is_safe` allowed it) that closes the descriptors ``close``, runs
    ``body`` and exits with its status (1 if it raises) without returning, so no code after the fork runs
    in both processes and no interpreter teardown runs in the child. Returns the child's pid."""
    with forking():
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd in close:
                os.close(fd)
            code = body()
        finally:
            os._exit(code)
    return pid
