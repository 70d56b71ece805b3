"""A worker prepared for engines of two runtimes or more forks a sibling after the run path's imports: each
process imports its share of the PPLs, the sibling runs its engines' specs passed on by the worker, and a
crash, an exit, a timeout or the worker's end leaves no process of either behind."""

from __future__ import annotations

import os

import pytest
from test_faults import alive, child_pids, wait_gone
from test_runpath import calls, specs

from benchmarks.engines import ENGINES, EngineEntry
from benchmarks.runpath import ResultsStore, SerialExecutor, run_matrix, sibling

BOTH = ["fake-ok", "fake-other-ok", "fake-other-hang", "fake-other-exit", "fake-other-kill"]


def run_prepared(tmp_path, specs_, prepare=BOTH, timeout_s=60.0):
    with ResultsStore.open(tmp_path / "run") as store, SerialExecutor(timeout_s=timeout_s, prepare=prepare) as ex:
        return run_matrix(specs_, store, ex, timeout_s=timeout_s)


def pids_of(log, engine: str) -> set[int]:
    return {int(c[3]) for c in calls(log) if c[0] == engine and c[2] != "child"}


@pytest.fixture
def registry(monkeypatch):
    """A registry of made-up engines in three runtimes (split_engines reads only names and runtimes)."""
    table = {"j1": "jax", "j2": "jax", "j3": "jax", "p1": "pytensor", "s1": "stan", "s2": "stan", "n1": ""}
    monkeypatch.setattr("benchmarks.engines.ENGINES", {k: EngineEntry("m:E", k, k, runtime=v) for k, v in table.items()})
    monkeypatch.setattr(sibling, "fork_is_safe", lambda: True)
    monkeypatch.setattr(sibling.os, "sched_getaffinity", lambda pid: {0, 1})


def test_each_runtime_stays_on_one_side_and_the_sides_are_about_even(registry):
    ours, theirs = sibling.split_engines(["j1", "p1", "s1", "j2", "s2", "j3"])
    assert ours == ["j1", "j2", "j3"]  # the largest runtime first, on one side ...
    assert theirs == ["s1", "s2", "p1"]  # ... the next ones on the side with fewer engines
    ours, theirs = sibling.split_engines(["j1", "p1", "n1", "unknown"])  # unknown names: one group of their own
    assert sorted(ours + theirs) == ["j1", "n1", "p1", "unknown"] and ours and theirs


def test_no_sibling_where_it_cannot_help_or_a_fork_is_unsafe(registry, monkeypatch):
    assert sibling.split_engines(["j1", "j2"]) == (["j1", "j2"], [])  # one runtime
    assert sibling.split_engines([]) == ([], [])
    monkeypatch.setattr(sibling.os, "sched_getaffinity", lambda pid: {0})
    assert sibling.split_engines(["j1", "p1"]) == (["j1", "p1"], [])  # one CPU
    monkeypatch.setattr(sibling.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(sibling, "fork_is_safe", lambda: False)
    assert sibling.split_engines(["j1", "p1"]) == (["j1", "p1"], [])  # a runtime with threads runs here
    monkeypatch.setattr(sibling, "fork_is_safe", lambda: True)
    monkeypatch.setattr(sibling, "SIBLING", False)
    assert sibling.split_engines(["j1", "p1"]) == (["j1", "p1"], [])  # switched off


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a worker forks a sibling only with two CPUs or more")
def test_the_sibling_runs_its_runtimes_engines_and_leaves_nothing_behind(tmp_path, fakes):
    records = run_prepared(tmp_path, specs("fake-ok") + specs("fake-other-ok"))
    assert [r["error"] for r in records] == [None] * 4 and all(r["check_passed"] for r in records)
    mine, theirs = pids_of(fakes, "fake-ok"), pids_of(fakes, "fake-other-ok")
    assert len(mine) == 1 and len(theirs) == 1 and mine != theirs  # two warm processes, one per runtime
    (w,), (s,) = mine, theirs
    assert wait_gone([w, s]) == []  # the executor closed the worker, and the sibling went with it
    sibling_worker = {r["worker"].rsplit(":", 1)[1] for r in records if r["engine"] == "fake-other-ok"}
    assert sibling_worker == {str(s)}  # the record names the process that ran it


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a worker forks a sibling only with two CPUs or more")
def test_a_sibling_that_is_killed_or_exits_is_recorded_as_the_worker_crashing(tmp_path, fakes):
    records = run_prepared(tmp_path, specs("fake-other-kill", seeds=(1,)) + specs("fake-other-exit", seeds=(1,))
                              + specs("fake-ok", seeds=(1,)) + specs("fake-other-ok", seeds=(1,)))
    by = {r["engine"]: r for r in records}
    assert by["fake-other-kill"]["error_kind"] == "crashed" and "SIGKILL" in by["fake-other-kill"]["error"]
    assert by["fake-other-exit"]["error_kind"] == "crashed" and "status 3" in by["fake-other-exit"]["error"]
    assert by["fake-ok"]["error"] is None and by["fake-other-ok"]["error"] is None  # fresh workers went on
    assert len(pids_of(fakes, "fake-ok") | pids_of(fakes, "fake-other-ok")) == 2


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a worker forks a sibling only with two CPUs or more")
def test_a_hung_run_in_the_sibling_is_killed_with_the_whole_group(tmp_path, fakes):
    records = run_prepared(tmp_path, specs("fake-other-hang", seeds=(1,)) + specs("fake-other-ok", seeds=(1,)),
                              timeout_s=5.0)
    assert [r["error_kind"] for r in records] == ["timeout", None]
    hung = pids_of(fakes, "fake-other-hang")
    assert wait_gone([*hung, *child_pids(fakes)]) == []  # the sibling and the process it started
    assert len(hung) == 1 and not any(alive(p) for p in hung)


def test_engines_of_one_runtime_share_the_worker(tmp_path, fakes):
    records = run_prepared(tmp_path, specs("fake-ok") + specs("fake-slow", seeds=(1,)),
                              prepare=["fake-ok", "fake-slow"])
    assert all(r["error"] is None for r in records)
    assert len(pids_of(fakes, "fake-ok") | pids_of(fakes, "fake-slow")) == 1


def test_a_replaced_engine_keeps_its_runtime_unless_the_entry_names_one(monkeypatch):
    from benchmarks.runpath.plugins import register_extra_engines

    monkeypatch.setitem(ENGINES, "numpyro", ENGINES["numpyro"])
    register_extra_engines("numpyro=fake_engines:OK")
    assert ENGINES["numpyro"].runtime == "jax" and ENGINES["numpyro"].target == "fake_engines:OK"
    register_extra_engines("numpyro=fake_engines:OK#other")
    assert ENGINES["numpyro"].runtime == "other"
    monkeypatch.setitem(ENGINES, "fresh-one", None)
    register_extra_engines("fresh-one=fake_engines:OK")
    assert ENGINES["fresh-one"].runtime == ""
