"""The regression gate (benchmarks/jobs/regress/): its statistical decisions on synthetic numbers, and the
gate itself on a small PyStan baseline made here (an unchanged rerun passes, a crippled one fails, an
engine that errors now fails, the JUnit XML is well-formed), plus the committed CI baseline's schema."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import require_engine

from benchmarks.cli import build_parser
from benchmarks.cli import main as cli_main
from benchmarks.engines import ENGINES
from benchmarks.engines.base import Settings
from benchmarks.jobs.common import RunOptions
from benchmarks.jobs.regress.command import run_gate
from benchmarks.jobs.regress.config import RegressConfig, RegressError, load_config
from benchmarks.jobs.regress.gate import compare_group
from benchmarks.jobs.regress.measure import load_baseline, measure, summarise_group
from benchmarks.jobs.regress.stats import (
    divergence_rise_test,
    ess_drop_test,
    flips_needed,
    log_shift_test,
    pass_rate_drop_test,
    time_rise_test,
    verdict_flip_test,
)
from benchmarks.jobs.regress.thresholds import ALPHA, KINDS, SCHEMA
from benchmarks.runpath.plugins import register_extra_engines
from models.files import write_json

ROOT = Path(__file__).resolve().parents[1]
CI_BASELINE = ROOT / "results" / "baselines" / "ci.json"

# --- statistical decisions on synthetic numbers ---------------------------------------------------


def test_ess_identical_values_pass_with_ratio_one():
    x = [0.05, 0.07, 0.06, 0.08, 0.065]
    t = ess_drop_test(x, x)
    assert not t.regressed and t.ratio == pytest.approx(1.0) and t.p_value == pytest.approx(0.5)


def test_ess_large_drop_fails_small_drop_passes():
    base = [0.05, 0.07, 0.06, 0.08, 0.065]
    assert ess_drop_test(base, [v / 5 for v in base]).regressed
    assert not ess_drop_test(base, [v * 0.9 for v in base]).regressed
    # a rise is never a regression of ESS
    assert not ess_drop_test(base, [v * 3 for v in base]).regressed


def test_ess_drop_below_floor_never_fails_even_when_significant():
    rng = np.random.default_rng(0)
    base = np.exp(rng.normal(0, 0.01, 50))
    new = base * 0.95  # 5 % drop: significant with 50 seeds and 1 % spread, but below the 10 % floor
    t = log_shift_test(base, new, spread_floor=0.0)
    assert t.p_value < ALPHA and not t.regressed
    assert log_shift_test(base, base * 0.85, spread_floor=0.0).regressed


def test_ess_test_false_alarm_rate_is_alpha():
    """Under no change (normal log values, same spread) the test rejects at its nominal rate."""
    rng = np.random.default_rng(1)
    alpha, reps = 0.05, 4000
    hits = 0
    for _ in range(reps):
        base, new = np.exp(rng.normal(-3, 0.3, 5)), np.exp(rng.normal(-3, 0.3, 5))
        hits += log_shift_test(base, new, alpha=alpha, floor=0.0, spread_floor=0.0).regressed
    assert 0.035 < hits / reps < 0.065


def test_ess_power_grows_with_seeds():
    rng = np.random.default_rng(2)
    few = np.exp(rng.normal(-3, 0.3, 3))
    many = np.exp(rng.normal(-3, 0.3, 20))
    d_few = ess_drop_test(few, few).detectable
    d_many = ess_drop_test(many, many).detectable
    assert d_many < d_few < 1
    with pytest.raises(ValueError, match="need >= 2 baseline"):
        ess_drop_test([0.1], [0.1])


def test_time_rise_direction():
    base = [1e-5, 1.1e-5, 0.9e-5, 1.05e-5, 0.95e-5]
    assert time_rise_test(base, [v * 4 for v in base]).regressed
    assert not time_rise_test(base, [v / 4 for v in base]).regressed


def test_divergences_none_then_many_fails_and_none_then_none_passes():
    zeros, totals = [0] * 10, [300] * 10
    assert not divergence_rise_test(zeros, totals, zeros, totals).regressed
    assert divergence_rise_test(zeros, totals, [30] * 10, totals).regressed
    t = divergence_rise_test(zeros, totals, zeros, totals)
    assert t.p_value == 1.0 and t.dispersion == 1.0


def test_divergences_floor_and_overdispersion():
    totals = [10_000] * 10
    # 0 -> 10 divergences in 100 000 transitions: significant but a rise of 1e-4 < floor
    t = divergence_rise_test([0] * 10, totals, [1] * 10, totals)
    assert t.p_value < ALPHA and not t.regressed
    # the same pooled rise is significant when divergences are spread evenly over chains, not when one
    # chain in the baseline already clustered them (overdispersion lowers the effective counts)
    tot = [300] * 10
    even = divergence_rise_test([1] * 10, tot, [4] * 10, tot)
    clustered = divergence_rise_test([0] * 9 + [10], tot, [0] * 9 + [40], tot)
    assert even.regressed and even.dispersion == pytest.approx(1.0, abs=0.5)
    assert clustered.dispersion > 5 and clustered.p_value > even.p_value


def test_divergences_false_alarm_rate_at_most_alpha():
    rng = np.random.default_rng(3)
    alpha, reps, hits = 0.05, 2000, 0
    for _ in range(reps):
        b, n = rng.binomial(300, 0.01, 10), rng.binomial(300, 0.01, 10)
        hits += divergence_rise_test(b, [300] * 10, n, [300] * 10, alpha=alpha, floor=0.0).regressed
    assert hits / reps <= alpha + 0.015


def test_divergences_false_alarm_rate_holds_under_clustering():
    """Per-chain rates drawn from a beta (divergences cluster in some chains): the dispersion
    correction keeps the rate at alpha, where a plain binomial test would alarm far more often."""
    rng = np.random.default_rng(4)
    alpha, reps, hits = 0.05, 2000, 0
    for _ in range(reps):
        b, n = rng.binomial(300, rng.beta(0.2, 19.8, 10)), rng.binomial(300, rng.beta(0.2, 19.8, 10))
        hits += divergence_rise_test(b, [300] * 10, n, [300] * 10, alpha=alpha, floor=0.0).regressed
    assert hits / reps <= alpha + 0.015


def test_divergence_inputs_validated():
    with pytest.raises(ValueError):
        divergence_rise_test([5], [3], [0], [3])


def test_pass_rate_test_holds_its_false_alarm_rate_whatever_the_failure_rate():
    """The centred model fails the check on ~60 % of seeds by its own bias: an unchanged rerun (other
    random numbers, same rate) must not alarm more often than alpha, at 5 seeds or at 225."""
    rng = np.random.default_rng(5)
    alpha = 0.05
    for n, rate in ((5, 0.6), (225, 0.6), (225, 0.015), (20, 0.3)):
        hits = sum(pass_rate_drop_test(list(rng.random(n) > rate), list(rng.random(n) > rate),
                                       alpha=alpha).regressed for _ in range(2000))
        assert hits / 2000 <= alpha + 0.015, (n, rate, hits)
    # the old flip test on the same kind of rerun alarms most of the time (why the gate changed)
    base, new = list(rng.random(225) > 0.6), list(rng.random(225) > 0.6)
    assert verdict_flip_test(base, new, check_alpha=0.01).regressed


def test_pass_rate_drop_is_caught_and_a_rise_never_is():
    base = [True] * 20
    assert pass_rate_drop_test(base, [True] * 8 + [False] * 12).regressed
    assert not pass_rate_drop_test([False] * 12 + [True] * 8, base).regressed
    t = pass_rate_drop_test([True, None, False], [False, True, None])
    assert (t.passed_base, t.checked_base, t.passed_new, t.checked_new) == (1, 2, 1, 2) and not t.regressed


def test_verdict_flips_needed_and_decision():
    assert flips_needed(5, 0.01, 0.01) == 2
    assert flips_needed(3, 0.01, 0.01) == 2
    assert flips_needed(1, 0.01, 0.01) == 1  # P(fail) = 0.01 <= 0.01
    assert flips_needed(2, 0.2, 0.01) is None  # a noisy check on 2 seeds can never be significant
    one = verdict_flip_test([True] * 5, [True, True, True, True, False], check_alpha=0.01)
    two = verdict_flip_test([True] * 5, [True, True, True, False, False], check_alpha=0.01)
    assert not one.regressed and one.flips == 1
    assert two.regressed and two.flips == 2
    mixed = verdict_flip_test([False, True, None, True], [True, False, False, None], check_alpha=0.01)
    assert mixed.at_risk == 1 and mixed.flips == 1 and mixed.recoveries == 1


def _group(engine, param, runs, status="ran", unavailable=None):
    return {"engine": engine, "parameterization": param, "status": status, "unavailable": unavailable,
            "runs": runs, "summary": summarise_group(runs)}


def _run(seed, ess=0.05, div=(0, 0), passed=True, tpd=1e-5, error=None):
    if error:
        return {"seed": seed, "error": error}
    return {"seed": seed, "error": None, "ess_bulk_per_grad": ess, "divergences": sum(div),
            "divergences_per_chain": list(div), "transitions_per_chain": [300] * len(div),
            "n_draws": 300 * len(div), "divergence_rate": sum(div) / (300 * len(div)), "max_rhat": 1.005,
            "time_per_draw_s": tpd, "check_passed": passed, "check_alpha": 0.01}


def test_compare_group_engine_errors_and_unavailability():
    seeds = [1, 2, 3]
    ok = _group("e", "noncentered", [_run(s) for s in seeds])
    broken = _group("e", "noncentered", [_run(s, error="RuntimeError: boom") for s in seeds])
    gone = _group("e", "noncentered", [_run(s, error="unavailable: not installed") for s in seeds],
                  status="unavailable", unavailable="not installed")
    by_kind = {r.kind: r for r in compare_group("e/noncentered", ok, broken)}
    assert by_kind["error"].status == "fail" and "boom" in by_kind["error"].message
    assert compare_group("e/noncentered", ok, gone)[0].status == "fail"
    both_gone = compare_group("e/noncentered", gone, gone)
    assert both_gone[0].status == "skip" and not any(r.failed for r in both_gone)
    same = compare_group("e/noncentered", ok, ok)
    assert [r.kind for r in same] == list(KINDS) and not any(r.failed for r in same)


def test_config_names_and_validation(tmp_path):
    ci = load_config("ci")
    assert ci.name == "ci" and ci.settings.chains >= 1 and len(ci.seeds) >= 5
    assert load_config("full").engines
    with pytest.raises(RegressError, match="not in"):
        load_config("nope")
    bad = tmp_path / "r.toml"
    bad.write_text('[config.x]\nengines = ["stan9"]\nseeds = [1]\n')
    with pytest.raises(RegressError, match="stan9"):
        load_config(f"{bad}:x")


def test_load_baseline_rejects_wrong_files(tmp_path):
    p = tmp_path / "b.json"
    p.write_text(json.dumps({"schema": "other"}))
    with pytest.raises(RegressError, match="schema"):
        load_baseline(p)
    with pytest.raises(RegressError, match="no such file"):
        load_baseline(tmp_path / "missing.json")


def test_committed_ci_baseline_loads_and_matches_schema():
    doc = load_baseline(CI_BASELINE)
    ci = load_config("ci")
    assert doc["schema"] == SCHEMA and doc["name"] == "ci"
    assert doc["config"] == ci.to_dict() | {"description": doc["config"]["description"]}, (
        "benchmarks/configs/regress.toml [config.ci] changed: regenerate with "
        "`python -m benchmarks baseline --config ci`")
    assert set(doc["groups"]) == {f"{e}/{p}" for e in ci.engines for p in ci.parameterizations}
    for key, g in doc["groups"].items():
        assert g["summary"]["n_ok"] == len(ci.seeds), f"{key}: a run failed in the committed baseline"
        for r in g["runs"]:
            for f in ("ess_bulk_per_grad", "divergences_per_chain", "transitions_per_chain", "max_rhat",
                      "time_per_draw_s", "check_passed", "ppl_version"):
                assert f in r, f"{key} seed {r['seed']}: field {f} missing"
    assert doc["environment"]["packages"] and doc["machine"]["cpu"]


def test_cli_registers_subcommands():
    parser, _ = build_parser("regress")
    a = parser.parse_args(["--baseline", "b.json", "--max-treedepth", "2"])
    assert a.max_treedepth == 2 and a.target_accept is None
    for name in ("baseline", "versions-report"):
        assert build_parser(name)[0].prog.endswith(name)


# --- the gate on a small PyStan baseline made here ------------------------------------------------

SMALL = RegressConfig(name="test-small", engines=["pystan"], parameterizations=["noncentered", "centered"],
                      seeds=[1, 2, 3, 4, 5], settings=Settings(chains=2, warmup=300, draws=300), timeout_s=120)


@pytest.fixture(scope="session")
def small_baseline(tmp_path_factory) -> Path:
    require_engine("pystan")
    root = tmp_path_factory.mktemp("regress")
    path = root / "baseline.json"
    write_json(path, measure(SMALL, run_dir=root / "baseline.runs", options=RunOptions(results=root)))
    return path


def _junit_cases(path: Path) -> dict[tuple[str, str], ET.Element]:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "ppl-regress"
    cases = {(c.get("classname"), c.get("name")): c for c in suite.findall("testcase")}
    assert int(suite.get("tests")) == len(cases)
    return cases


@pytest.mark.samples
def test_unchanged_rerun_passes_and_junit_names_every_check(small_baseline, tmp_path):
    code, results, _ = run_gate(small_baseline, junit=tmp_path / "j.xml", summary=tmp_path / "s.md",
                                options=RunOptions(results=tmp_path))
    assert code == 0, [r for r in results if r.failed]
    ess = [r for r in results if r.kind == "ess_per_grad"]
    assert ess and all(r.details["ratio"] == pytest.approx(1.0) for r in ess)  # same build, same seeds
    cases = _junit_cases(tmp_path / "j.xml")
    expected = {(f"ppl-regress.pystan.{p}", k) for p in SMALL.parameterizations for k in KINDS}
    assert set(cases) == expected
    assert not any(c.find("failure") is not None for c in cases.values())
    assert "no regression" in (tmp_path / "s.md").read_text()


@pytest.mark.samples
def test_crippled_rerun_fails_naming_the_reason(small_baseline, tmp_path):
    junit, summary = tmp_path / "j.xml", tmp_path / "s.md"
    code = cli_main(["regress", "--baseline", str(small_baseline), "--target-accept", "0.3",
                     "--junit", str(junit), "--summary", str(summary), "--results", str(tmp_path)])
    assert code == 1
    cases = _junit_cases(junit)
    failed = {k for k, c in cases.items() if c.find("failure") is not None}
    assert ("ppl-regress.pystan.noncentered", "divergences") in failed
    assert ("ppl-regress.pystan.noncentered", "ess_per_grad") in failed
    assert ("ppl-regress.pystan.centered", "divergences") in failed
    msg = cases[("ppl-regress.pystan.noncentered", "divergences")].find("failure").get("message")
    assert "rate 0.0000 ->" in msg
    text = summary.read_text()
    assert "regression" in text and "**divergences**" in text and "target_accept 0.8 → 0.3" in text


@pytest.mark.parametrize("mode", ["RAISE", "ABSENT"])
def test_engine_that_ran_now_errors_fails_the_gate(small_baseline, tmp_path, monkeypatch, mode):
    """The baseline's pystan replaced, in the client and in its workers, by a stand-in that raises or
    is not installed (EIGHT_SCHOOLS_EXTRA_ENGINES can override a registered engine)."""
    spec = f"pystan=fake_engines:{mode}"
    monkeypatch.setenv("EIGHT_SCHOOLS_EXTRA_ENGINES", spec)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setitem(ENGINES, "pystan", ENGINES["pystan"])  # restored after the test
    register_extra_engines(spec)
    code, results, _ = run_gate(small_baseline, junit=tmp_path / "j.xml", options=RunOptions(results=tmp_path))
    assert code == 1
    errors = [r for r in results if r.kind == "error"]
    assert errors and all(r.status == "fail" for r in errors)
    assert ("engine exploded" if mode == "RAISE" else "not installed") in errors[0].message
    cases = _junit_cases(tmp_path / "j.xml")
    assert cases[("ppl-regress.pystan.noncentered", "error")].find("failure") is not None
