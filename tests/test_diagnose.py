"""The run path's diagnostics (benchmarks/runpath/diagnose.py) are arviz-stats' own numbers."""

import arviz_stats as azs
import numpy as np
import pytest
import xarray as xr
from scipy import signal

from benchmarks.runpath.diagnose import SUMMARY_VARS, diagnose
from models import PRESETS, RUBIN
from reference import posterior

#: relative difference allowed between two summation orders of the same ~10^3 float64 terms
ROUND_OFF = 1e-12


def _draws(rho: float, seed: int = 0) -> xr.DataTree:
    """Exact posterior draws smoothed into AR(1) chains with coefficient rho (rho > 0: autocorrelated,
    the last chain shifted so that R-hat sees it), with sample stats in the layout every engine writes."""
    rng = np.random.default_rng(seed)
    chains, n = 4, 500
    sample = posterior(RUBIN, PRESETS["default"]).draws(chains * n, seed=seed)
    post = {}
    for k, v in sample.items():
        a = np.asarray(v).reshape(chains, n, *np.shape(v)[1:])
        if rho:
            a = signal.lfilter([1 - rho], [1, -rho], a - a.mean(axis=1, keepdims=True), axis=1) + a.mean()
            a[-1] += 0.5 * a.std()
        post[k] = (("chain", "draw", "school")[: a.ndim], a)
    stats = {"diverging": (("chain", "draw"), rng.random((chains, n)) < 0.01),
             "tree_depth": (("chain", "draw"), rng.integers(1, 11, (chains, n))),
             "n_steps": (("chain", "draw"), rng.integers(1, 1024, (chains, n))),
             "step_size": (("chain", "draw"), np.full((chains, n), 0.3)),
             "energy": (("chain", "draw"), rng.normal(size=(chains, n)).cumsum(axis=1))}
    return xr.DataTree.from_dict({"posterior": xr.Dataset(post), "sample_stats": xr.Dataset(stats)})


@pytest.mark.parametrize("rho", [0.0, 0.9])
def test_worst_case_ess_and_rhat_are_arviz_stats_accessor_values(rho):
    draws = _draws(rho)
    names = list(SUMMARY_VARS)
    d = diagnose(draws, max_treedepth=10)

    def values(tree):
        return np.concatenate([np.ravel(tree.dataset[v].values) for v in names])

    # the same arviz-stats functions on the same draws, laid out differently in memory: equal up to the
    # order of floating-point sums, which may differ between CPUs (ROUND_OFF, relative)
    assert d.min_ess_bulk == pytest.approx(np.min(values(azs.ess(draws, var_names=names, method="bulk"))),
                                           rel=ROUND_OFF)
    assert d.min_ess_tail == pytest.approx(np.min(values(azs.ess(draws, var_names=names, method="tail"))),
                                           rel=ROUND_OFF)
    assert d.max_rhat == pytest.approx(np.max(values(azs.rhat(draws, var_names=names, method="rank"))),
                                       rel=ROUND_OFF)
    stats = draws["sample_stats"]
    assert d.divergences == int(stats["diverging"].values.sum())
    assert d.treedepth_hits == int((stats["tree_depth"].values >= 10).sum())
    assert d.n_draws == 2000
    assert (d.max_rhat > 1.05 and d.min_ess_bulk < 200) if rho else (d.max_rhat < 1.02 and d.min_ess_bulk > 1000)
