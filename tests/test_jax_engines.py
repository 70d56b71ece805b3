"""JAX-specific behaviour of the numpyro engine (and the PyMC samplers on JAX): the persistent XLA
compilation cache, and what a run says about it. (What every engine must do is in test_engines.py.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_engine

from benchmarks.engines._jax_common import CompileLog, compilation_cache_dir

ROOT = Path(__file__).resolve().parents[1]

RUN_TWICE = """
import json
from benchmarks.engines import Settings, get_engine
from models import PRESETS, RUBIN
engine = get_engine("numpyro")
out = []
for seed in (1, 2):
    r = engine.run(RUBIN, PRESETS["default"], "noncentered", Settings(chains=2, warmup=150, draws=100, seed=seed))
    out.append({"cached": r.timings.compile_cached, "compile_s": r.timings.compile_s,
                "note": r.manifest["compile_cache"]})
print(json.dumps(out))
"""


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


def test_numpyro_second_process_run_loads_its_executables_from_the_cache(tmp_path):
    """A fresh cache: the first run compiles (and fills it), the second loads every executable."""
    require_engine("numpyro")
    env = {**os.environ, "EIGHT_SCHOOLS_CACHE": str(tmp_path), "EIGHT_SCHOOLS_JAX_CACHE": "1"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", RUN_TWICE], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not first["cached"] and "0 hits" in first["note"], first
    assert second["cached"] and "0 misses" in second["note"], second
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


def test_numpyro_manifest_says_how_the_chains_ran():
    require_engine("numpyro")
    from benchmarks.engines import Settings, get_engine
    from models import PRESETS, RUBIN

    r = get_engine("numpyro").run(RUBIN, PRESETS["default"], "noncentered",
                                  Settings(chains=2, warmup=150, draws=100, seed=3))
    par = r.manifest["parallel"]
    assert par["chains"] == 2 and par["cpu_devices"] >= 1
    assert par["chain_method"] == ("parallel" if par["cpu_devices"] >= 2 else "sequential")
