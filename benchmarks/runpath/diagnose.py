"""Diagnostics computed by arviz-stats for every engine alike (never by a PPL's own summary).

Small typed functions over a RunResult's draws; the run path never computes statistics itself.

Nested R-hat (Margossian, Hoffman, Sountsov, Riou-Durand, Vehtari & Gelman 2024, "Nested R-hat:
assessing the convergence of Markov chain Monte Carlo when running many short chains", Bayesian
Analysis, doi:10.1214/24-BA1453) is :func:`nested_rhat`: the paper's nR-hat = sqrt(1 + B/W) on the
draws themselves (no splitting, no rank normalisation), over K superchains of M chains that share an
initial point. An engine records M as ``draws["posterior"].attrs["superchain_size"]`` (chains 0..M-1
form superchain 0, and so on); absent, M = 1 and every chain is its own superchain. It gives the same
numbers as arviz-stats' ``rhat_nested(method="identity")`` (tests/test_diagnose.py), in a few array
operations where arviz-stats loops over the superchains with a mask over all chains each, a cost of
K x chains: measured here, 10 scalars x 100 draws, M = 1, 0.29 s at 1024 chains and 1.8 s at 4096,
growing as chains^2 toward the 10^5 chains a many-chain sampler runs.
"""

from __future__ import annotations

from typing import NamedTuple

import arviz_stats as azs
import numpy as np
from arviz_stats.base import array_stats
from arviz_stats.validate import validate_ci_prob

__all__ = ["SUMMARY_VARS", "SUPERCHAIN_ATTR", "Diagnostics", "diagnose", "superchain_size", "nested_rhat"]

#: the scalars whose worst-case ESS and R-hat summarise a fit (theta_tilde is derived, not reported)
SUMMARY_VARS = ("mu", "tau", "theta")

#: the posterior attribute in which an engine records M, the number of chains per superchain
SUPERCHAIN_ATTR = "superchain_size"


class Diagnostics(NamedTuple):
    min_ess_bulk: float
    min_ess_tail: float
    max_rhat: float
    divergences: int
    divergences_per_chain: list[int]
    min_bfmi: float
    treedepth_hits: int
    gradient_evals: int  # leapfrog steps after warmup, all chains
    mean_step_size: float
    n_draws: int  # chains * draws
    max_nested_rhat: float | None  # over every scalar; None where undefined (one superchain)
    superchains: int  # K = chains / M (superchain_size)


def _vars(draws) -> list[str]:
    return [v for v in SUMMARY_VARS if v in draws["posterior"].data_vars]


def _scalars(posterior, names: list[str]) -> np.ndarray:
    """Every scalar of ``names`` side by side: (chain, draw, scalar)."""
    arrays = [posterior[v].values for v in names]
    return np.concatenate([a.reshape(a.shape[0], a.shape[1], -1) for a in arrays], axis=2)


def superchain_size(draws) -> int:
    """M, the chains per superchain the engine recorded (1 when it recorded none); a value that is not
    a positive integer dividing the number of chains is an engine's bug, and raises."""
    posterior = draws["posterior"]
    m = posterior.attrs.get(SUPERCHAIN_ATTR, 1)
    chains = posterior.sizes["chain"]
    if isinstance(m, (bool, np.bool_)) or not isinstance(m, (int, np.integer)) or m < 1 or chains % m:
        raise ValueError(f"posterior.attrs[{SUPERCHAIN_ATTR!r}] = {m!r}: must be a positive integer dividing "
                         f"the {chains} chains")
    return int(m)


def nested_rhat(x: np.ndarray, m: int) -> np.ndarray:
    """Nested R-hat (the paper's eq. for nR-hat) of each scalar of ``x`` (chain, draw, ...), the chains
    in K = chains / ``m`` superchains of ``m`` consecutive chains each:

        B = var_k(mean of superchain k)                       (K - 1 denominator)
        W = mean_k(Wt_k + Bt_k),  Wt_k = mean over its chains of the within-chain variance (N - 1
            denominator; 0 when N = 1),  Bt_k = variance of its M chain means (M - 1; 0 when M = 1)
        nR-hat = sqrt(1 + B / W)

    Needs K >= 2, and M >= 2 or N >= 2 (else W is 0); raises ValueError otherwise."""
    x = np.asarray(x, dtype=float)
    chains, n = x.shape[:2]
    if m < 1 or chains % m:
        raise ValueError(f"superchain size = {m}: must be a positive integer dividing the {chains} chains")
    k = chains // m
    if k < 2 or (m == 1 and n == 1):
        raise ValueError(f"{k} superchains of {m} chains x {n} draws: nested R-hat needs at least 2 "
                         "superchains, and 2 chains per superchain or 2 draws per chain")
    y = x.reshape(k, m, n, *x.shape[2:])
    chain_mean = y.mean(axis=2)  # (K, M, ...)
    within = y.var(axis=2, ddof=1).mean(axis=1) if n > 1 else 0.0
    between_chains = chain_mean.var(axis=1, ddof=1) if m > 1 else 0.0
    between_superchains = chain_mean.mean(axis=1).var(axis=0, ddof=1)
    return np.sqrt(1.0 + between_superchains / np.mean(within + between_chains, axis=0))


def diagnose(draws, max_treedepth: int) -> Diagnostics:
    """Worst-case bulk/tail ESS, rank-normalised split R-hat and nested R-hat (over the engine's
    superchains) over every scalar of mu, tau, theta.

    arviz-stats' array functions on the scalars stacked in one array: the functions its DataTree
    accessors call per variable (the same numbers, tests/test_diagnose.py), without their per-variable
    xarray round trips; the tail ESS at arviz-stats' default interval (``validate_ci_prob(None)``)."""
    names = _vars(draws)
    scalars = _scalars(draws["posterior"], names)
    ess_bulk = array_stats.ess(scalars, chain_axis=0, draw_axis=1, method="bulk")
    ess_tail = array_stats.ess(scalars, chain_axis=0, draw_axis=1, method="tail", prob=validate_ci_prob(None))
    rhat = array_stats.rhat(scalars, chain_axis=0, draw_axis=1, method="rank")
    m = superchain_size(draws)
    chains, n = scalars.shape[:2]
    nested = nested_rhat(scalars, m) if chains // m >= 2 and (m > 1 or n > 1) else None
    stats = draws["sample_stats"]
    bfmi = azs.bfmi(draws)
    posterior = draws["posterior"]
    diverging = np.asarray(stats["diverging"].values, dtype=bool)
    return Diagnostics(
        min_ess_bulk=float(np.min(ess_bulk)),
        min_ess_tail=float(np.min(ess_tail)),
        max_rhat=float(np.max(rhat)),
        divergences=int(diverging.sum()),
        divergences_per_chain=[int(x) for x in diverging.reshape(diverging.shape[0], -1).sum(axis=1)],
        min_bfmi=float(np.min(bfmi.dataset["energy"].values)),
        treedepth_hits=int((stats["tree_depth"].values >= max_treedepth).sum()),
        gradient_evals=int(stats["n_steps"].values.sum()),
        mean_step_size=float(stats["step_size"].values.mean()),
        n_draws=int(posterior.sizes["chain"] * posterior.sizes["draw"]),
        max_nested_rhat=None if nested is None else float(np.max(nested)),
        superchains=int(posterior.sizes["chain"] // m),
    )
