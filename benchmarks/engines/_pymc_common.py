"""What the engines that sample the PyMC model with another NUTS implementation share
(:mod:`.pymc_external`, :mod:`.pymc_numpyro`): the row of a sampler's table, its stats in the layout,
the float64 check, the manifest, and the seed pm.sample hands an external sampler."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from models.problem import Problem

from . import pymc_engine
from .base import SAMPLE_STATS, EngineUnavailable, Settings, base_manifest
from .convert import tree_depth_from_steps

__all__ = ["TREE_DEPTH", "Sampler", "sample_stats", "check_float64", "sampler_manifest", "jax_sampler_fields",
           "jax_nuts", "pm_sample_seed"]

TREE_DEPTH = "derived from n_steps: floor(log2(n_steps)) + 1 (Stan's treedepth__; convert.tree_depth_from_steps)"


@dataclass(frozen=True, kw_only=True)
class Sampler:
    name: str  # pm.sample's nuts_sampler
    engine: str
    modules: tuple[str, ...]  # what must import besides pymc (availability imports them: a worker's prepare)
    extra: str  # the pyproject extra that installs them
    window: str | None  # "module:function" whose call PyMC times as sampling_time (pm.sample's path)
    uses_jax: bool
    nuts: Callable[[Settings], dict]  # pm.sample(nuts=...)
    settings_as: Mapping[str, str]  # Settings field -> how pm.sample / the sampler receives it
    stats: Mapping[str, str]  # layout stat -> its name in pm.sample's sample_stats (tree_depth: derived)
    negated: tuple[str, ...] = ()  # layout stats whose pm.sample value has the opposite sign
    notes: Mapping[str, str]  # layout stat -> why it is taken as it is
    init: str
    mass_matrix: str
    timing_method: str


def sample_stats(spec: Sampler, ss) -> dict[str, np.ndarray]:
    """The layout's stats from the sampler's (an xarray Dataset, or a mapping of name to array)."""
    have = {str(k): v for k, v in (ss.data_vars.items() if hasattr(ss, "data_vars") else ss.items())}
    missing = {k: native for k, native in spec.stats.items() if native not in have}
    if missing:
        raise RuntimeError(
            f"{spec.engine}: pm.sample(nuts_sampler={spec.name!r}) records no "
            + ", ".join(f"{k} (looked for {native!r})" for k, native in missing.items())
            + f"; its sample_stats are {sorted(have)}. The layout needs every one of "
            f"{list(SAMPLE_STATS)}, and a missing stat is not invented."
        )
    out = {k: np.asarray(have[native]) for k, native in spec.stats.items()}
    for k in spec.negated:
        out[k] = -out[k]
    out["tree_depth"] = tree_depth_from_steps(out["n_steps"])
    return out


def check_float64(spec: Sampler, posterior: Mapping[str, np.ndarray], stats: Mapping[str, np.ndarray]) -> None:
    """Every engine samples in float64: a sampler that ran in float32 is an error, not a footnote."""
    arrays = {**posterior, **{k: stats[k] for k in ("step_size", "energy", "lp")}}
    wrong = {k: str(v.dtype) for k, v in arrays.items() if v.dtype != np.float64}
    if wrong:
        raise RuntimeError(f"{spec.engine}: the sampler returned {wrong}, not float64")


def sampler_manifest(spec: Sampler, problem: Problem, settings: Settings, library, nuts: dict, **extra) -> dict:
    """What every run of the PyMC model by another sampler records."""
    import pymc as pm  # with the engine: optional, lazy

    return base_manifest(
        spec.engine, spec.name, library.__version__, problem, settings,
        pymc_version=pm.__version__,
        **pymc_engine.pytensor_manifest(),
        nuts_kwargs=nuts,
        settings_as=dict(spec.settings_as),
        stats={**{k: f"-{v}" if k in spec.negated else v for k, v in spec.stats.items()},
               "tree_depth": TREE_DEPTH},
        stats_notes=dict(spec.notes),
        init=spec.init,
        mass_matrix=spec.mass_matrix,
        **extra,
        timing_method=spec.timing_method,
    )


def jax_nuts(spec: Sampler, settings: Settings) -> dict:
    """The NUTS arguments of a JAX sampler's run, its chain method as it will run here; first, JAX must
    import and be in float64 (the suite samples in float64 only)."""
    from ._jax_common import chain_method_for, jax

    if jax is None:
        raise EngineUnavailable(f"jax does not import: pip install 'eight-schools-ppl[{spec.extra}]'")
    if not jax.config.jax_enable_x64:
        raise RuntimeError(f"{spec.engine}: jax_enable_x64 is off; this engine samples in float64 only")
    nuts = spec.nuts(settings)
    nuts["chain_method"] = chain_method_for(nuts["chain_method"], settings.chains)
    return nuts


def jax_sampler_fields(chain_method: str, chains: int, reused: bool, spans) -> dict:
    """The JAX fields of a run of the PyMC model by a JAX sampler: JAX's versions and float64, the
    backend (PyTensor's JAX conversion), how the chains ran, and whether the program was compiled
    (from which cache, ``spans`` a _jax_common.CompileLog) or kept from an earlier run."""
    from ._jax_common import jax, jax_manifest, jax_run_manifest

    return {**jax_manifest(), "backend": f"PyTensor -> JAX ({jax.default_backend()})",
            **jax_run_manifest(chain_method, chains, reused, spans)}


def pm_sample_seed(seed: int, chains: int) -> int:
    """The seed pm.sample(random_seed=seed, chains=chains, nuts_sampler=...) hands an external sampler
    (nutpie.sample, sample_jax_nuts): the first of PyMC's per-chain seeds (pymc.sampling.mcmc.sample)."""
    from pymc.util import get_random_generator  # with PyMC: optional, lazy

    rngs = get_random_generator(seed).spawn(chains)
    return int([rng.integers(2**30) for rng in rngs][0])
