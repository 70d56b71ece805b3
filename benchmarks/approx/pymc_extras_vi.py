"""pymc-extras' Pathfinder (multi-path, ``multipath_pathfinder``: what ``fit_pathfinder`` runs) and
Laplace approximation (``fit_laplace``) on models/pymc_model.py, PyTensor's default backend, float64.

pymc-extras is not one of the PPLs a function may import lazily (tests/test_architecture.py), so it is
imported here at module level; the registry imports this module only when one of its methods is asked
for, and availability() reports an import that fails, with its reason.

Pathfinder: pymc-extras' defaults (4 paths, L-BFGS maxiter 1000, 10 ELBO draws per iteration, jitter 2,
...), run in this process (parallel=False: no worker pool on a shared machine), and
``importance_sampling=None``: the draws are the paths' own Gaussian draws, ``ceil(draws / num_paths)``
from each path (then the first ``draws``), with pymc-extras' logP (Jacobian included) and logQ. Its
default output would instead be PSIS-resampled from those draws; the scoring can resample with
log_p - log_q. log_q is the generating path's Gaussian density less log(num_paths), the multi-path
weights pymc-extras itself uses (not the density of the mixture of the paths).

Laplace: ``fit_laplace`` with its defaults (BFGS on the model's log density *without* the Jacobian,
pymc-extras' ``find_MAP``, then the inverse Hessian there). The draws are the fitted Gaussian's (its
``fit`` group: ``mean_vector``, ``covariance_matrix``, rows labelled by value variable), drawn here by
NumPy's ``default_rng(seed)`` on the unconstrained scale: pymc-extras 0.12.1's own draws
(``draws_from_laplace_approx``, and so fit_laplace's posterior) put the flat vector's columns on the
wrong variables with PyMC 6.4 (the fit's rows are theta_tilde[A..H], tau_log__, mu; the draws read
them as mu, tau_log__, theta_tilde: tau_log__ gets theta_tilde[B]'s distribution and theta_tilde[G]
gets tau_log__'s, variance ~1.8e7, so tau overflows to inf). tests/test_approx_methods.py caught it.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import time

import numpy as np

from models.problem import Problem
from models.pymc_model import build_model

from . import _target
from .base import (
    LIBRARY_DEFAULT,
    ApproxFailed,
    ApproxResult,
    ApproxSettings,
    ApproxTimings,
    approx_manifest,
    check_fit_args,
)
from .pymc_vi import value_order

try:  # see the module docstring: imported with this module, which the registry loads lazily
    import pymc_extras
    from pymc_extras.inference import fit_laplace, fit_pathfinder
    from pymc_extras.inference.pathfinder.lbfgs import LBFGSConfig
    from pymc_extras.inference.pathfinder.multipath import multipath_pathfinder
except ImportError as e:  # availability() says why
    pymc_extras = None
    IMPORT_ERROR = f"{type(e).__name__}: {e}"
else:
    IMPORT_ERROR = None

__all__ = ["APPROXIMATORS", "PyMCPathfinder", "PyMCLaplace"]


def _available() -> str | None:
    if importlib.util.find_spec("pymc") is None:
        return "pymc is not installed: pip install 'eight-schools-ppl[approx]'"
    if pymc_extras is None:
        return f"pymc-extras does not import ({IMPORT_ERROR}): pip install 'eight-schools-ppl[approx]'"
    return None


def _defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _manifest(name: str, problem: Problem, settings: ApproxSettings, **extra) -> dict:
    import pymc as pm  # optional: lazy

    from ..engines.pymc_engine import pytensor_manifest  # imports PyMC: lazy

    return approx_manifest(name, "pymc-extras", pymc_extras.__version__, problem, settings,
                           pymc_version=pm.__version__, **pytensor_manifest(), **extra)


class PyMCPathfinder:
    name = "pymc-pathfinder"
    ppl = "pymc-extras"

    def availability(self) -> str | None:
        return _available()

    def fit(self, problem: Problem, settings: ApproxSettings) -> ApproxResult:
        check_fit_args(problem, settings)
        t0 = time.perf_counter()
        model = build_model(problem.data, problem.prior, problem.parameterization)
        d = _defaults(fit_pathfinder)  # pymc-extras' Pathfinder defaults
        paths = d["num_paths"]
        per_path = math.ceil(settings.draws / paths)
        lbfgs = LBFGSConfig(**({"maxiter": settings.iterations} if settings.iterations else {}))
        names = value_order(model, problem)
        built = time.perf_counter()
        result = multipath_pathfinder(
            model, num_paths=paths, num_draws=paths * per_path, num_draws_per_path=per_path,
            num_elbo_draws=d["num_elbo_draws"], jitter=d["jitter"], lbfgs_config=lbfgs.set_default_maxcor(
                _target.dim(problem)), importance_sampling=None, progressbar=False, parallel=False,
            random_seed=settings.seed, max_init_retries=d["max_init_retries"],
            jacobian_correction=d["jacobian_correction"], vectorize_logp=d["vectorize_logp"])
        fitted = time.perf_counter()
        samples = np.asarray(result.samples)  # (paths that succeeded, per_path, dim), the model's order
        S = samples.shape[0]
        flat = samples.reshape(-1, samples.shape[-1])[: settings.draws]
        lq = (np.asarray(result.logQ).reshape(-1) - math.log(S))[: settings.draws]
        U = flat[:, _flat_permutation(model, names)]
        tree, lp = _target.to_datatree(problem, U, lq, "pymc")
        drawn = time.perf_counter()
        argmax = np.asarray(result.elbo_argmax).reshape(-1)
        niter = np.asarray(result.lbfgs_niter).reshape(-1)
        cfg = result.pathfinder_config
        diag = _target.diagnostics(
            lp, lq, elbo_final=None, elbo_trace_length=int(niter.max()) if niter.size else None,
            evaluations=None,
            evaluations_note="not exposed: pymc-extras reports L-BFGS iterations per path (extra.lbfgs_niter), "
                             "not its line search's density and gradient evaluations",
            extra={"paths": paths, "paths_succeeded": int(S), "lbfgs_niter": niter.tolist(),
                   "elbo_argmax_iteration_per_path": argmax.tolist(), "lbfgs_status": {str(k): v for k, v in
                                                                          result.lbfgs_status.items()},
                   "path_status": {str(k): v for k, v in result.path_status.items()},
                   "warnings": list(result.warnings), "q_family": "per-path Gaussians (L-BFGS factors)"},
            notes="elbo_final: None, pymc-extras returns each path's ELBO argmax iteration, not the ELBO; "
                  "elbo_trace_length: the longest path's L-BFGS iterations; log_q: the generating path's density "
                  "less log(num_paths)")
        manifest = _manifest(
            self.name, problem, settings,
            method="pymc_extras multipath_pathfinder (fit_pathfinder's engine), importance_sampling=None",
            num_paths=f"{paths} ({LIBRARY_DEFAULT})",
            draws_per_path=per_path,
            num_elbo_draws=f"{d['num_elbo_draws']} ({LIBRARY_DEFAULT})", jitter=f"{d['jitter']} ({LIBRARY_DEFAULT})",
            lbfgs={k: getattr(lbfgs, k) for k in ("maxcor", "maxiter", "ftol", "gtol", "maxls", "epsilon")},
            lbfgs_defaults=("maxiter from ApproxSettings.iterations" if settings.iterations else LIBRARY_DEFAULT)
            + "; maxcor set by pymc-extras' set_default_maxcor(dim)",
            jacobian_correction=d["jacobian_correction"], parallel=False,
            config=str(cfg) if cfg is not None else None,
            draws_from="the paths' Gaussians (random_seed=seed), no importance resampling",
            timing_method="fit_s: model build to the end of multipath_pathfinder (its PyTensor compilation "
                          "included: pymc-extras compiles inside the call; compile_s counts the model build "
                          "only); draw_s: reordering and log_p (the draws are made inside the fit call)")
        timings = ApproxTimings(compile_s=built - t0, fit_s=fitted - built, draw_s=drawn - fitted,
                                total_s=time.perf_counter() - t0)
        return ApproxResult(draws=tree, timings=timings, manifest=manifest, diagnostics=diag)


def _flat_permutation(model, names: list[str]) -> np.ndarray:
    """Column i of the suite's vector is column perm[i] of pymc-extras' flat vector (the model's
    initial point raveled by DictToArrayBijection)."""
    from pymc.blocking import DictToArrayBijection  # with PyMC: optional, lazy

    info = DictToArrayBijection.map(model.initial_point()).point_map_info
    start, where = 0, {}
    for name, _shape, size, _dtype in info:
        where[name] = np.arange(start, start + size)
        start += size
    return np.concatenate([where[n] for n in names])


class PyMCLaplace:
    name = "pymc-laplace"
    ppl = "pymc-extras"

    def availability(self) -> str | None:
        return _available()

    def fit(self, problem: Problem, settings: ApproxSettings) -> ApproxResult:
        check_fit_args(problem, settings)
        t0 = time.perf_counter()
        model = build_model(problem.data, problem.prior, problem.parameterization)
        d = _defaults(fit_laplace)
        names = value_order(model, problem)
        optimizer_kwargs = {"options": {"maxiter": settings.iterations}} if settings.iterations else None
        built = time.perf_counter()
        idata = fit_laplace(model=model, random_seed=settings.seed, progressbar=False, draws=1,
                            optimizer_kwargs=optimizer_kwargs)
        fitted = time.perf_counter()
        mean = idata.fit["mean_vector"]
        cov = idata.fit["covariance_matrix"]
        rows = list(mean.coords["rows"].values)
        perm = np.concatenate([[i for i, r in enumerate(rows) if r == n or r.startswith(n + "[")] for n in names])
        if perm.size != _target.dim(problem):
            raise RuntimeError(f"{self.name}: fit rows {rows} do not match the value variables {names}")
        m, c = mean.values[perm], cov.values[np.ix_(perm, perm)]
        try:
            chol = np.linalg.cholesky(c)
        except np.linalg.LinAlgError:
            raise ApproxFailed(
                f"{self.name}: the inverse Hessian at the MAP is not positive definite (optimiser: "
                f"{idata['optimizer_result']['message'].values.item() if 'optimizer_result' in idata.children else '?'}"
                f"; MAP {dict(zip(map(str, rows), np.round(mean.values, 3).tolist(), strict=True))}): no Gaussian "
                "approximation exists there") from None
        U = _target.gaussian_draws(np.random.default_rng(settings.seed), settings.draws, m, chol)
        lq = _target.gaussian_log_q(U, m, chol)
        tree, lp = _target.to_datatree(problem, U, lq, "pymc")
        drawn = time.perf_counter()
        opt = idata["optimizer_result"] if "optimizer_result" in idata.children else None
        extra = {"q_family": "gaussian", "q_mean": m.tolist(), "q_cov": c.tolist()}
        if opt is not None:
            extra.update({k: opt[k].values.item() for k in ("nit", "nfev", "njev", "success", "fun", "message")
                          if k in opt})
        nfev = extra.get("nfev")
        diag = _target.diagnostics(
            lp, lq, elbo_final=None, elbo_trace_length=None,
            evaluations=int(nfev) if nfev is not None else None,
            evaluations_note="scipy.optimize's nfev (density and gradient evaluated together) of find_MAP, "
                             "plus the Hessian at the MAP" if nfev is not None else "not reported",
            extra=extra, notes="Laplace has no ELBO: the optimiser's result is in extra (fun = -log p at the MAP, "
                               "no Jacobian)")
        manifest = _manifest(
            self.name, problem, settings,
            method="pymc_extras.inference.fit_laplace (find_MAP on logp without Jacobian, inverse Hessian there)",
            optimize_method=f"{d['optimize_method']} ({LIBRARY_DEFAULT})",
            iterations=(settings.iterations if settings.iterations else f"scipy's default for "
                        f"{d['optimize_method']} ({LIBRARY_DEFAULT})"),
            gradient_backend=f"{d['gradient_backend']} ({LIBRARY_DEFAULT})",
            draws_from="the fit group's Gaussian (mean_vector, covariance_matrix), drawn by NumPy's "
                       "default_rng(seed): pymc-extras 0.12.1's draws mislabel the variables with PyMC 6.4 "
                       "(module docstring)",
            timing_method="fit_s: fit_laplace (its PyTensor compilation included: compiled inside the call); "
                          "compile_s: the model build; draw_s: the draws, log_q and log_p")
        timings = ApproxTimings(compile_s=built - t0, fit_s=fitted - built, draw_s=drawn - fitted,
                                total_s=time.perf_counter() - t0)
        return ApproxResult(draws=tree, timings=timings, manifest=manifest, diagnostics=diag)


APPROXIMATORS = {"pymc-pathfinder": PyMCPathfinder(), "pymc-laplace": PyMCLaplace()}
