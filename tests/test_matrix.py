"""The benchmark matrix: record schema, atomic writes, --resume, and failures as rows."""

import csv
import json
import time
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import io as bio
from benchmarks import matrix, runner
from benchmarks.engines import ENGINES, RunResult, Timings
from benchmarks.engines.convert import to_datatree
from benchmarks.matrix import RECORD_FIELDS, MatrixError, parse_sections, run_matrix
from benchmarks.report import render
from models import PRESETS, RUBIN
from reference import posterior


def _exact_result(data, prior, param, settings):
    """A stand-in engine: exact draws from the reference, shaped like an engine's output."""
    ref = posterior(data, prior)
    n = settings.chains * settings.draws
    d = ref.draws(n, seed=settings.seed)
    shape = (settings.chains, settings.draws)
    post = {"mu": d["mu"].reshape(shape), "theta": d["theta"].reshape(*shape, data.J)}
    if not prior.tau_fixed:
        post["tau"] = d["tau"].reshape(shape)
    stats = {"diverging": np.zeros(shape, bool), "tree_depth": np.full(shape, 3), "n_steps": np.full(shape, 7),
             "step_size": np.full(shape, 0.5), "energy": np.random.default_rng(settings.seed).normal(size=shape),
             "lp": np.zeros(shape), "acceptance_rate": np.full(shape, 0.8)}
    t = Timings(compile_s=0.0, inference_s=0.01, total_s=0.01, warmup_s=0.004, sampling_s=0.006)
    return RunResult(to_datatree(post, stats, data, prior, "fake"), t, {"engine": "fake", "ppl": "fake",
                                                                        "ppl_version": "0"})


class FakeEngines:
    def __init__(self):
        self.calls = []
        self.behaviour = {}

    def module(self, name):
        def run(data, prior, param, settings):
            self.calls.append((name, settings.seed))
            action = self.behaviour.get((name, settings.seed))
            if action == "raise":
                raise RuntimeError("engine exploded")
            if action == "crash":
                raise KeyboardInterrupt  # a killed matrix: not an engine failure
            if action == "hang":
                time.sleep(5)
            if action == "slow-raise":
                time.sleep(0.3)
                raise RuntimeError("engine exploded late")
            return _exact_result(data, prior, param, settings)

        return SimpleNamespace(run=run, availability=lambda: None)


@pytest.fixture
def fake(monkeypatch):
    f = FakeEngines()
    for name in ("fake-a", "fake-b"):
        monkeypatch.setitem(ENGINES, name, f"fake:{name}")
    monkeypatch.setattr(runner, "get_engine", f.module)
    monkeypatch.setattr(runner, "availability", lambda name: None if name.startswith("fake") else "absent")
    return f


def _sections(**kw):
    cfg = {"engines": ["fake-a", "fake-b"], "parameterizations": ["noncentered"], "priors": ["default"],
           "seeds": [1, 2], "settings": {"chains": 2, "warmup": 10, "draws": 250}, **kw}
    return parse_sections(cfg)


def test_records_have_the_schema_and_tables_agree(tmp_path, fake):
    records = run_matrix(_sections(), tmp_path / "run")
    assert len(records) == 4 and all(r["error"] is None for r in records)
    with open(tmp_path / "run" / "runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == RECORD_FIELDS
    assert json.loads((tmp_path / "run" / "runs.json").read_text()) == records
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert {"python", "cpu", "cores", "packages", "git_revision"} <= set(env)
    r = records[0]
    assert r["ess_phase"] == "sampling" and r["ess_bulk_per_s"] == pytest.approx(r["min_ess_bulk"] / 0.006)
    assert r["ess_bulk_per_grad"] == pytest.approx(r["min_ess_bulk"] / (7 * 500))
    assert r["check_passed"] is True  # exact draws
    assert not list((tmp_path / "run").rglob("*.tmp"))
    report = render(tmp_path / "run").read_text()
    assert "| fake-a | noncentered |" in report


def test_an_engine_that_raises_is_a_row_and_the_matrix_goes_on(tmp_path, fake):
    fake.behaviour[("fake-a", 1)] = "raise"
    records = run_matrix(_sections(), tmp_path / "run")
    bad = [r for r in records if r["error"]]
    assert len(bad) == 1 and bad[0]["error"] == "RuntimeError: engine exploded"
    assert len(fake.calls) == 4


def test_unavailable_engine_is_a_row(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(runner, "availability", lambda name: "not installed here" if name == "fake-b" else None)
    records = run_matrix(_sections(), tmp_path / "run")
    assert [r["error"] for r in records if r["engine"] == "fake-b"] == ["unavailable: not installed here"] * 2


def test_a_run_over_its_time_limit_is_a_row(tmp_path, fake):
    fake.behaviour[("fake-b", 2)] = "hang"
    records = run_matrix(_sections(), tmp_path / "run", timeout_s=0.5)
    slow = [r for r in records if r["error"]]
    assert len(slow) == 1 and "per-run limit of 0.5 s" in slow[0]["error"]


def test_a_killed_matrix_keeps_what_finished_and_resume_continues(tmp_path, fake):
    fake.behaviour[("fake-b", 1)] = "crash"
    with pytest.raises(KeyboardInterrupt):
        run_matrix(_sections(), tmp_path / "run")
    done = json.loads((tmp_path / "run" / "runs.json").read_text())
    assert [(r["engine"], r["seed"]) for r in done] == [("fake-a", 1), ("fake-a", 2)]
    assert not list((tmp_path / "run").rglob("*.tmp"))
    with pytest.raises(MatrixError, match="--resume"):
        run_matrix(_sections(), tmp_path / "run")
    fake.behaviour.clear()
    fake.calls.clear()
    records = run_matrix(_sections(), tmp_path / "run", resume=True)
    assert len(records) == 4 and fake.calls == [("fake-b", 1), ("fake-b", 2)]
    timing = json.loads((tmp_path / "run" / "timing.json").read_text())
    assert [(s["runs"], s["records_before"]) for s in timing["sessions"]] == [(2, 0), (2, 2)]
    assert timing["totals"]["runs"] == 4


def test_time_in_a_failing_engine_is_engine_time_not_harness(tmp_path, fake):
    fake.behaviour[("fake-a", 1)] = "slow-raise"
    records = run_matrix(_sections(), tmp_path / "run")
    bad = next(r for r in records if r["error"])
    assert bad["error"] == "RuntimeError: engine exploded late"
    assert bad["engine_call_s"] >= 0.3 and bad["harness_s"] < 0.3
    t = json.loads((tmp_path / "run" / "timing.json").read_text())["totals"]
    assert t["runs"] == 4 and t["engine_call_s"] >= 0.3
    assert t["wall_s"] == pytest.approx(t["engine_call_s"] + t["diagnostics_s"] + t["harness_s"])
    assert "% of the wall time (`timing.json`)" in render(tmp_path / "run").read_text()


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "x.json"
    bio.write_json(target, {"v": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        bio._atomic(target, lambda p: p.write_text(Boom()))  # type: ignore[arg-type]
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"engines": ["stan9"]}, "engine = 'stan9' is unknown"),
        ({"parameterizations": ["sideways"]}, "parameterizations: 'sideways'"),
        ({"priors": ["nope"]}, "prior preset = 'nope' is unknown"),
        ({"section": {"a": {"colour": 1}}}, "unknown keys \\['colour'\\]"),
    ],
)
def test_bad_config_is_named(cfg, match):
    with pytest.raises(ValueError, match=match):
        parse_sections(cfg)


def test_data_specs_resolve():
    assert matrix.resolve_data("rubin") == RUBIN
    assert matrix.resolve_data("synthetic:J=64:seed=3").J == 64
    with pytest.raises(MatrixError, match="synthetic:J=N"):
        matrix.resolve_data("synthetic:K=3")
    assert matrix.resolve_prior("mu=flat;tau=fixed(8)").tau_fixed
    assert matrix.resolve_prior("bda3") == PRESETS["bda3"]


def test_code_changed_under_a_running_matrix_is_recorded(tmp_path, fake, monkeypatch):
    """Engines are imported lazily, so a long job can run code newer than its start: say so."""
    from benchmarks import environment as benv

    revisions = iter(["aaa", "bbb"])
    monkeypatch.setattr(benv, "git_revision", lambda root=None: next(revisions))
    run_matrix(_sections(seeds=[1]), tmp_path / "run")
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["git_revision"] == "aaa" and env["git_revision_end"] == "bbb"
    monkeypatch.setattr(benv, "git_revision", lambda root=None: "same")
    assert "git_revision_end" not in benv.note_revision_drift({"git_revision": "same"})
