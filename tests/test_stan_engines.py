"""Stan-specific behaviour of the pystan and cmdstanpy engines: compile caches, httpstan's fit cache,
quiet output, Stan's phase timings, and cmdstanpy's skip without CmdStan. (What every engine must do
is in test_engines.py.)"""

import logging

import pytest
from conftest import require_engine

from benchmarks.engines import EngineUnavailable, Settings, get_engine
from benchmarks.engines._stan_common import elapsed_from_messages, phase_seconds
from models import PRESETS, RUBIN
from models.stan_program import program_code, stan_data

SHORT = Settings(chains=2, warmup=150, draws=100, seed=5)
PRIOR = PRESETS["default"]


@pytest.fixture
def pystan():
    require_engine("pystan")
    return get_engine("pystan")


def test_pystan_compile_cached_is_read_from_httpstans_cache(pystan, monkeypatch):
    import httpstan.cache

    pystan.run(RUBIN, PRIOR, "noncentered", SHORT)  # compiled now or earlier, in httpstan's cache now
    monkeypatch.setattr(pystan, "_MODELS", {})  # no in-process model: httpstan's disk cache decides
    assert pystan.run(RUBIN, PRIOR, "noncentered", SHORT).timings.compile_cached
    monkeypatch.setattr(pystan, "_MODELS", {})
    monkeypatch.setattr(httpstan.cache, "list_model_names", lambda: [])  # as if never compiled
    result = pystan.run(RUBIN, PRIOR, "noncentered", SHORT)
    assert not result.timings.compile_cached and not result.manifest["compile_cached"]
    again = pystan.run(RUBIN, PRIOR, "noncentered", SHORT)  # the in-process model
    assert again.timings.compile_cached and again.timings.compile_s < 1.0


def test_pystan_runs_sample_afresh_and_leave_no_fit_in_httpstans_cache(pystan, caplog):
    """httpstan answers a repeated seeded fit from its disk cache; the engine removes its fits."""
    caplog.set_level(logging.WARNING, logger=pystan.__name__)
    pystan.run(RUBIN, PRIOR, "centered", SHORT)
    model, _ = pystan._build(program_code(PRIOR, "centered"), stan_data(RUBIN, PRIOR), SHORT.seed)
    kwargs = {"num_warmup": SHORT.warmup, "num_samples": SHORT.draws, "delta": SHORT.target_accept,
              "max_depth": SHORT.max_treedepth}
    files = pystan._fit_files(model, SHORT.chains, kwargs)
    assert len(files) == SHORT.chains and not any(f.exists() for f in files)
    assert not caplog.records, [r.getMessage() for r in caplog.records]  # fits were where predicted


def test_pystan_output_is_captured_and_phase_timings_are_stans(pystan, capfd):
    result = pystan.run(RUBIN, PRIOR, "noncentered", SHORT)
    out, err = capfd.readouterr()
    assert out == "" and "Sampling" not in err
    t = result.timings
    assert 0 < t.warmup_s <= t.inference_s and 0 < t.sampling_s <= t.inference_s


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
    with pytest.raises(ValueError, match="seed = 4294967296"):
        get_engine(engine).run(RUBIN, PRIOR, "centered", Settings(seed=2**32))


def test_cmdstanpy_without_cmdstan_says_how_to_install(monkeypatch, tmp_path):
    pytest.importorskip("cmdstanpy")
    monkeypatch.setenv("CMDSTAN", str(tmp_path / "no-cmdstan-here"))
    engine = get_engine("cmdstanpy")
    reason = engine.availability()
    assert reason is not None and "install_cmdstan" in reason and "CMDSTAN" in reason
    with pytest.raises(EngineUnavailable, match="install_cmdstan"):
        engine.run(RUBIN, PRIOR, "centered", SHORT)


def test_cmdstanpy_cache_is_keyed_by_program_text_and_cmdstan(monkeypatch, tmp_path):
    monkeypatch.setenv("EIGHT_SCHOOLS_CACHE", str(tmp_path))
    engine = get_engine("cmdstanpy")
    code = program_code(PRIOR, "centered")
    path = engine.stan_file_for(code, "centered", "/opt/cmdstan-2.36.0")
    assert path == engine.stan_file_for(code, "centered", "/opt/cmdstan-2.36.0")
    assert path.parent.parent == tmp_path / "cmdstan" and path.name == "centered.stan"
    assert path.parent != engine.stan_file_for(code + "\n", "centered", "/opt/cmdstan-2.36.0").parent
    assert path.parent != engine.stan_file_for(code, "centered", "/opt/cmdstan-2.37.0").parent


@pytest.mark.slow
def test_cmdstanpy_compiles_once_into_its_cache(monkeypatch, tmp_path):
    require_engine("cmdstanpy")
    engine = get_engine("cmdstanpy")
    monkeypatch.setenv("EIGHT_SCHOOLS_CACHE", str(tmp_path))
    monkeypatch.setattr(engine, "_MODELS", {})
    first = engine.run(RUBIN, PRIOR, "centered", SHORT)
    assert not first.timings.compile_cached
    monkeypatch.setattr(engine, "_MODELS", {})  # a new process, as far as the engine can tell
    second = engine.run(RUBIN, PRIOR, "centered", SHORT)
    assert second.timings.compile_cached and second.timings.compile_s < first.timings.compile_s
    assert second.manifest["exe_file"].startswith(str(tmp_path))
