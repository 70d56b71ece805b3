"""Node rules for the mixtures of mu and theta_j over the tau nodes, and how the grid was made.

A :class:`Level` is a set of tau nodes with their posterior weights and mu | tau, y at each node;
:func:`mu_mixture` and :func:`theta_mixture` turn one into the mixtures ``reference.mixture``
evaluates. :func:`make_rules` picks the rule whose numbers are reported (the fine grid, or for large J
the smallest Gauss rule compressed from it that reproduces it) and the rules whose differences from
it are the error estimates. :class:`GridInfo` records all of it for provenance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.priors import Prior

from .grid import GridOptions, TauGrid, Window, gauss_rule
from .marginal import MuGivenTau, Schools, mu_given_tau, shrinkage, tau_sums
from .mixture import Mixture, NormalMixture, ShiftedTruncatedMixture, TruncatedMixture

__all__ = ["Level", "Rules", "GridInfo", "level", "mu_mixture", "theta_mixture", "make_rules", "fixed_rules",
           "COMPRESS_TOL"]


@dataclass(frozen=True)
class Level:
    """The tau nodes with their posterior weights, and mu | tau, y at each node."""

    tau: np.ndarray
    w: np.ndarray
    mu: MuGivenTau


def level(data: Schools, prior: Prior, tau: np.ndarray, w: np.ndarray) -> Level:
    return Level(tau, w, mu_given_tau(prior, tau_sums(data, tau, likelihood=False)))


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


def mu_mixture(rule: Level) -> Mixture:
    mu = rule.mu
    loc, scale = mu.loc[:, None], mu.scale[:, None]
    if _truncates(mu):
        return TruncatedMixture(rule.w, loc, scale, mu.lower, mu.upper)
    return NormalMixture(rule.w, loc, scale)


def theta_mixture(data: Schools, rule: Level, idx: np.ndarray) -> Mixture:
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
class Rules:
    """Node rules for the mu and theta mixtures.

    ``value`` gives the reported numbers; ``grid`` is the same construction on the coarse grid and
    ``compress`` (when the fine grid is compressed to a Gauss rule) the rule with twice the nodes:
    their differences from ``value`` are the error estimates.
    """

    value: Level
    grid: Level
    compress: Level | None
    nodes: int

    @property
    def checks(self) -> list[Level]:
        """The rules whose differences from ``value`` are the error estimates."""
        return [self.grid] + ([self.compress] if self.compress else [])


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


def _mixtures_agree(data: Schools, a: Level, b: Level, idx: np.ndarray) -> bool:
    for mix_a, mix_b in (
        (mu_mixture(a), mu_mixture(b)),
        (theta_mixture(data, a, idx), theta_mixture(data, b, idx)),
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


def make_rules(data: Schools, prior: Prior, fine: TauGrid, coarse: TauGrid, compress: bool) -> Rules:
    """Mixture rules: the fine grid, or its smallest Gauss compression that reproduces it."""
    full = level(data, prior, np.exp(fine.u), fine.weight)
    coarse_level = level(data, prior, np.exp(coarse.u), coarse.weight)
    if compress and data.J * fine.u.size >= _COMPRESS_MIN_WORK:
        idx = _probe_schools(data)
        n = 8
        while n <= _COMPRESS_MAX_NODES and 4 * n <= fine.u.size:
            value = level(data, prior, *_exp_nodes(gauss_rule(fine.u, fine.weight, n)))
            if _mixtures_agree(data, value, full, idx):
                return Rules(
                    value,
                    level(data, prior, *_exp_nodes(gauss_rule(coarse.u, coarse.weight, n))),
                    level(data, prior, *_exp_nodes(gauss_rule(fine.u, fine.weight, 2 * n))),
                    n,
                )
            n *= 2
    return Rules(full, coarse_level, None, fine.u.size)


def fixed_rules(data: Schools, prior: Prior) -> Rules:
    """A fixed tau: one node of weight 1, nothing to compare it with (the closed form is exact)."""
    one = level(data, prior, np.array([prior.tau["value"]]), np.ones(1))
    return Rules(one, one, None, 1)


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
