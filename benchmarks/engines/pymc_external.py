"""PyMC's model sampled by another NUTS through ``pm.sample(nuts_sampler=...)``: what the engines
pymc-nutpie, pymc-numpyro and pymc-blackjax share.

The model (models/pymc_model.py), its log density (``pymc_engine.log_density``) and the posterior
conversion are the pymc engine's; only the sampler differs. Each sampler names its sample stats
differently and lacks some: :data:`SAMPLERS` says which of its stats fills each of the layout's, a stat
it does not record makes ``run`` fail (none is invented), and ``tree_depth`` is derived from the
leapfrog count for all three, so it means Stan's ``treedepth__`` everywhere.

A sampler that PyMC cannot drive (e.g. PyMC 6.4 with BlackJAX 1.7.1, whose kernel rejects the
``progress_bar`` keyword PyMC passes it) fails in ``run`` with its own exception, unaltered, so that the
harness records it; ``availability`` only says whether the packages import.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import time
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from models import Prior, SchoolsData
from models.pymc_model import build_model

from . import pymc_engine
from .base import SAMPLE_STATS, EngineUnavailable, RunResult, Settings, Timings, base_manifest, check_run_args
from .convert import to_datatree, tree_depth_from_steps

__all__ = ["SAMPLERS", "Sampler", "availability", "run"]

#: how the JAX samplers run their chains (pm.sample(nuts_sampler_kwargs)'s chain_method), per sampler;
#: a measured choice: results/tuning/TUNING.md (nox -s tune)
#: (BlackJAX's stays vectorized: it fails upstream before it samples, so nothing could be measured.)
CHAIN_METHOD: dict[str, str] = {"numpyro": "parallel", "blackjax": "vectorized"}
#: nutpie's threads (pm.sample(cores)); None = one per chain, at most one per CPU (results/tuning/TUNING.md)
NUTPIE_CORES: int | None = None

TREE_DEPTH = "derived from n_steps: floor(log2(n_steps)) + 1 (Stan's treedepth__; convert.tree_depth_from_steps)"

NUTPIE_TIMING = (
    "pm.sample builds the model's logp and gradient with PyTensor and compiles them to numba "
    "(nutpie.compile_pymc_model, which also sets the jittered initial point), then calls nutpie.sample, "
    "which runs warmup and draws of every chain in Rust threads and returns when all have finished. "
    "inference_s = that call, from its entry to its return (time.time(), observed with sys.monitoring "
    "events on nutpie.sample's code alone; it is the span PyMC times as sampling_time, recorded as "
    "pymc_sampling_time_s). compile_s = start of run() to that entry: model build, PyTensor rewriting, "
    "numba compilation (PyTensor's and numba's on-disk caches make a repeated compile cheaper). nutpie "
    "reports no per-draw or per-phase times, so warmup_s and sampling_s are None; total_s adds PyMC's "
    "conversion of the result."
)

JAX_TIMING = (
    "pm.sample converts the model's logp to a JAX function and draws PyMC-jittered initial points (eager "
    "JAX ops), then calls pymc.sampling.jax._sample_{name}_nuts, which traces, compiles and runs warmup "
    "and draws of every chain (chain_method='parallel': pmap, one chain per XLA CPU device; "
    "'vectorized': one vmapped program): PyMC's sampling_time (recorded as "
    "pymc_sampling_time_s) is that call, compilation included. Its entry and return are observed "
    "(time.time(), sys.monitoring events on that function's code alone), and JAX's own compile events "
    "within it (jax.monitoring time spans of jaxpr tracing, MLIR lowering and XLA compilation, overlaps "
    "merged) are subtracted: inference_s = the call minus its compile time (it so keeps the sampler's "
    "un-jitted set-up, e.g. NumPyro's eager initialisation ops). compile_s = start of run() "
    "to the call's entry (model build, PyTensor -> JAX, initial points) + the compile time inside the "
    "call. JAX dispatches asynchronously, so the end of the XLA program's execution may fall after the "
    "call returns; post_sampling_s (pm.sample's return minus the call's, PyMC's postprocessing included) "
    "bounds that. No per-phase times: warmup_s and sampling_s are None."
)


@dataclass(frozen=True, kw_only=True)
class Sampler:
    name: str  # pm.sample's nuts_sampler
    engine: str
    modules: tuple[str, ...]  # what must import besides pymc
    extra: str  # the pyproject extra that installs them
    window: str  # "module:function" whose call PyMC times as sampling_time
    uses_jax: bool
    nuts: Callable[[Settings], dict]  # pm.sample(nuts=...)
    settings_as: Mapping[str, str]  # Settings field -> how pm.sample / the sampler receives it
    stats: Mapping[str, str]  # layout stat -> its name in pm.sample's sample_stats (tree_depth: derived)
    negated: tuple[str, ...] = ()  # layout stats whose pm.sample value has the opposite sign
    notes: Mapping[str, str]  # layout stat -> why it is taken as it is
    init: str
    mass_matrix: str
    timing_method: str


SAMPLERS: dict[str, Sampler] = {
    "nutpie": Sampler(
        name="nutpie",
        engine="pymc-nutpie",
        modules=("nutpie",),
        extra="nutpie",
        window="nutpie:sample",
        uses_jax=False,
        nuts=lambda s: {"target_accept": s.target_accept, "max_treedepth": s.max_treedepth},
        settings_as={
            "chains": "pm.sample(chains) -> nutpie.sample(chains)",
            "warmup": "pm.sample(tune) -> nutpie.sample(tune) (PyMC raises tune=0 to 1)",
            "draws": "pm.sample(draws)",
            "target_accept": "nuts={'target_accept'} -> nutpie.sample(target_accept)",
            "max_treedepth": "nuts={'max_treedepth'} -> nutpie.sample(maxdepth) (PyMC renames it)",
            "seed": "pm.sample(random_seed): nutpie takes the first of PyMC's per-chain seeds",
        },
        stats={"diverging": "diverging", "n_steps": "n_steps", "step_size": "step_size",
               "energy": "energy", "lp": "logp", "acceptance_rate": "mean_tree_accept"},
        notes={
            "tree_depth": "nutpie's own `depth` counts only the doublings kept in the final trajectory "
                          "(lower than Stan's treedepth__ where a last doubling was rejected), so it is not used",
            "step_size": "the step size each draw used: nutpie jitters it around step_size_bar",
        },
        init="model initial point + uniform(-1, 1) jitter on the unconstrained scale (nutpie's default for PyMC)",
        mass_matrix="diagonal, adapted (nutpie's gradient-based estimate, nutpie's default)",
        timing_method=NUTPIE_TIMING,
    ),
    "numpyro": Sampler(
        name="numpyro",
        engine="pymc-numpyro",
        modules=("jax", "numpyro"),
        extra="numpyro",
        window="pymc.sampling.jax:_sample_numpyro_nuts",
        uses_jax=True,
        nuts=lambda s: {"target_accept": s.target_accept, "max_tree_depth": s.max_treedepth,
                        "chain_method": CHAIN_METHOD["numpyro"]},
        settings_as={
            "chains": "pm.sample(chains) -> MCMC(num_chains)",
            "warmup": "pm.sample(tune) -> MCMC(num_warmup)",
            "draws": "pm.sample(draws) -> MCMC(num_samples)",
            "target_accept": "nuts={'target_accept'} -> NUTS(target_accept_prob)",
            "max_treedepth": "nuts={'max_tree_depth'} -> NUTS(max_tree_depth)",
            "seed": "pm.sample(random_seed): PRNGKey of the first of PyMC's per-chain seeds",
        },
        stats={"diverging": "diverging", "n_steps": "n_steps", "step_size": "step_size",
               "energy": "energy", "lp": "lp", "acceptance_rate": "acceptance_rate"},
        negated=("lp",),
        notes={
            "lp": "PyMC stores NumPyro's potential_energy (-log density) under 'lp': negated here",
            "tree_depth": "PyMC derives its tree_depth from num_steps the same way",
        },
        init="model initial point + uniform(-1, 1) jitter on the unconstrained scale (PyMC's _init_jitter)",
        mass_matrix="diagonal, adapted (NumPyro's Stan-style windowed adaptation)",
        timing_method=JAX_TIMING.format(name="numpyro"),
    ),
    "blackjax": Sampler(
        name="blackjax",
        engine="pymc-blackjax",
        modules=("jax", "blackjax"),
        extra="blackjax",
        window="pymc.sampling.jax:_sample_blackjax_nuts",
        uses_jax=True,
        nuts=lambda s: {"target_accept": s.target_accept, "max_num_doublings": s.max_treedepth,
                        "chain_method": CHAIN_METHOD["blackjax"]},
        settings_as={
            "chains": "pm.sample(chains): one vmapped chain per PRNG key",
            "warmup": "pm.sample(tune) -> window_adaptation(...).run(num_steps)",
            "draws": "pm.sample(draws)",
            "target_accept": "nuts={'target_accept'} -> window_adaptation(target_acceptance_rate)",
            "max_treedepth": "nuts={'max_num_doublings'} -> the NUTS kernel, in warmup and sampling",
            "seed": "pm.sample(random_seed): PRNGKey of the first of PyMC's per-chain seeds",
        },
        stats={"diverging": "diverging", "n_steps": "n_steps", "step_size": "step_size",
               "energy": "energy", "lp": "lp", "acceptance_rate": "acceptance_rate"},
        notes={
            "step_size": "PyMC's BlackJAX path keeps the adapted step size to itself (its sample_stats "
                         "have none): run() fails rather than invent it",
            "tree_depth": "BlackJAX's num_trajectory_expansions is not used, for one convention",
        },
        init="model initial point + uniform(-1, 1) jitter on the unconstrained scale (PyMC's _init_jitter)",
        mass_matrix="diagonal, adapted (BlackJAX window_adaptation)",
        timing_method=JAX_TIMING.format(name="blackjax"),
    ),
}


def availability(sampler: str) -> str | None:
    spec = SAMPLERS[sampler]
    reason = pymc_engine.availability()
    if reason is not None:
        return reason
    for module in spec.modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            return f"{module} does not import ({e}): pip install 'eight-schools-ppl[{spec.extra}]'"
    return None


def _cores(spec: Sampler, settings: Settings) -> int:
    """pm.sample's cores. nutpie runs that many chains at once in threads of one process (no
    inter-process traffic, unlike PyMC's own sampler), measured: Rubin's data, default prior, non-centred,
    4 chains x (1000 warmup + 1000 draws), 2 shared CPUs, nutpie.sample's seconds, three runs each:
      cores=1: 0.077, 0.071, 0.070;   cores=2: 0.052, 0.058, 0.061.
    The JAX samplers run their chains on XLA CPU devices (CHAIN_METHOD); PyMC only uses cores there to
    cap BLAS threads, which XLA does not use."""
    if spec.name == "nutpie" and NUTPIE_CORES is not None:
        return min(settings.chains, NUTPIE_CORES)
    return min(settings.chains, os.cpu_count() or 1)


def _window_function(spec: Sampler) -> types.FunctionType:
    module, _, name = spec.window.partition(":")
    fn = getattr(importlib.import_module(module), name, None)
    if not isinstance(fn, types.FunctionType):
        raise RuntimeError(
            f"{spec.engine}: {module}.{name} is not a Python function here, so the call that PyMC times "
            "as sampling_time cannot be observed and sampling cannot be told apart from compilation"
        )
    return fn


@contextlib.contextmanager
def _call_times(fn: types.FunctionType) -> Iterator[list[tuple[float, float]]]:
    """(entry, return), in time.time() seconds, of each call of ``fn`` that returns while active: seen
    through sys.monitoring's PY_START/PY_RETURN events on ``fn``'s code object alone (nothing else is
    traced, and nothing is replaced)."""
    mon = sys.monitoring
    tool = next((t for t in range(6) if mon.get_tool(t) is None), None)  # tool ids are 0..5
    if tool is None:
        raise RuntimeError("every sys.monitoring tool id is taken: the sampling call cannot be timed")
    calls: list[tuple[float, float]] = []
    entries: list[float] = []
    events = mon.events.PY_START | mon.events.PY_RETURN
    mon.use_tool_id(tool, "eight-schools-ppl timing")
    try:
        mon.register_callback(tool, mon.events.PY_START, lambda code, offset: entries.append(time.time()))
        mon.register_callback(tool, mon.events.PY_RETURN,
                              lambda code, offset, value: calls.append((entries.pop(), time.time())))
        mon.set_local_events(tool, fn.__code__, events)
        yield calls
    finally:
        mon.set_local_events(tool, fn.__code__, 0)
        mon.register_callback(tool, mon.events.PY_START, None)
        mon.register_callback(tool, mon.events.PY_RETURN, None)
        mon.free_tool_id(tool)


def _sample_stats(spec: Sampler, ss) -> dict[str, np.ndarray]:
    missing = {k: native for k, native in spec.stats.items() if native not in ss.data_vars}
    if missing:
        raise RuntimeError(
            f"{spec.engine}: pm.sample(nuts_sampler={spec.name!r}) records no "
            + ", ".join(f"{k} (looked for {native!r})" for k, native in missing.items())
            + f"; its sample_stats are {sorted(ss.data_vars)}. The layout needs every one of "
            f"{list(SAMPLE_STATS)}, and a missing stat is not invented."
        )
    out = {k: ss[native].values for k, native in spec.stats.items()}
    for k in spec.negated:
        out[k] = -out[k]
    out["tree_depth"] = tree_depth_from_steps(out["n_steps"])
    return out


def _check_float64(spec: Sampler, posterior: Mapping[str, np.ndarray], stats: Mapping[str, np.ndarray]) -> None:
    """Every engine samples in float64: a sampler that ran in float32 is an error, not a footnote."""
    arrays = {**posterior, **{k: stats[k] for k in ("step_size", "energy", "lp")}}
    wrong = {k: str(v.dtype) for k, v in arrays.items() if v.dtype != np.float64}
    if wrong:
        raise RuntimeError(f"{spec.engine}: the sampler returned {wrong}, not float64")


def run(sampler: str, data: SchoolsData, prior: Prior, param: str, settings: Settings) -> RunResult:
    spec = SAMPLERS[sampler]
    check_run_args(data, prior, param, settings)
    import pymc as pm

    jax = None
    if spec.uses_jax:
        from ._jax_common import chain_method_for, compile_spans, jax, union_length

        if jax is None:
            raise EngineUnavailable(availability(sampler) or "jax does not import")
        if not jax.config.jax_enable_x64:
            raise RuntimeError(f"{spec.engine}: jax_enable_x64 is off; this engine samples in float64 only")
    library = importlib.import_module(spec.name)
    window_fn = _window_function(spec)
    cores = _cores(spec, settings)
    nuts = spec.nuts(settings)
    if spec.uses_jax:
        nuts["chain_method"] = chain_method_for(nuts["chain_method"], settings.chains)

    t0, w0 = time.perf_counter(), time.time()
    model = build_model(data, prior, param)
    with contextlib.ExitStack() as stack:
        calls = stack.enter_context(_call_times(window_fn))
        spans = stack.enter_context(compile_spans()) if spec.uses_jax else None
        try:
            with model:
                idata = pm.sample(
                    draws=settings.draws,
                    tune=settings.warmup,
                    chains=settings.chains,
                    cores=cores,
                    random_seed=settings.seed,
                    nuts_sampler=spec.name,
                    nuts=dict(nuts),
                    progressbar=False,
                    quiet=True,
                    compute_convergence_checks=False,
                )
        except Exception as e:
            e.add_note(f"{spec.engine}: pm.sample(nuts_sampler={spec.name!r}) with PyMC {pm.__version__}, "
                       f"{spec.name} {library.__version__}")
            raise
        returned = time.time()
    if len(calls) != 1:
        raise RuntimeError(f"{spec.engine}: expected one call of {spec.window} in pm.sample, saw {len(calls)}")
    entry, exit_ = calls[0]
    compile_in_call = 0.0
    if spec.uses_jax:
        if not spans:
            raise RuntimeError(
                f"jax {jax.__version__} reported no compile events: their names changed, so compile time "
                "cannot be separated from sampling"
            )
        compile_in_call = union_length(spans, within=(entry, exit_))

    posterior = pymc_engine.posterior_arrays(idata)
    stats = _sample_stats(spec, idata["sample_stats"].dataset)
    _check_float64(spec, posterior, stats)
    draws = to_datatree(posterior, stats, data, prior, spec.engine)
    timings = Timings(
        compile_s=(entry - w0) + compile_in_call,
        inference_s=(exit_ - entry) - compile_in_call,
        total_s=time.perf_counter() - t0,
        compile_cached=bool(spans is not None and spans.cached),
    )

    extra: dict = {}
    if spec.uses_jax:
        import jaxlib

        extra.update(
            jax_version=jax.__version__,
            jaxlib_version=jaxlib.__version__,
            jax_enable_x64=bool(jax.config.jax_enable_x64),
            backend=f"PyTensor -> JAX ({jax.default_backend()})",
            parallel={"chain_method": nuts["chain_method"], "chains": settings.chains,
                      "cpu_devices": jax.local_device_count()},
            threads=os.cpu_count(),  # XLA's CPU intra-op thread pool defaults to every core
            xla_flags=os.environ.get("XLA_FLAGS", ""),
            compile_cache=spans.cache_note(),
        )
    else:
        # what nutpie says it ran with (tuning steps, maxdepth, target_accept, adaptation, ...)
        nutpie_settings = json.loads(idata["sample_stats"].attrs["inference_library_settings"])
        extra.update(
            backend="PyTensor -> numba (nutpie.compile_pymc_model's default)",
            parallel={"mode": "threads", "cores": cores, "chains": settings.chains},
            threads=cores,
            sampler_reported=nutpie_settings,
        )
    manifest = base_manifest(
        spec.engine, "pymc", pm.__version__, data, prior, param, settings,
        **pymc_engine.pytensor_manifest(),
        sampler=f"{spec.name} NUTS via pm.sample(nuts_sampler={spec.name!r})",
        sampler_version=library.__version__,
        nuts_kwargs=nuts,
        settings_as=dict(spec.settings_as),
        stats={**{k: f"-{v}" if k in spec.negated else v for k, v in spec.stats.items()},
               "tree_depth": TREE_DEPTH},
        stats_notes=dict(spec.notes),
        init=spec.init,
        mass_matrix=spec.mass_matrix,
        **extra,
        pymc_sampling_time_s=float(idata["posterior"].attrs["sampling_time"]),
        post_sampling_s=returned - exit_,
        timing_method=spec.timing_method,
    )
    return RunResult(draws=draws, timings=timings, manifest=manifest)
