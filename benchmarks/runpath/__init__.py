"""The run path: one spec (engine, problem, settings) run in an isolated worker process, diagnosed by
arviz-stats, checked against the exact reference, recorded atomically by the client.

``spec`` (what a run is) → ``executors``/``worker`` (where it runs, isolated) → ``execute`` (the run
itself: engine, ``diagnose``, reference check) → ``matrix`` (the loop every job uses) → ``store``
(the results folder's one writer). Every job in ``benchmarks.jobs`` runs engines through this and
nothing else.

The names below load on first use (PEP 562): a worker process starts as
``python -m benchmarks.runpath.worker``, and importing this package must not import NumPy and the
rest before the worker has pinned its CPUs and started its watchdog.
"""

from __future__ import annotations

from models.lazy import lazy_exports

_EXPORTS = {
    "Done": "executors", "Executor": "executors", "SerialExecutor": "executors",
    "run_matrix": "matrix", "engine_budget": "matrix", "Progress": "progress", "RunSpec": "spec",
    "ResultsStore": "store", "check_run_id": "store", "point_latest": "store", "remove_created": "store",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
