"""The gate's power study (benchmarks/jobs/power/): the injections on synthetic numbers, and the
resampling estimate on synthetic pools whose answer is known. Fast: no engine runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.engines.base import Settings
from benchmarks.jobs.power.analyse import TARGET_DROP, n_within, requirement, wall_estimate
from benchmarks.jobs.power.command import LEVELS, cli, parse_variant
from benchmarks.jobs.power.inject import drop_ess, scale_divergences, shift_draws
from benchmarks.jobs.power.report import _bias_bound, markdown
from benchmarks.jobs.power.resample import (
    Levels,
    PoolRun,
    ess_power_analytic,
    estimate,
    fisher_regressed,
    level_at_power,
    n_for_power,
    smallest_caught_drop,
)
from benchmarks.jobs.regress.config import load_config
from benchmarks.jobs.regress.stats import ess_drop_test
from benchmarks.jobs.regress.thresholds import ALPHA, DIVERGENCE_RISE_FLOOR
from models.errors import UsageError
from models.files import write_json
from models.specs import resolve_data, resolve_prior
from reference import posterior
from reference.check import check, iid_as_draws

#: a Monte Carlo estimate of a probability p from R replicates is within this many standard errors
#: sqrt(p (1 - p) / R) of p except with probability ~6e-5 (normal approximation)
MC_SIGMAS = 4.0

# --- injections -------------------------------------------------------------------------------------


def test_ess_drop_scales_by_one_minus_d_and_zero_leaves_it():
    x = [0.05, 0.071, 0.0633]
    assert np.array_equal(drop_ess(x, 0.0), np.asarray(x))
    assert drop_ess(x, 0.25) == pytest.approx(0.75 * np.asarray(x), rel=1e-12)
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="ESS drop"):
            drop_ess(x, bad)


def test_divergence_rate_times_k():
    counts, totals = np.array([0, 3, 12, 40]), np.array([300, 300, 300, 300])
    rng = np.random.default_rng(1)
    assert np.array_equal(scale_divergences(counts, totals, 1.0, rng), counts)
    assert rng.random() == np.random.default_rng(1).random()  # k = 1 draws nothing
    assert np.array_equal(scale_divergences(counts, totals, 2.0, rng), 2 * counts)
    assert np.array_equal(scale_divergences(counts, totals, 8.0, rng), [0, 24, 96, 300])  # capped at transitions
    # fractional k: m c + Binomial(c, f); chains without divergences keep none
    c = np.full(2000, 50)
    for k in (0.5, 2.5):
        out = scale_divergences(c, np.full(2000, 1000), k, np.random.default_rng(7))
        f = k - math.floor(k)
        sd_total = math.sqrt(c.sum() * f * (1 - f))
        assert abs(out.sum() - k * c.sum()) < MC_SIGMAS * sd_total
    assert np.all(scale_divergences(np.zeros(5, int), np.full(5, 300), 3.7, rng) == 0)
    with pytest.raises(ValueError, match="transitions"):
        scale_divergences([5], [3], 2.0, rng)
    with pytest.raises(ValueError, match="multiplier"):
        scale_divergences([1], [3], -1.0, rng)


@pytest.fixture(scope="module")
def exact():
    data, prior = resolve_data("rubin"), resolve_prior("default")
    ref = posterior(data, prior)
    tree = iid_as_draws(ref.draws(2000, seed=11), 2, data.school)
    return ref, tree


def test_bias_shift_moves_mu_and_theta_only_and_flips_the_check(exact):
    ref, tree = exact
    post = tree["posterior"].to_dataset()
    same = shift_draws(tree, 0.0)["posterior"].to_dataset()
    for v in ("mu", "tau", "theta"):
        assert np.array_equal(same[v].values, post[v].values)
    s = 2.0 * ref.summary("mu").sd
    moved = shift_draws(tree, s)["posterior"].to_dataset()
    assert np.allclose(moved["mu"].values - post["mu"].values, s)
    assert np.allclose(moved["theta"].values - post["theta"].values, s)
    assert np.array_equal(moved["tau"].values, post["tau"].values)
    assert check(tree, ref).passed  # exact iid draws pass (the check's false-alarm rate is 1 %)
    failed = check(shift_draws(tree, s), ref)
    assert not failed.passed and all(f.startswith(("mu", "theta")) for f in failed.failed)


# --- resampling -------------------------------------------------------------------------------------


def test_smallest_caught_drop_matches_the_test_on_injected_values():
    rng = np.random.default_rng(3)
    for _ in range(40):
        n = int(rng.integers(3, 15))
        base, new = np.exp(rng.normal(-3, 0.3, n)), np.exp(rng.normal(-3, 0.3, n))
        d_star = smallest_caught_drop(base, new)
        for d in (0.0, 0.05, 0.12, 0.25, 0.4, 0.6, 0.8):
            if abs(d - d_star) > 1e-9:
                assert ess_drop_test(base, drop_ess(new, d)).regressed == (d_star < d), (n, d, d_star)


def _pool(m: int, rng, *, log_sd=0.3, div=(0, 0), verdicts=(True,) * 4) -> list[PoolRun]:
    return [PoolRun(seed=i, ess=float(np.exp(rng.normal(-3, log_sd))), divergences=tuple(div),
                    transitions=(300,) * len(div), verdicts=tuple(verdicts)) for i in range(m)]


LV = Levels(drops=(0.0, 0.25, 0.5), rates=(1.0, 2.0, 8.0), biases=(0.0, 0.1, 0.2, 0.3))


def test_ess_power_and_false_alarm_match_the_noncentral_t():
    """Lognormal ESS per gradient with a known spread: power at a 25 % drop is the noncentral-t value and
    the false-alarm rate is at most alpha, within Monte Carlo error."""
    log_sd, n, reps = 0.3, 10, 600
    runs = _pool(400, np.random.default_rng(5), log_sd=log_sd)
    r = estimate(runs, n, LV, replicates=reps, rng=np.random.default_rng(6), check_alpha=0.01)
    want = ess_power_analytic(n, TARGET_DROP, log_sd)
    got = r["ess_drop"]["power"][1]
    assert abs(got - want) < MC_SIGMAS * math.sqrt(want * (1 - want) / reps) + 0.03  # + the pool's own spread
    assert r["ess_drop"]["false_alarm"] <= ALPHA + MC_SIGMAS * math.sqrt(ALPHA / reps)
    assert r["ess_drop"]["power"] == sorted(r["ess_drop"]["power"])
    assert 0 < r["ess_drop"]["d80"] < 1
    assert not r["divergence_rise"]["applicable"] and r["divergence_rise"]["k80"] is None
    assert r["divergence_rise"]["power"] == [0.0, 0.0, 0.0]


def test_divergences_and_verdicts_with_known_answers():
    # identical runs: an unchanged rate never fails, x8 always does
    runs = [PoolRun(seed=i, ess=0.05 + 0.001 * i, divergences=(3, 5), transitions=(300, 300),
                    verdicts=(True, True, True, False)) for i in range(20)]
    r = estimate(runs, 5, LV, replicates=50, rng=np.random.default_rng(0), check_alpha=0.01)
    assert r["divergence_rise"]["applicable"]
    assert r["divergence_rise"]["power"][0] == 0.0 and r["divergence_rise"]["power"][-1] == 1.0
    # every seed passes until the bias reaches 0.3, then fails: the gate's Fisher test, 5/5 -> 0/5
    # passes, has p = 1/252 < 0.01
    assert r["bias"]["power"] == [0.0, 0.0, 0.0, 1.0]
    assert r["bias"]["delta80"] == pytest.approx(0.28)
    assert r["bias"]["mean_at_risk"] == 5
    # the flip test the gate used before: 5 flips of 5 (2 needed at n = 5)
    assert r["bias_flip"]["power"] == [0.0, 0.0, 0.0, 1.0]
    assert fisher_regressed([True] * 5, [False] * 5) and not fisher_regressed([True] * 5, [False] * 4 + [True])
    assert r["gate_false_alarm"] == 0.0
    # a baseline that fails the reference everywhere leaves nothing at risk: no power against bias
    dead = [PoolRun(seed=p.seed, ess=p.ess, divergences=p.divergences, transitions=p.transitions,
                    verdicts=(False,) * 4) for p in runs]
    r = estimate(dead, 5, LV, replicates=20, rng=np.random.default_rng(0), check_alpha=0.01)
    assert r["bias"]["power"] == [0.0] * 4 and r["bias"]["delta80"] is None
    with pytest.raises(ValueError, match="2 n <="):
        estimate(runs, 11, LV, replicates=5, rng=np.random.default_rng(0), check_alpha=0.01)
    # draws shifted for the first 10 runs only: bias curves while 2 n <= 10, false alarms from every run
    part = runs[:10] + [PoolRun(seed=p.seed, ess=p.ess, divergences=p.divergences, transitions=p.transitions,
                                verdicts=(True,)) for p in runs[10:]]
    r5 = estimate(part, 5, LV, replicates=10, rng=np.random.default_rng(0), check_alpha=0.01)
    r6 = estimate(part, 6, LV, replicates=10, rng=np.random.default_rng(0), check_alpha=0.01)
    assert r5["bias"]["power"] == [0.0, 0.0, 0.0, 1.0] and r5["bias"]["curve_runs"] == 10
    assert r6["bias"]["power"] is None and r6["bias"]["delta80"] is None and r6["bias"]["false_alarm"] == 0.0
    with pytest.raises(ValueError, match="one verdict per bias level"):
        estimate(_pool(10, np.random.default_rng(0), verdicts=(True, True)), 3, LV, replicates=5,
                 rng=np.random.default_rng(0), check_alpha=0.01)


def test_levels_interpolation_and_analytic_seeds():
    assert level_at_power([1, 2, 4], [0.1, 0.5, 0.9]) == pytest.approx(2 + 2 * (0.3 / 0.4))
    assert level_at_power([0, 0.1], [0.85, 1.0]) == 0
    assert level_at_power([1, 2], [0.1, 0.5]) is None
    with pytest.raises(ValueError, match="start at"):
        Levels(drops=(0.1,), rates=(1.0,), biases=(0.0,))
    n = n_for_power(0.25, 0.3)
    assert ess_power_analytic(n, 0.25, 0.3) >= 0.8 > ess_power_analytic(n - 1, 0.25, 0.3)
    assert n_for_power(0.25, 0.6) > n  # a wider spread needs more seeds
    assert 0.25 in LEVELS.drops and 2.0 in LEVELS.rates


def test_wall_estimates_and_requirements():
    summaries = {"a/x": {"first_run_s": 20.0, "run_s_median": 1.0}, "b/y": {"first_run_s": 5.0, "run_s_median": 2.0}}
    assert wall_estimate(summaries, 1) == 25.0 and wall_estimate(summaries, 11) == 25.0 + 10 * 3.0
    assert n_within(summaries, 100.0) == 26 and n_within(summaries, 20.0) is None
    by_n = {}
    for n, (pe, pd) in {5: (0.3, 0.5), 10: (0.85, 0.7), 20: (0.99, 0.9)}.items():
        by_n[n] = {"ess_drop": {"levels": [0.0, 0.25], "power": [0.0, pe]},
                   "divergence_rise": {"levels": [1.0, 2.0], "power": [0.0, pd], "applicable": True}}
    summary = {"ess_per_grad_log_sd": 0.3, "divergence_rate": 0.02}
    req = requirement(by_n, summary)
    assert req["ess_drop"] == {"n": 10, "how": "resampled"} and req["divergence_rise"]["n"] == 20
    # a doubled rate whose rise is below the gate's floor is no target; ESS beyond the pool is analytic
    req = requirement({5: by_n[5]}, {**summary, "divergence_rate": DIVERGENCE_RISE_FLOOR / 2})
    assert req["divergence_rise"]["n"] == 0 and "floor" in req["divergence_rise"]["how"]
    assert req["ess_drop"]["n"] == max(n_for_power(0.25, 0.3), 6)


def test_variants():
    base = Settings(chains=2, warmup=300, draws=300)
    assert parse_variant("draws=1000", base) == (Settings(chains=2, warmup=300, draws=1000), None)
    assert parse_variant("chains=4, warmup=500,seeds=200", base) == (Settings(chains=4, warmup=500, draws=300), 200)
    for bad in ("draws", "seed=3", "draws=many", "chains=0", "seeds=2"):
        with pytest.raises(UsageError, match="--variant"):
            parse_variant(bad, base)


def _power_doc() -> dict:
    """A small power document built by the real functions from a synthetic pool."""
    base = Settings(chains=2, warmup=300, draws=300)
    runs = _pool(12, np.random.default_rng(2), div=(1, 2), verdicts=(True, True, False, False))
    r = estimate(runs, 5, LV, replicates=20, rng=np.random.default_rng(1), check_alpha=0.01)
    group = {"summary": {"runs": 12, "ess_per_grad_log_sd": 0.3, "divergence_rate": 0.005, "reference_pass_rate": 1.0,
                         "run_s_median": 0.2, "first_run_s": 3.0},
             "by_n": {"5": r}, "errors": []}
    group["requirement"] = requirement({5: r}, group["summary"])
    variant = {"tag": "c2w300d300", "settings": {**base.to_dict()}, "current_n": 5, "ns": [5], "groups": {"e/p": group},
               "n_required": None, "wall_s_required": None, "wall_s_by_n": {"5": 4.0}, "meets_budget": False,
               "n_within_budget": 1000, "load_1min": [0.2, 0.3]}
    return {"created": "now", "config": {"name": "ci"}, "machine": {"cpu": "cpu", "cores": 2}, "packages": {},
            "alpha": 0.01, "power": 0.8, "replicates": 20, "resampling_seed": 1, "variants": [variant],
            "targets": {"ess_drop": 0.25, "divergence_rate": 2.0, "time_budget_s": 300.0},
            "levels": {"drops": list(LV.drops), "rates": list(LV.rates), "biases": list(LV.biases)}}


def test_report_renders():
    text = markdown(_power_doc())
    assert "## The `ci` configuration measured (its 5 seeds" in text and "| e/p |" in text
    assert "No measured configuration catches both targets" in text and "**Measured:**" not in text


def test_report_only_rerenders_and_quotes_the_measured_baseline(tmp_path):
    power = _power_doc()
    write_json(tmp_path / "power" / "power.json", power)
    ci = load_config("ci")
    write_json(tmp_path / "baselines" / "ci.json", {"config": {**ci.to_dict(), "description": "other words"},
                                                    "wall_s": 123.4, "created": "then", "seeds": ci.seeds,
                                                    "groups": {"e/p": {"runs": [{}] * len(ci.seeds)}},
                                                    "machine": {"cpu": "cpu", "cores": 2}})
    assert cli(["--report-only", "--results", str(tmp_path)]) == 0
    text = (tmp_path / "power" / "POWER.md").read_text()
    assert f"ran this configuration's {len(ci.seeds)} runs ({len(ci.seeds)} seeds) in 123 s" in text
    assert (tmp_path / "power" / "power.png").stat().st_size > 0
    assert cli(["--report-only", "--results", str(tmp_path / "empty")]) == 2  # no power.json: exit 2


def test_bias_beyond_the_kept_draws_is_bounded_by_the_largest_n_measured():
    def at(delta80, power=0.9, at_risk=30.0):
        return {"bias": {"power": None if power is None else [power], "delta80": delta80, "mean_at_risk": at_risk}}

    g = {"by_n": {"10": at(0.3), "40": at(0.08), "225": at(None, power=None)}}
    assert _bias_bound(g, 225).startswith("≤ 0.08 (caught with 40 seeds a side")
    assert _bias_bound({"by_n": {"40": at(None)}}, 225) == "not measured (2n > the seeds with shifted draws)"
    assert _bias_bound({"by_n": {"225": at(None, power=None)}}, 225).startswith("not measured")
