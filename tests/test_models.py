"""Data and prior specification: validation, parsing, presets, and the executable log density."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from models import (
    PRESETS,
    RUBIN,
    DataError,
    Dist,
    PriorError,
    SchoolsData,
    load_data,
    log_density,
    make_prior,
    parse_dist,
    preset,
    synthetic,
)
from models.logdensity import parameter_names


def test_rubin_table():
    assert RUBIN.J == 8
    assert RUBIN.y == (28, 8, -3, 7, -1, 1, 18, 12)
    assert RUBIN.sigma == (15, 10, 16, 11, 9, 11, 10, 18)
    assert RUBIN.school == tuple("ABCDEFGH")


# --- bad data: one clear error naming the field and the value -------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_y_is_rejected(bad):
    with pytest.raises(DataError, match=rf"y\[1\] = {bad}"):
        SchoolsData([1.0, bad, 3.0], [1.0, 1.0, 1.0])


@pytest.mark.parametrize("bad", [0.0, -2.0, math.nan, math.inf])
def test_nonpositive_sigma_is_rejected(bad):
    with pytest.raises(DataError, match=rf"sigma\[2\] = {bad}"):
        SchoolsData([1.0, 2.0, 3.0], [1.0, 1.0, bad])


def test_lengths_that_differ_are_rejected():
    with pytest.raises(DataError, match="sigma has 2 entries but y has 3"):
        SchoolsData([1.0, 2.0, 3.0], [1.0, 1.0])


def test_fewer_than_two_schools_is_rejected():
    with pytest.raises(DataError, match="J = 1"):
        SchoolsData([1.0], [1.0])


def test_non_numeric_value_is_rejected():
    with pytest.raises(DataError, match=r"y\[0\] = 'abc'"):
        SchoolsData(["abc", 1.0], [1.0, 1.0])


def test_duplicate_school_labels_are_rejected():
    with pytest.raises(DataError, match="school = 'a' appears twice"):
        SchoolsData([1.0, 2.0], [1.0, 1.0], ["a", "a"])


def test_csv_and_json_round_trip(tmp_path):
    csv_path = tmp_path / "mine.csv"
    csv_path.write_text("school,y,sigma\nA,28,15\nB,8,10\nC,-3,16\n")
    d = load_data(csv_path)
    assert (d.name, d.y, d.sigma, d.school) == ("mine", (28, 8, -3), (15, 10, 16), ("A", "B", "C"))
    cols = tmp_path / "cols.json"
    cols.write_text(json.dumps({"y": [1, 2], "sigma": [3, 4]}))
    assert load_data(cols).school == ("1", "2")
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"y": 1, "sigma": 3}, {"y": 2, "sigma": 4}]))
    assert load_data(rows).y == (1, 2)


def test_file_missing_a_column_names_it(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("y,s\n1,2\n3,4\n")
    with pytest.raises(DataError, match="sigma: missing"):
        load_data(p)


def test_file_with_a_bad_value_names_it(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("y,sigma\n1,2\n3,-4\n")
    with pytest.raises(DataError, match=r"sigma\[1\] = -4"):
        load_data(p)


def test_synthetic_is_seeded_and_validated():
    a, b, c = synthetic(16, seed=3), synthetic(16, seed=3), synthetic(16, seed=4)
    assert a == b and a.y != c.y
    assert a.J == 16 and min(a.sigma) >= 9 and max(a.sigma) <= 18
    with pytest.raises(DataError, match="J = 1"):
        synthetic(1)
    with pytest.raises(DataError, match="sigma_range"):
        synthetic(8, sigma_range=(0, 1))


def test_synthetic_draws_from_the_hierarchy():
    # With sigma tiny and many schools, y is essentially theta ~ normal(mu, tau):
    # the sample mean and sd are within 5 standard errors (a fixed seed, so this is deterministic).
    d = synthetic(20000, mu=3.0, tau=2.0, sigma_range=(1e-6, 2e-6), seed=0)
    y = d.y_array
    assert abs(y.mean() - 3.0) < 5 * 2.0 / math.sqrt(d.J)
    assert abs(y.std() - 2.0) < 5 * 2.0 / math.sqrt(2 * d.J)


# --- priors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, which, family, args",
    [
        ("normal(0, 10)", "mu", "normal", (0, 10)),
        ("uniform(-20, 20)", "mu", "uniform", (-20, 20)),
        ("flat", "mu", "flat", ()),
        ("lognormal(5, 1)", "tau", "lognormal", (5, 1)),
        ("half_cauchy(0, 5)", "tau", "half_cauchy", (5,)),
        ("half_cauchy(5)", "tau", "half_cauchy", (5,)),
        ("cauchy(0, 5)", "tau", "half_cauchy", (5,)),
        ("normal(0, 2.5)", "tau", "half_normal", (2.5,)),
        ("uniform(0, 50)", "tau", "uniform", (0, 50)),
        ("flat", "tau", "flat", ()),
        ("fixed(8)", "tau", "fixed", (8,)),
        (" fixed( 1e1 ) ", "tau", "fixed", (10,)),
    ],
)
def test_prior_text_parses(text, which, family, args):
    d = parse_dist(text, which)
    assert (d.family, d.args) == (family, args)
    assert parse_dist(str(d), which) == d  # text round trip


@pytest.mark.parametrize(
    "text, which, match",
    [
        ("normal(0 5)", "mu", "malformed"),
        ("normal(0,", "mu", "malformed"),
        ("gamma(2, 1)", "tau", "unknown family 'gamma'"),
        ("half_cauchy(0, 5)", "mu", "unknown family 'half_cauchy'"),
        ("normal(0)", "mu", "takes 2 argument"),
        ("normal(0, -1)", "mu", "scale = -1 must be > 0"),
        ("uniform(5, 1)", "mu", "upper = 1 must exceed lower = 5"),
        ("uniform(-1, 5)", "tau", "lower = -1 must be >= 0"),
        ("half_cauchy(2, 5)", "tau", "location 2 must be 0"),
        ("fixed(-1)", "tau", "value = -1 must be >= 0"),
        ("", "tau", "malformed"),
    ],
)
def test_malformed_prior_text_shows_accepted_forms(text, which, match):
    with pytest.raises(PriorError, match=match) as e:
        parse_dist(text, which)
    if "malformed" in match or "unknown" in match:
        assert "accepted forms:" in str(e.value)


def test_unknown_preset_lists_presets():
    with pytest.raises(PriorError, match="prior preset = 'nope' is unknown; presets: default, bda3"):
        preset("nope")


def test_presets_are_those_named_in_the_design():
    assert str(PRESETS["default"]) == "mu ~ normal(0, 5), tau ~ half_cauchy(0, 5)"
    assert str(PRESETS["bda3"]) == "mu ~ flat, tau ~ flat"
    assert str(PRESETS["notebook"]) == "mu ~ uniform(-20, 20), tau ~ uniform(0, 50)"
    assert str(PRESETS["notebook-tau8"]) == "mu ~ uniform(-20, 20), tau ~ fixed(8)"


def test_make_prior_from_texts_and_conflicts():
    p = make_prior(mu_text="flat", tau_text="lognormal(1, 0.5)")
    assert (p.mu.family, p.tau.family, p.name) == ("flat", "lognormal", "custom")
    assert make_prior() == PRESETS["default"]
    with pytest.raises(PriorError, match="not both"):
        make_prior("bda3", mu_text="flat")


def test_dist_rejects_unknown_family_directly():
    with pytest.raises(PriorError, match="tau prior family = 'gamma'"):
        Dist("tau", "gamma", (1, 1))


# --- the executable log density -----------------------------------------------------------------


def _spec_by_hand(point, tau, param):
    """posteriordb's default program written out independently with scipy."""
    y, s = RUBIN.y_array, RUBIN.sigma_array
    mu = point["mu"]
    lp = stats.norm.logpdf(mu, 0, 5) + np.log(2) + stats.cauchy.logpdf(tau, 0, 5)
    if param == "centered":
        theta = point["theta"]
        lp += stats.norm.logpdf(theta, mu, tau).sum()
    else:
        lp += stats.norm.logpdf(point["theta_tilde"]).sum()
        theta = mu + tau * point["theta_tilde"]
    return lp + stats.norm.logpdf(y, theta, s).sum()


@pytest.mark.parametrize("param", ["centered", "noncentered"])
def test_log_density_matches_the_program_written_out(param):
    rng = np.random.default_rng(0)
    effects = "theta" if param == "centered" else "theta_tilde"
    for _ in range(5):
        point = {"mu": rng.normal(0, 5), "tau": rng.lognormal(1, 1), effects: rng.normal(0, 5, 8)}
        got = log_density(RUBIN, PRESETS["default"], param, point)
        assert got == pytest.approx(_spec_by_hand(point, point["tau"], param), rel=1e-12)


def test_log_density_outside_the_support_is_minus_infinity():
    p = PRESETS["notebook"]
    assert log_density(RUBIN, p, "centered", {"mu": 25.0, "tau": 1.0, "theta": np.zeros(8)}) == -np.inf
    assert log_density(RUBIN, p, "centered", {"mu": 0.0, "tau": 51.0, "theta": np.zeros(8)}) == -np.inf
    assert log_density(RUBIN, PRESETS["default"], "centered", {"mu": 0.0, "tau": -1.0, "theta": np.zeros(8)}) == -np.inf


def test_parameter_names_drop_tau_when_fixed():
    assert parameter_names(PRESETS["default"], "centered") == ("mu", "tau", "theta")
    assert parameter_names(PRESETS["notebook-tau8"], "noncentered") == ("mu", "theta_tilde")
    with pytest.raises(ValueError, match="parameterization = 'sideways'"):
        parameter_names(PRESETS["default"], "sideways")
