"""The Stan translation: which program, its source with includes resolved, and its data."""

from __future__ import annotations

import re
from pathlib import Path

from .data import SchoolsData
from .logdensity import check_parameterization
from .priors import Prior

STAN_DIR = Path(__file__).parent / "stan"

#: family codes of models/stan/prior_lpdf.stanfunctions
MU_CODES = {"flat": 1, "normal": 2, "uniform": 3}
TAU_CODES = {"flat": 1, "uniform": 2, "half_cauchy": 3, "half_normal": 4, "lognormal": 5}

_INCLUDE = re.compile(r"^#include\s+(\S+)\s*$", re.MULTILINE)


def program_name(prior: Prior, param: str) -> str:
    check_parameterization(param)
    return f"{param}_fixed_tau" if prior.tau_fixed else param


def program_path(prior: Prior, param: str) -> Path:
    return STAN_DIR / f"{program_name(prior, param)}.stan"


def program_code(prior: Prior, param: str) -> str:
    """The program text with ``#include`` lines inlined (PyStan has no include path)."""
    path = program_path(prior, param)
    return _INCLUDE.sub(lambda m: (STAN_DIR / m.group(1)).read_text(), path.read_text())


def _pad(args: tuple[float, ...]) -> list[float]:
    return list(args) + [0.0] * (2 - len(args))


def stan_data(data: SchoolsData, prior: Prior) -> dict:
    d: dict = {
        "J": data.J,
        "y": list(data.y),
        "sigma": list(data.sigma),
        "mu_family": MU_CODES[prior.mu.family],
        "mu_args": _pad(prior.mu.args),
    }
    if prior.tau_fixed:
        d["tau"] = prior.tau["value"]
    else:
        d["tau_family"] = TAU_CODES[prior.tau.family]
        d["tau_args"] = _pad(prior.tau.args)
    return d
