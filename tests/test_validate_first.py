"""Validate, then act (issue 21): each reproduction of the issue is exit 2 with one line naming the
field and the value, and leaves nothing behind; ``run`` exits 1 when its own fit fails the check.

Every command here is driven in-process (``benchmarks.cli.main``, ``reference.cli.main``) from a
working folder whose every file is compared before and after the call.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import snapshot

from benchmarks.cli import main as bench_main
from reference.cli import main as reference_main

#: the issue's tiny.toml: a one-engine matrix, numpyro, one seed, 2 chains x (100 + 100)
TINY = 'engines = ["numpyro"]\nseeds = [1]\nsettings = { chains = 2, warmup = 100, draws = 100 }\n'
FAKE = 'engines = ["fake-ok"]\nseeds = [1]\nsettings = { chains = 2, warmup = 10, draws = 100 }\n'


@pytest.fixture
def work(tmp_path, monkeypatch, fakes):
    """A working folder (the cwd) with the files the reproductions name; internal-error logs go elsewhere."""
    w = tmp_path / "work"
    w.mkdir()
    monkeypatch.chdir(w)
    monkeypatch.setenv("EIGHT_SCHOOLS_CACHE", str(tmp_path / "cache"))
    (w / "tiny.toml").write_text(TINY)
    (w / "fake.toml").write_text(FAKE)
    (w / "cfg").mkdir()
    (w / "notes.txt").write_text("my notes, not draws\n")
    (w / "file.txt").write_text("a file\n")
    (w / "notjson" / "calibration.json").parent.mkdir()
    (w / "notjson" / "calibration.json").write_text("not JSON {")
    (w / "wrongjson" / "calibration.json").parent.mkdir()
    (w / "wrongjson" / "calibration.json").write_text('{"a": 1}')
    (w / "runs" / "bench").mkdir(parents=True)
    (w / "runs" / "bench" / "REPORT.md").write_text("# a finished bench run\n")
    (w / "snap").mkdir()
    return w


def _toml(work: Path, text: str) -> str:
    (work / "gen.toml").write_text(text)
    return "gen.toml"


SCHEDULERS = ["garbage", "foo://127.0.0.1:8786"]
RUN_JOBS = {"matrix": ["matrix", "tiny.toml"], "sweep": ["sweep"], "calibrate": ["calibrate", "--out", "cal"],
            "baseline": ["baseline", "--config", "ci"]}

#: (id, TOML written to gen.toml or None, argv, what the one line must name)
CASES = [
    ("matrix config is a folder", None, ["matrix", "cfg/"], "config = 'cfg'"),
    ("settings = 5", 'engines = ["numpyro"]\nsettings = 5\n', ["matrix", "gen.toml"], "settings = 5"),
    ("section = 5", 'engines = ["numpyro"]\nsection = 5\n', ["matrix", "gen.toml"], "section = 5"),
    ("[section] foo = 5", 'engines = ["numpyro"]\n[section]\nfoo = 5\n', ["matrix", "gen.toml"], "section.foo = 5"),
    *[(f"{job} --scheduler {s}", None, [*argv, "--scheduler", s], f"--scheduler = {s!r}")
      for job, argv in RUN_JOBS.items() for s in SCHEDULERS],
    ("calibrate --render-only, not JSON", None, ["calibrate", "--render-only", "--out", "notjson"], "--out = 'notjson'"),
    ("calibrate --render-only, {a: 1}", None, ["calibrate", "--render-only", "--out", "wrongjson"],
     "--out = 'wrongjson'"),
    ("candidate --baseline DIR", None, ["candidate", "numpyro", "--baseline", "cfg"], "--baseline = 'cfg'"),
    ("publish --readme missing", None, ["publish", "bench", "--runs", "runs", "--to", "snap", "--readme",
                                        "/no/such/README.md"], "--readme = '/no/such/README.md'"),
    ("publish --to FILE", None, ["publish", "bench", "--runs", "runs", "--to", "file.txt", "--readme", "notes.txt"],
     "--to = 'file.txt'"),
    ("matrix settings draws = 1", 'engines = ["numpyro"]\nseeds = [1]\nsettings = { draws = 1 }\n',
     ["matrix", "gen.toml"], "draws = 1"),
    ("run --draws 1", None, ["run", "--engine", "fake-ok", "--param", "centered", "--draws", "1"], "draws = 1"),
    ("matrix --workers 100000", None, ["matrix", "tiny.toml", "--workers", "100000"], "--workers = 100000"),
    ("engines = []", "engines = []\n", ["matrix", "gen.toml"], "engines = []"),
    ("parameterizations = []", 'engines = ["numpyro"]\nparameterizations = []\n', ["matrix", "gen.toml"],
     "parameterizations = []"),
    ("data = []", 'engines = ["numpyro"]\ndata = []\n', ["matrix", "gen.toml"], "data = []"),
    ("matrix --engines ''", None, ["matrix", "tiny.toml", "--engines", ""], "--engines = ''"),
    ("sweep --engines ''", None, ["sweep", "--engines", ""], "--engines = ''"),
    ("matrix --scheduler ''", None, ["matrix", "tiny.toml", "--scheduler", ""], "--scheduler = ''"),
    ("matrix --run-id ''", None, ["matrix", "tiny.toml", "--run-id", ""], "--run-id = ''"),
    ("results folder before --workers", None, ["matrix", "fake.toml", "--results", "res", "--workers", "0"],
     "--workers = 0"),
    ("run --out notes.txt", None, ["run", "--engine", "fake-ok", "--param", "centered", "--out", "notes.txt"],
     "--out = 'notes.txt'"),
    ("settings device = gpu, a cpu-only engine", 'engines = ["numpyro"]\nseeds = [1]\nsettings = { device = "gpu" }\n',
     ["matrix", "gen.toml"], "device = 'gpu'"),
    ("regress --junit DIR", None, ["regress", "--baseline", str(Path(__file__).parents[1] / "results" / "baselines" /
                                                                 "ci.json"), "--junit", "cfg"], "--junit = 'cfg'"),
    ("matrix --timeout nan", None, ["matrix", "fake.toml", "--timeout", "nan"], "--timeout = nan"),
    ("matrix --seeds 0", None, ["matrix", "fake.toml", "--seeds", "0"], "--seeds = 0"),
]


@pytest.mark.parametrize("toml, argv, field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_reproduction_is_exit_2_naming_the_field_and_leaves_nothing(work, capsys, toml, argv, field):
    if toml is not None:
        _toml(work, toml)
    before = snapshot(work)
    code = bench_main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and field in err[0], err
    assert snapshot(work) == before


def test_reference_out_does_not_replace_a_file_that_is_not_netcdf(work, capsys):
    before = snapshot(work)
    assert reference_main(["--draws", "10", "--out", "notes.txt"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--out = 'notes.txt'" in line and "not a NetCDF file" in line
    assert snapshot(work) == before


def test_reference_out_replaces_draws_of_its_own(work, capsys):
    """A .nc name, or a file that is NetCDF already (earlier draws), is written as before."""
    assert reference_main(["--draws", "10", "--out", "draws.txt"]) == 0  # a new file: any name
    assert reference_main(["--draws", "10", "--out", "draws.txt"]) == 0  # NetCDF now: ours to replace
    assert reference_main(["--draws", "10", "--out", "fit.nc"]) == 0


def test_run_exits_1_when_its_own_fit_fails_the_check_unless_no_check(work, capsys):
    argv = ["run", "--engine", "fake-biased", "--param", "noncentered", "--chains", "2", "--warmup", "10",
            "--draws", "50", "--timeout", "120"]
    assert bench_main(argv) == 1
    assert "reference check: FAIL" in capsys.readouterr().out
    assert bench_main([*argv, "--no-check"]) == 0
    assert "reference check: FAIL" in capsys.readouterr().out


def test_run_help_says_what_no_check_does(capsys):
    assert bench_main(["run", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--no-check" in out and "exit 1" in out
