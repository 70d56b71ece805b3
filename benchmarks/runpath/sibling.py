"""A worker's sibling: a second worker process forked once the run path's modules are imported, which
imports the PPLs of some of the engines (whole runtimes) while the worker imports the others', then runs
those engines' specs, passed to it by the worker (see :mod:`benchmarks.runpath.worker`).

The fork copies the run path's imports (a second interpreter importing them again would compete with the
worker's own for the CPUs); each side then pays only its share of the PPL imports: measured on compare's
engines, 2 cores, the worker was ready 2.7-3.0 s after its start with every import in one process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

from ..forking import fork_child, fork_is_safe

__all__ = ["SIBLING", "Sibling", "split_engines"]

#: whether a worker asked to prepare engines of two runtimes or more forks a sibling for some of them
SIBLING = True


def split_engines(engines: Sequence[str]) -> tuple[list[str], list[str]]:
    """(this worker's engines, its sibling's): whole runtimes (the registry's ``runtime``: JAX, PyTensor,
    Stan, ...) on one side or the other, the side with fewer engines taking the next largest runtime, so
    that the two imports take about as long; ([all], []) where a sibling would not help (one runtime,
    fewer than two CPUs, or a fork not safe here)."""
    from ..engines import ENGINES  # here: a worker imports this module before it pins its CPUs (NumPy)

    if not SIBLING or len(os.sched_getaffinity(0)) < 2 or not fork_is_safe():
        return list(engines), []
    by_runtime: dict[str, list[str]] = {}
    for name in engines:
        entry = ENGINES.get(name)
        by_runtime.setdefault(entry.runtime if entry is not None else "", []).append(name)
    if len(by_runtime) < 2:
        return list(engines), []
    sides: tuple[list[str], list[str]] = ([], [])
    for _, names in sorted(by_runtime.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        min(sides, key=len).extend(names)
    return sides


class Sibling:
    """The worker's handle on its sibling. The sibling is in the worker's process group (a timeout or a
    crash takes it down with the worker) and watches the worker as the worker watches the client."""

    def __init__(self, pid: int, engines: Sequence[str], requests: int, replies: int) -> None:
        self.pid = pid
        self.engines = frozenset(engines)
        self._requests = os.fdopen(requests, "w", encoding="utf-8")
        self._replies = os.fdopen(replies, "r", encoding="utf-8")
        #: this process's ends of the pipes to the sibling (a helper forked from here closes them)
        self.fds = (requests, replies)

    @classmethod
    def fork(cls, engines: Sequence[str], inherited: Sequence[int], serve: Callable[[int, int], int]) -> Sibling:
        """Fork the sibling; in it, close ``inherited`` (the worker's pipes to the client) and exit with
        ``serve(requests fd, replies fd)``'s status (``serve`` starts its watchdog on the worker)."""
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        pid = fork_child(lambda: serve(req_r, rep_w), close=(*inherited, req_w, rep_r))
        os.close(req_r)
        os.close(rep_w)
        return cls(pid, engines, req_w, rep_r)

    def await_ready(self) -> bool:
        """Whether the sibling answered 'ready' (its imports done); if not, it is closed and reaped."""
        line = self._replies.readline()
        try:
            ok = bool(line) and json.loads(line).get("ok")
        except ValueError:
            ok = False
        if not ok:
            self.close()
        return ok

    def relay(self, request: str, channel) -> None:
        """Pass one spec to the sibling and its events and reply back; if the sibling dies meanwhile, end
        this worker the same way, so that the client records the run as it would a crash of its own."""
        try:
            self._requests.write(request if request.endswith("\n") else request + "\n")
            self._requests.flush()
            for line in self._replies:
                channel.write(line.rstrip("\n"))
                if '"event"' not in line or "event" not in json.loads(line):
                    return
        except OSError:
            pass
        _, status = os.waitpid(self.pid, 0)
        if os.WIFSIGNALED(status):  # the sibling's fate becomes the worker's: the client describes it
            os.killpg(os.getpgrp(), os.WTERMSIG(status))
        os._exit(os.WEXITSTATUS(status) or 1)

    def close(self) -> None:
        """End of file on its requests (it finishes and exits), then reap it."""
        for f in (self._requests, self._replies):
            try:
                f.close()
            except OSError:
                pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
