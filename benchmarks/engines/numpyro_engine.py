"""NumPyro engine: NumPyro's NUTS on models/numpyro_model.py, JAX on CPU in float64.

A worker process lives across many runs, so each program (the problem and the settings, all but the
seed) keeps its ``MCMC`` object and its compiled warmup and sampling executables in a small
in-process cache: another seed of a kept program traces and compiles nothing.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.numpyro_model import build_model
from models.problem import Problem

# jax and jnp are None when JAX is missing; _jax_common enables float64 before any JAX array exists
from ._jax_common import (
    NumPyroChains,
    ProgramCache,
    chain_method_for,
    compile_spans,
    device_label,
    device_scope,
    jax,
    jax_manifest,
    jax_run_manifest,
    jnp,
    phase_timings,
    require_compile_events,
    union_length,
)
from .base import RunResult, Settings, base_manifest, check_problem, check_run_args
from .convert import point_arrays, to_datatree, tree_depth_from_steps

# How the chains run, a measured choice (results/tuning/TUNING.md, nox -s tune): "parallel" (pmap, one
# chain per XLA CPU device; _jax_common asks for the devices) against "vectorized" (one vmapped program
# runs all chains in lock-step, every NUTS step as long as the slowest chain's) and "sequential". Where
# there are fewer devices than chains, "parallel" becomes "sequential" (chain_method_for), and the
# manifest says which ran.
CHAIN_METHOD = "parallel"
INIT = "init_to_uniform(radius=2)"
FIELDS = ("diverging", "num_steps", "energy", "potential_energy", "adapt_state.step_size", "accept_prob")

TIMING_METHOD = (
    "mcmc.warmup() then mcmc.run() from the post-warmup state, each timed to block_until_ready. The "
    "chains run through executables compiled ahead of time on a program's first run (NumPyro's "
    "chain_method callable: pmap, vmap, or the one-device pmap once per chain) and kept in process "
    "for its later seeds (ProgramCache, least recently used evicted). JAX's own compile events "
    "(jax.monitoring spans of jaxpr tracing, MLIR lowering and XLA compilation, overlaps merged) are "
    "subtracted from each call: warmup_s and sampling_s are the calls' wall time minus their compile "
    "time; compile_s = model build + both calls' compile time, ~0 when the program was kept "
    "(manifest 'program'). A first run loads its XLA executables from JAX's persistent compilation "
    "cache where they are there (_jax_common.compilation_cache_dir; compile_cached says so)."
)

#: this process's compiled programs, keyed by everything but the seed
PROGRAMS = ProgramCache()


@dataclass
class _Program:
    mcmc: Any
    chains: NumPyroChains
    #: the unconstrained latent sites' shapes (NumPyro's init_params layout), for superchain initial points
    sites: dict[str, tuple[int, ...]]


def _program_key(problem: Problem, settings: Settings, chain_method: str) -> tuple:
    """Everything a compiled program depends on: the data are constants of NumPyro's model."""
    s = settings
    return (problem.data.y, problem.data.sigma, problem.prior.mu, problem.prior.tau, problem.parameterization,
            s.chains, s.warmup, s.draws, s.target_accept, s.max_treedepth, chain_method, s.device)


def _build(problem: Problem, settings: Settings, chain_method: str, superchains: bool) -> _Program:
    from numpyro.infer import MCMC, NUTS, init_to_uniform  # NumPyro stays optional: lazy
    from numpyro.infer.util import initialize_model

    chains = NumPyroChains(chain_method)
    model = build_model(problem.data, problem.prior, problem.parameterization)
    sites = {}
    if superchains:  # the latent sites and their shapes, from one trace of the model
        z = initialize_model(jax.random.PRNGKey(0), model, init_strategy=init_to_uniform(radius=2))[0].z
        sites = {name: tuple(np.shape(v)) for name, v in z.items()}
    kernel = NUTS(
        model,
        target_accept_prob=settings.target_accept,
        max_tree_depth=settings.max_treedepth,
        init_strategy=init_to_uniform(radius=2),
        dense_mass=False,
        adapt_mass_matrix=True,
        adapt_step_size=True,
    )
    mcmc = MCMC(kernel, num_warmup=settings.warmup, num_samples=settings.draws, num_chains=settings.chains,
                chain_method=chains, progress_bar=False)
    if settings.chains == 1:
        chains.route_single_chain(mcmc)
    return _Program(mcmc, chains, sites)


def superchain_inits(sites: dict[str, tuple[int, ...]], superchains: int, size: int, seed: int) -> dict:
    """NumPyro's init_params for ``superchains`` x ``size`` chains: one point per superchain, drawn as
    init_to_uniform(radius=2) draws it (uniform(-2, 2) on the unconstrained scale; every such point of
    this model has a finite density), from numpy's default_rng(seed), repeated over its ``size`` chains."""
    rng = np.random.default_rng(seed)
    return {name: jnp.asarray(np.repeat(rng.uniform(-2.0, 2.0, (superchains, *shape)), size, axis=0))
            for name, shape in sites.items()}


class NumPyroEngine:
    """NumPyro's NUTS; ``chain_method`` None reads the module's CHAIN_METHOD at run time (the tuned,
    shipped choice); ``superchains`` (chains -> K), when given, starts the chains in K superchains of
    chains / K consecutive chains that share an initial point, recorded as the posterior's
    ``superchain_size`` (nested R-hat, benchmarks/runpath/diagnose.py)."""

    def __init__(self, name: str = "numpyro", *, chain_method: str | None = None,
                 superchains: Callable[[int], int] | None = None, sampler: str = "numpyro NUTS") -> None:
        self.name = name
        self.ppl = "numpyro"
        self.chain_method = chain_method
        self.superchains = superchains
        self.sampler = sampler

    def availability(self) -> str | None:
        if jax is None or importlib.util.find_spec("numpyro") is None:
            return "numpyro/jax is not installed: pip install 'eight-schools-ppl[numpyro]'"
        return None

    def run(self, problem: Problem, settings: Settings) -> RunResult:
        check_run_args(problem, settings)
        import numpyro

        chain_method = chain_method_for(self.chain_method or CHAIN_METHOD, settings.chains)
        k = self.superchains(settings.chains) if self.superchains is not None else None
        key = (*_program_key(problem, settings, chain_method), k is not None)
        t0 = time.perf_counter()
        with device_scope(settings.device), compile_spans(clear=False) as spans:
            program, reused = PROGRAMS.get(key, lambda: _build(problem, settings, chain_method, k is not None))
            mcmc = program.mcmc
            init_params = None
            if k is not None and settings.chains > 1:  # NumPyro draws a lone chain's point itself
                init_params = superchain_inits(program.sites, k, settings.chains // k, settings.seed)
            built = time.perf_counter()
            spans.clear()  # the build's own compile events (a model trace) are in built - t0 already
            try:
                program.chains.phase = "warmup"
                mcmc.warmup(jax.random.PRNGKey(settings.seed), init_params=init_params)
                jax.block_until_ready(mcmc.post_warmup_state)
                warmed = time.perf_counter()
                warmup_compile = union_length(spans)
                spans.clear()
                program.chains.phase = "sample"
                mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=FIELDS)
                samples = mcmc.get_samples(group_by_chain=True)
                extra = mcmc.get_extra_fields(group_by_chain=True)
                jax.block_until_ready((samples, extra))
                sampled = time.perf_counter()
                run_compile = union_length(spans)
            except BaseException:
                PROGRAMS.discard(key)
                raise
        require_compile_events(reused, warmup_compile)
        n_steps = np.asarray(extra["num_steps"])
        draws = to_datatree(
            {k: np.asarray(v) for k, v in samples.items()},
            {
                "diverging": np.asarray(extra["diverging"]),
                "tree_depth": tree_depth_from_steps(n_steps),
                "n_steps": n_steps,
                "step_size": np.asarray(extra["adapt_state.step_size"]),
                "energy": np.asarray(extra["energy"]),
                "lp": -np.asarray(extra["potential_energy"]),
                "acceptance_rate": np.asarray(extra["accept_prob"]),
            },
            problem.data, problem.prior, "numpyro",
        )
        init, superchains = INIT, {}
        if k is not None:
            m = settings.chains // k
            draws["posterior"].attrs["superchain_size"] = m
            superchains = {"superchains": k, "superchain_size": m}
            init = (f"{INIT}, one point per superchain: {k} superchains of {m} consecutive chains "
                    "(uniform(-2, 2) on the unconstrained scale from numpy default_rng(seed))")
        timings = phase_timings(t0, built, warmed, sampled, warmup_compile, run_compile, reused or spans.cached)
        manifest = base_manifest(
            self.name, self.ppl, numpyro.__version__, problem, settings,
            **jax_manifest(),
            sampler=self.sampler,
            init=init,
            mass_matrix="diagonal, adapted (Stan-style windowed adaptation)",
            **jax_run_manifest(chain_method, settings.chains, reused, spans),
            timing_method=TIMING_METHOD,
            device=device_label(settings.device),
            **superchains,
        )
        return RunResult(draws=draws, timings=timings, manifest=manifest)

    def log_density(self, problem: Problem) -> Callable[[Mapping], float]:
        """``numpyro.infer.util.log_density`` of the model at a constrained point (no Jacobian);
        -inf where a value is outside its site's support (checked here, with NumPyro's own argument
        validation off so that, e.g., tau < 0 gives -inf rather than an error)."""
        check_problem(problem)
        import numpyro  # optional, lazy
        from numpyro.infer.util import log_density as numpyro_log_density

        data, prior, param = problem.data, problem.prior, problem.parameterization
        model = build_model(data, prior, param)

        def fn(point: Mapping) -> float:
            arrays = point_arrays(point, data, prior, param)
            if "tau" in arrays and arrays["tau"] <= 0:  # the closed interval of uniform(0, u) admits 0
                return -np.inf
            params = {n: jnp.asarray(v) for n, v in arrays.items()}
            with numpyro.validation_enabled(False):
                lp, trace = numpyro_log_density(model, (), {}, params)
            for site in trace.values():
                if site["type"] == "sample" and not site["is_observed"]:
                    if not bool(jnp.all(site["fn"].support(site["value"]))):
                        return -np.inf
            return float(lp)

        return fn


ENGINE = NumPyroEngine()
