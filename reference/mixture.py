"""Marginals of mu and theta_j as mixtures over the tau nodes: CDF, density, moments, quantiles.

Each mixture holds K independent distributions (schools) sharing the node weights w_i (node axis
first, shape (n, K)). Evaluation points have shape (K, L). Component families:

* ``NormalMixture``: mu | tau under a flat or normal mu prior, and theta_j | tau, y then
  (BDA3 5.17 with mu integrated: normal with mean (1-B) y_j + B E[mu | tau] and variance
  (1-B) sigma_j^2 + B^2 Var[mu | tau]).
* ``TruncatedMixture``: mu | tau under a uniform mu prior (a truncated normal).
* ``ShiftedTruncatedMixture``: theta_j | tau under a uniform mu prior, c + B mu + e with mu
  truncated normal and e normal, whose CDF is a bivariate-normal rectangle probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import special

from ._special import bvn_rect, log_ndtr_diff, tn_cdf, tn_moments, tn_pdf

__all__ = [
    "Mixture",
    "NormalMixture",
    "TruncatedMixture",
    "ShiftedTruncatedMixture",
    "solve_quantiles",
]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
#: nodes lighter than this do not move the bracket of the quantile search (their total is < 1e-13)
_BRACKET_WEIGHT = 1e-16
_BRACKET_SDS = 40.0
_EPS = np.finfo(float).eps


class Mixture(Protocol):
    w: np.ndarray

    def cdf_pdf(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def moments(self) -> tuple[np.ndarray, np.ndarray]: ...

    def bracket(self) -> tuple[np.ndarray, np.ndarray]: ...

    def cdf_roundoff(self) -> np.ndarray: ...

    @property
    def kinks(self) -> tuple[float, ...]: ...


def _sum_nodes(w: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.tensordot(w, values, axes=(0, 0))


def _mix_moments(w: np.ndarray, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Law of total variance over the nodes."""
    m = w @ mean
    return m, w @ (var + (mean - m) ** 2)


def _heavy(w: np.ndarray) -> np.ndarray:
    return w > _BRACKET_WEIGHT * np.max(w)


@dataclass(frozen=True)
class NormalMixture:
    w: np.ndarray  # (n,)
    loc: np.ndarray  # (n, K)
    scale: np.ndarray  # (n, K)

    def cdf_pdf(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = (x[None] - self.loc[..., None]) / self.scale[..., None]
        F = _sum_nodes(self.w, special.ndtr(z))
        f = _sum_nodes(self.w, np.exp(-0.5 * z * z) * _INV_SQRT_2PI / self.scale[..., None])
        return F, f

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        return _mix_moments(self.w, self.loc, self.scale**2)

    def bracket(self) -> tuple[np.ndarray, np.ndarray]:
        h = _heavy(self.w)
        return (
            np.min(self.loc[h] - _BRACKET_SDS * self.scale[h], axis=0),
            np.max(self.loc[h] + _BRACKET_SDS * self.scale[h], axis=0),
        )

    def cdf_roundoff(self) -> np.ndarray:
        return np.full(self.loc.shape[1], 8 * _EPS)

    @property
    def kinks(self) -> tuple[float, ...]:
        return ()


@dataclass(frozen=True)
class TruncatedMixture:
    w: np.ndarray  # (n,)
    loc: np.ndarray  # (n, K)
    scale: np.ndarray  # (n, K)
    lower: float
    upper: float

    def cdf_pdf(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        args = (self.loc[..., None], self.scale[..., None], self.lower, self.upper)
        return _sum_nodes(self.w, tn_cdf(x[None], *args)), _sum_nodes(self.w, tn_pdf(x[None], *args))

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        return _mix_moments(self.w, *tn_moments(self.loc, self.scale, self.lower, self.upper))

    def bracket(self) -> tuple[np.ndarray, np.ndarray]:
        k = self.loc.shape[1]
        return np.full(k, self.lower), np.full(k, self.upper)

    def cdf_roundoff(self) -> np.ndarray:
        return np.full(self.loc.shape[1], 8 * _EPS)

    @property
    def kinks(self) -> tuple[float, ...]:
        """Where the density jumps (the truncation bounds)."""
        return (self.lower, self.upper)


@dataclass(frozen=True)
class ShiftedTruncatedMixture:
    """c + B mu + e with mu ~ normal(loc, scale) truncated to [lower, upper], e ~ normal(0, noise)."""

    w: np.ndarray  # (n,)
    c: np.ndarray  # (n, K)
    B: np.ndarray  # (n, K)
    noise: np.ndarray  # (n, K)
    loc: np.ndarray  # (n, 1)
    scale: np.ndarray  # (n, 1)
    lower: float
    upper: float

    def _parts(self):
        sd_u = np.sqrt((self.B * self.scale) ** 2 + self.noise**2)
        rho = self.B * self.scale / sd_u
        r = self.noise / sd_u
        alpha = (self.lower - self.loc) / self.scale
        beta = (self.upper - self.loc) / self.scale
        log_z = log_ndtr_diff(alpha, beta)
        return sd_u, rho, r, alpha, beta, log_z

    def cdf_pdf(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sd_u, rho, r, alpha, beta, log_z = (a[..., None] for a in self._parts())
        c, B = self.c[..., None], self.B[..., None]
        loc, scale = self.loc[..., None], self.scale[..., None]
        h = (x[None] - c - B * loc) / sd_u
        rr = np.where(r > 0, r, 1.0)
        F = bvn_rect(h, alpha, beta, rho, rr) * np.exp(-log_z)
        a_c, b_c = (alpha - rho * h) / rr, (beta - rho * h) / rr
        f = np.exp(-0.5 * h * h + log_ndtr_diff(a_c, b_c) - log_z) * _INV_SQRT_2PI / sd_u
        # no noise (tau = 0): theta = c + B mu exactly
        mu_x = (x[None] - c) / np.where(B > 0, B, 1.0)
        deg = r == 0
        if np.any(deg):
            F = np.where(deg, tn_cdf(mu_x, loc, scale, self.lower, self.upper), F)
            f = np.where(deg, tn_pdf(mu_x, loc, scale, self.lower, self.upper) / np.where(B > 0, B, 1.0), f)
        return _sum_nodes(self.w, F), _sum_nodes(self.w, f)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        m_mu, v_mu = tn_moments(self.loc, self.scale, self.lower, self.upper)
        return _mix_moments(self.w, self.c + self.B * m_mu, self.noise**2 + self.B**2 * v_mu)

    def bracket(self) -> tuple[np.ndarray, np.ndarray]:
        h = _heavy(self.w)
        c, B, e = self.c[h], self.B[h], self.noise[h]
        return (
            np.min(c + B * self.lower - _BRACKET_SDS * e, axis=0),
            np.max(c + B * self.upper + _BRACKET_SDS * e, axis=0),
        )

    def cdf_roundoff(self) -> np.ndarray:
        """Owen's-T rectangle probabilities are accurate to ~1e-16 absolute, divided by P(a <= mu <= b)."""
        _, _, _, _, _, log_z = self._parts()
        return self.w @ (8 * _EPS * np.exp(-log_z)) * np.ones(self.c.shape[1])

    @property
    def kinks(self) -> tuple[float, ...]:
        """Near tau = 0 theta is mu, whose density jumps at the bounds: the mixture's density all but
        jumps there."""
        return (self.lower, self.upper)


def solve_quantiles(
    mix: Mixture, p: np.ndarray, *, max_iter: int = 100, rtol: float = 1e-13
) -> tuple[np.ndarray, np.ndarray]:
    """x (K, L) with mixture CDF = p (L,), and a bound on |x - x_true| from the final CDF residual.

    Newton steps from the normal approximation, safeguarded by bisection inside a bracket that holds
    every component's bulk (widened until it brackets p).
    """
    p = np.asarray(p, float)
    lo, hi = mix.bracket()
    K, L = lo.size, p.size
    lo = np.broadcast_to(lo[:, None], (K, L)).copy()
    hi = np.broadcast_to(hi[:, None], (K, L)).copy()
    # The bracket holds every component that weighs > 1e-16 of the largest to 40 sds, so it brackets
    # any p in [1e-10, 1 - 1e-10]; beyond that, widen until F(lo) <= p <= F(hi).
    if np.min(p, initial=0.5) < 1e-10 or np.max(p, initial=0.5) > 1 - 1e-10:
        for _ in range(60):
            bad_lo, bad_hi = mix.cdf_pdf(lo)[0] > p, mix.cdf_pdf(hi)[0] < p
            if not (bad_lo.any() or bad_hi.any()):
                break
            width = hi - lo
            lo = np.where(bad_lo, lo - width, lo)
            hi = np.where(bad_hi, hi + width, hi)
    mean, var = mix.moments()
    with np.errstate(invalid="ignore"):
        x = mean[:, None] + np.sqrt(var)[:, None] * special.ndtri(p)[None, :]
    x = np.where(np.isfinite(x) & (x > lo) & (x < hi), x, 0.5 * (lo + hi))
    with np.errstate(invalid="ignore"):
        sd = np.sqrt(var)
    scale = np.where(np.isfinite(sd) & (sd > 0), sd, hi[:, 0] - lo[:, 0])[:, None]
    roundoff = mix.cdf_roundoff()[:, None]
    F, f = mix.cdf_pdf(x)
    for _ in range(max_iter):
        g = F - p
        lo = np.where(g <= 0, x, lo)
        hi = np.where(g > 0, x, hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_new = x - g / f
        bad = ~((x_new >= lo) & (x_new <= hi))  # NaN-safe: a step leaving the bracket bisects
        x_new = np.where(bad, 0.5 * (lo + hi), x_new)
        done = (np.abs(x_new - x) <= rtol * (np.abs(x) + scale)) | (np.abs(g) <= roundoff)
        x = x_new
        F, f = mix.cdf_pdf(x)
        if np.all(done):
            break
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.where(f > 0, (np.abs(F - p) + roundoff) / f, hi - lo)
    return x, np.minimum(err, hi - lo)


@dataclass(frozen=True)
class CdfTable:
    """A mixture's CDF tabulated for fast evaluation at many points.

    Exact F and dF/dt at knots in t, x = centre + scale sinh(t) (centre the median, scale the half
    inter-quartile range, so heavy tails take few knots), equally spaced between the 1e-12 and
    1 - 1e-12 quantiles plus the mixture's kinks (under a uniform mu prior theta's density all but
    jumps at the bounds); cubic Hermite interpolation in between (error O(dt^4) where smooth),
    measured against the exact CDF at every interval midpoint and kept as ``error``. Outside that
    range callers evaluate exactly.
    """

    centre: float
    scale: float
    t: np.ndarray
    F: np.ndarray
    dF: np.ndarray  # dF/dt
    error: float

    @property
    def x_range(self) -> tuple[float, float]:
        lo, hi = self.centre + self.scale * np.sinh(self.t[[0, -1]])
        return float(lo), float(hi)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = np.arcsinh((x - self.centre) / self.scale)
        i = np.clip(np.searchsorted(self.t, t, side="right") - 1, 0, self.t.size - 2)
        dt = self.t[i + 1] - self.t[i]
        s = np.clip((t - self.t[i]) / dt, 0.0, 1.0)
        s2, s3 = s * s, s * s * s
        F = (2 * s3 - 3 * s2 + 1) * self.F[i] + (s3 - 2 * s2 + s) * dt * self.dF[i]
        F += (-2 * s3 + 3 * s2) * self.F[i + 1] + (s3 - s2) * dt * self.dF[i + 1]
        return np.clip(F, self.F[i], self.F[i + 1])


#: tail probability beyond which a CdfTable hands over to exact evaluation
TABLE_TAIL = 1e-12
#: largest accepted interpolation error of a CdfTable, checked at every interval midpoint (where a
#: cubic Hermite interpolant's error peaks); 1e-9 in probability is 1e-7 sd in x, far inside the
#: 1e-4 goal on quantiles
TABLE_TOL = 1e-9


def build_table(mix: Mixture, size: int = 1025, max_size: int = 65537) -> CdfTable:
    """Tabulate a single mixture (K = 1), enlarging the table until the midpoint error is <= TABLE_TOL
    (by the h^4 law of cubic Hermite interpolation, with a margin; kinks converge slower and loop)."""
    q = solve_quantiles(mix, np.array([TABLE_TAIL, 0.25, 0.5, 0.75, 1 - TABLE_TAIL]))[0][0]
    centre = float(q[2])
    scale = float(max(0.5 * (q[3] - q[1]), 1e-300))
    t_lo, t_hi = np.arcsinh((q[[0, -1]] - centre) / scale)
    t_kinks = np.arcsinh((np.asarray(mix.kinks, float) - centre) / scale)
    t_kinks = t_kinks[(t_kinks > t_lo) & (t_kinks < t_hi)]
    while True:
        # knots at each kink and graded towards it (the density's singularity there is only
        # resolved by geometrically shrinking intervals)
        grade = (t_hi - t_lo) / size * np.ldexp(1.0, -np.arange(1, 16))
        near = (t_kinks[:, None] + np.concatenate([-grade, grade])[None, :]).ravel()
        near = near[(near > t_lo) & (near < t_hi)]
        t = np.union1d(np.linspace(t_lo, t_hi, size), np.concatenate([t_kinks, near]))
        x = centre + scale * np.sinh(t)
        F, f = mix.cdf_pdf(x[None, :])
        table = CdfTable(centre, scale, t, F[0], f[0] * scale * np.cosh(t), 0.0)
        t_mid = 0.5 * (t[:-1] + t[1:])
        x_mid = centre + scale * np.sinh(t_mid)
        err = float(np.max(np.abs(table(x_mid) - mix.cdf_pdf(x_mid[None, :])[0][0])))
        if err <= TABLE_TOL or size >= max_size:
            return CdfTable(centre, scale, t, table.F, table.dF, err)
        grow = max(1.5, 1.25 * (err / TABLE_TOL) ** 0.25)
        size = min(max_size, int(size * grow) + 1)
