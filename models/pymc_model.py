"""The PyMC translation of the specification in :mod:`models.logdensity`.

One function builds the model for (data, prior, parameterisation). PyMC is imported inside it so
that ``models`` stays importable without PyMC.
"""

from __future__ import annotations

import functools

from .data import SchoolsData
from .logdensity import check_parameterization
from .priors import Dist, Prior

__all__ = ["build_model"]


def _mu(dist: Dist):
    import pymc as pm

    if dist.family == "flat":
        return pm.Flat("mu")
    if dist.family == "normal":
        return pm.Normal("mu", mu=dist["loc"], sigma=dist["scale"])
    if dist.family == "uniform":  # interval transform (PyMC's default for Uniform)
        return pm.Uniform("mu", lower=dist["lower"], upper=dist["upper"])
    raise ValueError(f"mu prior family = {dist.family!r}: no PyMC translation")


def _tau(dist: Dist):
    import pymc as pm

    if dist.family == "fixed":  # data, not a parameter: it lands in constant_data
        return pm.Data("tau", dist["value"])
    if dist.family == "flat":
        return pm.HalfFlat("tau")
    if dist.family == "uniform":
        return pm.Uniform("tau", lower=dist["lower"], upper=dist["upper"])
    if dist.family == "half_cauchy":
        return pm.HalfCauchy("tau", beta=dist["scale"])
    if dist.family == "half_normal":
        return pm.HalfNormal("tau", sigma=dist["scale"])
    if dist.family == "lognormal":
        return pm.LogNormal("tau", mu=dist["mu"], sigma=dist["sigma"])
    raise ValueError(f"tau prior family = {dist.family!r}: no PyMC translation")


@functools.cache
def _keeping_model_class():
    """A ``pm.Model`` that keeps what ``pm.sample`` builds and that involves no random stream: the
    log density's graph and the logp/dlogp function, as PyMC's ``FrozenModel`` does (the same cache, keyed by the same arguments,
    each caller getting its own ``.copy()`` of the compiled function's shared state), and the trace's
    point function (the graph of the traced variables, ``unobserved_value_vars``, built once, and its
    compiled function, which PyMC otherwise builds and compiles for every chain of every call:
    ~0.2 s a call here). Nothing else: ``freeze_model`` would also cache the initial point function
    and freeze dims and data, which reorders the jitter's random streams (measured: other draws for
    the same seed). This model draws exactly as a new ``pm.Model`` does (tests/test_pymc_samplers.py)."""
    import pymc as pm
    from pymc.model.core import BaseModel
    from pymc.pytensorf import collect_default_updates
    from pymc.util import locally_cachedmethod
    from pytensor.compile.io import In, Out

    def trace_fn_key(outs, inputs, mode, point_fn, kwargs) -> tuple | None:
        """The key of a trace's point-function compilation (outputs and inputs wrapped in Out/In,
        no point function, no seed), or None for any other compile_fn call."""
        if point_fn or "random_seed" in kwargs or not isinstance(outs, list | tuple) or inputs is None:
            return None
        if not all(isinstance(o, Out) for o in outs) or not all(isinstance(i, In) for i in inputs):
            return None
        try:
            return (tuple((o.variable, o.borrow) for o in outs), tuple((i.variable, i.borrow) for i in inputs),
                    mode, tuple(sorted(kwargs.items())))
        except TypeError:  # an unhashable argument: compile as PyMC does
            return None

    class KeepingModel(pm.Model):
        logp = locally_cachedmethod(BaseModel.logp)  # the log density's graph, as FrozenModel keeps it
        _cached_logp_dlogp_function = locally_cachedmethod(BaseModel._logp_dlogp_function,
                                                           ignore=("initial_point",))

        def _logp_dlogp_function(self, *args, **kwargs):
            return self._cached_logp_dlogp_function(*args, **kwargs).copy()

        @property
        def unobserved_value_vars(self):
            kept = self.__dict__.get("_kept_unobserved_value_vars")
            if kept is None:
                kept = self.__dict__["_kept_unobserved_value_vars"] = pm.Model.unobserved_value_vars.fget(self)
            return list(kept)

        def compile_fn(self, outs, *, inputs=None, mode=None, point_fn=True, **kwargs):
            key = trace_fn_key(outs, inputs, mode, point_fn, kwargs)
            kept = self.__dict__.setdefault("_kept_trace_fns", {})
            if key is not None and key in kept:
                return kept[key]
            fn = super().compile_fn(outs, inputs=inputs, mode=mode, point_fn=point_fn, **kwargs)
            if key is not None and not collect_default_updates(
                    inputs=[i.variable for i in inputs], outputs=[o.variable for o in outs]):
                kept[key] = fn  # no random stream in it: the same function serves every later call
            return fn

    return KeepingModel


def build_model(data: SchoolsData, prior: Prior, param: str, *, keep_compiled: bool = False):
    """The eight-schools ``pm.Model``: free variables mu, tau (unless fixed), theta | theta_tilde.

    ``keep_compiled``: the model keeps the logp/dlogp function its first ``pm.sample`` compiles, so
    later ``pm.sample`` calls on it (other seeds) compile nothing; its draws are a new model's. Such a
    model must not be changed after it is built.
    """
    import pymc as pm

    check_parameterization(param)
    cls = _keeping_model_class() if keep_compiled else pm.Model
    with cls(coords={"school": list(data.school)}) as model:
        mu = _mu(prior.mu)
        tau = _tau(prior.tau)
        if param == "centered":
            theta = pm.Normal("theta", mu=mu, sigma=tau, dims="school")
        else:
            theta_tilde = pm.Normal("theta_tilde", mu=0.0, sigma=1.0, dims="school")
            theta = pm.Deterministic("theta", mu + tau * theta_tilde, dims="school")
        pm.Normal("y", mu=theta, sigma=data.sigma_array, observed=data.y_array, dims="school")
    return model
