"""BlackJAX's Gaussian variational inference (``blackjax.meanfield_vi``, ``blackjax.fullrank_vi``) on
the JAX log density of models/jax_model.py (unconstrained, log-Jacobians included), float64 on CPU.

BlackJAX has no default optimiser or number of steps: the suite uses optax.adam(LEARNING_RATE) for
NUM_STEPS steps (ApproxSettings.learning_rate / iterations override them) from BlackJAX's own
initialisation (mean 0; meanfield log-sd -2, fullrank identity covariance); the Monte Carlo draws per
step (num_samples), the objective (KL) and the STL gradient estimator are BlackJAX's defaults.
The fitted q is a Gaussian on the unconstrained vector: log_q is computed here from its mean and
Cholesky factor (tests/test_approx_methods.py checks it against BlackJAX's own q density).
"""

from __future__ import annotations

import importlib.util
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
try:  # optax comes with BlackJAX; it is not one of the lazily imported PPLs, so it loads with this module
    import optax
except ImportError:
    optax = None

__all__ = ["APPROXIMATORS", "BlackJAXGaussianVI", "NUM_STEPS", "LEARNING_RATE", "unflatten_cholesky"]

NUM_STEPS = 10_000  #: the suite's choice (BlackJAX has no default)
LEARNING_RATE = 0.01  #: optax.adam's step size: the suite's choice (BlackJAX has no default optimiser)


def unflatten_cholesky(chol_params: np.ndarray, dim: int) -> np.ndarray:
    """BlackJAX fullrank_vi's Cholesky factor from its parameters: exp of the first ``dim`` on the
    diagonal, the rest filling the strict lower triangle row by row (its ``_unflatten_cholesky``)."""
    chol = np.zeros((dim, dim))
    chol[np.tril_indices(dim, k=-1)] = chol_params[dim:]
    return chol + np.diag(np.exp(chol_params[:dim]))


class BlackJAXGaussianVI:
    ppl = "blackjax"

    def __init__(self, name: str, family: str) -> None:
        self.name, self.family = name, family

    def availability(self) -> str | None:
        if jax is None or optax is None or importlib.util.find_spec("blackjax") is None:
            return "blackjax/jax/optax is not installed: pip install 'eight-schools-ppl[blackjax]'"
        return None

    def fit(self, problem: Problem, settings: ApproxSettings) -> ApproxResult:
        check_fit_args(problem, settings)
        import blackjax  # optional: lazy

        t0 = time.perf_counter()
        model = jax_model.build(problem.prior, problem.parameterization, problem.J)
        steps = settings.iterations or NUM_STEPS
        lr = settings.learning_rate or LEARNING_RATE
        algorithm = blackjax.meanfield_vi if self.family == "meanfield" else blackjax.fullrank_vi
        optimizer = optax.adam(lr)
        y, sigma = data_args(problem)

        def vi(y, sigma):
            return algorithm(lambda x: model.log_density(x, y, sigma), optimizer)

        def fit(seed, y, sigma):
            algo = vi(y, sigma)

            def step(state, key):
                state, info = algo.step(key, state)
                return state, info.elbo

            keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 0), steps)
            state, losses = jax.lax.scan(step, algo.init(jnp.zeros(model.dim)), keys)
            return state[0], state[1], losses  # mean, (rho | chol_params), the loss (-ELBO) trace

        def draw(seed, mean, scale_params):
            key = jax.random.fold_in(jax.random.key(seed), 1)
            state = (blackjax.vi.meanfield_vi.MFVIState if self.family == "meanfield"
                     else blackjax.vi.fullrank_vi.FRVIState)(mean, scale_params, None)
            return vi(y, sigma).sample(key, state, settings.draws)

        seed = np.int64(settings.seed)
        built = time.perf_counter()
        fit_program, fit_compile = compiled(fit, seed, y, sigma)
        (mean, scale_params, losses), fit_s = timed(fit_program, seed, y, sigma)
        draw_program, draw_compile = compiled(draw, seed, mean, scale_params)
        U, draw_s = timed(draw_program, seed, mean, scale_params)
        t_q = time.perf_counter()
        chol = np.exp(scale_params) if self.family == "meanfield" else unflatten_cholesky(scale_params, model.dim)
        lq = _target.gaussian_log_q(U, mean, chol)
        tree, lp = _target.to_datatree(problem, U, lq, "blackjax")
        draw_s += time.perf_counter() - t_q
        per_step = 100  # as_top_level_api's num_samples default
        cov = np.diag(chol**2) if chol.ndim == 1 else chol @ chol.T
        diag = _target.diagnostics(
            lp, lq, elbo_final=-float(losses[-1]), elbo_trace_length=int(losses.size),
            evaluations=steps * per_step,
            evaluations_note=(f"gradient evaluations of log p: {steps} steps x {per_step} Monte Carlo draws per "
                              "step (derived: BlackJAX keeps no counter)"),
            extra={"q_family": f"gaussian ({self.family})", "q_mean": mean.tolist(), "q_cov": cov.tolist(),
                   "elbo_last_100_mean": -float(np.mean(losses[-100:]))})
        manifest = approx_manifest(
            self.name, self.ppl, blackjax.__version__, problem, settings, **jax_manifest(),
            optax_version=optax.__version__,
            method=f"blackjax.{self.family}_vi (KL objective, STL gradient estimator: {LIBRARY_DEFAULT})",
            iterations=steps if settings.iterations else f"{steps} (suite's default; BlackJAX has none)",
            optimizer=f"optax.adam(learning_rate={lr})" + ("" if settings.learning_rate else " (suite's default)"),
            mc_draws_per_step=f"{per_step} ({LIBRARY_DEFAULT})",
            init=f"mean 0, {'log-sd -2' if self.family == 'meanfield' else 'identity covariance'} ({LIBRARY_DEFAULT})",
            draws_from="the fitted Gaussian by BlackJAX's sample(), key fold_in(key(seed), 1); the fit's "
                       "keys split from fold_in(key(seed), 0)",
            timing_method=TIMING_METHOD)
        timings = ApproxTimings(compile_s=(built - t0) + fit_compile + draw_compile, fit_s=fit_s, draw_s=draw_s,
                                total_s=time.perf_counter() - t0)
        return ApproxResult(draws=tree, timings=timings, manifest=manifest, diagnostics=diag)


APPROXIMATORS = {
    "blackjax-meanfield-vi": BlackJAXGaussianVI("blackjax-meanfield-vi", "meanfield"),
    "blackjax-fullrank-vi": BlackJAXGaussianVI("blackjax-fullrank-vi", "fullrank"),
}
