"""The posterior of u = log tau on composite Gauss-Legendre panels.

The density of u is analytic and decays at both ends (like e^u towards tau = 0, like a power of tau or
faster in the tail), so the grid lives in u: a window [u_a, u_b] outside which the density, weighted by
tau^k for the highest finite moment k <= 2 above the mode, is below exp(-drop) times its maximum, cut
into equal panels of ``order`` Gauss-Legendre nodes each. Within a panel the density is the Legendre
interpolant through its nodes, integrated exactly, which gives the CDF at any point; quadrature over
all nodes gives every expectation. The panel count doubles until the tau summaries stop moving;
the grid with half the panels is kept for the error estimate.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from models.errors import UsageError

__all__ = ["GridOptions", "SinhMap", "TauGrid", "Window", "find_domain", "gauss_rule", "make_grid", "refine"]

LogDensity = Callable[[np.ndarray], np.ndarray]


#: the most panels a grid may be asked for: 2^16 panels of 8 nodes are 2^19 nodes, a few MB per array
#: and seconds of work; far beyond what convergence needs (tens to hundreds), so a larger request is a typo
MAX_PANELS = 2**16


@dataclass(frozen=True)
class GridOptions:
    """How the tau grid is built.

    panels: number of panels of the fine grid (even), or None to double from 4 until the relative
    change of the tau moments is below ``rtol`` and that of the tau quantiles below ``qtol``
    (absolute; a tenth of the 1e-4 goal). order: Gauss-Legendre nodes per panel. drop: the
    window keeps every u where the (moment-weighted) log density is within ``drop`` of its maximum,
    so the truncated mass is about exp(-drop) of the total. compress: let mixtures (mu, theta) use
    the smallest Gauss rule of the fine grid that reproduces it (large J: the posterior of tau is
    narrow and a handful of nodes suffice).
    """

    panels: int | None = None
    order: int = 8
    drop: float = 36.0
    rtol: float = 1e-10
    qtol: float = 1e-5
    max_panels: int = 4096
    compress: bool = True

    def __post_init__(self) -> None:
        if self.panels is not None and (
            isinstance(self.panels, bool) or not isinstance(self.panels, int)
            or not 2 <= self.panels <= MAX_PANELS or self.panels % 2
        ):
            raise UsageError(f"panels = {self.panels!r}: must be an even integer in [2, {MAX_PANELS}]")
        if not 2 <= self.order <= 40:
            raise UsageError(f"order = {self.order}: must be in [2, 40]")
        if not self.drop > 5:
            raise UsageError(f"drop = {self.drop}: must be > 5")


def _legendre(x: np.ndarray, n: int) -> np.ndarray:
    """P_0..P_n at x, stacked on a new last axis."""
    out = np.empty((*np.shape(x), n + 1))
    out[..., 0] = 1.0
    if n >= 1:
        out[..., 1] = x
    for k in range(1, n):
        out[..., k + 1] = ((2 * k + 1) * x * out[..., k] - k * out[..., k - 1]) / (k + 1)
    return out


def _pad(c: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n)
    out[: c.size] = c
    return out


@dataclass(frozen=True)
class SinhMap:
    """u = centre + scale * sinh(v): near the mode u moves with v at the posterior's own scale, in
    the tails exponentially faster, so the long e^u tail towards tau = 0 and the power-law tail
    take a few panels instead of most of them."""

    centre: float
    scale: float

    def to_v(self, u: np.ndarray) -> np.ndarray:
        return np.arcsinh((np.asarray(u, float) - self.centre) / self.scale)

    def to_u(self, v: np.ndarray) -> np.ndarray:
        return self.centre + self.scale * np.sinh(v)

    def du_dv(self, v: np.ndarray) -> np.ndarray:
        return self.scale * np.cosh(v)


@dataclass(frozen=True)
class TauGrid:
    """Normalised posterior of u = log tau on equal Gauss-Legendre panels in v (u = map.to_u(v)).

    The density interpolated on each panel is that of v, g(v) = p(u | y) du/dv.
    """

    map: SinhMap
    edges: np.ndarray  # (N + 1,) panel edges in v
    u: np.ndarray  # (N * order,) nodes in u, increasing
    weight: np.ndarray  # (N * order,) posterior probability carried by each node; sums to 1
    coef: np.ndarray  # (N, order) Legendre coefficients of the normalised density of v on each panel
    cum: np.ndarray  # (N + 1,) CDF at the edges
    log_norm: float  # log of the integral of exp(log density of u) over the window
    edge_density: tuple[float, float]  # normalised density of u at u_a and u_b (truncation diagnostics)

    @property
    def panels(self) -> int:
        return self.coef.shape[0]

    @property
    def order(self) -> int:
        return self.coef.shape[1]

    @property
    def width(self) -> float:
        return float(self.edges[1] - self.edges[0])

    @property
    def window(self) -> tuple[float, float]:
        """[u_a, u_b]: the window in u."""
        a, b = self.map.to_u(self.edges[[0, -1]])
        return float(a), float(b)

    def _locate(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(panel index, coordinate in [-1, 1]) of each v, clipped into the window."""
        v = np.clip(np.nan_to_num(v, nan=self.edges[0]), self.edges[0], self.edges[-1])
        k = np.clip(np.floor((v - self.edges[0]) / self.width).astype(np.int64), 0, self.panels - 1)
        x = np.clip(2.0 * (v - self.edges[k]) / self.width - 1.0, -1.0, 1.0)
        return k, x

    @functools.cached_property
    def _poly(self) -> tuple[np.ndarray, np.ndarray]:
        """Monomial coefficients in the panel coordinate x in [-1, 1], one row per power (lowest
        first), one column per panel: of the CDF increment from the panel's left edge, and of the
        density of v. Horner evaluation of these is what cdf, pdf and quantile cost per point."""
        m = self.order
        eye = np.eye(m)
        leg = np.polynomial.legendre
        to_cdf = np.stack([_pad(leg.leg2poly(leg.legint(e, lbnd=-1)), m + 1) for e in eye], axis=1)
        to_pdf = np.stack([_pad(leg.leg2poly(e), m) for e in eye], axis=1)
        half = 0.5 * self.width
        return half * (to_cdf @ self.coef.T), to_pdf @ self.coef.T

    def _panel_cdf_pdf(self, k: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(CDF increment within panel k up to x, density of v at x), by Horner."""
        a, b = self._poly
        G = a[-1][k]
        for row in a[-2::-1]:
            G = G * x + row[k]
        g = b[-1][k]
        for row in b[-2::-1]:
            g = g * x + row[k]
        return G, g

    def cdf(self, u: np.ndarray) -> np.ndarray:
        """P(log tau <= u)."""
        v = self.map.to_v(u)
        k, x = self._locate(v)
        out = np.clip(self.cum[k] + self._panel_cdf_pdf(k, x)[0], 0.0, 1.0)
        return np.where(v <= self.edges[0], 0.0, np.where(v >= self.edges[-1], 1.0, out))

    def pdf(self, u: np.ndarray) -> np.ndarray:
        """Density of log tau at u (the panel interpolant; 0 outside the window)."""
        v = self.map.to_v(u)
        k, x = self._locate(v)
        out = np.maximum(self._panel_cdf_pdf(k, x)[1], 0.0) / self.map.du_dv(np.clip(v, -700, 700))
        return np.where((v < self.edges[0]) | (v > self.edges[-1]), 0.0, out)

    @functools.cached_property
    def _inverse_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(F, v, dv/dF) on a table 4x denser than the nodes, for Hermite interpolation of v(F)."""
        v = np.linspace(self.edges[0], self.edges[-1], 4 * self.u.size + 1)
        k, x = self._locate(v)
        G, g = self._panel_cdf_pdf(k, x)
        F = np.clip(self.cum[k] + G, 0.0, 1.0)
        F[0], F[-1] = 0.0, 1.0
        keep = np.concatenate([[True], np.diff(F) > 0])  # flat stretches (zero density) carry no mass
        v, F, g = v[keep], F[keep], g[keep]
        with np.errstate(divide="ignore"):
            slope = 1.0 / np.maximum(g, 0.0)
        return F, v, slope

    def _inverse_guess(self, p: np.ndarray) -> np.ndarray:
        """Monotone cubic Hermite interpolation of v(F) through the table (slopes 1/density)."""
        F, v, slope = self._inverse_table
        t = np.clip(np.searchsorted(F, p, side="right") - 1, 0, F.size - 2)
        dF, dv = F[t + 1] - F[t], v[t + 1] - v[t]
        s = np.clip((p - F[t]) / dF, 0.0, 1.0)
        d0 = np.minimum(slope[t] * dF, 3.0 * dv)  # the Fritsch-Carlson bound keeps the cubic monotone
        d1 = np.minimum(slope[t + 1] * dF, 3.0 * dv)
        s2, s3 = s * s, s * s * s
        return (
            (2 * s3 - 3 * s2 + 1) * v[t]
            + (s3 - 2 * s2 + s) * d0
            + (-2 * s3 + 3 * s2) * v[t + 1]
            + (s3 - s2) * d1
        )

    def quantile(self, p: np.ndarray, *, max_iter: int = 60, xtol: float = 1e-14) -> np.ndarray:
        """u with P(log tau <= u) = p: a Hermite guess, then safeguarded Newton on the panel's CDF.

        ``max_iter`` bounds the Newton steps; the guess is good to ~1e-7, so each step squares the
        error and one reaches round-off (what the exact draws use).
        """
        p = np.clip(np.asarray(p, float), 0.0, 1.0)
        k = np.clip(np.searchsorted(self.cum, p, side="right") - 1, 0, self.panels - 1)
        target = p - self.cum[k]
        half = 0.5 * self.width
        lo, hi = np.full(p.shape, -1.0), np.full(p.shape, 1.0)
        x = np.clip((self._inverse_guess(p) - self.edges[k]) / half - 1.0, -1.0, 1.0)
        for _ in range(max_iter):
            G, dens = self._panel_cdf_pdf(k, x)
            g, dg = G - target, half * dens
            lo = np.where(g <= 0, x, lo)
            hi = np.where(g > 0, x, hi)
            with np.errstate(divide="ignore", invalid="ignore"):
                x_new = x - np.where(dg > 0, g / dg, np.inf)
            x_new = np.where((x_new >= lo) & (x_new <= hi), x_new, 0.5 * (lo + hi))
            done = np.abs(x_new - x) <= xtol
            x = x_new
            if np.all(done):
                break
        return self.map.to_u(self.edges[k] + half * (x + 1.0))

    def expect(self, values: np.ndarray) -> np.ndarray:
        """Posterior expectation of g(u) given its values at the nodes (node axis first)."""
        return np.tensordot(self.weight, values, axes=(0, 0))


def _gauss(order: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(order)


def make_grid(logf: LogDensity, lo: float, hi: float, panels: int, order: int, vmap: SinhMap) -> TauGrid:
    """Evaluate the log density on ``panels`` equal Gauss-Legendre panels in v over [lo, hi] (in u)
    and normalise."""
    x, w = _gauss(order)
    edges = np.linspace(float(vmap.to_v(lo)), float(vmap.to_v(hi)), panels + 1)
    half = 0.5 * (edges[1] - edges[0])
    v = (edges[:-1, None] + half * (x + 1.0)).ravel()
    u = vmap.to_u(v)
    end_vals = logf(np.array([lo, hi]))
    vals = logf(u) + np.log(vmap.du_dv(v))
    offset = float(np.max(vals))
    f = np.exp(vals - offset).reshape(panels, order)
    panel_mass = half * (f @ w)
    total = float(panel_mass.sum())
    if not (total > 0 and math.isfinite(total)):
        raise FloatingPointError("the posterior of tau has no mass on the grid")
    dens = f / total
    legendre_at_nodes = _legendre(x, order - 1)  # (order, order): [node, degree]
    coef = (dens * w) @ legendre_at_nodes * ((2 * np.arange(order) + 1) / 2.0)
    cum = np.concatenate([[0.0], np.cumsum(panel_mass / total)])
    cum[-1] = 1.0
    weight = (half * dens * w).ravel()
    edge_density = tuple(float(d) for d in np.exp(end_vals - offset) / total)
    return TauGrid(vmap, edges, u, weight, coef, cum, offset + math.log(total), edge_density)


@dataclass(frozen=True)
class Window:
    """Where the grid lives: [lo, hi] in u, the mode, and the posterior's scale in u there."""

    lo: float
    hi: float
    mode: float
    scale: float

    @property
    def map(self) -> SinhMap:
        return SinhMap(self.mode, self.scale)


def find_domain(
    logf: LogDensity, support: tuple[float, float], centre: float, k_upper: float, drop: float
) -> Window:
    """The window where the log density of u is within ``drop`` of its maximum.

    Above the mode the criterion is applied to log density + k_upper (u - mode), so that the
    tau^k-weighted integrands of the moments are also negligible outside the window. The search
    starts on a coarse grid around ``centre`` and extends it until the criterion fails at both ends
    (or the support ends); a second mode seen on the coarse grid is kept inside the window.
    """
    lo_s, hi_s = support
    step = 1.0
    a = max(lo_s, centre - 20.0)
    b = min(hi_s, centre + 20.0)
    us = np.linspace(a, b, max(3, int(math.ceil((b - a) / step)) + 1))
    vals = logf(us)
    for _ in range(100):
        i = int(np.argmax(vals))
        thr = vals[i] - drop
        env = vals + k_upper * np.maximum(us - us[i], 0.0)
        grow_lo = env[0] >= thr and us[0] > lo_s
        grow_hi = env[-1] >= thr and us[-1] < hi_s
        if not (grow_lo or grow_hi):
            break
        if max(abs(us[0]), abs(us[-1])) > 700:
            raise FloatingPointError("the posterior of tau does not decay within tau in [e^-700, e^700]")
        new = []
        if grow_lo:
            new.append(np.linspace(max(lo_s, us[0] - 20.0), us[0], 21)[:-1])
        if grow_hi:
            new.append(np.linspace(us[-1], min(hi_s, us[-1] + 20.0), 21)[1:])
        extra = np.unique(np.concatenate(new))
        us = np.concatenate([us, extra])
        vals = np.concatenate([vals, logf(extra)])
        order = np.argsort(us)
        us, vals = us[order], vals[order]
        keep = np.concatenate([[True], np.diff(us) > 0])
        us, vals = us[keep], vals[keep]
    i = int(np.argmax(vals))
    if not math.isfinite(vals[i]):
        raise FloatingPointError("the posterior density of tau is zero everywhere searched")
    mode, vmax = _refine_mode(logf, us, vals, i)
    us = np.append(us, mode)
    vals = np.append(vals, vmax)
    order = np.argsort(us, kind="stable")
    us, vals = us[order], vals[order]
    thr = vmax - drop
    env = vals + k_upper * np.maximum(us - mode, 0.0)
    above = np.flatnonzero(env >= thr)

    def g(t: float) -> float:
        v = float(logf(np.array([t]))[0]) + k_upper * max(t - mode, 0.0) - thr
        return max(v, -1000.0)

    first, last = above[0], above[-1]
    # the cut only sets the truncated mass (~exp(-drop)), so a loose tolerance does
    u_a = us[first] if first == 0 else optimize.brentq(g, us[first - 1], us[first], xtol=1e-3)
    u_b = us[last] if last == us.size - 1 else optimize.brentq(g, us[last], us[last + 1], xtol=1e-3)
    return Window(float(u_a), float(u_b), mode, _half_width(logf, mode, vmax, float(u_a), float(u_b)))


def _half_width(logf: LogDensity, mode: float, vmax: float, lo: float, hi: float) -> float:
    """Distance from the mode to where the log density has dropped by 1/2 (one sd for a normal),
    the smaller of the two sides; a side that reaches the window's end first counts as its length."""

    def g(t: float) -> float:
        return float(logf(np.array([t]))[0]) - (vmax - 0.5)

    sides = []
    for end in (lo, hi):
        if end == mode:
            continue
        # any positive scale gives a valid map; this one only needs to be about right
        sides.append(abs(optimize.brentq(g, mode, end, rtol=1e-3) - mode) if g(end) < 0 else abs(end - mode))
    return min(sides) if sides else max(hi - lo, 1e-12)


def _refine_mode(logf: LogDensity, us: np.ndarray, vals: np.ndarray, i: int) -> tuple[float, float]:
    lo, hi = us[max(i - 1, 0)], us[min(i + 1, us.size - 1)]
    if hi <= lo:
        return float(us[i]), float(vals[i])
    res = optimize.minimize_scalar(
        lambda t: -float(logf(np.array([t]))[0]), bounds=(lo, hi), method="bounded", options={"xatol": 1e-6}
    )
    if -res.fun > vals[i]:
        return float(res.x), float(-res.fun)
    return float(us[i]), float(vals[i])


def _tau_stats(grid: TauGrid, moments: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, scales) of the moment checks: log normaliser, mean and sd of log tau and, where
    finite (``moments`` = highest finite moment of tau, at most 2), mean and sd of tau."""
    m_u = grid.expect(grid.u)
    sd_u = math.sqrt(grid.expect((grid.u - m_u) ** 2))
    values, scales = [grid.log_norm, m_u, sd_u], [1.0, sd_u, sd_u]
    if moments >= 1:
        tau = np.exp(grid.u)
        m_t = grid.expect(tau)
        sd_t = math.sqrt(grid.expect((tau - m_t) ** 2))
        values.append(m_t)
        scales.append(sd_t if moments >= 2 else m_t)
        if moments >= 2:
            values.append(sd_t)
            scales.append(sd_t)
    return np.array(values), np.array(scales)


#: probabilities at which the quantiles of tau and log tau must settle (those of the summaries)
CHECK_LEVELS = np.array([0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975])


def _converged(a: TauGrid, b: TauGrid, moments: int, opts: GridOptions) -> bool:
    va, _ = _tau_stats(a, moments)
    vb, scale = _tau_stats(b, moments)
    if not np.all(np.abs(va - vb) <= opts.rtol * scale):
        return False
    ua, ub = a.quantile(CHECK_LEVELS), b.quantile(CHECK_LEVELS)
    return bool(np.all(np.abs(ua - ub) <= opts.qtol) and np.all(np.abs(np.exp(ua) - np.exp(ub)) <= opts.qtol))


def refine(
    logf: LogDensity, window: Window, opts: GridOptions, finite_moments: int
) -> tuple[TauGrid, TauGrid]:
    """(fine, coarse) grids over the window: coarse has half the panels of fine.

    With ``opts.panels`` None, the panel count doubles from 4 until, between fine and coarse, the
    log normaliser, mean and sd of log tau and (where finite) of tau change by less than
    ``opts.rtol`` relative to the sd, and the quantiles of tau and log tau by less than ``opts.qtol``.
    """

    def grid(n: int) -> TauGrid:
        return make_grid(logf, window.lo, window.hi, n, opts.order, window.map)

    if opts.panels is not None:
        return grid(opts.panels), grid(opts.panels // 2)
    coarse, n = grid(2), 4
    while True:
        fine = grid(n)
        if _converged(coarse, fine, finite_moments, opts) or 2 * n > opts.max_panels:
            return fine, coarse
        coarse, n = fine, 2 * n


def gauss_rule(x: np.ndarray, w: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-point Gauss rule of the discrete measure sum_i w_i delta(x_i) (nodes, weights).

    It integrates every polynomial of degree < 2n exactly against the fine rule, so for integrands
    that are smooth over the (possibly very concentrated) posterior it reproduces the fine grid with
    far fewer nodes. Lanczos with full reorthogonalisation builds the Jacobi matrix (Golub-Welsch).
    Returns the measure itself when it has no more than n points of positive weight.
    """
    keep = w > 0
    x, w = x[keep], w[keep]
    if n >= x.size:
        return x, w
    total = float(w.sum())
    centre = float(w @ x) / total
    spread = math.sqrt(float(w @ (x - centre) ** 2) / total)
    t = (x - centre) / spread
    Q = np.zeros((x.size, n))
    alpha, beta = np.zeros(n), np.zeros(n)
    Q[:, 0] = np.sqrt(w / total)
    m = n
    for j in range(n):
        v = t * Q[:, j]
        alpha[j] = Q[:, j] @ v
        for _ in range(2):  # full reorthogonalisation, twice is enough
            v -= Q[:, : j + 1] @ (Q[:, : j + 1].T @ v)
        if j == n - 1:
            break
        beta[j] = float(np.linalg.norm(v))
        if beta[j] <= 1e-12:
            m = j + 1
            break
        Q[:, j + 1] = v / beta[j]
    jacobi = np.diag(alpha[:m]) + np.diag(beta[: m - 1], 1) + np.diag(beta[: m - 1], -1)
    nodes, vecs = np.linalg.eigh(jacobi)
    return centre + spread * nodes, total * vecs[0] ** 2
