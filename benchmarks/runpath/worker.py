"""Engine runs isolated in worker processes, each the leader of its own process group.

The client (a matrix, a job, a Dask task) talks to a worker over two pipes, one JSON message per
line; the worker runs :func:`benchmarks.runpath.execute.execute` for each spec it receives and lives
across runs, so its imports and each compiled program stay warm. No signal is ever raised inside
library code:

* **timeout** - the client waits for the reply with a deadline; past it, it kills the worker's whole
  process group (the worker and every process it started, e.g. httpstan's pool) with SIGKILL and the
  run is recorded as ``timeout``;
* **crash** - a worker that dies (a signal, out of memory, ``os._exit``) is recorded as ``crashed``
  with its exit status and the tail of its log; the next run gets a fresh worker;
* **parent death** - a watchdog thread in the worker notices when its parent is gone (``getppid``
  changes, or the request pipe reaches end of file) and kills its own process group, so no orphans
  survive a ``kill -9`` of the matrix.

A worker asked to prepare engines of two runtimes or more (compare's: JAX's, PyTensor's, Stan's, nutpie's)
forks a **sibling** once the run path's modules are imported (:func:`split_engines`, :class:`_Sibling`):
the two processes import their shares of the PPLs side by side instead of one after the other, and the
worker passes each spec of the sibling's engines to it and its answer back, so the client still talks to
one worker. The sibling is in the worker's process group and watches the worker as the worker watches
the client; if it dies during a run the worker ends the same way, so the client records the crash as
its own. At its end the worker kills what is left of its group (httpstan's pool, a helper) and exits
without the interpreter's teardown (:func:`_end`).

Worker output (PPLs print, compilers write) goes to a log file, never to the client's terminal;
messages logged at INFO by ``benchmarks.engines`` loggers (e.g. "compiling Stan program ...") are
forwarded to the client as events, so compiles announce themselves.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from . import checker  # light: the check's modules load in its helper process, not on import
from .sibling import Sibling, split_engines

__all__ = ["Worker", "WorkerLost", "worker_main"]

#: how often the worker's watchdog looks for its parent (seconds)
WATCHDOG_PERIOD_S = 0.2
#: how long a worker may take to start and answer its first ping (imports only numpy-level code)
START_TIMEOUT_S = 120.0
#: bytes of the worker's log quoted in a crash record
LOG_TAIL = 2000


class WorkerLost(RuntimeError):
    """The worker did not answer: ``kind`` is "timeout" or "crashed"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# --- the worker process ---------------------------------------------------------------------------


def _watchdog(parent: int) -> None:
    """Kill this process group when the parent is gone (polling; the main thread may be deep in C)."""
    while True:
        time.sleep(WATCHDOG_PERIOD_S)
        if os.getppid() != parent:
            os.killpg(os.getpgrp(), signal.SIGKILL)


def _watch(parent: int) -> None:
    """Start the watchdog on ``parent``, and end now if it is already gone (it died before the watchdog ran)."""
    threading.Thread(target=_watchdog, args=(parent,), daemon=True).start()
    if os.getppid() != parent:
        os.killpg(os.getpgrp(), signal.SIGKILL)


class _Forward(logging.Handler):
    def __init__(self, send: Callable[[dict], None]) -> None:
        super().__init__(logging.INFO)
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send({"event": "log", "logger": record.name, "message": record.getMessage()})
        except Exception:  # noqa: BLE001 - a lost progress message must never fail a run
            pass


def _apply_overrides(overrides: dict) -> None:
    """``{"module:ATTR": value}`` or ``{"module:ATTR[key]": value}``: a tuning job's configuration,
    applied before any run (module-level settings such as a chain method)."""
    for target, value in overrides.items():
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        if attr.endswith("]"):
            name, _, key = attr[:-1].partition("[")
            table = getattr(module, name)
            if key not in table:
                raise KeyError(f"{target}: {name} has no key {key!r}")
            table[key] = value
        else:
            if not hasattr(module, attr):
                raise AttributeError(f"{target}: {module_name} has no {attr}")
            setattr(module, attr, value)


class _Channel:
    """One JSON message per line to the process this one answers (the client, or for a sibling its worker)."""

    def __init__(self, fd: int) -> None:
        self._out = os.fdopen(fd, "w", encoding="utf-8")
        self._lock = threading.Lock()

    def send(self, msg: dict) -> None:
        self.write(json.dumps(msg, default=str))

    def write(self, line: str) -> None:
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


def worker_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.runpath.worker")
    ap.add_argument("--requests", type=int, required=True, help="fd the client writes requests to")
    ap.add_argument("--replies", type=int, required=True, help="fd the worker writes replies to")
    ap.add_argument("--parent", type=int, required=True)
    ap.add_argument("--overrides", default="{}")
    ap.add_argument("--prepare", default="", help="comma-separated engines whose PPLs to import before 'ready'")
    a = ap.parse_args(argv)
    _watch(a.parent)
    cpus = os.environ.get("EIGHT_SCHOOLS_CPUS")
    if cpus:  # this worker's share of the machine (a Dask LocalCluster's split), before any thread starts
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    channel = _Channel(a.replies)
    engines_log = logging.getLogger("benchmarks.engines")
    engines_log.setLevel(logging.INFO)
    forward = _Forward(channel.send)
    engines_log.addHandler(forward)
    try:
        from .plugins import register_from_env  # after the CPUs are pinned and the watchdog runs (see below)

        register_from_env()
        _apply_overrides(json.loads(a.overrides))
    except Exception as e:  # noqa: BLE001 - reported to the client as this worker's failure
        channel.send({"ok": False, "error": f"overrides: {type(e).__name__}: {e}"})
        return 1
    # the run path's imports (NumPy, arviz-stats, the reference; once per worker) come after the CPU pinning
    # and the watchdog: threads a library starts keep the CPUs of the moment they start, and a parent
    # killed during these seconds must still take the worker down. The check's helper process is forked
    # after them and before any PPL is imported, so it has the check's modules at once (checker.py); so is
    # the sibling (below), which imports its share of the PPLs beside this process's share
    from . import execute as _execute  # noqa: F401 - the import is the point: the sibling inherits it

    engines = [e for e in a.prepare.split(",") if e]
    ours, theirs = split_engines(engines)
    sibling = None
    if theirs:
        worker = os.getpid()

        def serve_theirs(requests_fd: int, replies_fd: int) -> int:  # in the sibling, after the fork
            _watch(worker)  # it watches the worker as the worker watches the client
            channel = _Channel(replies_fd)
            forward._send = channel.send  # its engines' log messages go to the worker, which passes them on
            return _serve(requests_fd, channel, theirs, (requests_fd, replies_fd))

        sibling = Sibling.fork(theirs, (a.requests, a.replies), serve_theirs)
    code = _serve(a.requests, channel, ours, (a.requests, a.replies), sibling)
    _end(code)


def _serve(requests_fd: int, channel: _Channel, engines: Sequence[str], inherited: Sequence[int],
           sibling: Sibling | None = None) -> int:
    """Import ``engines``' PPLs, answer 'ready', then run each spec received until end of file or 'exit';
    a spec for one of the sibling's engines is passed to it and its answer passed back."""
    from .execute import execute, prepare

    checker.start(inherited=(*inherited, *(sibling.fds if sibling is not None else ())))
    prepare(list(engines))  # the PPLs the client's runs will use
    if sibling is not None and not sibling.await_ready():
        sibling = None  # it failed to start: its engines run here (their first run imports the PPL)
    channel.send({"ok": True, "ready": os.getpid()})
    requests = os.fdopen(requests_fd, "r", encoding="utf-8")
    for line in requests:  # end of file: the client is gone or done
        msg = json.loads(line)
        if msg.get("op") == "exit":
            break
        if sibling is not None and msg.get("spec", {}).get("engine") in sibling.engines:
            sibling.relay(line, channel)
            continue
        try:
            result = execute(msg["spec"])
        except BaseException:  # noqa: BLE001 - the run path's own failure, reported, never a hang
            channel.send({"ok": False, "error": traceback.format_exc()[-4000:]})
            continue
        channel.send({"ok": True, "result": result})
    if sibling is not None:
        sibling.close()
    checker.stop()
    return 0


def _end(code: int) -> NoReturn:
    """The worker's end: no process of its group is left behind (httpstan's pool, the sibling's), and the
    worker exits as multiprocessing's workers do, without the interpreter's teardown: after the PPLs ran,
    finalising their modules takes a second or more of CPU, on a core the client's report wants."""
    me = os.getpid()
    for pid in _group_members() if os.getpgrp() == me else ():  # a Worker's process leads its own group
        if pid != me:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _group_members() -> list[int]:
    """The processes of this worker's process group, itself included (Linux's /proc: a process's stat
    names its group); where /proc cannot be read, the whole group is killed, this worker with it."""
    group = os.getpgrp()
    try:
        found = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    stat = (d / "stat").read_text()
                except OSError:  # gone meanwhile
                    continue
                if int(stat.rsplit(")", 1)[1].split()[2]) == group:
                    found.append(int(d.name))
        return found
    except OSError:
        os.killpg(group, signal.SIGKILL)
        return []


# --- the client's handle on a worker --------------------------------------------------------------


class Worker:
    """One worker process, started on first use, replaced after a timeout or crash."""

    def __init__(self, *, env: dict[str, str] | None = None, overrides: dict | None = None,
                 on_event: Callable[[dict], None] | None = None, log_dir: Path | None = None,
                 prepare: Sequence[str] = ()) -> None:
        self.env = env
        #: engines whose PPLs the worker imports while it starts, before its first run (see ``prepare``)
        self.prepare = tuple(prepare)
        self.overrides = overrides or {}
        self.on_event = on_event
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.gettempdir())
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.started = 0  # how many processes this handle has started
        self._buf = b""
        self._ready = False

    # lifecycle
    def start(self) -> None:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        fd, log = tempfile.mkstemp(prefix="eight-schools-worker-", suffix=".log", dir=self.log_dir)
        self.log_path = Path(log)
        # an empty value unsets a variable (a tuning job's cold environment, JAX's cache off)
        env = {k: v for k, v in {**os.environ, **(self.env or {})}.items() if v != ""}
        cmd = [sys.executable, "-m", "benchmarks.runpath.worker", "--requests", str(req_r),
               "--replies", str(rep_w), "--parent", str(os.getpid()), "--overrides", json.dumps(self.overrides)]
        if self.prepare:
            cmd += ["--prepare", ",".join(self.prepare)]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=env,
                                         pass_fds=(req_r, rep_w), start_new_session=True)
        finally:
            os.close(fd)
            os.close(req_r)
            os.close(rep_w)
        self._requests = os.fdopen(req_w, "w", encoding="utf-8")
        self._replies = rep_r
        self._buf = b""
        self.started += 1
        self._ready = False

    def spawn(self) -> None:
        """Start the worker process without waiting for it: its imports overlap the caller's set-up."""
        if not self.alive:
            if self.proc is not None:
                self.kill()
            self.start()

    def _await_ready(self) -> None:
        if self._ready:
            return
        ready = self._reply(START_TIMEOUT_S)
        if not ready.get("ok"):
            error = ready.get("error", "")
            self.kill()
            raise WorkerLost("crashed", f"worker failed to start: {error}")
        self._ready = True

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL to the worker's whole process group, then reap it."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._close_pipes()
        self.proc = None

    def close(self) -> None:
        """Ask the worker to exit; kill its group if it does not within a few seconds."""
        if self.proc is None:
            return
        try:
            self._requests.write(json.dumps({"op": "exit"}) + "\n")
            self._requests.flush()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _close_pipes(self) -> None:
        for closer in (lambda: self._requests.close(), lambda: os.close(self._replies)):
            try:
                closer()
            except OSError:
                pass

    # one run
    def run(self, wire: dict, timeout_s: float | None) -> dict:
        """The worker's reply to one spec; raises WorkerLost on timeout or crash (the worker is then
        gone, and the next call starts a fresh one)."""
        self.spawn()
        self._await_ready()
        try:
            self._requests.write(json.dumps({"op": "run", "spec": wire}) + "\n")
            self._requests.flush()
        except OSError as e:
            raise self._lost("crashed", f"worker pipe closed ({e})") from None
        reply = self._reply(timeout_s)
        if not reply.get("ok"):
            raise RuntimeError(f"run path failed in the worker:\n{reply.get('error')}")
        return reply["result"]

    def _reply(self, timeout_s: float | None) -> dict:
        deadline = None if not timeout_s else time.monotonic() + timeout_s
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line, self._buf = self._buf[:nl], self._buf[nl + 1:]
                msg = json.loads(line)
                if "event" in msg:
                    if self.on_event:
                        self.on_event(msg)
                    continue
                return msg
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise self._lost("timeout", f"run exceeded the per-run limit of {timeout_s:g} s; "
                                            "the worker's process group was killed")
            ready, _, _ = select.select([self._replies], [], [], wait)
            if not ready:
                continue
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                status = self.proc.wait() if self.proc else None
                raise self._lost("crashed", _describe_exit(status) + self._log_tail())
            self._buf += chunk

    def _lost(self, kind: str, message: str) -> WorkerLost:
        self.kill()
        return WorkerLost(kind, message)

    def _log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")[-LOG_TAIL:] if self.log_path else ""
        except OSError:
            text = ""
        text = text.strip()
        return f"; worker log ends: {text.splitlines()[-1][:300]}" if text else ""


def _describe_exit(status: int | None) -> str:
    if status is None:
        return "worker died"
    if status < 0:
        sig = signal.Signals(-status).name
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if sig == "SIGKILL" else ""
        return f"worker killed by {sig}{hint}"
    return f"worker exited with status {status}"


if __name__ == "__main__":
    sys.exit(worker_main())  # only for an early failure: a worker that served ends in _end
