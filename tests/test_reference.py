"""The analytic grid reference: normalisation, refinement, limits, brute force, exact draws, CLI.

Every tolerance is either the reference's own stated error (plus, where another computation is
compared, that computation's own error estimate) or a bound derived in the comment beside it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, special, stats

from models import PRESETS, RUBIN, SchoolsData, make_prior, parse_dist, prior_logpdf, synthetic
from reference import LEVELS, PosteriorError, posterior
from reference._special import bvn_cdf, tn_cdf, tn_from_uniform, tn_moments, tn_pdf
from reference.cli import main
from reference.marginal import Schools, log_post_u, log_tau_prior, tau_support

REPO = Path(__file__).resolve().parents[1]
GRID_PRESETS = ("default", "bda3", "notebook")  # presets with a tau prior (a grid)
KEYS = [repr(q) for q in LEVELS]


def _thetas(J: int) -> list[str]:
    return [f"theta[{j + 1}]" for j in range(J)]


# --- building blocks ------------------------------------------------------------------------------

#: the vectorised tau prior and models.prior_logpdf evaluate the same formulas in a different order:
#: they differ by a few ulps of the log density
PRIOR_RTOL = 1e-13


@pytest.mark.parametrize(
    "text",
    [
        "flat",
        "uniform(0, 50)",
        "uniform(2, 9)",
        "half_cauchy(0, 5)",
        "half_normal(0, 3)",
        "lognormal(1, 0.5)",
    ],
)
def test_vectorised_tau_prior_is_the_specification(text):
    dist = parse_dist(text, "tau")
    tau = np.array([1e-3, 0.5, 2.0, 8.0, 49.0, 60.0])
    spec = np.array([prior_logpdf(dist, t) for t in tau])
    np.testing.assert_allclose(log_tau_prior(dist, tau), spec, rtol=PRIOR_RTOL, atol=0)


#: Owen's T (scipy.special.owens_t) is accurate to ~1e-16 absolute; the other side of the comparison
#: is adaptive quadrature, whose own error estimate is added
BVN_ABS = 1e-15


@pytest.mark.parametrize(
    "h,k,rho",
    [
        (0.3, -0.7, 0.5),
        (0.0, 0.0, 0.3),
        (0.0, 1.2, -0.8),
        (-1.5, 0.0, 0.9),
        (2.0, 2.5, 0.999),
        (-3.0, 1.0, -0.2),
    ],
)
def test_bivariate_normal_cdf_matches_quadrature(h, k, rho):
    r = math.sqrt(1 - rho * rho)
    val, err = integrate.quad(
        lambda z: stats.norm.pdf(z) * special.ndtr((k - rho * z) / r), -np.inf, h, epsabs=1e-14, epsrel=1e-12
    )
    assert abs(float(bvn_cdf(h, k, rho, r)) - val) <= err + BVN_ABS


#: both sides evaluate truncated-normal formulas in double precision through log-CDFs; exp of a log
#: carries ~1e-16 |log value| relative error, |log value| < 1e3 here
TN_RTOL = 1e-12


def cdf_roundoff(grid) -> float:
    """Round-off bound of the grid CDF near its window's ends: the normalised panel masses are summed
    over N nodes (error <= N eps, Higham's bound for recursive summation), and the end point itself
    passes through the sinh map and back, a few ulps that differ between CPUs' libm."""
    return (grid.u.size + 8) * np.finfo(float).eps


@pytest.mark.parametrize("m,s,a,b", [(0, 1, -1, 2), (8, 4.5, -20, 20), (30, 2, -20, 20), (-26, 1, -20, 20)])
def test_truncated_normal_against_scipy(m, s, a, b):
    ref = stats.truncnorm((a - m) / s, (b - m) / s, loc=m, scale=s)
    x = np.linspace(a, b, 9)[1:-1]
    np.testing.assert_allclose(tn_cdf(x, m, s, a, b), ref.cdf(x), rtol=TN_RTOL, atol=1e-300)
    np.testing.assert_allclose(tn_pdf(x, m, s, a, b), ref.pdf(x), rtol=TN_RTOL, atol=1e-300)
    mean, var = tn_moments(np.array(m, float), np.array(s, float), a, b)
    # the variance formula subtracts O(1) terms to get var/s^2: relative error eps / (var/s^2)
    np.testing.assert_allclose([mean, var], ref.stats("mv"), rtol=TN_RTOL / min(1.0, float(ref.var()) / s**2))
    u = np.array([1e-6, 0.3, 0.5, 0.9, 1 - 1e-6])
    np.testing.assert_allclose(tn_from_uniform(u, m, s, a, b), ref.ppf(u), rtol=TN_RTOL)


# --- normalisation and refinement -------------------------------------------------------------------


@pytest.mark.parametrize("name", GRID_PRESETS)
def test_normalisation_against_adaptive_quadrature(name):
    """The grid's normalising constant integrates the unnormalised density to 1 (independent quad)."""
    prior = PRESETS[name]
    ref = posterior(RUBIN, prior)
    fine, coarse = ref.fine, ref.coarse
    lo, hi = tau_support(prior.tau)

    def dens(u: float) -> float:
        return math.exp(float(log_post_u(Schools.of(RUBIN), prior, np.array([u]))[0]) - fine.log_norm)

    mode = ref.grid_info.window.mode
    left, e1 = integrate.quad(dens, lo, mode, epsabs=1e-13, epsrel=1e-12, limit=200)
    right, e2 = integrate.quad(dens, mode, hi, epsabs=1e-13, epsrel=1e-12, limit=200)
    # stated: grid error of the log normaliser (fine vs coarse) and the mass outside the window
    stated = abs(fine.log_norm - coarse.log_norm) + ref.grid_info.truncated_mass
    assert abs(left + right - 1.0) <= e1 + e2 + stated
    # outside the window the CDF is 0 or 1 by construction; at its ends it is the panels' sum, which
    # CPUs' libm (the u <-> v map through sinh) and summation order round differently
    a, b = fine.window
    assert fine.cdf(np.array(a - 1.0)) == 0.0 and fine.cdf(np.array(b + 1.0)) == 1.0
    assert abs(fine.cdf(np.array(a))) <= cdf_roundoff(fine) and abs(fine.cdf(np.array(b)) - 1.0) <= cdf_roundoff(fine)
    assert np.all(np.diff(ref.cdf("tau", np.linspace(0, 100, 2001))) >= 0)


def _assert_within_error(coarse_ref, finer_ref, names):
    for q in names:
        a, b = coarse_ref.summary(q), finer_ref.summary(q)
        if math.isfinite(a.mean):
            assert abs(a.mean - b.mean) <= a.error.mean, (q, "mean")
        if math.isfinite(a.sd):
            assert abs(a.sd - b.sd) <= a.error.sd, (q, "sd")
        for k in KEYS:
            assert abs(a.quantiles[k] - b.quantiles[k]) <= a.error.quantiles[k], (q, k)


@pytest.mark.parametrize("name", GRID_PRESETS)
def test_refining_the_grid_moves_nothing_beyond_its_stated_error(name):
    ref = posterior(RUBIN, PRESETS[name])
    finer = posterior(RUBIN, PRESETS[name], panels=2 * ref.grid_info.panels)
    _assert_within_error(ref, finer, ref.names)


def test_compressed_mixtures_agree_with_the_full_grid_within_their_error():
    """Large J: mixtures run on a Gauss rule of a few nodes; compare with the uncompressed finer grid."""
    data = synthetic(3000, seed=3)
    ref = posterior(data, PRESETS["default"])
    assert ref.grid_info.mixture_nodes < ref.grid_info.panels * ref.grid_info.order
    finer = posterior(data, PRESETS["default"], panels=2 * ref.grid_info.panels, compress=False)
    _assert_within_error(ref, finer, ["mu", "tau", "log_tau", *_thetas(data.J)[:: data.J // 50]])


# --- limits -----------------------------------------------------------------------------------------


def test_tau_zero_is_complete_pooling():
    ref = posterior(RUBIN, make_prior(None, "flat", "fixed(0)"))
    y, s = RUBIN.y_array, RUBIN.sigma_array
    mean = float(np.sum(y / s**2) / np.sum(1 / s**2))
    sd = float(np.sum(1 / s**2) ** -0.5)
    assert (round(mean, 2), round(sd, 2)) == (7.69, 4.07)
    for q in ["mu", *_thetas(RUBIN.J)]:
        S = ref.summary(q)
        assert abs(S.mean - mean) <= S.error.mean and abs(S.sd - sd) <= S.error.sd
        for level, k in zip(LEVELS, KEYS):
            assert abs(S.quantiles[k] - (mean + sd * special.ndtri(level))) <= S.error.quantiles[k]
    assert ref.summary("tau").fixed and ref.to_dict()["tau"] == {"fixed": 0.0}


def test_tau_large_is_no_pooling():
    T = 1e6
    ref = posterior(RUBIN, make_prior(None, "flat", f"fixed({T:g})"))
    y, s = RUBIN.y_array, RUBIN.sigma_array
    B = s**2 / (s**2 + T**2)
    # mean - y_j = B_j (E[mu] - y_j), E[mu] a weighted mean of y: |.| <= B_j * range(y);
    # var - s_j^2 = -B_j s_j^2 + B_j^2 Var[mu], Var[mu] = 1/W <= (T^2 + max s^2) / J
    mean_bound = B * np.ptp(y)
    var_bound = B * s**2 + B**2 * (T**2 + np.max(s) ** 2) / RUBIN.J
    for j, q in enumerate(_thetas(RUBIN.J)):
        S = ref.summary(q)
        assert abs(S.mean - y[j]) <= mean_bound[j] + S.error.mean
        assert abs(S.sd - s[j]) <= var_bound[j] / s[j] + S.error.sd  # |sd - s| = |sd^2 - s^2| / (sd + s)


@pytest.mark.parametrize("mu_text", ["flat", "uniform(-20, 20)"])
def test_fixed_tau_closed_form_matches_the_grid_at_a_narrow_prior(mu_text):
    """uniform(T - d, T + d) on tau versus fixed(T): the narrow-prior posterior is a mixture over tau in
    that interval of fixed-tau posteriors, so its CDF lies between theirs and its quantiles and means
    within their range (attained at the ends for a smooth monotone dependence, plus the second
    difference as the curvature allowance); its variance lies in [min var, max var + (range of means)^2].
    """
    T, d = 8.0, 1e-3
    narrow = posterior(RUBIN, make_prior(None, mu_text, f"uniform({T - d}, {T + d})"))
    taus = T + d * np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    fixed = [posterior(RUBIN, make_prior(None, mu_text, f"fixed({float(t)!r})")) for t in taus]
    for q in ["mu", *_thetas(RUBIN.J)]:
        S = narrow.summary(q)
        F = [f.summary(q) for f in fixed]

        def band(values, errors):
            v = np.array(values)
            slack = abs(v[0] - 2 * v[2] + v[4]) + max(errors)
            return v.min() - slack, v.max() + slack

        lo, hi = band([f.mean for f in F], [f.error.mean for f in F])
        assert lo - S.error.mean <= S.mean <= hi + S.error.mean
        means, var = np.array([f.mean for f in F]), np.array([f.sd for f in F]) ** 2
        sd_lo = math.sqrt(var.min()) - max(f.error.sd for f in F)
        sd_hi = math.sqrt(var.max() + np.ptp(means) ** 2) + max(f.error.sd for f in F)
        assert sd_lo - S.error.sd <= S.sd <= sd_hi + S.error.sd
        for k in KEYS:
            lo, hi = band([f.quantiles[k] for f in F], [f.error.quantiles[k] for f in F])
            assert lo - S.error.quantiles[k] <= S.quantiles[k] <= hi + S.error.quantiles[k]


# --- independent brute force: J = 3, direct 2-D integration over (mu, tau) ---------------------------

J3 = SchoolsData(RUBIN.y[:3], RUBIN.sigma[:3], RUBIN.school[:3], name="rubin3")


def _scalar_logpdf(dist):
    """The spec's prior density as a plain-math closure (quadrature calls it ~10^5 times); checked
    against models.prior_logpdf in the test."""
    f = dist.family
    if f == "normal":
        m, s = dist["loc"], dist["scale"]
        return lambda x: -0.5 * ((x - m) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))
    if f == "uniform":
        a, b = dist["lower"], dist["upper"]
        return lambda x: -math.log(b - a) if a <= x <= b else -math.inf
    if f == "half_cauchy":
        s = dist["scale"]
        return lambda x: math.log(2 / (math.pi * s)) - math.log1p((x / s) ** 2) if x > 0 else -math.inf
    raise NotImplementedError(f)


def _brute_force(prior, x_tau: float, x_theta: float):
    """Nested adaptive quadrature over (tau, mu) of the joint p(mu, tau, y), theta integrated
    analytically (y_j ~ normal(mu, sigma_j^2 + tau^2)), times
    [1, mu, mu^2, tau, tau^2, 1{tau <= x_tau}, E[theta_1 | mu, tau, y], P(theta_1 <= x_theta | mu, tau, y)].
    Returns (integrals, error bound): the outer quadrature's max-norm error plus the integral of the
    inner quadrature's error."""
    y, s = J3.y, J3.sigma
    log_mu, log_tau = _scalar_logpdf(prior.mu), _scalar_logpdf(prior.tau)

    def log_joint(mu: float, tau: float) -> float:
        lp = log_mu(mu) + log_tau(tau)
        for yj, sj in zip(y, s):
            v = sj * sj + tau * tau
            lp -= 0.5 * (math.log(v) + (yj - mu) ** 2 / v)
        return lp

    shift = log_joint(8.0, 5.0)
    mu_lo, mu_hi = (
        (prior.mu["lower"], prior.mu["upper"]) if prior.mu.family == "uniform" else (-np.inf, np.inf)
    )
    tau_hi = prior.tau["upper"] if prior.tau.family == "uniform" else np.inf

    def inner(tau: float) -> np.ndarray:
        B = s[0] ** 2 / (s[0] ** 2 + tau**2)
        noise = math.sqrt(1 - B) * s[0]

        def g(mu: float) -> np.ndarray:
            p = math.exp(log_joint(mu, tau) - shift)
            m1 = (1 - B) * y[0] + B * mu
            cdf = 0.5 * math.erfc(-(x_theta - m1) / (noise * math.sqrt(2)))
            return p * np.array([1.0, mu, mu * mu, tau, tau * tau, float(tau <= x_tau), m1, cdf])

        val, err = integrate.quad_vec(g, mu_lo, mu_hi, epsabs=1e-13, epsrel=1e-10, norm="max")
        return np.append(val, err)

    val, err = integrate.quad_vec(inner, 0.0, tau_hi, epsabs=1e-13, epsrel=1e-10, norm="max", points=[x_tau])
    return val[:-1], err + val[-1]


@pytest.mark.parametrize("name", ["default", "notebook"])
def test_brute_force_two_dimensional_integration_J3(name):
    prior = PRESETS[name]
    ref = posterior(J3, prior)
    x_tau = ref.summary("tau").quantiles["0.5"]
    x_theta = ref.summary("theta[1]").quantiles["0.25"]
    for t in (0.5, 3.0, 40.0):
        assert _scalar_logpdf(prior.tau)(t) == pytest.approx(prior_logpdf(prior.tau, t), rel=PRIOR_RTOL)
        assert _scalar_logpdf(prior.mu)(t - 5) == pytest.approx(prior_logpdf(prior.mu, t - 5), rel=PRIOR_RTOL)
    val, err = _brute_force(prior, x_tau, x_theta)
    Z = val[0]

    def ratio(i: int) -> tuple[float, float]:
        e = val[i] / Z
        return e, (err + abs(e) * err) / Z  # first-order error of a ratio of two integrals

    for i, got, stated in [
        (1, ref.summary("mu").mean, ref.summary("mu").error.mean),
        (3, ref.summary("tau").mean, ref.summary("tau").error.mean),
        (6, ref.summary("theta[1]").mean, ref.summary("theta[1]").error.mean),
    ]:
        e, tol = ratio(i)
        assert abs(got - e) <= tol + stated, (i, got, e)
    for i, name_ in [(2, "mu"), (4, "tau")]:
        m1, t1 = ratio(i - 1)
        m2, t2 = ratio(i)
        sd = math.sqrt(m2 - m1 * m1)
        tol = (t2 + 2 * abs(m1) * t1) / (2 * sd)  # first-order propagation into sqrt(E x^2 - (E x)^2)
        S = ref.summary(name_)
        assert abs(S.sd - sd) <= tol + S.error.sd, name_
    # CDFs at the reported quantiles: the brute-force probability must be the level, within the
    # quadrature error plus the quantile's stated error times the density there
    p_tau, t_tau = ratio(5)
    assert abs(p_tau - 0.5) <= t_tau + ref.summary("tau").error.quantiles["0.5"] * float(
        ref.pdf("tau", x_tau)
    )
    p_th, t_th = ratio(7)
    slack = ref.summary("theta[1]").error.quantiles["0.25"] * float(ref.pdf("theta[1]", x_theta))
    assert abs(p_th - 0.25) <= t_th + slack


# --- heavy tails and improper posteriors ------------------------------------------------------------


def test_infinite_moments_are_reported_not_approximated():
    data = SchoolsData([28, 8, -3], [15, 10, 16], name="three")  # bda3: p(tau | y) ~ tau^-2
    ref = posterior(data, PRESETS["bda3"])
    tau, mu = ref.summary("tau"), ref.summary("mu")
    assert tau.mean == math.inf and tau.sd == math.inf and "infinite" in tau.note
    assert math.isnan(mu.mean) and mu.sd == math.inf
    assert all(math.isfinite(v) for v in tau.quantiles.values())
    assert json.loads(ref.to_json())["tau"]["mean"] is None
    four = posterior(SchoolsData([28, 8, -3, 7], [15, 10, 16, 11]), PRESETS["bda3"])  # tau^-3: mean only
    assert math.isfinite(four.summary("tau").mean) and four.summary("tau").sd == math.inf


def test_improper_posterior_is_refused():
    with pytest.raises(PosteriorError, match="improper"):
        posterior(SchoolsData([1.0, 2.0], [1.0, 1.0]), PRESETS["bda3"])


# --- exact draws ------------------------------------------------------------------------------------

N_DRAWS = 100_000
KS_PRESETS = ("default", "bda3", "notebook", "notebook-tau8")
#: quantities tested: mu, tau (not for a fixed tau) and the 8 thetas, for each preset
N_KS_TESTS = sum(1 + (not PRESETS[p].tau_fixed) + RUBIN.J for p in KS_PRESETS)
#: the whole module's false-alarm rate for the KS tests (over seeds; the seed below is fixed),
#: split by Bonferroni over every quantity of every preset
KS_FAMILY_ALPHA = 1e-3
KS_ALPHA = KS_FAMILY_ALPHA / N_KS_TESTS


@pytest.mark.parametrize("name", KS_PRESETS)
def test_exact_draws_follow_the_reference_cdfs(name):
    ref = posterior(RUBIN, PRESETS[name])
    d = ref.draws(N_DRAWS, seed=20240611)
    assert d["mu"].shape == (N_DRAWS,) and d["tau"].shape == (N_DRAWS,) and d["theta"].shape == (N_DRAWS, 8)
    series = {"mu": d["mu"], **{q: d["theta"][:, j] for j, q in enumerate(_thetas(RUBIN.J))}}
    if not PRESETS[name].tau_fixed:
        series["tau"] = d["tau"]
    for q, x in series.items():
        p = stats.kstest(x, lambda v, q=q: ref.cdf(q, v)).pvalue
        assert p > KS_ALPHA, (q, p)


def test_draws_are_reproducible_and_tau_is_the_exact_inverse_cdf():
    ref = posterior(RUBIN, PRESETS["bda3"])
    a, b = ref.draws(1000, seed=7), ref.draws(1000, seed=7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    u = np.random.default_rng(7).random(1000)  # the same stream the draws start with
    # one Newton step on a ~1e-7 guess leaves round-off: 1e-12 relative is ~1e4 ulps
    np.testing.assert_allclose(a["tau"], ref.quantile("tau", u), rtol=1e-12)


# --- CLI and outputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--prior", "nope"], "prior preset = 'nope'"),
        (["--tau-prior", "cauchy(1, 5)"], "tau prior = 'cauchy(1, 5)'"),
        (["--mu-prior", "normal(0, -1)"], "scale = -1 must be > 0"),
        (["--prior", "bda3", "--mu-prior", "flat"], "prior preset = 'bda3'"),
        (["--data", "no/such/file.csv"], "data file = 'no/such/file.csv'"),
        (["--draws", "10"], "--draws and --out"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err


def test_bad_data_file_and_improper_posterior_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("y,sigma\n1,2\n3,-1\n")
    assert main(["--data", str(bad)]) == 2
    assert "sigma[1] = -1.0" in capsys.readouterr().err
    two = tmp_path / "two.json"
    two.write_text(json.dumps({"y": [1, 2], "sigma": [1, 1]}))
    assert main(["--data", str(two), "--prior", "bda3"]) == 2
    assert "improper" in capsys.readouterr().err


def test_argparse_errors_exit_2(capsys):
    # under the exit-code contract (models.errors.run_cli) main returns the code, it does not raise
    assert main(["--draws", "0", "--out", "x.nc"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--draws: invalid value '0'" in err and "\n" not in err  # one line, not argparse's usage block


def test_json_schema_from_the_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "reference", "--prior", "default", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    doc = json.loads(out.stdout)
    assert list(doc) == ["mu", "tau", "log_tau", *_thetas(8)]
    for entry in doc.values():
        assert set(entry) == {"mean", "sd", "error", "quantiles"}
        assert list(entry["quantiles"]) == ["0.025", "0.05", "0.25", "0.5", "0.75", "0.95", "0.975"]
        assert set(entry["error"]) == {"mean", "sd", "quantiles"}
        assert all(isinstance(v, float) for v in [entry["mean"], entry["sd"], *entry["quantiles"].values()])


def test_fixed_tau_json_marks_tau_fixed(capsys):
    assert main(["--prior", "notebook-tau8", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["tau"] == {"fixed": 8.0} and "log_tau" not in doc and "theta[8]" in doc


def test_table_and_draws_file(tmp_path, capsys):
    import xarray as xr

    out = tmp_path / "draws.nc"
    assert main(["--prior", "bda3", "--draws", "500", "--out", str(out), "--seed", "3"]) == 0
    table = capsys.readouterr().out
    assert "theta[1] A" in table and "mu" in table
    tree = xr.open_datatree(out)
    post = tree["posterior"]
    assert post["mu"].shape == (1, 500) and post["tau"].shape == (1, 500)
    assert post["theta"].dims == ("chain", "draw", "school") and list(post["school"].values) == list(
        "ABCDEFGH"
    )


def test_write_results(tmp_path):
    from reference.report import write_results

    paths = write_results(tmp_path)
    names = sorted(p.name for p in paths)
    assert names == sorted(
        [f"rubin-{p}.json" for p in PRESETS] + ["rubin-bda3-pooling.png", "rubin-default-pooling.png"]
    )
    doc = json.loads((tmp_path / "rubin-bda3.json").read_text())
    assert doc["meta"]["method"]["panels"] > 0 and "numpy" in doc["meta"]["versions"]
    assert set(doc["summary"]) == {"mu", "tau", "log_tau", *_thetas(8)}
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_bivariate_rectangle_is_a_difference_of_cdfs():
    from reference._special import bvn_rect

    rng = np.random.default_rng(5)
    h, a = rng.normal(size=200), rng.normal(size=200) - 1
    h[:3], a[3:6] = 0.0, 0.0  # the h = 0 / k = 0 branches of Owen's formula
    b = a + rng.exponential(size=200)
    a[6:9], b[6:9] = -1.0, 0.0
    rho = rng.uniform(-0.99, 0.99, size=200)
    r = np.sqrt(1 - rho**2)
    # both sides are sums of Owen's T values accurate to ~1e-16: a few of them differ by < 1e-15
    np.testing.assert_allclose(
        bvn_rect(h, a, b, rho, r), bvn_cdf(h, b, rho, r) - bvn_cdf(h, a, rho, r), atol=BVN_ABS * 4
    )


# --- hardening: every input either a finite summary or one exit-2 line (issue 11) -----------------


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "content, needle",
    [
        ('{"y": [1e200, 2, 3], "sigma": [1, 1, 1]}', "y[0] = 1e+200: outside the supported range"),
        ('{"y": [1, 2, 3], "sigma": [1e-200, 1, 1]}', "sigma[0] = 1e-200: outside the supported range"),
        ('{"y": [' + "1" * 401 + ', 2, 3], "sigma": [1, 1, 1]}', "(401 digits): outside the supported range"),
        ('{"y": {"1": 0, "2": 0}, "sigma": {"3": 0, "4": 0}}', "y = {'1': 0, '2': 0}"),
    ],
    ids=["y-1e200", "sigma-1e-200", "401-digit-integer", "json-object-columns"],
)
def test_unusable_data_values_exit_2(tmp_path, capsys, content, needle):
    path = tmp_path / "data.json"
    path.write_text(content)
    assert main(["--data", str(path)]) == 2
    assert needle in _one_line(capsys)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--mu-prior", "normal(0, 1e200)"], "scale = 1e+200 is outside the supported range"),
        (["--tau-prior", "fixed(1e300)"], "value = 1e+300 is outside the supported range"),
        (["--tau-prior", "lognormal(1, 1e-8)"], "cannot integrate p(tau | y)"),
        (["--panels", "7"], "--panels = 7: must be even"),
        (["--panels", "1000000000"], "panels = 1000000000: must be an even integer in [2, 65536]"),
        (["--data", "rubin:sigma_scale=abc"], "sigma_scale = 'abc'"),
        (["--prior", "mu=flat;sigma=2"], "part 'sigma=2' is not mu=TEXT or tau=TEXT"),
    ],
)
def test_unusable_priors_and_flags_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    assert needle in _one_line(capsys)


def test_summaries_the_grid_cannot_compute_are_refused_not_printed(tmp_path, capsys):
    """y ~ 1e59 under mu ~ uniform(-20, 20) with tau fixed: a truncated normal 1e58 sds from its bounds;
    the closed form underflows, so the reference refuses the input instead of printing NaN."""
    path = tmp_path / "far.json"
    path.write_text(json.dumps({"y": [1e59, 2e59, 3e59], "sigma": [1, 1, 1]}))
    assert main(["--data", str(path), "--prior", "notebook-tau8"]) == 2
    assert "theta[1]: the reference's mean is not finite" in _one_line(capsys)
    # as a command: one line on stderr, no floating-point warnings before it
    out = subprocess.run([sys.executable, "-m", "reference", "--data", str(path), "--prior", "notebook-tau8"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_non_utf8_and_bom_files(tmp_path, capsys):
    plain = tmp_path / "plain.csv"
    plain.write_text("y,sigma\n28,15\n8,10\n-3,16\n7,11\n")
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    bom_json = tmp_path / "bom.json"
    bom_json.write_bytes(b"\xef\xbb\xbf" + json.dumps({"y": [28, 8, -3, 7], "sigma": [15, 10, 16, 11]}).encode())
    assert main(["--data", str(plain), "--json"]) == 0
    expected = capsys.readouterr().out
    for path in (bom, bom_json):
        assert main(["--data", str(path), "--json"]) == 0
        assert capsys.readouterr().out == expected
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("school,y,sigma\nZürich,28,15\nB,8,10\n".encode("latin-1"))
    assert main(["--data", str(latin1)]) == 2
    assert "not UTF-8 text (byte 0xfc at offset 16)" in _one_line(capsys)


def test_moments_that_do_not_exist_are_printed_as_such(tmp_path, capsys):
    three = tmp_path / "three.json"
    three.write_text(json.dumps({"y": [28, 8, -3], "sigma": [15, 10, 16]}))
    assert main(["--data", str(three), "--prior", "bda3"]) == 0
    table = capsys.readouterr().out
    assert "nan" not in table and "inf " not in table and "mean and sd do not exist" in table
    rows = {line.split()[0]: line for line in table.splitlines()[4:]}
    assert rows["tau"].split()[1:3] == ["-", "-"] and rows["mu"].split()[1:3] == ["-", "-"]
    assert main(["--tau-prior", "fixed(0)"]) == 0  # log tau = -inf: left out, as in the JSON
    table = capsys.readouterr().out
    assert "log_tau" not in table and "inf" not in table and "tau           fixed at 0" in table


def test_data_specs_reach_the_reference(capsys):
    assert main(["--data", "rubin:sigma_scale=0.1", "--prior", "notebook"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("data: rubin-sigma_scale0.1 (J = 8, sigma x 0.1)")
    assert main(["--data", "synthetic:J=16:seed=2:sigma_scale=2", "--json"]) == 0
    assert "theta[16]" in json.loads(capsys.readouterr().out)


def test_internal_errors_exit_3_not_1(tmp_path, monkeypatch, capsys):
    from reference import cli

    def broken(*args, **kwargs):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setenv("EIGHT_SCHOOLS_CACHE", str(tmp_path))
    monkeypatch.setattr(cli, "posterior", broken)
    assert main(["--prior", "bda3"]) == 3
    err = _one_line(capsys)
    assert "internal error: ZeroDivisionError: simulated bug" in err and "traceback in" in err


def test_an_unwritable_results_folder_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["write-results", str(blocker / "sub")]) == 2
    assert "outdir = " in _one_line(capsys)


def test_reference_modules_form_no_import_cycle():
    """core -> draws -> report -> core was a cycle: no reference module may import report or cli
    except cli itself, and none of them may import a module that imports it back."""
    import ast

    pkg = REPO / "reference"
    graph = {}
    for path in pkg.glob("*.py"):
        deps = set()
        for node in ast.parse(path.read_text()).body:  # module level: run at import (not TYPE_CHECKING)
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module} if node.module else {a.name for a in node.names}
        graph[path.stem] = deps

    def reaches(start, goal, seen=()):
        return any(d == goal or (d not in seen and reaches(d, goal, (*seen, d))) for d in graph.get(start, ()))

    assert [m for m in graph if reaches(m, m)] == []
    assert max(len(p.read_text().splitlines()) for p in pkg.glob("*.py")) <= 500


def test_quantile_and_density_are_solved_once_per_reference(monkeypatch):
    """What the check compares every fit with: the exact quantile and the density there, the same
    numbers as quantile() and pdf(), solved once per reference (a matrix checks many fits of one problem)."""
    ref = posterior(RUBIN, PRESETS["default"])
    names = ["mu", "tau", "log_tau", "theta[1]"]
    first = {n: ref.quantile_and_density(n, 0.05) for n in names}
    for n, (x, dens) in first.items():
        assert x == float(ref.quantile(n, 0.05)) and dens == float(ref.pdf(n, x))

    def no_solving(*a, **k):
        raise AssertionError("solved again")

    monkeypatch.setattr(type(ref), "quantile", no_solving)
    assert {n: ref.quantile_and_density(n, 0.05) for n in names} == first
