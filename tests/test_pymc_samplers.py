"""The engines that sample the PyMC model: what each sampler names or lacks is converted honestly
(pymc_external.py), and a worker keeps compiled models between runs without changing any draw
(pymc: the model's compiled logp/dlogp; pymc-nutpie: nutpie's compiled model)."""

import dataclasses

import numpy as np
import pytest
import xarray as xr
from conftest import require_engine

from benchmarks.engines import Settings, get_engine
from benchmarks.engines._pymc_common import sample_stats
from benchmarks.engines.base import COMPILED, REUSED
from benchmarks.engines.pymc_external import SAMPLERS, _cores
from models import PRESETS, RUBIN
from models.problem import Problem
from models.pymc_model import build_model

SHORT = Settings(chains=2, warmup=150, draws=100, seed=3)
NC = Problem(RUBIN, PRESETS["default"], "noncentered")
#: both parameterisations, and a fixed tau (pm.Data in the model)
PROBLEMS = [NC, Problem(RUBIN, PRESETS["notebook-tau8"], "centered")]
PROBLEM_IDS = ["noncentered-default", "centered-notebook-tau8"]


def _same_draws(a, b) -> bool:
    """Bit-identical posterior and step sizes: one process, one machine, one compiled program."""
    return (all(np.array_equal(a["posterior"][v].values, b["posterior"][v].values) for v in ("mu", "theta"))
            and np.array_equal(a["sample_stats"]["step_size"].values, b["sample_stats"]["step_size"].values))


@pytest.mark.samples
@pytest.mark.parametrize("engine", ["pymc-nutpie", "pymc-numpyro"])
def test_lp_is_the_models_log_density_at_the_draw(engine):
    """lp is +log density on the unconstrained scale (Jacobian included), whatever the sampler called it
    (PyMC stores NumPyro's potential_energy, its negative, under 'lp')."""
    require_engine(engine)
    result = get_engine(engine).run(NC, SHORT)
    model = build_model(RUBIN, NC.prior, "noncentered")
    logp = model.compile_logp(jacobian=True)
    post, lp = result.draws["posterior"], result.draws["sample_stats"]["lp"]
    for chain, draw in [(0, 0), (0, SHORT.draws - 1), (SHORT.chains - 1, 7)]:
        point = {
            "mu": post["mu"].values[chain, draw],
            "tau_log__": np.log(post["tau"].values[chain, draw]),
            "theta_tilde": post["theta_tilde"].values[chain, draw],
        }
        assert lp.values[chain, draw] == pytest.approx(float(logp(point)), rel=1e-9)


def test_pymc_blackjax_without_a_step_size_fails_loudly():
    """PyMC's BlackJAX path records no step size: the conversion names it rather than invent one."""
    shape = (2, 3)
    native = xr.Dataset({
        "diverging": (("chain", "draw"), np.zeros(shape, bool)),
        "energy": (("chain", "draw"), np.ones(shape)),
        "tree_depth": (("chain", "draw"), np.full(shape, 3)),
        "n_steps": (("chain", "draw"), np.full(shape, 7)),
        "acceptance_rate": (("chain", "draw"), np.full(shape, 0.8)),
        "lp": (("chain", "draw"), np.full(shape, -40.0)),
    })
    with pytest.raises(RuntimeError, match=r"pymc-blackjax: .* records no step_size \(looked for 'step_size'\)"):
        sample_stats(SAMPLERS["blackjax"], native)
    stats = sample_stats(SAMPLERS["blackjax"], native.assign(step_size=(("chain", "draw"), np.ones(shape))))
    np.testing.assert_array_equal(stats["tree_depth"], 3)


@pytest.mark.samples
@pytest.mark.parametrize("problem", PROBLEMS, ids=PROBLEM_IDS)
def test_pymc_nutpie_is_pm_sample_in_two_steps_and_compiles_once(problem, monkeypatch):
    """The engine's nutpie.compile_pymc_model + nutpie.sample give pm.sample(nuts_sampler="nutpie")'s
    draws for the same seed, on the run that compiles and on a later run that reuses the compiled model."""
    require_engine("pymc-nutpie")
    import nutpie
    import pymc as pm

    engine = get_engine("pymc-nutpie")
    monkeypatch.setattr(engine, "_compiled", type(engine._compiled)())  # this test's runs only
    compiles = []
    real = nutpie.compile_pymc_model
    monkeypatch.setattr(nutpie, "compile_pymc_model", lambda *a, **k: compiles.append(1) or real(*a, **k))
    with build_model(problem.data, problem.prior, problem.parameterization):
        reference = pm.sample(draws=SHORT.draws, tune=SHORT.warmup, chains=SHORT.chains,
                              cores=_cores(SAMPLERS["nutpie"], SHORT), random_seed=SHORT.seed, nuts_sampler="nutpie",
                              nuts={"target_accept": SHORT.target_accept, "max_treedepth": SHORT.max_treedepth},
                              progressbar=False, quiet=True, compute_convergence_checks=False)
    compiles.clear()
    first = engine.run(problem, SHORT)
    second = engine.run(problem, SHORT)
    other = engine.run(problem, dataclasses.replace(SHORT, seed=SHORT.seed + 1))
    assert len(compiles) == 1
    assert _same_draws(reference, first.draws) and _same_draws(reference, second.draws)
    assert not _same_draws(reference, other.draws)
    assert first.manifest["program"] == COMPILED and not first.timings.compile_cached
    for later in (second, other):
        assert later.manifest["program"] == REUSED and later.manifest["compile_reused"]
        assert later.timings.compile_cached and later.timings.compile_s < first.timings.compile_s


@pytest.mark.samples
@pytest.mark.parametrize("problem", PROBLEMS, ids=PROBLEM_IDS)
def test_pymc_numpyro_is_pm_sample_in_steps_and_compiles_once(problem, monkeypatch):
    """The engine's steps of pm.sample(nuts_sampler="numpyro") give pm.sample's draws for the same seed, on
    the run that compiles and on later runs that reuse the kept program (which trace and compile nothing)."""
    require_engine("pymc-numpyro")
    import pymc as pm

    from benchmarks.engines import pymc_numpyro
    from benchmarks.engines._jax_common import ProgramCache, compile_spans, jax

    monkeypatch.setattr(pymc_numpyro, "_NUMPYRO_PROGRAMS", ProgramCache())  # this test's runs only
    spec = SAMPLERS["numpyro"]
    nuts = spec.nuts(SHORT)

    def pm_sample(seed):
        with build_model(problem.data, problem.prior, problem.parameterization):
            return pm.sample(draws=SHORT.draws, tune=SHORT.warmup, chains=SHORT.chains, cores=_cores(spec, SHORT),
                             random_seed=seed, nuts_sampler="numpyro", nuts=dict(nuts), progressbar=False,
                             quiet=True, compute_convergence_checks=False)

    reference, reference_other = pm_sample(SHORT.seed), pm_sample(SHORT.seed + 1)
    engine = get_engine("pymc-numpyro")
    first = engine.run(problem, SHORT)
    with compile_spans(clear=False) as spans:
        second = engine.run(problem, SHORT)
        other = engine.run(problem, dataclasses.replace(SHORT, seed=SHORT.seed + 1))
    assert _same_draws(reference, first.draws) and _same_draws(reference, second.draws)
    assert _same_draws(reference_other, other.draws) and not _same_draws(reference, other.draws)
    assert first.manifest["program"] == COMPILED and not first.manifest["compile_reused"]
    for later in (second, other):
        assert later.manifest["program"] == REUSED and later.manifest["compile_reused"]
        assert later.timings.compile_cached and later.timings.compile_s < first.timings.compile_s
    # later runs of the kept program trace, lower and compile nothing at all (JAX reports no compile event)
    assert jax is not None and list(spans) == []


@pytest.mark.samples
@pytest.mark.parametrize("problem", PROBLEMS, ids=PROBLEM_IDS)
def test_pymc_reuses_its_compiled_logp_without_changing_the_draws(problem, monkeypatch):
    """The kept model (build_model(keep_compiled=True)) compiles logp/dlogp once per problem, and each
    run's draws are those of a new pm.Model sampled with the same pm.sample call, seed for seed."""
    require_engine("pymc")
    import pymc as pm
    from pymc.model.core import ValueGradFunction

    from benchmarks.engines import pymc_engine

    engine = get_engine("pymc")
    monkeypatch.setattr(engine, "_models", type(engine._models)())  # this test's runs only
    compiles = []
    real_init = ValueGradFunction.__init__

    def counting_init(self, *args, **kwargs):
        compiles.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(ValueGradFunction, "__init__", counting_init)

    def new_model_draws(seed):
        with build_model(problem.data, problem.prior, problem.parameterization):
            return pm.sample(draws=SHORT.draws, tune=SHORT.warmup, chains=SHORT.chains, cores=1, random_seed=seed,
                             init=pymc_engine.INIT, nuts_sampler="pymc",
                             nuts={"target_accept": SHORT.target_accept, "max_treedepth": SHORT.max_treedepth,
                                   "early_max_treedepth": min(pymc_engine.EARLY_MAX_TREEDEPTH, SHORT.max_treedepth)},
                             discard_tuned_samples=False, compute_convergence_checks=False, progressbar=False,
                             quiet=True)

    reference, reference_other = new_model_draws(SHORT.seed), new_model_draws(SHORT.seed + 1)
    assert len(compiles) == 2  # a new model compiles on every pm.sample
    compiles.clear()
    first = engine.run(problem, SHORT)
    second = engine.run(problem, SHORT)
    other = engine.run(problem, dataclasses.replace(SHORT, seed=SHORT.seed + 1))
    assert len(compiles) == 1  # the kept model compiled once, for three runs
    assert _same_draws(reference, first.draws) and _same_draws(reference, second.draws)
    assert _same_draws(reference_other, other.draws) and not _same_draws(reference, other.draws)
    assert first.manifest["program"] == COMPILED and not first.timings.compile_cached
    assert second.manifest["program"] == REUSED and second.timings.compile_cached


def test_pymc_keeps_a_bounded_number_of_models(monkeypatch):
    require_engine("pymc")
    from benchmarks.engines import pymc_engine

    engine = get_engine("pymc")
    monkeypatch.setattr(engine, "_models", type(engine._models)())
    problems = [Problem(RUBIN.__class__(y=[float(j)] * RUBIN.J, sigma=RUBIN.sigma), NC.prior, "noncentered")
                for j in range(pymc_engine.MODELS_KEPT + 1)]
    for p in problems:
        engine._model(p)
    assert len(engine._models) == pymc_engine.MODELS_KEPT
    kept = [p for p, _ in engine._models]
    assert problems[0] not in kept and problems[-1] in kept
