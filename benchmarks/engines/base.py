"""The one interface every engine implements, and the small types it returns.

An engine is a module with three functions::

    availability() -> str | None          # None when usable, else why not (and how to fix it)
    run(data, prior, param, settings) -> RunResult
    log_density(data, prior, param) -> Callable[[Mapping[str, ArrayLike]], float]

``log_density`` evaluates the engine's own compiled model at a constrained point (keys
``mu``, ``tau`` unless fixed, ``theta`` or ``theta_tilde``), without any Jacobian; it exists so the
test-suite can prove every translation is the same posterior.

``run`` returns draws converted to ArviZ at the engine's boundary, in one layout for all engines:
posterior ``mu``, ``tau`` (absent when tau is fixed; it is then in ``constant_data``),
``theta[school]`` and, non-centred, ``theta_tilde[school]``; sample_stats ``diverging`` (bool),
``tree_depth``, ``n_steps`` (leapfrog steps), ``step_size``, ``energy``, ``lp``,
``acceptance_rate``.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

from models import Prior, SchoolsData
from models.logdensity import check_parameterization

__all__ = [
    "Settings",
    "Timings",
    "RunResult",
    "EngineUnavailable",
    "SAMPLE_STATS",
    "base_manifest",
    "check_run_args",
]

#: sample_stats variables every engine provides, with ArviZ's names.
SAMPLE_STATS = ("diverging", "tree_depth", "n_steps", "step_size", "energy", "lp", "acceptance_rate")


class EngineUnavailable(RuntimeError):
    """The engine's PPL (or CmdStan) is not installed here; the message says how to get it."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Sampler settings; identical defaults for every engine."""

    chains: int = 4
    warmup: int = 1000
    draws: int = 1000
    target_accept: float = 0.8
    max_treedepth: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("chains", "draws", "max_treedepth"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} = {v!r}: must be an integer >= 1")
        for name in ("warmup", "seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} = {v!r}: must be an integer >= 0")
        ta = self.target_accept
        if not (isinstance(ta, (int, float)) and math.isfinite(ta) and 0 < ta < 1):
            raise ValueError(f"target_accept = {ta!r}: must be in (0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class Timings:
    """Wall-clock seconds. ``warmup_s``/``sampling_s`` are None where the PPL does not split them;
    ``inference_s`` (warmup + draws) is always measured; compile time is never folded into it."""

    compile_s: float
    inference_s: float
    total_s: float
    warmup_s: float | None = None
    sampling_s: float | None = None
    compile_cached: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RunResult:
    draws: Any  # xarray.DataTree in ArviZ layout
    timings: Timings
    manifest: dict = field(default_factory=dict)


def check_run_args(data: SchoolsData, prior: Prior, param: str, settings: Settings) -> None:
    """Validation shared by every engine, before any PPL work starts."""
    if not isinstance(data, SchoolsData):
        raise TypeError(f"data = {type(data).__name__}: expected models.SchoolsData")
    if not isinstance(prior, Prior):
        raise TypeError(f"prior = {type(prior).__name__}: expected models.Prior")
    if not isinstance(settings, Settings):
        raise TypeError(f"settings = {type(settings).__name__}: expected Settings")
    check_parameterization(param)
    if param == "centered" and prior.tau_fixed and prior.tau["value"] == 0:
        raise ValueError(
            "tau prior = fixed(0): the centred model is degenerate at tau = 0 (theta = mu exactly); "
            "use parameterization 'noncentered'"
        )


def base_manifest(engine: str, ppl: str, ppl_version: str, data: SchoolsData, prior: Prior,
                  param: str, settings: Settings, **extra: Any) -> dict:
    """The manifest fields every engine records; engines add init, parallel mode, threads, etc."""
    return {
        "engine": engine,
        "ppl": ppl,
        "ppl_version": ppl_version,
        "parameterization": param,
        "prior": prior.to_dict(),
        "data": data.name,
        "J": data.J,
        "settings": settings.to_dict(),
        "dtype": "float64",
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        **extra,
    }
