"""What the reference reports for one quantity: :class:`Summary` (mean, sd, quantiles, error), and
the arrays behind many at once (:class:`SummaryBlock`).

Every number reported is finite, except a moment that does not exist (a heavy tail under a flat
tau prior), which is ``inf``/``nan`` here, ``null`` with a ``note`` in JSON and "does not exist" in
the table. A non-finite number anywhere else means the data or prior lie outside what the grid can
integrate: :func:`require_finite` refuses it with a :class:`~reference.marginal.PosteriorError`
rather than print it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .marginal import PosteriorError

__all__ = ["LEVELS", "ROUNDOFF", "Summary", "SummaryError", "SummaryBlock", "level_key", "require_finite"]

#: the quantile levels of every summary
LEVELS: tuple[float, ...] = (0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975)
#: floor of every error estimate, relative to the quantity's scale: sums over ~10^3 nodes in double
#: precision carry ~1e-14 relative round-off, so a grid difference below this is not resolved
ROUNDOFF = 1e-13


def level_key(q: float) -> str:
    """A level as the text that keys the quantiles: 0.025 -> "0.025"."""
    return repr(float(q))


def _num(x: float) -> float | None:
    """JSON has no inf/nan: non-finite moments are written as null (with a note)."""
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class SummaryError:
    """Error estimates of a :class:`Summary`'s numbers (absolute, same units)."""

    mean: float
    sd: float
    quantiles: dict[str, float]

    def to_dict(self) -> dict:
        return {"mean": _num(self.mean), "sd": _num(self.sd), "quantiles": dict(self.quantiles)}


@dataclass(frozen=True)
class Summary:
    """Mean, sd and quantiles (keyed by the level as text, e.g. ``"0.025"``) of one quantity.

    ``mean`` is ``inf`` where the expectation diverges to +infinity, ``nan`` where it does not exist;
    ``sd`` is ``inf`` where the variance is infinite. ``fixed`` marks a point mass (a fixed tau).
    """

    name: str
    mean: float
    sd: float
    quantiles: dict[str, float]
    error: SummaryError
    fixed: bool = False
    note: str = ""

    def __getitem__(self, key: str):
        """Mapping-style access to the JSON fields: ``s["mean"]``, ``s["quantiles"]["0.5"]``, ..."""
        if key == "error":
            return self.error.to_dict()
        if key in ("mean", "sd", "quantiles", "fixed", "note"):
            return getattr(self, key)
        raise KeyError(key)

    @property
    def missing_moments(self) -> tuple[str, ...]:
        """The moments that do not exist (not finite): ``()``, ``("sd",)`` or ``("mean", "sd")``."""
        return tuple(k for k, v in (("mean", self.mean), ("sd", self.sd)) if not math.isfinite(v))

    def to_dict(self) -> dict:
        if self.fixed:
            return {"fixed": self.mean}
        out = {
            "mean": _num(self.mean),
            "sd": _num(self.sd),
            "error": self.error.to_dict(),
            "quantiles": dict(self.quantiles),
        }
        if self.note:
            out["note"] = self.note
        return out


_BLOCK_ARRAYS = ("mean", "sd", "q", "err_mean", "err_sd", "err_q")


@dataclass(frozen=True)
class SummaryBlock:
    """Summaries of K mixtures at once (mu, or a set of schools), as arrays."""

    mean: np.ndarray
    sd: np.ndarray
    q: np.ndarray  # (K, levels)
    err_mean: np.ndarray
    err_sd: np.ndarray
    err_q: np.ndarray  # (K, levels)
    note: str = ""

    @classmethod
    def concatenate(cls, blocks: list[SummaryBlock]) -> SummaryBlock:
        return cls(*(np.concatenate([getattr(b, f) for b in blocks]) for f in _BLOCK_ARRAYS))

    def summary(self, i: int, name: str) -> Summary:
        keys = [level_key(v) for v in LEVELS]
        return Summary(
            name,
            float(self.mean[i]),
            float(self.sd[i]),
            dict(zip(keys, self.q[i].tolist())),
            SummaryError(
                float(self.err_mean[i]), float(self.err_sd[i]), dict(zip(keys, self.err_q[i].tolist()))
            ),
            note=self.note,
        )


def require_finite(where: str, names: list[str], values: dict[str, np.ndarray], *, mean_ok: bool = True,
                   var_ok: bool = True) -> None:
    """Refuse non-finite numbers (other than moments that do not exist) in summaries of ``names``.

    ``values`` maps "mean", "sd", "quantiles", "error" to arrays whose first axis runs over ``names``.
    Raises PosteriorError naming the first quantity and number that is not finite.
    """
    skip = set()
    if not mean_ok:
        skip |= {"mean", "error of the mean"}
    if not var_ok:
        skip |= {"sd", "error of the sd"}
    for what, arr in values.items():
        if what in skip:
            continue
        a = np.asarray(arr, dtype=float).reshape(len(names), -1)
        bad = ~np.isfinite(a).all(axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            raise PosteriorError(
                f"{names[i]}: the reference's {what} is not finite for {where}; the data or prior lie "
                f"outside what the grid can integrate (rescale the data, or use a less extreme prior)")
