"""Analytic grid reference for the eight-schools model: exact posterior summaries, CDFs and draws.

Model: y_j ~ normal(theta_j, sigma_j), theta_j ~ normal(mu, tau), priors from ``models.priors``.
theta integrates out given (mu, tau); mu integrates out in closed form given tau (flat: Gaussian
integral, BDA3 5.20-5.21; normal: conjugate; uniform: the Gaussian truncated to the bounds). That
leaves p(tau | y) in one dimension, evaluated on composite Gauss-Legendre panels in a sinh-stretched
log tau (``reference.grid``). mu and theta_j are mixtures over the tau nodes: of normals, or under a
uniform mu prior of truncated normals and bivariate-normal rectangles (``reference.mixture``).

API::

    from models import RUBIN, preset
    from reference import posterior
    ref = posterior(RUBIN, preset("bda3"))        # cached on (data, prior, grid options)
    ref.summary("theta[1]")                       # mean, sd, quantiles, error (Summary; s["mean"] works)
    ref.cdf("tau", x); ref.quantile("mu", q)       # vectorised; cdf at many points uses a checked table
    ref.draws(10**6, seed=1)                       # {"mu": (n,), "tau": (n,), "theta": (n, J)}, exact
    ref.to_dict(); ref.to_json()                   # {"mu": {...}, "tau": ..., "log_tau": ..., "theta[1]": ...}

Each summary holds ``mean``, ``sd``, ``quantiles`` (level as text, "0.025" ... "0.975") and ``error``
(absolute error estimates of mean, sd and each quantile). Moments that do not exist (flat tau prior,
few schools) are inf/nan here, null in JSON with a ``note``, and "does not exist" in the printed table;
every other number is finite, or ``posterior``/``summary`` refuse the input (PosteriorError, a
``models.errors.UsageError``). With a fixed tau, ``tau`` is ``{"fixed": value}`` in JSON and
``log_tau`` is omitted. Checking draws: ``reference.check.check(draws, ref)`` (schools named by the
data's labels, ``theta[A]``). Command line: ``python -m reference -h`` (exit codes 0 success/PASS,
1 FAIL, 2 unusable input, 3 internal error); results on Rubin's data: ``reference.report.write_results``.
"""

from models.lazy import lazy_exports

# loaded on first use, so that a light submodule (reference.limits) does not import NumPy and SciPy
__getattr__, __dir__ = lazy_exports(__name__, {
    "LEVELS": "core", "Reference": "core", "Summary": "core", "SummaryError": "core", "posterior": "core",
    "GridOptions": "grid", "PosteriorError": "marginal"})

__all__ = ["LEVELS", "GridOptions", "PosteriorError", "Reference", "Summary", "SummaryError", "posterior"]
