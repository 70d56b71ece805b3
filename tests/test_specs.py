"""Data and prior specs (models.specs) and the model's command-line arguments (models.cli_args)."""

import argparse
import json

import pytest

from models import PRESETS, RUBIN, DataError, PriorError, synthetic
from models.cli_args import add_model_arguments, model_from_args
from models.errors import UsageError
from models.specs import resolve_data, resolve_prior


def test_rubin_and_its_scaled_versions():
    assert resolve_data("rubin") is RUBIN
    assert resolve_data("rubin:sigma_scale=1") is RUBIN  # the default is dropped: the same data
    d = resolve_data("rubin:sigma_scale=0.1")
    assert d.y == RUBIN.y and d.school == RUBIN.school
    assert d.sigma == tuple(s * 0.1 for s in RUBIN.sigma)
    assert (d.name, d.sigma_scale, d.spec) == ("rubin-sigma_scale0.1", 0.1, "rubin:sigma_scale=0.1")
    assert resolve_data(" rubin : sigma_scale = .1 ") == d  # spelling does not matter, the canonical spec is kept
    assert resolve_data("rubin:sigma_scale=4").name == "rubin-sigma_scale4"


def test_synthetic_specs_are_the_synthetic_draws():
    d = resolve_data("synthetic:J=64:seed=3")
    assert d == synthetic(64, seed=3) and d.J == 64
    s = resolve_data("synthetic:sigma_scale=0.25:J=8:tau=2:mu=1:seed=5")  # keys in any order
    assert s == synthetic(8, seed=5, tau=2.0, mu=1.0, sigma_scale=0.25)
    assert s.spec == "synthetic:J=8:seed=5:tau=2:mu=1:sigma_scale=0.25"
    assert s.name == "synthetic-J8-seed5-tau2-mu1-sigma_scale0.25"


@pytest.mark.parametrize("spec", ["rubin", "rubin:sigma_scale=0.05", "synthetic:J=16", "synthetic:J=8:seed=2:tau=0:sigma_scale=3"])
def test_a_canonical_spec_resolves_to_the_same_data(spec):
    d = resolve_data(spec)
    assert resolve_data(d.spec) == d


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("", "expected rubin | rubin:sigma_scale=S"),
        ("rubn", "data = 'rubn': not a known spec nor a .csv/.json file"),
        ("rubin:sigma=2", "unknown key 'sigma' for rubin (keys: sigma_scale)"),
        ("rubin:sigma_scale", "part 'sigma_scale' is not KEY=VALUE"),
        ("rubin:sigma_scale=", "part 'sigma_scale=' is not KEY=VALUE"),
        ("rubin:sigma_scale=0", "sigma_scale = '0' must be a finite number > 0"),
        ("rubin:sigma_scale=nan", "sigma_scale = 'nan' must be a finite number > 0"),
        ("rubin:sigma_scale=1e-70", "sigma_scale = 1e-70 takes sigma out of range"),
        ("rubin:sigma_scale=2:sigma_scale=3", "sigma_scale given twice"),
        ("synthetic", "synthetic needs J"),
        ("synthetic:seed=1", "synthetic needs J"),
        ("synthetic:J=1", "J = '1' must be an integer >= 2"),
        ("synthetic:J=8.5", "J = '8.5' must be an integer >= 2"),
        ("synthetic:J=99999999999999999999999", "J = '99999999999999999999999' must be an integer"),
        ("synthetic:J=10000000", "J = 10000000: must be an integer in [2, 1000000]"),
        ("synthetic:J=8:seed=-1", "seed = '-1' must be an integer >= 0"),
        ("synthetic:J=8:tau=-2", "tau = '-2' must be a finite number >= 0"),
        ("synthetic:J=8:mu=inf", "mu = 'inf' must be a finite number"),
        ("synthetic:J=8:K=3", "unknown key 'K' for synthetic"),
        ("no/such/file.csv", "data file = 'no/such/file.csv': no such file"),
    ],
)
def test_every_malformed_data_spec_names_the_spec_and_the_part(spec, needle):
    with pytest.raises(DataError) as e:
        resolve_data(spec)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert repr(spec) in str(e.value) or spec == ""


def test_files_are_specs_and_the_digest_tells_colliding_stems_apart(tmp_path):
    (tmp_path / "a").mkdir()
    one, two = tmp_path / "a" / "x.csv", tmp_path / "a-x.csv"
    one.write_text("y,sigma\n1,2\n3,4\n")
    two.write_text("y,sigma\n1,2\n3,5\n")
    d1, d2 = resolve_data(str(one)), resolve_data(str(two))
    assert (d1.spec, d2.spec) == (str(one), str(two))
    assert d1.digest() != d2.digest()
    two.write_text("y,sigma\n1,2\n3,4\n")  # the same content under another name: the same digest
    assert resolve_data(str(two)).digest() == d1.digest()
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"y": 1, "sigma": 2}, {"y": 3, "sigma": 4}]))
    assert resolve_data(str(rows)).digest() == d1.digest()


def test_prior_specs():
    assert resolve_prior("bda3") is PRESETS["bda3"]
    p = resolve_prior("mu=flat;tau=fixed(8)")
    assert (str(p.mu), str(p.tau), p.name) == ("flat", "fixed(8)", "custom")
    assert resolve_prior("tau=uniform(0, 50); mu=normal(0, 10)") == resolve_prior("mu=normal(0, 10);tau=uniform(0, 50)")
    assert resolve_prior("tau=flat").mu == PRESETS["default"].mu  # a missing part takes the default's


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("nope", "prior preset = 'nope' is unknown; presets: default, bda3"),
        ("", "expected a preset"),
        ("mu=flat;sigma=2", "part 'sigma=2' is not mu=TEXT or tau=TEXT"),
        ("mu=flat;mu=flat", "mu given twice"),
        ("mu=flat;tau=gamma(2, 1)", "prior = 'mu=flat;tau=gamma(2, 1)': tau prior = 'gamma(2, 1)': unknown family"),
        ("mu=normal(0, 1e300)", "scale = 1e+300 is outside the supported range"),
    ],
)
def test_every_malformed_prior_spec_is_one_prior_error(spec, needle):
    with pytest.raises(PriorError) as e:
        resolve_prior(spec)
    assert needle in str(e.value) and "\n" not in str(e.value)


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    return model_from_args(parser.parse_args(list(argv)))


def test_model_arguments():
    assert _parse() == (RUBIN, PRESETS["default"])
    data, prior = _parse("--data", "rubin:sigma_scale=2", "--prior", "notebook")
    assert data.sigma_scale == 2.0 and prior is PRESETS["notebook"]
    _, prior = _parse("--prior", "mu=flat;tau=flat")
    assert prior.mu.family == prior.tau.family == "flat"
    _, prior = _parse("--tau-prior", "fixed(3)")
    assert prior.mu == PRESETS["default"].mu and prior.tau_fixed
    with pytest.raises(PriorError, match="not both"):
        _parse("--prior", "bda3", "--mu-prior", "flat")
    with pytest.raises(UsageError, match="synthetic needs J"):
        _parse("--data", "synthetic")
