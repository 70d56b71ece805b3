"""The exact reference is exact enough for the check at the largest ESS a run reaches.

reference/check.py turns each functional of a fit into z = (estimate - exact) / MCSE. Many-chain
samplers reach ESS 10^5 to 10^6, where the MCSE shrinks to sd / 1000: the reference's own numerical
error (quadrature on the tau grid, the mixtures for mu and theta, the quantile solver, the mass
outside the grid's window) must stay far below that, or it would shift every z. The bound stated
here: for the default prior and Rubin's data, for every functional the check uses (the mean and the
0.05 ... 0.95 quantiles of mu, tau, log tau and each theta_j), the reference's error is at most
PRECISION_BOUND = 1e-3 of the MCSE at ESS = 10^6, i.e. it moves no z by more than 0.001 (the
check's threshold is ~3.9). Measured when written: the worst ratio is 1.2e-5 (tau's 0.95 quantile),
the others 1e-11 to 3e-8; the bound would be reached only near ESS ~ 7e9.

The check's lower-tail family (P(tau < q_p) = p at the exact quantile q_p, p in TAIL_PROBS) is held
to the same bound: the reference's error there is the true mass below its q_p less p, which is
measured against the finer reference (MCSE sqrt(p (1 - p) / ESS)).

The error is taken two ways: the reference's own estimate (fine grid against the one with half its
panels, the mixtures against their check rules, plus the truncated mass and a round-off floor:
reference/core.py), and the difference from an independent, finer reference (four times the panels,
12-point instead of 8-point Gauss-Legendre panels, a wider window), which must lie within the first.
"""

import numpy as np
import pytest

from models import PRESETS, RUBIN
from reference import posterior
from reference.check import FUNCTIONAL_PROBS, TAIL_PROBS
from reference.summary import level_key

#: the ESS at which the check's MCSE is taken: the largest a many-chain run reaches here
ESS = 1e6
#: the reference's error, at most this fraction of the MCSE at ESS
PRECISION_BOUND = 1e-3


@pytest.fixture(scope="module")
def references():
    ref = posterior(RUBIN, PRESETS["default"])
    finer = posterior(RUBIN, PRESETS["default"], panels=4 * ref.grid_info.panels, order=12, drop=45.0,
                      compress=False)
    return ref, finer


def _functionals(ref):
    """(name, functional, exact value, the reference's error estimate, MCSE at ESS) for every
    functional the check uses; the MCSEs are the check's own formulas with the exact sd and density:
    sd / sqrt(ESS) for a mean, sqrt(p (1 - p) / ESS) / f(x_p) for the p quantile."""
    for name in ref.names:
        s = ref.summary(name)
        for functional, p in FUNCTIONAL_PROBS.items():
            if p is None:
                yield name, functional, s.mean, s.error.mean, s.sd / np.sqrt(ESS)
            else:
                x, density = ref.quantile_and_density(name, p)
                yield name, functional, x, s.error.quantiles[level_key(p)], np.sqrt(p * (1 - p) / ESS) / density


def test_the_reference_error_is_far_below_the_mcse_at_a_million_effective_draws(references):
    ref, _ = references
    rows = list(_functionals(ref))
    assert len(rows) == (3 + RUBIN.J) * len(FUNCTIONAL_PROBS)
    ratios = {(n, f): err / mcse for n, f, _, err, mcse in rows}
    worst = max(ratios, key=ratios.get)
    assert ratios[worst] <= PRECISION_BOUND, (worst, ratios[worst])
    assert all(np.isfinite(r) and r > 0 for r in ratios.values())


def test_a_finer_reference_agrees_within_the_error_estimate(references):
    ref, finer = references
    finer_values = {(n, f): v for n, f, v, _, _ in _functionals(finer)}
    for name, functional, value, err, mcse in _functionals(ref):
        diff = abs(value - finer_values[name, functional])
        assert diff <= err, (name, functional, diff, err)
        assert diff <= PRECISION_BOUND * mcse, (name, functional, diff, mcse)


def test_the_quantile_the_check_compares_with_is_the_summary_s(references):
    # check() solves each quantile with quantile_and_density; the error estimate is the summary's
    ref, _ = references
    for name in ref.names:
        s = ref.summary(name)
        for p in (p for p in FUNCTIONAL_PROBS.values() if p is not None):
            x, _ = ref.quantile_and_density(name, p)
            assert abs(x - s.quantiles[level_key(p)]) <= s.error.quantiles[level_key(p)], (name, p)


def test_the_lower_tail_family_s_exact_mass_is_exact_enough(references):
    # tail_checks compares the share of draws below the reference's q_p with p: the reference's error
    # is finer.cdf(q_p) - p (p = 0.01 and 0.1 are not among the summary's levels, so no own estimate)
    ref, finer = references
    for p in TAIL_PROBS:
        q, _ = ref.quantile_and_density("tau", p)
        error = abs(float(finer.cdf("tau", q)) - p)
        assert error <= PRECISION_BOUND * np.sqrt(p * (1 - p) / ESS), (p, q, error)
