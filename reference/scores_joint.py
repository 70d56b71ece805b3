"""Joint scores of an approximation: energy distance to exact iid draws, and PSIS (Pareto k-hat).

Energy distance (Szekely and Rizzo), between draws X (weights w) and exact iid draws Y (weights
1/m), on the standardised scale z = (s - centre) / scale of (mu, log tau, theta_1 .. theta_J), each
centred and scaled by its exact posterior mean and sd (median and IQR / 1.349 where a moment does not
exist):

    D = 2 sum_ij w_i v_j |x_i - y_j| - sum_ik w_i w_k |x_i - x_k| - sum_jl v_j v_l |y_j - y_l|

(Euclidean norms; the V-statistic, so D > 0 even for two exact samples: its bias is O(1/n)). What
value means "indistinguishable" is measured, not assumed: ``replicates`` times, D between two fresh
exact samples of the same sizes, the first carrying the same weights, gives ``null_mean`` and
``null_sd``; ``z`` = (D - null_mean) / null_sd and ``p_value`` = (1 + #{null >= D}) / (1 + replicates).

PSIS (Vehtari et al., "Pareto smoothed importance sampling", JMLR 2024) via arviz-stats'
``array_stats.psislw``. Its input is the *negated* log ratio (it is built for PSIS-LOO, whose log
weights are minus the log likelihood): log ratios r_i = log_p(x_i) - log_q(x_i) go in as -r. k-hat
< 0.7 (and < min(1 - 1/log10(S), 0.7) for S draws) means the smoothed weights are reliable.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from arviz_stats.base import array_stats
from scipy.spatial.distance import cdist

if TYPE_CHECKING:
    from .core import Reference
    from .scores import Draws

__all__ = ["EnergyScore", "PsisResult", "energy_distance", "energy_score", "psis", "standardised"]

#: rows per block of pairwise distances (bounds memory at block x m doubles)
_BLOCK = 1024
#: log ratios whose spread is below this are constant up to round-off: uniform weights, k-hat -inf
#: (bounded weights; a Pareto fit to round-off noise would be meaningless)
_CONSTANT_RATIO = 1e-9


class EnergyScore(NamedTuple):
    distance: float
    null_mean: float
    null_sd: float
    z: float
    p_value: float
    replicates: int
    n: int
    m: int
    dims: tuple[str, ...]


class PsisResult(NamedTuple):
    log_weights: np.ndarray  # normalised: logsumexp = 0
    weights: np.ndarray  # exp(log_weights), summing to 1
    khat: float
    khat_threshold: float  # min(1 - 1/log10(S), 0.7)
    n_eff: float  # 1 / sum w^2


def _mean_distance(a: np.ndarray, wa: np.ndarray, b: np.ndarray, wb: np.ndarray) -> float:
    total = 0.0
    for i in range(0, a.shape[0], _BLOCK):
        total += float(wa[i : i + _BLOCK] @ cdist(a[i : i + _BLOCK], b) @ wb)
    return total


def energy_distance(x: np.ndarray, y: np.ndarray, wx=None, wy=None) -> float:
    """Weighted energy distance between point sets x (n, d) and y (m, d) (formula above)."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    wx = np.full(x.shape[0], 1.0 / x.shape[0]) if wx is None else np.asarray(wx, float) / np.sum(wx)
    wy = np.full(y.shape[0], 1.0 / y.shape[0]) if wy is None else np.asarray(wy, float) / np.sum(wy)
    return 2 * _mean_distance(x, wx, y, wy) - _mean_distance(x, wx, x, wx) - _mean_distance(y, wy, y, wy)


def _centre_scale(reference: Reference, name: str) -> tuple[float, float]:
    s = reference.summary(name)
    if math.isfinite(s.mean) and math.isfinite(s.sd) and s.sd > 0:
        return s.mean, s.sd
    q25, q50, q75 = reference.quantile(name, np.array([0.25, 0.5, 0.75]))
    return float(q50), float((q75 - q25) / 1.349)


def standardised(d: Draws, reference: Reference) -> tuple[np.ndarray, tuple[str, ...]]:
    """(n, dims) array of (mu, log tau, theta_j) standardised by the exact posterior, and the names."""
    scalars = d.scalars()
    names = tuple(n for n in scalars if n != "tau")
    cols = []
    for name in names:
        centre, scale = _centre_scale(reference, name)
        cols.append((scalars[name] - centre) / scale)
    return np.stack(cols, axis=-1), names


def energy_score(d: Draws, reference: Reference, *, weights=None, seed: int = 0, replicates: int = 20,
                 max_points: int = 2000) -> EnergyScore:
    """Energy distance of the draws ``d`` to exact iid draws, and its exact-vs-exact null (see above).

    More than ``max_points`` draws are subsampled uniformly without replacement (their weights kept
    and renormalised); the exact samples have the same number of points. With equal weights the null
    depends on the reference and the size alone: it comes from its own fixed stream (NULL_SEED) and is
    computed once per process for each (reference, size, replicates).
    """
    if replicates < 2:
        raise ValueError(f"replicates = {replicates}: need at least 2 for a null sd")
    rng = np.random.default_rng(seed)
    n = d.mu.size
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, float) / np.sum(weights)
    idx = np.sort(rng.choice(n, max_points, replace=False)) if n > max_points else np.arange(n)
    k = idx.size
    w_sub = w[idx] / w[idx].sum()
    sub = type(d)(d.mu[idx], None if d.tau is None else d.tau[idx], d.theta[idx])
    x, dims = standardised(sub, reference)

    def exact(size: int) -> np.ndarray:
        raw = reference.draws(size, seed=int(rng.integers(2**63)))
        drawn = type(d)(raw["mu"], None if d.tau is None else raw["tau"], raw["theta"])
        return standardised(drawn, reference)[0]

    dist = energy_distance(x, exact(k), w_sub)
    if weights is None:  # equal weights: the null depends on the reference and the size only (cached)
        null = _uniform_null(reference, k, replicates, type(d), d.tau is None)
    else:
        null = np.array([energy_distance(exact(k), exact(k), w_sub) for _ in range(replicates)])
    mean, sd = float(null.mean()), float(null.std(ddof=1))
    z = (dist - mean) / sd if sd > 0 else math.inf
    p = (1 + int(np.sum(null >= dist))) / (1 + replicates)
    return EnergyScore(float(dist), mean, sd, float(z), float(p), replicates, k, k, dims)


#: equal-weight nulls kept per (reference, size, replicates): every fit of one problem and size shares
#: one (a job scores hundreds of fits of a few problems; each null is ~20 pairs of k x k distances)
_NULLS: dict[tuple, tuple[Reference, np.ndarray]] = {}
_NULLS_KEPT = 32
#: the null's own random stream: fixed per (size, replicates), so a cached null and a fresh one agree
NULL_SEED = 20261204


def _uniform_null(reference: Reference, k: int, replicates: int, draws_type, tau_fixed: bool) -> np.ndarray:
    key = (id(reference), k, replicates)
    hit = _NULLS.get(key)
    if hit is not None and hit[0] is reference:
        return hit[1]
    rng = np.random.default_rng([NULL_SEED, k, replicates])

    def exact() -> np.ndarray:
        raw = reference.draws(k, seed=int(rng.integers(2**63)))
        return standardised(draws_type(raw["mu"], None if tau_fixed else raw["tau"], raw["theta"]), reference)[0]

    null = np.array([energy_distance(exact(), exact()) for _ in range(replicates)])
    if len(_NULLS) >= _NULLS_KEPT:
        _NULLS.pop(next(iter(_NULLS)))
    _NULLS[key] = (reference, null)
    return null


def psis(log_p, log_q, *, r_eff: float = 1.0) -> PsisResult:
    """Pareto-smoothed importance weights for draws from q targeting p (log densities at each draw;
    log_p may be unnormalised). Raises ValueError on shapes that differ or values that are not finite."""
    lp, lq = np.asarray(log_p, float).ravel(), np.asarray(log_q, float).ravel()
    if lp.shape != lq.shape or lp.size < 5:
        raise ValueError(f"log_p, log_q: shapes {np.shape(log_p)} and {np.shape(log_q)} must match, >= 5 draws")
    if not (np.all(np.isfinite(lp)) and np.all(np.isfinite(lq))):
        raise ValueError("log_p, log_q: must be finite at every draw")
    ratio = lp - lq
    S = ratio.size
    threshold = min(1.0 - 1.0 / math.log10(S), 0.7)
    if np.ptp(ratio) <= _CONSTANT_RATIO:
        lw, khat = np.full(S, -math.log(S)), -math.inf
    else:
        lw, khat = array_stats.psislw(-ratio, r_eff=r_eff)
        lw = np.asarray(lw, float)
        lw = lw - np.logaddexp.reduce(lw)
    w = np.exp(lw)
    w = w / w.sum()
    return PsisResult(lw, w, float(khat), float(threshold), float(1.0 / np.sum(w * w)))
