"""Engine registry: adding a PPL or sampler is one module (exposing an :class:`Engine`) plus one entry.

Engines are imported lazily, on :func:`get_engine` (a PPL import takes seconds); :func:`engine_version`
reads installed metadata without importing anything, and :func:`availability` answers with a reason,
never an exception, whatever the import does. :data:`KNOWN_BREAKS` names the engines that install and
import but cannot sample because of an upstream bug, with the bug's address.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from models.errors import UsageError

from .base import Engine, EngineUnavailable, RunResult, Settings, SettingsError, Timings

__all__ = ["ENGINES", "EngineEntry", "KNOWN_BREAKS", "KnownBreak", "Engine", "EngineUnavailable", "RunResult",
           "Settings", "SettingsError", "Timings", "get_engine", "availability", "available_engines",
           "engine_version", "known_break", "default_engines", "GROUPS", "check_capabilities", "load_target", "reason_unavailable",
           "installed_version"]

#: the engine groups (EngineEntry.group)
GROUPS = ("main", "chains")


@dataclass(frozen=True)
class EngineEntry:
    target: str  #: "package.module:ATTR" or "package.module:ATTR[key]": the Engine object
    ppl: str  #: the PyPI distribution whose release the engine measures
    extra: str  #: the pyproject extra(s) that install it: pip install 'eight-schools-ppl[<extra>]'
    #: "main": the 4-chain NUTS engines every matrix job runs when it names none (compare, bench, sweep,
    #: calibrate, tune); "chains": many-chain and flow-adapted samplers, run by the chains job and
    #: wherever they are named. A new group needs no edit elsewhere: only "main" is a default.
    group: str = "main"
    #: the devices it runs on (Settings.device) and the engine-specific options it takes (Settings.options)
    devices: tuple[str, ...] = ("cpu",)
    options: tuple[str, ...] = ()
    #: PyPI distributions its sampler runs through besides ``ppl`` (the pymc-* engines build the model and
    #: its gradient in PyMC and sample with another PPL): a candidate of those gates it too
    also_uses: tuple[str, ...] = ()
    #: what its sampler's compiled code runs on ("jax", "pytensor", "stan", "nutpie"): a worker that splits
    #: its engines over two processes keeps each runtime's engines together (their imports, their caches)
    runtime: str = ""


_TARGET = re.compile(r"^(?P<module>[\w.]+):(?P<attr>\w+)(?:\[(?P<key>[\w-]+)\])?$")

ENGINES: dict[str, EngineEntry] = {
    "pymc": EngineEntry("benchmarks.engines.pymc_engine:ENGINE", "pymc", "pymc", runtime="pytensor"),
    "numpyro": EngineEntry("benchmarks.engines.numpyro_engine:ENGINE", "numpyro", "numpyro", runtime="jax"),
    "pystan": EngineEntry("benchmarks.engines.pystan_engine:ENGINE", "pystan", "stan", runtime="stan"),
    "cmdstanpy": EngineEntry("benchmarks.engines.cmdstanpy_engine:ENGINE", "cmdstanpy", "cmdstan", runtime="stan"),
    "blackjax": EngineEntry("benchmarks.engines.blackjax_engine:ENGINE", "blackjax", "blackjax", runtime="jax"),
    # the PyMC model sampled by other NUTS implementations (pymc_external.SAMPLERS)
    "pymc-nutpie": EngineEntry("benchmarks.engines.pymc_external:ENGINES[nutpie]", "nutpie", "nutpie",
                               also_uses=("pymc",), runtime="nutpie"),
    "pymc-numpyro": EngineEntry("benchmarks.engines.pymc_external:ENGINES[numpyro]", "numpyro", "pymc,numpyro",
                                also_uses=("pymc",), runtime="jax"),
    "pymc-blackjax": EngineEntry("benchmarks.engines.pymc_external:ENGINES[blackjax]", "blackjax", "blackjax",
                                 also_uses=("pymc",), runtime="jax"),
    # many-chain BlackJAX samplers: every chain in one vmapped program, superchains for nested R-hat
    "blackjax-chees": EngineEntry("benchmarks.engines.blackjax_chees:ENGINE", "blackjax", "blackjax", group="chains",
                                  devices=("cpu", "gpu"), options=("learning_rate", "mass_matrix"), runtime="jax"),
    "blackjax-meads": EngineEntry("benchmarks.engines.blackjax_meads:ENGINE", "blackjax", "blackjax", group="chains",
                                  devices=("cpu", "gpu"), options=("num_folds",), runtime="jax"),
    "blackjax-mclmc-adjusted": EngineEntry("benchmarks.engines.blackjax_mclmc:ENGINES[adjusted]", "blackjax",
                                           "blackjax", group="chains", devices=("cpu", "gpu"),
                                           options=("target_acceptance_rate",), runtime="jax"),
    "blackjax-mclmc": EngineEntry("benchmarks.engines.blackjax_mclmc:ENGINES[unadjusted]", "blackjax", "blackjax",
                                  group="chains", devices=("cpu", "gpu"), options=("step_size_scale",), runtime="jax"),
    # nutpie's normalizing-flow adaptation on the PyMC model (pymc_external.SAMPLERS["nutpie-flow"])
    "pymc-nutpie-flow": EngineEntry("benchmarks.engines.pymc_external:ENGINES[nutpie-flow]", "nutpie", "nutpie-flow",
                                    group="chains", also_uses=("pymc",), runtime="jax"),
    # NumPyro's NUTS with many chains in lock-step (vmap), started in superchains for nested R-hat
    "numpyro-vectorized": EngineEntry("benchmarks.engines.numpyro_vectorized:ENGINE", "numpyro", "numpyro",
                                      group="chains", devices=("cpu", "gpu"), runtime="jax"),
}


@dataclass(frozen=True)
class KnownBreak:
    exception: str  #: the exception's class name, e.g. "TypeError"
    match: str  #: a regular expression searched for in the exception's message
    upstream: str  #: the upstream issue's address
    summary: str  #: one line: what breaks and why

    #: (PyPI distribution, version) pairs it was seen to break with. With exactly these installed, the run
    #: path records the break without attempting the run (it would fail the same way: nothing to measure);
    #: with any other version of one of them the run is attempted, and recorded as what happens. The tests
    #: attempt it on every version (tests/conftest.py's strict xfail fails the day it stops breaking).
    seen_with: tuple[tuple[str, str], ...] = ()

    def matches(self, error_text: str) -> bool:
        """Whether ``error_text`` (``"ExceptionName: message ..."``, or a traceback) is this break."""
        return (re.search(rf"\b{re.escape(self.exception)}\b", error_text) is not None
                and re.search(self.match, error_text) is not None)

    def seen_here(self) -> bool:
        """Whether the versions it was seen to break with are the ones installed here."""
        return bool(self.seen_with) and all(installed_version(d) == v for d, v in self.seen_with)

    def not_attempted(self) -> str:
        """The record's error for a run not attempted because :meth:`seen_here` (the break's own words, so
        that :meth:`matches` reads it as the break)."""
        versions = ", ".join(f"{d} {v}" for d, v in self.seen_with)
        return (f"{self.exception}: {self.summary} (not attempted: {versions} installed, the versions it was "
                "seen to break with)")


#: engine -> the upstream break that stops it sampling (installed and importable, but run raises)
KNOWN_BREAKS: dict[str, KnownBreak] = {
    "pymc-blackjax": KnownBreak(
        exception="TypeError",
        match=r"progress_bar",
        upstream="https://github.com/pymc-devs/pymc/issues/8367",
        summary="PyMC 6.4 passes progress_bar to BlackJAX 1.7's kernel, which rejects it",
        seen_with=(("pymc", "6.4.0"), ("blackjax", "1.7.1")),
    ),
}


def default_engines() -> list[str]:
    """The engines a job runs when it names none: the "main" group, in registry order."""
    return [n for n, e in ENGINES.items() if e.group == "main"]


def check_capabilities(name: str, settings: Settings) -> None:
    """Refuse settings the engine cannot honour (a device it does not run on, an option it does not
    take), naming the field and the value; the client calls this before any run, the worker again."""
    entry = _entry(name)
    if settings.device not in entry.devices:
        raise SettingsError(f"device = {settings.device!r}: engine {name} runs on {', '.join(entry.devices)} only")
    for opt, value in settings.options:
        if opt not in entry.options:
            takes = f"it takes {', '.join(entry.options)}" if entry.options else "it takes none"
            raise SettingsError(f"options.{opt} = {value!r}: engine {name} has no such option ({takes})")


def _entry(name: str) -> EngineEntry:
    if name not in ENGINES:
        raise UsageError(f"engine = {name!r} is unknown; engines: {', '.join(ENGINES)}")
    return ENGINES[name]


def load_target(registry: str, name: str, target: str):
    """The object a registry entry's ``target`` ("module:ATTR" or "module:ATTR[key]") names, importing its
    module now; ``registry`` and ``name`` say where a malformed target stands. The engines' and the
    approximators' registries (benchmarks.approx) both load through it."""
    m = _TARGET.match(target)
    if m is None:
        raise ValueError(f"{registry}[{name!r}].target = {target!r}: expected 'module:ATTR' or 'module:ATTR[key]'")
    obj = getattr(importlib.import_module(m["module"]), m["attr"])
    return obj[m["key"]] if m["key"] is not None else obj


def reason_unavailable(load: Callable[[], object], extra: str) -> str | None:
    """``load().availability()``, where an import that fails (the PPL missing, or broken) is a reason
    (one short line: why not, and how to fix it), never an exception."""
    try:
        return load().availability()
    except ImportError as e:
        return f"does not import ({_first_line(e)}): pip install 'eight-schools-ppl[{extra}]'"
    except Exception as e:  # noqa: BLE001 - a broken install is a reason, not a crash
        return f"import failed: {type(e).__name__}: {_first_line(e)}"


def installed_version(distribution: str) -> str | None:
    """The installed version of a PyPI distribution, from metadata, importing nothing (None: not installed)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def get_engine(name: str) -> Engine:
    """The engine called ``name``, importing its module (and so its PPL) now."""
    entry = _entry(name)
    obj = load_target("ENGINES", name, entry.target)
    if not isinstance(obj, Engine):
        raise TypeError(f"{entry.target} is a {type(obj).__name__}, not an Engine (name, ppl, availability, "
                        "run, log_density)")
    return obj


def availability(name: str) -> str | None:
    """None when the engine can run here, else one short line: why not, and how to fix it.

    Never raises for a known engine: an import that fails (the PPL missing, or broken) is a reason.
    """
    return reason_unavailable(lambda: get_engine(name), _entry(name).extra)


def available_engines() -> list[str]:
    return [n for n in ENGINES if availability(n) is None]


def engine_version(name: str) -> str | None:
    """The installed version of the engine's PPL distribution, without importing it (None: not installed)."""
    return installed_version(_entry(name).ppl)


def known_break(engine: str, error_text: str) -> KnownBreak | None:
    """The known upstream break that ``error_text`` (an engine's recorded error) is, or None."""
    kb = KNOWN_BREAKS.get(engine)
    return kb if kb is not None and kb.matches(error_text) else None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
