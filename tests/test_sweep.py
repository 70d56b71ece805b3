"""The sweep (issue 13): its configuration, the crossover and the check-across-the-space statistics on
synthetic records (no engine), the report they make, and one short PyStan sweep whose records must
show the classic direction (centred wins on informative data, non-centred on weak data)."""

from __future__ import annotations

import csv
import json
import math

import pytest
from conftest import require_engine
from scipy import stats

from benchmarks.cli import main as cli_main
from benchmarks.engines import default_engines
from benchmarks.engines.base import Settings
from benchmarks.jobs.config import ConfigError, specs_of
from benchmarks.jobs.sweep import CONFIG, load_sweep, parse_js, parse_scales
from benchmarks.reporting.sweep import CSV_COLUMNS, INFORMATIVENESS_COLUMNS, render_sweep
from benchmarks.reporting.sweep_figures import FIGURES
from benchmarks.reporting.sweep_stats import (
    CI_LEVEL,
    check_space,
    clopper_pearson,
    crossover,
    crossovers,
    direction,
    first_failing,
    informativeness,
    median_log,
)
from benchmarks.runpath.spec import data_for
from models import RUBIN
from models.errors import UsageError

#: the issue's minimum grid
REQUIRED_SCALES = {0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0}
SCALES = sorted(REQUIRED_SCALES)
#: crossovers below are exact up to round-off: d is linear in log S, so is the interpolation
ROUNDOFF = 1e-9


# --- the configuration -----------------------------------------------------------------------------


def test_the_default_sweep_covers_the_issue_grid():
    plan = load_sweep(CONFIG)
    specs = specs_of(plan.sections)
    assert set(plan.scales) >= REQUIRED_SCALES and sorted(plan.data) == [8, 64] and len(plan.seeds) >= 3
    assert set(plan.engines) == set(default_engines())  # the 4-chain NUTS engines, not the many-chain group
    assert len(specs) == len(default_engines()) * 2 * len(plan.scales) * 2 * len(plan.seeds)
    assert len({s.key for s in specs}) == len(specs)
    for s in specs:
        d = data_for(s.data)
        assert s.prior == "default" and s.settings == Settings(seed=s.seed)
        assert float(s.data.rpartition("=")[2]) == pytest.approx(d.sigma_scale, rel=1e-12)
        assert s.section == f"J{d.J}"
        if d.J == 8:  # Rubin's y, every sigma scaled
            assert d.y == RUBIN.y
            assert [a / b for a, b in zip(d.sigma, RUBIN.sigma)] == pytest.approx([d.sigma_scale] * 8, rel=1e-12)


def test_the_options_shrink_the_sweep():
    plan = load_sweep(CONFIG, engines=["pystan"], seeds=1, scales=[0.1, 1.0], js=[8])
    specs = specs_of(plan.sections)
    assert len(specs) == 4 and {s.data for s in specs} == {"rubin:sigma_scale=0.1", "rubin:sigma_scale=1"}


@pytest.mark.parametrize("text, parse, message", [
    ("0.1,abc", parse_scales, "'abc'"), ("0,1", parse_scales, "'0'"), ("0.1,0.1", parse_scales, "repeats"),
    ("8,x", parse_js, "'x'"), ("nan", parse_scales, "'nan'"),
])
def test_bad_options_name_the_value(text, parse, message):
    with pytest.raises(UsageError, match=message):
        parse(text)


def test_a_j_without_data_is_refused_naming_it():
    with pytest.raises(UsageError, match="--J = 16"):
        load_sweep(CONFIG, js=[16])
    assert cli_main(["sweep", "--J", "16", "--engines", "pystan"]) == 2


def test_a_template_without_the_placeholder_is_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[sweep]\nsigma_scales = [0.1]\n[sweep.data]\n8 = "rubin:sigma_scale=0.1"\n')
    with pytest.raises(ConfigError, match="sweep.data.8"):
        load_sweep(bad)


# --- the statistics on synthetic records ------------------------------------------------------------


def rec(engine, param, S, seed, grad, *, J=8, passed=True, divergences=0, rhat=1.001, error_kind=None):
    """A run-path record with only what the sweep reads."""
    base = {"engine": engine, "parameterization": param, "sigma_scale": float(S), "J": J, "seed": seed,
            "data": f"rubin-sigma_scale{S:g}", "data_spec": f"rubin:sigma_scale={S:g}", "prior": "default",
            "prior_text": "mu ~ normal(0, 5), tau ~ half_cauchy(0, 5)", "chains": 4, "warmup": 1000,
            "draws": 1000, "target_accept": 0.8, "error": None, "error_kind": None}
    if error_kind:
        return {**base, "error": f"{error_kind}: engine cannot run here", "error_kind": error_kind}
    return {**base, "min_ess_bulk": grad * 1e5, "gradient_evals": 100000, "ess_bulk_per_grad": grad,
            "ess_bulk_per_s": 1000.0, "divergences": divergences, "n_draws": 4000, "max_rhat": rhat,
            "check_passed": passed, "check_max_abs_z": 1.0 if passed else 6.0}


def classic(engine, crossings, *, J=8):
    """Records where centred ESS/grad = c x S^-1 and non-centred = c x S / S*^2, so that the log ratio
    2 log(S*/S) is zero at S* (one S* per seed)."""
    out = []
    for seed, s_star in crossings.items():
        for S in SCALES:
            out.append(rec(engine, "centered", S, seed, 0.01 / S, J=J))
            out.append(rec(engine, "noncentered", S, seed, 0.01 * S / s_star ** 2, J=J))
    return out


def test_crossover_interpolates_on_the_log_scale():
    c = crossover([(0.1, 1.0), (1.0, -1.0)])
    assert c.kind == "crossing" and c.sign_changes == 1
    assert c.scale == pytest.approx(math.sqrt(0.1), rel=ROUNDOFF)  # halfway in log S
    c = crossover([(0.1, 3.0), (1.0, -1.0), (0.05, 4.0), (2.0, None)])  # unordered, a missing point
    assert c.scale == pytest.approx(10 ** (-1 + 0.75), rel=ROUNDOFF)


@pytest.mark.parametrize("points, kind, scale", [
    ([(0.1, 1.0), (1.0, 2.0)], "above", math.inf),  # centred wins everywhere
    ([(0.1, -1.0), (1.0, -2.0)], "below", 0.0),  # non-centred wins everywhere
    ([(0.1, -1.0), (1.0, 2.0)], "reversed", math.nan),
    ([(0.1, None)], "none", math.nan),
])
def test_crossover_outside_the_range_is_censored(points, kind, scale):
    c = crossover(points)
    assert c.kind == kind and (math.isnan(c.scale) if math.isnan(scale) else c.scale == scale)


def test_crossover_takes_the_first_from_the_informative_end_and_counts_sign_changes():
    c = crossover([(0.1, 1.0), (0.25, -1.0), (0.5, 1.0), (1.0, -1.0)])
    assert c.scale == pytest.approx(math.sqrt(0.1 * 0.25), rel=ROUNDOFF) and c.sign_changes == 3


def test_crossovers_per_seed_median_range_and_pooled():
    records = classic("fake", {1: 0.2, 2: 0.3, 3: 0.7})
    c = crossovers(records)[("fake", 8)]
    assert [c.per_seed[s].scale for s in (1, 2, 3)] == pytest.approx([0.2, 0.3, 0.7], rel=ROUNDOFF)
    assert (c.median, c.low, c.high) == pytest.approx((0.3, 0.2, 0.7), rel=ROUNDOFF)
    assert c.pooled.scale == pytest.approx(0.3, rel=ROUNDOFF)  # the median d is seed 2's
    wins_small, n, ratio = direction(records, 0.1)[("fake", 8)]
    assert (wins_small, n) == (3, 3) and ratio == pytest.approx((0.3 / 0.1) ** 2, rel=ROUNDOFF)
    assert direction(records, 1.0)[("fake", 8)][0] == 0


def test_a_failed_fit_leaves_its_scale_out_of_the_crossover():
    records = classic("fake", {1: 0.3})
    records = [r for r in records if not (r["sigma_scale"] == 0.25 and r["parameterization"] == "centered")]
    records.append(rec("fake", "centered", 0.25, 1, 0, error_kind="timeout"))
    c = crossovers(records)[("fake", 8)].per_seed[1]
    assert c.kind == "crossing" and c.scale == pytest.approx(0.3, rel=ROUNDOFF)  # 0.1 and 0.5 bracket it


def test_median_log_keeps_censored_crossovers_in_order():
    assert median_log([0.0, 0.3, 0.5]) == pytest.approx(0.3)
    assert median_log([0.3, math.inf, math.inf]) == math.inf
    assert median_log([0.2, 0.8]) == pytest.approx(0.4)  # the geometric mean of the middle two
    assert math.isnan(median_log([]))


@pytest.mark.parametrize("k, n", [(0, 3), (3, 3), (2, 7), (11, 12)])
def test_clopper_pearson_is_the_exact_interval(k, n):
    r = clopper_pearson(k, n)
    tail = (1 - CI_LEVEL) / 2
    if k == n:
        assert r.high == 1 and r.low == pytest.approx(tail ** (1 / n), rel=1e-9)
    if k == 0:
        assert r.low == 0 and r.high == pytest.approx(1 - tail ** (1 / n), rel=1e-9)
    if 0 < k < n:  # the bounds are where the binomial tails equal (1 - level) / 2
        assert stats.binom.sf(k - 1, n, r.low) == pytest.approx(tail, rel=1e-6)
        assert stats.binom.cdf(k, n, r.high) == pytest.approx(tail, rel=1e-6)


def test_first_failing_and_the_check_across_the_space():
    records = []
    for S in SCALES:
        for seed in (1, 2, 3):
            fails = (S == 1.0 and seed == 1) or S >= 2  # one of three at 1, every seed from 2
            records.append(rec("fake", "centered", S, seed, 0.01, passed=not fails,
                               divergences=5 * fails, rhat=1.05 if fails else 1.001))
    assert first_failing(records, "fake", 8) == (1.0, 2.0)
    records.append(rec("fake", "centered", 0.05, 4, 0.01, passed=False))  # a false alarm, no divergence
    assert first_failing(records, "fake", 8) == (0.05, 2.0)
    cells = {c.sigma_scale: c for c in check_space(records)}
    assert cells[0.05].sound_pass[:2] == (3, 4) and cells[0.05].suspect_flagged.n == 0
    assert cells[1.0].sound_pass[:2] == (2, 2) and cells[1.0].suspect_flagged[:2] == (1, 1)
    assert cells[4.0].suspect_flagged[:2] == (3, 3)


def test_informativeness_grows_with_sigma_scale():
    points = [informativeness(f"rubin:sigma_scale={S:g}") for S in (0.1, 1.0, 4.0)]
    assert all(0 < p.pooling < 1 for p in points)
    assert points[0].ratio < points[1].ratio < points[2].ratio
    assert points[0].pooling < points[1].pooling < points[2].pooling


def test_the_report_from_synthetic_records(tmp_path):
    records = classic("fake", {1: 0.2, 2: 0.3, 3: 0.7}) + classic("fake", {1: 0.5, 2: 0.5, 3: 0.5}, J=64)
    for r in records[-2 * len(SCALES) * 3:]:  # the J = 64 runs: a data spec with J = 64
        r["data_spec"] = f"synthetic:J=64:seed=0:tau=10:sigma_scale={r['sigma_scale']:g}"
    records += classic("backwards", {1: 0.3})  # then reverse its direction: non-centred wins at 0.1
    for r in records[-2 * len(SCALES):]:
        r["parameterization"] = {"centered": "noncentered", "noncentered": "centered"}[r["parameterization"]]
    records += [rec("gone", p, S, 1, 0, error_kind="unavailable") for p in ("centered", "noncentered")
                for S in SCALES]
    for i, r in enumerate(records):
        r["key"] = f"k{i}"
    (tmp_path / "runs.json").write_text(json.dumps(records))
    (tmp_path / "sweep.json").write_text(json.dumps({"data": {"8": "rubin:sigma_scale={sigma_scale}"},
                                                     "load_samples": [1.0, 2.0]}))
    (tmp_path / "timing.json").write_text(json.dumps({"totals": {"wall_s": 120.0}}))
    md = render_sweep(tmp_path).read_text()
    with open(tmp_path / "sweep.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [c for c, _ in CSV_COLUMNS] + INFORMATIVENESS_COLUMNS and len(rows) == len(records)
    at_one = [r for r in rows if r["engine"] == "fake" and r["J"] == "8" and float(r["sigma_scale"]) == 1.0]
    assert float(at_one[0]["pooling"]) == pytest.approx(informativeness("rubin:sigma_scale=1").pooling)
    required = ["engine", "parameterization", "sigma_scale", "J", "seed", "ess_bulk_min", "gradient_evals",
                "ess_bulk_per_grad", "ess_bulk_per_s", "divergences", "max_rhat", "passed", "max_abs_z", "error"]
    assert set(required) <= set(rows[0])
    assert all((tmp_path / name).stat().st_size > 10_000 for name in FIGURES)
    assert "| fake | 8 | 1: 0.2, 2: 0.3, 3: 0.7 | 0.3 [0.2, 0.7] | 0.3 |" in md
    assert "| fake | 64 | 1: 0.5, 2: 0.5, 3: 0.5 | 0.5 [0.5, 0.5] |" in md
    assert "Not as expected (at least one seed): backwards J = 8." in md
    assert "| gone | 14 | unavailable [1] |" in md  # failed engines are listed, with their reason
    assert "2.0 min" in md and "maximum 2.00" in md


# --- one short sweep: the direction from the records ------------------------------------------------


@pytest.mark.samples
def test_short_pystan_sweep_shows_the_crossover_direction(tmp_path):
    """Two scales, one engine, one seed, default settings (the sweep's own; sampling is ~1 s a run, the
    worker's start-up dominates). In the full sweep the ratio of ESS per gradient is a factor of tens
    at both ends (SWEEP.md), so a sign flip here is a real change, not noise."""
    require_engine("pystan")
    args = ["sweep", "--engines", "pystan", "--scales", "0.1,1", "--J", "8", "--seeds", "1",
            "--results", str(tmp_path)]
    assert cli_main(args) == 0
    out = tmp_path / "sweep"
    records = json.loads((out / "runs.json").read_text())
    assert len(records) == 4 and all(r["error"] is None for r in records)
    grad = {(r["parameterization"], r["sigma_scale"]): r["ess_bulk_per_grad"] for r in records}
    assert grad["centered", 0.1] > grad["noncentered", 0.1]  # informative data: centred wins
    assert grad["centered", 1.0] < grad["noncentered", 1.0]  # Rubin's weak data: non-centred wins
    c = crossovers(records)[("pystan", 8)]
    assert c.median == c.pooled.scale and 0.1 < c.median < 1.0
    assert (out / "SWEEP.md").is_file() and all((out / name).is_file() for name in FIGURES)
