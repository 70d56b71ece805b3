"""The NumPyro translation of the specification in :mod:`models.logdensity`.

One function builds the model for (data, prior, parameterisation): a callable of no arguments.
NumPyro is imported inside it so that ``models`` stays importable without NumPyro.
"""

from __future__ import annotations

from .data import SchoolsData
from .logdensity import check_parameterization
from .priors import Dist, Prior

__all__ = ["build_model"]


def _mu_dist(dist: Dist):
    import numpyro.distributions as nd
    from numpyro.distributions import constraints

    if dist.family == "flat":
        return nd.ImproperUniform(constraints.real, (), ())
    if dist.family == "normal":
        return nd.Normal(dist["loc"], dist["scale"])
    if dist.family == "uniform":  # support is an interval: NUTS samples it through biject_to(interval)
        return nd.Uniform(dist["lower"], dist["upper"])
    raise ValueError(f"mu prior family = {dist.family!r}: no NumPyro translation")


def _tau_dist(dist: Dist):
    import numpyro.distributions as nd
    from numpyro.distributions import constraints

    if dist.family == "flat":
        return nd.ImproperUniform(constraints.positive, (), ())
    if dist.family == "uniform":
        return nd.Uniform(dist["lower"], dist["upper"])
    if dist.family == "half_cauchy":
        return nd.HalfCauchy(dist["scale"])
    if dist.family == "half_normal":
        return nd.HalfNormal(dist["scale"])
    if dist.family == "lognormal":
        return nd.LogNormal(dist["mu"], dist["sigma"])
    raise ValueError(f"tau prior family = {dist.family!r}: no NumPyro translation")


def build_model(data: SchoolsData, prior: Prior, param: str):
    """The eight-schools model as a NumPyro callable taking no arguments.

    Sites: mu, tau (unless fixed: then a constant), theta (centred) or theta_tilde with
    deterministic theta = mu + tau * theta_tilde (non-centred), all under the plate ``school``.
    """
    import numpyro
    import numpyro.distributions as nd

    check_parameterization(param)
    y, sigma = data.y_array, data.sigma_array  # float64 NumPy: JAX keeps float64 when x64 is on
    mu_dist = _mu_dist(prior.mu)
    tau_fixed = prior.tau["value"] if prior.tau_fixed else None
    tau_dist = None if prior.tau_fixed else _tau_dist(prior.tau)

    def model():
        mu = numpyro.sample("mu", mu_dist)
        tau = tau_fixed if tau_dist is None else numpyro.sample("tau", tau_dist)
        with numpyro.plate("school", data.J):
            if param == "centered":
                theta = numpyro.sample("theta", nd.Normal(mu, tau))
            else:
                theta_tilde = numpyro.sample("theta_tilde", nd.Normal(0.0, 1.0))
                theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
            numpyro.sample("y", nd.Normal(theta, sigma), obs=y)

    return model
