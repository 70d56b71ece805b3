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
from models.errors import UsageError
from models.limits import MAX_MAGNITUDE, MIN_MAGNITUDE
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


# --- hardening (issue 11): every bad input a DataError/PriorError, which are UsageErrors (exit 2) ---


def test_data_and_prior_errors_are_usage_errors():
    assert issubclass(DataError, UsageError) and issubclass(PriorError, UsageError)


def test_json_columns_that_are_objects_are_rejected_naming_the_column(tmp_path):
    p = tmp_path / "obj.json"
    p.write_text(json.dumps({"y": {"1": 0, "2": 0}, "sigma": {"3": 0, "4": 0}}))
    with pytest.raises(DataError, match=r"y = \{'1': 0, '2': 0\} in .*: expected a list .*got an object"):
        load_data(p)
    with pytest.raises(DataError, match=r"sigma = \{.*got an object"):
        SchoolsData([1.0, 2.0], {"a": 1.0, "b": 2.0})
    with pytest.raises(DataError, match="unordered set"):
        SchoolsData({1.0, 2.0}, [1.0, 1.0])


def test_rows_and_lines_that_do_not_fit_are_named(tmp_path):
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"y": 1, "sigma": 3}, {"y": 2}]))
    with pytest.raises(DataError, match=r"row 1 = \{'y': 2\} .*: sigma missing"):
        load_data(rows)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("y,sigma\n1,2\n3\n")
    with pytest.raises(DataError, match="line 3 of .* has 1 values but the header has 2"):
        load_data(ragged)
    twice = tmp_path / "twice.csv"
    twice.write_text("y,sigma,y\n1,2,3\n3,4,5\n")
    with pytest.raises(DataError, match="column 'y' appears twice"):
        load_data(twice)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"y": [1, 2], "sigma": [1, 1], "school": [None, "b"]}))
    with pytest.raises(DataError, match=r"school\[0\] = None: expected a label"):
        load_data(labels)


def test_byte_order_mark_is_read_and_other_encodings_are_named(tmp_path):
    text = "school,y,sigma\nA,28,15\nB,8,10\n"
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_data(bom).y == (28.0, 8.0) and load_data(bom).school == ("A", "B")
    bom_json = tmp_path / "bom.json"
    bom_json.write_bytes(b"\xef\xbb\xbf" + json.dumps({"y": [1, 2], "sigma": [3, 4]}).encode())
    assert load_data(bom_json).sigma == (3.0, 4.0)
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(text.encode("utf-16"))
    with pytest.raises(DataError, match=r"not UTF-8 text \(byte 0xff at offset 0\)"):
        load_data(utf16)


#: schools in the linear-validation test: 100 000 took over 300 s when duplicate detection was quadratic
MANY = 100_000


def test_validation_is_linear_in_the_number_of_schools(tmp_path):
    """Correctness at 100 000 schools (fast only if validation is linear; no timing assertion)."""
    y = np.linspace(-10.0, 10.0, MANY)
    labels = [f"s{j}" for j in range(MANY)]
    d = SchoolsData(y, np.full(MANY, 2.0), labels)
    assert d.J == MANY and d.school[-1] == f"s{MANY - 1}"
    path = tmp_path / "many.csv"
    rows = "".join(f"{s},{v!r},2\n" for s, v in zip(labels[:-1], y[:-1].tolist()))
    # the last school repeats the one before it: a search that counts each label in turn (the old,
    # quadratic one) reaches it only after ~MANY^2 / 2 comparisons
    path.write_text("school,y,sigma\n" + rows + f"s{MANY - 2},1.0,2\n")
    with pytest.raises(DataError, match=rf"school = 's{MANY - 2}' appears twice \(entries {MANY - 2} and {MANY - 1}\)"):
        load_data(path)


@pytest.mark.parametrize(
    "y, sigma, match",
    [
        ([1e200, 2.0], [1.0, 1.0], r"y\[0\] = 1e\+200: outside the supported range"),
        ([1.0, -1e-300], [1.0, 1.0], r"y\[1\] = -1e-300: outside the supported range"),
        ([1.0, 2.0], [1.0, 1e-200], r"sigma\[1\] = 1e-200: outside the supported range"),
        ([1.0, 2.0], [1e61, 1.0], r"sigma\[0\] = 1e\+61: outside the supported range"),
        ([10**401, 2], [1, 1], r"y\[0\] = 100000000000...\(402 digits\): outside the supported range"),
    ],
)
def test_values_whose_squares_overflow_or_underflow_are_rejected(y, sigma, match):
    with pytest.raises(DataError, match=match):
        SchoolsData(y, sigma)


def test_the_supported_range_is_where_squares_and_sums_stay_normal():
    """The stated derivation (models.limits): squares, ratios of squares and J-fold sums of them stay
    between float64's smallest normal number and its largest, for J up to 2^30."""
    tiny, huge = np.finfo(np.float64).tiny, np.finfo(np.float64).max
    reach = 2.0**58  # ~e^40: how far the tau window reaches beyond the data's scale (models.limits)
    assert (MAX_MAGNITUDE / MIN_MAGNITUDE) ** 2 * 2**30 < huge  # J * y^2 / sigma^2 at its largest, J = 2^30
    assert (MAX_MAGNITUDE * reach) ** 2 < huge  # tau^2 at its largest
    assert (MIN_MAGNITUDE / (MAX_MAGNITUDE * reach)) ** 2 > tiny  # B = sigma^2 / (sigma^2 + tau^2) at its smallest
    # zero and both ends are accepted, one ulp beyond either end is not
    SchoolsData([0.0, MAX_MAGNITUDE, -MIN_MAGNITUDE], [MIN_MAGNITUDE, MAX_MAGNITUDE, 1.0])
    for bad in (np.nextafter(MAX_MAGNITUDE, np.inf), np.nextafter(MIN_MAGNITUDE, 0)):
        with pytest.raises(DataError, match="supported range"):
            SchoolsData([1.0, 2.0], [1.0, bad])


@pytest.mark.parametrize(
    "text, which, match",
    [
        ("normal(0, 1e200)", "mu", "scale = 1e\\+200 is outside the supported range"),
        ("uniform(-1e61, 0)", "mu", "lower = -1e\\+61 is outside the supported range"),
        ("fixed(1e300)", "tau", "value = 1e\\+300 is outside the supported range"),
        ("fixed(1e-300)", "tau", "value = 1e-300 is outside the supported range \\(0 or"),
        ("half_cauchy(0, 1e-70)", "tau", "scale = 1e-70 is outside the supported range"),
        ("lognormal(200, 1)", "tau", "mu = 200 is outside the supported range \\|mu\\| <= 138.6"),
        ("normal(0, 1e999)", "mu", "scale = inf must be finite"),
    ],
)
def test_prior_parameters_outside_what_the_reference_integrates_are_rejected(text, which, match):
    with pytest.raises(PriorError, match=match):
        parse_dist(text, which)


def test_prior_parameters_at_the_range_ends_are_accepted():
    assert parse_dist("fixed(0)", "tau").args == (0.0,)
    assert parse_dist("normal(0, 1e60)", "mu").args == (0.0, 1e60)
    assert parse_dist("lognormal(-138, 1e-60)", "tau").args == (-138.0, 1e-60)


def test_prior_text_parsing_is_linear():
    """A long digit string that fails to match used to backtrack quadratically (no timing assertion:
    this finishes only if the match is linear)."""
    with pytest.raises(PriorError, match="malformed"):
        parse_dist("normal(" + "1" * 200_000 + "x)", "mu")


def test_dist_arguments_that_are_not_numbers_are_a_prior_error():
    with pytest.raises(PriorError, match="must be numbers"):
        Dist("mu", "normal", ("zero", 1))
    with pytest.raises(PriorError, match="must be numbers"):
        Dist("mu", "normal", (True, 1))


def test_synthetic_scales_sigma_and_draws_y_with_the_scaled_sigma():
    base, scaled = synthetic(16, seed=4), synthetic(16, seed=4, sigma_scale=0.01)
    assert scaled.sigma == tuple(s * 0.01 for s in base.sigma) and scaled.sigma_scale == 0.01
    assert (scaled.name, scaled.spec) == ("synthetic-J16-seed4-sigma_scale0.01", "synthetic:J=16:seed=4:sigma_scale=0.01")
    assert (base.name, base.spec, base.sigma_scale) == ("synthetic-J16-seed4", "synthetic:J=16:seed=4", 1.0)
    # tau = 0, mu = 0: y_j ~ normal(0, sigma_j), so y / sigma is standard normal only if y was drawn with
    # the scaled sigma (with the unscaled one its sd would be 100); 5 standard errors, fixed seed
    d = synthetic(20000, tau=0.0, seed=0, sigma_scale=0.01)
    z = d.y_array / d.sigma_array
    assert abs(z.mean()) < 5 / math.sqrt(d.J) and abs(z.std() - 1.0) < 5 / math.sqrt(2 * d.J)
    with pytest.raises(DataError, match="sigma_scale = 0"):
        synthetic(8, sigma_scale=0)
    with pytest.raises(DataError, match=r"J = 10000000: must be an integer in \[2, 1000000\]"):
        synthetic(10_000_000)


def test_digest_is_content_and_provenance_travels():
    a = SchoolsData([1, 2], [3, 4], ["x", "y"], name="a")
    b = SchoolsData([1.0, 2.0], [3.0, 4.0], ["x", "y"], name="b", spec="b.csv")
    assert a.digest() == b.digest() and len(a.digest()) == 64
    assert SchoolsData([1, 2], [3, 4.5], ["x", "y"]).digest() != a.digest()
    assert SchoolsData([1, 2], [3, 4], ["x", "z"]).digest() != a.digest()
    assert RUBIN.to_dict()["sigma_scale"] == 1.0 and RUBIN.spec == "rubin"
    assert RUBIN.to_dict()["digest"] == RUBIN.digest()
