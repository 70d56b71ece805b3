"""BlackJAX engine: BlackJAX's NUTS after its window adaptation, on the JAX log density of
models/jax_model.py (unconstrained, with the log-Jacobians), JAX on CPU in float64.

Each chain: initial position uniform(-2, 2) on the unconstrained scale (Stan's default), then
``blackjax.window_adaptation`` (Stan's windows, a diagonal inverse mass matrix, dual averaging to
``target_accept``) for ``warmup`` steps, then ``draws`` NUTS transitions at the adapted step size and
mass matrix; at most ``max_treedepth`` doublings (BlackJAX's ``max_num_doublings``, so at most
2**max_treedepth - 1 leapfrog steps, as Stan). Chain c's key is ``fold_in(key(seed), c)``.

The warmup and the sampling are each one compiled program, mapped over the chains (CHAIN_METHOD),
with the seed and the data as arguments: a program (problem and settings, all but the seed and the
data values) is compiled once per process and kept (ProgramCache), so another seed, or other data
with the same J, compiles nothing.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.problem import Problem

# jax and jnp are None when JAX is missing; _jax_common enables float64 before any JAX array exists
from ._jax_common import (
    ChainPrograms,
    ProgramCache,
    chain_method_for,
    compile_spans,
    constrained_log_density,
    jax,
    jax_manifest,
    jax_run_manifest,
    jnp,
    phase_timings,
    require_compile_events,
    union_length,
)
from .base import RunResult, Settings, base_manifest, check_problem, check_run_args
from .convert import to_datatree, tree_depth_from_steps

if jax is not None:  # models.jax_model is written in jax.numpy
    from models import jax_model
else:
    jax_model = None

# How the chains run, measured on this suite's 2-core development machine, quiet (Settings defaults: 4
# chains x 1000 + 1000 draws, Rubin's data, non-centred; kept programs; medians of 20 runs of each,
# interleaved): warmup + sampling 0.028 s "parallel" (pmap, one chain per XLA CPU device), 0.047 s
# "sequential" (that one-device program chain after chain), 0.166 s "vectorized" (one vmapped program:
# every NUTS step of the four chains in lock-step, as long as the longest of their trajectories).
# Where there are fewer devices than chains, "parallel" becomes "sequential". A tuning job may
# override this.
CHAIN_METHOD = "parallel"
INIT = "uniform(-2, 2) on the unconstrained scale (Stan's default); chain c's key is fold_in(key(seed), c)"
INITIAL_STEP_SIZE = 1.0  #: where BlackJAX's dual averaging starts (window_adaptation's default)
DIVERGENCE_THRESHOLD = 1000.0  #: energy error that marks a transition divergent (BlackJAX's and Stan's)

TIMING_METHOD = (
    "The warmup program (init + blackjax.window_adaptation) then the sampling program (NUTS draws), "
    "each one executable mapped over the chains, timed to block_until_ready. Both are lowered and "
    "compiled ahead of time on a program's first run and kept in process for later seeds "
    "(ProgramCache); JAX's compile events (jax.monitoring spans of tracing, lowering and XLA "
    "compilation, overlaps merged) inside each phase are subtracted from it and reported as "
    "compile_s, ~0 when the program was kept (manifest 'program'). A first run loads its executables "
    "from JAX's persistent compilation cache where they are there (compile_cached says so)."
)

#: this process's compiled programs, keyed by everything but the seed and the data values
PROGRAMS = ProgramCache()


@dataclass
class _Program:
    model: Any  # models.jax_model.JaxModel
    chains: ChainPrograms
    warmup: Callable
    sample: Callable


def _program_key(problem: Problem, settings: Settings, chain_method: str) -> tuple:
    s = settings
    return (problem.prior.mu, problem.prior.tau, problem.parameterization, problem.J,
            s.chains, s.warmup, s.draws, s.target_accept, s.max_treedepth, chain_method)


def _chain_keys(seed, chain):
    """(init, warmup, sampling) keys of one chain."""
    return jax.random.split(jax.random.fold_in(jax.random.key(seed), chain), 3)


def _build(problem: Problem, settings: Settings, chain_method: str) -> _Program:
    import blackjax  # optional: lazy, so that availability() answers without it
    from blackjax.adaptation.base import get_filter_adapt_info_fn

    model = jax_model.build(problem.prior, problem.parameterization, problem.J)
    doublings = settings.max_treedepth

    def warmup(seed, chain, y, sigma):
        """One chain: its initial position, then the window adaptation from it."""
        k_init, k_warm, _ = _chain_keys(seed, chain)
        position = jax.random.uniform(k_init, (model.dim,), jnp.float64, minval=-2.0, maxval=2.0)

        def logdensity(x):
            return model.log_density(x, y, sigma)

        if settings.warmup == 0:
            state = blackjax.nuts.init(position, logdensity)
            return state, jnp.float64(INITIAL_STEP_SIZE), jnp.ones(model.dim)
        adaptation = blackjax.window_adaptation(
            blackjax.nuts, logdensity,
            is_mass_matrix_diagonal=True,
            initial_step_size=INITIAL_STEP_SIZE,
            target_acceptance_rate=settings.target_accept,
            adaptation_info_fn=get_filter_adapt_info_fn(),  # keep no per-step warmup record
            max_num_doublings=doublings,
        )
        (state, params), _ = adaptation.run(k_warm, position, num_steps=settings.warmup)
        return state, params["step_size"], params["inverse_mass_matrix"]

    def sample(seed, chain, state, step_size, inverse_mass_matrix, y, sigma):
        """One chain: ``draws`` NUTS transitions with the adapted parameters."""
        _, _, k_sample = _chain_keys(seed, chain)
        nuts = blackjax.nuts(lambda x: model.log_density(x, y, sigma), step_size, inverse_mass_matrix,
                             max_num_doublings=doublings, divergence_threshold=DIVERGENCE_THRESHOLD)

        def step(state, key):
            state, info = nuts.step(key, state)
            return state, (state.position, state.logdensity, info.is_divergent, info.num_integration_steps,
                           info.energy, info.acceptance_rate)

        _, (positions, lp, diverging, n_steps, energy, acceptance) = jax.lax.scan(
            step, state, jax.random.split(k_sample, settings.draws))
        stats = {"diverging": diverging, "n_steps": n_steps, "energy": energy, "lp": lp,
                 "acceptance_rate": acceptance, "step_size": jnp.full(settings.draws, step_size)}
        return jax.vmap(model.constrain)(positions), stats

    return _Program(model, ChainPrograms(chain_method), warmup, sample)


class BlackJAXEngine:
    name = "blackjax"
    ppl = "blackjax"

    def availability(self) -> str | None:
        if jax is None or importlib.util.find_spec("blackjax") is None:
            return "blackjax/jax is not installed: pip install 'eight-schools-ppl[blackjax]'"
        return None

    def run(self, problem: Problem, settings: Settings) -> RunResult:
        check_run_args(problem, settings)
        import blackjax  # optional: lazy

        chain_method = chain_method_for(CHAIN_METHOD, settings.chains)
        key = _program_key(problem, settings, chain_method)
        seed = np.asarray(settings.seed, dtype=np.int64)
        chain = np.arange(settings.chains, dtype=np.int64)
        y = np.asarray(problem.data.y_array, dtype=np.float64)
        sigma = np.asarray(problem.data.sigma_array, dtype=np.float64)
        t0 = time.perf_counter()
        with compile_spans(clear=False) as spans:
            program, reused = PROGRAMS.get(key, lambda: _build(problem, settings, chain_method))
            built = time.perf_counter()
            try:
                state, step_size, imm = program.chains.run(
                    "warmup", program.warmup, (seed, chain, y, sigma), in_axes=(None, 0, None, None))
                jax.block_until_ready((state, step_size, imm))
                warmed = time.perf_counter()
                warmup_compile = union_length(spans)
                spans.clear()
                post, stats = program.chains.run(
                    "sample", program.sample, (seed, chain, state, step_size, imm, y, sigma),
                    in_axes=(None, 0, 0, 0, 0, None, None))
                jax.block_until_ready((post, stats))
                sampled = time.perf_counter()
                run_compile = union_length(spans)
            except BaseException:
                PROGRAMS.discard(key)
                raise
        require_compile_events(reused, warmup_compile)
        posterior = {k: np.asarray(v) for k, v in post.items() if not (k == "tau" and problem.prior.tau_fixed)}
        n_steps = np.asarray(stats["n_steps"])
        sample_stats = {k: np.asarray(v) for k, v in stats.items()}
        sample_stats["tree_depth"] = tree_depth_from_steps(n_steps)
        draws = to_datatree(posterior, sample_stats, problem.data, problem.prior, "blackjax")
        timings = phase_timings(t0, built, warmed, sampled, warmup_compile, run_compile, reused or spans.cached)
        manifest = base_manifest(
            self.name, self.ppl, blackjax.__version__, problem, settings,
            **jax_manifest(),
            sampler="blackjax.nuts (multinomial, iterative; velocity Verlet)",
            adaptation=(f"blackjax.window_adaptation: Stan's windows, initial step size {INITIAL_STEP_SIZE}, "
                        f"target_acceptance_rate {settings.target_accept}"),
            max_num_doublings=settings.max_treedepth,
            divergence_threshold=DIVERGENCE_THRESHOLD,
            init=INIT,
            mass_matrix="diagonal, adapted (blackjax.window_adaptation, is_mass_matrix_diagonal=True)",
            **jax_run_manifest(chain_method, settings.chains, reused, spans),
            timing_method=TIMING_METHOD,
        )
        return RunResult(draws=draws, timings=timings, manifest=manifest)

    def log_density(self, problem: Problem) -> Callable[[Mapping], float]:
        """models/jax_model.py's constrained density at a point: no Jacobian, -inf outside the prior's
        support."""
        check_problem(problem)
        return constrained_log_density(problem)


ENGINE = BlackJAXEngine()
