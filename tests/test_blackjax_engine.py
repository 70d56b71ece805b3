"""The blackjax engine: models/jax_model.py's transforms and log-Jacobians, its draws checked against
the exact reference, its chain methods, and compiled programs reused across seeds and data sets.
(What every engine must do, the log density equal to the spec included, is in test_engines.py.)"""

import inspect
import itertools
import zlib

import numpy as np
import pytest
from conftest import require_engine

from benchmarks.engines import Settings
from benchmarks.engines._jax_common import ProgramCache, jax
from benchmarks.engines.base import COMPILED, REUSED
from models import RUBIN, Dist, Prior, SchoolsData, log_density
from models.priors import MU_FAMILIES, TAU_FAMILIES
from models.problem import Problem

pytestmark = pytest.mark.skipif(jax is None, reason="jax is not installed")

#: log-Jacobians are sums of a few float64 terms of size <= ~50: round-off ~1e-13; 1e-9 absolute leaves
#: room for any CPU's libm while a wrong term (>= ~1e-3 at these points) fails by orders of magnitude.
JACOBIAN_ATOL = 1e-9
#: models/jax_model.py against models/logdensity.py, up to one constant: as test_engines.py
EQUIVALENCE_RTOL = 1e-8
#: |z| bound for a posterior mean in units of its MCSE: a two-sided normal tail of 6e-7 per check
Z_MAX = 5.0

#: one Dist per family the suite offers, with arguments that put the test points well inside the support
MU_DISTS = {"flat": Dist("mu", "flat"), "normal": Dist("mu", "normal", (1, 5)),
            "uniform": Dist("mu", "uniform", (-20, 25))}
TAU_DISTS = {"flat": Dist("tau", "flat"), "uniform": Dist("tau", "uniform", (0, 40)),
             "half_cauchy": Dist("tau", "half_cauchy", (5,)), "half_normal": Dist("tau", "half_normal", (6,)),
             "lognormal": Dist("tau", "lognormal", (1, 1.5)), "fixed": Dist("tau", "fixed", (4,))}
ALL_PRIORS = [Prior(MU_DISTS[m], TAU_DISTS[t]) for m, t in itertools.product(MU_DISTS, TAU_DISTS)]
PRIOR_IDS = [f"mu-{p.mu.family}/tau-{p.tau.family}" for p in ALL_PRIORS]
PARAMS = ("centered", "noncentered")


def _engine():
    require_engine("blackjax")
    from benchmarks.engines import blackjax_engine

    return blackjax_engine


def test_every_family_the_suite_offers_is_translated():
    from models import jax_model

    assert set(jax_model.MU_FAMILIES) == set(MU_FAMILIES) == set(MU_DISTS)
    assert set(jax_model.TAU_FAMILIES) == set(TAU_FAMILIES) == set(TAU_DISTS)


@pytest.mark.parametrize("param", PARAMS)
@pytest.mark.parametrize("prior", ALL_PRIORS, ids=PRIOR_IDS)
def test_log_jacobian_is_the_transform_s(prior, param):
    """log_density(u) - constrained_log_density(constrain(u)) = log|det d(parameters)/du|, the latter
    computed here by forward-mode autodiff of the transform: every family's Jacobian term is right."""
    import jax.numpy as jnp

    from models import jax_model

    model = jax_model.build(prior, param, RUBIN.J)
    effects = "theta" if param == "centered" else "theta_tilde"

    def parameters(u):
        c = model.constrain(u)
        scalars = [c["mu"]] if prior.tau_fixed else [c["mu"], c["tau"]]
        return jnp.concatenate([jnp.stack(scalars), c[effects]])

    rng = np.random.default_rng(zlib.crc32(f"{prior}/{param}".encode()))
    y, sigma = RUBIN.y_array, RUBIN.sigma_array
    for _ in range(5):
        u = jnp.asarray(rng.uniform(-2.5, 2.5, model.dim))
        c = model.constrain(u)
        point = {k: c[k] for k in ("mu", "tau", effects) if not (k == "tau" and prior.tau_fixed)}
        got = float(model.log_density(u, y, sigma) - model.constrained_log_density(point, y, sigma))
        _, want = np.linalg.slogdet(np.asarray(jax.jacfwd(parameters)(u)))
        assert got == pytest.approx(float(want), abs=JACOBIAN_ATOL)


@pytest.mark.parametrize("param", PARAMS)
@pytest.mark.parametrize("prior", ALL_PRIORS, ids=PRIOR_IDS)
def test_constrained_density_is_the_spec_for_every_family(prior, param):
    """test_engines.py proves this for the presets; here every family, half-normal and lognormal too."""
    engine = _engine().ENGINE
    lp = engine.log_density(Problem(RUBIN, prior, param))
    rng = np.random.default_rng(zlib.crc32(f"spec/{prior}/{param}".encode()))
    got, want = [], []
    for _ in range(12):
        point = {"mu": rng.uniform(-15, 20)}
        if not prior.tau_fixed:
            point["tau"] = rng.uniform(0.2, 35)
        point["theta" if param == "centered" else "theta_tilde"] = rng.normal(0, 8 if param == "centered" else 1.5,
                                                                              RUBIN.J)
        got.append(lp(point))
        want.append(log_density(RUBIN, prior, param, point))
    diff = np.asarray(got) - np.asarray(want)
    assert np.all(np.isfinite(diff))
    assert np.ptp(diff) <= EQUIVALENCE_RTOL * max(1.0, float(np.max(np.abs(want))))


@pytest.mark.parametrize("point", [{"tau": -1.0}, {"tau": 0.0}, {"mu": 30.0}, {"tau": 41.0}])
def test_log_density_is_minus_infinity_outside_the_support(point):
    engine = _engine().ENGINE
    prior = Prior(MU_DISTS["uniform"], TAU_DISTS["uniform"])
    lp = engine.log_density(Problem(RUBIN, prior, "noncentered"))
    inside = {"mu": 1.0, "tau": 3.0, "theta_tilde": np.zeros(RUBIN.J)}
    assert np.isfinite(lp(inside))
    assert lp({**inside, **point}) == -np.inf


def _check_against_reference(draws, prior):
    from reference import check as check_module
    from reference import posterior

    ref = posterior(RUBIN, prior)
    if "J" in inspect.signature(check_module.check).parameters:  # before check() read J from the reference
        return check_module.check(draws, ref, J=RUBIN.J, tau_fixed=prior.tau_fixed)
    return check_module.check(draws, ref)


@pytest.mark.samples
def test_noncentred_default_fit_passes_the_reference_check():
    from models import PRESETS

    prior = PRESETS["default"]
    result = _engine().ENGINE.run(Problem(RUBIN, prior, "noncentered"),
                                  Settings(chains=4, warmup=1000, draws=1000, seed=20260501))
    verdict = _check_against_reference(result.draws, prior)
    assert verdict.passed, (verdict.failed, verdict.max_abs_z, verdict.threshold)
    assert int(result.draws["sample_stats"]["diverging"].sum()) < 0.01 * 4 * 1000


@pytest.mark.samples
def test_centred_default_fit_shows_divergences():
    """The declared failure of the comparison: the funnel of the centred model at small tau."""
    from models import PRESETS

    result = _engine().ENGINE.run(Problem(RUBIN, PRESETS["default"], "centered"),
                                  Settings(chains=4, warmup=1000, draws=1000, seed=20260501))
    assert int(result.draws["sample_stats"]["diverging"].sum()) > 0


SHORT = Settings(chains=2, warmup=200, draws=100, seed=5)
PROBLEM = Problem(RUBIN, Prior(Dist("mu", "normal", (0, 5)), Dist("tau", "half_cauchy", (5,))), "noncentered")


def _arrays(result):
    out = {f"posterior/{k}": v.values for k, v in result.draws["posterior"].data_vars.items()}
    out.update({f"sample_stats/{k}": v.values for k, v in result.draws["sample_stats"].data_vars.items()})
    return out


def _assert_same_draws(a, b):
    a, b = _arrays(a), _arrays(b)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.samples
def test_a_kept_program_compiles_nothing_and_gives_the_draws_of_a_fresh_one(monkeypatch):
    module = _engine()
    monkeypatch.setattr(module, "PROGRAMS", ProgramCache(2))
    fresh = module.ENGINE.run(PROBLEM, SHORT)
    other_seed = module.ENGINE.run(PROBLEM, Settings(**{**SHORT.to_dict(), "seed": 6}))
    again = module.ENGINE.run(PROBLEM, SHORT)
    assert fresh.manifest["program"] == COMPILED
    for r in (other_seed, again):
        assert r.manifest["program"] == REUSED and r.manifest["compile_cache"] == REUSED
        assert r.timings.compile_cached
    assert fresh.timings.compile_s > 0
    # a kept program's compile_s is the lookup only: below a millisecond here, ~1 s when compiled
    assert again.timings.compile_s < 0.01 * fresh.timings.compile_s
    _assert_same_draws(fresh, again)
    assert not np.array_equal(fresh.draws["posterior"]["mu"].values, other_seed.draws["posterior"]["mu"].values)
    assert len(module.PROGRAMS) == 1


@pytest.mark.samples
def test_other_data_with_the_same_J_reuse_the_program(monkeypatch):
    """The data are arguments of the compiled program, not constants baked into it: a data set with
    every y moved up by 10 (exact posterior mean of mu 9.73 against Rubin's 4.40, ~17 MCSE apart at
    these settings) reuses Rubin's program, and each fit's mean of mu is its own data's."""
    from arviz_stats.base import array_stats

    from reference import posterior

    module = _engine()
    monkeypatch.setattr(module, "PROGRAMS", ProgramCache(2))
    shifted = SchoolsData([y + 10 for y in RUBIN.y], RUBIN.sigma, RUBIN.school, name="rubin-plus-10")
    for data, program in ((RUBIN, COMPILED), (shifted, REUSED)):
        problem = Problem(data, PROBLEM.prior, PROBLEM.parameterization)
        result = module.ENGINE.run(problem, SHORT)
        assert result.manifest["program"] == program and result.manifest["data"] == data.name
        mu = result.draws["posterior"]["mu"].values
        z = (mu.mean() - posterior(data, PROBLEM.prior).summary("mu").mean) / float(array_stats.mcse(mu, method="mean"))
        assert abs(z) < Z_MAX, (data.name, z)


@pytest.mark.samples
def test_sequential_chains_give_the_parallel_draws_and_the_manifest_says_how_they_ran(monkeypatch):
    """"sequential" runs the one-device program of "parallel" once per chain: the same draws."""
    module = _engine()
    if jax.local_device_count() < SHORT.chains:
        pytest.skip(f"{jax.local_device_count()} XLA CPU device(s): parallel chains need {SHORT.chains}")
    monkeypatch.setattr(module, "PROGRAMS", ProgramCache(2))
    runs = {}
    for method in ("parallel", "sequential", "vectorized"):
        monkeypatch.setattr(module, "CHAIN_METHOD", method)
        runs[method] = module.ENGINE.run(PROBLEM, SHORT)
        parallel = runs[method].manifest["parallel"]
        assert parallel == {"chain_method": method, "chains": SHORT.chains, "cpu_devices": jax.local_device_count()}
    _assert_same_draws(runs["parallel"], runs["sequential"])
    assert runs["vectorized"].draws["posterior"]["mu"].shape == (SHORT.chains, SHORT.draws)


@pytest.mark.samples
def test_more_chains_than_devices_run_sequentially(monkeypatch):
    module = _engine()
    monkeypatch.setattr(module, "PROGRAMS", ProgramCache(1))
    monkeypatch.setattr(module, "CHAIN_METHOD", "parallel")
    chains = jax.local_device_count() + 1
    r = module.ENGINE.run(PROBLEM, Settings(chains=chains, warmup=30, draws=10, seed=1))
    assert r.manifest["parallel"]["chain_method"] == "sequential"
    assert r.draws["posterior"].sizes["chain"] == chains


@pytest.mark.samples
def test_no_warmup_samples_from_the_initial_step_size(monkeypatch):
    module = _engine()
    monkeypatch.setattr(module, "PROGRAMS", ProgramCache(1))
    r = module.ENGINE.run(PROBLEM, Settings(chains=1, warmup=0, draws=20, seed=2))
    assert np.all(r.draws["sample_stats"]["step_size"].values == module.INITIAL_STEP_SIZE)
    assert r.timings.warmup_s >= 0


@pytest.mark.samples
def test_tree_depth_is_stans_and_caps_at_max_treedepth(monkeypatch):
    module = _engine()
    monkeypatch.setattr(module, "PROGRAMS", ProgramCache(1))
    r = module.ENGINE.run(PROBLEM, Settings(chains=1, warmup=100, draws=100, max_treedepth=2, seed=3))
    stats = r.draws["sample_stats"]
    n, depth = stats["n_steps"].values, stats["tree_depth"].values
    assert np.all(n <= 2**2 - 1)  # Stan's cap: at most 2**max_treedepth - 1 leapfrog steps
    assert np.all((2 ** (depth - 1) <= n) & (n < 2**depth))
    assert r.manifest["max_num_doublings"] == 2


def test_bad_arguments_are_named():
    engine = _engine().ENGINE
    with pytest.raises(TypeError, match="problem = tuple"):
        engine.run((RUBIN, None, "centered"), SHORT)
    with pytest.raises(TypeError, match="settings = dict"):
        engine.run(PROBLEM, SHORT.to_dict())
