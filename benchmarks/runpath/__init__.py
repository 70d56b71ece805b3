"""The run path: one spec (engine, problem, settings) run in an isolated worker process, diagnosed by
arviz-stats, checked against the exact reference, recorded atomically by the client.

``spec`` (what a run is) → ``executors``/``worker`` (where it runs, isolated) → ``execute`` (the run
itself: engine, ``diagnose``, reference check) → ``matrix`` (the loop every job uses) → ``store``
(the results folder's one writer). Every job in ``benchmarks.jobs`` runs engines through this and
nothing else.
"""

from .executors import Done, Executor, SerialExecutor
from .matrix import engine_budget, run_matrix
from .progress import Progress
from .spec import RunSpec
from .store import ResultsStore, check_run_id, point_latest, remove_created

__all__ = ["Done", "Executor", "SerialExecutor", "run_matrix", "engine_budget", "Progress", "RunSpec",
           "ResultsStore", "check_run_id", "point_latest", "remove_created"]
