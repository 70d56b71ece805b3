"""Every engine is the same posterior, reproducible, returns the one ArviZ layout, and implements the
one interface; the registry answers for every engine without raising.

Equivalence is proven on log densities: each engine's compiled model, evaluated at random
constrained points, equals models.logdensity.log_density up to one additive constant per engine.
"""

import dataclasses
import sys
import zlib

import numpy as np
import pytest

import benchmarks.engines as registry
from benchmarks.engines import (
    ENGINES,
    KNOWN_BREAKS,
    Engine,
    EngineEntry,
    RunResult,
    Settings,
    SettingsError,
    availability,
    engine_version,
    get_engine,
    known_break,
)
from benchmarks.engines.base import SAMPLE_STATS
from models import PARAMETERIZATIONS, PRESETS, RUBIN, log_density, make_prior, parameter_names
from models.errors import UsageError
from models.problem import Problem

#: Double precision leaves ~1e-13 relative error per term; the spec asks for agreement to 1e-8
#: relative, which is what we assert (scaled by the magnitude of the log densities compared).
EQUIVALENCE_RTOL = 1e-8
N_POINTS = 20

#: A short fit: enough draws for every field to exist, not for statistics (those are in reference/).
SHORT = Settings(chains=2, warmup=150, draws=100, seed=11)


def random_points(prior, param, n, seed):
    """Points inside the prior's support, spread over the region the posterior visits."""
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(n):
        if prior.mu.family == "uniform":
            mu = rng.uniform(prior.mu["lower"], prior.mu["upper"])
        else:
            mu = rng.normal(5, 10)
        point = {"mu": mu}
        if not prior.tau_fixed:
            if prior.tau.family == "uniform":
                point["tau"] = rng.uniform(prior.tau["lower"], prior.tau["upper"])
            else:
                point["tau"] = rng.lognormal(1.0, 1.2)
        if param == "centered":
            point["theta"] = rng.normal(mu, 10, RUBIN.J)
        else:
            point["theta_tilde"] = rng.normal(0, 1.5, RUBIN.J)
        points.append(point)
    return points


def assert_equal_up_to_constant(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert np.all(np.isfinite(got)), got
    diff = got - want
    scale = max(1.0, float(np.max(np.abs(want))))
    spread = float(np.max(np.abs(diff - diff[0])))
    assert spread <= EQUIVALENCE_RTOL * scale, f"log densities differ by more than a constant: {spread:.3g}"


@pytest.mark.parametrize("param", PARAMETERIZATIONS)
@pytest.mark.parametrize("prior_name", list(PRESETS))
def test_log_density_equals_the_spec(engine_name, prior_name, param):
    prior = PRESETS[prior_name]
    lp = get_engine(engine_name).log_density(Problem(RUBIN, prior, param))
    points = random_points(prior, param, N_POINTS, seed=zlib.crc32(f"{prior_name}/{param}".encode()))
    got = [lp(p) for p in points]
    want = [log_density(RUBIN, prior, param, p) for p in points]
    assert_equal_up_to_constant(got, want)


@pytest.mark.parametrize("prior_name", list(PRESETS))
def test_centered_and_noncentered_agree_through_the_jacobian(engine_name, prior_name):
    """lp_nc(mu, tau, z) = lp_c(mu, tau, mu + tau z) + J log tau + constant."""
    prior = PRESETS[prior_name]
    engine = get_engine(engine_name)
    lp_c = engine.log_density(Problem(RUBIN, prior, "centered"))
    lp_nc = engine.log_density(Problem(RUBIN, prior, "noncentered"))
    got, want = [], []
    for p in random_points(prior, "noncentered", N_POINTS, seed=7):
        tau = prior.tau["value"] if prior.tau_fixed else p["tau"]
        centred = {k: v for k, v in p.items() if k != "theta_tilde"}
        centred["theta"] = p["mu"] + tau * p["theta_tilde"]
        got.append(lp_nc(p))
        want.append(lp_c(centred) + RUBIN.J * np.log(tau))
    assert_equal_up_to_constant(got, want)


def _check_layout(result: RunResult, prior, param, settings):
    posterior = result.draws["posterior"]
    expected = set(parameter_names(prior, param)) | {"theta"}
    assert expected <= set(posterior.data_vars)
    assert ("tau" in posterior.data_vars) != prior.tau_fixed
    if prior.tau_fixed:
        assert float(result.draws["constant_data"]["tau"]) == prior.tau["value"]
    assert posterior.sizes["chain"] == settings.chains
    assert posterior.sizes["draw"] == settings.draws
    assert list(posterior["theta"].coords["school"].values) == list(RUBIN.school)
    assert posterior["mu"].dtype == np.float64
    stats = result.draws["sample_stats"]
    assert set(SAMPLE_STATS) <= set(stats.data_vars)
    assert stats["diverging"].dtype == bool
    assert np.all(stats["n_steps"].values >= 1)
    assert np.all(stats["step_size"].values > 0)
    t = result.timings
    assert t.compile_s >= 0 and t.inference_s > 0 and t.total_s >= t.inference_s
    for phase in (t.warmup_s, t.sampling_s):
        assert phase is None or 0 <= phase <= t.inference_s
    m = result.manifest
    for key in ("engine", "ppl", "ppl_version", "settings", "parameterization", "prior", "dtype"):
        assert key in m
    assert m["settings"] == settings.to_dict()
    assert m["dtype"] == "float64"


#: the versions of what each engine compiles with, which its manifest must name (beside ppl_version)
COMPILER_VERSIONS = {
    "pymc": ("pytensor_version",),
    "numpyro": ("jax_version",),
    "pystan": ("stan_version", "httpstan_version"),
    "cmdstanpy": ("stan_version", "cmdstan_version"),
    "blackjax": ("jax_version",),
    "pymc-nutpie": ("pymc_version", "pytensor_version"),
    "pymc-numpyro": ("pymc_version", "pytensor_version", "jax_version"),
    "pymc-blackjax": ("pymc_version", "pytensor_version", "jax_version"),
    "blackjax-chees": ("jax_version",),
    "blackjax-meads": ("jax_version",),
    "blackjax-mclmc-adjusted": ("jax_version",),
    "blackjax-mclmc": ("jax_version",),
    "pymc-nutpie-flow": ("pymc_version", "pytensor_version", "jax_version"),
    "numpyro-vectorized": ("jax_version",),
}


@pytest.mark.samples
@pytest.mark.parametrize("param", PARAMETERIZATIONS)
def test_short_fit_returns_the_common_layout(engine_name, param):
    prior = PRESETS["default"]
    result = get_engine(engine_name).run(Problem(RUBIN, prior, param), SHORT)
    _check_layout(result, prior, param, SHORT)
    m = result.manifest
    assert m["engine"] == engine_name and m["ppl"] == ENGINES[engine_name].ppl
    assert m["ppl_version"] == engine_version(engine_name)
    for key in COMPILER_VERSIONS[engine_name]:
        assert isinstance(m.get(key), str) and m[key][:1].isdigit(), (key, m.get(key))


@pytest.mark.samples
def test_short_fit_with_tau_fixed(engine_name):
    prior = PRESETS["notebook-tau8"]
    result = get_engine(engine_name).run(Problem(RUBIN, prior, "centered"), SHORT)
    _check_layout(result, prior, "centered", SHORT)


@pytest.mark.samples
def test_same_seed_same_draws_other_seed_other_draws(engine_name):
    engine = get_engine(engine_name)
    problem = Problem(RUBIN, PRESETS["default"], "noncentered")
    a = engine.run(problem, SHORT).draws["posterior"]
    b = engine.run(problem, SHORT).draws["posterior"]
    c = engine.run(problem, dataclasses.replace(SHORT, seed=12)).draws["posterior"]
    for v in ("mu", "tau", "theta"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
    assert not np.array_equal(a["mu"].values, c["mu"].values)


def test_the_centred_model_with_tau_fixed_at_zero_never_reaches_an_engine():
    with pytest.raises(UsageError, match="fixed\\(0\\)"):
        Problem(RUBIN, make_prior(tau_text="fixed(0)"), "centered")


def test_every_engine_implements_the_interface(engine_name):
    engine = get_engine(engine_name)
    assert isinstance(engine, Engine)
    assert engine.name == engine_name and engine.ppl == ENGINES[engine_name].ppl
    assert engine.availability() is None  # the fixture skipped it otherwise
    assert get_engine(engine_name) is engine  # one object per engine: its in-process caches persist


def test_registry_order_and_entries():
    assert list(ENGINES) == ["pymc", "numpyro", "pystan", "cmdstanpy", "blackjax", "pymc-nutpie", "pymc-numpyro",
                             "pymc-blackjax",
                             "blackjax-chees", "blackjax-meads", "blackjax-mclmc-adjusted", "blackjax-mclmc",
                             "pymc-nutpie-flow", "numpyro-vectorized"]
    for name, entry in ENGINES.items():
        assert registry._TARGET.match(entry.target), (name, entry.target)
    assert set(KNOWN_BREAKS) <= set(ENGINES)


def test_unknown_engine_is_a_usage_error_listing_the_engines():
    for call in (get_engine, availability, engine_version):
        with pytest.raises(UsageError, match=f"engine = 'stan2' is unknown; engines: {', '.join(ENGINES)}"):
            call("stan2")


def test_availability_reports_an_import_failure_without_raising(monkeypatch):
    monkeypatch.setitem(ENGINES, "pymc", EngineEntry("benchmarks.engines.no_such_module:ENGINE", "pymc", "pymc"))
    reason = availability("pymc")
    assert reason is not None and "no_such_module" in reason and "eight-schools-ppl[pymc]" in reason
    assert "\n" not in reason


def test_availability_reports_any_import_error_without_raising(monkeypatch, tmp_path):
    (tmp_path / "broken_engine_mod.py").write_text("raise RuntimeError('half-installed PPL')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(ENGINES, "pymc", EngineEntry("broken_engine_mod:ENGINE", "pymc", "pymc"))
    assert availability("pymc") == "import failed: RuntimeError: half-installed PPL"


def test_engine_version_reads_metadata_without_importing(monkeypatch):
    monkeypatch.setitem(ENGINES, "pymc", EngineEntry("never_imported_mod:ENGINE", "numpy", "pymc"))
    assert engine_version("pymc") == np.__version__
    assert "never_imported_mod" not in sys.modules
    monkeypatch.setitem(ENGINES, "pymc", EngineEntry("never_imported_mod:ENGINE", "no-such-dist-xyz", "pymc"))
    assert engine_version("pymc") is None


def test_get_engine_refuses_an_object_that_is_not_an_engine(monkeypatch):
    monkeypatch.setitem(ENGINES, "pymc", EngineEntry("benchmarks.engines.base:SAMPLE_STATS", "pymc", "pymc"))
    with pytest.raises(TypeError, match="not an Engine"):
        get_engine("pymc")


def test_known_break_matches_the_exception_and_the_message():
    kb = KNOWN_BREAKS["pymc-blackjax"]
    assert kb.upstream == "https://github.com/pymc-devs/pymc/issues/8367"
    text = "TypeError: build_kernel() got an unexpected keyword argument 'progress_bar'"
    assert known_break("pymc-blackjax", text) is kb
    assert known_break("pymc-blackjax", "ValueError: progress_bar") is None  # another exception
    assert known_break("pymc-blackjax", "TypeError: something else") is None  # another message
    assert known_break("pymc-nutpie", text) is None  # not a break of that engine
    # the record of a run not attempted on the versions it was seen with reads as the break, naming them
    assert known_break("pymc-blackjax", kb.not_attempted()) is kb
    assert all(f"{d} {v}" in kb.not_attempted() for d, v in kb.seen_with) and kb.seen_with


def test_a_pinned_break_holds_only_on_exactly_the_versions_it_was_seen_with(monkeypatch):
    import benchmarks.engines as registry

    kb = registry.KnownBreak(exception="TypeError", match="x", upstream="u", summary="s x",
                             seen_with=(("pymc", "6.4.0"), ("blackjax", "1.7.1")))
    installed = {"pymc": "6.4.0", "blackjax": "1.7.1"}
    monkeypatch.setattr(registry, "installed_version", lambda d: installed.get(d))
    assert kb.seen_here()
    installed["blackjax"] = "1.7.2"
    assert not kb.seen_here()  # one of them moved: the run is attempted
    del installed["pymc"]
    assert not kb.seen_here()
    assert not registry.KnownBreak(exception="TypeError", match="x", upstream="u", summary="s").seen_here()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"chains": 0}, "chains = 0"),
        ({"draws": 2.5}, "draws = 2.5"),
        ({"target_accept": 1.0}, "target_accept = 1.0"),
        ({"seed": -1}, "seed = -1"),
        ({"target_accept": True}, "target_accept = True"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(SettingsError, match=match) as info:
        Settings(**kwargs)
    assert isinstance(info.value, UsageError)


def test_settings_are_keyword_only_with_shared_defaults():
    with pytest.raises(TypeError):
        Settings(4)  # type: ignore[misc]
    s = Settings()
    assert (s.chains, s.warmup, s.draws, s.target_accept) == (4, 1000, 1000, 0.8)
