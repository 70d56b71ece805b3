"""What every approximation shares, in NumPy: the unconstrained vector, its map to the parameters,
the target log density on it (log-Jacobian included), a Gaussian's log density, and the DataTree.

The vector is models/jax_model.py's: ``[mu_u, tau_u (unless tau is fixed), z_1 .. z_J]`` with
z = theta (centred) or theta_tilde (non-centred); mu_u = mu for an unbounded mu, tau_u = log tau on
(0, inf), and u = logit((x - lower) / (upper - lower)) for a uniform prior on an interval. These are
the transforms PyMC, NumPyro, BlackJAX (through jax_model) and Stan use, so every library's
unconstrained draws are points of this one vector. :func:`log_p` is jax_model's ``log_density`` in
NumPy, from the same prior terms (models/prior_terms.py; tests/test_approx_methods.py checks the two
densities agree), so that the PyMC methods need no JAX.
"""

from __future__ import annotations

import math

import numpy as np
from arviz_base import from_dict
from scipy import linalg, special

from models.prior_terms import HALF_LOG_2PI, mu_log_prior, normal_logpdf, tau_log_prior
from models.problem import Problem

from .base import ApproxDiagnostics

__all__ = ["blocks", "dim", "constrain", "unconstrain", "log_p", "gaussian_log_q", "gaussian_draws",
           "to_datatree", "diagnostics"]

def blocks(problem: Problem) -> list[tuple[str, slice]]:
    """(parameter, its slice of the vector) in order: mu, tau (unless fixed), theta | theta_tilde."""
    effects = "theta" if problem.parameterization == "centered" else "theta_tilde"
    names = ["mu"] if problem.prior.tau_fixed else ["mu", "tau"]
    out = [(n, slice(i, i + 1)) for i, n in enumerate(names)]
    return [*out, (effects, slice(len(names), len(names) + problem.J))]


def dim(problem: Problem) -> int:
    return blocks(problem)[-1][1].stop


def _interval(dist, u):
    """x = lower + width * sigmoid(u) and log dx/du."""
    lo, hi = dist["lower"], dist["upper"]
    x = lo + (hi - lo) * special.expit(u)
    return x, math.log(hi - lo) + special.log_expit(u) + special.log_expit(-u)


def _unpack(problem: Problem, U: np.ndarray):
    """(mu, tau, log_tau, effects, log-Jacobian), each over the draws, from the (N, dim) matrix."""
    prior = problem.prior
    U = np.atleast_2d(np.asarray(U, dtype=np.float64))
    if U.shape[1] != dim(problem):
        raise ValueError(f"unconstrained draws have {U.shape[1]} columns: expected {dim(problem)}")
    u_mu = U[:, 0]
    if prior.mu.family == "uniform":
        mu, log_jac = _interval(prior.mu, u_mu)
    else:
        mu, log_jac = u_mu, np.zeros_like(u_mu)
    if prior.tau_fixed:
        tau = np.full_like(u_mu, prior.tau["value"])
        with np.errstate(divide="ignore"):
            log_tau = np.log(tau)
    elif prior.tau.family == "uniform":
        tau, jac = _interval(prior.tau, U[:, 1])
        with np.errstate(divide="ignore"):
            log_tau = np.log(tau)
        log_jac = log_jac + jac
    else:
        log_tau = U[:, 1]
        with np.errstate(over="ignore"):
            tau = np.exp(log_tau)
        log_jac = log_jac + log_tau
    effects = U[:, blocks(problem)[-1][1]]
    return mu, tau, log_tau, effects, log_jac


def constrain(problem: Problem, U: np.ndarray) -> dict[str, np.ndarray]:
    """The parameters at each draw: mu, tau (unless fixed), theta and, non-centred, theta_tilde."""
    mu, tau, _, effects, _ = _unpack(problem, U)
    out = {"mu": mu} if problem.prior.tau_fixed else {"mu": mu, "tau": tau}
    if problem.parameterization == "centered":
        return {**out, "theta": effects}
    with np.errstate(invalid="ignore", over="ignore"):
        theta = mu[:, None] + tau[:, None] * effects
    return {**out, "theta": theta, "theta_tilde": effects}


def unconstrain(problem: Problem, point: dict) -> np.ndarray:
    """The (N, dim) vector from constrained draws (mu, tau, theta | theta_tilde, each with the draws
    on the leading axis): the inverse of :func:`constrain`, for libraries that return only those."""
    prior = problem.prior
    cols = []
    for name, dist in (("mu", prior.mu), ("tau", None if prior.tau_fixed else prior.tau)):
        if name == "tau" and dist is None:
            continue
        x = np.asarray(point[name], dtype=np.float64).reshape(-1)
        if dist.family == "uniform":
            with np.errstate(divide="ignore"):
                p = (x - dist["lower"]) / (dist["upper"] - dist["lower"])
                cols.append(np.log(p) - np.log1p(-p))
        elif name == "tau":
            with np.errstate(divide="ignore", invalid="ignore"):
                cols.append(np.log(x))
        else:
            cols.append(x)
    effects = np.asarray(point[blocks(problem)[-1][0]], dtype=np.float64)
    return np.column_stack([*cols, effects.reshape(effects.shape[0], -1)])


def log_p(problem: Problem, U: np.ndarray) -> np.ndarray:
    """The unnormalised target log density at each row of U, log-Jacobian included (jax_model's
    ``log_density``; -inf or nan where a draw overflows, e.g. tau = exp(u) beyond float64)."""
    prior, data = problem.prior, problem.data
    mu, tau, log_tau, effects, log_jac = _unpack(problem, U)
    y, sigma = data.y_array, data.sigma_array
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        lp = mu_log_prior(np, prior.mu, mu)
        if not prior.tau_fixed:
            lp = lp + tau_log_prior(np, prior.tau, tau, log_tau)
        if problem.parameterization == "centered":
            theta = effects
            lp = lp + np.sum(normal_logpdf(np, theta, mu[:, None], tau[:, None], log_tau[:, None]), axis=1)
        else:
            theta = mu[:, None] + tau[:, None] * effects
            lp = lp + np.sum(normal_logpdf(np, effects, 0.0, 1.0, 0.0), axis=1)
        lp = lp + np.sum(normal_logpdf(np, y, theta, sigma, np.log(sigma)), axis=1)
        return lp + log_jac


def gaussian_log_q(U: np.ndarray, mean: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """log N(u; mean, chol chol^T) at each row of U; ``chol`` lower-triangular (a 1-D array: the
    standard deviations of a diagonal Gaussian)."""
    U = np.atleast_2d(np.asarray(U, dtype=np.float64))
    mean = np.asarray(mean, dtype=np.float64)
    chol = np.asarray(chol, dtype=np.float64)
    if chol.ndim == 1:
        z = (U - mean) / chol
        log_det = np.sum(np.log(chol))
    else:
        z = linalg.solve_triangular(chol, (U - mean).T, lower=True).T
        log_det = np.sum(np.log(np.diag(chol)))
    return -0.5 * np.sum(z * z, axis=1) - log_det - mean.size * HALF_LOG_2PI


def gaussian_draws(rng: np.random.Generator, n: int, mean: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """n draws of N(mean, chol chol^T) (``chol`` 1-D: a diagonal Gaussian's sds) by NumPy's ``rng``."""
    eps = rng.standard_normal((n, np.asarray(mean).size))
    chol = np.asarray(chol, dtype=np.float64)
    return mean + (eps * chol if chol.ndim == 1 else eps @ chol.T)


def to_datatree(problem: Problem, U: np.ndarray, lq: np.ndarray, library: str):
    """The draws (rows of U, the unconstrained vector) in the layout, with sample_stats log_p (computed
    here) and log_q (the method's); returns (DataTree, log_p)."""
    lp = log_p(problem, U)
    post = {k: np.asarray(v, dtype=np.float64)[None] for k, v in constrain(problem, U).items()}
    stats = {"log_p": lp[None], "log_q": np.asarray(lq, dtype=np.float64).reshape(1, -1)}
    groups = {"posterior": post, "sample_stats": stats}
    if problem.prior.tau_fixed:
        groups["constant_data"] = {"tau": np.float64(problem.prior.tau["value"])}
    tree = from_dict(groups, coords={"school": list(problem.data.school)},
                     dims={"theta": ["school"], "theta_tilde": ["school"]},
                     attrs={group: {"inference_library": library} for group in groups})
    return tree, lp


def diagnostics(lp: np.ndarray, lq: np.ndarray, *, elbo_final: float | None, elbo_trace_length: int | None,
                evaluations: int | None, evaluations_note: str, extra: dict | None = None,
                notes: str = "") -> ApproxDiagnostics:
    """The method's diagnostics plus the suite's own ELBO estimate from the draws, mean(log_p - log_q)
    over the draws where both are finite (``extra['nonfinite_draws']`` counts the others)."""
    ratio = np.asarray(lp) - np.asarray(lq)
    ok = np.isfinite(ratio)
    extra = {**(extra or {}), "nonfinite_draws": int((~ok).sum())}
    return ApproxDiagnostics(
        elbo_final=None if elbo_final is None else float(elbo_final),
        elbo_trace_length=elbo_trace_length,
        elbo_draws=float(ratio[ok].mean()) if ok.any() else float("nan"),
        evaluations=evaluations, evaluations_note=evaluations_note, extra=extra, notes=notes)
