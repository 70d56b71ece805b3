"""Engine registry: adding a PPL or sampler is one module plus one entry here."""

from __future__ import annotations

import importlib
from types import ModuleType

from .base import EngineUnavailable, RunResult, Settings, Timings

__all__ = ["ENGINES", "EngineUnavailable", "RunResult", "Settings", "Timings", "get_engine",
           "availability", "available_engines"]

#: engine name -> module implementing base.py's interface (imported lazily: PPL imports are slow)
ENGINES: dict[str, str] = {
    "pymc": "benchmarks.engines.pymc_engine",
    "numpyro": "benchmarks.engines.numpyro_engine",
    "pystan": "benchmarks.engines.pystan_engine",
    "cmdstanpy": "benchmarks.engines.cmdstanpy_engine",
    # the PyMC model with other NUTS samplers, through pm.sample(nuts_sampler=...)
    "pymc-nutpie": "benchmarks.engines.pymc_nutpie_engine",
    "pymc-numpyro": "benchmarks.engines.pymc_numpyro_engine",
    "pymc-blackjax": "benchmarks.engines.pymc_blackjax_engine",
}


def get_engine(name: str) -> ModuleType:
    if name not in ENGINES:
        raise ValueError(f"engine = {name!r} is unknown; engines: {', '.join(ENGINES)}")
    return importlib.import_module(ENGINES[name])


def availability(name: str) -> str | None:
    """None when the engine can run here, else the reason it cannot."""
    try:
        module = get_engine(name)
    except ImportError as e:  # the PPL itself is missing
        return f"{name}: import failed ({e})"
    return module.availability()


def available_engines() -> list[str]:
    return [n for n in ENGINES if availability(n) is None]
