"""What the two Stan engines share: conversion to the one layout, Stan's phase timings, points, seeds.

PyStan and CmdStanPy run the same program text (``models.stan_program.program_code``) with the same
NUTS (diagonal metric, windowed adaptation, inits uniform(-2, 2) on the unconstrained scale) and the
same seed scheme (one seed, chain ids 1..chains), so they differ only in how they are driven.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

import xarray as xr

from models import Prior, SchoolsData
from models.logdensity import prior_logpdf
from models.problem import Problem
from models.stan_program import program_name

from .base import SAMPLE_STATS, RunResult, Settings, SettingsError, Timings, base_manifest
from .convert import point_arrays, to_datatree

INIT = "uniform(-2, 2) on the unconstrained scale (Stan's default)"
MASS_MATRIX = "diagonal, adapted in windows (Stan's default)"
PHASE_TIMING = "Stan's own per-chain elapsed warm-up and sampling seconds, the slowest chain's"

#: Stan seeds are unsigned 32-bit integers.
MAX_SEED = 2**32 - 1

_ELAPSED = re.compile(r"([0-9.eE+-]+) seconds \((Warm-up|Sampling)\)")


def check_seed(seed: int) -> int:
    if seed > MAX_SEED:
        raise SettingsError(f"seed = {seed}: Stan takes seeds from 0 to 2**32 - 1 = {MAX_SEED}")
    return seed


def dims_and_coords(data: SchoolsData) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The ``dims``/``coords`` arguments of arviz_base.from_pystan / from_cmdstanpy."""
    return {"theta": ["school"], "theta_tilde": ["school"]}, {"school": list(data.school)}


def to_layout(tree: xr.DataTree, data: SchoolsData, prior: Prior, library: str) -> xr.DataTree:
    """base.py's one layout (convert.to_datatree) from an arviz_base.from_pystan / from_cmdstanpy tree,
    whose sample_stats already carry ArviZ's names."""
    posterior = tree["posterior"]
    stats = tree["sample_stats"]
    missing = [s for s in SAMPLE_STATS if s not in stats.data_vars]
    if missing:
        raise RuntimeError(f"{library}: sample_stats lacks {missing} (has {sorted(stats.data_vars)})")
    school = list(posterior["theta"].coords["school"].values)
    if school != list(data.school):
        raise RuntimeError(f"{library}: theta's school coordinate = {school!r}, expected {list(data.school)!r}")
    return to_datatree({k: v.values for k, v in posterior.data_vars.items()},
                       {s: stats[s].values for s in SAMPLE_STATS}, data, prior, library)


def phase_seconds(chains: Iterable[Mapping[str, float]]) -> tuple[float | None, float | None]:
    """(warm-up, sampling) seconds of the slowest chain, from per-chain ``{"warmup", "sampling"}``."""
    chains = list(chains)
    out = []
    for phase in ("warmup", "sampling"):
        values = [c[phase] for c in chains if c.get(phase) is not None]
        out.append(max(values) if values and len(values) == len(chains) else None)
    return out[0], out[1]


def elapsed_from_messages(messages: Iterable[str]) -> dict[str, float]:
    """Stan's "Elapsed Time: ... seconds (Warm-up)" / "... seconds (Sampling)" lines of one chain."""
    out: dict[str, float] = {}
    for text in messages:
        for seconds, phase in _ELAPSED.findall(text):
            out.setdefault("warmup" if phase == "Warm-up" else "sampling", float(seconds))
    return out


def stan_point(problem: Problem, point: Mapping) -> dict | None:
    """A constrained point as Stan reads it (its sampled parameters, as JSON-able values), or None
    outside the prior's support, where Stan cannot unconstrain it and the density is 0."""
    prior = problem.prior
    values = point_arrays(point, problem.data, prior, problem.parameterization)
    if prior_logpdf(prior.mu, float(values["mu"])) == -math.inf:
        return None
    if not prior.tau_fixed and prior_logpdf(prior.tau, float(values["tau"])) == -math.inf:
        return None
    return {k: v.tolist() for k, v in values.items()}


def stan_result(engine: str, version: str, tree: xr.DataTree, problem: Problem, settings: Settings, *,
                parallel: str, cached: bool, compile_s: float, inference_s: float, total_s: float,
                chain_elapsed: Iterable[Mapping[str, float]], **extra) -> RunResult:
    """The RunResult both Stan engines return: Stan's own phase times, and the manifest fields that
    describe Stan's sampler (the same for both), plus the engine's own ``extra`` fields."""
    warmup_s, sampling_s = phase_seconds(chain_elapsed)
    manifest = base_manifest(
        engine, engine, version, problem, settings, **extra,
        stan_program=program_name(problem.prior, problem.parameterization),
        init=INIT,
        mass_matrix=MASS_MATRIX,
        parallel=parallel,
        threads="1 per chain",
        phase_timing=PHASE_TIMING,
        compile_cached=cached,
    )
    timings = Timings(compile_s=compile_s, inference_s=inference_s, total_s=total_s,
                      warmup_s=warmup_s, sampling_s=sampling_s, compile_cached=cached)
    return RunResult(draws=tree, timings=timings, manifest=manifest)
