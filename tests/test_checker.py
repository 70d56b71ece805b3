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
    assert verdict.to_json() == check(draws, ref).to_json()
    assert verdict.passed is (shift == 0.0)


def test_a_helper_that_dies_leaves_the_check_to_the_worker(helper):
    _, draws = _draws()
    for pid in list(helper._processes):
        os.kill(pid, signal.SIGKILL)
    pending = checker.submit(RUBIN, PRESETS["default"], draws)
    assert checker.result(pending) is None  # the caller then checks in process
    assert checker._pool is None
    assert checker.submit(RUBIN, PRESETS["default"], draws) is None
