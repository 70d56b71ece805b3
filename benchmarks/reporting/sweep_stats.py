"""The sweep's numbers, from its records alone: the crossover of centred and non-centred, where the
centred fits start failing the check, the check's pass rate and power across the space, and how
informative each data point is (from the exact reference).

A record here is a run-path record (``benchmarks.runpath.record``); nothing in this module samples.
The efficiency compared is ESS per gradient evaluation (``ess_bulk_per_grad``: the smallest bulk ESS
over mu, tau and every theta, divided by the leapfrog steps after warmup), hardware-free.

Crossover: for one engine, J and sampler seed, d(S) = log(centred / non-centred ESS per gradient) at
each sigma_scale S (the two fits with that seed). Scanning from the informative end, the crossover is
the first S where d turns from > 0 (centred better) to <= 0, interpolated linearly in log S between
the two bracketing scales. Where d keeps one sign over the whole range the crossover is censored:
below the smallest scale (non-centred wins everywhere: reported as 0) or above the largest (centred
wins everywhere: reported as inf).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy import stats

from reference import posterior
from reference.check import DEFAULT_ALPHA

from ..runpath.spec import data_for, prior_for
from .failures import error_kind

__all__ = ["CI_LEVEL", "NOMINAL_PASS", "SOUND_RHAT", "Crossover", "CrossoverSummary", "BinomialRate", "Point",
           "ok", "sound", "clopper_pearson", "crossover", "log_ratios", "crossovers", "median_log",
           "first_failing", "check_space", "informativeness", "at_informativeness", "direction", "RegimeRates",
           "regime_rates"]

#: two-sided level of every binomial interval (Clopper-Pearson, exact)
CI_LEVEL = 0.95
#: the rate a sound fit should pass the check at: 1 - its family-wise false-alarm rate
NOMINAL_PASS = 1.0 - DEFAULT_ALPHA
#: R-hat below which a fit counts as converged (Vehtari et al. 2021's threshold); a "sound" fit also
#: has no divergent transition
SOUND_RHAT = 1.01
#: tau quantile levels (midpoints of equal-probability bins) for the posterior mean of the pooling
#: factor: the integrand sigma^2/(sigma^2+tau^2) is monotone in tau and within [0, 1], so the
#: midpoint sum over N bins is within 1/N of the integral (2.5e-4 here: reported to 2 decimals)
POOLING_NODES = 4000


def ok(r: dict) -> bool:
    """The run finished (it has numbers), whether or not its check passed."""
    return error_kind(r) is None and r.get("ess_bulk_per_grad") is not None


def sound(r: dict) -> bool:
    """A finished fit with no divergence and max R-hat < SOUND_RHAT."""
    return (ok(r) and (r.get("divergences") or 0) == 0 and r.get("max_rhat") is not None
            and r["max_rhat"] < SOUND_RHAT)


class BinomialRate(NamedTuple):
    k: int
    n: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else math.nan

    def text(self) -> str:
        if not self.n:
            return "—"
        return f"{self.k}/{self.n} [{self.low:.2f}, {self.high:.2f}]"


def clopper_pearson(k: int, n: int, level: float = CI_LEVEL) -> BinomialRate:
    """k successes in n with the exact (Clopper-Pearson) interval (scipy's binomtest)."""
    if n == 0:
        return BinomialRate(0, 0, math.nan, math.nan)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return BinomialRate(k, n, float(ci.low), float(ci.high))


class Crossover(NamedTuple):
    scale: float  # interpolated S; 0.0 = below the range (non-centred wins everywhere), inf = above it
    kind: str  # "crossing", "below", "above", "reversed" (centred gets better as data weaken), "none"
    sign_changes: int  # how often d changes sign along S (1 for a clean crossover)


def crossover(points: Iterable[tuple[float, float | None]]) -> Crossover:
    """The crossover of (S, d) points (d = log centred/non-centred; None where a fit is missing)."""
    pts = sorted((float(s), float(d)) for s, d in points if d is not None and math.isfinite(d))
    if not pts:
        return Crossover(math.nan, "none", 0)
    signs = [d > 0 for _, d in pts]
    changes = sum(a != b for a, b in zip(signs, signs[1:]))
    for (s0, d0), (s1, d1) in zip(pts, pts[1:]):
        if d0 > 0 >= d1:
            t = d0 / (d0 - d1)
            return Crossover(math.exp(math.log(s0) + t * (math.log(s1) - math.log(s0))), "crossing", changes)
    if all(signs):
        return Crossover(math.inf, "above", changes)
    if not any(signs):
        return Crossover(0.0, "below", changes)
    return Crossover(math.nan, "reversed", changes)


def median_log(values: Iterable[float]) -> float:
    """The median on the log scale (0 and inf allowed: censored crossovers); nan when undetermined."""
    v = [x for x in values if not math.isnan(x)]
    if not v:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.exp(np.median(np.log(v))))


def _by_cell(records: Iterable[dict]) -> dict[tuple, dict]:
    """(engine, J, S, seed) -> {parameterisation: record}."""
    out: dict[tuple, dict] = defaultdict(dict)
    for r in records:
        out[(r["engine"], r["J"], float(r["sigma_scale"]), r["seed"])][r["parameterization"]] = r
    return out


def log_ratios(records: Iterable[dict]) -> dict[tuple, dict[int, dict[float, float | None]]]:
    """(engine, J) -> seed -> S -> log(centred / non-centred ESS per gradient), None where either fit
    is missing or failed."""
    out: dict[tuple, dict[int, dict[float, float | None]]] = defaultdict(lambda: defaultdict(dict))
    for (engine, J, S, seed), pair in _by_cell(records).items():
        c, n = pair.get("centered"), pair.get("noncentered")
        d = None
        if c and n and ok(c) and ok(n) and c["ess_bulk_per_grad"] > 0 and n["ess_bulk_per_grad"] > 0:
            d = math.log(c["ess_bulk_per_grad"] / n["ess_bulk_per_grad"])
        out[(engine, J)][seed][S] = d
    return out


class CrossoverSummary(NamedTuple):
    per_seed: dict[int, Crossover]
    median: float  # over seeds, on the log scale
    low: float
    high: float
    pooled: Crossover  # of the median (over seeds) d at each S


def crossovers(records: list[dict]) -> dict[tuple, CrossoverSummary]:
    """(engine, J) -> the crossover per seed, their median and range, and the pooled curve's."""
    out = {}
    for key, seeds in log_ratios(records).items():
        per_seed = {seed: crossover(pts.items()) for seed, pts in sorted(seeds.items())}
        values = sorted(c.scale for c in per_seed.values() if not math.isnan(c.scale))
        scales = sorted({s for pts in seeds.values() for s in pts})
        pooled_pts = []
        for s in scales:
            ds = [pts[s] for pts in seeds.values() if pts.get(s) is not None]
            pooled_pts.append((s, float(np.median(ds)) if ds else None))
        out[key] = CrossoverSummary(per_seed, median_log(values), values[0] if values else math.nan,
                                    values[-1] if values else math.nan, crossover(pooled_pts))
    return out


def direction(records: list[dict], scale: float) -> dict[tuple, tuple[int, int, float]]:
    """(engine, J) -> (seeds where centred beats non-centred, seeds with both fits, median ratio
    centred/non-centred of ESS per gradient) at one scale."""
    out = {}
    for key, seeds in log_ratios(records).items():
        ds = [pts[s] for pts in seeds.values() for s in pts if math.isclose(s, scale) and pts[s] is not None]
        if ds:
            out[key] = (sum(d > 0 for d in ds), len(ds), float(np.exp(np.median(ds))))
    return out


def first_failing(records: list[dict], engine: str, J: int, param: str = "centered") -> tuple[float | None, float | None]:
    """(the smallest S at which a fit fails the check, the smallest S at which at least half the fits
    fail): where this engine's ``param`` fits start failing; None where they never do. Not "from S on":
    at the weakest data a centred fit can have so few effective draws that its MCSE hides its bias."""
    by_s: dict[float, list[bool]] = defaultdict(list)
    for r in records:
        if r["engine"] == engine and r["J"] == J and r["parameterization"] == param and ok(r):
            by_s[float(r["sigma_scale"])].append(bool(r.get("check_passed")))
    scales = sorted(by_s)
    first = next((s for s in scales if not all(by_s[s])), None)
    mostly = next((s for s in scales if 2 * by_s[s].count(False) >= len(by_s[s])), None)
    return first, mostly


class Point(NamedTuple):
    """How informative one data set is, from the exact posterior under the sweep's prior."""

    data_spec: str
    J: int
    sigma_scale: float
    sigma_median: float  # median over schools of sigma_j
    tau_median: float  # posterior median of tau
    ratio: float  # sigma_median / tau_median
    pooling: float  # mean over schools of E[sigma_j^2 / (sigma_j^2 + tau^2) | y]


@lru_cache(maxsize=64)
def informativeness(data_spec: str, prior: str = "default") -> Point:
    data = data_for(data_spec)
    ref = posterior(data, prior_for(prior))
    tau = ref.quantile("tau", (np.arange(POOLING_NODES) + 0.5) / POOLING_NODES)
    s2 = data.sigma_array ** 2
    pooling = float(np.mean(s2[None, :] / (s2[None, :] + tau[:, None] ** 2)))
    tau_median = float(ref.quantile("tau", 0.5))
    sigma_median = float(np.median(data.sigma_array))
    return Point(data_spec, data.J, float(data.sigma_scale), sigma_median, tau_median,
                 sigma_median / tau_median, pooling)


def at_informativeness(points: list[Point], scale: float) -> tuple[float, float]:
    """(ratio, pooling) at a crossover scale between the sweep's points: log ratio and pooling
    interpolated linearly in log S (nan outside the points' range)."""
    pts = sorted(points, key=lambda p: p.sigma_scale)
    if not pts or not (0 < scale < math.inf) or not (pts[0].sigma_scale <= scale <= pts[-1].sigma_scale):
        return math.nan, math.nan
    x = np.log([p.sigma_scale for p in pts])
    ratio = float(np.exp(np.interp(math.log(scale), x, np.log([p.ratio for p in pts]))))
    pooling = float(np.interp(math.log(scale), x, [p.pooling for p in pts]))
    return ratio, pooling


class SpaceCell(NamedTuple):
    engine: str
    sigma_scale: float
    param: str
    sound_pass: BinomialRate  # sound fits that passed the check
    suspect_flagged: BinomialRate  # divergent or unconverged fits the check failed (its power)
    failed_runs: int


def check_space(records: list[dict], *, param: str = "centered") -> list[SpaceCell]:
    """Per engine and S (J pooled): the sound ``param`` fits' pass rate and the suspect fits' flag rate."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r["parameterization"] == param:
            cells[(r["engine"], float(r["sigma_scale"]))].append(r)
    out = []
    for (engine, s), rows in sorted(cells.items()):
        good = [r for r in rows if sound(r)]
        bad = [r for r in rows if ok(r) and not sound(r)]
        out.append(SpaceCell(engine, s, param,
                             clopper_pearson(sum(bool(r.get("check_passed")) for r in good), len(good)),
                             clopper_pearson(sum(r.get("check_passed") is False for r in bad), len(bad)),
                             sum(not ok(r) for r in rows)))
    return out


class RegimeRates(NamedTuple):
    """The check on one engine's fits (or every engine's), split at each (engine, J)'s crossover."""

    informative_sound: BinomialRate  # centred, S below the crossover, sound: passed
    informative_unsound: BinomialRate  # centred, S below the crossover, divergent or unconverged: flagged
    weak_sound: BinomialRate  # centred, S above the crossover, sound all the same: passed
    weak_unsound: BinomialRate  # centred, S above the crossover, divergent or unconverged: flagged (power)
    noncentred_sound: BinomialRate  # non-centred anywhere, sound: passed
    weak_unsound_ess: float  # median min bulk ESS of the weak-side unsound centred fits (why power varies)


def regime_rates(records: list[dict], engine: str | None = None) -> RegimeRates:
    """Centred fits on the informative side of their (engine, J)'s median crossover, and on the weak side;
    an (engine, J) without a crossover (nan) is left out of the centred rates."""
    cross = {key: c.median for key, c in crossovers(records).items()}
    rows = [r for r in records if ok(r) and (engine is None or r["engine"] == engine)]
    side = defaultdict(list)
    for r in rows:
        if r["parameterization"] == "noncentered":
            side["nc"].append(r)
            continue
        c = cross.get((r["engine"], r["J"]), math.nan)
        if math.isnan(c) or float(r["sigma_scale"]) == c:
            continue
        weak = float(r["sigma_scale"]) > c
        side[("weak" if weak else "informative", sound(r))].append(r)

    def passed(rs: list[dict]) -> BinomialRate:
        return clopper_pearson(sum(bool(r.get("check_passed")) for r in rs), len(rs))

    def flagged(rs: list[dict]) -> BinomialRate:
        return clopper_pearson(sum(r.get("check_passed") is False for r in rs), len(rs))

    ess = [r["min_ess_bulk"] for r in side[("weak", False)] if r.get("min_ess_bulk") is not None]
    return RegimeRates(passed(side[("informative", True)]), flagged(side[("informative", False)]),
                       passed(side[("weak", True)]), flagged(side[("weak", False)]),
                       passed([r for r in side["nc"] if sound(r)]), float(np.median(ess)) if ess else math.nan)
