"""Publishing is the one explicit step that changes the committed snapshot: a finished run replaces
its snapshot folder whole; a collection (baselines, versions) entry by entry; nothing else is touched."""

from __future__ import annotations

import json

import pytest

from benchmarks.jobs.publish import publish
from benchmarks.runpath import ResultsStore
from models.errors import UsageError


def test_a_finished_run_replaces_its_snapshot_whole_without_its_records(tmp_path):
    runs, snap = tmp_path / "runs", tmp_path / "results"
    with ResultsStore.open(runs / "compare") as store:
        store.write_json("runs.json", [])
    (runs / "compare" / "REPORT.md").write_text("new")
    (snap / "compare").mkdir(parents=True)
    (snap / "compare" / "stale.png").write_text("old")
    publish("compare", runs, snap)
    assert (snap / "compare" / "REPORT.md").read_text() == "new"
    assert not (snap / "compare" / "stale.png").exists() and not (snap / "compare" / "records").exists()
    assert not (snap / "compare" / ".lock").exists() and not list(snap.glob(".*publishing"))


def test_a_collection_is_published_entry_by_entry(tmp_path):
    runs, snap = tmp_path / "runs", tmp_path / "results"
    (runs / "baselines" / "ci.runs").mkdir(parents=True)
    (runs / "baselines" / "ci.json").write_text(json.dumps({"n": 2}))
    (snap / "baselines").mkdir(parents=True)
    (snap / "baselines" / "full.json").write_text(json.dumps({"n": 1}))
    publish("baselines", runs, snap)
    assert json.loads((snap / "baselines" / "ci.json").read_text()) == {"n": 2}
    assert (snap / "baselines" / "full.json").exists()  # the other baseline is kept
    assert not (snap / "baselines" / "ci.runs").exists()  # a baseline's run records stay with the run


def test_an_unfinished_or_running_job_is_refused(tmp_path):
    runs, snap = tmp_path / "runs", tmp_path / "results"
    with pytest.raises(UsageError, match="REPORT.md missing"):
        publish("compare", runs, snap)
    with ResultsStore.open(runs / "compare"):
        (runs / "compare" / "REPORT.md").write_text("x")
        with pytest.raises(UsageError, match="still writing"):
            publish("compare", runs, snap)
    with pytest.raises(UsageError, match="job = 'nope'"):
        publish("nope", runs, snap)
