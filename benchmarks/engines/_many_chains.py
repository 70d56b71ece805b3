"""What the many-chain BlackJAX engines share (blackjax-chees, blackjax-meads, blackjax-mclmc,
blackjax-mclmc-adjusted): superchains and their initial points, the kept compiled programs of the two
phases, the scan over draws, and the assembly of draws, timings and manifest.

Each engine module supplies an :class:`Algorithm`: its option defaults and checks, and ``build``,
which returns the two programs of a problem, each one jitted function over *all* chains at once:

* ``warmup(seed, y, sigma) -> carry``: initial points, then the algorithm's own cross-chain (or
  per-chain, vmapped) adaptation; ``carry`` holds the chains' states and the tuned parameters.
* ``sample(seed, carry, y, sigma) -> (positions, stats)``: ``draws`` transitions of every chain
  (:func:`scan_draws`), positions (draw, chain, dim) on the unconstrained scale, stats (draw, chain).

Superchains (Margossian et al. 2024, nested R-hat): chains are grouped in ``K`` superchains of ``M``
consecutive chains that share one initial point, uniform(-2, 2) on the unconstrained scale (Stan's
default) drawn from a key made from the seed only. ``M`` = chains // K for the largest K <= 16 that
divides chains, when chains >= 8 and such a K >= 4 exists; otherwise M = 1 (every chain its own point).
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.problem import Problem

from ._jax_common import (
    ProgramCache,
    compile_spans,
    constrained_log_density,
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
from .base import RunResult, Settings, SettingsError, base_manifest, check_problem, check_run_args
from .convert import to_datatree

if jax is not None:
    from models import jax_model
else:
    jax_model = None

__all__ = ["Algorithm", "ManyChainEngine", "superchain_size", "ensemble_size", "initial_positions", "scan_draws",
           "pooled", "MAX_SUPERCHAINS", "MIN_ENSEMBLE", "INIT"]

#: at most this many superchains (K); M = chains // K chains share each initial point
MAX_SUPERCHAINS = 16
#: fewer chains than this: one superchain per chain (M = 1)
MIN_CHAINS_FOR_SUPERCHAINS = 8
#: ChEES and MEADS adapt from statistics across chains: with fewer chains than this, the warmup runs this
#: many (the extra chains from their own initial points) and keeps the first ``chains`` for the draws
MIN_ENSEMBLE = 32

INIT = ("uniform(-2, 2) on the unconstrained scale (Stan's default), one point per superchain of M "
        "consecutive chains; superchain s's point from fold_in(split(key(seed))[0], s)")

TIMING_METHOD = (
    "The warmup program (initial points + the algorithm's adaptation, all chains in one jitted program) "
    "then the sampling program (the draws, all chains vmapped in one lax.scan), each timed to "
    "block_until_ready. Both are lowered and compiled ahead of time on a program's first run and kept in "
    "process for later seeds (ProgramCache); JAX's compile events inside each phase are subtracted from it "
    "and reported as compile_s, ~0 when the program was kept (manifest 'program')."
)


def superchain_size(chains: int) -> int:
    """M, the chains per superchain (see the module docstring)."""
    if chains < MIN_CHAINS_FOR_SUPERCHAINS:
        return 1
    for k in range(min(MAX_SUPERCHAINS, chains), 3, -1):
        if chains % k == 0:
            return chains // k
    return 1


def ensemble_size(chains: int, multiple: int = 1, minimum: int = MIN_ENSEMBLE) -> int:
    """Chains in a cross-chain warmup: at least ``minimum``, a multiple of ``multiple``."""
    n = max(chains, minimum)
    return -(-n // multiple) * multiple


def superchain_index(chains: int, ensemble: int) -> np.ndarray:
    """Each warmup chain's initial point: chain c < chains is in superchain c // M; the extra chains of a
    padded ensemble each get their own point after the K superchains."""
    m = superchain_size(chains)
    k = chains // m
    return np.concatenate([np.arange(chains) // m, k + np.arange(ensemble - chains)]).astype(np.int64)


def keys(seed):
    """(initial points, warmup, sampling) keys of a run: from the seed only."""
    return jax.random.split(jax.random.key(seed), 3)


def initial_positions(key, index: np.ndarray, dim: int):
    """(len(index), dim) initial points, uniform(-2, 2); chains with the same index share one."""
    def one(s):
        return jax.random.uniform(jax.random.fold_in(key, s), (dim,), jnp.float64, minval=-2.0, maxval=2.0)
    return jax.vmap(one)(jnp.asarray(index))


def scan_draws(step: Callable, states: Any, key, draws: int, chains: int):
    """``draws`` transitions of every chain: ``step(keys, states) -> (states, (position, stats))`` takes
    one key per chain; returns the positions (draw, chain, dim) and stats (draw, chain)."""

    def body(states, k):
        states, out = step(jax.random.split(k, chains), states)
        return states, out

    _, (positions, stats) = jax.lax.scan(body, states, jax.random.split(key, draws))
    return positions, stats


def pooled(values, how: str = "median"):
    """One parameter from per-chain tuned values (leading axis the chains)."""
    return jnp.median(values, axis=0) if how == "median" else jnp.mean(values, axis=0)


@dataclass(frozen=True)
class Algorithm:
    """One many-chain algorithm: its name in words, option defaults, and the builder of its programs."""

    name: str  #: registry name, e.g. "blackjax-chees"
    sampler: str  #: what draws, in words (manifest "sampler")
    #: option -> (default, check(value) -> str | None: why the value is unusable)
    options: Mapping[str, tuple[Any, Callable[[Any], str | None]]]
    #: build(model, settings, opts, chains) -> (warmup, sample) one-run functions (see module docstring)
    build: Callable
    #: manifest(settings, opts, chains) -> the algorithm's own manifest fields
    manifest: Callable
    #: ensemble(chains, opts): the warmup's chain count (a padded ensemble for cross-chain adaptation)
    ensemble: Callable[[int, dict], int] = lambda chains, opts: chains
    min_warmup: int = 1


def positive(v) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    return None if ok else "must be a number > 0"


def probability(v) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1
    return None if ok else "must be in (0, 1)"


def one_of(*choices) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(map(str, choices))}"


@dataclass
class _Program:
    warmup: Callable
    sample: Callable
    compiled: dict = field(default_factory=dict)

    def run(self, phase: str, args: tuple):
        """The phase's kept executable on ``args`` (lowered and compiled on its first call)."""
        exe = self.compiled.get(phase)
        if exe is None:
            fn = self.warmup if phase == "warmup" else self.sample
            exe = self.compiled[phase] = jax.jit(fn).lower(*args).compile()
        return exe(*args)


class ManyChainEngine:
    """An :class:`~benchmarks.engines.base.Engine` running one :class:`Algorithm` on every chain at once."""

    ppl = "blackjax"

    def __init__(self, algorithm: Algorithm) -> None:
        self.algorithm = algorithm
        self.name = algorithm.name
        self.programs = ProgramCache()

    def availability(self) -> str | None:
        if jax is None or importlib.util.find_spec("blackjax") is None:
            return "blackjax/jax is not installed: pip install 'eight-schools-ppl[blackjax]'"
        return None

    def options(self, settings: Settings) -> dict:
        """The algorithm's options: defaults, overridden by Settings.options; unusable values refused."""
        alg = self.algorithm
        opts = {}
        for name, (default, check) in alg.options.items():
            value = settings.option(name, default)
            why = check(value)
            if why is not None:
                raise SettingsError(f"options.{name} = {value!r}: {why} (engine {self.name})")
            opts[name] = value
        for name, value in settings.options:
            if name not in alg.options:
                takes = ", ".join(alg.options) or "none"
                raise SettingsError(f"options.{name} = {value!r}: engine {self.name} has no such option (it "
                                    f"takes {takes})")
        if settings.warmup < alg.min_warmup:
            raise SettingsError(f"warmup = {settings.warmup}: engine {self.name} tunes during its warmup; "
                                f"needs warmup >= {alg.min_warmup}")
        return opts

    def run(self, problem: Problem, settings: Settings) -> RunResult:
        check_run_args(problem, settings)
        import blackjax  # optional: lazy

        opts = self.options(settings)
        alg = self.algorithm
        key = (problem.prior.mu, problem.prior.tau, problem.parameterization, problem.J, settings.chains,
               settings.warmup, settings.draws, tuple(sorted(opts.items())), settings.device)
        seed = np.asarray(settings.seed, dtype=np.int64)
        y = np.asarray(problem.data.y_array, dtype=np.float64)
        sigma = np.asarray(problem.data.sigma_array, dtype=np.float64)
        with device_scope(settings.device):
            t0 = time.perf_counter()
            with compile_spans(clear=False) as spans:
                def build():
                    model = jax_model.build(problem.prior, problem.parameterization, problem.J)
                    return _Program(*alg.build(model, settings, opts, settings.chains))

                program, reused = self.programs.get(key, build)
                built = time.perf_counter()
                try:
                    carry = program.run("warmup", (seed, y, sigma))
                    jax.block_until_ready(carry)
                    warmed = time.perf_counter()
                    warmup_compile = union_length(spans)
                    spans.clear()
                    post, stats = program.run("sample", (seed, carry, y, sigma))
                    jax.block_until_ready((post, stats))
                    sampled = time.perf_counter()
                    run_compile = union_length(spans)
                except BaseException:
                    self.programs.discard(key)
                    raise
            require_compile_events(reused, warmup_compile)
            run_fields = jax_run_manifest("vectorized", settings.chains, reused, spans)
            label = device_label(settings.device)
            backend = jax.default_backend()
        posterior = {k: np.swapaxes(np.asarray(v), 0, 1) for k, v in post.items()
                     if not (k == "tau" and problem.prior.tau_fixed)}
        sample_stats = {k: np.swapaxes(np.asarray(v), 0, 1) for k, v in stats.items()}
        draws = to_datatree(posterior, sample_stats, problem.data, problem.prior, "blackjax")
        m = superchain_size(settings.chains)
        draws["posterior"].attrs["superchain_size"] = int(m)
        timings = phase_timings(t0, built, warmed, sampled, warmup_compile, run_compile, reused or spans.cached)
        jax_fields = jax_manifest()
        jax_fields["backend"] = backend
        manifest = base_manifest(
            self.name, self.ppl, blackjax.__version__, problem, settings,
            **jax_fields,
            sampler=alg.sampler,
            options=opts,
            **alg.manifest(settings, opts, settings.chains),
            init=INIT,
            superchains=settings.chains // m,
            superchain_size=m,
            warmup_chains=alg.ensemble(settings.chains, opts),
            device=label,
            **run_fields,
            timing_method=TIMING_METHOD,
        )
        return RunResult(draws=draws, timings=timings, manifest=manifest)

    def log_density(self, problem: Problem) -> Callable[[Mapping], float]:
        """models/jax_model.py's constrained density at a point (no Jacobian), as the blackjax engine."""
        check_problem(problem)
        return constrained_log_density(problem)


def constrained(model, positions):
    """(draw, chain, dim) unconstrained positions -> the constrained parameters, (draw, chain[, J])."""
    return jax.vmap(jax.vmap(model.constrain))(positions)


def stats_dict(*, diverging, n_steps, step_size, energy, lp, acceptance_rate, shape):
    """The sample_stats (draw, chain) of base.SAMPLE_STATS; tree_depth 0 (no tree: not NUTS)."""
    def full(v, dtype):
        return jnp.broadcast_to(jnp.asarray(v, dtype), shape)
    return {"diverging": full(diverging, bool), "n_steps": full(n_steps, jnp.int64),
            "step_size": full(step_size, jnp.float64), "energy": full(energy, jnp.float64),
            "lp": full(lp, jnp.float64), "acceptance_rate": full(acceptance_rate, jnp.float64),
            "tree_depth": jnp.zeros(shape, jnp.int64)}
