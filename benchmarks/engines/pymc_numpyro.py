"""pymc-numpyro's run: ``pm.sample(nuts_sampler="numpyro")`` in the steps of
pymc.sampling.jax.sample_jax_nuts, with the program kept per problem (see :mod:`.pymc_external`,
whose engine calls :func:`run_kept`; what they share is in :mod:`._pymc_common`).

Once per program (the problem and the settings but the seed): PyMC's JAX conversion of the model's
log density (``get_jaxified_logp``), NumPyro's ``NUTS``/``MCMC`` on it with PyMC's arguments, and
PyMC's postprocessing function. Per run: PyMC's jittered initial points for the seed, ``MCMC.run``
and the postprocessing. The draws are pm.sample's for the same seed (tests/test_pymc_samplers.py).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.problem import Problem
from models.pymc_model import build_model

from ._pymc_common import (
    Sampler,
    check_float64,
    jax_nuts,
    jax_sampler_fields,
    pm_sample_seed,
    sample_stats,
    sampler_manifest,
)
from .base import RunResult, Settings, Timings
from .convert import to_datatree
from .pymc_engine import posterior_arrays

__all__ = ["NUMPYRO_FIELDS", "run_kept"]

#: the extra fields PyMC's NumPyro path collects (pymc.sampling.jax._sample_numpyro_nuts)
NUMPYRO_FIELDS = ("num_steps", "potential_energy", "energy", "adapt_state.step_size", "accept_prob", "diverging")


@dataclass
class _NumPyroProgram:
    """What pm.sample(nuts_sampler="numpyro") builds for a model, kept for the program's later seeds."""

    model: object  # the pm.Model
    logp_fn: Callable  # PyMC's JAX log density (get_jaxified_logp), NumPyro's potential_fn
    mcmc: object  # numpyro.infer.MCMC on NUTS(potential_fn=logp_fn), chains run through ``chains``
    chains: object  # _jax_common.NumPyroChains: the compiled one-chain program, mapped over the chains
    var_names: list[str]  # the posterior's variables, in the postprocessing function's output order
    jax_fn: Callable  # PyMC's JAX function from the value variables to those variables
    postprocess: Callable | None = None  # that function over (chain, draw), compiled on the first run


#: pymc-numpyro's programs kept in this process, keyed by everything but the seed (made on first use, so
#: that importing this module does not import JAX)
_NUMPYRO_PROGRAMS = None


def _numpyro_programs():
    global _NUMPYRO_PROGRAMS
    if _NUMPYRO_PROGRAMS is None:
        from ._jax_common import ProgramCache

        _NUMPYRO_PROGRAMS = ProgramCache()
    return _NUMPYRO_PROGRAMS


def _build_numpyro(problem: Problem, settings: Settings, nuts: dict) -> _NumPyroProgram:
    """pm.sample's NumPyro objects for this problem, with its arguments: pymc.sampling.mcmc
    ._sample_external_nuts lifts target_accept and chain_method out of ``nuts``, and
    pymc.sampling.jax._sample_numpyro_nuts builds NUTS and MCMC from the rest."""
    from numpyro.infer import MCMC, NUTS  # optional, lazy
    from pymc.sampling.jax import get_jaxified_graph, get_jaxified_logp
    from pymc.util import get_default_varnames

    from ._jax_common import NumPyroChains

    model = build_model(problem.data, problem.prior, problem.parameterization)
    logp_fn = get_jaxified_logp(model, negative_logp=False)
    kernel_kwargs = {k: v for k, v in nuts.items() if k not in ("target_accept", "chain_method")}
    kernel_kwargs.setdefault("adapt_step_size", True)
    kernel_kwargs.setdefault("adapt_mass_matrix", True)
    kernel_kwargs.setdefault("dense_mass", False)
    kernel = NUTS(potential_fn=logp_fn, target_accept_prob=nuts["target_accept"], **kernel_kwargs)
    chains = NumPyroChains(nuts["chain_method"], phase="run")
    mcmc = MCMC(kernel, num_warmup=settings.warmup, num_samples=settings.draws, num_chains=settings.chains,
                postprocess_fn=None, chain_method=chains, progress_bar=False)
    if settings.chains == 1:
        chains.route_single_chain(mcmc)
    wanted = list(get_default_varnames(model.unobserved_value_vars, include_transformed=False))
    jax_fn = get_jaxified_graph(inputs=model.value_vars, outputs=wanted)
    return _NumPyroProgram(model, logp_fn, mcmc, chains, [v.name for v in wanted], jax_fn)


def _postprocess(program: _NumPyroProgram, raw: list) -> list:
    """PyMC's postprocessing (pymc.sampling.jax._postprocess_samples, "vmap", samples donated): the
    value variables' draws to the model's variables; compiled ahead of time on the program's first run."""
    from pymc.sampling.jax import _device_put

    from ._jax_common import jax

    with warnings.catch_warnings():  # as PyMC: donation may not apply on CPU
        warnings.filterwarnings("ignore", message="Some donated buffers were not usable", category=UserWarning)
        if program.postprocess is None:
            def process_fn(x):
                return jax.vmap(jax.vmap(program.jax_fn))(*_device_put(x, None))

            program.postprocess = jax.jit(process_fn, donate_argnums=0).lower(raw).compile()
        return program.postprocess(raw)


def run_kept(spec: Sampler, problem: Problem, settings: Settings) -> RunResult:
    """pm.sample(nuts_sampler="numpyro") as pymc.sampling.jax.sample_jax_nuts runs it, the program
    kept between seeds (see the module's docstring)."""
    # _jax_common first: it sets JAX's CPU device count before pymc.sampling.jax, whose import asks for
    # 100 devices through XLA_FLAGS when JAX has not started yet
    from ._jax_common import compile_spans, jax, require_compile_events, union_length  # noqa: I001

    import numpyro
    from pymc.sampling.jax import _get_batched_jittered_initial_points, _numpyro_stats_to_dict
    from pymc.util import _get_seeds_per_chain

    nuts = jax_nuts(spec, settings)
    s = settings
    key = (problem, s.chains, s.warmup, s.draws, s.target_accept, s.max_treedepth, nuts["chain_method"])
    programs = _numpyro_programs()
    t0 = time.perf_counter()
    with compile_spans(clear=False) as spans:
        program, reused = programs.get(key, lambda: _build_numpyro(problem, settings, nuts))
        try:
            (random_seed,) = _get_seeds_per_chain(pm_sample_seed(settings.seed, settings.chains), 1)
            initial_points = _get_batched_jittered_initial_points(
                model=program.model, chains=settings.chains, initvals=None, random_seed=random_seed,
                jitter=True, logp_fn=program.logp_fn)
            map_seed = jax.random.PRNGKey(random_seed)
            if settings.chains > 1:
                map_seed = jax.random.split(map_seed, settings.chains)
            entry, w_entry = time.perf_counter(), time.time()
            program.mcmc.run(map_seed, init_params=initial_points, extra_fields=NUMPYRO_FIELDS)
            raw = program.mcmc.get_samples(group_by_chain=True)
            stats = _numpyro_stats_to_dict(program.mcmc)
            jax.block_until_ready((raw, stats))
            exit_, w_exit = time.perf_counter(), time.time()
            run_compile = union_length(spans, within=(w_entry, w_exit))
            result = jax.block_until_ready(_postprocess(program, raw))
            post_compile = union_length(spans, within=(w_exit, time.time()))
        except BaseException:
            programs.discard(key)
            raise
    require_compile_events(reused, run_compile)
    posterior = posterior_arrays(dict(zip(program.var_names, result, strict=True)))
    stats = sample_stats(spec, {k: np.asarray(v) for k, v in stats.items()})
    check_float64(spec, posterior, stats)
    draws = to_datatree(posterior, stats, problem.data, problem.prior, spec.engine)
    timings = Timings(
        compile_s=(entry - t0) + run_compile + post_compile,
        inference_s=(exit_ - entry) - run_compile,
        total_s=time.perf_counter() - t0,
        compile_cached=reused or spans.cached,
    )
    manifest = sampler_manifest(
        spec, problem, settings, numpyro, nuts,
        sampler="numpyro NUTS as pm.sample(nuts_sampler='numpyro') runs it (pymc.sampling.jax.sample_jax_nuts "
                "in steps), the program kept for later seeds",
        **jax_sampler_fields(nuts["chain_method"], settings.chains, reused, spans),
        pm_sample_seed=random_seed,
        compile_reused=reused,
    )
    return RunResult(draws=draws, timings=timings, manifest=manifest)
