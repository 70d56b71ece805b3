"""The run path's diagnostics (benchmarks/runpath/diagnose.py) are arviz-stats' own numbers."""

import arviz_stats as azs
import numpy as np
import pytest
import xarray as xr
from arviz_stats.base import array_stats
from scipy import signal, stats

from benchmarks.runpath.diagnose import SUMMARY_VARS, Diagnostics, diagnose, nested_rhat
from benchmarks.runpath.record import RECORD_FIELDS
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


# --- nested R-hat (Margossian et al. 2024) ---------------------------------------------------------


def test_nested_rhat_hand_computed():
    # K = 2 superchains of M = 2 chains x N = 4 draws, one scalar:
    #   chain means 1, 3 | 5, 8; within-chain variances (N - 1) 4/3, 4/3 | 4/3, 16/3
    #   superchain means 2, 6.5 -> B = (2.25^2 + 2.25^2) / 1 = 81/8
    #   Wt = 4/3, 10/3; Bt = var(1, 3) = 2, var(5, 8) = 9/2 -> W = (4/3 + 2 + 10/3 + 9/2) / 2 = 67/12
    #   nR-hat = sqrt(1 + (81/8) / (67/12)) = sqrt(377/134)
    x = np.array([[0, 2, 0, 2], [2, 4, 2, 4], [4, 6, 4, 6], [6, 10, 6, 10]], dtype=float)[:, :, None]
    assert nested_rhat(x, 2)[0] == pytest.approx(np.sqrt(377 / 134), rel=ROUND_OFF)
    # M = 1: chain means 1, 3, 5, 8 -> B = var = 107/12; W = mean(4/3, 4/3, 4/3, 16/3) = 7/3
    assert nested_rhat(x, 1)[0] == pytest.approx(np.sqrt(1 + (107 / 12) / (7 / 3)), rel=ROUND_OFF)
    # N = 1 (the paper: within-chain variance 0): the draws 0, 2, 4, 6 -> B = var(1, 5) = 8, W = mean(2, 2)
    assert nested_rhat(x[:, :1], 2)[0] == pytest.approx(np.sqrt(1 + 8 / 2), rel=ROUND_OFF)
    with pytest.raises(ValueError, match="at least 2 superchains"):
        nested_rhat(x, 4)
    with pytest.raises(ValueError, match="dividing"):
        nested_rhat(x, 3)


def test_nested_rhat_is_arviz_stats_rhat_nested_identity():
    x = np.random.default_rng(1).normal(size=(24, 30, 3)).cumsum(axis=1)
    for m in (1, 2, 3, 6, 12):
        ids = np.arange(24) // m
        expected = array_stats.rhat_nested(x, ids, method="identity", chain_axis=0, draw_axis=1)
        np.testing.assert_allclose(nested_rhat(x, m), expected, rtol=ROUND_OFF)


def test_nested_rhat_with_one_chain_per_superchain_is_classical_rhat_without_its_correction():
    # the paper's footnote: with M = 1, nR-hat^2 = 1 + B/W while the classical (non-split) R-hat^2 is
    # (N - 1)/N + B/W, so nR-hat^2 = R-hat^2 + 1/N
    n = 40
    x = np.random.default_rng(2).normal(size=(8, n, 5)).cumsum(axis=1)
    classical = array_stats.rhat(x, chain_axis=0, draw_axis=1, method="identity")
    np.testing.assert_allclose(nested_rhat(x, 1) ** 2, classical**2 + 1 / n, rtol=ROUND_OFF)


#: two-sided false-alarm probability of each chi-square bound below, per scalar
IID_ALPHA = 1e-4


@pytest.mark.parametrize(("k", "m", "n"), [(16, 64, 100), (1024, 1, 100), (16, 4, 8)])
def test_nested_rhat_of_iid_draws_is_one_within_its_sampling_variability(k, m, n):
    # iid N(0, 1) draws: the K superchain means are iid N(0, 1/(M N)), so B M N (K - 1) ~ chi2(K - 1)
    # exactly, while W -> 1 + 1/N (within-chain 1, between chains 1/N) with relative sd ~ sqrt(2/(K M N)).
    # Hence T = (nR-hat^2 - 1) M (N + 1) (K - 1) ~ chi2(K - 1): nR-hat ~ 1 + 1/(2 M (N + 1)) and each
    # scalar must lie within the chi2 quantiles at IID_ALPHA (for K = 16, M = 64, N = 100: nR-hat < 1.00022).
    x = np.random.default_rng(k * m + n).normal(size=(k * m, n, 10))
    t = (nested_rhat(x, m) ** 2 - 1) * m * (n + 1) * (k - 1)
    lo, hi = stats.chi2.ppf([IID_ALPHA / 2, 1 - IID_ALPHA / 2], k - 1)
    assert np.all((t > lo) & (t < hi)), (t, lo, hi)


def test_nested_rhat_of_iid_draws_has_its_expected_mean_over_repetitions():
    # 400 repetitions of K = 8, M = 4, N = 20, one scalar: T ~ chi2(7) (above); its mean over the
    # repetitions is within 4 standard errors (sd sqrt(2 * 7) / sqrt(400)) of 7
    k, m, n, reps = 8, 4, 20, 400
    x = np.random.default_rng(3).normal(size=(reps, k * m, n))
    t = np.array([(nested_rhat(r[:, :, None], m)[0] ** 2 - 1) * m * (n + 1) * (k - 1) for r in x])
    assert abs(t.mean() - (k - 1)) < 4 * np.sqrt(2 * (k - 1) / reps)


def _ar1_superchains(k: int, m: int, n: int, warmup: int, phi: float, seed: int) -> np.ndarray:
    """K superchains of M AR(1) chains (stationary N(0, 1), coefficient phi), superchain k started at
    +10 (k even) or -10 (k odd), run ``warmup`` steps, then n kept: (chain, draw)."""
    rng = np.random.default_rng(seed)
    x = np.repeat(np.where(np.arange(k) % 2 == 0, 10.0, -10.0), m)
    out = np.empty((k * m, n))
    for t in range(warmup + n):
        x = phi * x + np.sqrt(1 - phi**2) * rng.normal(size=k * m)
        if t >= warmup:
            out[:, t - warmup] = x
    return out


def test_nested_rhat_flags_superchains_that_have_not_forgotten_their_start():
    # phi = 0.95 after 30 steps still remembers 10 * 0.95^30 = 2.1 of its start: the superchains differ
    x = _ar1_superchains(k=16, m=64, n=50, warmup=30, phi=0.95, seed=4)
    assert nested_rhat(x[:, :, None], 64)[0] > 1.01
    # the same chains run long enough (10 * 0.95^400 ~ 1e-8) pass
    x = _ar1_superchains(k=16, m=64, n=50, warmup=400, phi=0.95, seed=4)
    assert nested_rhat(x[:, :, None], 64)[0] < 1.01


def _many_chain_tree(chains: int, n: int, superchain_size: int | None, seed: int = 5) -> xr.DataTree:
    rng = np.random.default_rng(seed)
    post = xr.Dataset({"mu": (("chain", "draw"), rng.normal(size=(chains, n))),
                       "tau": (("chain", "draw"), rng.gamma(2.0, size=(chains, n))),
                       "theta": (("chain", "draw", "school"), rng.normal(size=(chains, n, 8)))})
    if superchain_size is not None:
        post.attrs["superchain_size"] = superchain_size
    shape = (chains, n)
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros(shape, bool)),
                        "tree_depth": (("chain", "draw"), np.full(shape, 3)),
                        "n_steps": (("chain", "draw"), np.full(shape, 7)),
                        "step_size": (("chain", "draw"), np.full(shape, 0.5)),
                        "energy": (("chain", "draw"), rng.normal(size=shape).cumsum(axis=1))})
    return xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})


@pytest.mark.parametrize(("size", "superchains"), [(None, 64), (1, 64), (4, 16)])
def test_diagnose_reports_nested_rhat_over_the_recorded_superchains(size, superchains):
    draws = _many_chain_tree(64, 20, size)
    d = diagnose(draws, max_treedepth=10)
    assert d.superchains == superchains
    scalars = np.concatenate([draws["posterior"]["mu"].values[..., None], draws["posterior"]["tau"].values[..., None],
                              draws["posterior"]["theta"].values], axis=2)
    assert d.max_nested_rhat == pytest.approx(np.max(nested_rhat(scalars, 64 // superchains)), rel=ROUND_OFF)
    assert set(Diagnostics._fields) >= {"max_nested_rhat", "superchains"}
    assert set(d._asdict()) <= set(RECORD_FIELDS)


def test_diagnose_nested_rhat_is_none_with_one_superchain_and_a_bad_size_raises():
    assert diagnose(_many_chain_tree(8, 20, 8), max_treedepth=10).max_nested_rhat is None
    with pytest.raises(ValueError, match="superchain_size"):
        diagnose(_many_chain_tree(8, 20, 3), max_treedepth=10)
