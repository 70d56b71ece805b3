"""Sessions for the eight-schools PPL comparison suite (``nox -l`` lists them).

Every session that runs engines writes under ``results/runs/`` (git ignores it); ``nox -s publish --
JOB`` is the one explicit step that refreshes the committed snapshot (``results/JOB/``) and the
README's generated tables. Each long session says at once what it will run and how long it took the
last time it ran here (or in the committed snapshot, with its machine).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

if sys.version_info < (3, 12):  # noqa: UP036 - nox itself may run on an older Python
    raise SystemExit(
        f"nox is running on Python {sys.version.split()[0]}; this project needs Python >= 3.12 "
        "(PyMC 6, NumPy 2.5, JAX and ArviZ 1.x require it): install nox with a Python >= 3.12 "
        "(see the README's set-up line)"
    )

ROOT = Path(__file__).resolve().parent
RUNS = ROOT / "results" / "runs"

#: BLAS threads: 2 shared cores are slower with OpenBLAS's thread pool than without (measured in
#: reference/); every engine parallelises over chains itself.
ENV = {"OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _last(job: str) -> str:
    """The last measured duration of a job: this machine's own run, else the committed snapshot's."""
    for folder, where in ((RUNS / job, "here"), (ROOT / "results" / job, "committed snapshot")):
        for name in ("timing.json", "durations.json"):
            try:
                doc = json.loads((folder / name).read_text())
                env = json.loads((folder / "environment.json").read_text())
            except (OSError, ValueError):
                continue
            wall = doc.get("totals", {}).get("wall_s")
            if wall:
                return f"last measured {wall:.0f} s ({where}: {env.get('cpu')}, {env.get('cores')} cores)"
    return "no earlier timing known here"


def _runs(config: str) -> int | None:
    """How many runs a matrix configuration names (its sections' products), read with the standard
    library before anything is installed."""
    import tomllib

    try:
        doc = tomllib.loads((ROOT / "benchmarks" / "configs" / config).read_text())
    except (OSError, ValueError):
        return None
    defaults = {k: v for k, v in doc.items() if k != "section"}
    total = 0
    for table in (doc.get("section") or {"main": {}}).values():
        merged = {**defaults, **table}
        n = 1
        for key, fallback in (("engines", 8), ("parameterizations", 2), ("priors", 1), ("data", 1),
                              ("seeds", 3), ("draws", 1)):
            value = merged.get(key)
            n *= len(value) if isinstance(value, list) else (fallback if value is None else 1)
        total += n
    return total


def _start(session: nox.Session, what: str, job: str | None = None) -> None:
    """The session's first line, before the environment is installed."""
    session.log(f"{what}" + (f"; {_last(job)}" if job else ""))


#: Installs write bytecode. uv (nox's installer here) writes none unless asked, and where
#: PYTHONDONTWRITEBYTECODE is set (CI images; this project's development machines) Python never caches
#: it either, so every process compiled every module from source: importing the run path and every
#: PPL took 13.9 s that way and 4.7 s from bytecode (AMD EPYC, 2 cores), paid again by each engine
#: worker and each test process. uv compiles what it installs (UV_COMPILE_BYTECODE); a pass of
#: compileall, ~0.6 s when nothing is left to do, catches an environment made before this and the
#: project's own packages (their __pycache__ folders are git-ignored).
BYTECODE = (
    "import compileall, sysconfig\n"
    "for d in (sysconfig.get_paths()['purelib'], 'models', 'reference', 'benchmarks'):\n"
    "    compileall.compile_dir(d, quiet=2)  # a file that does not compile (a package's test data) stays source\n"
)


def _install(session: nox.Session, extras: str, *more: str) -> None:
    """The project with ``extras`` (and ``more`` requirements) into the session's environment, compiled."""
    _pip(session, "-e", f".[{extras}]", *more)


def _pip(session: nox.Session, *args: str) -> None:
    """``session.install(*args)``, then every module compiled to bytecode (see BYTECODE)."""
    session.install(*args, env={"UV_COMPILE_BYTECODE": "1"})
    session.run("python", "-W", "ignore", "-c", BYTECODE, silent=True)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test-suite (every engine available here; cmdstanpy skips without CmdStan)."""
    _start(session, "tests: the whole test-suite (cold on 2 cores: see the README for the measured time)")
    _install(session, "test")
    session.run("pytest", *session.posargs, env=ENV)


@nox.session
def lint(session: nox.Session) -> None:
    """Lint with ruff."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "models", "reference", "benchmarks", "tests", "noxfile.py")


@nox.session
def compare(session: nox.Session) -> None:
    """The main job: every engine x centred/non-centred, 3 seeds, reference check: results/runs/compare/."""
    _start(session, f"compare: every engine x centred/non-centred x 3 seeds ({_runs('compare.toml')} runs) into "
                    "results/runs/compare", "compare")
    _install(session, "ppl")
    session.run("python", "-m", "benchmarks", "compare", *session.posargs, env=ENV)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """The full benchmark matrix (all presets, 5 seeds, draws varied, scaling in J): results/runs/bench/."""
    _start(session, f"bench: the full matrix of benchmarks/configs/bench.toml ({_runs('bench.toml')} runs) into "
                    "results/runs/bench", "bench")
    _install(session, "ppl,dask")
    session.run("python", "-m", "benchmarks", "matrix", "benchmarks/configs/bench.toml", "--run-id", "bench",
                "--latest", *session.posargs, env=ENV)


@nox.session(default=False)
def sweep(session: nox.Session) -> None:
    """Centred vs non-centred across data informativeness (sigma_scale) and J: results/runs/sweep/."""
    import tomllib

    cfg = tomllib.loads((ROOT / "benchmarks" / "configs" / "sweep.toml").read_text())
    shape = (len(cfg.get("engines", [None] * 8)), len(cfg["parameterizations"]), len(cfg["sweep"]["sigma_scales"]),
             len(cfg["sweep"]["data"]), len(cfg["seeds"]))
    _start(session, f"sweep: {' x '.join(map(str, shape))} (engines x parameterisations x sigma_scales x J x "
                    f"seeds) = {shape[0] * shape[1] * shape[2] * shape[3] * shape[4]} runs into results/runs/sweep",
           "sweep")
    _install(session, "ppl,dask")
    session.run("python", "-m", "benchmarks", "sweep", *session.posargs, env=ENV)


@nox.session(default=False)
def chains(session: nox.Session) -> None:
    """Many-chain (ChEES, MEADS, MCLMC, vectorized NUTS) and flow-adapted samplers vs chains: results/runs/chains/."""
    import tomllib

    cfg = tomllib.loads((ROOT / "benchmarks" / "configs" / "chains.toml").read_text())
    sc = cfg["scaling"]
    _start(session, f"chains: {len(sc['max_chains'])} many-chain samplers x chains {sc['counts']} x "
                    f"{len(cfg['parameterizations'])} parameterisations x {len(cfg['seeds'])} seeds, the 4-chain "
                    "NUTS yardstick and unadjusted MCLMC's step sizes into results/runs/chains (--device gpu: "
                    "chains-gpu)", "chains")
    _install(session, "ppl,dask")
    session.run("python", "-m", "benchmarks", "chains", *session.posargs, env=ENV)


@nox.session(default=False)
def approx(session: nox.Session) -> None:
    """Approximate inference (ADVI, Pathfinder, Laplace, SVI) scored against the exact posterior: results/runs/approx/."""
    _start(session, "approx: every approximator x Rubin's data (both parameterisations) and the sweep's data "
                    "(non-centred) x 3 seeds, scored against the exact posterior, into results/runs/approx", "approx")
    _install(session, "ppl,dask")
    session.run("python", "-m", "benchmarks", "approx", *session.posargs, env=ENV)


@nox.session(default=False)
def reference(session: nox.Session) -> None:
    """Write the exact grid reference for every preset, with figures, to results/runs/reference/."""
    _start(session, "reference: exact summaries for every preset into results/runs/reference")
    _install(session, "ppl")
    session.run("python", "-m", "reference", "write-results", str(RUNS / "reference"), *session.posargs, env=ENV)


@nox.session(default=False)
def calibrate(session: nox.Session) -> None:
    """Measure the check's false-alarm rate and power (long): results/runs/calibration/."""
    _start(session, "calibrate: 10^4 exact-iid replications + 20 seeds x every engine x 3 settings into "
                    "results/runs/calibration", "calibration")
    _install(session, "ppl,dask")
    session.run("python", "-m", "benchmarks", "calibrate", *session.posargs, env=ENV)


@nox.session(default=False)
def tune(session: nox.Session) -> None:
    """Time each engine's shipped configuration against its PPL's alternatives: results/runs/tuning/."""
    _start(session, "tune: every engine's configurations, 2 rounds x 3 seeds, into results/runs/tuning", "tuning")
    _install(session, "ppl,dask")
    session.run("python", "-m", "benchmarks", "tune", *session.posargs, env=ENV)


@nox.session(default=False)
def notebook(session: nox.Session) -> None:
    """Reproduce the seed notebook's printed table against the exact posterior: results/runs/notebook/."""
    _start(session, "notebook: two PyStan fits + the exact posterior into results/runs/notebook", "notebook")
    _install(session, "ppl")
    session.run("python", "-m", "benchmarks", "notebook", *session.posargs, env=ENV)


@nox.session(default=False)
def report(session: nox.Session) -> None:
    """Rewrite REPORT.md (tables and figures) for a results folder (default: results/runs/latest)."""
    _install(session, "ppl")
    session.run("python", "-m", "benchmarks", "report", *(session.posargs or [str(RUNS / "latest")]), env=ENV)


@nox.session(default=False)
def baseline(session: nox.Session) -> None:
    """Write results/runs/baselines/<config>.json (default config: full; `-- --config ci` for the short one)."""
    _start(session, "baseline: a regress configuration's seeds into results/runs/baselines")
    _install(session, "ppl")
    session.run("python", "-m", "benchmarks", "baseline", *(session.posargs or ["--config", "full"]), env=ENV)


@nox.session(default=False)
def regress(session: nox.Session) -> None:
    """Rerun a baseline's seeds; exit 1 on a regression. JUnit XML + markdown in results/runs/regress/."""
    _start(session, "regress: rerun the committed ci baseline's seeds (pystan, numpyro x 2 parameterisations x "
                    "225 seeds: 900 short runs) and gate against it", "regress")
    _install(session, "ppl")
    args = session.posargs or ["--baseline", "results/baselines/ci.json"]
    session.run("python", "-m", "benchmarks", "regress", *args, env=ENV)


@nox.session(default=False, reuse_venv=False)
def candidate(session: nox.Session) -> None:
    """Gate a candidate PPL build: `nox -s candidate -- "numpyro @ file:///path"` (any pip requirement)."""
    if not session.posargs:
        session.error('name the candidate: nox -s candidate -- "numpyro==0.22.0" (any pip requirement)')
    _start(session, f"candidate: install {session.posargs[0]!r} beside the suite in this session's fresh "
                    "environment, rerun the baseline's configuration for its engines, gate against the baseline")
    _install(session, "ppl")
    _pip(session, session.posargs[0])
    session.run("python", "-m", "benchmarks", "candidate", *session.posargs, env=ENV)


@nox.session(default=False)
def power(session: nox.Session) -> None:
    """Measure the regression gate's power against injected regressions: results/runs/power/."""
    _start(session, "power: injected ESS drops, divergence rises and bias against the ci baseline", "power")
    _install(session, "ppl")
    session.run("python", "-m", "benchmarks.jobs.power", *session.posargs, env=ENV)


@nox.session(default=False)
def publish(session: nox.Session) -> None:
    """Copy finished runs into the committed snapshot and regenerate the README: `-- compare sweep ...`."""
    if not session.posargs:
        session.error("name what to publish: nox -s publish -- compare [bench sweep calibration ...]")
    _install(session, "ppl")
    session.run("python", "-m", "benchmarks", "publish", *session.posargs, env=ENV)


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
    """One PPL release in its own environment: a small matrix -> results/runs/versions/<ppl>-<version>/."""
    _start(session, f"versions: {ppl}=={version} in its own environment, a small matrix")
    _install(session, extra, f"{ppl}=={version}")
    session.run("python", "-m", "benchmarks", "matrix", "benchmarks/configs/versions.toml",
                "--engines", engine, "--results", str(RUNS / "versions"), "--run-id", f"{ppl}-{version}",
                *session.posargs, env=ENV)


@nox.session(name="versions-report", default=False)
def versions_report(session: nox.Session) -> None:
    """Side-by-side table of every results/runs/versions/<ppl>-<version>/ (after the versions sessions)."""
    _install(session, "test")
    session.run("python", "-m", "benchmarks", "versions-report", *session.posargs, env=ENV)


@nox.session(default=False, venv_backend="none")
def durations(session: nox.Session) -> None:
    """Measure compare and tests cold (fresh clone, empty HOME) and warm: results/runs/durations/."""
    _start(session, "durations: fresh clones with empty HOMEs run the README's commands cold, then warm "
                    "(about an hour on 2 cores)")
    session.run(sys.executable, ".ci/durations.py", str(RUNS / "durations"), *session.posargs, external=True)
