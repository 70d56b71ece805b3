"""BlackJAX's single-path Pathfinder (``blackjax.vi.pathfinder``) on the JAX log density of
models/jax_model.py (unconstrained, log-Jacobians included), float64 on CPU.

L-BFGS from uniform(-2, 2) on the unconstrained scale (Stan's initialisation, as the engines), its
settings BlackJAX's defaults (maxiter 30, maxcor 10, ...; ApproxSettings.iterations overrides
maxiter); the Gaussian of the iteration with the highest ELBO (200 draws each, BlackJAX's default) is
the approximation, and its draws and their log_q are BlackJAX's own (``pathfinder.sample``).
Multi-path Pathfinder is not registered: BlackJAX 1.7 has no multi-path API (the mixture's draws and
importance resampling would be this suite's code, not the library's).
"""

from __future__ import annotations

import importlib.util
import inspect
import time

import numpy as np

from models.problem import Problem

from . import _target
from ._jax_fit import TIMING_METHOD, compiled, data_args, jax, jax_manifest, jnp, timed
from .base import (
    LIBRARY_DEFAULT,
    ApproxResult,
    ApproxSettings,
    ApproxTimings,
    approx_manifest,
    check_fit_args,
)

if jax is not None:  # models.jax_model is written in jax.numpy
    from models import jax_model

__all__ = ["APPROXIMATORS", "BlackJAXPathfinder"]

INIT = "uniform(-2, 2) on the unconstrained scale (Stan's default), key fold_in(key(seed), 0)"


class BlackJAXPathfinder:
    name = "blackjax-pathfinder"
    ppl = "blackjax"

    def availability(self) -> str | None:
        if jax is None or importlib.util.find_spec("blackjax") is None:
            return "blackjax/jax is not installed: pip install 'eight-schools-ppl[blackjax]'"
        return None

    def fit(self, problem: Problem, settings: ApproxSettings) -> ApproxResult:
        check_fit_args(problem, settings)
        import blackjax  # optional: lazy
        from blackjax.vi import pathfinder

        t0 = time.perf_counter()
        model = jax_model.build(problem.prior, problem.parameterization, problem.J)
        defaults = {k: p.default for k, p in inspect.signature(pathfinder.approximate).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        lbfgs = {"maxiter": settings.iterations} if settings.iterations else {}
        y, sigma = data_args(problem)

        def fit(seed, y, sigma):
            k_init, k_fit = jax.random.split(jax.random.fold_in(jax.random.key(seed), 0))
            x0 = jax.random.uniform(k_init, (model.dim,), jnp.float64, minval=-2.0, maxval=2.0)
            state, info = pathfinder.approximate(k_fit, lambda x: model.log_density(x, y, sigma), x0, **lbfgs)
            return state, info.path.elbo

        def draw(seed, state):
            return pathfinder.sample(jax.random.fold_in(jax.random.key(seed), 1), state, settings.draws)

        seed = np.int64(settings.seed)
        built = time.perf_counter()
        fit_program, fit_compile = compiled(fit, seed, y, sigma)
        (state, path_elbo), fit_s = timed(fit_program, seed, y, sigma)
        draw_program, draw_compile = compiled(draw, seed, state)
        (U, lq), draw_s = timed(draw_program, seed, state)
        t_q = time.perf_counter()
        tree, lp = _target.to_datatree(problem, U, lq, "blackjax")
        draw_s += time.perf_counter() - t_q
        finite = path_elbo[np.isfinite(path_elbo)]
        n_elbo = defaults["num_samples"]
        diag = _target.diagnostics(
            lp, lq, elbo_final=float(state.elbo), elbo_trace_length=int(finite.size),
            evaluations=None,
            evaluations_note=("not exposed: BlackJAX's L-BFGS (optax) keeps no count of its line search's "
                              f"evaluations; the ELBO estimates took {n_elbo} density evaluations per "
                              "iteration on the path"),
            extra={"lbfgs_iterations": int(finite.size),  # path entries before L-BFGS stopped
                   "best_iteration": int(np.argmax(np.where(np.isfinite(path_elbo), path_elbo, -np.inf))),
                   "q_family": "gaussian (L-BFGS inverse-Hessian factors at the best iteration)"},
            notes="elbo_final is the ELBO of the chosen iteration (the path's highest)")
        manifest = approx_manifest(
            self.name, self.ppl, blackjax.__version__, problem, settings, **jax_manifest(),
            method="blackjax.vi.pathfinder (single path)",
            lbfgs={k: (lbfgs[k] if k in lbfgs else f"{defaults[k]} ({LIBRARY_DEFAULT})")
                   for k in ("maxiter", "maxcor", "maxls", "gtol", "ftol")},
            elbo_draws_per_iteration=f"{n_elbo} ({LIBRARY_DEFAULT})",
            init=INIT,
            draws_from="pathfinder.sample at the best iteration, key fold_in(key(seed), 1); log_q BlackJAX's",
            timing_method=TIMING_METHOD)
        timings = ApproxTimings(compile_s=(built - t0) + fit_compile + draw_compile, fit_s=fit_s, draw_s=draw_s,
                                total_s=time.perf_counter() - t0)
        return ApproxResult(draws=tree, timings=timings, manifest=manifest, diagnostics=diag)


APPROXIMATORS = {"blackjax-pathfinder": BlackJAXPathfinder()}
