"""Validate, then act (DESIGN.md): the checks every command's options pass before the command creates a
folder, takes a lock, starts a worker or a cluster, or samples.

:func:`check_options` is the one step ``python -m benchmarks`` runs on every command's parsed options,
before the command's ``main``: each option a command has (``--workers``, ``--scheduler``, ``--timeout``,
``--results``, ``--run-id``, ``--engines``, ``--seeds``, ...) is checked the same way wherever it
appears. A command then checks what is its own (a configuration file, a baseline) before it acts. An
error is a :class:`~models.errors.UsageError` with one line "field = value: why" (exit 2).
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path

from models.errors import UsageError

from ..engines import ENGINES
from ..runpath.store import check_run_id

__all__ = ["check_options", "check_workers", "check_scheduler", "check_timeout", "check_count", "engine_names",
           "check_output_file", "check_output_folder", "max_workers", "MAX_WORKERS_PER_CPU", "WORKER_MEMORY",
           "MAX_SEEDS", "MAX_TIMEOUT_S", "SCHEDULER_SCHEMES"]

#: --workers: at most this many single-threaded Dask workers per CPU this process may use. Each worker
#: is two processes (the Dask worker and its run-worker, which imports a PPL); beyond a few per CPU they
#: only compete for the cores (a LocalCluster pins each to a share of them), and Dask spends minutes
#: creating their scratch folders before anything runs (100000 workers: 90 s without a first line).
MAX_WORKERS_PER_CPU = 4
#: ... and at most one per this much of the machine's memory: a run-worker with a PPL imported and a
#: fit's draws in memory takes a few hundred MB
WORKER_MEMORY = 512 * 2**20
#: --seeds N (and a configuration's seed list): the most seeds one job runs; the largest configuration
#: shipped (regress ci) has 225; 10^4 x every engine x both parameterisations is days of sampling
MAX_SEEDS = 10_000
#: --timeout: a week; a larger limit is none at all, and the OS's timers do not take every float
MAX_TIMEOUT_S = 7 * 24 * 3600.0
#: --scheduler: the address schemes a Dask client reaches a scheduler by without extra set-up (TLS needs
#: a security configuration, UCX an extra package)
SCHEDULER_SCHEMES = ("tcp",)
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252}[A-Za-z0-9_])?)$")


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def max_workers() -> int:
    """The most ``--workers`` this machine can hold: MAX_WORKERS_PER_CPU per usable CPU, and one per
    WORKER_MEMORY of physical memory, whichever is fewer (at least 1)."""
    by_cpu = MAX_WORKERS_PER_CPU * usable_cpus()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        memory = 0
    by_memory = memory // WORKER_MEMORY if memory > 0 else by_cpu
    return max(1, min(by_cpu, by_memory))


def check_workers(n, field: str = "--workers") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UsageError(f"{field} = {n!r}: must be a whole number >= 1")
    limit = max_workers()
    if n > limit:
        raise UsageError(f"{field} = {n}: at most {limit} here ({MAX_WORKERS_PER_CPU} per CPU of the "
                         f"{usable_cpus()} this process may use, and one per {WORKER_MEMORY // 2**20} MiB of "
                         "memory); more only compete for the cores")
    return n


def check_scheduler(address, field: str = "--scheduler") -> str:
    """``tcp://HOST:PORT`` or ``HOST:PORT`` (Dask's default scheme); the address only, nothing is contacted."""
    text = address.strip() if isinstance(address, str) else address
    if not isinstance(text, str) or not text:
        raise UsageError(f"{field} = {address!r}: empty; give the scheduler's address, tcp://HOST:PORT")
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    if scheme.lower() not in SCHEDULER_SCHEMES:
        raise UsageError(f"{field} = {address!r}: scheme {scheme!r} is not supported; give "
                         f"{' or '.join(f'{s}://HOST:PORT' for s in SCHEDULER_SCHEMES)}")
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{field} = {address!r}: expected tcp://HOST:PORT with a port in 1..65535")
    if not _HOST.match(host):
        raise UsageError(f"{field} = {address!r}: host {host!r} is not a host name or an IP address")
    return f"{scheme.lower()}://{host}:{int(port)}"


def check_timeout(t, field: str = "--timeout") -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 < t <= MAX_TIMEOUT_S:
        raise UsageError(f"{field} = {t!r}: must be a number of seconds in (0, {MAX_TIMEOUT_S:g}] (a week)")
    return float(t)


def check_count(n, field: str, *, lo: int = 1, hi: int, why: str = "") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not lo <= n <= hi:
        raise UsageError(f"{field} = {n!r}: must be a whole number in [{lo}, {hi}]" + (f" ({why})" if why else ""))
    return n


def engine_names(text, field: str = "--engines") -> list[str] | None:
    """A comma-separated list of registered engines (None when the option was not given)."""
    if text is None:
        return None
    names = [e.strip() for e in str(text).split(",")]
    if not any(names):
        raise UsageError(f"{field} = {text!r}: empty; name at least one engine ({', '.join(ENGINES)})")
    for e in names:
        if e not in ENGINES:
            raise UsageError(f"{field}: engine = {e!r} is unknown; engines: {', '.join(ENGINES)}")
    if len(set(names)) != len(names):
        raise UsageError(f"{field} = {text!r}: an engine repeats")
    return names


def _nearest_existing(path: Path) -> Path:
    p = path if path.is_absolute() else Path.cwd() / path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_folder(path, field: str) -> Path:
    """A folder the command may create or write into: not a file, and the nearest folder that exists
    above it is a writable folder (nothing is created here)."""
    path = Path(path)
    if str(path) == "":
        raise UsageError(f"{field} = '': empty; name a folder")
    if path.exists() and not path.is_dir():
        raise UsageError(f"{field} = {str(path)!r}: exists and is not a folder")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise UsageError(f"{field} = {str(path)!r}: {str(base)!r} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"{field} = {str(path)!r}: {str(base)!r} is not writable")
    return path


def check_output_file(path, field: str) -> Path:
    """A file the command may write (its folders created as needed): not a folder, and its parent is
    a folder it may create or write into."""
    path = Path(path)
    if str(path) in ("", "."):
        raise UsageError(f"{field} = {str(path)!r}: empty; name a file")
    if path.is_dir():
        raise UsageError(f"{field} = {str(path)!r}: is a folder; name a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{field} = {str(path)!r}: not writable")
    check_output_folder(path.parent if str(path.parent) else Path("."), field)
    return path


def check_options(a: argparse.Namespace) -> None:
    """Every option shared between commands, checked the same way in each (see the module docstring)."""
    v = vars(a)
    if v.get("workers") is not None:
        check_workers(a.workers)
    if v.get("scheduler") is not None:
        check_scheduler(a.scheduler)
    if v.get("timeout") is not None:
        check_timeout(a.timeout)
    if v.get("results") is not None:
        check_output_folder(a.results, "--results")
    if v.get("run_id") is not None:
        check_run_id(a.run_id)
    if isinstance(v.get("engines"), str) or v.get("engines") == "":
        engine_names(a.engines)
    if isinstance(v.get("seeds"), int):  # --seeds N (a command whose --seeds is a text parses it itself)
        check_count(a.seeds, "--seeds", hi=MAX_SEEDS, why="seeds 1..N")
