"""The one interface every approximate-inference method implements, and the small types it returns.

An approximator is an object implementing :class:`Approximator` (each method module exposes them in
a dict ``APPROXIMATORS``, one per registry name)::

    name: str                                   # registry name, e.g. "pymc-advi", "blackjax-pathfinder"
    ppl: str                                    # the PyPI distribution whose release it measures
    availability() -> str | None                # None when usable here, else why not and how to fix it
    fit(problem, settings) -> ApproxResult

Approximate inference is judged by its distance to the exact posterior and by its own diagnostics,
not by MCSE z-scores (DESIGN.md, "Samplers beyond NUTS, and approximators"), so it has this protocol
beside :class:`benchmarks.engines.base.Engine` rather than flags inside it. Both take the same
:class:`models.problem.Problem` and record the same base manifest.

``fit`` returns ``settings.draws`` draws from the approximation in the engines' layout (posterior
``mu``, ``tau`` (absent when fixed: then in ``constant_data``), ``theta[school]`` and, non-centred,
``theta_tilde[school]``; chain = 1, draw = N) and, in ``sample_stats``:

* ``log_p``: the unnormalised target log density at each draw on the unconstrained scale, with the
  log-Jacobian of every transform (the density NUTS samples: models/jax_model.py's ``log_density``,
  computed by :func:`benchmarks.approx._target.log_p`, one implementation for every method);
* ``log_q``: the approximation's log density at each draw on the same unconstrained vector
  ``[mu_u, tau_u (unless fixed), z_1 .. z_J]`` (z = theta centred, theta_tilde non-centred).

So ``log_p - log_q`` are the log importance ratios (up to one constant) whose Pareto k̂ the scoring
computes. The unconstrained transforms are the same in every PPL used here: identity for an
unbounded mu, log for tau on (0, inf), the scaled logit for a uniform prior on an interval.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from models.problem import Problem

from ..engines.base import MAX_SEED, SettingsError, base_manifest

__all__ = ["Approximator", "ApproxSettings", "ApproxTimings", "ApproxDiagnostics", "ApproxResult",
           "ApproxUnavailable", "ApproxFailed", "SettingsError", "LIBRARY_DEFAULT", "approx_manifest", "check_fit_args"]

#: what a manifest says where a setting is the library's own default
LIBRARY_DEFAULT = "library default"


class ApproxUnavailable(RuntimeError):
    """The method's library (or CmdStan) is not installed here; the message says how to get it."""


class ApproxFailed(RuntimeError):
    """The method ran but gave no usable approximation (e.g. Laplace: a Hessian that is not positive
    definite at the optimum); the message says what happened. The run path records a failed fit."""


@dataclass(frozen=True, kw_only=True)
class ApproxSettings:
    """Settings every method takes; None means the method's own default (the library's default where
    the library has one; the manifest says which and its value)."""

    #: draws taken from the fitted approximation
    draws: int = 1000
    seed: int = 0
    #: optimisation iterations (SVI/ADVI steps, L-BFGS iterations of Pathfinder, of Laplace's optimiser)
    iterations: int | None = None
    #: the optimiser's step size (ADVI, SVI, BlackJAX VI; CmdStan ADVI's eta)
    learning_rate: float | None = None

    def __post_init__(self) -> None:
        for name in ("draws",):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SettingsError(f"{name} = {v!r}: must be an integer >= 1")
        s = self.seed
        if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s <= MAX_SEED:
            raise SettingsError(f"seed = {s!r}: must be an integer in [0, 2**32 - 1] (Stan's seed range; "
                                "one range for every method)")
        it = self.iterations
        if it is not None and (not isinstance(it, int) or isinstance(it, bool) or it < 1):
            raise SettingsError(f"iterations = {it!r}: must be an integer >= 1, or None (the method's default)")
        lr = self.learning_rate
        if lr is not None and not (isinstance(lr, (int, float)) and not isinstance(lr, bool)
                                   and math.isfinite(lr) and lr > 0):
            raise SettingsError(f"learning_rate = {lr!r}: must be a finite number > 0, or None "
                                "(the method's default)")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class ApproxTimings:
    """Wall-clock seconds: ``fit_s`` the optimisation, ``draw_s`` drawing from the fitted approximation
    (and evaluating log_q), ``compile_s`` apart (JAX/PyTensor compilation, model build), never folded
    into the others; where a library cannot separate them, the manifest's ``timing_method`` says so."""

    compile_s: float
    fit_s: float
    draw_s: float
    total_s: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class ApproxDiagnostics:
    """The method's own diagnostics. ELBO values are ELBOs (higher is better), whatever sign the
    library reports (its loss is -ELBO)."""

    #: the library's last ELBO estimate (None where it has none, e.g. Laplace: ``notes`` says why)
    elbo_final: float | None
    #: iterations in the library's ELBO (or loss) trace
    elbo_trace_length: int | None
    #: mean of log_p - log_q over the draws: an ELBO estimate on the suite's one target, every method alike
    elbo_draws: float
    #: gradient (or density) evaluations of the target during the fit; None where not exposed
    evaluations: int | None
    #: how ``evaluations`` was obtained, or why it is None
    evaluations_note: str
    #: method-specific values (L-BFGS iterations, paths, optimiser status, ...), JSON-able
    extra: dict = field(default_factory=dict)
    notes: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ApproxResult:
    draws: Any  # xarray.DataTree in the layout above
    timings: ApproxTimings
    manifest: dict = field(default_factory=dict)
    diagnostics: ApproxDiagnostics | None = None


@runtime_checkable
class Approximator(Protocol):
    """What the run path needs from an approximate-inference method (see the module docstring)."""

    name: str
    ppl: str

    def availability(self) -> str | None: ...

    def fit(self, problem: Problem, settings: ApproxSettings) -> ApproxResult: ...


def check_fit_args(problem: Problem, settings: ApproxSettings) -> None:
    """Validation shared by every method, before any library work starts."""
    if not isinstance(problem, Problem):
        raise TypeError(f"problem = {type(problem).__name__}: expected models.problem.Problem")
    if not isinstance(settings, ApproxSettings):
        raise TypeError(f"settings = {type(settings).__name__}: expected ApproxSettings")


def approx_manifest(name: str, ppl: str, ppl_version: str, problem: Problem, settings: ApproxSettings,
                    **extra: Any) -> dict:
    """The engines' base manifest (``engine`` is the method's registry name) plus ``kind`` and what
    every approximation records: its method settings as run, each one's value or LIBRARY_DEFAULT."""
    return base_manifest(name, ppl, ppl_version, problem, settings, kind="approximation",
                         log_density_space=("unconstrained, log-Jacobian included in log_p; log_q over the "
                                            "same vector [mu_u, tau_u, z]"), **extra)
