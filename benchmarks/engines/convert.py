"""What every engine converts alike: draws into base.py's one ArviZ layout, and log-density points."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from arviz_base import from_dict

from models import Prior, SchoolsData
from models.logdensity import parameter_names

from .base import SAMPLE_STATS

__all__ = ["to_datatree", "tree_depth_from_steps", "point_arrays"]

_STAT_DTYPES = {"diverging": bool, "tree_depth": np.int64, "n_steps": np.int64}


def tree_depth_from_steps(n_steps: np.ndarray) -> np.ndarray:
    """NUTS tree depth from its leapfrog-step count: a trajectory that stops at depth d took
    between 2**(d-1) and 2**d - 1 steps, so d = floor(log2(n)) + 1 (Stan's treedepth__)."""
    n = np.maximum(np.asarray(n_steps, dtype=np.int64), 1)
    return np.floor(np.log2(n)).astype(np.int64) + 1


def to_datatree(posterior: Mapping[str, np.ndarray], sample_stats: Mapping[str, np.ndarray],
                data: SchoolsData, prior: Prior, library: str):
    """posterior: mu, tau (unless fixed), theta and optionally theta_tilde, shaped (chain, draw[, J]);
    sample_stats: exactly SAMPLE_STATS, shaped (chain, draw). Returns an xarray.DataTree."""
    if set(sample_stats) != set(SAMPLE_STATS):
        raise ValueError(f"sample_stats = {sorted(sample_stats)}: expected exactly {SAMPLE_STATS}")
    order = ("mu", "tau", "theta", "theta_tilde")
    post = {k: np.asarray(posterior[k], dtype=np.float64) for k in order if k in posterior}
    stats = {k: np.asarray(sample_stats[k], dtype=_STAT_DTYPES.get(k, np.float64)) for k in SAMPLE_STATS}
    groups = {"posterior": post, "sample_stats": stats}
    if prior.tau_fixed:
        groups["constant_data"] = {"tau": np.float64(prior.tau["value"])}
    return from_dict(
        groups,
        coords={"school": list(data.school)},
        dims={"theta": ["school"], "theta_tilde": ["school"]},
        attrs={group: {"inference_library": library} for group in groups},
    )


def point_arrays(point: Mapping, data: SchoolsData, prior: Prior, param: str) -> dict[str, np.ndarray]:
    """The program's parameters from a constrained point, as float64 arrays of the right shape."""
    out = {}
    for name in parameter_names(prior, param):
        if name not in point:
            raise KeyError(f"point has no {name!r}: the parameters are {parameter_names(prior, param)}")
        value = np.asarray(point[name], dtype=np.float64)
        want = (data.J,) if name.startswith("theta") else ()
        if value.shape != want:
            raise ValueError(f"point[{name!r}] has shape {value.shape}: expected {want} (J = {data.J})")
        out[name] = value
    return out
