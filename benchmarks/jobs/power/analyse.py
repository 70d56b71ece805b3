"""From pools of runs to the power document: power curves per engine x parameterisation and number of
seeds, the seeds each target regression needs, and the wall time that configuration would take."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np

from ..regress.thresholds import ALPHA, DIVERGENCE_RISE_FLOOR, REPORTED_POWER
from .pool import Pool, settings_tag
from .resample import Levels, PoolRun, estimate, n_for_power

__all__ = ["TARGET_DROP", "TARGET_RATE", "TIME_BUDGET_S", "group_summary", "wall_estimate", "n_within", "requirement",
           "analyse_pool"]

#: the regressions the ci configuration must catch with REPORTED_POWER (issue 14): a 25 % drop in ESS
#: per gradient and a doubling of the divergence rate
TARGET_DROP = 0.25
TARGET_RATE = 2.0
#: wall-time budget of the ci configuration's gate on this project's 2 cores (issue 14)
TIME_BUDGET_S = 300.0
#: replicates at the gate's operating points (the configuration's own seeds and the highlighted ones) are
#: this many times --replicates: their false-alarm rates decide a ⚠️ (a Clopper-Pearson interval wholly
#: above alpha), and at 1000 one resampling stream of the same pool ranged 1.1-3.4 % for the pystan
#: centred gate's "any check" (six streams, 2026-12-04), so one stream could flag a rate near 2 %
OPERATING_POINT_FACTOR = 10


def _log_sd(runs: list[PoolRun]) -> float | None:
    x = np.log([r.ess for r in runs if r.ess is not None and r.ess > 0])
    return float(x.std(ddof=1)) if x.size > 1 else None


def group_summary(runs: list[PoolRun]) -> dict:
    walls = [r.wall_s for r in runs if r.wall_s is not None and not r.first]
    first = [r.wall_s for r in runs if r.wall_s is not None and r.first]
    div = sum(sum(r.divergences) for r in runs)
    tot = sum(sum(r.transitions) for r in runs)
    passed = [r.verdicts[0] for r in runs if r.verdicts and r.verdicts[0] is not None]
    ess = [r.ess for r in runs if r.ess]
    return {"runs": len(runs), "ess_per_grad_median": float(np.median(ess)) if ess else None,
            "ess_per_grad_log_sd": _log_sd(runs), "divergence_rate": div / tot if tot else None,
            "divergences": div, "reference_pass_rate": float(np.mean(passed)) if passed else None,
            "run_s_median": float(np.median(walls)) if walls else None, "first_run_s": first[0] if first else None}


def wall_estimate(summaries: dict[str, dict], n: int) -> float | None:
    """Seconds for the gate to rerun ``n`` seeds of every group, from the pool's measured run times: each
    group's first run (program load or compile, JIT, the PPL's import) plus n - 1 typical runs."""
    total = 0.0
    for s in summaries.values():
        if s["run_s_median"] is None:
            return None
        total += (s["first_run_s"] if s["first_run_s"] is not None else s["run_s_median"]) \
            + (n - 1) * s["run_s_median"]
    return total


def n_within(summaries: dict[str, dict], budget_s: float = TIME_BUDGET_S) -> int | None:
    """The most seeds whose :func:`wall_estimate` fits ``budget_s`` (None: not even 2)."""
    fixed, per = wall_estimate(summaries, 1), sum(s["run_s_median"] or 0.0 for s in summaries.values())
    if fixed is None or per <= 0:
        return None
    n = 1 + math.floor((budget_s - fixed) / per)
    return n if n >= 2 else None


def _at(levels: list[float], power: list[float], level: float) -> float:
    return power[levels.index(level)]


def requirement(by_n: dict[int, dict], summary: dict, *, alpha: float = ALPHA) -> dict:
    """Fewest seeds a side catching TARGET_DROP and TARGET_RATE with REPORTED_POWER in one group:
    resampled where the pool allows (2 n <= pool), else for ESS the noncentral-t value from the pool's
    spread, and for divergences unknown (None) - the pool is too small to say. A doubled divergence rate
    is no target where the rise it makes is below the gate's DIVERGENCE_RISE_FLOOR: the gate ignores
    such rises by design (``n`` 0, "n/a")."""
    ns = sorted(by_n)
    log_sd = summary.get("ess_per_grad_log_sd")
    ess = next((n for n in ns if _at(by_n[n]["ess_drop"]["levels"], by_n[n]["ess_drop"]["power"], TARGET_DROP)
                >= REPORTED_POWER), None)
    if ess is not None:
        ess_req = {"n": ess, "how": "resampled"}
    elif log_sd is None:
        ess_req = {"n": None, "how": "no ESS per gradient in the pool"}
    else:
        analytic = n_for_power(TARGET_DROP, log_sd, alpha=alpha)
        ess_req = {"n": None if analytic is None else max(analytic, ns[-1] + 1),
                   "how": f"noncentral t from the pool's log sd {log_sd:.2f}, beyond the pool's {ns[-1]} a side"}
    rate = summary.get("divergence_rate") or 0.0
    rise = rate * (TARGET_RATE - 1)
    if rise <= DIVERGENCE_RISE_FLOOR:
        div_req = {"n": 0, "how": f"n/a: x{TARGET_RATE:g} of the pool's rate {rate:.4f} is a rise of {rise:.4f}, "
                                  f"below the gate's {DIVERGENCE_RISE_FLOOR:g} floor (ignored by design)"}
    else:
        div = next((n for n in ns if _at(by_n[n]["divergence_rise"]["levels"], by_n[n]["divergence_rise"]["power"],
                                         TARGET_RATE) >= REPORTED_POWER), None)
        div_req = ({"n": div, "how": "resampled"} if div is not None else
                   {"n": None, "how": f"not reached with {ns[-1]} seeds a side (the most the pool allows)"})
    return {"ess_drop": ess_req, "divergence_rise": div_req}


def analyse_pool(pool: Pool, levels: Levels, ns: list[int], *, replicates: int, seed: int, check_alpha: float,
                 current_n: int | None, highlight: list[int] = (), alpha: float = ALPHA) -> dict:
    """Everything POWER.md reports about one pool (one settings variant); ``highlight``: other seed counts
    reported in full beside the configuration's own ``current_n``."""
    if TARGET_DROP not in levels.drops or TARGET_RATE not in levels.rates:
        raise ValueError(f"the levels must include the targets (drop {TARGET_DROP}, rate x{TARGET_RATE})")
    summaries = {k: group_summary(runs) for k, runs in pool.groups.items()}
    smallest = min(len(r) for r in pool.groups.values())
    usable = sorted({n for n in [*ns, *highlight, *([current_n] if current_n else [])] if 2 <= n and 2 * n <= smallest})
    groups = {}
    for i, (key, runs) in enumerate(pool.groups.items()):
        by_n = {}
        for n in usable:  # one stream per (group, n), so adding a group or an n leaves the others' numbers alone
            rng = np.random.default_rng([seed, i, n])
            reps = replicates * OPERATING_POINT_FACTOR if n == current_n or n in highlight else replicates
            by_n[n] = estimate(runs, n, levels, replicates=reps, rng=rng, check_alpha=check_alpha, alpha=alpha)
        groups[key] = {"summary": summaries[key], "errors": pool.errors.get(key, []), "by_n": by_n,
                       "requirement": requirement(by_n, summaries[key], alpha=alpha)}
    needs = [g["requirement"][kind]["n"] for g in groups.values() for kind in ("ess_drop", "divergence_rise")]
    n_req = None if any(n is None for n in needs) else max([2, *needs])
    return {
        "tag": settings_tag(pool.settings), "settings": {k: v for k, v in asdict(pool.settings).items() if k != "seed"},
        "pool_seeds": [pool.seeds[0], pool.seeds[-1]], "pool_size": len(pool.seeds), "ns": usable,
        "current_n": current_n, "highlight": [n for n in highlight if n in usable], "groups": groups, "n_required": n_req,
        "wall_s_required": wall_estimate(summaries, n_req) if n_req else None,
        "wall_s_by_n": {n: wall_estimate(summaries, n) for n in sorted({*usable, *([n_req] if n_req else [])})},
        "n_within_budget": n_within(summaries),
        "meets_budget": bool(n_req and (wall_estimate(summaries, n_req) or math.inf) <= TIME_BUDGET_S),
    }
