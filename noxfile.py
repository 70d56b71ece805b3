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


def _install(session: nox.Session, extras: str) -> None:
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test-suite (every engine available here; cmdstanpy skips without CmdStan)."""
    _install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Lint with ruff."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "models", "reference", "benchmarks", "tests", "noxfile.py")


@nox.session
def compare(session: nox.Session) -> None:
    """The main job: every available engine x centred/non-centred on Rubin's data, one table."""
    _install(session, "ppl")
    session.run("python", "-m", "benchmarks", "compare", *session.posargs)


@nox.session(default=False)
def reference(session: nox.Session) -> None:
    """Write the exact grid reference for every preset to results/reference/."""
    _install(session, "test")
    session.run("python", "-m", "reference", "write-results", "results/reference", *session.posargs)
