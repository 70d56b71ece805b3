"""Stand-in engines for the run path's tests: exact draws from the reference, or a chosen fault.

Registered in a worker process through ``EIGHT_SCHOOLS_EXTRA_ENGINES`` (see benchmarks.engines), as
``fake-ok=fake_engines:OK`` etc. with ``tests/`` on PYTHONPATH. Each call appends a line to
``$FAKE_ENGINE_LOG`` (when set), so tests can count what really ran. ``fake-script`` reads its
behaviour per seed from ``$FAKE_SCRIPT`` ("1:ok,2:hang,3:exit").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata

import numpy as np

from benchmarks.engines import KnownBreak
from benchmarks.engines.base import RunResult, Timings
from benchmarks.engines.convert import to_datatree
from reference import posterior

#: how long a "slow" run sleeps before answering (seconds); "long" for a run to be killed in
SLOW_S = 0.3
LONG_S = 4.0
#: how far "fake-biased" moves mu and every theta (many posterior sds: the check fails every time)
BIAS = 50.0


def exact_result(problem, settings, name: str, shift: float = 0.0) -> RunResult:
    data, prior = problem.data, problem.prior
    ref = posterior(data, prior)
    n = settings.chains * settings.draws
    d = ref.draws(n, seed=settings.seed)
    shape = (settings.chains, settings.draws)
    post = {"mu": d["mu"].reshape(shape) + shift, "theta": d["theta"].reshape(*shape, data.J) + shift}
    if not prior.tau_fixed:
        post["tau"] = d["tau"].reshape(shape)
    rng = np.random.default_rng(settings.seed)
    stats = {"diverging": np.zeros(shape, bool), "tree_depth": np.full(shape, 3), "n_steps": np.full(shape, 7),
             "step_size": np.full(shape, 0.5), "energy": rng.normal(size=shape), "lp": np.zeros(shape),
             "acceptance_rate": np.full(shape, 0.8)}
    t = Timings(compile_s=0.0, inference_s=0.01, total_s=0.01, warmup_s=0.004, sampling_s=0.006)
    return RunResult(to_datatree(post, stats, data, prior, "fake"), t,
                     {"engine": name, "ppl": "fake", "ppl_version": "0"})


def _log(name: str, seed: int, what: str) -> None:
    path = os.environ.get("FAKE_ENGINE_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{name} {seed} {what} {os.getpid()}\n")


def _behave(what: str, name: str, problem, settings) -> RunResult:
    _log(name, settings.seed, what)
    if what == "ok":
        return exact_result(problem, settings, name)
    if what in ("slow", "long"):
        time.sleep(SLOW_S if what == "slow" else LONG_S)
        return exact_result(problem, settings, name)
    if what == "biased":  # exact draws moved far off the posterior: the reference check FAILs
        return exact_result(problem, settings, name, shift=BIAS)
    if what == "zero-tau":  # a sampler whose log tau ran off to -inf: tau = exp(-inf) = 0, unusable draws
        result = exact_result(problem, settings, name)
        post = result.draws["posterior"]
        post["tau"] = post["tau"].copy(data=post["tau"].values * 0.0)
        return result
    if what == "raise":
        raise RuntimeError("engine exploded")
    if what == "known-break":
        raise TypeError("kernel() got an unexpected keyword argument 'progress_bar'")
    if what == "hang":
        time.sleep(3600)
    if what == "child-hang":  # a process of its own (like httpstan's pool), then hang
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        _log(name, settings.seed, f"child {child.pid}")
        time.sleep(3600)
    if what == "exit":
        os._exit(3)
    if what == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise ValueError(f"unknown behaviour {what!r}")


@dataclass
class FakeEngine:
    name: str
    behaviour: str
    ppl: str = "fake"
    unavailable: str | None = None
    #: upstream breaks this engine declares (the registry's known_break() reads them)
    known_breaks: tuple = ()
    #: the registry's runtime ("" for most fakes; "other" for those a worker's sibling runs)
    runtime: str = ""

    def availability(self) -> str | None:
        if self.unavailable:
            _log(self.name, -1, "availability")
        return self.unavailable

    def run(self, problem, settings) -> RunResult:
        what = self.behaviour
        if what == "script":
            script = dict(p.split(":") for p in os.environ.get("FAKE_SCRIPT", "").split(",") if p)
            what = script.get(str(settings.seed), "ok")
        return _behave(what, self.name, problem, settings)

    def log_density(self, problem):
        raise NotImplementedError("fake engines have no log density")


OK = FakeEngine("fake-ok", "ok")
SLOW = FakeEngine("fake-slow", "slow")
RAISE = FakeEngine("fake-raise", "raise")
BROKEN = FakeEngine("fake-broken", "known-break", known_breaks=(
    KnownBreak(exception="TypeError", match="progress_bar", upstream="https://example.org/upstream/1",
               summary="a fake upstream break"),))
HANG = FakeEngine("fake-hang", "hang")
CHILD_HANG = FakeEngine("fake-child-hang", "child-hang")
EXIT = FakeEngine("fake-exit", "exit")
KILL = FakeEngine("fake-kill", "kill")
SCRIPT = FakeEngine("fake-script", "script")
BIASED = FakeEngine("fake-biased", "biased")
ZERO_TAU = FakeEngine("fake-zero-tau", "zero-tau")
ABSENT = FakeEngine("fake-absent", "ok", unavailable="fake PPL is not installed here")
# a break pinned to the numpy installed here (recorded without running) and one pinned to another numpy
PINNED = FakeEngine("fake-pinned", "ok", known_breaks=(
    KnownBreak(exception="TypeError", match="progress_bar", upstream="https://example.org/upstream/2",
               summary="a fake break: progress_bar rejected", seen_with=(("numpy", metadata.version("numpy")),)),))
STALE_PIN = FakeEngine("fake-stale-pin", "ok", known_breaks=(
    KnownBreak(exception="TypeError", match="progress_bar", upstream="https://example.org/upstream/3",
               summary="a fake break: progress_bar rejected", seen_with=(("numpy", "0.0.1"),)),))
# engines of a second runtime: a worker prepared for them and for the others forks a sibling to run them
OTHER_OK = FakeEngine("fake-other-ok", "ok", runtime="other")
OTHER_HANG = FakeEngine("fake-other-hang", "child-hang", runtime="other")
OTHER_EXIT = FakeEngine("fake-other-exit", "exit", runtime="other")
OTHER_KILL = FakeEngine("fake-other-kill", "kill", runtime="other")

_BY_VAR = {"OK": OK, "SLOW": SLOW, "RAISE": RAISE, "BROKEN": BROKEN, "HANG": HANG, "CHILD_HANG": CHILD_HANG,
           "EXIT": EXIT, "KILL": KILL, "SCRIPT": SCRIPT, "ABSENT": ABSENT,
           "BIASED": BIASED, "ZERO_TAU": ZERO_TAU, "OTHER_OK": OTHER_OK, "OTHER_HANG": OTHER_HANG,
           "OTHER_EXIT": OTHER_EXIT, "OTHER_KILL": OTHER_KILL, "PINNED": PINNED, "STALE_PIN": STALE_PIN}
#: the value of EIGHT_SCHOOLS_EXTRA_ENGINES that registers every fake engine
REGISTRY_ENV = ",".join(f"{e.name}=fake_engines:{var}" + (f"#{e.runtime}" if e.runtime else "")
                        for var, e in _BY_VAR.items())
