"""The gate's power by resampling a pool of real runs of an unchanged sampler.

Each replicate draws ``2 n`` distinct runs of one engine x parameterisation from the pool: ``n`` play
the baseline, the other ``n`` the "new" runs, which get the injection; the gate's own decision
functions (:mod:`benchmarks.jobs.regress.stats`) then say whether it fails. The fraction of replicates
that fail estimates the power at that injection, and at zero injection the false-alarm rate. Seeds
are disjoint on purpose: a candidate build run on the baseline's seeds draws different random
numbers (the same seed reproduces the same draws only with the same build), so its runs are
independent of the baseline's - which is what the gate's unpaired tests assume too.

ESS per gradient: a drop ``d`` multiplies every new value by ``1 - d``; ``ess_drop_test`` fails
exactly when the new geometric-mean ratio falls below both its ``bound`` and ``1 - ESS_DROP_FLOOR``,
and the ratio scales by ``1 - d`` while the bound (from the baseline alone) does not. So one call per
replicate gives the smallest drop it catches, ``d* = 1 - min(bound, 1 - floor) / ratio``, and the power
at every drop (tests/test_power.py checks this against calling the test on injected values).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..regress.stats import divergence_rise_test, ess_drop_test, pass_rate_drop_test, verdict_flip_test
from ..regress.thresholds import ALPHA, ESS_DROP_FLOOR, LOG_SPREAD_FLOOR, REPORTED_POWER
from .inject import scale_divergences

__all__ = ["PoolRun", "Levels", "estimate", "smallest_caught_drop", "fisher_regressed", "level_at_power", "ess_power_analytic", "n_for_power"]


@dataclass(frozen=True)
class PoolRun:
    """One finished run of the pool, reduced to what the gate compares."""

    seed: int
    ess: float | None  #: ESS (bulk, min over parameters) per gradient evaluation
    divergences: tuple[int, ...]  #: per chain
    transitions: tuple[int, ...]  #: per chain (draws after warmup)
    verdicts: tuple[bool | None, ...]  #: the reference check's verdict at each bias level of Levels.biases
    wall_s: float | None = None  #: the run's round trip through the run path
    first: bool = False  #: its group's first run in the pool (the PPL's import, program load or compile, JIT)


@dataclass(frozen=True)
class Levels:
    drops: tuple[float, ...]  #: ESS-per-gradient drops d (0 first)
    rates: tuple[float, ...]  #: divergence-rate multipliers k (1 first)
    biases: tuple[float, ...]  #: shifts of mu and theta in posterior sds of mu (0 first)

    def __post_init__(self) -> None:
        for name, levels, zero in (("drops", self.drops, 0.0), ("rates", self.rates, 1.0),
                                   ("biases", self.biases, 0.0)):
            if not levels or levels[0] != zero or list(levels) != sorted(levels):
                raise ValueError(f"{name} = {levels!r}: must be increasing and start at {zero} (no injection)")


def level_at_power(levels: Sequence[float], power: Sequence[float], target: float = REPORTED_POWER) -> float | None:
    """The smallest injection caught with probability ``target``: linear interpolation between the grid
    levels around the first one that reaches it (None when no level does)."""
    for i, p in enumerate(power):
        if p >= target:
            if i == 0:
                return float(levels[0])
            lo, hi, plo = levels[i - 1], levels[i], power[i - 1]
            return float(lo + (hi - lo) * (target - plo) / (p - plo))
    return None


def smallest_caught_drop(base: Sequence[float], new: Sequence[float], *, alpha: float = ALPHA) -> float:
    """The drop d* such that ``ess_drop_test(base, drop_ess(new, d))`` fails exactly when d > d* (negative:
    it fails already at d = 0, a false alarm). See the module docstring."""
    t = ess_drop_test(base, new, alpha=alpha)
    return 1.0 - min(t.bound, 1.0 - ESS_DROP_FLOOR) / t.ratio


def _verdict_regressed(cache: dict, base: Sequence[bool | None], new: Sequence[bool | None], check_alpha: float,
                       alpha: float) -> bool:
    """verdict_flip_test's decision, which depends only on (seeds at risk, flips): cached by those."""
    pairs = [(b, n) for b, n in zip(base, new) if b is not None and n is not None]
    at_risk = sum(1 for b, _ in pairs if b)
    flips = sum(1 for b, n in pairs if b and not n)
    key = (at_risk, flips)
    if key not in cache:
        canon_base = [True] * at_risk
        canon_new = [False] * flips + [True] * (at_risk - flips)
        cache[key] = verdict_flip_test(canon_base, canon_new, check_alpha=check_alpha, alpha=alpha).regressed
    return cache[key]


def fisher_regressed(base: Sequence[bool | None], new: Sequence[bool | None], alpha: float = ALPHA) -> bool:
    """The gate's verdict decision (``stats.pass_rate_drop_test``: one-sided Fisher's exact test that the
    new runs pass the reference check less often than the baseline's, which needs no assumption about
    how often an unchanged sampler fails the check). The flip test it replaced, which assumed the check's
    own 1 %, is measured beside it (``bias_flip``)."""
    return pass_rate_drop_test(list(base), list(new), alpha=alpha).regressed


def _counts(verdicts: Sequence[bool | None]) -> tuple[int, int]:
    """(passed, failed) among checked verdicts."""
    checked = [bool(v) for v in verdicts if v is not None]
    return sum(checked), len(checked) - sum(checked)


def _rate(fails: np.ndarray) -> float:
    return float(np.mean(fails)) if fails.size else math.nan


def estimate(runs: Sequence[PoolRun], n: int, levels: Levels, *, replicates: int, rng: np.random.Generator,
             check_alpha: float, alpha: float = ALPHA) -> dict:
    """Power of each gated check against each injection, and false alarms, for ``n`` seeds a side.

    A run's ``verdicts`` hold either one verdict per bias level or only the unshifted one (the pool
    shifted the draws of its first seeds only): the bias curves are resampled from the runs that have
    every level (when 2 n of them exist), the verdict tests' false alarms from every run."""
    m, levels_b = len(runs), len(levels.biases)
    if n < 2 or 2 * n > m:
        raise ValueError(f"n = {n}: needs 2 <= n and 2 n <= the pool's {m} runs")
    if any(len(r.verdicts) not in (1, levels_b) for r in runs):
        raise ValueError(f"every run needs one verdict per bias level ({levels_b}) or the unshifted one only")
    ess = np.array([r.ess if r.ess is not None and r.ess > 0 else np.nan for r in runs])
    div = [np.asarray(r.divergences) for r in runs]
    tot = [np.asarray(r.transitions) for r in runs]
    verdicts = [r.verdicts for r in runs]
    shifted = np.array([i for i, r in enumerate(runs) if len(r.verdicts) == levels_b])
    curves = 2 * n <= shifted.size
    div_applicable = sum(int(d.sum()) for d in div) > 0
    d_star = np.full(replicates, np.nan)
    div_fail = np.zeros((replicates, len(levels.rates)), bool)
    fail = {"flip": np.zeros((replicates, levels_b), bool), "fisher": np.zeros((replicates, levels_b), bool)}
    fa = {"flip": np.zeros(replicates, bool), "fisher": np.zeros(replicates, bool)}
    at_risk = np.zeros(replicates)
    cache: dict = {}

    def fisher(base_v: list, new_v: list) -> bool:
        key = (*_counts(base_v), *_counts(new_v))
        if key not in cache:  # the decision depends on the four counts only
            pb, fb, pn, fn = key
            cache[key] = fisher_regressed([True] * pb + [False] * fb, [True] * pn + [False] * fn, alpha)
        return cache[key]

    flip_cache: dict = {}
    for r in range(replicates):
        idx = rng.permutation(m)
        b, new = idx[:n], idx[n:2 * n]
        be, ne = ess[b][np.isfinite(ess[b])], ess[new][np.isfinite(ess[new])]
        if be.size >= 2 and ne.size >= 1:
            d_star[r] = smallest_caught_drop(be, ne, alpha=alpha)
        bc, bt = np.concatenate([div[i] for i in b]), np.concatenate([tot[i] for i in b])
        nt = np.concatenate([tot[i] for i in new])
        for j, k in enumerate(levels.rates):
            nc = np.concatenate([scale_divergences(div[i], tot[i], k, rng) for i in new])
            div_fail[r, j] = divergence_rise_test(bc, bt, nc, nt, alpha=alpha).regressed
        base_v, new_v = [verdicts[i][0] for i in b], [verdicts[i][0] for i in new]
        fa["flip"][r] = _verdict_regressed(flip_cache, base_v, new_v, check_alpha, alpha)
        fa["fisher"][r] = fisher(base_v, new_v)
        if curves:  # the bias curves, from the runs whose draws were shifted
            sub = shifted if shifted.size == m else shifted[rng.permutation(shifted.size)]
            vb, vn = (b, new) if shifted.size == m else (sub[:n], sub[n:2 * n])
            base_v = [verdicts[i][0] for i in vb]
            at_risk[r] = sum(1 for v in base_v if v)
            for j in range(levels_b):
                new_v = [verdicts[i][j] for i in vn]
                fail["flip"][r, j] = _verdict_regressed(flip_cache, base_v, new_v, check_alpha, alpha)
                fail["fisher"][r, j] = fisher(base_v, new_v)
        else:
            at_risk[r] = sum(1 for v in base_v if v)
    ok = np.isfinite(d_star)
    ds = d_star[ok]
    ess_power = [_rate(ds < d) for d in levels.drops]
    ess_fa = ds < 0
    any_fa = div_fail[:, 0] | fa["fisher"]  # the gate's verdict test
    any_fa[ok] |= ess_fa
    div_power = [_rate(div_fail[:, j]) for j in range(len(levels.rates))]

    def bias_block(kind: str) -> dict:
        power = [_rate(fail[kind][:, j]) for j in range(levels_b)] if curves else None
        return {"levels": list(levels.biases), "power": power, "false_alarm": _rate(fa[kind]),
                "delta80": level_at_power(levels.biases, power) if power else None,
                "curve_runs": int(shifted.size) if curves else 0}

    return {
        "n": n, "replicates": replicates, "pool": m,
        "ess_drop": {"levels": list(levels.drops), "power": ess_power, "false_alarm": _rate(ess_fa),
                     "replicates": int(ok.sum()),
                     "d80": float(np.quantile(ds, REPORTED_POWER)) if ds.size else None},
        "divergence_rise": {"levels": list(levels.rates), "power": div_power, "false_alarm": div_power[0],
                            "applicable": div_applicable,
                            "k80": level_at_power(levels.rates, div_power) if div_applicable else None},
        "bias": {**bias_block("fisher"), "mean_at_risk": float(at_risk.mean())},  # the gate's test
        "bias_flip": bias_block("flip"),  # the flip test the gate used before (for comparison)
        "gate_false_alarm": _rate(any_fa),
    }


def ess_power_analytic(n: int, d: float, log_sd: float, alpha: float = ALPHA) -> float:
    """Power of ess_drop_test against a drop ``d`` with ``n`` seeds a side when log ESS per gradient is
    normal with standard deviation ``log_sd``: the statistic is then noncentral t with n - 1 degrees of
    freedom and noncentrality -log(1 - d) / (sd sqrt(2 / n)) (the ESS_DROP_FLOOR is ignored: it only
    binds for drops near it)."""
    s = max(float(log_sd), LOG_SPREAD_FLOOR)
    nc = -math.log1p(-d) / (s * math.sqrt(2.0 / n))
    return float(stats.nct.sf(stats.t.isf(alpha, n - 1), n - 1, nc))


def n_for_power(d: float, log_sd: float, *, power: float = REPORTED_POWER, alpha: float = ALPHA,
                n_max: int = 10_000) -> int | None:
    """The fewest seeds a side for which :func:`ess_power_analytic` reaches ``power`` (None past n_max)."""
    lo, hi = 2, n_max
    if ess_power_analytic(hi, d, log_sd, alpha) < power:
        return None
    while lo < hi:  # power grows with n
        mid = (lo + hi) // 2
        if ess_power_analytic(mid, d, log_sd, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return lo
