"""pymc-blackjax engine: the PyMC model, converted to JAX by PyTensor, sampled by BlackJAX's NUTS through
``pm.sample(nuts_sampler="blackjax")`` in float64; shared code and stat names in pymc_external.py.

PyMC 6.4 cannot drive BlackJAX 1.7.1 (a TypeError on the ``progress_bar`` keyword PyMC passes to the
kernel): ``run`` raises it unaltered. PyMC's BlackJAX path also records no step size, so even a run that
samples fails in conversion rather than invent one.
"""

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
    return pymc_external.availability("blackjax")


def run(data: SchoolsData, prior: Prior, param: str, settings: Settings) -> RunResult:
    return pymc_external.run("blackjax", data, prior, param, settings)
