"""The analytic grid reference: ``posterior(data, prior)`` and the :class:`Reference` it returns.

Quantities are named ``mu``, ``tau``, ``log_tau`` and ``theta[1]`` ... ``theta[J]`` (1-based, as in the
JSON output). Every number is computed twice: on the fine tau grid and on one with half the panels
(and, where the mixtures for mu and theta run on a Gauss rule compressed from the fine grid, which
large J allows, also on the rule with twice the nodes). The differences, plus the tail mass outside
the grid's window and a 1e-13 relative round-off floor, are the reported error: absolute, in the
quantity's units, for the mean, the sd and each quantile.

With a ``fixed(value)`` tau prior the model is fully conjugate and there is no grid: mu and theta are
closed-form (truncated) normals, ``tau``/``log_tau`` are point masses marked ``fixed``.

Layers: ``summary`` (the reported types), ``rules`` (node rules and mixtures), this module (the
Reference), ``draws`` (exact draws). Nothing here imports ``report`` or ``cli``.
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
from .grid import GridOptions, TauGrid, find_domain, refine
from .marginal import PosteriorError, Schools, log_post_u, tail_info, tau_support
from .mixture import CdfTable, Mixture, build_table, solve_quantiles
from .rules import GridInfo, Level, Rules, fixed_rules, make_rules, mu_mixture, theta_mixture
from .summary import LEVELS, ROUNDOFF, Summary, SummaryBlock, SummaryError, level_key, require_finite

__all__ = ["LEVELS", "Summary", "SummaryError", "Reference", "posterior"]

#: evaluation points per chunk in mixture CDFs (bounds memory at nodes x chunk doubles)
_CHUNK = 2_000_000
_THETA = re.compile(r"^theta\[(\d+)\]$")
#: cdf() of mu or theta at more points than this goes through an interpolation table (see CdfTable)
_TABLE_MIN_POINTS = 4096


def _quiet() -> np.errstate:
    """Floating-point warnings off while summaries are computed: require_finite refuses what is not
    finite, with a message, so warnings would only add lines to stderr."""
    return np.errstate(all="ignore")


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
    _rules: Rules = field(repr=False)
    _summaries: dict[str, Summary] = field(default_factory=dict, repr=False)
    _theta: SummaryBlock | None = field(default=None, repr=False)
    _tables: dict[str, CdfTable] = field(default_factory=dict, repr=False)
    _at_quantile: dict[tuple[str, float], tuple[float, float]] = field(default_factory=dict, repr=False)

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

    def _where(self) -> str:
        return f"data {self.data.name} (J = {self.data.J}) and prior {self.prior}"

    # --- mixtures ----------------------------------------------------------------------------

    def _mixture(self, name: str, rule: Level) -> Mixture:
        if name == "mu":
            return mu_mixture(rule)
        return theta_mixture(self.schools, rule, np.array([self._school(name)]))

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
        """Mean, sd, quantiles at :data:`LEVELS` and their error estimates for one quantity.

        Raises PosteriorError if a number that should exist is not finite (data or prior outside
        what the grid can integrate).
        """
        if name in self._summaries:
            return self._summaries[name]
        with _quiet():  # a non-finite result is refused below, with a message: no warnings on the way
            if name in ("tau", "log_tau"):
                out = self._tau_summary(name)
            elif name == "mu":
                out = self._mixture_block(None).summary(0, "mu")
            else:
                j = self._school(name)
                if self._theta is not None:
                    return self._theta.summary(j, name)
                out = self._mixture_block(np.array([j])).summary(0, name)
        if not out.fixed:
            mean_ok, var_ok, _ = self._moment_status(name) if name in ("mu", "tau") else (True, True, "")
            require_finite(self._where(), [name], {
                "mean": [out.mean], "sd": [out.sd], "quantiles": [list(out.quantiles.values())],
                "error of the mean": [out.error.mean], "error of the sd": [out.error.sd],
                "error of the quantiles": [list(out.error.quantiles.values())]}, mean_ok=mean_ok, var_ok=var_ok)
        self._summaries[name] = out
        return out

    def theta_block(self) -> SummaryBlock:
        """All J theta summaries as arrays (vectorised over schools, in chunks)."""
        if self._theta is None:
            step = max(1, _CHUNK // (self._rules.value.tau.size * len(LEVELS)))
            idx = np.arange(self.data.J)
            with _quiet():
                block = SummaryBlock.concatenate(
                    [self._mixture_block(idx[i : i + step]) for i in range(0, idx.size, step)])
            require_finite(self._where(), [f"theta[{j + 1}]" for j in range(self.data.J)], {
                "mean": block.mean, "sd": block.sd, "quantiles": block.q, "error of the mean": block.err_mean,
                "error of the sd": block.err_sd, "error of the quantiles": block.err_q})
            self._theta = block
        return self._theta

    def summaries(self) -> dict[str, Summary]:
        """Every quantity's summary; the J thetas are computed together, vectorised."""
        self.theta_block()
        return {name: self.summary(name) for name in self.names}

    def _fixed_value(self, name: str) -> float:
        if name == "tau":
            return self.fixed_tau
        return math.log(self.fixed_tau) if self.fixed_tau > 0 else -math.inf

    def _tau_summary(self, name: str) -> Summary:
        levels = {level_key(q): q for q in LEVELS}
        if self.fixed_tau is not None:
            v = self._fixed_value(name)
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

    def _mixture_block(self, idx: np.ndarray | None) -> SummaryBlock:
        """Summaries of mu (idx None) or of the schools idx, with their error estimates."""
        rules = [self._rules.value, *self._rules.checks]
        if idx is None:
            mixes = [mu_mixture(r) for r in rules]
            mean_ok, var_ok, note = self._moment_status("mu")
        else:
            mixes = [theta_mixture(self.schools, r, idx) for r in rules]
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
        return SummaryBlock(mean, sd, q, err_mean, err_sd, err_q, note)

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
            v = self._fixed_value(name)
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
                return np.full(q.shape, self._fixed_value(name))
            u = self.fine.quantile(q.ravel()).reshape(q.shape)
            return np.exp(u) if name == "tau" else u
        mix = self._mixture(name, self._rules.value)
        flat = q.ravel()
        out = np.empty_like(flat)
        step = max(1, _CHUNK // mix.w.size)
        for i in range(0, flat.size, step):
            out[i : i + step] = solve_quantiles(mix, flat[i : i + step])[0][0]
        return out.reshape(q.shape)

    def quantile_and_density(self, name: str, prob: float) -> tuple[float, float]:
        """The ``prob`` quantile of ``name`` and the posterior density there: what every check of a fit
        against this reference compares with, so each is solved once per reference (a matrix checks
        many fits of one problem) and kept."""
        key = (name, float(prob))
        if key not in self._at_quantile:
            x = float(self.quantile(name, prob))
            self._at_quantile[key] = (x, float(self.pdf(name, x)))
        return self._at_quantile[key]

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
        keys = [level_key(v) for v in LEVELS]
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

    Results are cached on (data, prior, options): the objects are immutable and hashable. Raises
    PosteriorError (a UsageError) when the posterior is improper or the grid cannot be built for it.
    """
    return _posterior(data, prior, GridOptions(**grid_opts))


@functools.lru_cache(maxsize=16)
def _posterior(data: SchoolsData, prior: Prior, opts: GridOptions) -> Reference:
    schools = Schools.of(data)
    if prior.tau_fixed:
        return Reference(data, prior, None, None, None, schools, fixed_rules(schools, prior))
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
    try:
        window = find_domain(logf, support, centre, k, opts.drop)
        fine, coarse = refine(logf, window, opts, k)
    except FloatingPointError as e:  # the density does not decay, or has no mass the grid can see
        raise PosteriorError(f"data {data.name} (J = {data.J}), prior {prior}: the reference cannot "
                             f"integrate p(tau | y) ({e}); use a less extreme prior or rescale the data") from None
    lost = (fine.edge_density[0] if math.isinf(support[0]) else 0.0) + (
        fine.edge_density[1] if math.isinf(support[1]) else 0.0
    )
    rules = make_rules(schools, prior, fine, coarse, opts.compress)
    info = GridInfo(fine.panels, fine.order, coarse.panels, window, lost, rules.nodes, opts)
    return Reference(data, prior, fine, coarse, info, schools, rules)
