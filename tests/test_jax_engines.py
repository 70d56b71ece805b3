"""JAX-specific behaviour of the numpyro and blackjax engines (and the PyMC samplers on JAX): the
persistent XLA compilation cache across processes, compiled programs kept in process across seeds
(without re-tracing, with the draws of a fresh compile, and with a bounded count of memory maps),
and how the chains ran. (What every engine must do is in test_engines.py.)"""

import gc
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_engine

from benchmarks.engines import Settings
from benchmarks.engines._jax_common import (
    CHAIN_METHODS,
    ChainPrograms,
    CompileLog,
    ProgramCache,
    compilation_cache_dir,
    compile_spans,
    jax,
)
from benchmarks.engines.base import COMPILED, REUSED
from models import PRESETS, RUBIN
from models.problem import Problem

ROOT = Path(__file__).resolve().parents[1]
JAX_ENGINES = ("numpyro", "blackjax")
PROBLEM = Problem(RUBIN, PRESETS["default"], "noncentered")
SHORT = Settings(chains=2, warmup=150, draws=100, seed=3)

RUN_IN_A_NEW_PROCESS = """
import json, sys
from benchmarks.engines import Settings, get_engine
from models import PRESETS, RUBIN
from models.problem import Problem
engine = get_engine(sys.argv[1])
out = []
for seed in (1, 2):
    r = engine.run(Problem(RUBIN, PRESETS["default"], "noncentered"), Settings(chains=2, warmup=150, draws=100, seed=seed))
    out.append({"cached": r.timings.compile_cached, "compile_s": r.timings.compile_s,
                "note": r.manifest["compile_cache"], "program": r.manifest["program"]})
print(json.dumps(out))
"""


def _module(name):
    require_engine(name)
    return importlib.import_module(f"benchmarks.engines.{name}_engine")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    for var in ("EIGHT_SCHOOLS_JAX_CACHE", "JAX_COMPILATION_CACHE_DIR", "EIGHT_SCHOOLS_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert compilation_cache_dir() == tmp_path / ".cache" / "eight-schools-ppl" / "jax"
    monkeypatch.setenv("EIGHT_SCHOOLS_CACHE", str(tmp_path / "c"))
    assert compilation_cache_dir() == tmp_path / "c" / "jax"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "j"))
    assert compilation_cache_dir() == tmp_path / "j"
    monkeypatch.setenv("EIGHT_SCHOOLS_JAX_CACHE", "0")
    assert compilation_cache_dir() is None


def test_compile_log_is_cached_only_when_every_compile_hit():
    log = CompileLog()
    assert not log.cached  # nothing compiled, nothing loaded
    log.hits = 3
    assert log.cached
    log.misses = 1
    assert not log.cached


@pytest.mark.skipif(jax is None, reason="jax is not installed")
@pytest.mark.parametrize("clear", [True, False])
def test_compile_spans_clears_jax_s_caches_only_when_asked(monkeypatch, clear):
    calls = []
    monkeypatch.setattr(jax, "clear_caches", lambda: calls.append(1))
    with compile_spans(clear=clear):
        pass
    assert len(calls) == int(clear)


@pytest.mark.skipif(jax is None, reason="jax is not installed")
def test_program_cache_keeps_the_most_recently_used(monkeypatch):
    cleared = []
    monkeypatch.setattr(jax, "clear_caches", lambda: cleared.append(1))
    cache = ProgramCache(2)
    built = []

    def build(name):
        return lambda: built.append(name) or name

    assert cache.get("a", build("a")) == ("a", False)
    assert cache.get("b", build("b")) == ("b", False)
    assert cache.get("a", build("a")) == ("a", True)  # a is now the most recent
    assert cache.get("c", build("c")) == ("c", False)  # evicts b
    assert "a" in cache and "c" in cache and "b" not in cache
    assert built == ["a", "b", "c"] and cache.evictions == 1 and cleared == [1]
    cache.discard("a")
    assert "a" not in cache and len(cache) == 1
    with pytest.raises(ValueError, match="program cache size = 0"):
        ProgramCache(0)
    with pytest.raises(ValueError, match="chain method = 'pmap'"):
        ChainPrograms("pmap")


@pytest.mark.parametrize("name", JAX_ENGINES)
def test_second_process_loads_the_executables_and_a_second_seed_compiles_nothing(tmp_path, name):
    """A fresh persistent cache: the first process compiles (and fills it); the second loads every
    executable from it; in each process the second seed reuses the program compiled by the first."""
    require_engine(name)
    env = {**os.environ, "EIGHT_SCHOOLS_CACHE": str(tmp_path), "EIGHT_SCHOOLS_JAX_CACHE": "1"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", RUN_IN_A_NEW_PROCESS, name], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    (cold, cold_again), (warm, warm_again) = runs
    assert not cold["cached"] and "0 hits" in cold["note"], cold
    assert warm["cached"] and "0 misses" in warm["note"], warm
    for first, again in ((cold, cold_again), (warm, warm_again)):
        assert first["program"] == "compiled in this run"
        assert again["program"] == again["note"] == "compiled program reused in process" and again["cached"]
        assert again["compile_s"] < 0.01 * first["compile_s"]  # a lookup against a trace and a compile
    assert any((tmp_path / "jax").iterdir())


def test_parallel_chains_need_a_device_each(monkeypatch):
    from benchmarks.engines import _jax_common

    require_engine("numpyro")
    devices = _jax_common.jax.local_device_count()
    assert _jax_common.chain_method_for("parallel", devices) == "parallel"
    assert _jax_common.chain_method_for("parallel", devices + 1) == "sequential"
    assert _jax_common.chain_method_for("vectorized", devices + 1) == "vectorized"
    monkeypatch.setenv("EIGHT_SCHOOLS_JAX_CPU_DEVICES", "3")
    assert _jax_common.cpu_devices_wanted() == 3
    monkeypatch.setenv("EIGHT_SCHOOLS_JAX_CPU_DEVICES", "zero")
    with pytest.raises(ValueError, match="EIGHT_SCHOOLS_JAX_CPU_DEVICES = 'zero'"):
        _jax_common.cpu_devices_wanted()


@pytest.mark.samples
@pytest.mark.parametrize("name", JAX_ENGINES)
def test_manifest_says_how_the_chains_ran(name):
    module = _module(name)
    r = module.ENGINE.run(PROBLEM, SHORT)
    par = r.manifest["parallel"]
    assert par["chains"] == 2 and par["cpu_devices"] == jax.local_device_count() >= 1
    want = module.CHAIN_METHOD if module.CHAIN_METHOD != "parallel" or par["cpu_devices"] >= 2 else "sequential"
    assert par["chain_method"] == want and want in CHAIN_METHODS
    for key in ("jax_version", "jaxlib_version", "init", "mass_matrix", "program", "timing_method"):
        assert r.manifest[key], key


def _draws(result) -> dict[str, np.ndarray]:
    out = {f"posterior/{k}": v.values for k, v in result.draws["posterior"].data_vars.items()}
    out.update({f"sample_stats/{k}": v.values for k, v in result.draws["sample_stats"].data_vars.items()})
    return out


def _plain_numpyro(settings: Settings, chain_method: str) -> dict[str, np.ndarray]:
    """What the numpyro engine ran before it kept programs: a fresh MCMC, traced and compiled by
    NumPyro itself (pmap over the chains), warmup then sampling from the post-warmup state."""
    from numpyro.infer import MCMC, NUTS, init_to_uniform

    from benchmarks.engines.numpyro_engine import FIELDS
    from models.numpyro_model import build_model

    kernel = NUTS(build_model(RUBIN, PROBLEM.prior, PROBLEM.parameterization),
                  target_accept_prob=settings.target_accept, max_tree_depth=settings.max_treedepth,
                  init_strategy=init_to_uniform(radius=2), dense_mass=False, adapt_mass_matrix=True,
                  adapt_step_size=True)
    mcmc = MCMC(kernel, num_warmup=settings.warmup, num_samples=settings.draws, num_chains=settings.chains,
                chain_method=chain_method, progress_bar=False)
    mcmc.warmup(jax.random.PRNGKey(settings.seed))
    mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=FIELDS)
    samples = mcmc.get_samples(group_by_chain=True)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    out = {f"posterior/{k}": np.asarray(v) for k, v in samples.items()}
    out.update({"sample_stats/n_steps": np.asarray(extra["num_steps"]),
                "sample_stats/diverging": np.asarray(extra["diverging"]),
                "sample_stats/energy": np.asarray(extra["energy"]),
                "sample_stats/lp": -np.asarray(extra["potential_energy"]),
                "sample_stats/step_size": np.asarray(extra["adapt_state.step_size"]),
                "sample_stats/acceptance_rate": np.asarray(extra["accept_prob"])})
    return out


@pytest.mark.samples
def test_numpyro_kept_program_gives_numpyro_s_own_draws(monkeypatch):
    """Compiled ahead of time and kept, the program still computes what NumPyro's own pmap computes:
    the same seed gives the very same draws as a plain MCMC, on the first run and on a later one."""
    module = _module("numpyro")
    if jax.local_device_count() < SHORT.chains:
        pytest.skip(f"{jax.local_device_count()} XLA CPU device(s): parallel chains need {SHORT.chains}")
    monkeypatch.setattr(module, "PROGRAMS", ProgramCache(2))
    monkeypatch.setattr(module, "CHAIN_METHOD", "parallel")
    first = module.ENGINE.run(PROBLEM, SHORT)
    other = module.ENGINE.run(PROBLEM, Settings(**{**SHORT.to_dict(), "seed": SHORT.seed + 1}))
    again = module.ENGINE.run(PROBLEM, SHORT)
    assert [r.manifest["program"] for r in (first, other, again)] == [COMPILED, REUSED, REUSED]
    plain = _plain_numpyro(SHORT, "parallel")
    for result in (first, again):
        got = _draws(result)
        for key, want in plain.items():
            np.testing.assert_array_equal(got[key], want, err_msg=key)
    assert not np.array_equal(_draws(other)["posterior/mu"], plain["posterior/mu"])


@pytest.mark.samples
def test_numpyro_sequential_and_single_chains_run_the_parallel_program(monkeypatch):
    """"sequential" (also the fallback for more chains than devices) runs the one-device program of
    "parallel" chain by chain: the same draws; one chain (which NumPyro runs without a chain method)
    goes through the same compiled programs and is reused too."""
    module = _module("numpyro")
    if jax.local_device_count() < SHORT.chains:
        pytest.skip(f"{jax.local_device_count()} XLA CPU device(s): parallel chains need {SHORT.chains}")
    monkeypatch.setattr(module, "PROGRAMS", ProgramCache(3))
    runs = {}
    for method in ("parallel", "sequential"):
        monkeypatch.setattr(module, "CHAIN_METHOD", method)
        runs[method] = module.ENGINE.run(PROBLEM, SHORT)
        assert runs[method].manifest["parallel"]["chain_method"] == method
    a, b = _draws(runs["parallel"]), _draws(runs["sequential"])
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    one = Settings(**{**SHORT.to_dict(), "chains": 1})
    single = [module.ENGINE.run(PROBLEM, one) for _ in range(2)]
    assert [r.manifest["program"] for r in single] == [COMPILED, REUSED]
    assert single[0].draws["posterior"].sizes["chain"] == 1
    np.testing.assert_array_equal(_draws(single[0])["posterior/mu"], _draws(single[1])["posterior/mu"])


def _memory_maps() -> int:
    """This process's memory maps, once garbage left by earlier tests is collected (a collection that
    happened to run inside a measured run freed 233 maps there and made the count go down)."""
    gc.collect()
    with open("/proc/self/maps", encoding="ascii") as f:
        return sum(1 for _ in f)


@pytest.mark.samples
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="no /proc/self/maps on this system")
@pytest.mark.parametrize("name", JAX_ENGINES)
def test_evicted_programs_release_their_memory_maps(monkeypatch, name):
    """Every kept XLA executable holds memory maps (a long matrix once hit vm.max_map_count): with room
    for two programs, four more distinct programs must not add the maps of even one of them."""
    module = _module(name)
    monkeypatch.setattr(module, "PROGRAMS", ProgramCache(2))

    def run(draws: int) -> int:
        module.ENGINE.run(PROBLEM, Settings(chains=2, warmup=30, draws=draws, seed=draws))
        return _memory_maps()

    run(10)  # every library loaded, the cache holds one program
    before_second = _memory_maps()
    full = run(11)  # the cache is full
    one_program = full - before_second
    assert one_program > 0, "a compiled program holds no memory maps: the check below could not fail"
    after = [run(d) for d in range(12, 16)]
    assert module.PROGRAMS.evictions == 4 and len(module.PROGRAMS) == 2
    assert max(after) - full < one_program, (full, one_program, after)


def test_superchain_initial_points_are_shared_within_a_superchain_only():
    from benchmarks.engines.numpyro_engine import superchain_inits

    sites = {"mu": (), "tau": (), "theta_tilde": (8,)}
    a = superchain_inits(sites, 4, 3, seed=5)
    assert {k: v.shape for k, v in a.items()} == {"mu": (12,), "tau": (12,), "theta_tilde": (12, 8)}
    for v in a.values():
        v = np.asarray(v)
        assert np.all(np.abs(v) < 2.0)  # init_to_uniform(radius=2) on the unconstrained scale
        for c in range(12):
            np.testing.assert_array_equal(v[c], v[(c // 3) * 3])
        assert len({np.asarray(v[c]).tobytes() for c in range(0, 12, 3)}) == 4
    b = superchain_inits(sites, 4, 3, seed=5)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # from the seed only


@pytest.mark.samples
def test_numpyro_vectorized_records_its_superchains():
    from benchmarks.runpath.diagnose import diagnose

    require_engine("numpyro-vectorized")
    module = importlib.import_module("benchmarks.engines.numpyro_vectorized")
    settings = Settings(chains=32, warmup=50, draws=20, seed=2)
    r = module.ENGINE.run(PROBLEM, settings)
    assert r.draws["posterior"].attrs["superchain_size"] == 2
    assert r.manifest["superchains"] == 16 and r.manifest["superchain_size"] == 2
    assert r.manifest["parallel"]["chain_method"] == "vectorized" and r.manifest["device"].startswith("cpu")
    d = diagnose(r.draws, settings.max_treedepth)
    assert d.superchains == 16 and d.max_nested_rhat is not None and np.isfinite(d.max_nested_rhat)
