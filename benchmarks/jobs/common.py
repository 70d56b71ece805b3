"""What every matrix-shaped job shares: where results go, which executor runs them, the first line.

User runs write under ``results/runs/`` (untracked); the committed snapshot under ``results/<job>/``
is refreshed only by the explicit ``publish`` job. A job prints its plan at once (what it will run,
how many runs, the last measured duration where one is known), before any PPL is imported.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.errors import UsageError
from models.provenance import REPO

from ..runpath import Progress, ResultsStore, SerialExecutor, run_matrix
from ..runpath.dask_executor import DaskExecutor
from ..runpath.executors import Executor
from ..runpath.progress import fmt_duration
from ..runpath.spec import RunSpec
from .validate import check_scheduler, check_timeout, check_workers

__all__ = ["RUNS", "SNAPSHOT", "RunOptions", "add_run_options", "make_executor", "last_measured", "plan_line",
           "run_specs"]

#: where user runs go (git ignores it) and where the published snapshot lives
RUNS = REPO / "results" / "runs"
SNAPSHOT = REPO / "results"
#: default per-run limit (seconds): a run is killed, with its worker's process group, past it
DEFAULT_TIMEOUT_S = 600.0


@dataclass
class RunOptions:
    """How a job runs its specs (what ``add_run_options`` parses; jobs called from code build one)."""

    results: Path = RUNS
    resume: bool = False
    timeout: float | None = DEFAULT_TIMEOUT_S
    workers: int | None = None
    scheduler: str | None = None


def add_run_options(p: argparse.ArgumentParser, *, results: Path = RUNS) -> None:
    p.add_argument("--results", type=Path, default=results, help=f"results root (default: {results})")
    p.add_argument("--resume", action="store_true", help="keep finished records and run the rest")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help="per-run limit in seconds (the run's worker process group is killed past it)")
    add_executor_options(p)


def add_executor_options(p: argparse.ArgumentParser) -> None:
    """Where the work runs: in order on this machine (neither flag), or on Dask."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, help="run on a Dask LocalCluster of N single-threaded workers")
    g.add_argument("--scheduler", help="run on an existing Dask cluster (tcp://HOST:PORT)")


def make_executor(a: RunOptions | argparse.Namespace, *, on_event: Callable[[dict], None] | None = None,
                  env: dict | None = None, overrides: dict | None = None, prepare: Sequence[str] = ()) -> Executor:
    """The executor ``a`` asks for. ``prepare``: engines whose PPLs this machine's worker imports while it
    starts (Dask workers import on first use)."""
    timeout = None if a.timeout is None else check_timeout(a.timeout)
    workers, scheduler = getattr(a, "workers", None), getattr(a, "scheduler", None)
    if workers is not None and scheduler is not None:
        raise UsageError(f"--workers = {workers!r}, --scheduler = {scheduler!r}: give one or the other")
    if workers is not None or scheduler is not None:  # checked here too for jobs called from code
        return DaskExecutor(workers=None if workers is None else check_workers(workers),
                            scheduler=None if scheduler is None else check_scheduler(scheduler), timeout_s=timeout,
                            env=env, overrides=overrides)
    return SerialExecutor(timeout_s=timeout, env=env, overrides=overrides, on_event=on_event, prepare=prepare)


def last_measured(*folders: Path) -> str | None:
    """'last measured: 71 s (AMD EPYC, 2 cores)' from the first folder with a timing.json."""
    for folder in folders:
        try:
            t = json.loads((Path(folder) / "timing.json").read_text())["totals"]
            env = json.loads((Path(folder) / "environment.json").read_text())
        except (OSError, ValueError, KeyError):
            continue
        return (f"last measured {fmt_duration(t['wall_s'])} for {t['runs']} runs on {env.get('cpu')} "
                f"({env.get('cores')} cores), {folder}")
    return None


def plan_line(name: str, specs: list[RunSpec], run_dir: Path, executor: Executor, *extra: str) -> str:
    engines = sorted({s.engine for s in specs})
    name = run_dir.name.removesuffix(".partial")  # compare stages in <name>.partial
    last = last_measured(run_dir.parent / name, SNAPSHOT / name)
    parts = [f"{name}: {len(specs)} runs ({len(engines)} engines: {', '.join(engines)}) into {run_dir}",
             executor.describe(), *extra, last or "no earlier timing known"]
    return "; ".join(parts)


def run_specs(name: str, specs: list[RunSpec], run_dir: Path, a: RunOptions | argparse.Namespace, *,
              env: dict | None = None, overrides: dict | None = None, fresh: bool = False,
              finish: Callable[[ResultsStore, list[dict]], None] | None = None, prepare: bool = False,
              meanwhile: Callable[[], None] | None = None) -> list[dict]:
    """Start the executor, open the store (lock, path checks), print the plan, run, ``finish`` (still
    holding the lock), close. ``fresh`` clears a folder the suite made earlier for this job (a staging
    folder a killed run left) once the lock is held, unless --resume. The executor comes first: a
    scheduler that cannot be reached (exit 2) leaves no results folder behind.

    ``prepare``: the worker imports the specs' PPLs while it starts, so no run's time holds an import.
    ``meanwhile``: work of the client's own (e.g. the report's imports) run in a thread while the worker
    starts, and finished before the first run is sent, so no timed run shares the machine with it."""
    progress = Progress(name)
    engines = sorted({s.engine for s in specs if isinstance(s, RunSpec)}) if prepare else []
    executor = make_executor(a, env=env, overrides=overrides, prepare=engines,
                             on_event=lambda e: progress.say(f"  {e.get('message')}"))
    side = threading.Thread(target=meanwhile, name="meanwhile", daemon=True) if meanwhile else None
    if side is not None:
        side.start()
    try:
        store = ResultsStore.open(run_dir, resume=a.resume or fresh, what=f"{name} results")
    except BaseException:
        executor.close()
        raise
    with store:
        if fresh and not a.resume:
            store.clear()
        progress.say(plan_line(name, specs, run_dir, executor))
        if side is not None:
            side.join()
        try:
            records = run_matrix(specs, store, executor, progress=progress, timeout_s=executor_timeout(a))
        except BaseException:
            executor.close()
            raise
        # this machine's worker exits (its sibling, the checks' helpers, httpstan's pool)
        # while ``finish`` writes the report: nothing is timed any more, and the command waits for it below
        closing = None
        if isinstance(executor, SerialExecutor):
            closing = threading.Thread(target=executor.close, name="close", daemon=True)
            closing.start()
        else:
            executor.close()
        try:
            if finish is not None:
                finish(store, records)
        finally:
            if closing is not None:
                closing.join()
        return records


def executor_timeout(a: RunOptions | argparse.Namespace) -> float | None:
    return a.timeout if a.timeout and a.timeout > 0 else None
