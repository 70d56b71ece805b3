"""The prior's log-density terms on arrays, written once for any array namespace ``xp`` with NumPy's API:
models/jax_model.py traces them with ``jax.numpy`` (the density the JAX samplers run), and
benchmarks/approx/_target.py evaluates them with ``numpy`` over many draws at once (so the PyMC
approximations need no JAX). Each term is the log prior density inside its support, normalised where the
prior is proper and 0 for a flat one; ``log_tau`` is passed in so that the exp transform uses u itself
(exact) rather than log(exp(u)). Standard library only: the caller brings its arrays.
"""

from __future__ import annotations

import math

from .priors import Dist

__all__ = ["HALF_LOG_2PI", "normal_logpdf", "mu_log_prior", "tau_log_prior"]

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def normal_logpdf(xp, x, loc, scale, log_scale):
    """log N(x | loc, scale), with log(scale) given (a constant, or log tau itself)."""
    return -0.5 * xp.square((x - loc) / scale) - log_scale - HALF_LOG_2PI


def mu_log_prior(xp, dist: Dist, mu, *, what: str = "translation"):
    """log prior of mu inside its support; ``what`` names the translation in the error for a family that
    has none."""
    if dist.family == "normal":
        return normal_logpdf(xp, mu, dist["loc"], dist["scale"], math.log(dist["scale"]))
    if dist.family == "uniform":
        return xp.full_like(mu, -math.log(dist["upper"] - dist["lower"]))
    if dist.family == "flat":
        return xp.zeros_like(mu)
    raise ValueError(f"mu prior family = {dist.family!r}: no {what}")


def tau_log_prior(xp, dist: Dist, tau, log_tau, *, what: str = "translation"):
    """log prior of tau > 0 inside its support."""
    f = dist.family
    if f == "flat":
        return xp.zeros_like(tau)
    if f == "uniform":
        return xp.full_like(tau, -math.log(dist["upper"] - dist["lower"]))
    if f == "half_cauchy":
        s = dist["scale"]
        return math.log(2 / (math.pi * s)) - xp.log1p(xp.square(tau / s))
    if f == "half_normal":
        s = dist["scale"]
        return math.log(2.0) + normal_logpdf(xp, tau, 0.0, s, math.log(s))
    if f == "lognormal":
        return normal_logpdf(xp, log_tau, dist["mu"], dist["sigma"], math.log(dist["sigma"])) - log_tau
    raise ValueError(f"tau prior family = {f!r}: no {what}")
