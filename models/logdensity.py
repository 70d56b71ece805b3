"""The model's log density in plain NumPy/SciPy: the executable statement of the specification.

Every PPL translation is tested against this function (equal up to one additive constant per
engine). Points are on the constrained scale and no Jacobian is added.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import stats

from .data import SchoolsData
from .priors import Dist, Prior
from .problem import PARAMETERIZATIONS, Parameterization

__all__ = ["Parameterization", "PARAMETERIZATIONS", "prior_logpdf", "log_density", "parameter_names"]


def check_parameterization(param: str) -> str:
    if param not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization = {param!r}: must be one of {PARAMETERIZATIONS}")
    return param


def parameter_names(prior: Prior, param: str) -> tuple[str, ...]:
    """The sampled parameters of a program, in the order every engine declares them."""
    check_parameterization(param)
    effects = "theta" if param == "centered" else "theta_tilde"
    return ("mu", effects) if prior.tau_fixed else ("mu", "tau", effects)


def prior_logpdf(dist: Dist, x: float) -> float:
    """Log prior density (normalised where proper; 0 for flat) at x; -inf outside the support."""
    f = dist.family
    if f == "fixed":
        raise ValueError("fixed tau has no density: it is data, not a parameter")
    if dist.which == "tau" and x <= 0:
        return -np.inf
    if f == "flat":
        return 0.0
    if f == "normal":
        return float(stats.norm.logpdf(x, dist["loc"], dist["scale"]))
    if f == "uniform":
        return float(stats.uniform.logpdf(x, dist["lower"], dist["upper"] - dist["lower"]))
    if f == "half_cauchy":
        return float(stats.halfcauchy.logpdf(x, scale=dist["scale"]))
    if f == "half_normal":
        return float(stats.halfnorm.logpdf(x, scale=dist["scale"]))
    if f == "lognormal":
        return float(stats.lognorm.logpdf(x, s=dist["sigma"], scale=np.exp(dist["mu"])))
    raise AssertionError(f"unhandled family {f!r}")  # Dist validates families


def log_density(data: SchoolsData, prior: Prior, param: str, point: Mapping[str, object]) -> float:
    """log p(y, parameters) at a constrained point: {mu, tau (unless fixed), theta | theta_tilde}."""
    check_parameterization(param)
    mu = float(point["mu"])
    tau = prior.tau["value"] if prior.tau_fixed else float(point["tau"])
    y, sigma = data.y_array, data.sigma_array
    lp = prior_logpdf(prior.mu, mu)
    if not prior.tau_fixed:
        lp += prior_logpdf(prior.tau, tau)
    if lp == -np.inf:  # outside the prior's support: the rest may not even be defined (tau < 0)
        return lp
    if param == "centered":
        theta = np.asarray(point["theta"], dtype=float)
        lp += float(np.sum(stats.norm.logpdf(theta, mu, tau)))
    else:
        theta_tilde = np.asarray(point["theta_tilde"], dtype=float)
        lp += float(np.sum(stats.norm.logpdf(theta_tilde)))
        theta = mu + tau * theta_tilde
    lp += float(np.sum(stats.norm.logpdf(y, theta, sigma)))
    return lp
