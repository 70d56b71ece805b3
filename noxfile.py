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
def tune(session: nox.Session) -> None:
    """Time each engine's shipped configuration against its PPL's alternatives: results/tuning/."""
    _install(session, "ppl")
    session.run("python", "-m", "benchmarks.tuning", "results/tuning", *session.posargs, env=ENV)


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


@nox.session(default=False)
def baseline(session: nox.Session) -> None:
    """Write results/baselines/<config>.json (default config: full; `-- --config ci` for the short one)."""
    _install(session, "ppl")
    session.run("python", "-m", "benchmarks", "baseline", *(session.posargs or ["--config", "full"]), env=ENV)


@nox.session(default=False)
def regress(session: nox.Session) -> None:
    """Rerun a baseline's seeds; exit 1 on a regression. JUnit XML + markdown in results/regress/."""
    _install(session, "ppl")
    args = session.posargs or ["--baseline", "results/baselines/ci.json"]
    session.run("python", "-m", "benchmarks", "regress", *args, env=ENV)


#: (PyPI name, version, extra, engine): at least two releases each of PyMC, NumPyro and PyStan.
PPL_VERSIONS = [
    ("pymc", "6.3.2", "pymc", "pymc"),
    ("pymc", "6.4.0", "pymc", "pymc"),
    ("numpyro", "0.21.0", "numpyro", "numpyro"),
    ("numpyro", "0.22.0", "numpyro", "numpyro"),
    ("pystan", "3.10.1", "stan", "pystan"),
    ("pystan", "3.14.0", "stan", "pystan"),
]


@nox.session(default=False)
@nox.parametrize(
    "ppl,version,extra,engine",
    [nox.param(p, v, x, e, id=f"{p}='{v}'") for p, v, x, e in PPL_VERSIONS],
)
def versions(session: nox.Session, ppl: str, version: str, extra: str, engine: str) -> None:
    """One PPL release in its own environment: a small matrix -> results/versions/<ppl>-<version>/."""
    import shutil

    session.install("-e", f".[{extra}]", f"{ppl}=={version}")
    run_id = f"{ppl}-{version}"
    shutil.rmtree(f"results/versions/{run_id}", ignore_errors=True)
    session.run("python", "-m", "benchmarks", "matrix", "benchmarks/configs/versions.toml",
                "--engines", engine, "--results", "results/versions", "--run-id", run_id, env=ENV)


@nox.session(name="versions-report", default=False)
def versions_report(session: nox.Session) -> None:
    """Side-by-side table of every results/versions/<ppl>-<version>/ (after the versions sessions)."""
    _install(session, "test")
    session.run("python", "-m", "benchmarks", "versions-report", "results/versions", *session.posargs, env=ENV)
