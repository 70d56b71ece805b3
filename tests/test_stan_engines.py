"""Stan-specific behaviour of the pystan and cmdstanpy engines: the machine-wide store of compiled
programs (shared by every venv, one build per program however many processes), httpstan's fit cache,
its process pool (no fork), quiet output, Stan's phase timings, and cmdstanpy's own points (full
precision, its version, its logging, its output folder, its build cache). The cmdstanpy tests that
sample skip without CmdStan (EIGHT_SCHOOLS_ALL_ENGINES=1 makes that a failure). (What every engine
must do is in test_engines.py.)"""

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import require_engine

from benchmarks.engines import EngineUnavailable, Settings, SettingsError, get_engine
from benchmarks.engines._stan_common import elapsed_from_messages, phase_seconds
from benchmarks.engines.base import COMPILED, REUSED
from models import PRESETS, RUBIN
from models.errors import cache_root
from models.problem import Problem
from models.stan_program import program_code, stan_data

SHORT = Settings(chains=2, warmup=150, draws=100, seed=5)
PRIOR = PRESETS["default"]
NC = Problem(RUBIN, PRIOR, "noncentered")
REPO = Path(__file__).resolve().parent.parent
#: a subprocess that imports a PPL and samples briefly (or waits on a build lock) ends well within this
SUBPROCESS_TIMEOUT_S = 600


@pytest.fixture
def pystan():
    require_engine("pystan")
    from benchmarks.engines import pystan_engine

    return pystan_engine


@pytest.fixture
def httpstan_cache(monkeypatch, tmp_path):
    """httpstan's cache (appdirs: $XDG_CACHE_HOME/httpstan) and the suite's store, both empty."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("EIGHT_SCHOOLS_CACHE", str(tmp_path / "suite"))
    return tmp_path


def _run_python(python: str | Path, code: str, env: dict, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=SUBPROCESS_TIMEOUT_S)


def _last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------- the store of compiled programs

#: A fake "build": what httpstan leaves in a model folder, made in no time (the store's logic is what is
#: tested here; a real build is ~40 s of g++). It appends to a counter file, so builds can be counted,
#: and holds the build for a while, so a second process arrives while the first is building.
FAKE_BUILD = """
    import json, sys, time
    from pathlib import Path
    import httpstan.cache
    from benchmarks.engines import _httpstan
    code, counter = sys.argv[1], Path(sys.argv[2])
    with _httpstan.compiled(code) as found:
        if not found:
            with counter.open("a") as f:
                f.write("built\\n")
            folder = httpstan.cache.model_directory(_httpstan.model_name(code))
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "stanc.log").write_text("")
            (folder / "stderr.log").write_text("")
            time.sleep(2.0)
            (folder / ("stan_services_x" + _httpstan.EXTENSION_SUFFIXES[0])).write_bytes(b"fake module")
    print(json.dumps({"found": found}))
"""


def test_two_processes_on_a_cold_store_build_once(httpstan_cache):
    pytest.importorskip("httpstan")
    counter = httpstan_cache / "builds.txt"
    code = "// fake program for the lock test\n"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(FAKE_BUILD), code, str(counter)], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=SUBPROCESS_TIMEOUT_S) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    found = sorted(json.loads(out.strip().splitlines()[-1])["found"] for out, _ in outs)
    assert found == [False, True]  # one built, the other waited and loaded that build
    assert counter.read_text() == "built\n"
    from benchmarks.engines import _httpstan

    entries = [p for p in (httpstan_cache / "suite" / "httpstan").rglob(_httpstan.META)]
    assert len(entries) == 1 and entries[0].parent == _httpstan.entry_dir(code)


def test_seeding_links_the_stored_build_and_replaces_a_stale_one(httpstan_cache):
    pytest.importorskip("httpstan")
    from benchmarks.engines import _httpstan

    code = "// fake program for the seeding test\n"
    name = _httpstan.model_name(code)
    folder = Path(_httpstan.httpstan.cache.model_directory(name))
    folder.mkdir(parents=True)
    for f in _httpstan.LOGS:
        (folder / f).write_text("")
    module = folder / f"stan_services_model_x{_httpstan.EXTENSION_SUFFIXES[0]}"
    module.write_bytes(b"httpstan's own build")
    with _httpstan.compiled(code) as found:  # httpstan built it before the store existed: adopted
        assert found
    entry = _httpstan.entry_dir(code)
    meta = _httpstan._meta(entry)
    assert meta is not None and (entry / "program.stan").read_text() == code
    assert (entry / meta["module"]).read_bytes() == b"httpstan's own build"
    # another venv (another model name) gets the same file, and a stale seed is replaced
    other = folder.parent / "othervenv"
    other.mkdir()
    (other / _httpstan.MARKER).write_text("an older build")
    (other / f"stan_services_old{_httpstan.EXTENSION_SUFFIXES[0]}").write_bytes(b"stale")
    _httpstan._seed(entry, meta, "models/othervenv")
    seeded = _httpstan._module_file(other)
    assert seeded.read_bytes() == b"httpstan's own build"
    assert [p.name for p in other.iterdir() if p.suffix in _httpstan.EXTENSION_SUFFIXES] == [seeded.name]
    if os.stat(seeded).st_dev == os.stat(entry / meta["module"]).st_dev:
        assert os.path.samefile(seeded, entry / meta["module"])  # a hard link, not a copy
    assert (other / _httpstan.MARKER).read_text() == meta["id"]


def test_a_stored_build_whose_venv_is_gone_is_not_used(httpstan_cache):
    pytest.importorskip("httpstan")
    from benchmarks.engines import _httpstan

    entry = httpstan_cache / "entry"
    entry.mkdir()
    (entry / "stan_services.so").write_bytes(b"x")
    for f in _httpstan.LOGS:
        (entry / f).write_text("")
    meta = {"id": "abc", "module": "stan_services.so", "runtime_lib_dir": str(httpstan_cache)}
    (entry / _httpstan.META).write_text(json.dumps(meta))
    assert _httpstan._meta(entry) == meta
    meta["runtime_lib_dir"] = str(httpstan_cache / "deleted-venv" / "httpstan" / "lib")
    (entry / _httpstan.META).write_text(json.dumps(meta))
    assert _httpstan._meta(entry) is None  # its module would not find libtbb: built again instead


def _store_entries() -> dict[str, str]:
    from benchmarks.engines import _httpstan
    from benchmarks.engines.caches import httpstan_store

    return {str(p.parent): json.loads(p.read_text())["id"] for p in httpstan_store().rglob(_httpstan.META)}


@pytest.mark.slow
def test_a_second_venv_loads_the_first_ones_build_without_compiling_or_forking(pystan, tmp_path):
    """A venv with another interpreter path (so another httpstan model name), an empty httpstan cache
    and JAX started before PyStan samples: it compiles nothing, adds no build to the store, and no
    fork warning is raised (httpstan's pool starts its workers from a forkserver)."""
    from benchmarks.engines import _httpstan

    pystan.ENGINE.run(NC, SHORT)  # this venv's build is in the store now (compiled, or found there)
    code = program_code(NC.prior, NC.parameterization)
    before = _store_entries()
    assert str(_httpstan.entry_dir(code)) in before
    venv = tmp_path / "venv2"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    parent_site = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "httpstan").is_dir())
    (site / "parent_venv.pth").write_text(f"import site; site.addsitedir({parent_site!r})\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "EIGHT_SCHOOLS_CACHE": str(cache_root())}
    out = _last_json(_run_python(venv / "bin" / "python", """
        import json, sys, warnings
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            from benchmarks.engines._jax_common import jax
            jax.numpy.ones(3).block_until_ready()  # JAX's threads are running from here on
            from benchmarks.engines import Settings, get_engine, _httpstan
            from models import PRESETS, RUBIN
            from models.problem import Problem
            r = get_engine("pystan").run(Problem(RUBIN, PRESETS["default"], "noncentered"),
                                         Settings(chains=2, warmup=150, draws=100, seed=5))
        print(json.dumps({"executable": sys.executable, "cached": r.timings.compile_cached,
                          "program": r.manifest["program"], "model_name": r.manifest["model_name"],
                          "pool": _httpstan.pool_start_method(), "mu0": float(r.draws["posterior"]["mu"][0, 0]),
                          "fork_warnings": [str(w.message) for w in caught if "fork" in str(w.message)]}))
    """, env))
    assert Path(out["executable"]).parent.parent == venv
    assert out["model_name"] != _httpstan.model_name(code)  # httpstan alone would have compiled again
    assert out["cached"] and out["program"] == pystan.CACHED
    assert out["pool"] != "fork" and out["fork_warnings"] == []
    assert _store_entries() == before  # no new build, none replaced
    seeded = tmp_path / "xdg" / "httpstan" / _httpstan.httpstan.__version__ / out["model_name"]
    assert not list(seeded.glob("*.cpp"))  # httpstan writes the C++ before it compiles: it did not
    module = _httpstan._module_file(seeded)
    meta = _httpstan._meta(_httpstan.entry_dir(code))
    assert module.read_bytes() == (_httpstan.entry_dir(code) / meta["module"]).read_bytes()
    # the same build gives the same draws as this process's run of the same seed
    mine = pystan.ENGINE.run(NC, SHORT).draws["posterior"]["mu"].values[0, 0]
    assert out["mu0"] == float(mine)


# ------------------------------------------------------------------------- the pystan engine


def test_pystan_compile_cached_and_reused_in_process(pystan, monkeypatch):
    pystan.ENGINE.run(NC, SHORT)  # compiled now or earlier: in the store and in this process now
    again = pystan.ENGINE.run(NC, SHORT)
    assert again.timings.compile_cached and again.manifest["program"] == REUSED and again.manifest["compile_reused"]
    monkeypatch.setattr(pystan, "_MODELS", type(pystan._MODELS)())  # as a new process: the store decides
    fresh = pystan.ENGINE.run(NC, SHORT)
    assert fresh.timings.compile_cached and fresh.manifest["program"] == pystan.CACHED
    assert not fresh.manifest["compile_reused"]
    assert fresh.manifest["stan_build"] == str(pystan._httpstan().entry_dir(program_code(PRIOR, "noncentered")))


def test_pystan_keeps_a_bounded_number_of_models(pystan, monkeypatch):
    monkeypatch.setattr(pystan, "MODELS_KEPT", 2)
    monkeypatch.setattr(pystan, "_MODELS", type(pystan._MODELS)())
    code = program_code(PRIOR, "noncentered")
    for j in range(3):  # three data sets: three models, one program
        data = stan_data(RUBIN, PRIOR) | {"y": [float(j)] * RUBIN.J}
        model, source = pystan._build(code, data, 1)
        assert source != COMPILED
    assert len(pystan._MODELS) == 2


def test_pystan_runs_sample_afresh_and_leave_no_fit_in_httpstans_cache(pystan, caplog):
    """httpstan answers a repeated seeded fit from its disk cache; the engine removes its fits."""
    caplog.set_level(logging.WARNING, logger=pystan.__name__)
    problem = Problem(RUBIN, PRIOR, "centered")
    pystan.ENGINE.run(problem, SHORT)
    model, _ = pystan._build(program_code(PRIOR, "centered"), stan_data(RUBIN, PRIOR), SHORT.seed)
    kwargs = {"num_warmup": SHORT.warmup, "num_samples": SHORT.draws, "delta": SHORT.target_accept,
              "max_depth": SHORT.max_treedepth}
    files = pystan._fit_files(model, SHORT.chains, kwargs)
    assert len(files) == SHORT.chains and not any(f.exists() for f in files)
    assert not caplog.records, [r.getMessage() for r in caplog.records]  # fits were where predicted


def test_pystan_output_is_captured_and_phase_timings_are_stans(pystan, capfd):
    result = pystan.ENGINE.run(NC, SHORT)
    out, err = capfd.readouterr()
    assert out == "" and "Sampling" not in err
    t = result.timings
    assert 0 < t.warmup_s <= t.inference_s and 0 < t.sampling_s <= t.inference_s


def test_httpstans_pool_does_not_fork(pystan):
    pystan.ENGINE.run(NC, SHORT)
    assert pystan._httpstan().pool_start_method() in ("forkserver", "spawn")


def test_stan_phase_timings_take_the_slowest_chain():
    chain = elapsed_from_messages(["info: Elapsed Time: 0.033 seconds (Warm-up)",
                                   "info:               0.053 seconds (Sampling)",
                                   "info:               0.086 seconds (Total)"])
    assert chain == {"warmup": 0.033, "sampling": 0.053}
    assert phase_seconds([chain, {"warmup": 0.05, "sampling": 0.01}]) == (0.05, 0.053)
    assert phase_seconds([chain, {}]) == (None, None)
    assert phase_seconds([]) == (None, None)


@pytest.mark.parametrize("engine", ["pystan", "cmdstanpy"])
def test_stan_seed_range_is_named(engine):
    with pytest.raises(SettingsError, match="seed = 4294967296"):
        get_engine(engine).run(NC, Settings(seed=2**32))


# ------------------------------------------------------------------------- the cmdstanpy engine


@pytest.fixture
def cmdstanpy_engine():
    pytest.importorskip("cmdstanpy")
    from benchmarks.engines import cmdstanpy_engine

    return cmdstanpy_engine


def test_cmdstanpy_without_cmdstan_says_how_to_install_in_one_short_line(cmdstanpy_engine, monkeypatch, tmp_path):
    monkeypatch.setenv("CMDSTAN", str(tmp_path / "no-cmdstan-here"))
    reason = cmdstanpy_engine.ENGINE.availability()
    assert reason == "no CmdStan install found (install: python -m cmdstanpy.install_cmdstan, or set CMDSTAN)"
    with pytest.raises(EngineUnavailable, match="install_cmdstan"):
        cmdstanpy_engine.ENGINE.run(NC, SHORT)


def _fake_cmdstan(root: Path, version: str, local: str | None = None) -> Path:
    (root / "make").mkdir(parents=True, exist_ok=True)
    (root / "makefile").write_text(f"# CmdStan makefile\nCMDSTAN_VERSION := {version}\n")
    if local is not None:
        (root / "make" / "local").write_text(local)
    return root


def test_cmdstanpy_cache_is_keyed_by_program_text_and_cmdstans_path_and_version(cmdstanpy_engine, monkeypatch,
                                                                                tmp_path):
    monkeypatch.setenv("EIGHT_SCHOOLS_CACHE", str(tmp_path / "cache"))
    e = cmdstanpy_engine
    code = program_code(PRIOR, "centered")
    old = e.cmdstan_install(_fake_cmdstan(tmp_path / "cmdstan", "2.36.0"))
    assert old["version"] == "2.36.0"
    path = e.stan_file_for(code, "centered", old)
    assert path == e.stan_file_for(code, "centered", e.cmdstan_install(tmp_path / "cmdstan"))
    assert path.parent.parent == tmp_path / "cache" / "cmdstan" and path.name == "centered.stan"
    assert path.parent != e.stan_file_for(code + "\n", "centered", old).parent
    moved = e.cmdstan_install(_fake_cmdstan(tmp_path / "elsewhere", "2.36.0"))
    assert path.parent != e.stan_file_for(code, "centered", moved).parent
    upgraded = e.cmdstan_install(_fake_cmdstan(tmp_path / "cmdstan", "2.37.0"))  # same path, new release
    assert path.parent != e.stan_file_for(code, "centered", upgraded).parent
    threads = e.cmdstan_install(_fake_cmdstan(tmp_path / "cmdstan", "2.37.0", "STAN_THREADS=true\n"))
    assert e.stan_file_for(code, "centered", upgraded) != e.stan_file_for(code, "centered", threads)


def test_cmdstanpy_version_comes_from_the_executables_info(cmdstanpy_engine):
    info = {"stan_version_major": "2", "stan_version_minor": "36", "stan_version_patch": "0",
            "STAN_THREADS": "false"}
    assert cmdstanpy_engine.exe_version(info) == "2.36.0"
    assert cmdstanpy_engine.exe_version({}) is None  # CmdStan < 2.27 has no `info`


def test_cmdstanpys_logging_goes_to_the_engines_logger_at_debug(cmdstanpy_engine, caplog, capfd):
    cmdstanpy_engine.route_cmdstanpy_logging()
    import cmdstanpy.utils

    lg = cmdstanpy.utils.get_logger()  # would add cmdstanpy's console handler to a bare logger
    assert not any(type(h) is logging.StreamHandler for h in lg.handlers)
    caplog.set_level(logging.DEBUG, logger=cmdstanpy_engine.__name__)
    lg.info("CmdStan start processing")
    lg.warning("Stan compiler has produced 1 warnings")
    lg.error("Error during sampling")
    mine = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == cmdstanpy_engine.__name__]
    assert mine == [(logging.DEBUG, "cmdstanpy INFO: CmdStan start processing"),
                    (logging.DEBUG, "cmdstanpy WARNING: Stan compiler has produced 1 warnings"),
                    (logging.ERROR, "cmdstanpy ERROR: Error during sampling")]
    assert lg.propagate is False  # not also to the root logger's handlers (pytest captures it regardless)
    assert "CmdStan start processing" not in capfd.readouterr().err


#: A stand-in for CmdStan where there is none (this engine's own logic: its build cache, lock, output
#: folder and manifest; the tests below with the `cmdstan` fixture run the real thing where it exists).
FAKE_CMDSTAN = """
    import json, sys, time
    from pathlib import Path
    import numpy as np
    import arviz_base
    import cmdstanpy
    from cmdstanpy.utils import EXTENSION

    INFO = {"stan_version_major": "2", "stan_version_minor": "36", "stan_version_patch": "0"}

    class FakeFit:
        def __init__(self, chains, output_dir):
            self.output_dir = output_dir
            self.time = [{"warmup": 0.01, "sampling": 0.02, "total": 0.03}] * chains

    class FakeModel:
        def __init__(self, stan_file):
            exe = Path(stan_file).with_suffix(EXTENSION)
            if not exe.exists():  # "make": counted, and slow enough for a second process to arrive
                with Path(sys.argv[1]).open("a") as f:
                    f.write("make\\n")
                time.sleep(2.0)
                exe.write_text("fake executable")
            self.exe_file = str(exe)
            self.calls = []

        def exe_info(self):
            return dict(INFO)

        def sample(self, **kwargs):
            self.calls.append(kwargs)
            (Path(kwargs["output_dir"]) / "fake-1.csv").write_text("lp__\\n0\\n")
            return FakeFit(kwargs["chains"], kwargs["output_dir"])

    def fake_from_cmdstanpy(posterior, dims, coords):
        assert (Path(posterior.output_dir) / "fake-1.csv").exists()  # converted before the folder goes
        c, d, j = len(posterior.time), 100, len(coords["school"])
        rng = np.random.default_rng(0)
        post = {"mu": rng.normal(size=(c, d)), "tau": rng.lognormal(size=(c, d)),
                "theta": rng.normal(size=(c, d, j)), "theta_tilde": rng.normal(size=(c, d, j))}
        stats = {"diverging": np.zeros((c, d), bool), "tree_depth": np.full((c, d), 3),
                 "n_steps": np.full((c, d), 7), "step_size": np.full((c, d), 0.5), "energy": np.ones((c, d)),
                 "lp": np.ones((c, d)), "acceptance_rate": np.full((c, d), 0.8)}
        return arviz_base.from_dict({"posterior": post, "sample_stats": stats}, dims=dims, coords=coords)

    cmdstanpy.CmdStanModel = FakeModel
    cmdstanpy.cmdstan_path = lambda: sys.argv[2]
    arviz_base.from_cmdstanpy = fake_from_cmdstanpy
"""


@pytest.fixture
def fake_cmdstan(cmdstanpy_engine, monkeypatch, tmp_path):
    """The engine module with CmdStan faked (FAKE_CMDSTAN), an empty build cache, and a counter of makes."""
    monkeypatch.setenv("EIGHT_SCHOOLS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cmdstanpy_engine, "_MODELS", type(cmdstanpy_engine._MODELS)())
    install = _fake_cmdstan(tmp_path / "cmdstan", "2.36.0")
    monkeypatch.setattr(sys, "argv", [sys.argv[0], str(tmp_path / "makes.txt"), str(install)])
    import arviz_base
    import cmdstanpy

    for mod, attr in ((cmdstanpy, "CmdStanModel"), (cmdstanpy, "cmdstan_path"), (arviz_base, "from_cmdstanpy")):
        monkeypatch.setattr(mod, attr, getattr(mod, attr))  # restored after the test
    exec(textwrap.dedent(FAKE_CMDSTAN), {})
    return cmdstanpy_engine, tmp_path


def test_cmdstanpy_builds_once_then_reuses_and_removes_its_output_folder(fake_cmdstan, monkeypatch):
    engine, tmp = fake_cmdstan
    monkeypatch.setattr(tempfile, "tempdir", str(tmp / "tmp"))
    (tmp / "tmp").mkdir()
    first = engine.ENGINE.run(NC, SHORT)
    model, _, _ = engine._model(NC)
    (call,) = model.calls
    assert call["sig_figs"] == 18 and Path(call["output_dir"]).parent == tmp / "tmp"
    assert list((tmp / "tmp").iterdir()) == []  # the run's output folder is gone
    assert first.manifest["program"] == COMPILED and not first.timings.compile_cached
    m = first.manifest
    assert m["cmdstan_version"] == m["stan_version"] == "2.36.0" == m["cmdstan_makefile_version"]
    assert m["exe_file"].startswith(str(tmp / "cache" / "cmdstan"))
    assert engine.ENGINE.run(NC, SHORT).manifest["program"] == REUSED
    monkeypatch.setattr(engine, "_MODELS", type(engine._MODELS)())  # a new process, as far as it can tell
    again = engine.ENGINE.run(NC, SHORT)
    assert again.manifest["program"] == engine.CACHED and again.timings.compile_cached
    assert (tmp / "makes.txt").read_text() == "make\n"


def test_cmdstanpy_two_processes_on_a_cold_cache_make_once(cmdstanpy_engine, tmp_path):
    install = _fake_cmdstan(tmp_path / "cmdstan", "2.36.0")
    env = {**os.environ, "EIGHT_SCHOOLS_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    code = textwrap.dedent(FAKE_CMDSTAN) + textwrap.dedent("""
        from benchmarks.engines import cmdstanpy_engine
        from models import PRESETS, RUBIN
        from models.problem import Problem
        _, _, source = cmdstanpy_engine._model(Problem(RUBIN, PRESETS["default"], "noncentered"))
        print(json.dumps({"source": source}))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "makes.txt"), str(install)], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=SUBPROCESS_TIMEOUT_S) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    sources = sorted(json.loads(out.strip().splitlines()[-1])["source"] for out, _ in outs)
    assert sources == sorted([COMPILED, cmdstanpy_engine.CACHED])  # one ran make, the other waited
    assert (tmp_path / "makes.txt").read_text() == "make\n"


@pytest.fixture
def cmdstan(cmdstanpy_engine):
    require_engine("cmdstanpy")
    return cmdstanpy_engine


def _files_under(folder: str) -> set[str]:
    return {str(p) for p in Path(folder).rglob("*") if p.is_file()}


def test_cmdstanpy_draws_are_full_doubles_and_its_csv_files_are_removed(cmdstan, monkeypatch, tmp_path, capfd):
    import cmdstanpy

    cmdstan._model(NC)  # compiled (or found) before the temporary folder is watched
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = _files_under(cmdstanpy._TMPDIR)
    result = cmdstan.ENGINE.run(NC, SHORT)
    assert list(tmp_path.iterdir()) == []  # the run's output folder is gone
    assert _files_under(cmdstanpy._TMPDIR) == before  # and cmdstanpy's own temp folder got nothing
    mu = result.draws["posterior"]["mu"].values.ravel()
    six_digits = np.array([float(f"{v:.6g}") for v in mu])
    # CmdStan's default (6 significant digits) would make every draw equal its 6-digit rounding; a full
    # double has more digits except with probability ~1e-10 per draw
    assert np.mean(mu != six_digits) > 0.9
    assert "CmdStan" not in capfd.readouterr().err  # cmdstanpy's INFO lines went to the DEBUG log


def test_cmdstanpy_manifest_has_the_executables_versions(cmdstan):
    result = cmdstan.ENGINE.run(NC, SHORT)
    model, info, _ = cmdstan._model(NC)
    m = result.manifest
    assert re.fullmatch(r"\d+\.\d+\.\d+", m["cmdstan_version"]), m["cmdstan_version"]
    assert m["cmdstan_version"] == m["stan_version"] == cmdstan.exe_version(info)
    assert m["exe_info"] == info and m["exe_file"] == str(model.exe_file)
    assert m["cmdstan_makefile_version"].startswith(m["cmdstan_version"])


@pytest.mark.slow
def test_cmdstanpy_compiles_once_into_its_cache(cmdstan, monkeypatch, tmp_path):
    monkeypatch.setenv("EIGHT_SCHOOLS_CACHE", str(tmp_path))
    monkeypatch.setattr(cmdstan, "_MODELS", type(cmdstan._MODELS)())
    problem = Problem(RUBIN, PRIOR, "centered")
    first = cmdstan.ENGINE.run(problem, SHORT)
    assert not first.timings.compile_cached and first.manifest["program"] == COMPILED
    again = cmdstan.ENGINE.run(problem, SHORT)
    assert again.manifest["program"] == REUSED and again.timings.compile_cached
    monkeypatch.setattr(cmdstan, "_MODELS", type(cmdstan._MODELS)())  # a new process, as far as it can tell
    second = cmdstan.ENGINE.run(problem, SHORT)
    assert second.timings.compile_cached and second.manifest["program"] == cmdstan.CACHED
    assert second.timings.compile_s < first.timings.compile_s
    assert second.manifest["exe_file"].startswith(str(tmp_path))


@pytest.mark.slow
def test_cmdstanpy_two_processes_on_a_cold_cache_run_make_once(cmdstan, tmp_path):
    env = {**os.environ, "EIGHT_SCHOOLS_CACHE": str(tmp_path), "PYTHONPATH": str(REPO)}
    code = """
        import json
        from benchmarks.engines import cmdstanpy_engine
        from models import PRESETS, RUBIN
        from models.problem import Problem
        _, _, source = cmdstanpy_engine._model(Problem(RUBIN, PRESETS["default"], "noncentered"))
        print(json.dumps({"source": source}))
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    # both start before either can have compiled: a CmdStan build takes tens of seconds
    outs = [p.communicate(timeout=SUBPROCESS_TIMEOUT_S) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    sources = sorted(json.loads(out.strip().splitlines()[-1])["source"] for out, _ in outs)
    assert sources == sorted([COMPILED, cmdstan.CACHED])  # one ran make, the other waited and loaded it
    assert len(list(tmp_path.glob("cmdstan/*/*.stan"))) == 1
