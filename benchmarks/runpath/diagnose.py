"""Diagnostics computed by arviz-stats for every engine alike (never by a PPL's own summary).

Small typed functions over a RunResult's draws; the run path never computes statistics itself.
"""

from __future__ import annotations

from typing import NamedTuple

import arviz_stats as azs
import numpy as np
from arviz_stats.base import array_stats
from arviz_stats.validate import validate_ci_prob

__all__ = ["SUMMARY_VARS", "Diagnostics", "diagnose"]

#: the scalars whose worst-case ESS and R-hat summarise a fit (theta_tilde is derived, not reported)
SUMMARY_VARS = ("mu", "tau", "theta")


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


def _vars(draws) -> list[str]:
    return [v for v in SUMMARY_VARS if v in draws["posterior"].data_vars]


def _scalars(posterior, names: list[str]) -> np.ndarray:
    """Every scalar of ``names`` side by side: (chain, draw, scalar)."""
    arrays = [posterior[v].values for v in names]
    return np.concatenate([a.reshape(a.shape[0], a.shape[1], -1) for a in arrays], axis=2)


def diagnose(draws, max_treedepth: int) -> Diagnostics:
    """Worst-case bulk/tail ESS and rank-normalised split R-hat over every scalar of mu, tau, theta.

    arviz-stats' array functions on the scalars stacked in one array: the functions its DataTree
    accessors call per variable (the same numbers, tests/test_diagnose.py), without their per-variable
    xarray round trips; the tail ESS at arviz-stats' default interval (``validate_ci_prob(None)``)."""
    names = _vars(draws)
    scalars = _scalars(draws["posterior"], names)
    ess_bulk = array_stats.ess(scalars, chain_axis=0, draw_axis=1, method="bulk")
    ess_tail = array_stats.ess(scalars, chain_axis=0, draw_axis=1, method="tail", prob=validate_ci_prob(None))
    rhat = array_stats.rhat(scalars, chain_axis=0, draw_axis=1, method="rank")
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
    )
