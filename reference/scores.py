"""How far is an approximation from the exact posterior?  Scores of (weighted) draws, in exact units.

For approximate inference (ADVI, Pathfinder, Laplace, SVI; DESIGN.md), judged by distance to the
exact posterior rather than by MCSE z-scores. For each scalar s in mu, tau, log tau, theta_j, with
normalised weights w_i (1/n without weights) and n_eff = 1 / sum w_i^2 (Kish):

- ``mean_error`` = (sum w_i s_i - E[s | y]) / sd(s | y), its iid standard error
  ``mean_error_se`` = sd_q / (sd(s | y) sqrt(n_eff));
- ``sd_ratio`` = sd_q / sd(s | y), sd_q^2 = sum w_i (s_i - mean_q)^2 (no n/(n-1) factor), its se
  ``sd_ratio_se`` = sd_ratio sqrt((kurtosis_q - 1) / (4 n_eff)) (delta method);
- ``w1`` = integral |F_q(x) - F(x | y)| dx against the exact CDF (:mod:`reference.wasserstein`),
  with its numerical ``w1_error`` and ``w1_iid``, the W1 that n_eff exact iid draws would show;
- ``coverage`` = F(q95 | y) - F(q05 | y), the exact mass inside the draws' central 90 % interval
  (weighted "inverted CDF" quantiles), with ``coverage_se`` = sqrt(0.9 x 0.1 / n_eff) (for exact
  draws the mass between two order statistics is Beta-distributed with that sd).

Jointly (:mod:`reference.scores_joint`): an energy distance to exact iid draws with its null
distribution, and PSIS (Pareto k-hat and importance weights). ``score_psis`` is the same scores with
PSIS weights, a method of its own. :func:`verdict` gives the issue's table entries.

The exact numbers come from :class:`~reference.core.Reference`: ``summary`` (mean, sd), ``cdf``,
``quantile``, ``draws``; its CDF's own error enters ``w1_error`` (the interpolation table's
measured error for mu and theta over its range, the grid's quantile errors times the density for
tau). Moments that do not exist (a flat tau prior with few schools) leave nan scores, never
numbers that look meaningful.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from . import check as _check
from .core import Reference
from .mixture import TABLE_TAIL
from .scores_joint import EnergyScore, PsisResult, energy_score, psis
from .wasserstein import normalised_weights, wasserstein1

__all__ = ["Draws", "MarginalScore", "Scores", "ApproxVerdict", "MEAN_TOL", "SD_RATIO_RANGE", "KHAT_OK",
           "as_draws", "marginal_score", "score", "score_psis", "verdict", "format_scores",
           "EnergyScore", "PsisResult", "psis", "energy_score"]

#: "truly fine": |mean error| below this many exact sds ...
MEAN_TOL = 0.1
#: ... and the sd ratio inside this range, for every scalar (see :func:`verdict`)
SD_RATIO_RANGE = (0.9, 1.1)
#: PSIS's reliability threshold used by the issue's table (Vehtari et al. 2024 also give
#: min(1 - 1/log10(S), 0.7), reported beside it)
KHAT_OK = 0.7
#: central interval whose exact mass is the coverage
COVERAGE_LEVELS = (0.05, 0.95)


class Draws(NamedTuple):
    """Draws flattened over (chain, draw): mu (n,), tau (n,) or None for a fixed tau, theta (n, J)."""

    mu: np.ndarray
    tau: np.ndarray | None
    theta: np.ndarray

    def scalars(self) -> dict[str, np.ndarray]:
        """Every scalar under the reference's names: mu, tau, log_tau, theta[1] .. theta[J]."""
        out = {"mu": self.mu}
        if self.tau is not None:
            out["tau"], out["log_tau"] = self.tau, np.log(self.tau)
        out.update({f"theta[{j + 1}]": self.theta[:, j] for j in range(self.theta.shape[1])})
        return out


class MarginalScore(NamedTuple):
    quantity: str
    mean_error: float
    mean_error_se: float
    sd_ratio: float
    sd_ratio_se: float
    w1: float
    w1_error: float
    w1_iid: float
    coverage: float
    coverage_se: float
    n_eff: float


class Scores(NamedTuple):
    method: str  # "draws" (as given, or with the caller's weights) or "psis"
    marginals: dict[str, MarginalScore]
    energy: EnergyScore | None
    psis: PsisResult | None


class ApproxVerdict(NamedTuple):
    khat_ok: bool | None  # k-hat < KHAT_OK; None without PSIS
    truly_fine: bool  # every scalar's |mean error| < MEAN_TOL and sd ratio inside SD_RATIO_RANGE
    failed: list[str]  # "tau sd_ratio 0.62", ...
    noise_limited: bool  # some criterion lies within 2 standard errors of its threshold
    worst_mean_error: tuple[str, float]
    worst_sd_ratio: tuple[str, float]


# --- input -----------------------------------------------------------------------------------


def as_draws(draws, reference: Reference) -> Draws:
    """Draws in the suite's layout (a DataTree/InferenceData with a posterior group: mu, tau, theta
    over school), or a mapping of plain arrays {"mu": (...), "tau": (...), "theta": (..., J)} as
    ``Reference.draws`` returns; leading dimensions are flattened. Raises CheckInputError (exit 2)."""
    J, tau_fixed = reference.data.J, reference.prior.tau_fixed
    if isinstance(draws, Mapping) and "mu" in draws and "theta" in draws:
        mu = np.asarray(draws["mu"], dtype=float).ravel()
        theta = np.asarray(draws["theta"], dtype=float)
        if theta.ndim < 1 or theta.shape[-1] != J or theta.size != mu.size * J:
            raise _check.CheckInputError(f"theta: shape {theta.shape} does not match mu's {mu.size} draws x J = {J}")
        theta = theta.reshape(mu.size, J)
        tau = None
        if not tau_fixed:
            if "tau" not in draws:
                raise _check.CheckInputError("tau: missing from the draws (the prior's tau is not fixed)")
            tau = np.asarray(draws["tau"], dtype=float).ravel()
            if tau.size != mu.size:
                raise _check.CheckInputError(f"tau: {tau.size} draws, mu has {mu.size}")
        for name, arr in (("mu", mu), ("tau", tau), ("theta", theta)):
            if arr is not None and not np.all(np.isfinite(arr)):
                raise _check.CheckInputError(f"{name}: draws contain non-finite values")
        if tau is not None and np.any(tau <= 0):
            raise _check.CheckInputError("tau: draws must be > 0")
        if mu.size < 2:
            raise _check.CheckInputError(f"draws: {mu.size} draw(s); need at least 2")
        return Draws(mu, tau, theta)
    q = _check.quantities(draws, reference)
    theta = np.stack([q[_check.theta_label(s)].ravel() for s in reference.data.school], axis=-1)
    return Draws(q["mu"].ravel(), None if tau_fixed else q["tau"].ravel(), theta)


# --- one scalar --------------------------------------------------------------------------------


def _weighted_moments(x: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """(mean, sd, kurtosis) under normalised weights w."""
    m = float(w @ x)
    d = x - m
    var = float(w @ d**2)
    kurt = float(w @ d**4) / var**2 if var > 0 else math.nan
    return m, math.sqrt(var), kurt


def _cdf_error(reference: Reference, name: str) -> tuple[float, float]:
    """(uniform bound on |cdf - F|, length it applies over) for the reference's CDF of ``name``."""
    lo, hi = reference.quantile(name, np.array([TABLE_TAIL, 1 - TABLE_TAIL]))
    if name in ("tau", "log_tau"):
        s = reference.summary(name)
        q = np.array(list(s.quantiles.values()))
        err_q = np.array(list(s.error.quantiles.values()))
        bound = float(np.max(err_q * reference.pdf(name, q))) + reference.grid_info.truncated_mass
        return bound, float(hi - lo)
    return reference.cdf_table_error(name), float(hi - lo)


def marginal_score(x: np.ndarray, reference: Reference, name: str, weights=None) -> MarginalScore:
    """The scores of one scalar's draws ``x`` against the reference's ``name`` (formulas above)."""
    x = np.asarray(x, dtype=float).ravel()
    w = normalised_weights(x.size, weights)
    n_eff = float(1.0 / np.sum(w * w))
    exact = reference.summary(name)
    m, sd, kurt = _weighted_moments(x, w)
    with np.errstate(all="ignore"):  # a moment that does not exist (inf/nan) gives nan scores
        mean_error = (m - exact.mean) / exact.sd if math.isfinite(exact.sd) else math.nan
        mean_error_se = sd / (exact.sd * math.sqrt(n_eff)) if math.isfinite(exact.sd) else math.nan
        sd_ratio = sd / exact.sd if math.isfinite(exact.sd) else math.nan
        sd_ratio_se = sd_ratio * math.sqrt(max(kurt - 1.0, 0.0) / (4.0 * n_eff))
    q05, q95 = np.quantile(x, COVERAGE_LEVELS, weights=w, method="inverted_cdf")
    F05, F95 = reference.cdf(name, np.array([q05, q95]))
    scale = exact.sd if math.isfinite(exact.sd) and exact.sd > 0 else None
    cdf_err, span = _cdf_error(reference, name)
    lower = 0.0 if name == "tau" else -math.inf
    w1 = wasserstein1(x, lambda v: reference.cdf(name, v), weights=w, scale=scale, lower=lower,
                      cdf_error=cdf_err, cdf_error_span=span)
    p = COVERAGE_LEVELS[1] - COVERAGE_LEVELS[0]
    return MarginalScore(name, float(mean_error), float(mean_error_se), float(sd_ratio), float(sd_ratio_se),
                         w1.distance, w1.error, w1.iid_expected, float(F95 - F05),
                         math.sqrt(p * (1 - p) / n_eff), n_eff)


# --- all scalars, jointly -----------------------------------------------------------------------


def score(draws, reference: Reference, *, weights=None, seed: int = 0, energy: bool = True,
          energy_replicates: int = 20, energy_max_points: int = 2000, method: str = "draws",
          psis_result: PsisResult | None = None) -> Scores:
    """Scores of every scalar, and (``energy``) the energy distance to exact iid draws, whose null
    distribution comes from ``energy_replicates`` exact-vs-exact pairs of the same sizes and weights
    (at most ``energy_max_points`` points a side; ``seed`` drives every random choice)."""
    d = as_draws(draws, reference)
    n = d.mu.size
    w = normalised_weights(n, weights)
    marginals = {name: marginal_score(x, reference, name, w) for name, x in d.scalars().items()}
    joint = None
    if energy:
        joint = energy_score(d, reference, weights=None if weights is None else w, seed=seed, replicates=energy_replicates,
                             max_points=energy_max_points)
    return Scores(method, marginals, joint, psis_result)


def score_psis(draws, reference: Reference, log_p, log_q, **kwargs) -> Scores:
    """The scores with PSIS weights: log_p the target's unnormalised log density and log_q the
    approximation's log density at each draw (same order as the draws, flattened over chain and draw,
    on the same parameter space and base measure)."""
    result = psis(log_p, log_q)
    return score(draws, reference, weights=result.weights, method="psis", psis_result=result, **kwargs)


# --- verdict -------------------------------------------------------------------------------------


def verdict(scores: Scores, *, khat: float | None = None) -> ApproxVerdict:
    """The issue's two columns: "k-hat < 0.7" and "truly fine".

    Truly fine = |mean error| < MEAN_TOL (0.1 exact sds) and sd ratio in SD_RATIO_RANGE ([0.9, 1.1])
    for EVERY scalar (mu, tau, log tau, each theta_j), not tau alone: approximations of this model
    typically get the theta means right and shrink tau's spread, but an approximation can also
    misplace one school or under-disperse the thetas while tau looks fine, and a table entry that says
    "fine" should mean fine everywhere. A scalar whose exact moments do not exist counts as failed
    (it cannot be vouched for). ``noise_limited`` flags a decision within 2 standard errors of a
    threshold: more draws could change it. ``khat`` defaults to the scores' own PSIS k-hat.
    """
    if khat is None and scores.psis is not None:
        khat = scores.psis.khat
    failed, close = [], False
    lo, hi = SD_RATIO_RANGE
    for name, s in scores.marginals.items():
        if not abs(s.mean_error) < MEAN_TOL:
            failed.append(f"{name} mean_error {s.mean_error:+.3f}")
        if not lo <= s.sd_ratio <= hi:
            failed.append(f"{name} sd_ratio {s.sd_ratio:.3f}")
        close |= abs(abs(s.mean_error) - MEAN_TOL) < 2 * s.mean_error_se
        close |= min(abs(s.sd_ratio - lo), abs(s.sd_ratio - hi)) < 2 * s.sd_ratio_se

    def worst(key, bad):
        items = [(n, getattr(s, key)) for n, s in scores.marginals.items()]
        return max(items, key=lambda kv: bad(kv[1]) if math.isfinite(kv[1]) else math.inf)

    return ApproxVerdict(
        None if khat is None else bool(khat < KHAT_OK),
        not failed,
        failed,
        bool(close),
        worst("mean_error", abs),
        worst("sd_ratio", lambda r: abs(math.log(r)) if r > 0 else math.inf),
    )


def format_scores(scores: Scores) -> str:
    """A fixed-width table of the scores (one row per scalar), the joint scores and the verdict."""
    head = (f"{'quantity':<10}{'mean err':>9}{'± se':>7}{'sd ratio':>9}{'± se':>7}{'W1':>9}{'W1 iid':>8}"
            f"{'W1 num.err':>11}{'cover90':>8}{'± se':>7}")
    lines = [f"method: {scores.method}", head]
    for s in scores.marginals.values():
        lines.append(f"{s.quantity:<10}{s.mean_error:>+9.3f}{s.mean_error_se:>7.3f}{s.sd_ratio:>9.3f}"
                     f"{s.sd_ratio_se:>7.3f}{s.w1:>9.4f}{s.w1_iid:>8.4f}{s.w1_error:>11.1e}{s.coverage:>8.3f}"
                     f"{s.coverage_se:>7.3f}")
    if scores.energy is not None:
        e = scores.energy
        lines.append(f"\nenergy distance {e.distance:.5f} (standardised {', '.join(e.dims[:3])}, ...; "
                     f"{e.n} vs {e.m} points); exact-vs-exact: mean {e.null_mean:.5f}, sd {e.null_sd:.5f} "
                     f"over {e.replicates} replicates; z = {e.z:.2f}, p = {e.p_value:.3f}")
    if scores.psis is not None:
        p = scores.psis
        lines.append(f"PSIS: k-hat {p.khat:.3f} (threshold {KHAT_OK}; sample-size one {p.khat_threshold:.3f}), "
                     f"n_eff {p.n_eff:.0f} of {p.weights.size}")
    v = verdict(scores)
    lines.append(f"verdict: k-hat < {KHAT_OK}: {'-' if v.khat_ok is None else v.khat_ok}; truly fine: "
                 f"{v.truly_fine}" + (f" (failed: {', '.join(v.failed)})" if v.failed else "")
                 + ("; within noise of a threshold" if v.noise_limited else ""))
    return "\n".join(lines)
