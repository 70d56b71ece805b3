"""Do these draws match the exact posterior?  z-scores in units of the run's own MCSE.

For mu, tau, log tau and every theta_j, the posterior mean and the quantiles 0.05 ... 0.95 are
estimated from the draws, their Monte Carlo standard errors come from arviz-stats' ESS (the same
estimator for every engine; for quantiles with the exact density, see ``quantile_mcse``), and
z = (estimate - exact) / MCSE.  The verdict controls the family-wise false-alarm rate ``alpha``
(1 %) as a weighted Bonferroni over two pre-declared families:

* the *functionals* (share 1 - TAIL_ALPHA_SHARE = 80 % of alpha): every functional above plus one
  whole-distribution test for tau (Kolmogorov-Smirnov with the bulk ESS of tau in place of n);
* the *lower tail of tau* (share TAIL_ALPHA_SHARE = 20 %; absent when tau is fixed): the exact
  posterior probabilities P(tau < q_p) = p at the exact quantiles q_p, p in TAIL_PROBS (0.01, 0.025,
  0.05, 0.1), each estimated by the mean of the indicator I(tau < q_p) over the draws, with the
  run's own MCSE of that mean: sqrt(p (1 - p) / ESS), ESS of the indicator (arviz-stats, method
  "mean"; n when no draw, or every draw, falls below q_p: the indicator is then constant and its
  autocorrelation undefined). See ``tail_checks``.

Why the second family (issue 20): the centred funnel fails in one place, the neck (small tau),
which its chains do not enter; its quantile z-scores are diluted by a large MCSE (a low quantile
ESS) and by a threshold shared with ~67 functionals, so the Bonferroni family alone flagged 50-80 %
of centred fits. The indicator of the exact region asks directly whether the draws put the exact
mass there: a fit with no draw below q_0.01 among 4000 has z = -6.4. The choice (statistic,
probabilities, share of alpha) was made by measurement on calibration seeds 1-100 and 2000 iid
replications against candidates (ESS-adjusted Anderson-Darling / Cramer-von Mises on the exact PIT
of tau, indicators with tau's bulk/tail/quantile ESS, Simes instead of Bonferroni): only this one
raised the power; its power and false alarms are reported on held-out seeds (CALIBRATION.md).
Its caveat, stated: a correct sampler whose tau mixes so slowly that it misses the lowest 1 % in
all of its draws by chance is flagged; the non-centred false-alarm rows measure how often that
happens for real samplers.

Bonferroni ignores the strong correlation between functionals, so it is conservative; the rate
the verdict actually achieves is *measured* on exact iid draws (``nox -s calibrate``), not assumed.

Schools are named as the data name them: ``theta[A]`` for Rubin's school A (the reference's own
summaries keep their 1-based ``theta[1]`` names, as in its JSON). Everything the check needs (J,
whether tau is fixed, the school labels) comes from the :class:`~reference.core.Reference` it is
given. Draws it cannot use raise :class:`CheckInputError` (a UsageError: exit 2), naming the variable;
a z that is not finite (an MCSE of 0 or NaN) fails, it never passes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import arviz_base
import numpy as np
import xarray as xr
from arviz_stats.base import array_stats
from scipy import special, stats

from models.errors import UsageError

from .core import Reference
from .limits import MIN_DRAWS_PER_CHAIN

__all__ = ["FUNCTIONAL_PROBS", "DEFAULT_ALPHA", "TAIL_PROBS", "TAIL_ALPHA_SHARE", "CheckInputError", "Check",
           "KSCheck", "Verdict", "quantities", "quantile_mcse", "bonferroni_threshold", "ks_check", "tail_checks",
           "check", "iid_as_draws", "format_verdict", "check_file", "theta_label"]

FUNCTIONAL_PROBS: dict[str, float | None] = {
    "mean": None,
    "q0.05": 0.05,
    "q0.25": 0.25,
    "q0.5": 0.5,
    "q0.75": 0.75,
    "q0.95": 0.95,
}
#: Default family-wise false-alarm rate of the verdict (issue 4: 1 %).
DEFAULT_ALPHA = 0.01
#: the lower-tail family: exact posterior probabilities P(tau < q_p) = p checked (issue 20; chosen on
#: calibration seeds 1-100: p = 0.01 and 0.025 alone caught every centred fit there)
TAIL_PROBS = (0.01, 0.025, 0.05, 0.1)
#: the share of alpha spent on the lower-tail family (the rest goes to the functionals and the KS test);
#: at 0.1 % (a share of 0.1) it still caught all 124 centred selection fits, 0.2 leaves a margin
TAIL_ALPHA_SHARE = 0.2


class CheckInputError(UsageError):
    """Draws unusable for the check (missing variables, shapes that do not match the data)."""


class Check(NamedTuple):
    quantity: str
    functional: str
    estimate: float
    mcse: float
    exact: float
    z: float
    failed: bool


class KSCheck(NamedTuple):
    quantity: str
    distance: float
    ess: float
    p_value: float
    failed: bool


def _json_num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


class Verdict(NamedTuple):
    """``failed`` names every test that failed (``tau q0.05``, ``tau ks``, ``tau P(<q0.01)``);
    ``max_abs_z`` and ``threshold`` are the functionals' family, ``max_abs_tail_z`` and
    ``tail_threshold`` the lower-tail family's (``tail``: empty, and nan, when tau is fixed)."""

    passed: bool
    max_abs_z: float
    threshold: float
    alpha: float
    failed: list[str]
    checks: list[Check]
    ks: KSCheck | None
    tail: tuple[Check, ...] = ()
    tail_threshold: float = math.nan
    max_abs_tail_z: float = math.nan

    def to_json(self) -> dict:
        """A JSON-ready dict; a z, MCSE or p-value that is not finite is null (JSON has no inf/nan)."""
        def row(nt: NamedTuple) -> dict:
            return {k: _json_num(v) if isinstance(v, float) else v for k, v in nt._asdict().items()}

        return {
            "passed": self.passed,
            "max_abs_z": _json_num(self.max_abs_z),
            "threshold": self.threshold,
            "alpha": self.alpha,
            "failed": self.failed,
            "checks": [row(c) for c in self.checks],
            "ks": row(self.ks) if self.ks else None,
            "tail": [row(c) for c in self.tail],
            "tail_threshold": _json_num(self.tail_threshold),
            "max_abs_tail_z": _json_num(self.max_abs_tail_z),
        }


def theta_label(school: str) -> str:
    """The check's name for a school's effect, as the data label it: ``theta[A]``."""
    return f"theta[{school}]"


def _posterior_group(draws) -> xr.Dataset:
    try:
        post = draws["posterior"]
    except (KeyError, TypeError, IndexError, ValueError):
        raise CheckInputError(f"posterior: group missing from the draws ({type(draws).__name__})") from None
    if isinstance(post, xr.DataTree):
        post = post.to_dataset()
    if not isinstance(post, xr.Dataset):
        raise CheckInputError(f"posterior: expected an xarray Dataset/DataTree group, got {type(post).__name__}")
    return post


def _numeric(name: str, arr: xr.DataArray) -> np.ndarray:
    if arr.dtype.kind not in "iuf":
        raise CheckInputError(f"{name}: draws of dtype {arr.dtype} (expected real numbers)")
    return np.asarray(arr.values, dtype=np.float64)


def _check_labels(post: xr.Dataset, theta: xr.DataArray, data_school: Sequence[str], J: int) -> None:
    """Text school labels on the draws must be the data's: else the fit was of other data."""
    dim = theta.dims[2]
    if dim not in post.coords:
        return
    labels = post.coords[dim].values
    if labels.dtype.kind not in "UO":  # integer positions (ArviZ's default coordinate): nothing to compare
        return
    fit = [str(v) for v in labels.tolist()]
    if fit != list(data_school):
        def show(xs):
            return ", ".join(xs[:8]) + (", ..." if len(xs) > 8 else "")
        raise CheckInputError(f"{dim}: the fit's schools are [{show(fit)}] but the data's are "
                              f"[{show(list(data_school))}] (J = {J}): check against the fit's own data (--data; "
                              f"a school column labels its schools)")


def quantities(draws, reference: Reference) -> dict[str, np.ndarray]:
    """(chain, draw) arrays for mu, tau, log_tau and each school's theta[label], from an ArviZ DataTree.

    Raises CheckInputError naming the variable when the draws cannot be checked against ``reference``.
    """
    data, tau_fixed = reference.data, reference.prior.tau_fixed
    post = _posterior_group(draws)
    needed = ["mu", "theta"] + ([] if tau_fixed else ["tau"])
    missing = [v for v in needed if v not in post.data_vars]
    if missing:
        hint = (" (a fit with a fixed tau? give its prior, e.g. --tau-prior 'fixed(8)')"
                if missing == ["tau"] else "")
        raise CheckInputError(f"posterior variables {missing}: missing (have {sorted(map(str, post.data_vars))})"
                              + hint)
    mu_arr = post["mu"]
    if mu_arr.dims != ("chain", "draw"):
        raise CheckInputError(f"mu: dims {mu_arr.dims} must be (chain, draw)")
    mu = _numeric("mu", mu_arr)
    out: dict[str, np.ndarray] = {"mu": mu}
    if not tau_fixed:
        tau_arr = post["tau"]
        if tau_arr.dims != ("chain", "draw") or tau_arr.shape != mu.shape:
            raise CheckInputError(f"tau: dims {tau_arr.dims} shape {tau_arr.shape} must be (chain, draw) "
                                  f"{mu.shape}")
        tau = _numeric("tau", tau_arr)
        out["tau"] = tau
    theta_arr = post["theta"]
    if theta_arr.ndim != 3 or theta_arr.dims[:2] != ("chain", "draw"):
        raise CheckInputError(f"theta: dims {theta_arr.dims} must be (chain, draw, school)")
    if theta_arr.shape[:2] != mu.shape:
        raise CheckInputError(f"theta: shape {theta_arr.shape} does not match mu's {mu.shape} in (chain, draw)")
    J_fit = theta_arr.shape[2]
    if J_fit != data.J:
        raise CheckInputError(f"theta: the fit has J = {J_fit} schools, the data {data.name} has J = {data.J}: "
                              f"the draws do not match the data (check against the fit's own data: --data)")
    _check_labels(post, theta_arr, data.school, data.J)
    theta = _numeric("theta", theta_arr)
    if min(mu.shape) < 1 or mu.shape[1] < MIN_DRAWS_PER_CHAIN:
        raise CheckInputError(f"draws: shape {mu.shape} (chain, draw) has fewer than {MIN_DRAWS_PER_CHAIN} "
                              f"draws per chain: no MCSE")
    for name, arr in (("mu", mu), ("tau", out.get("tau")), ("theta", theta)):
        if arr is not None and not np.all(np.isfinite(arr)):
            raise CheckInputError(f"{name}: draws contain non-finite values")
    if not tau_fixed:
        if np.any(out["tau"] <= 0):
            raise CheckInputError("tau: draws must be > 0")
        out["log_tau"] = np.log(out["tau"])
    for j, school in enumerate(data.school):
        out[theta_label(school)] = theta[..., j]
    return out


def _reference_name(reference: Reference, names: list[str]) -> list[str]:
    """The reference's own name of each quantity (theta[A] -> theta[1])."""
    index = {theta_label(s): f"theta[{j + 1}]" for j, s in enumerate(reference.data.school)}
    return [index.get(n, n) for n in names]


def quantile_mcse(stack: np.ndarray, prob: float, density: np.ndarray) -> np.ndarray:
    """MCSE of the ``prob`` quantile of each row of ``stack`` (quantity, chain, draw).

    sqrt(prob (1 - prob) / ESS) / f(x_prob): the ESS of the indicator I(x <= x_prob) is
    arviz-stats' quantile ESS (``ess(method="quantile")``), the density f at the quantile is the
    exact one from the reference. arviz-stats' own quantile MCSE instead reads the density off the
    spacing of order statistics about 2 sqrt(prob (1 - prob) n) ranks apart: at 4 x 1000 draws and
    prob = 0.05 that spacing has ~20 % relative noise, which fattens the tails of z and, measured on
    exact iid draws, gave 10 false alarms in 300 replications at a nominal 1 % (3.3 %).
    """
    ess = np.asarray(array_stats.ess(stack, method="quantile", prob=prob), dtype=float)
    return np.sqrt(prob * (1 - prob) / ess) / density


def bonferroni_threshold(alpha: float, n_tests: int) -> float:
    """Two-sided normal threshold for a family-wise rate alpha over n_tests tests."""
    return float(stats.norm.isf(alpha / (2 * n_tests)))


def ks_check(x: np.ndarray, cdf, ess: float, alpha_each: float, name: str = "tau") -> KSCheck:
    """Kolmogorov distance to the exact CDF; the asymptotic p-value uses the ESS in place of n.
    A p-value that is not a number (an ESS that is not) fails."""
    xs = np.sort(np.ravel(x))
    n = xs.size
    F = np.clip(cdf(xs), 0.0, 1.0)
    i = np.arange(1, n + 1)
    d = float(max(np.max(i / n - F), np.max(F - (i - 1) / n)))
    p = float(special.kolmogorov(math.sqrt(ess) * d)) if ess >= 0 else math.nan
    return KSCheck(name, d, float(ess), p, not p >= alpha_each)


def tail_functional(prob: float) -> str:
    """The name of the lower-tail test at ``prob``: ``P(<q0.01)`` (its quantity is tau)."""
    return f"P(<q{prob:g})"


def tail_checks(tau: np.ndarray, reference: Reference, alpha_tail: float,
                probs: Sequence[float] = TAIL_PROBS) -> tuple[list[Check], float]:
    """The lower-tail family: for each p, the share of ``tau`` draws (chain, draw) below the exact
    quantile q_p against p, z = (share - p) / sqrt(p (1 - p) / ESS), two-sided, Bonferroni over the
    probabilities at ``alpha_tail``. ESS is the indicator's own (arviz-stats, method "mean"), n when
    the indicator is constant (no draw, or every draw, below q_p). The Bernoulli variance uses the
    exact p, so the MCSE is defined even when no draw falls below q_p. Returns (checks, threshold)."""
    threshold = bonferroni_threshold(alpha_tail, len(probs))
    n = tau.size
    out: list[Check] = []
    for p in probs:
        q = float(reference.quantile_and_density("tau", p)[0])
        ind = (tau < q).astype(np.float64)
        if ind.min() == ind.max():
            ess = float(n)
        else:
            ess = float(array_stats.ess(ind, method="mean"))
        est = float(ind.mean())
        se = math.sqrt(p * (1 - p) / ess) if ess > 0 else math.nan
        z = (est - p) / se if se > 0 else math.nan
        out.append(Check("tau", tail_functional(p), est, se, p, float(z), not abs(z) <= threshold))
    return out, threshold


def check(draws, reference: Reference, *, alpha: float = DEFAULT_ALPHA) -> Verdict:
    """Compare draws with the exact posterior ``reference`` (see reference.posterior).

    J, whether tau is fixed and the school labels come from ``reference``.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise CheckInputError(f"alpha = {alpha!r}: must be in (0, 1)")
    tau_fixed = reference.prior.tau_fixed
    q = quantities(draws, reference)
    names = list(q)
    ref_names = _reference_name(reference, names)
    stack = np.stack([q[n] for n in names])  # (quantity, chain, draw)
    pooled = stack.reshape(len(names), -1)
    estimates: dict[str, np.ndarray] = {}
    mcses: dict[str, np.ndarray] = {}
    exact: dict[str, np.ndarray] = {}
    with np.errstate(all="ignore"):  # draws far off (a sampler gone wild) give inf/nan: a FAIL, below
        for f, prob in FUNCTIONAL_PROBS.items():
            if prob is None:
                estimates[f] = pooled.mean(axis=1)
                mcses[f] = np.asarray(array_stats.mcse(stack, method="mean"), dtype=float)
                exact[f] = np.array([reference.summary(n).mean for n in ref_names])
            else:
                estimates[f] = np.quantile(pooled, prob, axis=1)
                at = np.array([reference.quantile_and_density(n, prob) for n in ref_names])
                exact[f], density = at[:, 0], at[:, 1]
                mcses[f] = quantile_mcse(stack, prob, density)
        n_tests = len(names) * len(FUNCTIONAL_PROBS) + (0 if tau_fixed else 1)
        alpha_functionals = alpha if tau_fixed else alpha * (1 - TAIL_ALPHA_SHARE)
        threshold = bonferroni_threshold(alpha_functionals, n_tests)
        checks: list[Check] = []
        for i, name in enumerate(names):
            for f in FUNCTIONAL_PROBS:
                est, se, ex = float(estimates[f][i]), float(mcses[f][i]), float(exact[f][i])
                z = (est - ex) / se if se > 0 else (0.0 if est == ex else math.inf)
                checks.append(Check(name, f, est, se, ex, float(z), not abs(z) <= threshold))
        ks, tail, tail_threshold = None, [], math.nan
        if not tau_fixed:
            ess_tau = float(array_stats.ess(q["tau"], method="bulk"))
            ks = ks_check(q["tau"], lambda x: reference.cdf("tau", x), ess_tau, alpha_functionals / n_tests)
            tail, tail_threshold = tail_checks(q["tau"], reference, alpha * TAIL_ALPHA_SHARE)
    failed = [f"{c.quantity} {c.functional}" for c in checks if c.failed]
    if ks is not None and ks.failed:
        failed.append("tau ks")
    failed += [f"{c.quantity} {c.functional}" for c in tail if c.failed]
    def worst(cs: list[Check]) -> float:
        zs = [abs(c.z) for c in cs]
        return math.nan if not zs or any(math.isnan(z) for z in zs) else max(zs)
    return Verdict(not failed, float(worst(checks)), threshold, alpha, failed, checks, ks, tuple(tail),
                   tail_threshold, float(worst(tail)))


def iid_as_draws(sample: Mapping[str, np.ndarray], chains: int, school=None):
    """Exact iid draws (reference.draws output) arranged as an ArviZ posterior of ``chains`` chains."""
    n = len(sample["mu"])
    if n % chains:
        raise ValueError(f"chains = {chains}: must divide the {n} draws")
    post = {k: np.asarray(v).reshape(chains, n // chains, *np.shape(v)[1:]) for k, v in sample.items()}
    coords = {"school": list(school)} if school is not None else None
    return arviz_base.from_dict({"posterior": post}, dims={"theta": ["school"]}, coords=coords)


# --- command line: python -m reference check --posterior FILE.nc ... ---------------------------


def format_verdict(v: Verdict) -> str:
    width = max([12, *(len(c.quantity) + 1 for c in v.checks)])
    lines = [f"{'quantity':<{width}}{'functional':>11}{'estimate':>11}{'MCSE':>9}{'exact':>11}{'z':>8}"]
    for c in v.checks:
        flag = "  FAIL" if c.failed else ""
        lines.append(f"{c.quantity:<{width}}{c.functional:>11}{c.estimate:>11.3f}{c.mcse:>9.3f}{c.exact:>11.3f}"
                     f"{c.z:>8.2f}{flag}")
    if v.ks is not None:
        k = v.ks
        lines.append(f"\nKS for tau: distance {k.distance:.4f} with ESS {k.ess:.0f} in place of n, "
                     f"p = {k.p_value:.3g}" + ("  FAIL" if k.failed else ""))
    share = TAIL_ALPHA_SHARE if v.tail else 0.0
    lines.append(f"\nthreshold |z| > {v.threshold:.2f} (alpha {v.alpha * (1 - share):g} of the family-wise "
                 f"{v.alpha:g}, Bonferroni); max |z| = {v.max_abs_z:.2f}")
    if v.tail:
        lines.append(f"\nlower tail of tau: share of draws below the exact quantile q_p against p "
                     f"(alpha {v.alpha * share:g}: |z| > {v.tail_threshold:.2f})")
        for c in v.tail:
            flag = "  FAIL" if c.failed else ""
            lines.append(f"{c.quantity:<{width}}{c.functional:>11}{c.estimate:>11.4f}{c.mcse:>9.4f}{c.exact:>11.4f}"
                         f"{c.z:>8.2f}{flag}")
    lines.append("verdict: PASS" if v.passed else f"verdict: FAIL ({', '.join(v.failed)})")
    return "\n".join(lines)


#: what opening a file that is not NetCDF, or a damaged one, raises from xarray and its engines
_OPEN_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, RuntimeError, UnicodeDecodeError)


def load_draws(path: Path | str) -> xr.DataTree:
    """Read a NetCDF file of draws (ArviZ layout) into memory; CheckInputError if it cannot be read."""
    p = Path(path)
    if not p.is_file():
        raise CheckInputError(f"--posterior = {str(p)!r}: no such file")
    try:
        with xr.open_datatree(p) as tree:
            return tree.load()
    except _OPEN_ERRORS as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckInputError(f"--posterior = {str(p)!r}: not a readable NetCDF file ({first})") from None


def check_file(path: Path | str, reference: Reference, *, alpha: float = DEFAULT_ALPHA) -> Verdict:
    """Load draws from a NetCDF file (ArviZ layout) and check them against ``reference``."""
    return check(load_draws(path), reference, alpha=alpha)
