"""The model's algebra: p(tau | y) with mu integrated out in closed form, and the conditionals.

Given tau, theta integrates out: y_j | mu, tau ~ normal(mu, sigma_j^2 + tau^2). With weights
w_j = 1 / (sigma_j^2 + tau^2), W = sum w_j and mu_hat = sum w_j y_j / W (BDA3 eq. 5.20),

    sum_j w_j (y_j - mu)^2 = W (mu - mu_hat)^2 + Q,   Q = sum_j w_j (y_j - mu_hat)^2,

so the mu integral is Gaussian: for a flat prior sqrt(2 pi / W) (BDA3 5.21), for normal(m0, s0) a
conjugate update, for uniform(a, b) the same Gaussian truncated to [a, b]. The result is
p(tau | y), known up to a constant, times the tau prior. theta_j | mu, tau, y is normal (BDA3 5.17).

Everything is written for u = log tau, the variable the grid lives in: ``log_post_u`` includes the
Jacobian tau of the change of variable.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from models.data import SchoolsData
from models.errors import UsageError
from models.priors import Dist, Prior

from ._special import log_ndtr_diff, tn_moments

__all__ = [
    "PosteriorError",
    "MuGivenTau",
    "Schools",
    "TailInfo",
    "log_tau_prior",
    "tau_support",
    "tail_info",
    "tau_sums",
    "mu_given_tau",
    "log_post_u",
    "shrinkage",
    "theta_given_tau",
]

#: at most this many (tau, school) pairs are held in memory at once
_CHUNK = 4_000_000


class PosteriorError(UsageError):
    """The reference cannot be computed for this data and prior (e.g. an improper posterior): a
    problem with the input, so every command exits 2 on it."""


@dataclass(frozen=True, eq=False)
class Schools:
    """The data as arrays, made once per posterior (SchoolsData converts its tuples on every access)."""

    y: np.ndarray
    sigma: np.ndarray

    @classmethod
    def of(cls, data: SchoolsData) -> Schools:
        return cls(data.y_array, data.sigma_array)

    @property
    def J(self) -> int:
        return self.y.size

    @functools.cached_property
    def s2(self) -> np.ndarray:
        return self.sigma**2

    @functools.cached_property
    def centre(self) -> float:
        """Precision-weighted mean of y: sums are taken about it, so Q has no cancellation."""
        return float(np.sum(self.y / self.s2) / np.sum(1.0 / self.s2))


@dataclass(frozen=True)
class MuGivenTau:
    """mu | tau, y: normal(loc, scale) truncated to [lower, upper]; infinite bounds mean no truncation."""

    loc: np.ndarray
    scale: np.ndarray
    lower: float = -math.inf
    upper: float = math.inf

    @property
    def truncated(self) -> bool:
        return math.isfinite(self.lower) or math.isfinite(self.upper)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of mu | tau, y."""
        if not self.truncated:
            return self.loc, self.scale**2
        return tn_moments(self.loc, self.scale, self.lower, self.upper)


@dataclass(frozen=True)
class TailInfo:
    """How p(tau | y) decays as tau -> infinity: ``power`` beta in tau^-beta, or None if faster."""

    power: float | None

    @property
    def proper(self) -> bool:
        return self.power is None or self.power > 1

    def tau_moment_finite(self, k: int) -> bool:
        """E[tau^k] < infinity."""
        return self.power is None or k < self.power - 1


def log_tau_prior(dist: Dist, tau: np.ndarray) -> np.ndarray:
    """Vectorised log prior density of tau (same normalisation as ``models.prior_logpdf``)."""
    tau = np.asarray(tau, float)
    f = dist.family
    with np.errstate(divide="ignore"):
        if f == "flat":
            out = np.zeros_like(tau)
        elif f == "uniform":
            lo, hi = dist["lower"], dist["upper"]
            out = np.where((tau >= lo) & (tau <= hi), -math.log(hi - lo), -np.inf)
        elif f == "half_cauchy":
            s = dist["scale"]
            out = math.log(2.0 / (math.pi * s)) - np.log1p((tau / s) ** 2)
        elif f == "half_normal":
            s = dist["scale"]
            out = math.log(2.0 / s) - 0.5 * (tau / s) ** 2 - 0.5 * math.log(2.0 * math.pi)
        elif f == "lognormal":
            m, s = dist["mu"], dist["sigma"]
            lt = np.log(tau)
            out = -lt - math.log(s) - 0.5 * math.log(2.0 * math.pi) - 0.5 * ((lt - m) / s) ** 2
        else:
            raise ValueError(f"tau prior {dist}: no density (family {f!r})")
    return np.where(tau > 0, out, -np.inf)


def tau_support(dist: Dist) -> tuple[float, float]:
    """The support of the tau prior in u = log tau."""
    if dist.family == "uniform":
        lo = dist["lower"]
        return (math.log(lo) if lo > 0 else -math.inf, math.log(dist["upper"]))
    return (-math.inf, math.inf)


def tail_info(data: SchoolsData | Schools, prior: Prior) -> TailInfo:
    """Power-law decay of p(tau | y): tau^-J from the likelihood, tau^+1 back from a flat mu integral."""
    fam = prior.tau.family
    if fam in ("uniform", "half_normal", "lognormal", "fixed"):
        return TailInfo(None)
    power = data.J - (1.0 if prior.mu.family == "flat" else 0.0)
    if fam == "half_cauchy":
        power += 2.0
    return TailInfo(power)


def shrinkage(sigma: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """B = sigma^2 / (sigma^2 + tau^2) and 1 - B, each without cancellation; shape (tau, school)."""
    s2 = np.asarray(sigma, float) ** 2
    t2 = np.asarray(tau, float)[..., None] ** 2
    v = s2 + t2
    return s2 / v, t2 / v


@dataclass(frozen=True)
class TauSums:
    """Per-tau sums over schools: W, mu_hat, Q and sum log(sigma^2 + tau^2)."""

    W: np.ndarray
    mu_hat: np.ndarray
    Q: np.ndarray
    sum_log_v: np.ndarray


def tau_sums(data: Schools, tau: np.ndarray, *, likelihood: bool = True) -> TauSums:
    """The sufficient sums of the tau-marginal likelihood, chunked over tau to bound memory.

    With ``likelihood`` False only W and mu_hat are computed (Q and sum log v are NaN): all that
    mu | tau, y needs.
    """
    tau = np.asarray(tau, float).ravel()
    s2, y0 = data.s2, data.centre
    yc = data.y - y0
    yc2 = yc * yc
    out = [np.full(tau.shape, np.nan) for _ in range(4)]
    step = max(1, _CHUNK // data.J)
    for i in range(0, tau.size, step):
        t2 = tau[i : i + step, None] ** 2
        v = s2 + t2
        w = 1.0 / v
        W = w.sum(axis=1)
        mc = (w @ yc) / W
        out[0][i : i + step] = W
        out[1][i : i + step] = y0 + mc
        if likelihood:
            out[2][i : i + step] = np.maximum(w @ yc2 - W * mc * mc, 0.0)
            out[3][i : i + step] = np.log(v).sum(axis=1)
    return TauSums(*out)


def mu_given_tau(prior: Prior, sums: TauSums) -> MuGivenTau:
    """mu | tau, y for the mu prior: normal(mu_hat, 1/W), its conjugate update, or truncated."""
    mu = prior.mu
    if mu.family == "normal":
        prec = sums.W + 1.0 / mu["scale"] ** 2
        loc = (sums.W * sums.mu_hat + mu["loc"] / mu["scale"] ** 2) / prec
        return MuGivenTau(loc, 1.0 / np.sqrt(prec))
    scale = 1.0 / np.sqrt(sums.W)
    if mu.family == "uniform":
        return MuGivenTau(sums.mu_hat, scale, mu["lower"], mu["upper"])
    return MuGivenTau(sums.mu_hat, scale)


def _log_mu_integral(prior: Prior, sums: TauSums) -> np.ndarray:
    """log of the integral over mu of prior(mu) exp(-W (mu - mu_hat)^2 / 2), up to a constant."""
    mu, W, m = prior.mu, sums.W, sums.mu_hat
    if mu.family == "flat":
        return -0.5 * np.log(W)
    if mu.family == "normal":
        s0sq = mu["scale"] ** 2
        return -0.5 * np.log1p(W * s0sq) - 0.5 * (m - mu["loc"]) ** 2 / (s0sq + 1.0 / W)
    sw = np.sqrt(W)
    alpha, beta = (mu["lower"] - m) * sw, (mu["upper"] - m) * sw
    return -0.5 * np.log(W) + log_ndtr_diff(alpha, beta) - math.log(mu["upper"] - mu["lower"])


def log_post_u(data: Schools, prior: Prior, u: np.ndarray) -> np.ndarray:
    """log p(u | y) + const for u = log tau: log prior(tau) + u + log p(y | tau) with mu integrated."""
    u = np.asarray(u, float)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # tau -> 0 or inf: density 0
        tau = np.exp(u)
        sums = tau_sums(data, tau.ravel())
        lp = -0.5 * sums.sum_log_v - 0.5 * sums.Q + _log_mu_integral(prior, sums)
        lp = lp.reshape(u.shape) + log_tau_prior(prior.tau, tau) + u
    return np.where(np.isnan(lp), -np.inf, lp)


def theta_given_tau(data: Schools, prior: Prior, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[theta_j | tau, y] and sd[theta_j | tau, y], shape (tau, school): BDA3 5.17 with mu integrated.

    theta_j = (1 - B_j) y_j + B_j mu + e_j given mu, so with m, v the mean and variance of mu | tau, y:
    mean (1 - B_j) y_j + B_j m and variance (1 - B_j) sigma_j^2 + B_j^2 v.
    """
    tau = np.asarray(tau, float).ravel()
    m, v = mu_given_tau(prior, tau_sums(data, tau, likelihood=False)).moments()
    B, one_minus_B = shrinkage(data.sigma, tau)
    mean = one_minus_B * data.y + B * m[:, None]
    var = one_minus_B * data.s2 + B**2 * v[:, None]
    return mean, np.sqrt(var)
