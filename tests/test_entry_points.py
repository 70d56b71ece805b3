"""Every runnable entry point, smoke-tested with tiny arguments (PyStan: the engine that always works)."""

import json
import subprocess
import sys

import pytest
from conftest import require_engine

from benchmarks.cli import main as cli_main
from benchmarks.jobs.calibrate import run_calibration
from benchmarks.jobs.common import RunOptions
from benchmarks.jobs.notebook import load_facts, reproduce


def _py(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True)


@pytest.fixture(scope="module", autouse=True)
def _pystan():
    require_engine("pystan")


def test_benchmarks_run_writes_netcdf_that_the_check_reads(tmp_path):
    out = tmp_path / "fit.nc"
    r = _py("-m", "benchmarks", "run", "--engine", "pystan", "--param", "noncentered", "--chains", "2",
            "--warmup", "100", "--draws", "100", "--seed", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "theta[A]" in r.stdout and out.exists()
    c = _py("-m", "reference", "check", "--posterior", str(out), "--json")
    assert c.returncode in (0, 1), c.stderr  # a verdict either way; 2 would mean unusable
    assert set(json.loads(c.stdout)) >= {"passed", "max_abs_z", "failed", "checks"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--engine", "stan9", "--param", "centered"], "engine = 'stan9' is unknown"),
        (["--engine", "pystan", "--param", "sideways"], "--param = 'sideways'"),
        (["--engine", "pystan", "--param", "centered", "--tau-prior", "half_cauchy(0 5)"], "malformed"),
        (["--engine", "pystan", "--param", "centered", "--prior", "nope"], "prior preset = 'nope'"),
        (["--engine", "pystan", "--param", "centered", "--chains", "0"], "chains = 0"),
    ],
)
def test_benchmarks_run_bad_input_exits_2_naming_it(args, message):
    r = _py("-m", "benchmarks", "run", *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_benchmarks_run_bad_data_file_exits_2(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("y,sigma\n1,2\nnan,3\n")
    r = _py("-m", "benchmarks", "run", "--engine", "pystan", "--param", "centered", "--data", str(bad))
    assert r.returncode == 2 and "y[1] = nan" in r.stderr


def test_compare_writes_a_report_swapped_in_whole_and_points_latest(tmp_path):
    assert cli_main(["compare", "--engines", "pystan", "--seeds", "1", "--results", str(tmp_path)]) == 0
    out = tmp_path / "compare"
    records = json.loads((out / "runs.json").read_text())
    assert [(r["engine"], r["parameterization"]) for r in records] == [("pystan", "centered"),
                                                                       ("pystan", "noncentered")]
    assert (out / "REPORT.md").exists() and not (tmp_path / "compare.partial").exists()
    timing = json.loads((out / "timing.json").read_text())["totals"]
    assert timing["runs"] == 2 and 0 <= timing["harness_fraction"] < 1 and timing["wall_over_budget"] > 0
    report = (out / "REPORT.md").read_text()
    assert "% of the wall time (`timing.json`)" in report
    assert report.startswith("# Benchmark report: `compare`\n")  # named for where it ends up
    assert (tmp_path / "latest").resolve() == out.resolve() and (tmp_path / "latest" / "REPORT.md").exists()
    # a second compare replaces the folder whole (it is the suite's own)
    assert cli_main(["compare", "--engines", "pystan", "--seeds", "1", "--results", str(tmp_path)]) == 0
    assert len(json.loads((out / "runs.json").read_text())) == 2


def test_calibration_smoke(tmp_path):
    res = run_calibration(tmp_path, reps=5, seeds=1, engines=["pystan"], long_draws=200,
                          options=RunOptions(results=tmp_path))
    assert res["iid"]["n"] == 5
    assert res["noncentered_false_alarms"]["engines"]["pystan"]["n"] == 1
    assert res["centered_power_long"]["engines"]["pystan"]["n"] == 1
    assert res["centered_power_long"]["settings"]["draws"] == 200
    zc = res["iid"]["z_calibration"]["functionals"]
    assert list(zc) == ["mean", "q0.05", "q0.25", "q0.5", "q0.75", "q0.95",
                        "P(<q0.01)", "P(<q0.025)", "P(<q0.05)", "P(<q0.1)"]  # + the lower tail of tau
    assert zc["mean"]["n"] == 5 * 11  # 5 replications x (mu, tau, log_tau, theta[1..8])
    text = (tmp_path / "CALIBRATION.md").read_text()
    assert "Are the iid z-scores N(0, 1)?" in text and "4 × 200 draws (measured" in text
    for name in ("calibration.json", "CALIBRATION.md", "zscores.csv", "zscores.png"):
        assert (tmp_path / name).exists()


def test_the_notebook_reproduction_runs_from_the_shipped_facts(tmp_path):
    """The clone carries the notebook's facts as data: nothing outside the repository is read."""
    facts = load_facts()
    assert facts["provenance"]["sha256"] and facts["settings"]["seed"] == 101
    assert list(facts["printed"]) == ["mu"] + [f"theta[{j}]" for j in range(1, 9)] + ["lp__"]
    o = reproduce(tmp_path, facts, options=RunOptions(results=tmp_path))
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("# The notebook, reproduced") and facts["provenance"]["sha256"][:16] in text
    assert o["consistent_tau"]["chi2_best"] < o["consistent_tau"]["chi2_tau8"]


def test_compare_times_the_whole_command_from_its_process_start():
    """process_age_s counts the interpreter's start-up and imports: a process that has slept 0.5 s after
    its imports is at least that old, and younger than the test's own generous bound."""
    r = _py("-c", "import time; from benchmarks.jobs.compare import process_age_s; time.sleep(0.5); "
                  "print(process_age_s())")
    assert r.returncode == 0, r.stderr
    age = float(r.stdout)
    assert 0.5 <= age < 120
