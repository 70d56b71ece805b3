"""Known regressions injected into real runs of an unchanged sampler: pure functions of numbers (and of
one run's draws), each leaving the data unchanged at zero injection.

* :func:`drop_ess` - ESS per gradient times ``1 - d``: a sampler that needs ``1 / (1 - d)`` times the
  gradients for the same effective sample size, with the same seed-to-seed spread on the log scale.
* :func:`scale_divergences` - each chain's divergence count times ``k`` (``k = m + f``: ``m`` times the
  count plus a binomial thinning ``Binomial(count, f)`` of it, capped at the chain's transitions), so
  the expected count is ``k`` times the chain's and the total rate ``k`` times the run's. A chain with
  no divergence keeps none: the extra divergences cluster where the sampler already diverges (the
  funnel's neck), which keeps the counts' overdispersion - a regression that spread new divergences
  evenly over chains would be easier to detect, so this injection is the conservative one.
* :func:`shift_draws` - every draw of mu and of each theta_j moved by the same amount (theta - mu,
  tau and so the non-centred eta are unchanged), as a sampler biased in the population mean would
  give; the reference check is then rerun on the shifted draws, so verdicts flip as they would for
  such a sampler. The shift leaves each draw's MCSE unchanged (ESS is shift-invariant).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import xarray as xr

__all__ = ["drop_ess", "scale_divergences", "shift_draws"]


def drop_ess(values: Sequence[float], d: float) -> np.ndarray:
    """ESS per gradient after a known drop ``d`` (0 <= d < 1): each value times ``1 - d``."""
    if not 0 <= d < 1:
        raise ValueError(f"d = {d!r}: an ESS drop must be in [0, 1)")
    return np.asarray(values, dtype=float) * (1.0 - d)


def scale_divergences(counts: Sequence[int], totals: Sequence[int], k: float,
                      rng: np.random.Generator) -> np.ndarray:
    """Per-chain divergence counts with each chain's rate multiplied by ``k`` >= 0 (see the module
    docstring); ``k = 1`` returns the counts unchanged and draws nothing from ``rng``."""
    c = np.asarray(counts, dtype=np.int64)
    t = np.asarray(totals, dtype=np.int64)
    if c.shape != t.shape or np.any(c < 0) or np.any(c > t):
        raise ValueError("divergence counts must match the transitions in length and lie in [0, transitions]")
    if not (math.isfinite(k) and k >= 0):
        raise ValueError(f"k = {k!r}: a rate multiplier must be a finite number >= 0")
    m = math.floor(k)
    f = k - m
    out = m * c
    if f > 0:
        out = out + rng.binomial(c, f)
    return np.minimum(out, t)


def shift_draws(tree, shift: float) -> xr.DataTree:
    """The posterior of ``tree`` (an ArviZ DataTree) with mu and every theta_j moved by ``shift``."""
    post = tree["posterior"]
    post = post.to_dataset() if isinstance(post, xr.DataTree) else post
    if shift:
        post = post.assign(mu=post["mu"] + shift, theta=post["theta"] + shift)
    return xr.DataTree.from_dict({"posterior": post})
