"""PyMC's model sampled by other NUTS implementations: the engines pymc-nutpie, pymc-nutpie-flow,
pymc-numpyro and pymc-blackjax, one :class:`ExternalSamplerEngine` each, built from the :data:`SAMPLERS`
table (``ENGINES["nutpie"]`` etc. in the registry).

The model (models/pymc_model.py), its log density (``pymc_engine.log_density``) and the posterior
conversion are the pymc engine's; only the sampler differs. Each sampler names its sample stats
differently and lacks some: :data:`SAMPLERS` says which of its stats fills each of the layout's, a stat
it does not record makes ``run`` fail (none is invented), and ``tree_depth`` is derived from the
leapfrog count for all three, so it means Stan's ``treedepth__`` everywhere.

pymc-nutpie does what ``pm.sample(nuts_sampler="nutpie")`` does, in two steps, as nutpie's own
documentation uses it: ``nutpie.compile_pymc_model`` once per problem (kept in this process, a few
problems, least recently used evicted), then ``nutpie.sample`` per run with PyMC's mapping of the
settings and of the seed, so a later seed compiles nothing (measured, Rubin's data, default prior,
5 seeds, load ~4.7: compile_s median 2.36 s when compiled, 0.000 s when kept); the draws are
pm.sample's for the same seed (tests/test_pymc_samplers.py checks it).

pymc-nutpie-flow is the same two calls with nutpie's normalizing-flow adaptation, as nutpie's
documentation uses it: ``nutpie.compile_pymc_model(model, backend="jax", gradient_backend="jax")`` and
``nutpie.sample(..., adaptation="flow")`` (the older ``transform_adapt=True``, which nutpie 0.16.11
still accepts with a FutureWarning), nutpie's flow defaults (``make_transform_adapter``); it needs
flowjax. During tuning nutpie fits a flowjax normalizing flow to the draws and their gradients (a
Fisher-divergence loss) and runs NUTS in the flow's space; JAX runs the model's logp, its gradient
and the flow's training, in float64 (_jax_common's x64, imported first).

pymc-numpyro likewise does what ``pm.sample(nuts_sampler="numpyro")`` does
(pymc.sampling.jax.sample_jax_nuts), in steps that let a worker keep the compiled program
(:mod:`.pymc_numpyro`): once per
program (the problem and the settings but the seed) PyMC's JAX conversion of the model's log density
(``get_jaxified_logp``), NumPyro's ``NUTS``/``MCMC`` on it with PyMC's arguments, and PyMC's
postprocessing function; per run PyMC's jittered initial points for the seed, ``MCMC.run`` and the
postprocessing. pm.sample builds all of that afresh on every call, so every seed traced and compiled
again (0.7 to 1.8 s a run here for 0.05 s of sampling). The draws are pm.sample's for the same seed
(tests/test_pymc_samplers.py checks it, compiled and kept) with the chains in parallel, the shipped
chain method (results/tuning/TUNING.md); "vectorized" and "sequential" map the same one-chain program
as the numpyro engine does (_jax_common.ChainPrograms), not NumPyro's own vectorised kernel or lax.map.
pymc-blackjax runs through ``pm.sample``.

A sampler that PyMC cannot drive (PyMC 6.4 with BlackJAX 1.7.1, whose kernel rejects the
``progress_bar`` keyword PyMC passes it: the registry's KNOWN_BREAKS) fails in ``run`` with its own
exception, unaltered, so that the harness records it; ``availability`` only says whether the packages
import.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextlib import nullcontext

from models.problem import Problem
from models.pymc_model import build_model

from . import pymc_engine
from ._call_timing import call_times, function_at
from ._pymc_common import (
    Sampler,
    check_float64,
    jax_nuts,
    jax_sampler_fields,
    pm_sample_seed,
    sample_stats,
    sampler_manifest,
)
from .base import (
    COMPILED,
    REUSED,
    RunResult,
    Settings,
    Timings,
    check_run_args,
)
from .convert import to_datatree
from .pymc_numpyro import run_kept

__all__ = ["SAMPLERS", "ENGINES", "Sampler", "ExternalSamplerEngine"]

#: compiled nutpie models kept per process (least recently used evicted)
MODELS_KEPT = 4

#: how the JAX samplers run their chains (pm.sample(nuts_sampler_kwargs)'s chain_method), per sampler;
#: a measured choice: results/tuning/TUNING.md (nox -s tune)
#: (BlackJAX's stays vectorized: it fails upstream before it samples, so nothing could be measured.)
CHAIN_METHOD: dict[str, str] = {"numpyro": "parallel", "blackjax": "vectorized"}
#: nutpie's threads (pm.sample(cores)); None = one per chain, at most one per CPU (results/tuning/TUNING.md)
NUTPIE_CORES: int | None = None

NUTPIE_TIMING = (
    "As pm.sample(nuts_sampler='nutpie'): nutpie.compile_pymc_model builds the model's logp and gradient "
    "with PyTensor and compiles them to numba (and the jittered initial-point function), then "
    "nutpie.sample runs warmup and draws of every chain in Rust threads and returns when all have "
    "finished. inference_s = that call (perf_counter around it; PyMC times the same span as "
    "sampling_time). compile_s = start of run() to that call: model build, PyTensor rewriting, numba "
    "compilation (PyTensor's and numba's on-disk caches make a first compile in a process cheaper), "
    "~0 for a later seed of a problem whose compiled model this process kept (manifest 'program'). "
    "nutpie reports no per-draw or per-phase times, so warmup_s and sampling_s are None; total_s adds "
    "the conversion of the result."
)

NUTPIE_FLOW_TIMING = (
    "nutpie.compile_pymc_model(model, backend='jax', gradient_backend='jax') builds the model's logp and "
    "gradient with PyTensor's JAX conversion, then nutpie.sample(adaptation='flow') runs warmup (the "
    "normalizing flow's fitting, in JAX) and draws of every chain in Rust threads and returns when all "
    "have finished; JAX compiles the logp, its gradient and the flow's functions inside that call. "
    "inference_s = that call (perf_counter around it) minus JAX's compile events within it (jax.monitoring "
    "spans of jaxpr tracing, MLIR lowering and XLA compilation, overlaps merged; manifest "
    "jit_compile_in_sampling_s; while one chain's thread compiles, another may sample, so this may "
    "subtract slightly more than the compiling delays). compile_s = start of run() to that call (model "
    "build and PyTensor -> JAX; ~0 for a later seed of a problem whose compiled model this process kept, "
    "manifest 'program') + that compile time; JAX's in-memory caches are dropped after each run (memory "
    "maps, _jax_common.compile_spans), so each run compiles again, from JAX's persistent cache where it "
    "can (compile_cached). nutpie reports no per-phase times: warmup_s and sampling_s are None; total_s "
    "adds the conversion of the result."
)

#: nutpie's sample statistics under the suite's names (plain and flow-adapted nutpie alike)
NUTPIE_STATS = {"diverging": "diverging", "n_steps": "n_steps", "step_size": "step_size", "energy": "energy",
                "lp": "logp", "acceptance_rate": "mean_tree_accept"}
NUTPIE_DEPTH_NOTE = ("nutpie's own `depth` counts only the doublings kept in the final trajectory (lower than Stan's "
                     "treedepth__ where a last doubling was rejected), so it is not used")

NUMPYRO_TIMING = (
    "As pm.sample(nuts_sampler='numpyro') (pymc.sampling.jax.sample_jax_nuts), in steps: on a program's first "
    "run PyMC's JAX log density, NumPyro's NUTS and MCMC with PyMC's arguments and PyMC's postprocessing "
    "function are built and kept in process (the problem and settings but the seed; least recently used "
    "evicted); each run draws PyMC's jittered initial points for its seed, calls MCMC.run (warmup and draws "
    "of every chain in one call, through the program's one-chain executable compiled ahead of time and "
    "mapped over the chains: chain_method 'parallel' = pmap, one chain per XLA CPU device), collects the "
    "samples and stats as PyMC does (blocked until ready), then postprocesses. JAX's compile events within "
    "MCMC.run (jax.monitoring spans of jaxpr tracing, MLIR lowering and XLA compilation, overlaps merged) "
    "are subtracted: inference_s = the call minus its compile time. compile_s = start of run() to the call "
    "(model build and JAX conversion on a first run; initial points always) + the compile time inside it + "
    "the postprocessing's compilation (first run). No per-phase times: warmup_s and sampling_s are None."
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


SAMPLERS: dict[str, Sampler] = {
    "nutpie": Sampler(
        name="nutpie",
        engine="pymc-nutpie",
        modules=("nutpie",),
        extra="nutpie",
        window=None,  # the engine calls nutpie.sample itself
        uses_jax=False,
        nuts=lambda s: {"target_accept": s.target_accept, "max_treedepth": s.max_treedepth},
        settings_as={
            "chains": "nutpie.sample(chains), as pm.sample(chains)",
            "warmup": "nutpie.sample(tune), raised from 0 to 1 as PyMC does (nuts-rs needs a tuning step)",
            "draws": "nutpie.sample(draws)",
            "target_accept": "nutpie.sample(target_accept), as pm.sample(nuts={'target_accept'})",
            "max_treedepth": "nutpie.sample(maxdepth), as pm.sample(nuts={'max_treedepth'}) renamed by PyMC",
            "seed": "as pm.sample(random_seed): nutpie.sample(seed) = the first of PyMC's per-chain seeds",
        },
        stats=NUTPIE_STATS,
        notes={
            "tree_depth": NUTPIE_DEPTH_NOTE,
            "step_size": "the step size each draw used: nutpie jitters it around step_size_bar",
        },
        init="model initial point + uniform(-1, 1) jitter on the unconstrained scale (nutpie's default for PyMC)",
        mass_matrix="diagonal, adapted (nutpie's gradient-based estimate, nutpie's default)",
        timing_method=NUTPIE_TIMING,
    ),
    "nutpie-flow": Sampler(
        name="nutpie",
        engine="pymc-nutpie-flow",
        modules=("nutpie", "jax", "flowjax"),
        extra="nutpie-flow",
        window=None,  # the engine calls nutpie.sample itself
        uses_jax=True,
        nuts=lambda s: {"target_accept": s.target_accept, "max_treedepth": s.max_treedepth,
                        "adaptation": "flow"},
        settings_as={
            "chains": "nutpie.sample(chains)",
            "warmup": "nutpie.sample(tune), raised from 0 to 1 (nuts-rs needs a tuning step); the flow is "
                      "fitted in windows of these tuning draws",
            "draws": "nutpie.sample(draws)",
            "target_accept": "nutpie.sample(target_accept)",
            "max_treedepth": "nutpie.sample(maxdepth)",
            "seed": "as pm.sample(random_seed) hands nutpie its seed: the first of PyMC's per-chain seeds",
        },
        stats=NUTPIE_STATS,
        notes={
            "tree_depth": NUTPIE_DEPTH_NOTE,
            "step_size": "the step size each draw used, in the flow's space: nutpie jitters it around "
                         "step_size_bar",
            "energy": "the Hamiltonian in the flow's space (so E-BFMI is of that space's dynamics)",
        },
        init="model initial point + uniform(-1, 1) jitter on the unconstrained scale (nutpie's default for PyMC)",
        mass_matrix="normalizing flow (nutpie adaptation='flow', its defaults: a flowjax coupling flow fitted "
                    "during tuning to the draws and gradients by a Fisher-divergence loss), NUTS in its space",
        timing_method=NUTPIE_FLOW_TIMING,
    ),
    "numpyro": Sampler(
        name="numpyro",
        engine="pymc-numpyro",
        modules=("jax", "numpyro", "pymc.sampling.jax"),
        extra="numpyro",
        window=None,  # the engine runs pm.sample's NumPyro path itself, its program kept (pymc_numpyro.py)
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
        timing_method=NUMPYRO_TIMING,
    ),
    "blackjax": Sampler(
        name="blackjax",
        engine="pymc-blackjax",
        modules=("jax", "blackjax", "pymc.sampling.jax"),
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
    reason = pymc_engine.ENGINE.availability()
    if reason is not None:
        return reason
    if spec.uses_jax:  # JAX through _jax_common: float64 on before any JAX array exists
        from ._jax_common import jax
        if jax is None:
            return f"jax does not import: pip install 'eight-schools-ppl[{spec.extra}]'"
    for module in spec.modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            return f"{module} does not import ({e}): pip install 'eight-schools-ppl[{spec.extra}]'"
    return None


def _cores(spec: Sampler, settings: Settings) -> int:
    """pm.sample's (nutpie.sample's) cores. nutpie runs that many chains at once in threads of one
    process, measured: Rubin's data, default prior, non-centred, 4 chains x (1000 warmup + 1000 draws),
    2 shared CPUs, nutpie.sample's seconds, three runs each: cores=1: 0.077, 0.071, 0.070; cores=2:
    0.052, 0.058, 0.061. The JAX samplers run their chains on XLA CPU devices (CHAIN_METHOD); PyMC
    only uses cores there to cap BLAS threads, which XLA does not use."""
    if spec.name == "nutpie" and NUTPIE_CORES is not None:
        return min(settings.chains, NUTPIE_CORES)
    return min(settings.chains, os.cpu_count() or 1)


def _draws(spec: Sampler, idata, problem: Problem):
    posterior = pymc_engine.posterior_arrays(idata)
    stats = sample_stats(spec, idata["sample_stats"].dataset)
    check_float64(spec, posterior, stats)
    return to_datatree(posterior, stats, problem.data, problem.prior, spec.engine)


def _run_pm_sample(spec: Sampler, problem: Problem, settings: Settings) -> RunResult:
    """A JAX sampler through pm.sample(nuts_sampler=...), its compile time told apart by JAX's events."""
    import pymc as pm

    from ._jax_common import compile_spans, jax, union_length

    nuts = jax_nuts(spec, settings)
    library = importlib.import_module(spec.name)
    window_fn = function_at(spec.window, spec.engine)
    cores = _cores(spec, settings)

    t0, w0 = time.perf_counter(), time.time()
    model = build_model(problem.data, problem.prior, problem.parameterization)
    with call_times(window_fn) as calls, compile_spans() as spans:
        try:
            with model:
                idata = pm.sample(
                    **pymc_engine.sample_args(settings, cores),
                    nuts_sampler=spec.name,
                    nuts=dict(nuts),
                )
        except Exception as e:
            e.add_note(f"{spec.engine}: pm.sample(nuts_sampler={spec.name!r}) with PyMC {pm.__version__}, "
                       f"{spec.name} {library.__version__}")
            raise
        returned = time.time()
    if len(calls) != 1:
        raise RuntimeError(f"{spec.engine}: expected one call of {spec.window} in pm.sample, saw {len(calls)}")
    entry, exit_ = calls[0]
    if not spans:
        raise RuntimeError(f"jax {jax.__version__} reported no compile events: their names changed, so "
                           "compile time cannot be separated from sampling")
    compile_in_call = union_length(spans, within=(entry, exit_))
    draws = _draws(spec, idata, problem)
    timings = Timings(
        compile_s=(entry - w0) + compile_in_call,
        inference_s=(exit_ - entry) - compile_in_call,
        total_s=time.perf_counter() - t0,
        compile_cached=spans.cached,
    )
    manifest = sampler_manifest(
        spec, problem, settings, library, nuts,
        sampler=f"{spec.name} NUTS via pm.sample(nuts_sampler={spec.name!r})",
        # pm.sample converts and compiles the model afresh on every call: never a kept program
        **jax_sampler_fields(nuts["chain_method"], settings.chains, False, spans),
        compile_reused=False,
        pymc_sampling_time_s=float(idata["posterior"].attrs["sampling_time"]),
        post_sampling_s=returned - exit_,
    )
    return RunResult(draws=draws, timings=timings, manifest=manifest)


#: nutpie.compile_pymc_model's backends, per engine: pymc-nutpie's as pm.sample picks them (None);
#: the flow's as nutpie's documentation of the flow adaptation compiles the model
NUTPIE_COMPILE: dict[str, dict[str, str] | None] = {
    "pymc-nutpie": None,
    "pymc-nutpie-flow": {"backend": "jax", "gradient_backend": "jax"},
}


def nutpie_backend() -> str:
    """nutpie's backend as pm.sample picks it: "jax" where PyTensor's default linker is JAX's, else numba."""
    from pytensor.compile.mode import get_mode  # with PyMC: optional, lazy
    from pytensor.link.jax.linker import JAXLinker

    return "jax" if isinstance(get_mode(None).linker, JAXLinker) else "numba"


class ExternalSamplerEngine:
    """One row of :data:`SAMPLERS` as an engine."""

    def __init__(self, spec: Sampler) -> None:
        self.spec = spec
        self.name = spec.engine
        self.ppl = spec.name  # the sampler's distribution: what differs from the pymc engine
        #: problem -> (nutpie's compiled model, its backend)
        self._compiled: OrderedDict[Problem, tuple[object, str]] = OrderedDict()

    def availability(self) -> str | None:
        return availability(self.spec.name)

    def log_density(self, problem: Problem) -> Callable[[Mapping], float]:
        return pymc_engine.log_density(problem)  # the same PyMC model, so the same compiled log density

    def run(self, problem: Problem, settings: Settings) -> RunResult:
        check_run_args(problem, settings)
        if self.spec.name == "nutpie":
            return self._run_nutpie(problem, settings)
        if self.spec.name == "numpyro":
            return run_kept(self.spec, problem, settings)
        return _run_pm_sample(self.spec, problem, settings)

    def _nutpie_model(self, problem: Problem) -> tuple[object, str, bool]:
        """(nutpie's compiled model of the problem, its backend, whether this process kept it)."""
        import nutpie  # optional, lazy

        if problem in self._compiled:
            self._compiled.move_to_end(problem)
            return (*self._compiled[problem], True)
        model = build_model(problem.data, problem.prior, problem.parameterization)
        backends = NUTPIE_COMPILE[self.name]
        if backends is None:
            backend = nutpie_backend()
            compiled = nutpie.compile_pymc_model(model, var_names=None, backend=backend)  # as pm.sample calls it
        else:
            from ._jax_common import jax  # noqa: F401 - float64 on before PyTensor's JAX conversion runs

            backend = backends["backend"]
            compiled = nutpie.compile_pymc_model(model, var_names=None, **backends)
        self._compiled[problem] = (compiled, backend)
        while len(self._compiled) > MODELS_KEPT:
            self._compiled.popitem(last=False)
        return compiled, backend, False

    def _run_nutpie(self, problem: Problem, settings: Settings) -> RunResult:
        """pm.sample(nuts_sampler="nutpie")'s two calls (pymc.sampling.mcmc._sample_external_nuts), the
        compiled model kept for the problem's later seeds."""
        import nutpie  # optional, lazy

        spec = self.spec
        t0 = time.perf_counter()
        compiled, backend, reused = self._nutpie_model(problem)
        cores = _cores(spec, settings)
        kwargs = spec.nuts(settings)
        kwargs["maxdepth"] = kwargs.pop("max_treedepth")  # as pymc.sampling.mcmc._sample_external_nuts
        flow = kwargs.get("adaptation") == "flow"
        seed = pm_sample_seed(settings.seed, settings.chains)
        # the flow's JAX functions (logp, gradient, the flow's training) compile inside nutpie.sample:
        # JAX's compile events there are told apart (and JAX's in-memory caches dropped after the run)
        spans_cm = nullcontext([])
        if flow:
            from ._jax_common import compile_spans, device_label, jax, jax_manifest, union_length

            spans_cm = compile_spans()
        with spans_cm as spans:
            t1, w1 = time.perf_counter(), time.time()
            idata = nutpie.sample(
                compiled,
                draws=settings.draws,
                tune=max(settings.warmup, 1),  # nuts-rs needs a tuning step; pm.sample raises 0 to 1 too
                chains=settings.chains,
                cores=cores,
                seed=seed,
                save_warmup=False,  # pm.sample(discard_tuned_samples=True), its default
                store_unconstrained=False,
                progress_bar=False,
                **kwargs,
            )
            t2, w2 = time.perf_counter(), time.time()
        extra = {}
        jit_s = 0.0
        if flow:
            jit_s = union_length(spans, within=(w1, w2))
            extra = {**{k: v for k, v in jax_manifest().items() if k != "backend"},
                     "jax_backend": jax.default_backend(), "jit_compile_in_sampling_s": jit_s,
                     "flowjax_version": importlib.metadata.version("flowjax"), "compile_cache": spans.cache_note(),
                     "device": device_label(settings.device)}
        draws = _draws(spec, idata, problem)
        timings = Timings(compile_s=t1 - t0 + jit_s, inference_s=t2 - t1 - jit_s, total_s=time.perf_counter() - t0,
                          compile_cached=spans.cached if flow else reused)
        manifest = sampler_manifest(
            spec, problem, settings, nutpie, kwargs,
            sampler=("nutpie NUTS with normalizing-flow adaptation (adaptation='flow') on "
                     "nutpie.compile_pymc_model(model, backend='jax', gradient_backend='jax')" if flow else
                     "nutpie NUTS on nutpie.compile_pymc_model(model), as pm.sample(nuts_sampler='nutpie')"),
            backend=(f"PyTensor -> {backend}, gradient by jax (nutpie.compile_pymc_model)" if flow else
                     f"PyTensor -> {backend} (nutpie.compile_pymc_model, backend chosen as pm.sample does)"),
            parallel={"mode": "threads", "cores": cores, "chains": settings.chains},
            threads=cores,
            nutpie_seed=seed,
            # what nutpie says it ran with (tuning steps, maxdepth, target_accept, adaptation, ...)
            sampler_reported=json.loads(idata["sample_stats"].attrs["inference_library_settings"]),
            program=REUSED if reused else COMPILED,
            compile_reused=reused,
            **extra,
        )
        return RunResult(draws=draws, timings=timings, manifest=manifest)


#: the engines, by sampler: the registry's pymc-nutpie is ENGINES["nutpie"], etc.
ENGINES: dict[str, ExternalSamplerEngine] = {name: ExternalSamplerEngine(spec) for name, spec in SAMPLERS.items()}
