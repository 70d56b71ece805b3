"""Fault injection: a hung engine killed with its process group, a worker that crashes or exits
non-zero, kill -9 of the matrix then --resume, two writers on one results folder, a results folder
that cannot be written. Each through the real run path: worker processes and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import require_engine
from test_runpath import SMALL, calls, run, specs

#: how long a killed process may take to disappear: the worker's watchdog polls its parent every
#: 0.2 s (worker.WATCHDOG_PERIOD_S); the rest is the kernel delivering SIGKILL and reaping, with margin
#: for a loaded 2-core CI machine
GONE_WITHIN_S = 10.0


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a dead child not yet reaped by its new parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int], within: float = GONE_WITHIN_S) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def wait_for(pred, within: float = 60.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def child_pids(log: Path) -> list[int]:
    return [int(c[3]) for c in calls(log) if c[2] == "child"]


def test_a_hung_engine_is_killed_with_its_process_group_at_the_limit(tmp_path, fakes):
    t0 = time.monotonic()
    records = run(tmp_path, specs("fake-child-hang", seeds=(1,)) + specs("fake-ok", seeds=(1,)), timeout_s=3.0)
    assert time.monotonic() - t0 < 60
    hung = next(r for r in records if r["engine"] == "fake-child-hang")
    ok = next(r for r in records if r["engine"] == "fake-ok")
    assert hung["error_kind"] == "timeout" and "per-run limit of 3 s" in hung["error"]
    assert ok["error"] is None  # the matrix went on, in a fresh worker
    workers = {c[0]: int(c[3]) for c in calls(fakes) if c[2] in ("child-hang", "ok")}
    assert workers["fake-ok"] != workers["fake-child-hang"]
    assert wait_gone([workers["fake-child-hang"], *child_pids(fakes)]) == []


@pytest.mark.parametrize("engine, message", [("fake-exit", "worker exited with status 3"),
                                             ("fake-kill", "worker killed by SIGKILL")])
def test_a_worker_that_dies_is_that_runs_error_and_the_next_run_gets_a_fresh_worker(tmp_path, fakes, engine,
                                                                                    message):
    records = run(tmp_path, specs(engine, seeds=(1,)) + specs("fake-ok", seeds=(1,)))
    dead = next(r for r in records if r["engine"] == engine)
    assert dead["error_kind"] == "crashed" and message in dead["error"]
    assert next(r for r in records if r["engine"] == "fake-ok")["check_passed"] is True


def _config(tmp_path: Path, engines: list[str], seeds: list[int]) -> Path:
    cfg = tmp_path / "m.toml"
    s = SMALL
    cfg.write_text(f"engines = {json.dumps(engines)}\nparameterizations = ['noncentered']\nseeds = {seeds}\n"
                   f"settings = {{ chains = {s.chains}, warmup = {s.warmup}, draws = {s.draws} }}\n")
    return cfg


def _matrix(tmp_path: Path, *args: str, env: dict | None = None, wait: bool = True):
    cmd = [sys.executable, "-m", "benchmarks", "matrix", str(_config(tmp_path, ["fake-script"], [1, 2, 3])),
           "--results", str(tmp_path / "results"), "--run-id", "m", *args]
    full_env = {**os.environ, **(env or {})}
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=600)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=full_env)  # nobody reads them


def test_kill_9_of_the_matrix_leaves_no_process_and_resume_loses_and_duplicates_nothing(tmp_path, fakes):
    client = _matrix(tmp_path, env={"FAKE_SCRIPT": "2:child-hang"}, wait=False)
    try:
        child = wait_for(lambda: child_pids(fakes))[0]
        worker = next(int(c[3]) for c in calls(fakes) if c[2] == "child-hang")
        client.send_signal(signal.SIGKILL)
        client.wait()
    finally:
        if client.poll() is None:
            client.kill()
    assert wait_gone([worker, child]) == [], "the worker or its child outlived the killed matrix"
    done = sorted((tmp_path / "results" / "m" / "records").glob("*.json"))
    assert len(done) == 1  # seed 1 finished before the kill
    r = _matrix(tmp_path, "--resume", env={"FAKE_SCRIPT": ""})
    assert r.returncode == 0, r.stderr
    records = json.loads((tmp_path / "results" / "m" / "runs.json").read_text())
    assert sorted(rec["seed"] for rec in records) == [1, 2, 3] and all(rec["error"] is None for rec in records)
    ran = [int(c[1]) for c in calls(fakes) if c[0] == "fake-script" and c[2] == "ok"]
    assert sorted(ran) == [1, 2, 3]  # seed 1 was not run again; nothing is missing or twice
    assert not list((tmp_path / "results").rglob("*.tmp"))


def test_two_writers_on_one_results_folder(tmp_path, fakes):
    first = _matrix(tmp_path, env={"FAKE_SCRIPT": "1:hang"}, wait=False)
    try:
        wait_for(lambda: [c for c in calls(fakes) if c[2] == "hang"])
        second = _matrix(tmp_path, "--resume")
        assert second.returncode == 2
        assert "in use by pid" in second.stderr and str(first.pid) in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.kill()
        first.wait()


def test_a_results_folder_that_cannot_be_written_is_an_input_error_before_any_run(tmp_path, fakes):
    cfg = _config(tmp_path, ["fake-ok"], [1])
    r = subprocess.run([sys.executable, "-m", "benchmarks", "matrix", str(cfg), "--results", "/proc/self/nope",
                        "--run-id", "m"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "not writable" in r.stderr, r.stderr
    assert calls(fakes) == []  # no engine ran


def test_a_tiny_timeout_is_rows_not_a_crash(tmp_path, fakes):
    records = run(tmp_path, specs("fake-slow", seeds=(1, 2)), timeout_s=0.05)
    assert [r["error_kind"] for r in records] == ["timeout", "timeout"]



def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def test_kill_9_while_pystan_samples_leaves_no_httpstan_worker(tmp_path):
    """The issue's reproduction: kill -9 of a matrix while PyStan samples left two httpstan pool
    workers (~300 MB each) alive for good. Its worker, the forkserver and the pool all go now."""
    require_engine("pystan")
    cfg = tmp_path / "m.toml"
    cfg.write_text("engines = ['pystan']\nparameterizations = ['centered']\nseeds = [1, 2, 3]\n"
                   "settings = { chains = 4, warmup = 20000, draws = 20000 }\n")
    client = subprocess.Popen([sys.executable, "-m", "benchmarks", "matrix", str(cfg), "--results",
                               str(tmp_path / "results"), "--run-id", "m"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        # the worker, httpstan's forkserver and its pool workers all exist: sampling is under way
        wait_for(lambda: len(descendants(client.pid)) >= 4, within=300)
        time.sleep(1.0)
        procs = descendants(client.pid)
        client.send_signal(signal.SIGKILL)
        client.wait()
    finally:
        if client.poll() is None:
            client.kill()
    assert wait_gone(procs) == [], "processes outlived the killed matrix"
