"""One exit-code contract for every command: 0 success, 1 a FAIL verdict or a regression only,
2 unusable input (one line naming the field and the value), 3 internal error (one line; the
traceback in a log file)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from models.errors import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, EngineFailure, UsageError, run_cli


def _py(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_an_internal_error_is_exit_3_one_line_and_a_logged_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EIGHT_SCHOOLS_CACHE", str(tmp_path))

    def broken(argv):
        raise RuntimeError("a bug\nwith a second line")

    assert run_cli(broken, [], prog="prog") == EXIT_INTERNAL
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: RuntimeError: a bug" in err[0] and "traceback in" in err[0]
    (log,) = (tmp_path / "logs").glob("prog-*.log")
    assert "Traceback (most recent call last)" in log.read_text() and "with a second line" in log.read_text()


def test_a_failed_engine_run_is_exit_3_named_as_such_not_as_a_bug(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EIGHT_SCHOOLS_CACHE", str(tmp_path))

    def timed_out(argv):
        raise EngineFailure("pymc failed (timeout): run exceeded the per-run limit of 2 s\nengine traceback")

    assert run_cli(timed_out, [], prog="prog") == EXIT_INTERNAL
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("prog: pymc failed (timeout)") and "internal error" not in line and "details in" in line
    (log,) = (tmp_path / "logs").glob("prog-*.log")
    assert "engine traceback" in log.read_text()


def test_usage_errors_are_exit_2_and_never_1(capsys):
    def bad(argv):
        raise UsageError("--thing = 'x': must be y")

    assert run_cli(bad, [], prog="prog") == EXIT_USAGE
    assert capsys.readouterr().err.strip() == "prog: error: --thing = 'x': must be y"
    assert run_cli(lambda argv: 7, [], prog="prog") == EXIT_INTERNAL  # no other code escapes


def test_help_answers_at_once_and_lists_every_command():
    r = _py("benchmarks", "--help", timeout=60)
    assert r.returncode == EXIT_OK
    for name in ("run", "engines", "compare", "matrix", "sweep", "regress", "candidate", "calibrate", "publish"):
        assert f"  {name} " in r.stdout


@pytest.mark.parametrize("args, message", [
    (["nope"], "command = 'nope' is unknown"),
    (["compare", "--run-id", "../x"], "--run-id = '../x'"),
    (["compare", "--engines", "stan9"], "engine = 'stan9' is unknown"),
    (["matrix", "/no/such.toml"], "no such file"),
    (["publish", "everything"], "job = 'everything'"),
    (["regress", "--baseline", "/no/such.json"], "no such file"),
    (["report", "/no/such/run"], "no runs.json"),
    (["compare", "--seeds", "many"], "--seeds: invalid int value: 'many'"),
    (["run", "--engine", "pystan"], "the following arguments are required: --param"),
])
def test_bad_input_is_one_line_exit_2(args, message):
    r = _py("benchmarks", *args)
    assert r.returncode == EXIT_USAGE, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_run_out_paths_are_checked_before_any_sampling(tmp_path):
    """--out to a folder, or into a folder that does not exist, fails at once (it used to fail after
    sampling, losing the draws)."""
    for out, message in ((tmp_path, "is a directory"), (tmp_path / "no" / "fit.nc", "does not exist")):
        r = _py("benchmarks", "run", "--engine", "pystan", "--param", "centered", "--out", str(out))
        assert r.returncode == EXIT_USAGE and message in r.stderr, r.stderr
        assert "·" not in r.stdout  # no run was started (the run prints its problem line first)


def test_engines_lists_every_engine_with_its_version_and_blackjax_runs_here():
    r = _py("benchmarks", "engines")
    assert r.returncode == EXIT_OK, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip()}
    assert {"pymc", "numpyro", "pystan", "cmdstanpy", "blackjax", "pymc-nutpie", "pymc-numpyro",
            "pymc-blackjax"} <= set(lines)
    assert "  available" in lines["blackjax"] or lines["blackjax"].endswith("available")
    assert "pymc-devs/pymc/issues/8367" in lines["pymc-blackjax"]
