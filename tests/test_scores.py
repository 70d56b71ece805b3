"""Scores of approximations against the exact posterior: W1, mean error, sd ratio, coverage, energy
distance, PSIS, verdict.

Tolerances and where they come from:

- W1 against a closed form: the triangle inequality gives |W1(F_n, F) - W1(G, F)| <= W1(F_n, G) for
  draws from G, whose mean is ``iid_expected`` (1.288 s / sqrt(n) for a normal) and whose sd is
  ~0.34 of that (0.44 / 1.29 measured over 400 replicates of n = 1000); 5 x iid_expected is > 10 sd
  above the mean of that bound.
- W1 piecewise integration vs a closed form for the normal (integral of Phi in closed form, the
  crossing by its quantile): agreement to the reported numerical ``error`` plus 1e-12 round-off.
- Exact iid draws (a fixed seed; the bounds hold for ~all seeds): each z-like score within 4 of its
  standard error (P(|z| > 4) = 6e-5 per scalar, 11 scalars: ~7e-4 for a random seed); W1 below
  5 x its iid expectation (as above); energy distance z < 5 against its own exact-vs-exact null.
- A shifted / narrowed sample must fail those same checks by many standard errors (the test can fail).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from models import PRESETS, RUBIN
from reference import posterior
from reference.check import iid_as_draws
from reference.scores import KHAT_OK, MEAN_TOL, as_draws, format_scores, psis, score, score_psis, verdict
from reference.wasserstein import wasserstein1

#: sqrt(2/pi) * integral sqrt(Phi (1 - Phi)) dz: E[sqrt(n) W1(F_n, N(0, 1))] as n -> infinity
NORMAL_W1_CONSTANT = 1.2883791903028585
Y, SIGMA = np.array(RUBIN.y), np.array(RUBIN.sigma)


@pytest.fixture(scope="module")
def ref():
    return posterior(RUBIN, PRESETS["default"])


@pytest.fixture(scope="module")
def exact_scores(ref):
    tree = iid_as_draws(ref.draws(4000, seed=20261204), chains=4, school=RUBIN.school)
    return score(tree, ref, seed=1, energy_replicates=20)


def _log_post(mu, tau, theta):
    """log p(mu, log tau, theta | y) + const under the default prior (Jacobian tau included)."""
    return (stats.norm.logpdf(Y, theta, SIGMA).sum(-1) + stats.norm.logpdf(theta, mu[:, None], tau[:, None]).sum(-1)
            + stats.norm.logpdf(mu, 0, 5) + stats.halfcauchy.logpdf(tau, scale=5) + np.log(tau))


# --- W1 against closed forms ------------------------------------------------------------------------


@pytest.mark.parametrize("a, b, s", [(0.0, 1.0, 2.0), (3.0, -0.5, 0.7), (1.0, 1.0, 1.0)])
def test_w1_two_normals_shifted_is_the_shift(a, b, s):
    n = 20_000
    x = np.random.default_rng(7).normal(b, s, n)
    r = wasserstein1(x, stats.norm(a, s).cdf)
    assert r.iid_expected == pytest.approx(NORMAL_W1_CONSTANT * s / math.sqrt(n), rel=0.01)
    assert abs(r.distance - abs(a - b)) <= 5 * r.iid_expected
    assert r.error < 1e-6 * s


@pytest.mark.parametrize("s1, s2", [(1.0, 3.0), (2.0, 1.5)])
def test_w1_two_normals_scaled_is_sd_difference_times_sqrt_2_over_pi(s1, s2):
    n = 20_000
    x = np.random.default_rng(8).normal(0.0, s1, n)
    r = wasserstein1(x, stats.norm(0.0, s2).cdf)
    assert abs(r.distance - abs(s1 - s2) * math.sqrt(2 / math.pi)) <= 5 * NORMAL_W1_CONSTANT * s1 / math.sqrt(n)


def _w1_closed_form(x, w, IF, ppf, upper_tail):
    """W1 of weighted draws to a distribution with integral_{-inf}^v F = IF(v), quantile ppf and
    integral_v^inf (1 - F) = upper_tail(v): exact on every piece, the crossings by the quantile."""
    o = np.argsort(x)
    xs, c = x[o], np.cumsum((w / w.sum())[o])
    total = IF(xs[0]) + upper_tail(xs[-1])
    for a, b, level in zip(xs[:-1], xs[1:], c[:-1]):
        x_star = ppf(level)
        if a < x_star < b:
            total += level * (x_star - a) - (IF(x_star) - IF(a)) + (IF(b) - IF(x_star)) - level * (b - x_star)
        else:
            total += abs(level * (b - a) - (IF(b) - IF(a)))
    return total


def _normal_closed_form(x, w, m, s):
    def IF(v):  # integral_{-inf}^v Phi((t - m)/s) dt
        z = (v - m) / s
        return s * (z * stats.norm.cdf(z) + stats.norm.pdf(z))

    return _w1_closed_form(x, w, IF, lambda p: m + s * stats.norm.ppf(p), lambda v: (m - v) + IF(v))


@pytest.mark.parametrize("n", [1, 5, 60, 1500])
def test_w1_piecewise_integration_matches_the_closed_form(n):
    rng = np.random.default_rng(n)
    x, w = rng.normal(0.0, 1.3, n), rng.random(n)
    r = wasserstein1(x, stats.norm(0.3, 1.5).cdf, weights=w)
    assert abs(r.distance - _normal_closed_form(x, w, 0.3, 1.5)) <= r.error + 1e-12


def test_w1_half_line_support_and_bad_input():
    """Exponential(1) on tau >= 0: integral_0^v F = v - 1 + exp(-v), upper tail exp(-v)."""
    rng = np.random.default_rng(3)
    x, w = rng.exponential(2.0, 50), rng.random(50)
    r = wasserstein1(x, stats.expon().cdf, weights=w, lower=0.0)
    exact = _w1_closed_form(x, w, lambda v: v - 1 + np.exp(-v), lambda p: -np.log1p(-p), lambda v: np.exp(-v))
    assert abs(r.distance - exact) <= r.error + 1e-12
    with pytest.raises(ValueError, match="weights"):
        wasserstein1(x, stats.expon().cdf, weights=-np.ones(50))
    with pytest.raises(ValueError, match="finite"):
        wasserstein1([1.0, np.nan], stats.norm().cdf)


# --- exact iid draws score as exact --------------------------------------------------------------


def test_exact_draws_score_zero_within_their_errors(exact_scores):
    s = exact_scores
    assert list(s.marginals) == ["mu", "tau", "log_tau", *(f"theta[{j + 1}]" for j in range(8))]
    for m in s.marginals.values():
        assert m.n_eff == pytest.approx(4000)
        assert abs(m.mean_error) <= 4 * m.mean_error_se, m
        assert abs(m.sd_ratio - 1) <= 4 * m.sd_ratio_se, m
        assert abs(m.coverage - 0.9) <= 4 * m.coverage_se, m
        assert m.w1 <= 5 * m.w1_iid, m
        assert m.w1_error < 1e-3 * m.w1_iid, m  # the integration is not what limits the check
    e = s.energy
    assert e.n == e.m == 2000 and e.replicates == 20 and e.dims[:2] == ("mu", "log_tau")
    assert e.null_sd > 0 and e.z < 5 and e.p_value > 0.05
    v = verdict(s)
    assert v.truly_fine and v.failed == [] and v.khat_ok is None
    assert "truly fine: True" in format_scores(s)


def test_plain_arrays_and_datatree_give_the_same_scores(ref):
    raw = ref.draws(400, seed=3)
    a = score(raw, ref, energy=False)
    b = score(iid_as_draws(raw, chains=4, school=RUBIN.school), ref, energy=False)
    for name in a.marginals:
        assert a.marginals[name] == pytest.approx(b.marginals[name])
    assert as_draws(raw, ref).theta.shape == (400, 8)


def test_shifted_and_narrowed_draws_are_scored_as_such(ref):
    raw = ref.draws(4000, seed=21)
    mu_sd = ref.summary("mu").sd
    m_log = ref.summary("log_tau").mean
    bad = {"mu": raw["mu"] + 0.5 * mu_sd,  # mean error +0.5 sd, W1 exactly the shift (a translate)
           "tau": np.exp(m_log + 0.6 * (np.log(raw["tau"]) - m_log)),  # log tau sd ratio ~0.6
           "theta": raw["theta"]}
    s = score(bad, ref, seed=2, energy_replicates=10)
    mu, lt = s.marginals["mu"], s.marginals["log_tau"]
    assert abs(mu.mean_error - 0.5) <= 4 * mu.mean_error_se
    assert abs(mu.w1 - 0.5 * mu_sd) <= 5 * mu.w1_iid
    assert abs(lt.sd_ratio - 0.6) <= 4 * lt.sd_ratio_se
    assert lt.coverage < 0.9 - 10 * lt.coverage_se  # too narrow: misses exact mass
    assert s.energy.z > 10 and s.energy.p_value == pytest.approx(1 / 11)
    v = verdict(s)
    assert not v.truly_fine
    assert any(f.startswith("mu mean_error") for f in v.failed)
    assert any(f.startswith("log_tau sd_ratio") for f in v.failed)
    assert v.worst_mean_error[0] == "mu" and v.worst_mean_error[1] > MEAN_TOL


# --- PSIS ---------------------------------------------------------------------------------------


def test_psis_khat_small_when_q_is_p_and_large_for_a_too_narrow_q(ref):
    raw = ref.draws(4000, seed=4)
    lp = _log_post(raw["mu"], raw["tau"], raw["theta"])
    same = psis(lp, lp + 3.7)  # q = p up to a constant: uniform weights, bounded ratio
    assert same.khat < KHAT_OK and same.n_eff == pytest.approx(4000)
    # a Gaussian in (mu, log tau, theta) with half the exact sds: p/q unbounded (p's left tail in
    # log tau is ~exp(u), heavier than any Gaussian's). k-hat is noisy: with 16000 draws it ranged
    # over 0.80 .. 1.02 in 10 seeds (4000 draws: 0.70 .. 0.99, too close to the threshold)
    z = np.column_stack([raw["mu"], np.log(raw["tau"]), raw["theta"]])
    centre, sd = z.mean(0), 0.5 * z.std(0)
    x = centre + sd * np.random.default_rng(5).standard_normal((16_000, z.shape[1]))
    narrow = psis(_log_post(x[:, 0], np.exp(x[:, 1]), x[:, 2:]), stats.norm.logpdf(x, centre, sd).sum(-1))
    assert narrow.khat > KHAT_OK
    assert narrow.khat_threshold == pytest.approx(min(1 - 1 / math.log10(16_000), 0.7))
    with pytest.raises(ValueError, match="finite"):
        psis(lp, np.full_like(lp, -np.inf))


@pytest.mark.parametrize("s, lo, hi", [(1.2, -np.inf, 0.5), (0.5, 0.6, np.inf)])
def test_psis_khat_of_normal_proposals(s, lo, hi):
    """q = N(0, s) for p = N(0, 1): weights bounded for s > 1; for s < 1 the tail index is 1 - s^2
    (0.75 at s = 0.5)."""
    x = s * np.random.default_rng(6).standard_normal(4000)
    r = psis(stats.norm.logpdf(x), stats.norm.logpdf(x, scale=s))
    assert lo < r.khat < hi
    assert r.weights.sum() == pytest.approx(1.0)


def test_psis_reweighted_scores_recover_the_target(ref):
    """Exact draws of another prior's posterior (mu ~ U(-20, 20), tau ~ U(0, 50)) reweighted to the
    default prior: the likelihood cancels, log p - log q = log prior ratio, exactly."""
    q_draws = posterior(RUBIN, PRESETS["notebook"]).draws(4000, seed=9)
    log_ratio = stats.norm.logpdf(q_draws["mu"], 0, 5) + stats.halfcauchy.logpdf(q_draws["tau"], scale=5)
    s = score_psis(q_draws, ref, log_ratio, np.zeros_like(log_ratio), seed=3, energy_replicates=10)
    assert s.method == "psis" and s.psis.khat < KHAT_OK
    for m in s.marginals.values():
        assert m.n_eff == pytest.approx(s.psis.n_eff)
        assert abs(m.mean_error) <= 4 * m.mean_error_se, m
        assert abs(m.sd_ratio - 1) <= 4 * m.sd_ratio_se, m
    assert verdict(s).khat_ok is True
