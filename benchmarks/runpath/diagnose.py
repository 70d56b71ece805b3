"""Diagnostics computed by arviz-stats for every engine alike (never by a PPL's own summary).

Small typed functions over a RunResult's draws; the run path never computes statistics itself.
"""

from __future__ import annotations

from typing import NamedTuple

import arviz_stats as azs
import numpy as np

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


def _values(ds) -> np.ndarray:
    return np.concatenate([np.ravel(ds[v].values) for v in ds.data_vars])


def diagnose(draws, max_treedepth: int) -> Diagnostics:
    """Worst-case bulk/tail ESS and rank-normalised split R-hat over every scalar of mu, tau, theta."""
    names = _vars(draws)
    ess_bulk = azs.ess(draws, var_names=names, method="bulk")
    ess_tail = azs.ess(draws, var_names=names, method="tail")
    rhat = azs.rhat(draws, var_names=names, method="rank")
    stats = draws["sample_stats"]
    bfmi = azs.bfmi(draws)
    posterior = draws["posterior"]
    diverging = np.asarray(stats["diverging"].values, dtype=bool)
    return Diagnostics(
        min_ess_bulk=float(np.min(_values(ess_bulk.dataset))),
        min_ess_tail=float(np.min(_values(ess_tail.dataset))),
        max_rhat=float(np.max(_values(rhat.dataset))),
        divergences=int(diverging.sum()),
        divergences_per_chain=[int(x) for x in diverging.reshape(diverging.shape[0], -1).sum(axis=1)],
        min_bfmi=float(np.min(bfmi.dataset["energy"].values)),
        treedepth_hits=int((stats["tree_depth"].values >= max_treedepth).sum()),
        gradient_evals=int(stats["n_steps"].values.sum()),
        mean_step_size=float(stats["step_size"].values.mean()),
        n_draws=int(posterior.sizes["chain"] * posterior.sizes["draw"]),
    )
