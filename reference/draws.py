"""Exact independent posterior draws (BDA3 section 5.4), and their ArviZ layout.

tau by inverse CDF on the grid (the panel interpolant, solved by Newton, not snapped to nodes),
then mu | tau, y (normal, or truncated normal under a uniform mu prior, by inverse CDF), then
theta | mu, tau, y (BDA3 5.17). Everything is vectorised over draws, in chunks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.files import write_netcdf

from ._special import tn_from_uniform
from .marginal import mu_given_tau, shrinkage, tau_sums

if TYPE_CHECKING:
    from .core import Reference

__all__ = ["exact_draws", "to_datatree", "write_draws"]

#: (draw, school) pairs per chunk
_CHUNK = 2_000_000
#: Newton steps polishing the Hermite inverse-CDF guess for tau (<~1e-7 in log tau): one squares
#: the error to round-off, the same answer as ``Reference.quantile("tau", p)`` to ~1e-14
_NEWTON_STEPS = 1


def exact_draws(ref: Reference, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """n exact draws: {"mu": (n,), "tau": (n,), "theta": (n, J)}."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n = {n!r}: the number of draws must be a non-negative integer")
    data = ref.schools
    y, sigma = data.y, data.sigma
    mu_out, tau_out = np.empty(n), np.empty(n)
    theta_out = np.empty((n, data.J))
    step = max(1, _CHUNK // data.J)
    for i in range(0, n, step):
        m = min(step, n - i)
        if ref.fixed_tau is not None:
            tau = np.full(m, ref.fixed_tau)
        else:
            tau = np.exp(ref.fine.quantile(rng.random(m), max_iter=_NEWTON_STEPS))
        cond = mu_given_tau(ref.prior, tau_sums(data, tau, likelihood=False))
        if cond.truncated:
            mu = tn_from_uniform(rng.random(m), cond.loc, cond.scale, cond.lower, cond.upper)
        else:
            mu = cond.loc + cond.scale * rng.standard_normal(m)
        B, one_minus_B = shrinkage(sigma, tau)
        theta = y + B * (mu[:, None] - y) + np.sqrt(one_minus_B) * sigma * rng.standard_normal((m, data.J))
        mu_out[i : i + m], tau_out[i : i + m], theta_out[i : i + m] = mu, tau, theta
    return {"mu": mu_out, "tau": tau_out, "theta": theta_out}


def to_datatree(ref: Reference, draws: dict[str, np.ndarray]):
    """Draws in ArviZ layout: a DataTree with a ``posterior`` group, one chain, theta over ``school``."""
    attrs = {
        "source": "reference (exact independent draws, analytic grid)",
        "data": ref.data.name,
        "data_digest": ref.data.digest(),
        "prior": str(ref.prior),
        "prior_name": ref.prior.name,
    }
    if ref.fixed_tau is not None:
        attrs["tau_fixed"] = ref.fixed_tau
    # arviz-base is imported here, not with the module: a process that only reads the reference (the report's)
    # then never loads it, nor the lazy stand-in for JAX it registers, which Matplotlib's array checks would
    # resolve by importing JAX (0.4 s) in the middle of a figure
    import arviz_base

    posterior = {k: np.asarray(v)[None, ...] for k, v in draws.items()}
    return arviz_base.from_dict(
        {"posterior": posterior},
        dims={"theta": ["school"]},
        coords={"school": list(ref.data.school)},
        attrs={"posterior": attrs},
    )


def write_draws(ref: Reference, n: int, seed: int | None, path: Path) -> Path:
    """Write n exact draws to a netCDF4 file (atomically: temporary file, then rename).

    xarray picks the engine (netCDF4, else h5netcdf, which needs h5py to write).
    """
    return write_netcdf(to_datatree(ref, ref.draws(n, seed)), Path(path))
