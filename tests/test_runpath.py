"""The run path: one spec run in an isolated worker, records with their schema, failures as rows,
engines answered once when they cannot run, keys that cannot collide."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from benchmarks.engines.base import Settings
from benchmarks.runpath import ResultsStore, RunSpec, SerialExecutor, run_matrix
from benchmarks.runpath.record import RECORD_FIELDS
from models.errors import UsageError

SMALL = Settings(chains=2, warmup=10, draws=250)


def calls(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def specs(engine: str, seeds=(1, 2), **kw) -> list[RunSpec]:
    return [RunSpec(engine=engine, parameterization="noncentered", settings=Settings(**{**SMALL.to_dict(),
                                                                                       "seed": s}), **kw)
            for s in seeds]


def run(tmp_path, specs_, timeout_s=60.0, resume=False):
    with ResultsStore.open(tmp_path / "run", resume=resume) as store, SerialExecutor(timeout_s=timeout_s) as ex:
        return run_matrix(specs_, store, ex, timeout_s=timeout_s)


def test_records_have_the_schema_and_the_tables_agree(tmp_path, fakes):
    records = run(tmp_path, specs("fake-ok") + specs("fake-slow", seeds=(1,)))
    assert len(records) == 3 and all(r["error"] is None for r in records)
    with open(tmp_path / "run" / "runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == RECORD_FIELDS
    assert json.loads((tmp_path / "run" / "runs.json").read_text()) == records
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert {"python", "cpu", "cores", "packages", "git_revision", "host", "executor"} <= set(env)
    r = next(r for r in records if r["engine"] == "fake-ok")
    assert r["ess_phase"] == "sampling" and r["ess_bulk_per_s"] == pytest.approx(r["min_ess_bulk"] / 0.006)
    assert r["ess_bulk_per_grad"] == pytest.approx(r["min_ess_bulk"] / (7 * 500))
    assert r["check_passed"] is True  # exact draws
    assert r["divergences_per_chain"] == [0, 0] and r["machine"] and r["data_spec"] == "rubin"
    assert not list((tmp_path / "run").rglob("*.tmp"))
    # one warm worker served every run
    assert len({line[3] for line in calls(fakes)}) == 1


def test_an_engine_that_raises_is_a_row_and_the_matrix_goes_on(tmp_path, fakes):
    records = run(tmp_path, specs("fake-raise", seeds=(1,)) + specs("fake-ok"))
    bad = [r for r in records if r["error"]]
    assert len(bad) == 1 and bad[0]["error"] == "RuntimeError: engine exploded" and bad[0]["error_kind"] == "error"
    assert sum(1 for c in calls(fakes) if c[0] == "fake-ok") == 2


def test_draws_the_check_cannot_use_are_a_row_and_the_matrix_goes_on(tmp_path, fakes):
    """An engine whose draws the check refuses (tau <= 0: a chain's log tau ran off to -inf) failed, like
    one that raised: a record naming why, in the same worker, and the next run goes on."""
    records = run(tmp_path, specs("fake-zero-tau", seeds=(1,)) + specs("fake-ok", seeds=(1,)))
    bad, ok = (next(r for r in records if r["engine"] == e) for e in ("fake-zero-tau", "fake-ok"))
    assert bad["error_kind"] == "error" and bad["error"].startswith("unusable draws: ") and "tau" in bad["error"]
    assert bad["check_passed"] is None and ok["error"] is None and ok["check_passed"] is True
    assert len({line[3] for line in calls(fakes)}) == 1  # the worker lived on


def test_an_unavailable_engine_is_answered_once(tmp_path, fakes):
    records = run(tmp_path, specs("fake-absent", seeds=(1, 2, 3)) + specs("fake-ok", seeds=(1,)))
    absent = [r for r in records if r["engine"] == "fake-absent"]
    assert [r["error_kind"] for r in absent] == ["unavailable"] * 3
    assert all("fake PPL is not installed here" in r["error"] for r in absent)
    assert sum(r["answered_by"] is not None for r in absent) == 2
    assert [c[2] for c in calls(fakes) if c[0] == "fake-absent"] == ["availability"]


def test_a_prepared_worker_asks_its_engines_before_it_is_ready(tmp_path, fakes):
    """run_specs(prepare=True): the worker imports each engine's PPL (its availability) while it starts, so
    that no run's time holds an import; a name it does not know is left to the run, which reports it."""
    with ResultsStore.open(tmp_path / "run") as store, \
            SerialExecutor(timeout_s=60.0, prepare=["fake-absent", "no-such-engine"]) as ex:
        ex.worker._await_ready()
        assert [c[2] for c in calls(fakes) if c[0] == "fake-absent"] == ["availability"]  # before any run
        records = run_matrix(specs("fake-absent", seeds=(1, 2)) + specs("fake-ok", seeds=(1,)), store, ex,
                             timeout_s=60.0)
    assert [r["error_kind"] for r in records if r["engine"] == "fake-absent"] == ["unavailable"] * 2
    assert [c[2] for c in calls(fakes) if c[0] == "fake-absent"] == ["availability"]  # asked once, not again
    assert next(r for r in records if r["engine"] == "fake-ok")["error"] is None


def test_a_known_upstream_break_is_answered_once_with_its_link(tmp_path, fakes):
    records = run(tmp_path, specs("fake-broken", seeds=(1, 2, 3)))
    assert {r["error_kind"] for r in records} == {"known-break"}
    assert {r["error_link"] for r in records} == {"https://example.org/upstream/1"}
    assert len([c for c in calls(fakes) if c[0] == "fake-broken"]) == 1


def test_a_known_break_on_the_versions_it_was_seen_with_is_recorded_without_attempting_the_run(tmp_path, fakes):
    """Pinned to the numpy installed here, the break is the record and the engine is never called (it would
    have run fine: the pin alone decides); pinned to another numpy, the run is attempted."""
    records = run(tmp_path, specs("fake-pinned", seeds=(1, 2)) + specs("fake-stale-pin", seeds=(1,)))
    pinned = [r for r in records if r["engine"] == "fake-pinned"]
    assert [r["error_kind"] for r in pinned] == ["known-break"] * 2
    assert "not attempted: numpy " in pinned[0]["error"] and pinned[0]["error_link"].endswith("/2")
    assert not [c for c in calls(fakes) if c[0] == "fake-pinned"]
    stale = next(r for r in records if r["engine"] == "fake-stale-pin")
    assert stale["error"] is None and [c[0] for c in calls(fakes)] == ["fake-stale-pin"]
    from benchmarks.reporting.failures import failure

    assert failure(pinned[0]).kind == "known-break"


def test_keys_of_different_data_never_collide(tmp_path):
    """The old keys sanitised the spec text, so /p/a/x.csv and /p/a-x.csv collided; files with one
    stem in two folders read alike too. The digest of the data's values tells them apart."""
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    (tmp_path / "a" / "x.csv").write_text("y,sigma\n1,2\n3,4\n")
    (tmp_path / "a-x.csv").write_text("y,sigma\n1,2\n3,5\n")
    (tmp_path / "b" / "x.csv").write_text("y,sigma\n1,2\n3,6\n")
    paths = [tmp_path / "a" / "x.csv", tmp_path / "a-x.csv", tmp_path / "b" / "x.csv"]
    runs = [RunSpec(engine="pystan", parameterization="centered", data=str(p)) for p in paths]
    assert runs[0].readable == runs[2].readable  # same stem: alike for people ...
    assert len({r.key for r in runs}) == 3  # ... never for the store


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    with ResultsStore.open(tmp_path / "run"):
        with pytest.raises(UsageError, match=r"in use by pid \d+"):
            ResultsStore.open(tmp_path / "run", resume=True)


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    ResultsStore.open(run_dir).close()
    (run_dir / ".lock").write_text("pid 999999 on a-host since long ago")  # nobody holds its flock
    with ResultsStore.open(run_dir, resume=True) as store:
        assert "pid" in (run_dir / ".lock").read_text() and store.records == {}


def test_records_without_resume_are_refused(tmp_path, fakes):
    run(tmp_path, specs("fake-ok", seeds=(1,)))
    with pytest.raises(UsageError, match="--resume"):
        run(tmp_path, specs("fake-ok", seeds=(1,)))
    assert len(run(tmp_path, specs("fake-ok"), resume=True)) == 2
    assert len([c for c in calls(fakes) if c[0] == "fake-ok"]) == 2  # seed 1 once, seed 2 once


def test_a_folder_the_suite_did_not_create_is_never_written_or_deleted(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(UsageError, match="did not write"):
        ResultsStore.open(foreign)
    from benchmarks.runpath import remove_created

    with pytest.raises(UsageError, match="refusing to delete"):
        remove_created(foreign)
    assert (foreign / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("run_id", ["../x", "a/b", "..", "", "/abs"])
def test_a_run_id_is_confined_to_its_results_root(run_id):
    from benchmarks.runpath import check_run_id

    with pytest.raises(UsageError, match="--run-id"):
        check_run_id(run_id)
