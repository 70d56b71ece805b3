"""pymc-nutpie engine: the PyMC model sampled by nutpie (Rust NUTS on a numba-compiled logp) through
``pm.sample(nuts_sampler="nutpie")``; shared code and what nutpie lacks in pymc_external.py."""

from __future__ import annotations

from models import Prior, SchoolsData

from . import pymc_external
from .base import RunResult, Settings
from .pymc_engine import log_density  # the same PyMC model, so the same compiled log density

__all__ = ["availability", "run", "log_density"]


def availability() -> str | None:
    return pymc_external.availability("nutpie")


def run(data: SchoolsData, prior: Prior, param: str, settings: Settings) -> RunResult:
    return pymc_external.run("nutpie", data, prior, param, settings)
