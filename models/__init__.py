"""One source of truth for the eight-schools data and priors, and one thin translation per PPL.

``models.pymc_model``, ``models.numpyro_model`` and ``models.stan_program`` import their PPL lazily
so that the data and prior layer stays importable without any PPL installed. The names below are
loaded on first use (PEP 562), so a command that needs only the bottom layer (``models.errors``,
``models.files``, ``models.provenance``) does not pay for NumPy and SciPy: ``--help`` answers at once.
"""

from __future__ import annotations

from .lazy import lazy_exports

#: public name -> the submodule that defines it
_EXPORTS = {
    "RUBIN": "data", "DataError": "data", "SchoolsData": "data", "load_data": "data", "rubin": "data",
    "synthetic": "data",
    "PARAMETERIZATIONS": "logdensity", "log_density": "logdensity", "parameter_names": "logdensity",
    "prior_logpdf": "logdensity",
    "PRESETS": "priors", "Dist": "priors", "Prior": "priors", "PriorError": "priors", "make_prior": "priors",
    "parse_dist": "priors", "preset": "priors",
    "resolve_data": "specs", "resolve_prior": "specs",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
