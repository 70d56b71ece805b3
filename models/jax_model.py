"""The model's log density in jax.numpy: the translation that BlackJAX (or any JAX sampler) samples.

Two densities of the same model, built from the same pieces:

* ``constrained_log_density(point, y, sigma)``: log p(y, parameters) at a constrained point
  ``{mu, tau (unless fixed), theta | theta_tilde}``, no Jacobian, -inf outside the prior's support:
  equal to :func:`models.logdensity.log_density` up to one constant (tests/test_engines.py).
* ``log_density(position, y, sigma)``: the density NUTS samples, of a flat unconstrained vector
  ``[mu_u, tau_u (unless fixed), z_1 .. z_J]`` (z = theta centred, theta_tilde non-centred), with the
  log-Jacobian of each transform added, as Stan does: identity for an unbounded mu, ``exp`` for tau
  on (0, inf) (flat, half-Cauchy, half-normal, lognormal), and the scaled logistic ``lower + (upper -
  lower) * sigmoid(u)`` for a uniform prior on an interval (mu or tau).

The data (y, sigma) are arguments, not constants, so one compiled program serves every data set
of the same J. Float64 needs ``jax_enable_x64`` on before any array exists (the engines set it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .logdensity import check_parameterization, parameter_names
from .prior_terms import mu_log_prior, normal_logpdf, tau_log_prior
from .priors import Dist, Prior

__all__ = ["JaxModel", "build", "MU_FAMILIES", "TAU_FAMILIES"]

#: the prior families translated here (tests/test_blackjax_engine.py: every family models.priors offers)
MU_FAMILIES = ("flat", "normal", "uniform")
TAU_FAMILIES = ("flat", "uniform", "half_cauchy", "half_normal", "lognormal", "fixed")

class JaxModel(NamedTuple):
    """One program's densities and its map from the unconstrained vector to the parameters."""

    dim: int  #: length of the unconstrained vector: 1 (mu) + 1 (tau unless fixed) + J
    log_density: Callable  #: (position, y, sigma) -> log density incl. log-Jacobian
    constrain: Callable  #: position -> {"mu", "tau", "theta"[, "theta_tilde"]}
    constrained_log_density: Callable  #: (point, y, sigma) -> log density, no Jacobian


def _interval(lower: float, upper: float, u):
    """x = lower + (upper - lower) sigmoid(u) and log dx/du."""
    width = upper - lower
    x = lower + width * jax.nn.sigmoid(u)
    return x, math.log(width) + jax.nn.log_sigmoid(u) + jax.nn.log_sigmoid(-u)


def _in_support(dist: Dist, x):
    """Whether x lies in the prior's support, as models.logdensity reads it: tau > 0, and a uniform's
    closed interval."""
    ok = (x > 0) if dist.which == "tau" else jnp.isfinite(x)
    if dist.family == "uniform":
        ok = ok & (x >= dist["lower"]) & (x <= dist["upper"])
    return ok


def build(prior: Prior, param: str, J: int) -> JaxModel:
    """The eight-schools model for ``prior`` and parameterisation ``param`` with J schools."""
    check_parameterization(param)
    if not isinstance(J, int) or J < 1:
        raise ValueError(f"J = {J!r}: must be an integer >= 1")
    for dist, offered in ((prior.mu, MU_FAMILIES), (prior.tau, TAU_FAMILIES)):
        if dist.family not in offered:  # a family added to models.priors without a line here
            raise ValueError(f"{dist.which} prior family = {dist.family!r}: no JAX translation")
    centred = param == "centered"
    tau_fixed = prior.tau_fixed
    fixed_tau = prior.tau["value"] if tau_fixed else None
    fixed_log_tau = math.log(fixed_tau) if tau_fixed and fixed_tau > 0 else -math.inf
    n_scalars = 1 if tau_fixed else 2

    def joint(mu, tau, log_tau, effects, y, sigma):
        """log p(y, mu, tau, effects) inside the support, without Jacobian."""
        lp = mu_log_prior(jnp, prior.mu, mu, what="JAX translation")
        if not tau_fixed:
            lp = lp + tau_log_prior(jnp, prior.tau, tau, log_tau, what="JAX translation")
        if centred:
            theta = effects
            lp = lp + jnp.sum(normal_logpdf(jnp, theta, mu, tau, log_tau))
        else:
            theta = mu + tau * effects
            lp = lp + jnp.sum(normal_logpdf(jnp, effects, 0.0, 1.0, 0.0))
        return lp + jnp.sum(normal_logpdf(jnp, y, theta, sigma, jnp.log(sigma)))

    def unpack(position):
        """(mu, tau, log_tau, effects, log-Jacobian) from the unconstrained vector."""
        u_mu, effects = position[0], position[n_scalars:]
        if prior.mu.family == "uniform":
            mu, log_jac = _interval(prior.mu["lower"], prior.mu["upper"], u_mu)
        else:
            mu, log_jac = u_mu, jnp.zeros_like(u_mu)
        if tau_fixed:
            tau, log_tau = jnp.asarray(fixed_tau, dtype=position.dtype), fixed_log_tau
        elif prior.tau.family == "uniform":
            tau, jac = _interval(prior.tau["lower"], prior.tau["upper"], position[1])
            log_tau, log_jac = jnp.log(tau), log_jac + jac
        else:
            log_tau = position[1]
            tau, log_jac = jnp.exp(log_tau), log_jac + log_tau
        return mu, tau, log_tau, effects, log_jac

    def log_density(position, y, sigma):
        mu, tau, log_tau, effects, log_jac = unpack(position)
        return joint(mu, tau, log_tau, effects, y, sigma) + log_jac

    def constrain(position):
        mu, tau, _, effects, _ = unpack(position)
        if centred:
            return {"mu": mu, "tau": tau, "theta": effects}
        return {"mu": mu, "tau": tau, "theta": mu + tau * effects, "theta_tilde": effects}

    def constrained_log_density(point, y, sigma):
        mu = jnp.asarray(point["mu"])
        ok = _in_support(prior.mu, mu)
        if tau_fixed:
            tau, log_tau = jnp.asarray(fixed_tau), fixed_log_tau
        else:
            tau = jnp.asarray(point["tau"])
            ok = ok & _in_support(prior.tau, tau)
            tau = jnp.where(ok, tau, 1.0)  # keep the log finite where the answer is -inf anyway
            log_tau = jnp.log(tau)
        effects = jnp.asarray(point["theta" if centred else "theta_tilde"])
        return jnp.where(ok, joint(mu, tau, log_tau, effects, y, sigma), -jnp.inf)

    names = parameter_names(prior, param)
    assert len(names) == n_scalars + 1, names  # the vector's blocks are the program's parameters
    return JaxModel(n_scalars + J, log_density, constrain, constrained_log_density)
