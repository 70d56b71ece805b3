"""pymc-numpyro engine: the PyMC model, converted to JAX by PyTensor, sampled by NumPyro's NUTS through
``pm.sample(nuts_sampler="numpyro")`` in float64; shared code and stat names in pymc_external.py."""

from __future__ import annotations

from models import Prior, SchoolsData

from . import (
    _jax_common,  # noqa: F401 - enables float64 before any JAX array exists
    pymc_external,
)
from .base import RunResult, Settings
from .pymc_engine import log_density  # the same PyMC model, so the same compiled log density

__all__ = ["availability", "run", "log_density"]


def availability() -> str | None:
    return pymc_external.availability("numpyro")


def run(data: SchoolsData, prior: Prior, param: str, settings: Settings) -> RunResult:
    return pymc_external.run("numpyro", data, prior, param, settings)
