"""NumPyro engine: NumPyro's NUTS on models/numpyro_model.py, JAX on CPU in float64."""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable, Mapping

import numpy as np

from models import Prior, SchoolsData
from models.logdensity import check_parameterization
from models.numpyro_model import build_model

from ._jax_common import COMPILE_EVENTS as _COMPILE_EVENTS
from ._jax_common import chain_method_for as _chain_method_for
from ._jax_common import compile_spans as _compile_spans
from ._jax_common import jax  # None when JAX is missing; imported with float64 enabled
from ._jax_common import union_length as _union_length
from .base import RunResult, Settings, Timings, base_manifest, check_run_args
from .convert import point_arrays, to_datatree, tree_depth_from_steps

# How the chains run, a measured choice (results/tuning/TUNING.md, nox -s tune): "parallel" (pmap, one
# chain per XLA CPU device; _jax_common asks for the devices) against "vectorized" (one vmapped program
# runs all chains in lock-step, every NUTS step as long as the slowest chain's) and "sequential". Where
# there are fewer devices than chains, "parallel" becomes "sequential" (chain_method_for), and the
# manifest says which ran.
CHAIN_METHOD = "parallel"
INIT = "init_to_uniform(radius=2)"
FIELDS = ("diverging", "num_steps", "energy", "potential_energy", "adapt_state.step_size", "accept_prob")

TIMING_METHOD = (
    "mcmc.warmup() then mcmc.run() from the post-warmup state, each timed to block_until_ready. "
    "NumPyro traces and compiles inside both calls (every call builds a fresh jitted loop), so JAX's "
    "own compile events (jax.monitoring time spans of jaxpr tracing, MLIR lowering and XLA backend "
    "compilation, overlaps merged) are subtracted from each call: warmup_s and sampling_s are the "
    "calls' wall time minus their compile time (warmup_s so keeps NumPyro's un-jitted set-up: model "
    "initialisation and eager ops, ~0.1-0.3 s here); compile_s = model build + both calls' compile time. With JAX's persistent "
    "compilation cache (on by default, see _jax_common.compilation_cache_dir) a warm run still traces "
    "and lowers but loads the XLA executables from disk; compile_cached says so. "
    "An executable loaded from that cache pays a fixed first-execution cost that falls inside the timed "
    "phase: measured here, 6 seeds each, warmup_s 0.23 vs 0.21 s and sampling_s 0.105 vs 0.09 s (cached vs "
    "compiled in process) at 1000 + 1000 draws, and the same ~25 ms gap at 8000 + 8000, so a fixed cost, "
    "not a slower loop."
)


def availability() -> str | None:
    if jax is None or importlib.util.find_spec("numpyro") is None:
        return "numpyro/jax is not installed: pip install 'eight-schools-ppl[numpyro]'"
    return None


def run(data: SchoolsData, prior: Prior, param: str, settings: Settings) -> RunResult:
    check_run_args(data, prior, param, settings)
    import jaxlib
    import numpyro
    from numpyro.infer import MCMC, NUTS, init_to_uniform

    chain_method = _chain_method_for(CHAIN_METHOD, settings.chains)
    t0 = time.perf_counter()
    kernel = NUTS(
        build_model(data, prior, param),
        target_accept_prob=settings.target_accept,
        max_tree_depth=settings.max_treedepth,
        init_strategy=init_to_uniform(radius=2),
        dense_mass=False,
        adapt_mass_matrix=True,
        adapt_step_size=True,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=settings.warmup,
        num_samples=settings.draws,
        num_chains=settings.chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    built = time.perf_counter()
    with _compile_spans() as spans:
        mcmc.warmup(jax.random.PRNGKey(settings.seed))
        jax.block_until_ready(mcmc.post_warmup_state)
        warmed = time.perf_counter()
        warmup_compile = _union_length(spans)
        spans.clear()
        mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=FIELDS)
        samples = mcmc.get_samples(group_by_chain=True)
        extra = mcmc.get_extra_fields(group_by_chain=True)
        jax.block_until_ready((samples, extra))
        sampled = time.perf_counter()
        run_compile = _union_length(spans)
    if warmup_compile == 0.0:
        raise RuntimeError(
            f"jax {jax.__version__} reported no compile events {_COMPILE_EVENTS}: "
            "their names changed, so compile time cannot be separated from sampling"
        )
    n_steps = np.asarray(extra["num_steps"])
    draws = to_datatree(
        {k: np.asarray(v) for k, v in samples.items()},
        {
            "diverging": np.asarray(extra["diverging"]),
            "tree_depth": tree_depth_from_steps(n_steps),
            "n_steps": n_steps,
            "step_size": np.asarray(extra["adapt_state.step_size"]),
            "energy": np.asarray(extra["energy"]),
            "lp": -np.asarray(extra["potential_energy"]),
            "acceptance_rate": np.asarray(extra["accept_prob"]),
        },
        data, prior, "numpyro",
    )
    warmup_s = max(0.0, warmed - built - warmup_compile)
    sampling_s = max(0.0, sampled - warmed - run_compile)
    timings = Timings(
        compile_s=(built - t0) + warmup_compile + run_compile,
        inference_s=warmup_s + sampling_s,
        warmup_s=warmup_s,
        sampling_s=sampling_s,
        total_s=time.perf_counter() - t0,
        compile_cached=spans.cached,
    )
    manifest = base_manifest(
        "numpyro", "numpyro", numpyro.__version__, data, prior, param, settings,
        jax_version=jax.__version__,
        jaxlib_version=jaxlib.__version__,
        jax_enable_x64=bool(jax.config.jax_enable_x64),
        backend=jax.default_backend(),
        sampler="numpyro NUTS",
        init=INIT,
        mass_matrix="diagonal, adapted (Stan-style windowed adaptation)",
        parallel={"chain_method": chain_method, "chains": settings.chains, "cpu_devices": jax.local_device_count()},
        threads=os.cpu_count(),  # XLA's CPU intra-op thread pool defaults to every core
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        compile_cache=spans.cache_note(),
        timing_method=TIMING_METHOD,
    )
    return RunResult(draws=draws, timings=timings, manifest=manifest)


def log_density(data: SchoolsData, prior: Prior, param: str) -> Callable[[Mapping], float]:
    """``numpyro.infer.util.log_density`` of the model at a constrained point (no Jacobian);
    -inf where a value is outside its site's support (checked here, with NumPyro's own argument
    validation off so that, e.g., tau < 0 gives -inf rather than an error)."""
    check_parameterization(param)
    import jax.numpy as jnp
    import numpyro
    from numpyro.infer.util import log_density as numpyro_log_density

    model = build_model(data, prior, param)

    def fn(point: Mapping) -> float:
        arrays = point_arrays(point, data, prior, param)
        if "tau" in arrays and arrays["tau"] <= 0:  # the closed interval of uniform(0, u) admits 0
            return -np.inf
        params = {n: jnp.asarray(v) for n, v in arrays.items()}
        with numpyro.validation_enabled(False):
            lp, trace = numpyro_log_density(model, (), {}, params)
        for site in trace.values():
            if site["type"] == "sample" and not site["is_observed"]:
                if not bool(jnp.all(site["fn"].support(site["value"]))):
                    return -np.inf
        return float(lp)

    return fn
