"""Where runs execute: in this machine's worker process, one after another (the default, and the
fair one for timings on one machine), or on Dask (:mod:`benchmarks.runpath.dask_executor`).

An executor takes resolved specs (``submit``) and hands back finished ones (``next_done``) as
:class:`Done`: the worker's reply, or how the worker was lost (timeout, crash). Every run goes
through :func:`benchmarks.runpath.execute.execute` in a worker process; nothing here samples.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from .spec import RunSpec
from .worker import Worker, WorkerLost

__all__ = ["Done", "Executor", "SerialExecutor"]


class Done(NamedTuple):
    spec: RunSpec
    reply: dict | None  # {"record", "manifest", "draws_nc"} from the worker
    lost: WorkerLost | None  # timeout or crash, when there is no reply
    wall_s: float  # client-side wall time of the run, request to reply


class Executor(Protocol):
    #: runs in flight at most (the matrix submits no more than this before collecting)
    capacity: int
    #: perf_counter() when the executor began starting its workers: the matrix's wall time counts from here
    created: float

    def describe(self) -> str: ...
    def map_plain(self, fn: Callable, args: list[tuple]) -> list: ...  # work that runs no engine
    def submit(self, spec: RunSpec, wire: dict) -> None: ...
    def next_done(self) -> Done: ...
    def close(self) -> None: ...


class SerialExecutor:
    """One worker process on this machine, runs in submission order; the run holds the machine
    alone (no other run competes with its timing)."""

    capacity = 1

    def __init__(self, *, timeout_s: float | None = 600.0, env: dict | None = None,
                 overrides: dict | None = None, on_event: Callable[[dict], None] | None = None,
                 prepare: Sequence[str] = ()) -> None:
        self.created = time.perf_counter()
        self.timeout_s = timeout_s
        self.worker = Worker(env=env, overrides=overrides, on_event=on_event, prepare=prepare)
        self.worker.spawn()  # its imports overlap the client's set-up
        self._pending: deque[tuple[RunSpec, dict]] = deque()

    def describe(self) -> str:
        return "in order, in one isolated worker process on this machine"

    def map_plain(self, fn: Callable, args: list[tuple]) -> list:
        """Work that runs no engine (e.g. the reference's exact draws), here in this process."""
        return [fn(*a) for a in args]

    def submit(self, spec: RunSpec, wire: dict) -> None:
        self._pending.append((spec, wire))

    def next_done(self) -> Done:
        spec, wire = self._pending.popleft()
        t0 = time.perf_counter()
        try:
            reply = self.worker.run(wire, self.timeout_s)
        except WorkerLost as lost:
            return Done(spec, None, lost, time.perf_counter() - t0)
        return Done(spec, reply, None, time.perf_counter() - t0)

    def close(self) -> None:
        self.worker.close()

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
