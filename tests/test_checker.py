"""The reference check in the worker's helper process (benchmarks/runpath/checker.py) is the check in
process: the same function on the same draws; without a helper (gone, or one CPU) the run path checks
in process."""

import os
import signal

import pytest

from benchmarks.runpath import checker
from models import PRESETS, RUBIN
from reference import posterior
from reference.check import check, iid_as_draws

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the helper needs two CPUs")


#: the helper's exact posterior is built afresh in its own process, the in-process one may come from a
#: cache built by earlier tests along another path: the same numbers up to floating-point rounding (the
#: reference's own error is ~1e-13 of its values), never more
SAME_NUMBER_REL = 1e-12


def _same(a, b) -> None:
    """Two verdicts' JSON alike: the same keys, flags and texts, numbers equal up to rounding."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, float) and not isinstance(a, bool):
        assert b == pytest.approx(a, rel=SAME_NUMBER_REL, abs=0.0, nan_ok=True)
    else:
        assert a == b


@pytest.fixture
def helper():
    checker.start()
    assert checker._pool is not None, "the helper did not start"
    yield checker._pool
    checker.stop()


def _draws(shift: float = 0.0):
    ref = posterior(RUBIN, PRESETS["default"])
    sample = ref.draws(4000, seed=5)
    sample["mu"] = sample["mu"] + shift
    return ref, iid_as_draws(sample, chains=4, school=RUBIN.school)


@pytest.mark.parametrize("shift", [0.0, 3.0])
def test_the_helpers_verdict_is_the_verdict_in_process(helper, shift):
    ref, draws = _draws(shift)
    verdict = checker.result(checker.submit(RUBIN, PRESETS["default"], draws))
    assert verdict is not None
    _same(verdict.to_json(), check(draws, ref).to_json())
    assert verdict.passed is (shift == 0.0)


def test_a_helper_that_dies_leaves_the_check_to_the_worker(helper):
    _, draws = _draws()
    for pid in list(helper._processes):
        os.kill(pid, signal.SIGKILL)
    pending = checker.submit(RUBIN, PRESETS["default"], draws)
    assert checker.result(pending) is None  # the caller then checks in process
    assert checker._pool is None
    assert checker.submit(RUBIN, PRESETS["default"], draws) is None


def test_the_helper_is_forked_only_while_no_runtime_runs_threads_of_its_own(monkeypatch):
    """A worker forks its helper after the run path's imports (the child inherits them); where a runtime
    runs native threads (JAX once its backends are up, numba, torch) it spawns a fresh one instead."""
    import sys
    import types

    from benchmarks import forking

    for name in (*forking.THREADED_MODULES, "jax._src.xla_bridge"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert checker.start_method() == "fork" and forking.threaded_runtime() is None
    bridge = types.ModuleType("jax._src.xla_bridge")
    bridge._backends = {}
    monkeypatch.setitem(sys.modules, "jax._src.xla_bridge", bridge)
    assert checker.start_method() == "fork"  # JAX imported, no backend started: no XLA thread yet
    bridge._backends = {"cpu": object()}
    assert checker.start_method() == "spawn" and "JAX" in forking.threaded_runtime()
    bridge._backends = {}
    for name in forking.THREADED_MODULES:
        monkeypatch.setitem(sys.modules, name, object())
        assert checker.start_method() == "spawn" and forking.threaded_runtime() == name
        monkeypatch.delitem(sys.modules, name)
