"""The calibrate job's seed ranges (selection 1-100 apart from held-out 101-300) and the parts of
CALIBRATION.md that say how the check's statistic was chosen (issue 20)."""

import numpy as np
import pytest

from benchmarks.engines.base import Settings
from benchmarks.jobs.calibrate import engine_specs, parse_seeds
from benchmarks.reporting.calibration_report import _fmt_seeds, render_markdown
from benchmarks.reporting.check_selection import old_fails, tail_fails, tail_z_kinds
from models.errors import UsageError


def test_seed_ranges_parse_and_refuse():
    assert parse_seeds("3") == [1, 2, 3]
    assert parse_seeds("101-103") == [101, 102, 103]
    assert parse_seeds("none") == []
    for bad in ("0-3", "5-2", "a", "1-x"):
        with pytest.raises(UsageError, match="--seeds"):
            parse_seeds(bad)
    assert _fmt_seeds([101, 102, 103]) == ", seeds 101–103" and _fmt_seeds([1, 5]) == ", 2 seeds"


def test_specs_are_seed_major_and_can_keep_draws():
    specs = engine_specs(["pymc", "numpyro"], "centered", Settings(), [1, 2], "centered", save_draws=True)
    assert [(s.seed, s.engine) for s in specs] == [(1, "pymc"), (1, "numpyro"), (2, "pymc"), (2, "numpyro")]
    assert all(s.save_draws and s.keep_checks for s in specs)


def test_tail_statistic_offline_flags_a_missing_neck():
    """The selection's offline statistic: no draw below q_0.01 among 4000 is z = -sqrt(4000 p / (1 - p))."""
    rng = np.random.default_rng(1)
    u = rng.uniform(size=(4, 1000))
    assert not tail_fails({"tz_own": tail_z_kinds(u)["own"][None]}, "own", 0.002)[0]
    missing = 0.1 + 0.9 * u  # nothing below the exact 10 % quantile
    z = tail_z_kinds(missing)["own"]
    assert z[0] == pytest.approx(-np.sqrt(4000 * 0.01 / 0.99))
    assert tail_fails({"tz_own": z[None]}, "own", 0.002)[0]
    feat = {"z": np.zeros((1, 66)), "ks_p": np.array([0.5])}
    assert not old_fails(feat, 0.01)[0]


def _result():
    r = {"alpha": 0.01, "data": "rubin", "prior": {"text": "mu ~ normal(0, 5)"},
         "iid": {"flagged": 1, "n": 100, "rate": 0.01, "ci95": [0.0, 0.05], "which": {}},
         "noncentered_false_alarms": {"seeds": [101, 102], "engines": {
             "pymc": {"flagged": 0, "n": 2, "rate": 0.0, "ci95": [0.0, 0.8], "which": {}}}},
         "centered_power": {"seeds": [101, 102], "engines": {
             "pymc": {"flagged": 2, "n": 2, "rate": 1.0, "ci95": [0.2, 1.0], "which": {"tau P(<q0.01)": 2}}}}}
    rate = {"flagged": 1, "n": 2, "rate": 0.5, "ci95": [0.01, 0.99]}
    r["before"] = {"text": "Bonferroni only.", "iid": rate, "centered": {"pymc": rate}, "noncentered": {"pymc": rate}}
    r["selection"] = {"text": "seeds 1-100.", "engines": ["pymc"], "candidates": [
        {"name": "tail", "chosen": True, "iid": {"flagged": 2, "n": 200, "rate": 0.01}, "power": {"pymc": rate}}]}
    return r


def test_calibration_md_says_before_after_and_how_it_was_chosen():
    text = render_markdown(_result())
    assert "seeds 101–102" in text and "lower tail of tau" in text
    assert "Before and after" in text and "| power, pymc centred | 1/2" in text
    assert "How the statistic was chosen" in text and "tail **(chosen)**" in text
