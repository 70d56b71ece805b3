"""The one interface every engine implements, and the small types it returns.

An engine is an object implementing :class:`Engine` (each engine module exposes one, ``ENGINE``)::

    name: str                                   # registry name, e.g. "pystan", "pymc-nutpie"
    ppl: str                                    # the PyPI distribution whose release it measures
    availability() -> str | None                # None when usable here, else why not and how to fix it
    run(problem, settings) -> RunResult
    log_density(problem) -> Callable[[Mapping[str, ArrayLike]], float]

``log_density`` evaluates the engine's own compiled model at a constrained point (keys ``mu``,
``tau`` unless fixed, ``theta`` or ``theta_tilde``), without any Jacobian; it exists so the test-suite
can prove every translation is the same posterior.

``run`` returns draws converted to ArviZ at the engine's boundary, in one layout for all engines:
posterior ``mu``, ``tau`` (absent when tau is fixed; it is then in ``constant_data``),
``theta[school]`` and, non-centred, ``theta_tilde[school]``; sample_stats ``diverging`` (bool),
``tree_depth``, ``n_steps`` (leapfrog steps), ``step_size``, ``energy``, ``lp``,
``acceptance_rate``. Its manifest always has ``engine``, ``ppl``, ``ppl_version`` and the versions of
what the engine compiles with (``stan_version``, ``cmdstan_version``, ``jax_version``, ...).
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from numpy.typing import ArrayLike

from models.errors import UsageError
from models.problem import Problem

__all__ = [
    "Engine",
    "Settings",
    "SettingsError",
    "Timings",
    "RunResult",
    "EngineUnavailable",
    "SAMPLE_STATS",
    "REUSED",
    "COMPILED",
    "base_manifest",
    "check_problem",
    "check_run_args",
    "DEVICES",
]

#: sample_stats variables every engine provides, with ArviZ's names.
SAMPLE_STATS = ("diverging", "tree_depth", "n_steps", "step_size", "energy", "lp", "acceptance_rate")

#: what a manifest's ``program`` says: a warm worker reuses a program compiled by an earlier run
REUSED = "compiled program reused in process"
COMPILED = "compiled in this run"


class EngineUnavailable(RuntimeError):
    """The engine's PPL (or CmdStan) is not installed here; the message says how to get it."""


class SettingsError(UsageError):
    """A sampler setting the suite cannot use; the message names the field and the value."""


#: where a JAX engine runs (Settings.device): JAX's CPU or its GPU platform; other engines run on the CPU
DEVICES = ("cpu", "gpu")

#: the largest seed: Stan's seeds are unsigned 32-bit integers, and every engine takes the same range
MAX_SEED = 2**32 - 1


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Sampler settings; identical defaults for every engine."""

    chains: int = 4
    warmup: int = 1000
    draws: int = 1000
    target_accept: float = 0.8
    max_treedepth: int = 10
    seed: int = 0
    #: "cpu" or "gpu" (DEVICES); an engine runs only on the devices its registry entry names
    device: str = "cpu"
    #: engine-specific options, as sorted (name, value) pairs (a mapping is accepted and sorted); an
    #: engine takes only the options its registry entry names, e.g. blackjax-mclmc's step_size_scale
    options: tuple = ()

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise SettingsError(f"device = {self.device!r}: must be one of {', '.join(DEVICES)}")
        object.__setattr__(self, "options", _options(self.options))
        for name in ("chains", "draws", "max_treedepth"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SettingsError(f"{name} = {v!r}: must be an integer >= 1")
        for name in ("warmup", "seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise SettingsError(f"{name} = {v!r}: must be an integer >= 0")
        if self.seed > MAX_SEED:
            raise SettingsError(f"seed = {self.seed}: must be at most 2**32 - 1 = {MAX_SEED} (Stan's seeds are "
                                "unsigned 32-bit integers; one range for every engine)")
        ta = self.target_accept
        if not (isinstance(ta, (int, float)) and not isinstance(ta, bool) and math.isfinite(ta) and 0 < ta < 1):
            raise SettingsError(f"target_accept = {ta!r}: must be in (0, 1)")

    def to_dict(self) -> dict:
        """The settings as JSON-able values. ``device`` and ``options`` appear only where they differ
        from their defaults, so every record made before they existed keeps its key and digest."""
        d = asdict(self)
        if d["device"] == "cpu":
            del d["device"]
        if d["options"]:
            d["options"] = dict(d["options"])
        else:
            del d["options"]
        return d

    def option(self, name: str, default=None):
        return dict(self.options).get(name, default)


def _options(raw) -> tuple:
    """``raw`` (a mapping or (name, value) pairs) as sorted pairs of an identifier and a finite number
    or a string."""
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif isinstance(raw, (tuple, list)):
        pairs = []
        for p in raw:
            if not (isinstance(p, (tuple, list)) and len(p) == 2):
                raise SettingsError(f"options = {raw!r}: expected a table of name = value")
            pairs.append(tuple(p))
    else:
        raise SettingsError(f"options = {raw!r}: expected a table of name = value")
    out = {}
    for name, value in pairs:
        if not (isinstance(name, str) and name.isidentifier()):
            raise SettingsError(f"options: name = {name!r}: must be an identifier")
        if name in out:
            raise SettingsError(f"options.{name}: given twice")
        ok = (isinstance(value, str) and value != "") or (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
        if not ok:
            raise SettingsError(f"options.{name} = {value!r}: must be a finite number or a non-empty string")
        out[name] = value
    return tuple(sorted(out.items()))


@dataclass(frozen=True, kw_only=True)
class Timings:
    """Wall-clock seconds. ``warmup_s``/``sampling_s`` are None where the PPL does not split them;
    ``inference_s`` (warmup + draws) is always measured; compile time is never folded into it.
    ``compile_cached``: nothing was compiled by this run (a build found on disk, or a program kept in
    this process by an earlier run)."""

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


@runtime_checkable
class Engine(Protocol):
    """What the run path needs from an engine (see the module docstring)."""

    name: str
    ppl: str

    def availability(self) -> str | None: ...

    def run(self, problem: Problem, settings: Settings) -> RunResult: ...

    def log_density(self, problem: Problem) -> Callable[[Mapping[str, ArrayLike]], float]: ...


def check_run_args(problem: Problem, settings: Settings) -> None:
    """Validation shared by every engine, before any PPL work starts (a Problem validates itself)."""
    if not isinstance(problem, Problem):
        raise TypeError(f"problem = {type(problem).__name__}: expected models.problem.Problem")
    if not isinstance(settings, Settings):
        raise TypeError(f"settings = {type(settings).__name__}: expected Settings")


def check_problem(problem: Problem) -> None:
    if not isinstance(problem, Problem):
        raise TypeError(f"problem = {type(problem).__name__}: expected models.problem.Problem")


def base_manifest(engine: str, ppl: str, ppl_version: str, problem: Problem, settings: Settings,
                  **extra: Any) -> dict:
    """The manifest fields every engine records; engines add init, parallel mode, threads, etc."""
    return {
        "engine": engine,
        "ppl": ppl,
        "ppl_version": ppl_version,
        "parameterization": problem.parameterization,
        "prior": problem.prior.to_dict(),
        "data": problem.data.name,
        "J": problem.data.J,
        "settings": settings.to_dict(),
        "dtype": "float64",
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        **extra,
    }
