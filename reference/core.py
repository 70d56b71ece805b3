"""The analytic grid reference: ``posterior(data, prior)`` and the :class:`Reference` it returns.

Quantities are named ``mu``, ``tau``, ``log_tau`` and ``theta[1]`` ... ``theta[J]`` (1-based, as in the
JSON output). Every number is computed twice: on the fine tau grid and on one with half the panels
(and, where the mixtures for mu and theta run on a Gauss rule compressed from the fine grid, which
large J allows, also on the rule with twice the nodes). The differences, plus the tail mass outside
the grid's window and a 1e-13 relative round-off floor, are the reported error: absolute, in the
quantity's units, for the mean, the sd and each quantile.

With a ``fixed(value)`` tau prior the model is fully conjugate and there is no grid: mu and theta are
closed-form (truncated) normals, ``tau``/``log_tau`` are point masses marked ``fixed``.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, field

import numpy as np

from models.data import SchoolsData
from models.priors import Prior

from . import draws as _draws
from .grid import GridOptions, TauGrid, Window, find_domain, gauss_rule, refine
from .marginal import (
    MuGivenTau,
    PosteriorError,
    Schools,
    log_post_u,
    mu_given_tau,
    shrinkage,
    tail_info,
    tau_sums,
    tau_support,
)
from .mixture import (
    CdfTable,
    Mixture,
    NormalMixture,
    ShiftedTruncatedMixture,
    TruncatedMixture,
    build_table,
    solve_quantiles,
)

__all__ = ["LEVELS", "Summary", "SummaryError", "Reference", "posterior"]

#: the quantile levels of every summary
LEVELS: tuple[float, ...] = (0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975)
#: floor of every error estimate, relative to the quantity's scale: sums over ~10^3 nodes in double
#: precision carry ~1e-14 relative round-off, so a grid difference below this is not resolved
ROUNDOFF = 1e-13
#: evaluation points per chunk in mixture CDFs (bounds memory at nodes x chunk doubles)
_CHUNK = 2_000_000
_BLOCK_ARRAYS = ("mean", "sd", "q", "err_mean", "err_sd", "err_q")
_THETA = re.compile(r"^theta\[(\d+)\]$")
#: cdf() of mu or theta at more points than this goes through an interpolation table (see CdfTable)
_TABLE_MIN_POINTS = 4096


@dataclass(frozen=True)
class SummaryError:
    """Error estimates of a :class:`Summary`'s numbers (absolute, same units)."""

    mean: float
    sd: float
    quantiles: dict[str, float]

    def to_dict(self) -> dict:
        return {"mean": _num(self.mean), "sd": _num(self.sd), "quantiles": dict(self.quantiles)}


@dataclass(frozen=True)
class Summary:
    """Mean, sd and quantiles (keyed by the level as text, e.g. ``"0.025"``) of one quantity.

    ``mean`` is ``inf`` where the expectation diverges to +infinity, ``nan`` where it does not exist;
    ``sd`` is ``inf`` where the variance is infinite. ``fixed`` marks a point mass (a fixed tau).
    """

    name: str
    mean: float
    sd: float
    quantiles: dict[str, float]
    error: SummaryError
    fixed: bool = False
    note: str = ""

    def __getitem__(self, key: str):
        """Mapping-style access to the JSON fields: ``s["mean"]``, ``s["quantiles"]["0.5"]``, ..."""
        if key == "error":
            return self.error.to_dict()
        if key in ("mean", "sd", "quantiles", "fixed", "note"):
            return getattr(self, key)
        raise KeyError(key)

    def to_dict(self) -> dict:
        if self.fixed:
            return {"fixed": self.mean}
        out = {
            "mean": _num(self.mean),
            "sd": _num(self.sd),
            "error": self.error.to_dict(),
            "quantiles": dict(self.quantiles),
        }
        if self.note:
            out["note"] = self.note
        return out


def _num(x: float) -> float | None:
    """JSON has no inf/nan: non-finite moments are written as null (with a note)."""
    return float(x) if math.isfinite(x) else None


def _key(q: float) -> str:
    return repr(float(q))


@dataclass(frozen=True)
class _Level:
    """The tau nodes with their posterior weights, and mu | tau, y at each node."""

    tau: np.ndarray
    w: np.ndarray
    mu: MuGivenTau


def _level(data: Schools, prior: Prior, tau: np.ndarray, w: np.ndarray) -> _Level:
    return _Level(tau, w, mu_given_tau(prior, tau_sums(data, tau, likelihood=False)))


#: a uniform mu prior whose bounds lie beyond this many sds of mu | tau at every node truncates less
#: than Phi(-9) ~ 1e-19 of the mass, below double precision: the mixtures are then plain normal ones
#: (much cheaper than bivariate-normal rectangles; the usual case for large J)
_NO_TRUNCATION_SDS = 9.0


def _truncates(mu: MuGivenTau) -> bool:
    if not mu.truncated:
        return False
    lo = (mu.loc - mu.lower) / mu.scale
    hi = (mu.upper - mu.loc) / mu.scale
    return bool(np.any(lo < _NO_TRUNCATION_SDS) or np.any(hi < _NO_TRUNCATION_SDS))


def _mu_mixture(rule: _Level) -> Mixture:
    mu = rule.mu
    loc, scale = mu.loc[:, None], mu.scale[:, None]
    if _truncates(mu):
        return TruncatedMixture(rule.w, loc, scale, mu.lower, mu.upper)
    return NormalMixture(rule.w, loc, scale)


def _theta_mixture(data: Schools, rule: _Level, idx: np.ndarray) -> Mixture:
    """theta_j | y for the schools ``idx``: mixtures over the rule's tau nodes."""
    y, sigma = data.y[idx], data.sigma[idx]
    B, one_minus_B = shrinkage(sigma, rule.tau)
    c = one_minus_B * y
    noise = np.sqrt(one_minus_B) * sigma
    mu = rule.mu
    loc, scale = mu.loc[:, None], mu.scale[:, None]
    if _truncates(mu):
        return ShiftedTruncatedMixture(rule.w, c, B, noise, loc, scale, mu.lower, mu.upper)
    return NormalMixture(rule.w, c + B * loc, np.sqrt(noise**2 + (B * scale) ** 2))


@dataclass(frozen=True)
class _Rules:
    """Node rules for the mu and theta mixtures.

    ``value`` gives the reported numbers; ``grid`` is the same construction on the coarse grid and
    ``compress`` (when the fine grid is compressed to a Gauss rule) the rule with twice the nodes:
    their differences from ``value`` are the error estimates.
    """

    value: _Level
    grid: _Level
    compress: _Level | None
    nodes: int


#: a compressed rule is accepted when mixture CDFs at probe points and moments match the full fine
#: grid this closely (absolute on CDFs, relative to the sd on moments); its actual error is then
#: measured against the rule with twice the nodes and reported, so this only trades speed for accuracy
COMPRESS_TOL = 1e-9
#: largest compressed rule tried (its check rule has twice the nodes)
_COMPRESS_MAX_NODES = 64
_PROBE_SCHOOLS = 16
#: below this many (node, school) pairs the mixtures are cheap on the full grid: no compression
_COMPRESS_MIN_WORK = 200_000


def _probe_schools(data: Schools) -> np.ndarray:
    """A few schools at the extremes of y/sigma and sigma: those whose mixtures vary most with tau."""
    if data.J <= 4 * _PROBE_SCHOOLS:
        return np.arange(data.J)
    y, s = data.y, data.sigma
    z = (y - np.median(y)) / s
    k = _PROBE_SCHOOLS
    picks = [np.argsort(z)[:k], np.argsort(z)[-k:], np.argsort(s)[:k], np.argsort(s)[-k:]]
    return np.unique(np.concatenate(picks))


def _mixtures_agree(data: Schools, a: _Level, b: _Level, idx: np.ndarray) -> bool:
    for mix_a, mix_b in (
        (_mu_mixture(a), _mu_mixture(b)),
        (_theta_mixture(data, a, idx), _theta_mixture(data, b, idx)),
    ):
        m_b, v_b = mix_b.moments()
        m_a, v_a = mix_a.moments()
        sd = np.sqrt(v_b)
        if not np.all(np.isfinite(sd)):
            continue  # heavy-tailed mu: moments are not a criterion, the CDFs below are
        x = m_b[:, None] + sd[:, None] * np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
        gap = np.abs(mix_a.cdf_pdf(x)[0] - mix_b.cdf_pdf(x)[0]).max()
        if (
            gap > COMPRESS_TOL
            or np.max(np.abs(m_a - m_b) / sd) > COMPRESS_TOL
            or np.max(np.abs(np.sqrt(v_a) - sd) / sd) > COMPRESS_TOL
        ):
            return False
    return True


def _rules(data: Schools, prior: Prior, fine: TauGrid, coarse: TauGrid, compress: bool) -> _Rules:
    """Mixture rules: the fine grid, or its smallest Gauss compression that reproduces it."""
    full = _level(data, prior, np.exp(fine.u), fine.weight)
    coarse_level = _level(data, prior, np.exp(coarse.u), coarse.weight)
    if compress and data.J * fine.u.size >= _COMPRESS_MIN_WORK:
        idx = _probe_schools(data)
        n = 8
        while n <= _COMPRESS_MAX_NODES and 4 * n <= fine.u.size:
            value = _level(data, prior, *_exp_nodes(gauss_rule(fine.u, fine.weight, n)))
            if _mixtures_agree(data, value, full, idx):
                return _Rules(
                    value,
                    _level(data, prior, *_exp_nodes(gauss_rule(coarse.u, coarse.weight, n))),
                    _level(data, prior, *_exp_nodes(gauss_rule(fine.u, fine.weight, 2 * n))),
                    n,
                )
            n *= 2
    return _Rules(full, coarse_level, None, fine.u.size)


def _exp_nodes(rule: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.exp(rule[0]), rule[1]


@dataclass(frozen=True)
class GridInfo:
    """How the grid was made (for provenance)."""

    panels: int
    order: int
    coarse_panels: int
    window: Window
    truncated_mass: float
    mixture_nodes: int
    options: GridOptions

    @property
    def u_window(self) -> tuple[float, float]:
        return (self.window.lo, self.window.hi)

    def to_dict(self) -> dict:
        w = self.window
        return {
            "variable": f"v, with log tau = {w.mode:.6g} + {w.scale:.6g} sinh(v) (mode and half-width of log tau)",
            "rule": "composite Gauss-Legendre, equal panels in v",
            "panels": self.panels,
            "nodes_per_panel": self.order,
            "nodes": self.panels * self.order,
            "error_from": f"difference to {self.coarse_panels} panels",
            "log_tau_window": [w.lo, w.hi],
            "tau_window": [math.exp(w.lo), math.exp(w.hi)],
            "mode_log_tau": w.mode,
            "truncated_mass": self.truncated_mass,
            "mixture_nodes": self.mixture_nodes,
            "mixture_rule": (
                "the fine grid"
                if self.mixture_nodes == self.panels * self.order
                else f"{self.mixture_nodes}-point Gauss rule of the fine grid (error: vs {2 * self.mixture_nodes} points)"
            ),
            "drop": self.options.drop,
            "rtol": self.options.rtol,
            "qtol": self.options.qtol,
        }


@dataclass(frozen=True)
class _Block:
    """Summaries of K mixtures at once (mu, or a set of schools), as arrays."""

    mean: np.ndarray
    sd: np.ndarray
    q: np.ndarray  # (K, levels)
    err_mean: np.ndarray
    err_sd: np.ndarray
    err_q: np.ndarray  # (K, levels)
    note: str = ""

    def summary(self, i: int, name: str) -> Summary:
        keys = [_key(v) for v in LEVELS]
        return Summary(
            name,
            float(self.mean[i]),
            float(self.sd[i]),
            dict(zip(keys, self.q[i].tolist())),
            SummaryError(
                float(self.err_mean[i]), float(self.err_sd[i]), dict(zip(keys, self.err_q[i].tolist()))
            ),
            note=self.note,
        )


@dataclass(eq=False)
class Reference:
    """The exact posterior of the eight-schools model for one data set and prior.

    Build with :func:`posterior`. Offers ``summary``, ``cdf``, ``pdf``, ``quantile`` (vectorised)
    and exact independent ``draws``.
    """

    data: SchoolsData
    prior: Prior
    fine: TauGrid | None
    coarse: TauGrid | None
    grid_info: GridInfo | None
    schools: Schools = field(repr=False)
    _rules: _Rules = field(repr=False)
    _summaries: dict[str, Summary] = field(default_factory=dict, repr=False)
    _theta: _Block | None = field(default=None, repr=False)
    _tables: dict[str, CdfTable] = field(default_factory=dict, repr=False)

    # --- names -------------------------------------------------------------------------------

    @property
    def fixed_tau(self) -> float | None:
        return self.prior.tau["value"] if self.prior.tau_fixed else None

    @property
    def names(self) -> tuple[str, ...]:
        return ("mu", "tau", "log_tau", *(f"theta[{j + 1}]" for j in range(self.data.J)))

    def _school(self, name: str) -> int:
        m = _THETA.match(name)
        if m is None:
            raise KeyError(
                f"quantity = {name!r}: expected mu, tau, log_tau or theta[1] .. theta[{self.data.J}]"
            )
        j = int(m.group(1))
        if not 1 <= j <= self.data.J:
            raise KeyError(f"quantity = {name!r}: school index must be in 1 .. {self.data.J}")
        return j - 1

    # --- mixtures ----------------------------------------------------------------------------

    def _mixture(self, name: str, rule: _Level) -> Mixture:
        if name == "mu":
            return _mu_mixture(rule)
        return _theta_mixture(self.schools, rule, np.array([self._school(name)]))

    # --- moments that may not exist ----------------------------------------------------------

    def _moment_status(self, name: str) -> tuple[bool, bool, str]:
        """(mean exists, variance finite, note) for mu/tau: heavy tails under flat tau priors."""
        tail = tail_info(self.data, self.prior)
        if name == "tau" or (name == "mu" and self.prior.mu.family == "flat"):
            m1, m2 = tail.tau_moment_finite(1), tail.tau_moment_finite(2)
            if m1 and m2:
                return True, True, ""
            why = f"p(tau | y) ~ tau^-{tail.power:g} as tau -> infinity"
            what = "mean and variance are" if not m1 else "variance is"
            return m1, m2, f"{what} infinite: {why}"
        return True, True, ""

    # --- summaries ---------------------------------------------------------------------------

    def summary(self, name: str) -> Summary:
        """Mean, sd, quantiles at :data:`LEVELS` and their error estimates for one quantity."""
        if name in self._summaries:
            return self._summaries[name]
        if name in ("tau", "log_tau"):
            out = self._tau_summary(name)
        elif name == "mu":
            out = self._mixture_block(None).summary(0, "mu")
        else:
            j = self._school(name)
            if self._theta is not None:
                return self._theta.summary(j, name)
            out = self._mixture_block(np.array([j])).summary(0, name)
        self._summaries[name] = out
        return out

    def theta_block(self) -> _Block:
        """All J theta summaries as arrays (vectorised over schools, in chunks)."""
        if self._theta is None:
            step = max(1, _CHUNK // (self._rules.value.tau.size * len(LEVELS)))
            idx = np.arange(self.data.J)
            blocks = [self._mixture_block(idx[i : i + step]) for i in range(0, idx.size, step)]
            self._theta = _Block(*(np.concatenate([getattr(b, f) for b in blocks]) for f in _BLOCK_ARRAYS))
        return self._theta

    def summaries(self) -> dict[str, Summary]:
        """Every quantity's summary; the J thetas are computed together, vectorised."""
        self.theta_block()
        return {name: self.summary(name) for name in self.names}

    def _tau_summary(self, name: str) -> Summary:
        levels = {_key(q): q for q in LEVELS}
        if self.fixed_tau is not None:
            v = (
                self.fixed_tau
                if name == "tau"
                else (math.log(self.fixed_tau) if self.fixed_tau > 0 else -math.inf)
            )
            zero = {k: 0.0 for k in levels}
            return Summary(name, v, 0.0, {k: v for k in levels}, SummaryError(0.0, 0.0, zero), fixed=True)
        assert self.fine is not None and self.coarse is not None and self.grid_info is not None
        to_x = np.exp if name == "tau" else (lambda u: u)
        mean_ok, var_ok, note = self._moment_status(name) if name == "tau" else (True, True, "")
        stats = []
        for grid in (self.fine, self.coarse):
            x = to_x(grid.u)
            mean = grid.expect(x) if mean_ok else math.inf
            sd = math.sqrt(grid.expect((x - mean) ** 2)) if var_ok else math.inf
            q = to_x(grid.quantile(np.array(LEVELS)))
            stats.append((mean, sd, q))
        (mean, sd, q), (mean_c, sd_c, q_c) = stats
        scale = sd if math.isfinite(sd) else float(q[-1] - q[0])
        lost = self.grid_info.truncated_mass
        err_mean = abs(mean - mean_c) + (ROUNDOFF + lost) * (abs(mean) + scale) if mean_ok else math.nan
        err_sd = abs(sd - sd_c) + (ROUNDOFF + lost) * scale if var_ok else math.nan
        dens = self.pdf(name, q)
        err_q = np.abs(q - q_c) + ROUNDOFF * scale + lost / np.maximum(dens, 1e-300)
        return Summary(
            name,
            float(mean),
            float(sd),
            {k: float(v) for k, v in zip(levels, q)},
            SummaryError(float(err_mean), float(err_sd), {k: float(v) for k, v in zip(levels, err_q)}),
            note=note,
        )

    def _mixture_block(self, idx: np.ndarray | None) -> _Block:
        """Summaries of mu (idx None) or of the schools idx, with their error estimates."""
        rules = [self._rules.value, self._rules.grid] + (
            [self._rules.compress] if self._rules.compress else []
        )
        if idx is None:
            mixes = [_mu_mixture(r) for r in rules]
            mean_ok, var_ok, note = self._moment_status("mu")
        else:
            mixes = [_theta_mixture(self.schools, r, idx) for r in rules]
            mean_ok, var_ok, note = True, True, ""
        p = np.array(LEVELS)
        mix, checks = mixes[0], mixes[1:]
        mean, var = mix.moments()
        sd = np.sqrt(var)
        q, q_solver_err = solve_quantiles(mix, p)
        _, f = mix.cdf_pdf(q)
        lost = self.grid_info.truncated_mass if self.grid_info else 0.0
        scale = np.where(np.isfinite(sd), sd, q[:, -1] - q[:, 0]) if var_ok else q[:, -1] - q[:, 0]
        err_mean = (ROUNDOFF + lost) * (np.abs(mean) + scale)
        err_sd = (ROUNDOFF + lost) * scale
        cdf_gap = np.full(q.shape, lost)
        for check in checks:
            mean_c, var_c = check.moments()
            err_mean = err_mean + np.abs(mean - mean_c)
            err_sd = err_sd + np.abs(sd - np.sqrt(var_c))
            cdf_gap = cdf_gap + np.abs(check.cdf_pdf(q)[0] - p)
        err_q = cdf_gap / np.maximum(f, 1e-300) + q_solver_err + ROUNDOFF * scale[:, None]
        if not mean_ok:
            mean, err_mean = np.full_like(mean, np.nan), np.full_like(mean, np.nan)
        if not var_ok:
            sd, err_sd = np.full_like(sd, np.inf), np.full_like(sd, np.nan)
        return _Block(mean, sd, q, err_mean, err_sd, err_q, note)

    # --- distribution functions --------------------------------------------------------------

    def cdf(self, name: str, x) -> np.ndarray:
        """P(quantity <= x), vectorised over x (any shape)."""
        return self._dist(name, x, which=0)

    def pdf(self, name: str, x) -> np.ndarray:
        """Posterior density of the quantity at x, vectorised (0 for a fixed tau, which has none)."""
        return self._dist(name, x, which=1)

    def _dist(self, name: str, x, which: int) -> np.ndarray:
        x = np.asarray(x, float)
        if name in ("tau", "log_tau"):
            return self._tau_dist(name, x, which)
        mix = self._mixture(name, self._rules.value)
        flat = x.ravel()
        if which == 0 and (flat.size > _TABLE_MIN_POINTS or name in self._tables):
            return self._tabulated_cdf(name, mix, flat).reshape(x.shape)
        return self._exact(mix, flat, which).reshape(x.shape)

    @staticmethod
    def _exact(mix: Mixture, flat: np.ndarray, which: int) -> np.ndarray:
        out = np.empty_like(flat)
        step = max(1, _CHUNK // mix.w.size)
        for i in range(0, flat.size, step):
            out[i : i + step] = mix.cdf_pdf(flat[None, i : i + step])[which][0]
        return out

    def _tabulated_cdf(self, name: str, mix: Mixture, flat: np.ndarray) -> np.ndarray:
        """CDF by the quantity's interpolation table (built on first use), exact outside its range."""
        if name not in self._tables:
            self._tables[name] = build_table(mix)
        table = self._tables[name]
        lo, hi = table.x_range
        inside = (flat >= lo) & (flat <= hi)
        out = np.empty_like(flat)
        out[inside] = table(flat[inside])
        if not inside.all():
            out[~inside] = self._exact(mix, flat[~inside], 0)
        return out

    def cdf_table_error(self, name: str) -> float:
        """The measured interpolation error of ``name``'s CDF table (0 for tau, log_tau)."""
        if name in ("tau", "log_tau"):
            return 0.0
        if name not in self._tables:
            self._tables[name] = build_table(self._mixture(name, self._rules.value))
        return self._tables[name].error

    def _tau_dist(self, name: str, x: np.ndarray, which: int) -> np.ndarray:
        if self.fixed_tau is not None:
            v = (
                self.fixed_tau
                if name == "tau"
                else (math.log(self.fixed_tau) if self.fixed_tau > 0 else -math.inf)
            )
            return (x >= v).astype(float) if which == 0 else np.zeros_like(x)
        assert self.fine is not None
        if name == "log_tau":
            return self.fine.cdf(x) if which == 0 else self.fine.pdf(x)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.nan_to_num(np.log(np.where(x > 0, x, np.nan)), nan=-np.inf)
        if which == 0:
            return np.where(x > 0, self.fine.cdf(u), 0.0)
        dens = np.where(x > 0, self.fine.pdf(u) / np.where(x > 0, x, 1.0), 0.0)
        if self._tau_density_positive_at_zero():
            # below the window (tau < ~1e-15 sd) p(tau | y) is p(0 | y) to O(tau^2): extend it flat
            u_a = self.fine.window[0]
            at_end = self.fine.edge_density[0] / math.exp(u_a)  # exact, not the panel interpolant
            dens = np.where((x >= 0) & (u < u_a), at_end, dens)
        return dens

    def _tau_density_positive_at_zero(self) -> bool:
        tau = self.prior.tau
        return tau.family in ("flat", "half_cauchy", "half_normal") or (
            tau.family == "uniform" and tau["lower"] == 0
        )

    def quantile(self, name: str, q) -> np.ndarray:
        """Inverse CDF at probabilities q, vectorised (any shape, values in (0, 1))."""
        q = np.asarray(q, float)
        if np.any((q < 0) | (q > 1) | np.isnan(q)):
            raise ValueError("q: probabilities must lie in [0, 1]")
        if name in ("tau", "log_tau"):
            if self.fixed_tau is not None:
                v = (
                    self.fixed_tau
                    if name == "tau"
                    else math.log(self.fixed_tau)
                    if self.fixed_tau
                    else -math.inf
                )
                return np.full(q.shape, v)
            u = self.fine.quantile(q.ravel()).reshape(q.shape)
            return np.exp(u) if name == "tau" else u
        mix = self._mixture(name, self._rules.value)
        flat = q.ravel()
        out = np.empty_like(flat)
        step = max(1, _CHUNK // mix.w.size)
        for i in range(0, flat.size, step):
            out[i : i + step] = solve_quantiles(mix, flat[i : i + step])[0][0]
        return out.reshape(q.shape)

    # --- draws and output --------------------------------------------------------------------

    def draws(self, n: int, seed: int | None = None) -> dict[str, np.ndarray]:
        """n exact independent posterior draws: {"mu": (n,), "tau": (n,), "theta": (n, J)}."""
        return _draws.exact_draws(self, n, np.random.default_rng(seed))

    def to_dict(self) -> dict:
        """The summary object: keys mu, tau, log_tau, theta[1] .. theta[J] (see Summary.to_dict).

        With a fixed tau prior, ``tau`` is ``{"fixed": value}`` and ``log_tau`` is omitted.
        """
        out = {"mu": self.summary("mu").to_dict(), "tau": self.summary("tau").to_dict()}
        if self.fixed_tau is None:
            out["log_tau"] = self.summary("log_tau").to_dict()
        block = self.theta_block()
        keys = [_key(v) for v in LEVELS]
        q, err_q = block.q.tolist(), block.err_q.tolist()
        for j, (m, sd, em, es) in enumerate(
            zip(block.mean.tolist(), block.sd.tolist(), block.err_mean.tolist(), block.err_sd.tolist())
        ):
            out[f"theta[{j + 1}]"] = {
                "mean": m,
                "sd": sd,
                "error": {"mean": em, "sd": es, "quantiles": dict(zip(keys, err_q[j]))},
                "quantiles": dict(zip(keys, q[j])),
            }
        return out

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    def max_error(self) -> dict[str, float]:
        """Largest error estimate over all quantities: relative for means/sds, absolute for quantiles."""
        b = self.theta_block()
        rel_mean = float(np.max(b.err_mean / (np.abs(b.mean) + b.sd)))
        rel_sd = float(np.max(b.err_sd / b.sd))
        abs_q = float(np.max(b.err_q))
        for name in ("mu", "tau", "log_tau"):
            s = self.summary(name)
            if s.fixed:
                continue
            if math.isfinite(s.mean) and math.isfinite(s.sd) and s.sd > 0:
                rel_mean = max(rel_mean, s.error.mean / (abs(s.mean) + s.sd))
                rel_sd = max(rel_sd, s.error.sd / s.sd)
            abs_q = max(abs_q, *s.error.quantiles.values())
        return {"mean_relative": rel_mean, "sd_relative": rel_sd, "quantile_absolute": abs_q}


def posterior(data: SchoolsData, prior: Prior, **grid_opts) -> Reference:
    """The reference posterior for ``data`` and ``prior``; ``grid_opts`` are :class:`GridOptions` fields.

    Results are cached on (data, prior, options): the objects are immutable and hashable.
    """
    return _posterior(data, prior, GridOptions(**grid_opts))


@functools.lru_cache(maxsize=16)
def _posterior(data: SchoolsData, prior: Prior, opts: GridOptions) -> Reference:
    schools = Schools.of(data)
    if prior.tau_fixed:
        level = _level(schools, prior, np.array([prior.tau["value"]]), np.ones(1))
        return Reference(data, prior, None, None, None, schools, _Rules(level, level, None, 1))
    tail = tail_info(data, prior)
    if not tail.proper:
        raise PosteriorError(
            f"prior = {prior}: the posterior is improper for J = {data.J} "
            f"(p(tau | y) ~ tau^-{tail.power:g} as tau -> infinity); use a proper tau prior or more schools"
        )
    k = 2 if tail.tau_moment_finite(2) else (1 if tail.tau_moment_finite(1) else 0)
    support = tau_support(prior.tau)

    def logf(u: np.ndarray) -> np.ndarray:
        return log_post_u(schools, prior, u)

    centre = float(np.clip(math.log(float(np.median(schools.sigma))), *support))
    window = find_domain(logf, support, centre, k, opts.drop)
    fine, coarse = refine(logf, window, opts, k)
    lost = (fine.edge_density[0] if math.isinf(support[0]) else 0.0) + (
        fine.edge_density[1] if math.isinf(support[1]) else 0.0
    )
    rules = _rules(schools, prior, fine, coarse, opts.compress)
    info = GridInfo(fine.panels, fine.order, coarse.panels, window, lost, rules.nodes, opts)
    return Reference(data, prior, fine, coarse, info, schools, rules)
