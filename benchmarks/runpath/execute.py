"""The one run path: one resolved spec in, one record (with diagnostics and the reference verdict),
the draws and the engine's manifest out.

This function runs inside a worker process (:mod:`benchmarks.runpath.worker`), whether the matrix
runs on this machine or on a Dask cluster; every job (compare, bench, sweep, regress, calibrate,
tune, notebook, candidate) runs engines through it and nothing else. It never raises for an
engine's failure: the record carries the error and its kind.
"""

from __future__ import annotations

import base64
import os
import socket
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import xarray as xr

from models.data import RUBIN
from models.priors import PRESETS
from models.provenance import cpu_model
from reference import posterior
from reference.check import CheckInputError, check

from ..engines import ENGINES, KNOWN_BREAKS, availability, check_capabilities, get_engine
from ..engines.base import REUSED, SAMPLE_STATS
from ..engines.convert import to_datatree
from . import checker
from .approx_execute import execute_approx
from .diagnose import diagnose
from .record import derive_rates
from .spec import problem_from_wire, settings_from_wire

__all__ = ["execute", "machine_label", "prepare"]

#: per process: engine -> availability answer (each PPL is imported once, on its first run)
_AVAILABLE: dict[str, str | None] = {}
_SEEN: set[str] = set()


def machine_label() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores @ {socket.gethostname()}"


def _base(wire: dict) -> dict:
    s = wire["settings"]
    d = wire["data"]
    return {
        "key": wire["key"], "digest": wire["digest"], "section": wire["section"], "engine": wire["engine"],
        "parameterization": wire["parameterization"], "prior": wire["prior_spec"],
        "prior_text": wire["prior"]["text"], "data": d["name"], "data_spec": d["spec"],
        "sigma_scale": d["sigma_scale"], "J": len(d["y"]), **s,
        "machine": machine_label(), "worker": f"{socket.gethostname()}:{os.getpid()}",
        "cpus": len(os.sched_getaffinity(0)), "error": None,
    }


def prepare(engines: list[str]) -> None:
    """Import the PPLs of ``engines`` (each one's availability, as its first run would) while the worker
    starts, before it answers 'ready': then no run's time holds an import, and the imports overlap the
    client's own start-up instead of following it. Names the registry does not know are left to the run,
    which reports them."""
    for name in engines:
        if name in ENGINES:
            _answered(name)
    if engines:
        _warm_run_path()


def _warm_run_path() -> None:
    """Pay the run path's own one-time costs once per process, before 'ready': the first conversion of
    draws into the suite's layout (arviz-base's) and the first NetCDF write (xarray's backend), measured
    here 0.17 s and 0.20 s, which the first run of each worker process would otherwise carry."""
    one = np.zeros((1, 2))
    tree = to_datatree({"mu": one, "tau": one + 1.0, "theta": np.zeros((1, 2, RUBIN.J))},
                       {k: one for k in SAMPLE_STATS}, RUBIN, PRESETS["default"], "warm-up")
    _netcdf_b64(tree)


def _answered(name: str) -> str | None:
    """The engine's availability, asked once per worker (the first call imports its PPL)."""
    if name not in _AVAILABLE:
        _AVAILABLE[name] = availability(name)
    return _AVAILABLE[name]


def execute(wire: dict) -> dict:
    """Run one spec. Returns ``{"record": dict, "manifest": dict | None, "draws_nc": str | None}``
    (the draws as base64 NetCDF when the spec asks to keep them)."""
    rec = _base(wire)
    if wire.get("kind") == "approx":  # an approximate-inference method (issue 19): fit, then scores
        rec, manifest, tree = execute_approx(wire, rec)
        return {"record": rec, "manifest": manifest, "draws_nc": _netcdf_b64(tree) if tree is not None else None}
    engine_name = wire["engine"]
    rec["first_in_process"] = engine_name not in _SEEN
    _SEEN.add(engine_name)
    problem = problem_from_wire(wire)
    settings = settings_from_wire(wire)
    t0 = time.perf_counter()
    reason = _answered(engine_name)  # not prepared: the first call imports the PPL, in engine_call_s
    if reason is not None:
        rec.update(error=f"unavailable: {reason}", error_kind="unavailable",
                   engine_call_s=time.perf_counter() - t0)
        return {"record": rec, "manifest": None, "draws_nc": None}
    engine = get_engine(engine_name)
    breaks = [k for k in (KNOWN_BREAKS.get(engine_name), *getattr(engine, "known_breaks", ())) if k is not None]
    seen = next((k for k in breaks if k.seen_here()), None)
    if seen is not None:  # the versions it breaks with: recorded as the break, not attempted again
        rec.update(error=seen.not_attempted(), error_kind="known-break", error_link=seen.upstream,
                   engine_call_s=time.perf_counter() - t0)
        return {"record": rec, "manifest": None, "draws_nc": None}
    try:
        check_capabilities(engine_name, settings)
        result = engine.run(problem, settings)
    except Exception as e:  # noqa: BLE001 - a failing engine is a record and the matrix goes on
        text = f"{type(e).__name__}: {e}"
        kb = next((k for k in breaks if k.matches(text)), None)
        rec.update(error=text.splitlines()[0][:2000], error_kind="known-break" if kb else "error",
                   error_link=kb.upstream if kb else None, engine_call_s=time.perf_counter() - t0,
                   traceback=traceback.format_exc()[-4000:])
        return {"record": rec, "manifest": None, "draws_nc": None}
    rec["engine_call_s"] = time.perf_counter() - t0
    t = result.timings
    m = result.manifest
    rec.update(ppl=m.get("ppl"), ppl_version=m.get("ppl_version"), compile_s=t.compile_s,
               compile_cached=t.compile_cached,
               compile_reused=bool(m.get("compile_reused", m.get("program") == REUSED)),
               warmup_s=t.warmup_s, sampling_s=t.sampling_s, inference_s=t.inference_s, total_s=t.total_s)
    try:
        checks = _diagnose_and_check(rec, problem, settings, result.draws, wire)
    except CheckInputError as e:  # the engine returned draws the check cannot use: its failure, a record
        rec.update(error=f"unusable draws: {e}"[:2000], error_kind="error",
                   traceback=traceback.format_exc()[-4000:])
        return {"record": rec, "manifest": m, "draws_nc": None}
    derive_rates(rec)
    draws_nc = _netcdf_b64(result.draws) if wire.get("save_draws") else None
    return {"record": rec, "manifest": m, "draws_nc": draws_nc, "checks": checks}


def _diagnose_and_check(rec: dict, problem, settings, draws, wire: dict) -> list | None:
    """The diagnostics and the reference check of one run's draws, into ``rec``; the check's z-scores when
    the spec keeps them. Raises CheckInputError for draws the check cannot use (e.g. tau <= 0)."""
    # the check in the worker's helper process, beside the diagnostics (checker.py), else here
    pending = checker.submit(problem.data, problem.prior, draws)
    t1 = time.perf_counter()
    try:
        rec.update(diagnose(draws, settings.max_treedepth)._asdict())
    finally:
        rec["diagnostics_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        verdict = checker.result(pending)  # collected even when the diagnostics failed: the helper stays free
    if verdict is None:
        verdict = check(draws, posterior(problem.data, problem.prior))
    rec.update(check_passed=bool(verdict.passed), check_max_abs_z=float(verdict.max_abs_z),
               check_failed=";".join(verdict.failed[:8]))
    tau_mean = next((c for c in verdict.checks if c.quantity == "tau" and c.functional == "mean"), None)
    if tau_mean is not None:
        rec.update(tau_mean_error=float(tau_mean.estimate - tau_mean.exact), tau_mean_z=float(tau_mean.z))
    rec["check_s"] = time.perf_counter() - t2  # what the check added after the diagnostics
    return verdict.to_json() if wire.get("keep_checks") else None


def _netcdf_b64(tree) -> str:
    """The draws as NetCDF bytes (base64 text, so the reply stays JSON): they travel to the client,
    the results folder's one writer, from a worker on this machine or another."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "draws.nc"
        tree.to_netcdf(path)
        return base64.b64encode(path.read_bytes()).decode("ascii")


def draws_from_b64(text: str) -> xr.DataTree:
    """The DataTree back from :func:`_netcdf_b64`'s text, loaded into memory."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "draws.nc"
        path.write_bytes(base64.b64decode(text))
        with xr.open_datatree(path) as tree:
            return tree.load()
