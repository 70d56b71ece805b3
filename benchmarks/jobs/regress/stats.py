"""The gate's statistical decisions: pure functions of numbers, each with its false-alarm rate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import optimize, special, stats

from .thresholds import (
    ALPHA,
    DIVERGENCE_RISE_FLOOR,
    ESS_DROP_FLOOR,
    LOG_SPREAD_FLOOR,
    REPORTED_POWER,
    TIME_LOG_SPREAD_FLOOR,
    TIME_RISE_FLOOR,
)

__all__ = ["DropTest", "log_shift_test", "ess_drop_test", "time_rise_test", "DivergenceTest",
           "divergence_rise_test", "VerdictTest", "flips_needed", "verdict_flip_test", "PassRateTest",
           "pass_rate_drop_test", "positive"]


class DropTest(NamedTuple):
    """One-sided test that a positive quantity moved in the bad direction, on log scale."""

    regressed: bool
    ratio: float  # geometric mean now / geometric mean in the baseline
    p_value: float
    bound: float  # the ratio below (or above) which the test rejects at alpha
    detectable: float | None  # relative change detected with REPORTED_POWER (None: cannot estimate)
    log_sd: float  # the spread used
    n_base: int
    n_new: int


def positive(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v) and v > 0], float)


def _detectable_shift(se: float, df: int, t_crit: float, power: float) -> float:
    """The log shift caught with probability ``power``: the noncentral t's noncentrality times se."""
    f = lambda nc: stats.nct.sf(t_crit, df, nc) - power  # noqa: E731
    return float(optimize.brentq(f, 0.0, 200.0)) * se


def log_shift_test(base: Sequence[float], new: Sequence[float], *, alpha: float = ALPHA,
                   direction: str = "drop", floor: float = ESS_DROP_FLOOR,
                   spread_floor: float = LOG_SPREAD_FLOOR, power: float = REPORTED_POWER) -> DropTest:
    """Has the geometric mean of ``new`` moved below (``drop``) or above (``rise``) ``base`` by more than
    the baseline's seed-to-seed spread allows?

    Statistic: t = (mean log base - mean log new) / (s * sqrt(1/n_b + 1/n_n)), s the baseline's
    standard deviation of log values (at least ``spread_floor``). If log values are normal with the
    baseline's variance and nothing changed, t follows Student's t with n_b - 1 degrees of freedom, so
    rejecting at its upper ``alpha`` quantile (a one-sided prediction bound for the new mean) has false-
    alarm rate ``alpha``. Unpaired on purpose: the same seed reproduces the same draws only with the
    same PPL build, so across versions pairing carries no information, and within a build a paired
    spread would collapse to zero and turn any tiny nondeterminism into an alarm. The change must also
    exceed ``floor`` (a relative change) to count. Power: ``detectable`` is the relative change caught
    with probability ``power`` (noncentral t), so a pass says "no change larger than this".
    """
    if direction not in ("drop", "rise"):
        raise ValueError(f"direction = {direction!r}: must be 'drop' or 'rise'")
    b, n = np.log(positive(base)), np.log(positive(new))
    if b.size < 2 or n.size < 1:
        raise ValueError(f"need >= 2 baseline values and >= 1 new value (have {b.size} and {n.size})")
    sign = 1.0 if direction == "drop" else -1.0
    s = max(float(b.std(ddof=1)), spread_floor)
    se = s * math.sqrt(1 / b.size + 1 / n.size)
    df = b.size - 1
    diff = sign * (b.mean() - n.mean())  # > 0: moved the bad way
    t = diff / se
    p = float(stats.t.sf(t, df))
    t_crit = float(stats.t.isf(alpha, df))
    ratio = float(math.exp(n.mean() - b.mean()))
    change = 1 - ratio if direction == "drop" else ratio - 1
    bound = math.exp(-sign * t_crit * se)
    shift = _detectable_shift(se, df, t_crit, power)
    detectable = 1 - math.exp(-shift) if direction == "drop" else math.exp(shift) - 1
    detectable = max(detectable, floor)
    return DropTest(bool(p < alpha and change > floor), ratio, p, float(bound), float(detectable), s,
                    int(b.size), int(n.size))


def ess_drop_test(base: Sequence[float], new: Sequence[float], *, alpha: float = ALPHA,
                  floor: float = ESS_DROP_FLOOR) -> DropTest:
    """ESS per gradient dropped (see :func:`log_shift_test`)."""
    return log_shift_test(base, new, alpha=alpha, direction="drop", floor=floor)


def time_rise_test(base: Sequence[float], new: Sequence[float], *, alpha: float = ALPHA,
                   floor: float = TIME_RISE_FLOOR) -> DropTest:
    """Time per draw rose (see :func:`log_shift_test`)."""
    return log_shift_test(base, new, alpha=alpha, direction="rise", floor=floor,
                          spread_floor=TIME_LOG_SPREAD_FLOOR)


class DivergenceTest(NamedTuple):
    regressed: bool
    rate_base: float
    rate_new: float
    p_value: float
    dispersion: float
    divergences_base: int
    divergences_new: int


def _pearson(counts: np.ndarray, totals: np.ndarray) -> float:
    p = counts.sum() / totals.sum() if totals.sum() else 0.0
    if p <= 0 or p >= 1:
        return 0.0
    expected = totals * p
    return float(np.sum((counts - expected) ** 2 / (expected * (1 - p))))


def divergence_rise_test(base_counts: Sequence[int], base_totals: Sequence[int], new_counts: Sequence[int],
                         new_totals: Sequence[int], *, alpha: float = ALPHA,
                         floor: float = DIVERGENCE_RISE_FLOOR) -> DivergenceTest:
    """Did the divergence rate rise?  Counts are per chain (divergences, transitions).

    Given the total number of divergences D, the number in the new runs is binomial(D, N_new / N)
    if both share one rate (the conditional test for two Poisson rates). Divergences cluster in
    chains stuck near the funnel's neck, which makes counts overdispersed and that test far too
    eager, so counts are first divided by a dispersion factor phi >= 1: Pearson's chi-square of the
    per-chain counts about each side's own rate, over its degrees of freedom (quasi-binomial). The
    p-value is the upper tail P(X >= D_new / phi) of binomial(D / phi, N_new / N), continued to
    non-integer counts through the regularised incomplete beta function. The rise in rate must also
    exceed ``floor`` to count.
    """
    bc, bt = np.asarray(base_counts, float), np.asarray(base_totals, float)
    nc, nt = np.asarray(new_counts, float), np.asarray(new_totals, float)
    if bc.shape != bt.shape or nc.shape != nt.shape or bt.sum() <= 0 or nt.sum() <= 0:
        raise ValueError("counts and totals must match in length, with transitions on both sides")
    if np.any(bc < 0) or np.any(nc < 0) or np.any(bc > bt) or np.any(nc > nt):
        raise ValueError("divergence counts must lie between 0 and the transitions")
    db, dn, nb, nn = bc.sum(), nc.sum(), bt.sum(), nt.sum()
    df = bc.size + nc.size - 2
    phi = max(1.0, (_pearson(bc, bt) + _pearson(nc, nt)) / df) if df > 0 else 1.0
    rate_b, rate_n = db / nb, dn / nn
    if dn == 0:
        p = 1.0
    else:
        k, n, pi = dn / phi, (db + dn) / phi, nn / (nb + nn)
        p = float(special.betainc(k, n - k + 1, pi))  # P(X >= k) for X ~ binomial(n, pi)
    regressed = p < alpha and (rate_n - rate_b) > floor
    return DivergenceTest(bool(regressed), float(rate_b), float(rate_n), p, float(phi), int(db), int(dn))


class VerdictTest(NamedTuple):
    regressed: bool
    flips: int  # seeds that passed in the baseline and fail now
    at_risk: int  # seeds that passed in the baseline and were checked now
    needed: int | None  # flips needed to fail (None: at_risk too small for any to be significant)
    recoveries: int  # failed in the baseline, pass now
    p_value: float


def flips_needed(at_risk: int, check_alpha: float, alpha: float = ALPHA) -> int | None:
    """Fewest pass -> fail flips among ``at_risk`` seeds whose chance under a correct sampler, each
    seed failing independently with the check's own family-wise rate ``check_alpha``, is <= alpha."""
    for k in range(1, at_risk + 1):
        if stats.binom.sf(k - 1, at_risk, check_alpha) <= alpha:
            return k
    return None


def verdict_flip_test(base: Sequence[bool | None], new: Sequence[bool | None], *, check_alpha: float,
                      alpha: float = ALPHA) -> VerdictTest:
    """Reference verdicts turned from pass to fail on more seeds than the check's false alarms explain.

    The reference check (reference/check.py) fails a correct sampler with family-wise probability at
    most ``check_alpha`` (1 %, Bonferroni, conservative). One flip in 5 seeds happens by chance with
    probability up to 5 %, so it only warns; two flips have probability <= 0.1 % and fail the gate.
    Seeds are paired by seed; a seed unchecked on either side is left out.
    """
    if len(base) != len(new):
        raise ValueError(f"base and new verdicts differ in length ({len(base)} vs {len(new)})")
    pairs = [(b, n) for b, n in zip(base, new) if b is not None and n is not None]
    at_risk = sum(1 for b, _ in pairs if b)
    flips = sum(1 for b, n in pairs if b and not n)
    recoveries = sum(1 for b, n in pairs if not b and n)
    need = flips_needed(at_risk, check_alpha, alpha)
    p = float(stats.binom.sf(flips - 1, at_risk, check_alpha)) if flips else 1.0
    return VerdictTest(need is not None and flips >= need, flips, at_risk, need, recoveries, p)


class PassRateTest(NamedTuple):
    regressed: bool
    passed_base: int
    checked_base: int
    passed_new: int
    checked_new: int
    p_value: float
    flips: int  # seeds that passed in the baseline and fail now (reported; the decision uses the counts)


def pass_rate_drop_test(base: Sequence[bool | None], new: Sequence[bool | None], *,
                        alpha: float = ALPHA) -> PassRateTest:
    """Did the share of seeds whose fit passes the reference check drop?

    One-sided Fisher's exact test of the pass counts (baseline against now): exact given both sides'
    totals, and it assumes nothing about how often an unchanged sampler fails the check. The gate's
    earlier test counted pass -> fail flips and called more than the check's own 1 % false-alarm rate
    explains a regression; that holds for a sampler that matches the posterior, but the centred model
    at short settings fails the check on ~60 % of its seeds by its own bias, so a candidate whose
    seeds draw other random numbers flipped seeds by chance: measured by ``nox -s power``, that test
    alarmed on 50 % of unchanged centred reruns at 5 seeds and on all of them at 225, where this one
    stays below alpha (results/power/POWER.md). Seeds unchecked on either side are left out.
    """
    if len(base) != len(new):
        raise ValueError(f"base and new verdicts differ in length ({len(base)} vs {len(new)})")
    b = [v for v in base if v is not None]
    n = [v for v in new if v is not None]
    pb, pn = sum(bool(v) for v in b), sum(bool(v) for v in n)
    flips = sum(1 for x, y in zip(base, new) if x is True and y is False)
    if not b or not n:
        return PassRateTest(False, pb, len(b), pn, len(n), 1.0, flips)
    p = float(stats.fisher_exact([[pb, len(b) - pb], [pn, len(n) - pn]], alternative="greater").pvalue)
    return PassRateTest(p < alpha, pb, len(b), pn, len(n), p, flips)

