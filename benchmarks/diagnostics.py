"""Diagnostics computed by arviz-stats for every engine alike (never by a PPL's own summary).

Small typed functions over a RunResult's draws; the runner never computes statistics itself.
"""

from __future__ import annotations

from typing import NamedTuple

import arviz_stats as azs
import numpy as np

#: the scalars whose worst-case ESS and R-hat summarise a fit (theta_tilde is derived, not reported)
SUMMARY_VARS = ("mu", "tau", "theta")


class Diagnostics(NamedTuple):
    min_ess_bulk: float
    min_ess_tail: float
    max_rhat: float
    divergences: int
    min_bfmi: float
    treedepth_hits: int
    gradient_evals: int  # leapfrog steps after warmup, all chains
    mean_step_size: float
    n_draws: int  # chains * draws


def _vars(draws) -> list[str]:
    return [v for v in SUMMARY_VARS if v in draws["posterior"].data_vars]


def _min_over(ds) -> float:
    values = np.concatenate([np.ravel(ds[v].values) for v in ds.data_vars])
    return float(np.min(values))


def _max_over(ds) -> float:
    values = np.concatenate([np.ravel(ds[v].values) for v in ds.data_vars])
    return float(np.max(values))


def diagnose(draws, max_treedepth: int) -> Diagnostics:
    """Worst-case bulk/tail ESS and rank-normalised split R-hat over every scalar of mu, tau, theta."""
    names = _vars(draws)
    ess_bulk = azs.ess(draws, var_names=names, method="bulk")
    ess_tail = azs.ess(draws, var_names=names, method="tail")
    rhat = azs.rhat(draws, var_names=names, method="rank")
    stats = draws["sample_stats"]
    bfmi = azs.bfmi(draws)
    posterior = draws["posterior"]
    return Diagnostics(
        min_ess_bulk=_min_over(ess_bulk.dataset),
        min_ess_tail=_min_over(ess_tail.dataset),
        max_rhat=_max_over(rhat.dataset),
        divergences=int(stats["diverging"].values.sum()),
        min_bfmi=float(np.min(bfmi.dataset["energy"].values)),
        treedepth_hits=int((stats["tree_depth"].values >= max_treedepth).sum()),
        gradient_evals=int(stats["n_steps"].values.sum()),
        mean_step_size=float(stats["step_size"].values.mean()),
        n_draws=int(posterior.sizes["chain"] * posterior.sizes["draw"]),
    )
