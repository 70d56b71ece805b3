"""One measurement of a regress configuration (a baseline is a measurement written to a file): every
engine x parameterisation x seed through the run path, reduced to what the gate compares."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reference.check import DEFAULT_ALPHA

from ...runpath.environment import environment
from ...runpath.spec import RunSpec
from ..common import RunOptions, run_specs
from .config import RegressConfig, RegressError
from .gate import gate
from .reports import markdown_summary
from .thresholds import SCHEMA, thresholds

__all__ = ["measure", "gate_run", "summarise_group", "group_key", "machine", "load_baseline"]


def _finite(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def gate_run(rec: dict) -> dict:
    """A run path record reduced to what the gate compares (the baseline file's per-seed entry)."""
    out: dict = {"seed": rec["seed"], "error": rec.get("error"), "wall_s": rec.get("worker_s")}
    if rec.get("error"):
        return out
    n_draws = rec["n_draws"]
    per_chain = rec["draws"]
    if rec.get("sampling_s") is not None:
        time_per_draw, phase = rec["sampling_s"] / n_draws, "sampling"
    else:
        time_per_draw, phase = rec["inference_s"] / (rec["chains"] * (rec["warmup"] + rec["draws"])), \
            "warmup+sampling"
    div_chain = [int(x) for x in rec["divergences_per_chain"]]
    out.update(
        ppl=rec.get("ppl"), ppl_version=rec.get("ppl_version"),
        min_ess_bulk=rec["min_ess_bulk"], gradient_evals=rec["gradient_evals"],
        ess_bulk_per_grad=_finite(rec.get("ess_bulk_per_grad")),
        divergences=int(rec["divergences"]), divergences_per_chain=div_chain,
        transitions_per_chain=[per_chain] * len(div_chain), n_draws=n_draws,
        divergence_rate=rec["divergences"] / n_draws, max_rhat=_finite(rec["max_rhat"]),
        treedepth_hits=rec["treedepth_hits"], time_per_draw_s=time_per_draw, time_phase=phase,
        compile_s=rec.get("compile_s"), total_s=rec.get("total_s"),
        check_passed=rec.get("check_passed"), check_max_abs_z=_finite(rec.get("check_max_abs_z")),
        check_failed=[f for f in (rec.get("check_failed") or "").split(";") if f],
        check_alpha=DEFAULT_ALPHA, check_error=None, machine=rec.get("machine"),
    )
    return out


def _spread(values: Sequence[float]) -> dict | None:
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if x.size == 0:
        return None
    q25, med, q75 = np.quantile(x, [0.25, 0.5, 0.75])
    out = {"n": int(x.size), "median": float(med), "mad": float(np.median(np.abs(x - med))),
           "q25": float(q25), "q75": float(q75), "min": float(x.min()), "max": float(x.max())}
    if np.all(x > 0):
        lx = np.log(x)
        out["log_mean"] = float(lx.mean())
        out["log_sd"] = float(lx.std(ddof=1)) if x.size > 1 else None
    return out


def summarise_group(runs: list[dict]) -> dict:
    ok = [r for r in runs if not r.get("error")]
    div = sum(r["divergences"] for r in ok)
    n = sum(r["n_draws"] for r in ok)
    verdicts = [r.get("check_passed") for r in ok]
    return {
        "n_runs": len(runs), "n_ok": len(ok),
        "errors": sorted({r["error"] for r in runs if r.get("error")}),
        "ess_bulk_per_grad": _spread([r["ess_bulk_per_grad"] for r in ok]),
        "divergence_rate": {**(_spread([r["divergence_rate"] for r in ok]) or {}), "divergences": div,
                            "transitions": n, "pooled": div / n if n else None},
        "max_rhat": _spread([r["max_rhat"] for r in ok]),
        "time_per_draw_s": _spread([r["time_per_draw_s"] for r in ok]),
        "verdicts": {"passed": sum(v is True for v in verdicts), "failed": sum(v is False for v in verdicts),
                     "unchecked": sum(v is None for v in verdicts)},
        "ppl_versions": sorted({str(r.get("ppl_version")) for r in ok}),
    }


def group_key(engine: str, param: str) -> str:
    return f"{engine}/{param}"


def machine() -> dict:
    env = environment()
    return {"cpu": env["cpu"], "cores": env["cores"], "affinity": env["affinity"], "os": env["os"],
            "node": env["host"], "python": env["python"]}


def measure(config: RegressConfig, *, run_dir: Path, options: RunOptions | None = None,
            overrides: dict | None = None, engines: list[str] | None = None) -> dict:
    """Run every engine x parameterisation x seed of ``config`` through the run path (records in
    ``run_dir``); returns the baseline-shaped dict."""
    engines = list(engines or config.engines)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    settings = dataclasses.replace(config.settings, **overrides)  # validates before any work
    options = options or RunOptions()
    options = dataclasses.replace(options, timeout=config.timeout_s) if isinstance(options, RunOptions) else options
    specs = [RunSpec(engine=e, parameterization=p, prior=config.prior, data=config.data,
                     settings=dataclasses.replace(settings, seed=seed), section=f"regress-{config.name}")
             for e in engines for p in config.parameterizations for seed in config.seeds]
    t0 = time.perf_counter()
    records = {r["key"]: r for r in run_specs(f"regress {config.name}", specs, Path(run_dir), options, fresh=True)}
    groups: dict[str, dict] = {}
    for e in engines:
        for p in config.parameterizations:
            runs = [gate_run(records[s.key]) for s in specs if s.engine == e and s.parameterization == p]
            recs = [records[s.key] for s in specs if s.engine == e and s.parameterization == p]
            unavailable = next((r["error"].removeprefix("unavailable: ") for r in recs
                                if r.get("error_kind") == "unavailable"), None)
            groups[group_key(e, p)] = {"engine": e, "parameterization": p,
                                       "status": "unavailable" if unavailable else "ran",
                                       "unavailable": unavailable, "runs": runs, "summary": summarise_group(runs)}
    return {
        "schema": SCHEMA,
        "name": config.name,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "settings": {k: v for k, v in settings.to_dict().items() if k != "seed"},
        "overrides": overrides,
        "seeds": list(config.seeds),
        "engines": engines,
        "thresholds": thresholds(),
        "environment": environment(),
        "machine": machine(),
        "wall_s": time.perf_counter() - t0,
        "groups": groups,
    }


def load_baseline(path: Path) -> dict:
    """Read and validate a baseline file; raises RegressError naming what is wrong."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegressError(f"--baseline = {str(path)!r}: no such file (make one with `nox -s baseline`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RegressError(f"--baseline = {str(path)!r}: not JSON ({e})") from None
    except IsADirectoryError:
        raise RegressError(f"--baseline = {str(path)!r}: is a folder; name a baseline file (.json)") from None
    except OSError as e:
        raise RegressError(f"--baseline = {str(path)!r}: cannot read ({e.strerror or e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise RegressError(f"--baseline = {str(path)!r}: schema {got!r}, expected {SCHEMA!r}")
    for k in ("config", "seeds", "groups", "environment", "machine", "settings"):
        if k not in doc:
            raise RegressError(f"--baseline = {str(path)!r}: field {k!r} missing")
    if not isinstance(doc["config"], dict) or not isinstance(doc["groups"], dict) or not isinstance(doc["seeds"], list):
        raise RegressError(f"--baseline = {str(path)!r}: config and groups must be tables, seeds a list")
    RegressConfig.from_dict(doc["config"])
    try:
        for key, g in doc["groups"].items():
            if len(g.get("runs", [])) != len(doc["seeds"]):
                raise RegressError(f"--baseline = {str(path)!r}: group {key} has {len(g.get('runs', []))} runs "
                                   f"for {len(doc['seeds'])} seeds")
            if [r["seed"] for r in g["runs"]] != doc["seeds"]:
                raise RegressError(f"--baseline = {str(path)!r}: group {key} runs are not the seeds {doc['seeds']}")
        # the gate and its report read every other field: gating the baseline against itself (pure
        # arithmetic, milliseconds) finds what they cannot use before anything runs
        markdown_summary(gate(doc, doc), doc, doc)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError) as e:
        if isinstance(e, RegressError):
            raise
        raise RegressError(f"--baseline = {str(path)!r}: not a usable baseline ({type(e).__name__}: "
                           f"{str(e)[:200]})") from None
    return doc
