"""Sessions for the eight-schools PPL comparison suite (``nox -l`` lists them)."""

from __future__ import annotations

import sys

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

if sys.version_info < (3, 12):  # noqa: UP036 - nox itself may run on an older Python
    raise SystemExit(
        f"nox is running on Python {sys.version.split()[0]}; this project needs Python >= 3.12 "
        "(PyMC 6, NumPy 2.5, JAX and ArviZ 1.x require it): install nox with a Python >= 3.12"
    )


#: BLAS threads: 2 shared cores are slower with OpenBLAS's thread pool than without (measured in
#: reference/); every engine parallelises over chains itself.
ENV = {"OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _install(session: nox.Session, extras: str) -> None:
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test-suite (every engine available here; cmdstanpy skips without CmdStan)."""
    _install(session, "test")
    session.run("pytest", *session.posargs, env=ENV)


@nox.session
def lint(session: nox.Session) -> None:
    """Lint with ruff."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "models", "reference", "benchmarks", "tests", "noxfile.py")


@nox.session
def compare(session: nox.Session) -> None:
    """The main job: every engine x centred/non-centred, 3 seeds, reference check, results/compare/REPORT.md."""
    _install(session, "ppl")
    session.run("python", "-m", "benchmarks", "compare", *session.posargs, env=ENV)


@nox.session(default=False)
def reference(session: nox.Session) -> None:
    """Write the exact grid reference for every preset, with figures, to results/reference/."""
    _install(session, "ppl")
    session.run("python", "-m", "reference", "write-results", "results/reference", *session.posargs, env=ENV)


@nox.session(default=False)
def calibrate(session: nox.Session) -> None:
    """Measure the check's false-alarm rate and power (long): results/calibration/."""
    _install(session, "ppl")
    session.run("python", "-m", "benchmarks.calibrate", "results/calibration", *session.posargs, env=ENV)


@nox.session(default=False)
def notebook(session: nox.Session) -> None:
    """Reproduce the notebook in shared/seed/ against the exact posterior: results/notebook/README.md."""
    _install(session, "ppl")
    session.run("python", "-m", "benchmarks.notebook", "results/notebook", *session.posargs, env=ENV)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """The full benchmark matrix (all presets, 5 seeds, draws varied, scaling in J): results/bench/."""
    _install(session, "ppl")
    session.run("python", "-m", "benchmarks", "matrix", "benchmarks/configs/bench.toml", "--run-id", "bench",
                "--latest", *session.posargs, env=ENV)


@nox.session(default=False)
def report(session: nox.Session) -> None:
    """Rewrite REPORT.md (tables and figures) for a results folder (default: results/latest)."""
    _install(session, "ppl")
    session.run("python", "-m", "benchmarks", "report", *(session.posargs or ["results/latest"]), env=ENV)
