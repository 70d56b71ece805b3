"""PyMC's ADVI, mean-field (``pm.fit(method="advi")``) and full-rank (``method="fullrank_advi"``), on
models/pymc_model.py, PyTensor's default backend, float64.

Everything is PyMC's default (``pm.fit``'s n = 10000 iterations, its optimiser adagrad_window, one
Monte Carlo draw per gradient, its initialisation); ApproxSettings.iterations / learning_rate override
n and the optimiser's learning rate. Draws are ``approx.sample(draws, random_seed=seed,
include_transformed=True)``: their unconstrained values (mu, tau_log__ or *_interval__, theta |
theta_tilde) are the suite's vector, and log_q is computed here from the approximation's mean and
standard deviations (mean-field) or Cholesky factor (full-rank).
"""

from __future__ import annotations

import importlib.util
import inspect
import time

import numpy as np

from models.problem import Problem
from models.pymc_model import build_model

from . import _target
from .base import (
    LIBRARY_DEFAULT,
    ApproxResult,
    ApproxSettings,
    ApproxTimings,
    approx_manifest,
    check_fit_args,
)

__all__ = ["APPROXIMATORS", "PyMCADVI", "value_order", "unconstrained_draws"]

TIMING_METHOD = (
    "compile_s: model build, plus pm.fit's set-up and PyTensor compilation up to its first iteration "
    "(a callback stamps each iteration), plus approx.sample(1) (compiles the draw function); fit_s: first "
    "iteration to the end of pm.fit (the first iteration falls in compile_s); draw_s: approx.sample(draws) "
    "with the compiled function, then log_q and log_p."
)


def value_order(model, problem: Problem) -> list[str]:
    """The model's value variables (mu, tau_log__, theta_tilde, ...) in the suite's vector order."""
    by_rv = {rv.name: value.name for rv, value in model.rvs_to_values.items()}
    return [by_rv[name] for name, _ in _target.blocks(problem)]


def unconstrained_draws(posterior, names: list[str]) -> np.ndarray:
    """(draws, dim) from a posterior Dataset holding the value variables (chain 1)."""
    cols = [np.asarray(posterior[n]).reshape(np.asarray(posterior[n]).shape[1], -1) for n in names]
    return np.concatenate(cols, axis=1)


def _permutation(approx, names: list[str]) -> np.ndarray:
    """Column i of the suite's vector is column perm[i] of the approximation's flat vector."""
    ordering = approx.groups[0].ordering  # value name -> (name, slice, shape, dtype)
    idx = np.arange(approx.groups[0].ddim)
    return np.concatenate([idx[ordering[n][1]] for n in names])


class PyMCADVI:
    ppl = "pymc"

    def __init__(self, name: str, method: str) -> None:
        self.name, self.method = name, method

    def availability(self) -> str | None:
        if importlib.util.find_spec("pymc") is None:
            return "pymc is not installed: pip install 'eight-schools-ppl[pymc]'"
        return None

    def fit(self, problem: Problem, settings: ApproxSettings) -> ApproxResult:
        check_fit_args(problem, settings)
        import pymc as pm  # optional: lazy

        from ..engines.pymc_engine import pytensor_manifest  # imports PyMC: lazy

        t0 = time.perf_counter()
        model = build_model(problem.data, problem.prior, problem.parameterization)
        fit_defaults = inspect.signature(pm.fit).parameters
        opt_defaults = inspect.signature(pm.adagrad_window).parameters
        n = settings.iterations or fit_defaults["n"].default
        kwargs = {}
        if settings.learning_rate:
            kwargs["obj_optimizer"] = pm.adagrad_window(learning_rate=settings.learning_rate)
        stamps: list[float] = []

        def first_iteration(approx, losses, i):
            if not stamps:
                stamps.append(time.perf_counter())

        with model:
            approx = pm.fit(n=n, method=self.method, random_seed=settings.seed, progressbar=False,
                            callbacks=[first_iteration], **kwargs)
        fitted = time.perf_counter()
        names = value_order(model, problem)
        approx.sample(1, random_seed=settings.seed, include_transformed=True)  # compiles the draw function
        compiled = time.perf_counter()
        idata = approx.sample(settings.draws, random_seed=settings.seed, include_transformed=True)
        U = unconstrained_draws(idata.posterior, names)
        perm = _permutation(approx, names)
        mean = np.asarray(approx.mean.eval())[perm]
        if self.method == "advi":
            chol = np.asarray(approx.std.eval())[perm]
            cov = np.diag(chol**2)
        else:
            cov = np.asarray(approx.cov.eval())[np.ix_(perm, perm)]
            L = np.asarray(approx.L.eval())
            chol = L if np.array_equal(perm, np.arange(perm.size)) else np.linalg.cholesky(cov)
        lq = _target.gaussian_log_q(U, mean, chol)
        tree, lp = _target.to_datatree(problem, U, lq, "pymc")
        drawn = time.perf_counter()
        hist = np.asarray(approx.hist)  # the loss: -ELBO estimates, one per iteration
        mc = 1  # obj_n_mc: pm.fit's default, not overridden here
        diag = _target.diagnostics(
            lp, lq, elbo_final=-float(hist[-1]), elbo_trace_length=int(hist.size),
            evaluations=n * mc,
            evaluations_note=f"gradient evaluations of log p: {n} iterations x {mc} Monte Carlo draw (obj_n_mc, "
                             "library default) (derived: PyMC keeps no counter)",
            extra={"q_family": f"gaussian ({'mean-field' if self.method == 'advi' else 'full-rank'})",
                   "q_mean": mean.tolist(), "q_cov": cov.tolist(),
                   "elbo_last_100_mean": -float(np.mean(hist[-100:]))})
        first = stamps[0] if stamps else fitted
        lr = settings.learning_rate or f"{opt_defaults['learning_rate'].default} ({LIBRARY_DEFAULT})"
        manifest = approx_manifest(
            self.name, self.ppl, pm.__version__, problem, settings, **pytensor_manifest(),
            method=f'pm.fit(method="{self.method}")',
            iterations=n if settings.iterations else f"{n} ({LIBRARY_DEFAULT})",
            optimizer=f"pm.adagrad_window(learning_rate={lr}, n_win={opt_defaults['n_win'].default})"
                      + ("" if settings.learning_rate else f" ({LIBRARY_DEFAULT})"),
            mc_draws_per_step=f"1 (obj_n_mc, {LIBRARY_DEFAULT})",
            init=f"PyMC's ({LIBRARY_DEFAULT}): mean at the model's initial point, random_seed=seed",
            draws_from="approx.sample(draws, random_seed=seed, include_transformed=True)",
            timing_method=TIMING_METHOD)
        timings = ApproxTimings(compile_s=(first - t0) + (compiled - fitted), fit_s=fitted - first,
                                draw_s=drawn - compiled, total_s=time.perf_counter() - t0)
        return ApproxResult(draws=tree, timings=timings, manifest=manifest, diagnostics=diag)


APPROXIMATORS = {
    "pymc-advi": PyMCADVI("pymc-advi", "advi"),
    "pymc-fullrank-advi": PyMCADVI("pymc-fullrank-advi", "fullrank_advi"),
}
