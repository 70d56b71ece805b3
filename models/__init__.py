"""One source of truth for the eight-schools data and priors, and one thin translation per PPL.

``models.pymc_model``, ``models.numpyro_model`` and ``models.stan_program`` import their PPL lazily
so that the data and prior layer stays importable without any PPL installed.
"""

from .data import RUBIN, DataError, SchoolsData, load_data, rubin, synthetic
from .logdensity import PARAMETERIZATIONS, log_density, parameter_names, prior_logpdf
from .priors import PRESETS, Dist, Prior, PriorError, make_prior, parse_dist, preset

__all__ = [
    "RUBIN",
    "DataError",
    "SchoolsData",
    "load_data",
    "rubin",
    "synthetic",
    "PARAMETERIZATIONS",
    "log_density",
    "parameter_names",
    "prior_logpdf",
    "PRESETS",
    "Dist",
    "Prior",
    "PriorError",
    "make_prior",
    "parse_dist",
    "preset",
]
