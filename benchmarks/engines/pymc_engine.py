"""PyMC engine: PyMC's own NUTS on models/pymc_model.py (PyTensor's default backend).

A worker process lives across many runs: the model of each problem is built once and keeps the
logp/dlogp function its first ``pm.sample`` compiles (``build_model(keep_compiled=True)``; a few
problems, least recently used evicted), so another seed does not compile it again. Its draws are
those of a new model for the same seed (tests/test_pymc_samplers.py checks it). Measured (Rubin's data,
default prior, non-centred, default settings, 5 seeds, 2 cores shared at load ~4.7): compile_s median
1.70 s with a new model per run, 0.63 s with the kept model; the rest is pm.sample's own set-up per
call (step assignment, jittered initial points, trace functions), left alone because caching those
functions as ``freeze_model`` does reorders the jitter's random streams (other draws, measured).
"""

from __future__ import annotations

import importlib.util
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

import numpy as np

from models.problem import Problem
from models.pymc_model import build_model

from .base import COMPILED, REUSED, RunResult, Settings, Timings, base_manifest, check_problem, check_run_args
from .convert import point_arrays, to_datatree

INIT = "jitter+adapt_diag"

#: models kept per process, each with its compiled logp/dlogp function (least recently used evicted)
MODELS_KEPT = 4

#: PyMC caps the tree depth lower for its first 200 tuning draws (default 8); never above max_treedepth.
EARLY_MAX_TREEDEPTH = 8

# Chains run one after another in this process (cores=1), a measured choice: `nox -s tune`
# (results/tuning/TUNING.md) times it against cores=2 (a worker process per chain) and PyTensor's C
# backend. For a model this small, worker processes gain little over one process (their per-draw
# traffic with the parent eats most of the second core) and cost a start-up each run; one process also
# keeps the draw-by-draw timings that split warmup from sampling exact.
CORES = 1
#: pm.sample(compile_kwargs={"mode": ...}) for the logp/dlogp functions; None = PyTensor's default
COMPILE_MODE: str | None = None

TIMING_METHOD = (
    "pm.sample keeps its tuning draws; every NUTS draw records perf_counter_start/perf_counter_diff. "
    "compile_s = start of run() to the first draw of any chain (model build, PyTensor compilation of "
    "logp/dlogp, jittered init; PyTensor's on-disk cache makes a repeated compile cheaper; a later seed "
    "of a problem in the same process reuses the model and its compiled logp/dlogp: manifest 'program'). "
    "inference_s = first draw start to last draw end over all chains. warmup_s/sampling_s split "
    "inference_s in proportion to the chain-seconds spent tuning vs drawing (exact for sequential "
    "chains; the wall-clock share when chains overlap)."
)


def _phase_times(tune, draws) -> tuple[float, float, float, float]:
    """(first draw's start, inference_s, warmup_s, sampling_s) from the per-draw perf_counter stats
    of the tuning and the kept draws (datasets shaped (chain, draw); tune is None without warmup)."""
    first, last, chain_seconds = np.inf, -np.inf, {"warmup": 0.0, "sampling": 0.0}
    for phase, ds in (("warmup", tune), ("sampling", draws)):
        if ds is None or ds.sizes.get("draw", 0) == 0:
            continue
        start = ds["perf_counter_start"].values
        end = start + ds["perf_counter_diff"].values
        first, last = min(first, float(start.min())), max(last, float(end.max()))
        # each chain's time in this phase: start of its first draw to end of its last
        chain_seconds[phase] = float((end.max(axis=1) - start.min(axis=1)).sum())
    inference = last - first
    warmup = inference * chain_seconds["warmup"] / (chain_seconds["warmup"] + chain_seconds["sampling"])
    return first, inference, warmup, inference - warmup


def posterior_arrays(draws) -> dict[str, np.ndarray]:
    """mu, tau (unless fixed: then it is pm.Data), theta and theta_tilde from pm.sample's posterior, or
    from a mapping of the model's variables to their draws; shared with the engines that run other NUTS
    samplers on the PyMC model (pymc_external.py, pymc_numpyro.py)."""
    post = draws["posterior"].dataset if "posterior" in draws else draws
    return {k: np.asarray(post[k]) for k in ("mu", "tau", "theta", "theta_tilde") if k in post}


def pytensor_manifest() -> dict:
    """PyTensor's version, default linker and float type, for every engine that runs the PyMC model."""
    import pytensor  # with PyMC: optional, lazy

    return {
        "pytensor_version": pytensor.__version__,
        "pytensor_linker": type(pytensor.compile.mode.get_default_mode().linker).__name__,
        "pytensor_floatX": pytensor.config.floatX,
    }


def sample_args(settings: Settings, cores: int) -> dict:
    """The ``pm.sample`` arguments every PyMC-driven engine shares: the suite's Settings, no progress
    bar or console output, and no convergence checks (the suite computes its own diagnostics)."""
    return {"draws": settings.draws, "tune": settings.warmup, "chains": settings.chains, "cores": cores,
            "random_seed": settings.seed, "progressbar": False, "quiet": True,
            "compute_convergence_checks": False}


class PyMCEngine:
    name = "pymc"
    ppl = "pymc"

    def __init__(self) -> None:
        #: (problem, COMPILE_MODE) -> [model, runs that sampled it]
        self._models: OrderedDict[tuple[Problem, str | None], list] = OrderedDict()

    def availability(self) -> str | None:
        if importlib.util.find_spec("pymc") is None:
            return "pymc is not installed: pip install 'eight-schools-ppl[pymc]'"
        import pymc  # noqa: F401 - importable, not only installed (a broken install is a reason, not a crash)

        return None

    def _model(self, problem: Problem) -> list:
        """[the problem's kept model, how many runs sampled it]; built on a problem's first run (and
        again when COMPILE_MODE changes, so that "reused" always means this compiled function)."""
        key = (problem, COMPILE_MODE)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        entry = self._models[key] = [build_model(problem.data, problem.prior, problem.parameterization,
                                                 keep_compiled=True), 0]
        while len(self._models) > MODELS_KEPT:
            self._models.popitem(last=False)
        return entry

    def run(self, problem: Problem, settings: Settings) -> RunResult:
        check_run_args(problem, settings)
        import pymc as pm  # PyMC stays optional: imported lazily

        t0 = time.perf_counter()
        entry = self._model(problem)
        model, reused = entry[0], entry[1] > 0
        cores = min(CORES, settings.chains)
        early_max_treedepth = min(EARLY_MAX_TREEDEPTH, settings.max_treedepth)
        with model:
            idata = pm.sample(
                **sample_args(settings, cores),
                init=INIT,
                nuts_sampler="pymc",
                compile_kwargs={"mode": COMPILE_MODE} if COMPILE_MODE else None,
                nuts={
                    "target_accept": settings.target_accept,
                    "max_treedepth": settings.max_treedepth,
                    "early_max_treedepth": early_max_treedepth,
                },
                discard_tuned_samples=False,  # the tuning draws' timestamps time the warmup
            )
        entry[1] += 1
        first_draw, inference_s, warmup_s, sampling_s = _phase_times(
            idata["warmup_sample_stats"].dataset if "warmup_sample_stats" in idata.children else None,
            idata["sample_stats"].dataset,
        )
        ss = idata["sample_stats"].dataset
        draws = to_datatree(
            posterior_arrays(idata),
            {
                "diverging": ss["diverging"].values,  # per draw; PyMC's `divergences` is cumulative
                "tree_depth": ss["tree_depth"].values,
                "n_steps": ss["n_steps"].values,
                "step_size": ss["step_size"].values,
                "energy": ss["energy"].values,
                "lp": ss["lp"].values,
                "acceptance_rate": ss["acceptance_rate"].values,
            },
            problem.data, problem.prior, "pymc",
        )
        total_s = time.perf_counter() - t0
        timings = Timings(
            compile_s=first_draw - t0,
            inference_s=inference_s,
            warmup_s=warmup_s,
            sampling_s=sampling_s,
            total_s=total_s,
            compile_cached=reused,
        )
        manifest = base_manifest(
            self.name, self.ppl, pm.__version__, problem, settings,
            **pytensor_manifest(),
            sampler="pymc NUTS",
            init=INIT,
            mass_matrix="diagonal, adapted (PyMC windowed running variance)",
            early_max_treedepth=early_max_treedepth,
            parallel={"mode": "multiprocess" if cores > 1 else "sequential", "cores": cores,
                      "chains": settings.chains},
            threads=cores,  # PyTensor's compiled functions are single-threaded; one process per running chain
            program=REUSED if reused else COMPILED,
            compile_reused=reused,
            timing_method=TIMING_METHOD,
        )
        return RunResult(draws=draws, timings=timings, manifest=manifest)

    def log_density(self, problem: Problem) -> Callable[[Mapping], float]:
        return log_density(problem)


def log_density(problem: Problem) -> Callable[[Mapping], float]:
    """PyMC's compiled ``model.compile_logp(jacobian=False)`` at a constrained point; shared by every
    engine that samples the PyMC model.

    The point is mapped onto the value variables (tau_log__, mu_interval__, ...) by the model's own
    transforms' ``forward``, compiled once; a point outside a transform's domain gives -inf.
    """
    check_problem(problem)
    import pytensor  # with PyMC: optional, lazy

    data, prior, param = problem.data, problem.prior, problem.parameterization

    model = build_model(data, prior, param)
    logp = model.compile_logp(jacobian=False)
    inputs, outputs = [], []
    for rv in model.free_RVs:
        x = rv.type(name=rv.name)
        transform = model.rvs_to_transforms.get(rv)
        inputs.append(x)
        outputs.append(x if transform is None else transform.forward(x, *rv.owner.inputs))
    to_values = pytensor.function(inputs, outputs)
    names = [rv.name for rv in model.free_RVs]
    value_names = [model.rvs_to_values[rv].name for rv in model.free_RVs]

    def fn(point: Mapping) -> float:
        arrays = point_arrays(point, data, prior, param)
        values = to_values(*(arrays[n] for n in names))
        if not all(np.all(np.isfinite(v)) for v in values):
            return -np.inf  # outside the support (tau <= 0, or outside uniform bounds)
        return float(logp(dict(zip(value_names, values, strict=True))))

    return fn


ENGINE = PyMCEngine()
