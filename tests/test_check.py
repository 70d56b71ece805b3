"""The reference check: exact draws pass at about the nominal rate, a wrong posterior fails, and
unusable input is exit code 2. (The full calibration is `nox -s calibrate`, in results/calibration/.)"""

import subprocess
import sys

import pytest
from scipy import stats

from models import PRESETS, RUBIN, make_prior
from reference import posterior
from reference.check import DEFAULT_ALPHA, CheckInputError, bonferroni_threshold, check, iid_as_draws

#: smoke calibration: replications of exact iid 4 x 1000 draws (seeded, so the test is deterministic)
SMOKE_REPS = 40
#: the test fails if more alarms occur than a Binomial(SMOKE_REPS, DEFAULT_ALPHA) gives with
#: probability 0.999: a correctly calibrated (or conservative) check trips it 0.1 % of seeds.
SMOKE_MAX_ALARMS = int(stats.binom.ppf(0.999, SMOKE_REPS, DEFAULT_ALPHA))


@pytest.fixture(scope="module")
def ref():
    return posterior(RUBIN, PRESETS["default"])


def _iid(ref, seed, chains=4, n=4000):
    return iid_as_draws(ref.draws(n, seed=seed), chains, RUBIN.school)


def test_exact_draws_pass_at_about_the_nominal_rate(ref):
    alarms = sum(not check(_iid(ref, 1000 + r), ref, J=8, tau_fixed=False).passed for r in range(SMOKE_REPS))
    assert alarms <= SMOKE_MAX_ALARMS


def test_draws_from_another_posterior_fail(ref):
    other = posterior(RUBIN, make_prior(mu_text="normal(0, 5)", tau_text="half_cauchy(0, 2.5)"))
    draws = iid_as_draws(other.draws(4000, seed=5), 4, RUBIN.school)
    verdict = check(draws, ref, J=8, tau_fixed=False)
    assert not verdict.passed
    assert any(f.startswith(("tau", "log_tau")) for f in verdict.failed)


def test_shifted_draws_fail_and_name_the_functional(ref):
    sample = ref.draws(4000, seed=6)
    sample["mu"] = sample["mu"] + 0.5  # ~10 MCSE of the mean of mu
    verdict = check(iid_as_draws(sample, 4, RUBIN.school), ref, J=8, tau_fixed=False)
    assert not verdict.passed and "mu mean" in verdict.failed


def test_threshold_is_bonferroni():
    assert bonferroni_threshold(0.01, 1) == pytest.approx(stats.norm.isf(0.005))
    assert bonferroni_threshold(0.01, 67) > bonferroni_threshold(0.01, 10)


def test_unusable_draws_are_named(ref):
    good = _iid(ref, 1)
    with pytest.raises(CheckInputError, match="missing"):
        check(_drop(good, "tau"), ref, J=8, tau_fixed=False)
    with pytest.raises(CheckInputError, match="does not match the data"):
        check(good, ref, J=9, tau_fixed=False)


def _drop(tree, var):
    import xarray as xr

    post = tree["posterior"].to_dataset().drop_vars(var)
    return xr.DataTree.from_dict({"posterior": post})


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "reference", "check", *args], capture_output=True, text=True)


def test_cli_exit_codes(tmp_path, ref):
    good = tmp_path / "good.nc"
    _iid(ref, 2).to_netcdf(good)
    out = _cli("--posterior", str(good), "--json")
    assert out.returncode == 0, out.stderr
    import json

    obj = json.loads(out.stdout)
    assert obj["passed"] is True and set(obj) >= {"passed", "max_abs_z", "failed", "checks"}
    bad = _cli("--posterior", str(good), "--tau-prior", "half_cauchy(0, 1)")
    assert bad.returncode == 1 and "verdict: FAIL" in bad.stdout
    missing = _cli("--posterior", str(tmp_path / "nope.nc"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    wrong_j = tmp_path / "j9.json"
    wrong_j.write_text('{"y": [1,2,3,4,5,6,7,8,9], "sigma": [1,1,1,1,1,1,1,1,1]}')
    shape = _cli("--posterior", str(good), "--data", str(wrong_j))
    assert shape.returncode == 2 and "theta" in shape.stderr
    no_tau = tmp_path / "notau.nc"
    _drop(_iid(ref, 3), "tau").to_netcdf(no_tau)
    missing_var = _cli("--posterior", str(no_tau))
    assert missing_var.returncode == 2 and "tau" in missing_var.stderr
