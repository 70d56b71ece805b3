"""Approximator registry: adding an approximate-inference method is one entry here plus an
:class:`Approximator` in a method module's ``APPROXIMATORS`` dict (one module per method family).

Method modules are imported lazily, on :func:`get_approximator` (a PPL import takes seconds);
:func:`approximator_version` reads installed metadata without importing anything, and
:func:`availability` answers with a reason, never an exception, whatever the import does.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import UsageError

from ..engines import installed_version, load_target, reason_unavailable
from .base import (
    ApproxDiagnostics,
    ApproxFailed,
    Approximator,
    ApproxResult,
    ApproxSettings,
    ApproxTimings,
    ApproxUnavailable,
    SettingsError,
)

__all__ = ["APPROXIMATORS", "ApproxEntry", "Approximator", "ApproxDiagnostics", "ApproxFailed", "ApproxResult", "ApproxSettings",
           "ApproxTimings", "ApproxUnavailable", "SettingsError", "get_approximator", "availability",
           "available_approximators", "approximator_version"]


@dataclass(frozen=True)
class ApproxEntry:
    target: str  #: "package.module:ATTR[key]": the Approximator object
    ppl: str  #: the PyPI distribution whose release the method measures
    extra: str  #: the pyproject extra(s) that install it: pip install 'eight-schools-ppl[<extra>]'


_P = "benchmarks.approx."

APPROXIMATORS: dict[str, ApproxEntry] = {
    "pymc-advi": ApproxEntry(_P + "pymc_vi:APPROXIMATORS[pymc-advi]", "pymc", "pymc"),
    "pymc-fullrank-advi": ApproxEntry(_P + "pymc_vi:APPROXIMATORS[pymc-fullrank-advi]", "pymc", "pymc"),
    "pymc-pathfinder": ApproxEntry(_P + "pymc_extras_vi:APPROXIMATORS[pymc-pathfinder]", "pymc-extras", "approx"),
    "pymc-laplace": ApproxEntry(_P + "pymc_extras_vi:APPROXIMATORS[pymc-laplace]", "pymc-extras", "approx"),
    "numpyro-svi-normal": ApproxEntry(_P + "numpyro_svi:APPROXIMATORS[numpyro-svi-normal]", "numpyro", "numpyro"),
    "numpyro-svi-mvn": ApproxEntry(_P + "numpyro_svi:APPROXIMATORS[numpyro-svi-mvn]", "numpyro", "numpyro"),
    "numpyro-svi-laplace": ApproxEntry(_P + "numpyro_svi:APPROXIMATORS[numpyro-svi-laplace]", "numpyro",
                                       "numpyro"),
    "blackjax-meanfield-vi": ApproxEntry(_P + "blackjax_vi:APPROXIMATORS[blackjax-meanfield-vi]", "blackjax",
                                         "blackjax"),
    "blackjax-fullrank-vi": ApproxEntry(_P + "blackjax_vi:APPROXIMATORS[blackjax-fullrank-vi]", "blackjax",
                                        "blackjax"),
    "blackjax-pathfinder": ApproxEntry(_P + "blackjax_pathfinder:APPROXIMATORS[blackjax-pathfinder]",
                                       "blackjax", "blackjax"),
    "cmdstanpy-advi": ApproxEntry(_P + "cmdstanpy_vi:APPROXIMATORS[cmdstanpy-advi]", "cmdstanpy", "cmdstan"),
    "cmdstanpy-pathfinder": ApproxEntry(_P + "cmdstanpy_vi:APPROXIMATORS[cmdstanpy-pathfinder]", "cmdstanpy",
                                        "cmdstan"),
    # the yardstick: a short NUTS run scored like the approximations (no q: no PSIS)
    "blackjax-nuts-short": ApproxEntry(_P + "nuts_short:APPROXIMATORS[blackjax-nuts-short]", "blackjax", "blackjax"),
}


def _entry(name: str) -> ApproxEntry:
    if name not in APPROXIMATORS:
        raise UsageError(f"approximator = {name!r} is unknown; approximators: {', '.join(APPROXIMATORS)}")
    return APPROXIMATORS[name]


def get_approximator(name: str) -> Approximator:
    """The approximator called ``name``, importing its module (and so its PPL) now."""
    entry = _entry(name)
    obj = load_target("APPROXIMATORS", name, entry.target)
    if not isinstance(obj, Approximator):
        raise TypeError(f"{entry.target} is a {type(obj).__name__}, not an Approximator (name, ppl, "
                        "availability, fit)")
    return obj


def availability(name: str) -> str | None:
    """None when the method can run here, else one short line: why not, and how to fix it. Never
    raises for a known method: an import that fails (the library missing, or broken) is a reason."""
    return reason_unavailable(lambda: get_approximator(name), _entry(name).extra)


def available_approximators() -> list[str]:
    return [n for n in APPROXIMATORS if availability(n) is None]


def approximator_version(name: str) -> str | None:
    """The installed version of the method's library, without importing it (None: not installed)."""
    return installed_version(_entry(name).ppl)
