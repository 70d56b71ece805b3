"""Approximate-inference methods (benchmarks/approx): every registered method available here fits
Rubin's data under the default prior and returns the layout, finite log_p and log_q on the one
unconstrained scale, a Gaussian q whose log_q is scipy's log pdf of the draws, and the same draws for
the same seed; an unavailable method gives its reason. The smoke fits use few iterations and draws
(ApproxSettings overrides; the library defaults stay the defaults), and the PyMC-based ones (seconds
of PyTensor compilation each) are marked slow."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import REQUIRE_ALL
from scipy import stats

import models
from benchmarks.approx import (
    APPROXIMATORS,
    ApproxFailed,
    ApproxSettings,
    ApproxUnavailable,
    SettingsError,
    _target,
    approximator_version,
    availability,
    get_approximator,
)
from benchmarks.jobs.engines import approximators_table
from models.problem import Problem

DRAWS = 200
#: smoke-test overrides: a few hundred optimisation steps (None: the method's defaults)
SMOKE = {
    "pymc-advi": {"iterations": 500},
    "pymc-fullrank-advi": {"iterations": 500},
    "numpyro-svi-normal": {"iterations": 1000, "learning_rate": 0.01},
    "numpyro-svi-mvn": {"iterations": 1000, "learning_rate": 0.01},
    "numpyro-svi-laplace": {"iterations": 1000, "learning_rate": 0.01},
    "blackjax-meanfield-vi": {"iterations": 500},
    "blackjax-fullrank-vi": {"iterations": 500},
}
SLOW = {"pymc-advi", "pymc-fullrank-advi", "pymc-pathfinder", "pymc-laplace"}  # PyTensor compiles: seconds each
#: methods whose library defaults give a degenerate approximation on this problem, and why: their draws
#: overflow tau (exp of the unconstrained value) to inf or beyond 1e100, where log_p is not finite, or
#: underflow it to 0 (log_p stays finite: it is computed from log tau itself); the test checks that
#: this is what happens, so that it fails (and the entry goes) the day the library's default changes
DEGENERATE = {
    "pymc-laplace": "find_MAP maximises the density without the Jacobian: its mode is at tau -> 0 (log tau "
                    "~ -7.6), where the Hessian is nearly flat in log tau (variance ~1.8e7)",
}
#: the yardstick, a short NUTS run: a sampler with no density q (log_q NaN; its own test below)
SAMPLERS = ("blackjax-nuts-short",)
NAMES = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in APPROXIMATORS if n not in SAMPLERS]

_FITS: dict = {}


def problem(param: str = "noncentered") -> Problem:
    return Problem(models.RUBIN, models.PRESETS["default"], param)


def settings(name: str, seed: int = 1) -> ApproxSettings:
    return ApproxSettings(draws=DRAWS, seed=seed, **SMOKE.get(name, {}))


def require(name: str) -> None:
    reason = availability(name)
    if reason is not None:
        if REQUIRE_ALL:
            pytest.fail(f"EIGHT_SCHOOLS_ALL_ENGINES is set but approximator {name} is unavailable: {reason}")
        pytest.skip(f"{name}: {reason}")


def fitted(name: str, param: str = "noncentered"):
    """The method's smoke fit (seed 1), once per test session."""
    require(name)
    if (name, param) not in _FITS:
        _FITS[name, param] = get_approximator(name).fit(problem(param), settings(name))
    return _FITS[name, param]


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_the_layout_with_finite_log_densities(name):
    r = fitted(name)
    post = r.draws["posterior"].dataset
    assert set(post.data_vars) == {"mu", "tau", "theta", "theta_tilde"}
    assert dict(post.sizes) == {"chain": 1, "draw": DRAWS, "school": 8}
    assert list(post["theta"].dims) == ["chain", "draw", "school"]
    ss = r.draws["sample_stats"].dataset
    assert ss["log_p"].shape == ss["log_q"].shape == (1, DRAWS)
    assert np.isfinite(ss["log_q"].values).all()
    tau = post["tau"].values
    ok = np.isfinite(tau) & (tau > 0)
    if name in DEGENERATE:  # see DEGENERATE: log_p is not finite only where tau is astronomically large
        bad = ~np.isfinite(ss["log_p"].values)
        assert 0 < (~ok).sum() < DRAWS and 0 < bad.sum() < DRAWS
        assert (np.log(tau[bad]) > 100).all() and r.diagnostics.extra["nonfinite_draws"] == bad.sum()
    else:
        assert ok.all() and np.isfinite(ss["log_p"].values).all() and r.diagnostics.extra["nonfinite_draws"] == 0
    for v in post.data_vars.values():
        assert v.dtype == np.float64 and np.isfinite(v.values[ok]).all(), v.name
    np.testing.assert_allclose(post["theta"].values[ok], (post["mu"] + post["tau"] * post["theta_tilde"]).values[ok],
                               rtol=1e-10)
    assert r.manifest["engine"] == name and r.manifest["kind"] == "approximation"
    assert r.manifest["ppl_version"] == approximator_version(name)
    assert r.manifest["settings"] == settings(name).to_dict()
    t = r.timings
    assert min(t.compile_s, t.fit_s, t.draw_s) >= 0 and t.total_s >= t.fit_s
    d = r.diagnostics
    assert math.isfinite(d.elbo_draws)
    assert d.elbo_final is None or math.isfinite(d.elbo_final)
    assert (d.evaluations is None) == ("not exposed" in d.evaluations_note or "not reported" in d.evaluations_note)


@pytest.mark.parametrize("name", [n for n in NAMES if "pathfinder" not in str(n) and "cmdstanpy" not in str(n)])
def test_log_q_is_scipys_gaussian_log_pdf_of_the_draws(name):
    """Gaussian approximations: log_q (computed by the method module) equals scipy's multivariate normal
    log pdf of the draws taken back to the unconstrained scale from the posterior group, with the mean
    and covariance the method reports; and the draws' mean and variances agree with that Gaussian."""
    r = fitted(name)
    pb = problem()
    post = r.draws["posterior"].dataset
    tau = post["tau"].values[0]
    ok = np.isfinite(tau) & (tau > 0)  # all but DEGENERATE's overflowed draws
    U = _target.unconstrain(pb, {k: post[k].values[0][ok] for k in ("mu", "tau", "theta_tilde")})
    mean, cov = np.array(r.diagnostics.extra["q_mean"]), np.array(r.diagnostics.extra["q_cov"])
    expected = stats.multivariate_normal(mean, cov).logpdf(U)
    # round-off only: tau goes to exp and back through log (relative 1e-15 of values ~ 40)
    np.testing.assert_allclose(r.draws["sample_stats"]["log_q"].values[0][ok], expected, rtol=1e-9, atol=1e-9)
    if not ok.all():
        return  # the moments below need every draw
    sd = np.sqrt(np.diag(cov))
    # 200 draws: the mean's standard error is sd / sqrt(200); the variance's is about var * sqrt(2 / 199)
    assert np.all(np.abs(U.mean(axis=0) - mean) < 5 * sd / math.sqrt(DRAWS))
    assert np.all(np.abs(U.var(axis=0, ddof=1) / sd**2 - 1) < 5 * math.sqrt(2 / (DRAWS - 1)))


def test_log_p_is_the_jax_models_log_density():
    """_target.log_p (NumPy, for every method) is models/jax_model.py's log_density at the same
    unconstrained points, for both parameterisations and a prior with interval transforms."""
    pytest.importorskip("jax")
    from benchmarks.engines._jax_common import jax  # float64 before any array
    from models import jax_model

    rng = np.random.default_rng(3)
    for preset in ("default", "notebook", "bda3"):
        for param in ("centered", "noncentered"):
            pb = Problem(models.RUBIN, models.PRESETS[preset], param)
            U = rng.normal(0, 1.5, size=(50, _target.dim(pb)))
            m = jax_model.build(pb.prior, param, pb.J)
            y, sigma = pb.data.y_array, pb.data.sigma_array
            ref = np.asarray(jax.vmap(lambda u, m=m, y=y, sigma=sigma: m.log_density(u, y, sigma))(U))
            np.testing.assert_allclose(_target.log_p(pb, U), ref, rtol=1e-12, atol=1e-10)
            back = _target.unconstrain(pb, _target.constrain(pb, U))
            np.testing.assert_allclose(back, U, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["blackjax-pathfinder", "numpyro-svi-normal",
                                  pytest.param("pymc-advi", marks=pytest.mark.slow)])
def test_same_seed_same_draws(name):
    first = fitted(name)
    again = get_approximator(name).fit(problem(), settings(name))
    for k in ("mu", "tau", "theta"):
        np.testing.assert_array_equal(again.draws["posterior"][k].values, first.draws["posterior"][k].values)
    np.testing.assert_array_equal(again.draws["sample_stats"]["log_q"].values,
                                  first.draws["sample_stats"]["log_q"].values)


def test_a_degenerate_laplace_approximation_is_a_failed_fit():
    """Centred, the density has no mode (it grows without bound as tau -> 0 with theta -> mu): NumPyro's
    Laplace ends at a singular Hessian and falls back to a zero scale, which is refused, not drawn from."""
    require("numpyro-svi-laplace")
    with pytest.raises(ApproxFailed, match="degenerate.*Hessian at the MAP is singular"):
        get_approximator("numpyro-svi-laplace").fit(problem("centered"), ApproxSettings(draws=DRAWS, seed=1))


def test_centred_layout_has_no_theta_tilde():
    r = fitted("blackjax-meanfield-vi", "centered")
    post = r.draws["posterior"].dataset
    assert set(post.data_vars) == {"mu", "tau", "theta"} and (post["tau"].values > 0).all()
    assert np.isfinite(r.draws["sample_stats"]["log_p"].values).all()


@pytest.mark.parametrize("name", ["cmdstanpy-advi", "cmdstanpy-pathfinder"])
def test_an_unavailable_method_says_why(name):
    reason = availability(name)
    if reason is None:
        pytest.skip(f"{name} is available here (CmdStan found)")
    assert "CmdStan" in reason or "cmdstanpy" in reason
    with pytest.raises(ApproxUnavailable, match="CmdStan|cmdstanpy"):
        get_approximator(name).fit(problem(), settings(name))


@pytest.mark.parametrize(("field", "value"), [("draws", 0), ("seed", -1), ("seed", 2**32), ("iterations", 0),
                                              ("iterations", 1.5), ("learning_rate", 0.0),
                                              ("learning_rate", math.nan), ("draws", True)])
def test_settings_refuse_unusable_values_naming_the_field(field, value):
    with pytest.raises(SettingsError, match=rf"^{field} = "):
        ApproxSettings(**{field: value})


def test_engines_job_lists_every_approximator_with_availability():
    rows = {r["approximator"]: r for r in approximators_table()}
    assert set(rows) == set(APPROXIMATORS)
    for name, r in rows.items():
        assert r["available"] == (r["reason"] is None) and r["version"] == approximator_version(name)


class _FakeCmdStanFit:
    """What cmdstanpy's CmdStanVB / CmdStanPathfinder give back, from given unconstrained draws."""

    def __init__(self, pb: Problem, U: np.ndarray) -> None:
        import pandas as pd

        self.point = _target.constrain(pb, U)
        lq = stats.multivariate_normal(np.zeros(U.shape[1])).logpdf(U)
        self.variational_sample_pd = pd.DataFrame({"lp__": 0.0, "log_p__": 0.0, "log_g__": lq})
        self.lq = lq

    def stan_variable(self, name, mean=None):
        assert mean in (None, False)
        return self.point[name]

    def method_variables(self):
        return {"lp__": np.zeros_like(self.lq), "lp_approx__": self.lq}


@pytest.mark.parametrize(("name", "call"), [("cmdstanpy-advi", "variational"), ("cmdstanpy-pathfinder", "pathfinder")])
def test_cmdstanpy_methods_convert_cmdstans_output(monkeypatch, name, call):
    """Without CmdStan: a stand-in for the compiled model checks the arguments the method passes and
    the conversion of CmdStan's constrained draws to the layout, log_p and log_q (CmdStan's own)."""
    from benchmarks.approx import cmdstanpy_vi
    from benchmarks.engines import cmdstanpy_engine

    pb, calls = problem(), []
    U = np.random.default_rng(0).normal(size=(2 * DRAWS, _target.dim(pb)))  # more than asked: kept in order

    class Model:
        exe_file = "fake"

        def __getattr__(self, method):
            def run(**kwargs):
                calls.append((method, kwargs))
                return _FakeCmdStanFit(pb, U)
            return run

    class FakeCmdStanPy:
        __version__ = "0.0-fake"

    monkeypatch.setattr(cmdstanpy_engine.ENGINE, "availability", lambda: None)
    monkeypatch.setattr(cmdstanpy_engine, "_model", lambda problem: (Model(), {}, "compiled in this run"))
    monkeypatch.setattr(cmdstanpy_engine, "_cmdstanpy", lambda: FakeCmdStanPy)
    r = cmdstanpy_vi.APPROXIMATORS[name].fit(pb, ApproxSettings(draws=DRAWS, seed=7))
    (method, kwargs), = calls
    assert method == call and kwargs["seed"] == 7 and kwargs["draws"] == DRAWS
    assert kwargs.get("algorithm", "meanfield") == "meanfield" and kwargs.get("psis_resample", False) is False
    post = r.draws["posterior"].dataset
    assert dict(post.sizes) == {"chain": 1, "draw": DRAWS, "school": 8}
    np.testing.assert_allclose(r.draws["sample_stats"]["log_q"].values[0], _FakeCmdStanFit(pb, U).lq[:DRAWS])
    np.testing.assert_allclose(r.draws["sample_stats"]["log_p"].values[0], _target.log_p(pb, U[:DRAWS]),
                               rtol=1e-9)


def test_the_short_nuts_yardstick_has_the_layout_and_its_gradient_count_but_no_q():
    name = "blackjax-nuts-short"
    require(name)
    r = get_approximator(name).fit(problem(), ApproxSettings(draws=DRAWS, seed=1, iterations=100))
    post = r.draws["posterior"].dataset
    assert dict(post.sizes) == {"chain": 1, "draw": DRAWS, "school": 8}
    ss = r.draws["sample_stats"].dataset
    assert np.isfinite(ss["log_p"].values).all() and np.isnan(ss["log_q"].values).all()
    d = r.diagnostics
    per_chain = DRAWS // 4
    assert d.extra["warmup"] == 100 and d.extra["draws_per_chain"] == per_chain
    assert d.evaluations >= 4 * (100 + per_chain)  # at least one leapfrog step per iteration
