"""Vectorised normal, truncated-normal and bivariate-normal functions, stable in the tails.

Everything here is a plain function of NumPy arrays (broadcasting), with no knowledge of the model.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = [
    "log_ndtr_diff",
    "tn_cdf",
    "tn_pdf",
    "tn_moments",
    "tn_from_uniform",
    "bvn_cdf",
    "bvn_rect",
]

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
#: standardised arguments are clipped here: Phi(+-50) is 1/0 to double precision, and Owen's T stays finite
_CLIP = 50.0


def log_ndtr_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(Phi(b) - Phi(a)) for a <= b, accurate when both lie far in the same tail."""
    a, b = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float))
    upper = a > 0  # both in the upper tail: use Phi(b) - Phi(a) = Phi(-a) - Phi(-b)
    lo = np.where(upper, -b, a)
    hi = np.where(upper, -a, b)
    log_hi = special.log_ndtr(hi)
    log_lo = special.log_ndtr(lo)
    with np.errstate(divide="ignore"):
        return log_hi + np.log(-np.expm1(log_lo - log_hi))


def _standardise(x: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    return np.clip((x - m) / s, -_CLIP, _CLIP)


def tn_cdf(x, m, s, a, b) -> np.ndarray:
    """CDF of normal(m, s) truncated to [a, b] (a, b may be infinite)."""
    alpha, beta = _standardise(a, m, s), _standardise(b, m, s)
    xi = np.clip(_standardise(x, m, s), alpha, beta)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.exp(log_ndtr_diff(alpha, xi) - log_ndtr_diff(alpha, beta))
    return np.where(xi <= alpha, 0.0, np.where(xi >= beta, 1.0, out))


def tn_pdf(x, m, s, a, b) -> np.ndarray:
    """Density of normal(m, s) truncated to [a, b]."""
    alpha, beta = _standardise(a, m, s), _standardise(b, m, s)
    z = (np.asarray(x, float) - m) / s
    inside = (x >= a) & (x <= b)
    log_d = -0.5 * z * z - _LOG_SQRT_2PI - np.log(s) - log_ndtr_diff(alpha, beta)
    return np.where(inside, np.exp(log_d), 0.0)


def _phi_ratio(z: np.ndarray, log_z: np.ndarray) -> np.ndarray:
    """phi(z) / Z computed in log space (0 for infinite z)."""
    with np.errstate(over="ignore", invalid="ignore"):
        r = np.exp(-0.5 * z * z - _LOG_SQRT_2PI - log_z)
    return np.where(np.isfinite(z), r, 0.0)


def tn_moments(m, s, a, b) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of normal(m, s) truncated to [a, b]."""
    m, s = np.asarray(m, float), np.asarray(s, float)
    alpha = (a - m) / s
    beta = (b - m) / s
    # reflect so that the interval is never entirely in the upper tail (the formulas are odd/even in z)
    flip = alpha > 0
    lo = np.where(flip, -beta, alpha)
    hi = np.where(flip, -alpha, beta)
    log_z = log_ndtr_diff(lo, hi)
    r_lo, r_hi = _phi_ratio(lo, log_z), _phi_ratio(hi, log_z)
    shift = r_lo - r_hi
    with np.errstate(invalid="ignore"):
        t_lo = np.where(np.isfinite(lo), lo * r_lo, 0.0)
        t_hi = np.where(np.isfinite(hi), hi * r_hi, 0.0)
    var_std = np.maximum(1.0 + t_lo - t_hi - shift * shift, 0.0)
    mean = m + s * np.where(flip, -shift, shift)
    return mean, s * s * var_std


def tn_from_uniform(u: np.ndarray, m, s, a, b) -> np.ndarray:
    """Inverse CDF of normal(m, s) truncated to [a, b] at u in (0, 1), stable in the tails."""
    m, s = np.asarray(m, float), np.asarray(s, float)
    alpha, beta = _standardise(a, m, s), _standardise(b, m, s)
    flip = alpha > 0
    lo = np.where(flip, -beta, alpha)
    hi = np.where(flip, -alpha, beta)
    u = np.where(flip, 1.0 - u, u)
    # Phi(z) = Phi(lo) + u (Phi(hi) - Phi(lo)), in logs relative to Phi(hi)
    log_hi = special.log_ndtr(hi)
    log_lo = special.log_ndtr(lo)
    with np.errstate(divide="ignore"):
        log_p = log_hi + np.log(u + (1.0 - u) * np.exp(log_lo - log_hi))
    z = np.clip(special.ndtri_exp(np.minimum(log_p, 0.0)), lo, hi)
    return m + s * np.where(flip, -z, z)


def bvn_cdf(h: np.ndarray, k: np.ndarray, rho: np.ndarray, r: np.ndarray) -> np.ndarray:
    """P(X <= h, Y <= k) for a standard bivariate normal with correlation rho.

    ``r`` is sqrt(1 - rho**2) > 0, passed separately so callers can compute it without cancellation.
    Owen (1956): Phi2 = Phi(h)/2 + Phi(k)/2 - T(h, a_h) - T(k, a_k) - beta, with Owen's T function;
    absolute accuracy is that of ``scipy.special.owens_t`` (about 1e-16).
    """
    h = np.clip(np.asarray(h, float), -_CLIP, _CLIP)
    k = np.clip(np.asarray(k, float), -_CLIP, _CLIP)
    h, k, rho, r = np.broadcast_arrays(h, k, rho, r)
    out = 0.5 * (special.ndtr(h) + special.ndtr(k)) - _owen_terms(h, k, rho, r)
    return np.clip(out, 0.0, 1.0)


def bvn_rect(h, alpha, beta, rho, r) -> np.ndarray:
    """P(X <= h, alpha <= Y <= beta) for a standard bivariate normal with correlation rho.

    The difference of two Owen formulas, Phi2(h, beta) - Phi2(h, alpha), with the common Phi(h)/2
    cancelled: four Owen's T evaluations and two normal CDFs.
    """
    h = np.clip(np.asarray(h, float), -_CLIP, _CLIP)
    alpha = np.clip(np.asarray(alpha, float), -_CLIP, _CLIP)
    beta = np.clip(np.asarray(beta, float), -_CLIP, _CLIP)
    h, alpha, beta, rho, r = np.broadcast_arrays(h, alpha, beta, rho, r)
    out = 0.5 * (special.ndtr(beta) - special.ndtr(alpha))
    for k, sign in ((beta, 1.0), (alpha, -1.0)):
        out = out - sign * _owen_terms(h, k, rho, r)
    return np.clip(out, 0.0, 1.0)


def _owen_terms(h: np.ndarray, k: np.ndarray, rho: np.ndarray, r: np.ndarray) -> np.ndarray:
    """(Phi(h) + Phi(k)) / 2 - Phi2(h, k; rho) = T(h, a_h) + T(k, a_k) + beta (Owen), with the limits
    at h = 0 or k = 0 (Owen's T takes a = +-inf) and Phi2(0, 0) = 1/4 + asin(rho) / (2 pi)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a_h = (k - rho * h) / (h * r)
        a_k = (h - rho * k) / (k * r)
    both_zero = (h == 0) & (k == 0)
    a_h = np.where(both_zero, 0.0, a_h)
    a_k = np.where(both_zero, 0.0, a_k)
    beta = np.where((h * k < 0) | ((h * k == 0) & (h + k < 0)), 0.5, 0.0)
    terms = special.owens_t(h, a_h) + special.owens_t(k, a_k) + beta
    return np.where(both_zero, 0.25 - np.arcsin(rho) / (2.0 * np.pi), terms)
