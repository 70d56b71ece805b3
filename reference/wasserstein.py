"""The 1-Wasserstein distance between (weighted) draws and an exact CDF, integrated piecewise.

    W1 = integral over x of |F_n(x) - F(x)| dx,

F_n the (weighted) empirical CDF of the draws, F any exact CDF given as a vectorised callable. F_n
is a step function: with the draws sorted, x_(1) <= ... <= x_(n), and c_i the cumulative normalised
weight of the first i, F_n = c_i on [x_(i), x_(i+1)). So W1 is a sum of exact pieces:

- between consecutive draws, |c_i (b - a) - integral_a^b F| where c_i - F keeps one sign; F is
  monotone, so it changes sign at most once, at F(x*) = c_i, found by bisection (to round-off) and
  the interval split there;
- the tails beyond the extreme draws: integral of F below x_(1) (down to the support's lower end)
  and of 1 - F above x_(n) (a gap below ``TAIL_FLOOR`` = 1e-14 is round-off, counted as 0), mapped to t in [0, 1) by u = scale t / (1 - t) and integrated on 40
  geometric panels (t up to 1 - 2^-40, u up to ~1e12 scales).

Every integral of F is an 8-node Gauss-Legendre sum per piece (per panel in the tails), and the
stated ``error`` bounds its numerical part: the sum over pieces of |GL8 - GL5| (the 5-node rule's
error, an overestimate of the 8-node rule's), plus g(u_max) u_max for each unbounded tail (the mass
beyond the last panel, for tails lighter than 1/u^2), plus ``cdf_error`` x ``cdf_error_span`` (a
uniform bound on |F_used - F| and the length it applies over: the reference's interpolation table).

``iid_expected`` says what "indistinguishable" means: for n_eff = 1 / sum w_i^2 exact draws,
sqrt(n_eff) (F_n - F)(x) is asymptotically normal with variance F(1 - F), so
E W1 -> sqrt(2 / (pi n_eff)) integral sqrt(F (1 - F)) dx (the same nodes integrate it). For a
normal, sqrt(n) W1 has mean 1.288 sd and sd ~0.44 sd (measured: 400 replicates of n = 1000).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

__all__ = ["W1", "TAIL_FLOOR", "wasserstein1", "normalised_weights"]

_GL = np.polynomial.legendre.leggauss(8)
_GL_CHECK = np.polynomial.legendre.leggauss(5)
#: geometric tail panels in t: [0, 1/2], [1/2, 3/4], ..., up to 1 - 2^-_TAIL_PANELS
_TAIL_PANELS = 40
#: a tail gap (F below the draws, 1 - F above) smaller than this is round-off of a CDF that should
#: reach 0 or 1 (the reference's mixture CDF saturates at 1 - 1.1e-16): counted as 0, else it would
#: be integrated out to ~1e12 scales. Light tails lose nothing; a tail like 1/u^k loses
#: ~1e-14 u / (k - 1) at the u where it falls below this
TAIL_FLOOR = 1e-14
#: bisection steps for a crossing of F with a level of F_n: 2^-60 of an inter-draw gap is round-off
_BISECT = 60


class W1(NamedTuple):
    """``distance`` = integral |F_n - F| dx, in the quantity's units; ``error`` bounds its numerical
    error; ``iid_expected`` is the asymptotic mean of W1 for ``n_eff`` exact iid draws."""

    distance: float
    error: float
    iid_expected: float
    n_eff: float


def normalised_weights(n: int, weights=None) -> np.ndarray:
    """Weights summing to 1 (uniform when None); ValueError naming the problem otherwise."""
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=float).ravel()
    if w.size != n:
        raise ValueError(f"weights: {w.size} values for {n} draws")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError("weights: must be finite, >= 0, with a positive sum")
    return w / w.sum()


def _rule_sums(cdf, a: np.ndarray, b: np.ndarray, rule, funcs) -> list[np.ndarray]:
    """Gauss-Legendre sums over [a_k, b_k] of each g(F) in funcs (one CDF call for all pieces)."""
    x, w = rule
    half, mid = 0.5 * (b - a), 0.5 * (a + b)
    F = np.clip(np.asarray(cdf(mid[:, None] + half[:, None] * x[None, :]), float), 0.0, 1.0)
    return [half * (g(F) @ w) for g in funcs]


def _iid(F: np.ndarray) -> np.ndarray:
    return np.sqrt(F * (1.0 - F))


def _crossings(cdf, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """x* in (a, b) with F(x*) = c, by vectorised bisection (F(a) < c < F(b) is given)."""
    lo, hi = a.copy(), b.copy()
    for _ in range(_BISECT):
        mid = 0.5 * (lo + hi)
        below = np.asarray(cdf(mid), float) < c
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _interior(cdf, xs: np.ndarray, c: np.ndarray, F_at: np.ndarray) -> tuple[float, float, float]:
    """(distance, error, integral of sqrt(F(1-F))) between the extreme draws."""
    a, b, level = xs[:-1], xs[1:], c[:-1]
    keep = b > a
    a, b, level = a[keep], b[keep], level[keep]
    Fa, Fb = F_at[:-1][keep], F_at[1:][keep]
    cross = (Fa < level) & (level < Fb)
    if cross.any():
        xstar = _crossings(cdf, a[cross], b[cross], level[cross])
        a = np.concatenate([a[~cross], a[cross], xstar])
        b = np.concatenate([b[~cross], xstar, b[cross]])
        level = np.concatenate([level[~cross], level[cross], level[cross]])
    if a.size == 0:
        return 0.0, 0.0, 0.0
    intF, intI = _rule_sums(cdf, a, b, _GL, (lambda F: F, _iid))
    (chkF,) = _rule_sums(cdf, a, b, _GL_CHECK, (lambda F: F,))
    dist = np.abs(level * (b - a) - intF)
    return float(dist.sum()), float(np.abs(intF - chkF).sum()), float(intI.sum())


def _tail(cdf, edge: float, direction: int, length: float, scale: float) -> tuple[float, float, float]:
    """Integral of F below ``edge`` (direction -1) or of 1 - F above it (+1), over ``length`` (may be
    inf): (distance, error, integral of sqrt(F(1-F)))."""
    if length <= 0:
        return 0.0, 0.0, 0.0
    t_end = 1.0 if math.isinf(length) else length / (length + scale)
    t = 1.0 - np.ldexp(1.0, -np.arange(0, _TAIL_PANELS + 1))  # 0, 1/2, 3/4, ...
    t = np.concatenate([t[t < t_end], [t_end]]) if t_end < 1.0 else t
    lo, hi = t[:-1], t[1:]

    def tail_cdf(tt):  # the integrand's CDF values at x = edge + direction * u(t)
        return cdf(edge + direction * scale * tt / (1.0 - tt))

    def gap(F):  # F below, 1 - F above (du/dt is applied per node below); round-off counted as 0
        G = F if direction < 0 else 1.0 - F
        return np.where(G < TAIL_FLOOR, 0.0, G)

    out = []
    for rule in (_GL, _GL_CHECK):
        x, w = rule
        half, mid = 0.5 * (hi - lo), 0.5 * (hi + lo)
        tt = mid[:, None] + half[:, None] * x[None, :]
        F = np.clip(np.asarray(tail_cdf(tt), float), 0.0, 1.0)
        jac = scale / (1.0 - tt) ** 2
        G = gap(F)
        out.append((half * ((G * jac) @ w), half * ((_iid(G) * jac) @ w)))
    (dist, intI), (chk, _) = out
    err = float(np.abs(dist - chk).sum())
    if t_end >= 1.0:  # the rest beyond u_max, for a tail lighter than 1/u^2
        u_max = scale * t[-1] / (1.0 - t[-1])
        g = float(gap(np.clip(np.asarray(cdf(np.array([edge + direction * u_max])), float), 0.0, 1.0))[0])
        err += g * u_max
    return float(dist.sum()), err, float(intI.sum())


def wasserstein1(
    x,
    cdf: Callable[[np.ndarray], np.ndarray],
    *,
    weights=None,
    scale: float | None = None,
    lower: float = -math.inf,
    upper: float = math.inf,
    cdf_error: float = 0.0,
    cdf_error_span: float = 0.0,
) -> W1:
    """W1 between the (weighted) draws ``x`` and the distribution with CDF ``cdf`` (vectorised).

    ``scale`` sets the tail mapping (default: the draws' IQR / 1.349, else 1); ``lower``/``upper`` are
    the support's ends (tails stop there); ``cdf_error`` bounds |cdf - F| over a length
    ``cdf_error_span`` (added to ``error``). See the module docstring for the formulas.
    """
    xs = np.asarray(x, dtype=float).ravel()
    if xs.size == 0 or not np.all(np.isfinite(xs)):
        raise ValueError("x: need at least one finite draw, and only finite draws")
    w = normalised_weights(xs.size, weights)
    order = np.argsort(xs, kind="stable")
    xs, w = xs[order], w[order]
    c = np.cumsum(w)
    c[-1] = 1.0
    if scale is None:
        q1, q3 = np.quantile(xs, [0.25, 0.75])
        scale = float((q3 - q1) / 1.349) or 1.0
    F_at = np.clip(np.asarray(cdf(xs), float), 0.0, 1.0)
    parts = [
        _interior(cdf, xs, c, F_at),
        _tail(cdf, float(xs[0]), -1, float(xs[0] - lower), scale),
        _tail(cdf, float(xs[-1]), +1, float(upper - xs[-1]), scale),
    ]
    dist = sum(p[0] for p in parts)
    err = sum(p[1] for p in parts) + cdf_error * cdf_error_span
    n_eff = float(1.0 / np.sum(w * w))
    iid = math.sqrt(2.0 / (math.pi * n_eff)) * sum(p[2] for p in parts)
    return W1(float(dist), float(err), float(iid), n_eff)
