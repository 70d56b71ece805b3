"""The Dask executor: a scheduler and two workers on 127.0.0.1, a worker killed mid-run, the scheduler
lost; a LocalCluster; the same records (timings aside) as the in-process order.

The matrix mixes a real engine (PyStan, short settings) with a stand-in whose run can be made long
enough to kill a worker in the middle of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TESTS, require_engine
from fake_engines import REGISTRY_ENV
from test_faults import wait_for, wait_gone
from test_runpath import SMALL, calls

pytest.importorskip("distributed")

DASK = Path(sys.executable).with_name("dask")
#: fields that differ between two runs of one spec by design: clocks, where it ran, the process
NOT_COMPARED = {"compile_s", "warmup_s", "sampling_s", "inference_s", "total_s", "ess_bulk_per_s_wall",
                "ess_bulk_per_s", "ess_tail_per_s", "engine_call_s", "diagnostics_s", "check_s", "worker_s",
                "harness_s", "worker", "machine", "cpus", "first_in_process", "compile_cached", "compile_reused"}


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> dict[str, dict]:
    """The in-process order's records (timings aside) of the matrix, made once for the module."""
    require_engine("pystan")
    tmp_path = tmp_path_factory.mktemp("serial")
    env = {**os.environ, "EIGHT_SCHOOLS_EXTRA_ENGINES": REGISTRY_ENV, "FAKE_SCRIPT": "",
           "PYTHONPATH": str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "benchmarks", "matrix", str(_config(tmp_path)), "--results",
           str(tmp_path / "results"), "--run-id", "serial", "--timeout", "300"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr
    return _records(tmp_path, "serial")


@pytest.fixture
def env(tmp_path, monkeypatch):
    require_engine("pystan")
    e = {"EIGHT_SCHOOLS_EXTRA_ENGINES": REGISTRY_ENV,
         "PYTHONPATH": str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", ""),
         "FAKE_ENGINE_LOG": str(tmp_path / "calls.log"), "FAKE_SCRIPT": "3:long,4:long"}
    for k, v in e.items():
        monkeypatch.setenv(k, v)
    return e


#: the small matrix every test runs: a real engine and the stand-in, seeds 1-4 (the stand-in's seeds
#: 3 and 4 run long enough to kill a worker in the middle of one)
RUNS = 8


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "m.toml"
    s = SMALL
    cfg.write_text("engines = ['pystan', 'fake-script']\nparameterizations = ['noncentered']\n"
                   f"seeds = [1, 2, 3, 4]\nsettings = {{ chains = {s.chains}, warmup = 100, draws = 100 }}\n")
    return cfg


def _matrix(tmp_path: Path, run_id: str, *args: str, wait: bool = True):
    cmd = [sys.executable, "-m", "benchmarks", "matrix", str(_config(tmp_path)), "--results",
           str(tmp_path / "results"), "--run-id", run_id, "--timeout", "300", *args]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _records(tmp_path: Path, run_id: str) -> dict[str, dict]:
    recs = json.loads((tmp_path / "results" / run_id / "runs.json").read_text())
    return {r["key"]: {k: v for k, v in r.items() if k not in NOT_COMPARED} for r in recs}


@pytest.fixture
def cluster(tmp_path, env):
    """A scheduler and two single-threaded workers offering one `run` each, on 127.0.0.1."""
    sched_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sched_file)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    address = wait_for(lambda: sched_file.exists() and json.loads(sched_file.read_text() or "{}").get("address"))
    for _ in range(2):
        procs.append(subprocess.Popen([str(DASK), "worker", address, "--nthreads", "1", "--resources", "run=1",
                                       "--no-dashboard", "--host", "127.0.0.1"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    from distributed import Client

    with Client(address, timeout=60) as c:
        c.wait_for_workers(2, timeout=120)
    yield address, procs
    for p in reversed(procs):
        p.kill()
        p.wait()


def test_a_cluster_with_a_worker_killed_mid_run_records_everything_once_as_in_process(tmp_path, env, cluster,
                                                                                          serial):
    address, _ = cluster
    log = Path(env["FAKE_ENGINE_LOG"])
    client = _matrix(tmp_path, "dask", "--scheduler", address, wait=False)
    # a long run has started on some worker: kill that Dask worker process (not its nanny) mid-run
    run_worker = wait_for(lambda: next((int(c[3]) for c in calls(log) if c[2] == "long"), None), within=300)
    dask_worker = int(Path(f"/proc/{run_worker}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(dask_worker, signal.SIGKILL)
    out, err = client.communicate(timeout=900)
    assert client.returncode == 0, err
    assert wait_gone([run_worker]) == [], "the killed worker's run-worker outlived it"
    dask = _records(tmp_path, "dask")
    assert len(dask) == RUNS and set(dask) == set(serial)  # every run once: keys are unique per spec
    assert all(r["error"] is None for r in dask.values())
    for key in serial:
        assert dask[key] == serial[key], key  # the same draws give the same statistics and verdicts
    started = [c for c in calls(log) if c[2] == "long"]
    assert len(started) > 2  # a long run was started again elsewhere after its worker died ...
    assert sum(1 for r in json.loads((tmp_path / "results" / "dask" / "runs.json").read_text())
               if r["engine"] == "fake-script") == RUNS // 2  # ... and recorded once


def test_a_local_cluster_gives_the_in_process_records(tmp_path, env, monkeypatch, serial):
    monkeypatch.setenv("FAKE_SCRIPT", "")
    local = _matrix(tmp_path, "local", "--workers", "2")
    assert local.returncode == 0, local.stderr
    assert _records(tmp_path, "local") == serial
    recs = json.loads((tmp_path / "results" / "local" / "runs.json").read_text())
    assert {r["cpus"] for r in recs} == {max(1, len(os.sched_getaffinity(0)) // 2)}  # each holds its share
    env_doc = json.loads((tmp_path / "results" / "local" / "environment.json").read_text())
    assert "LocalCluster of 2 workers" in env_doc["executor"]


def test_the_scheduler_lost_stops_the_matrix_cleanly_and_resume_finishes_it(tmp_path, env, cluster):
    address, procs = cluster
    log = Path(env["FAKE_ENGINE_LOG"])
    client = _matrix(tmp_path, "lost", "--scheduler", address, wait=False)
    wait_for(lambda: [c for c in calls(log) if c[2] == "long"], within=300)
    procs[0].kill()  # the scheduler
    procs[0].wait()
    out, err = client.communicate(timeout=600)
    assert client.returncode == 3 and "--resume" in err and len(err.strip().splitlines()) == 1, err
    assert not list((tmp_path / "results").rglob("*.tmp"))
    done = json.loads((tmp_path / "results" / "lost" / "runs.json").read_text())
    finished = _matrix(tmp_path, "lost", "--resume")
    assert finished.returncode == 0, finished.stderr
    recs = json.loads((tmp_path / "results" / "lost" / "runs.json").read_text())
    assert len(recs) == RUNS and len({r["key"] for r in recs}) == RUNS and len(done) < RUNS
