"""The eight-schools data: one validated type, Rubin's table, user files, synthetic draws.

Every engine, the reference and the benchmarks read data only through :class:`SchoolsData`,
so a value that passes validation here is usable everywhere.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DataError", "SchoolsData", "RUBIN", "rubin", "load_data", "synthetic"]


class DataError(ValueError):
    """Bad data: the message names the field and the offending value."""


@dataclass(frozen=True)
class SchoolsData:
    """Observed effects ``y`` with known standard errors ``sigma``, one entry per school."""

    y: tuple[float, ...]
    sigma: tuple[float, ...]
    school: tuple[str, ...]
    name: str = "data"

    def __init__(
        self,
        y: Sequence[float],
        sigma: Sequence[float],
        school: Sequence[str] | None = None,
        *,
        name: str = "data",
    ) -> None:
        y_t = _floats("y", y)
        sigma_t = _floats("sigma", sigma)
        if len(y_t) != len(sigma_t):
            raise DataError(
                f"sigma has {len(sigma_t)} entries but y has {len(y_t)}: they must be the same length"
            )
        if len(y_t) < 2:
            raise DataError(f"J = {len(y_t)}: the hierarchical model needs at least 2 schools")
        for j, v in enumerate(y_t):
            if not math.isfinite(v):
                raise DataError(f"y[{j}] = {v}: every y must be finite")
        for j, s in enumerate(sigma_t):
            if not (math.isfinite(s) and s > 0):
                raise DataError(f"sigma[{j}] = {s}: every sigma must be finite and > 0")
        if school is None:
            school_t = tuple(str(j + 1) for j in range(len(y_t)))
        else:
            school_t = tuple(str(s) for s in school)
            if len(school_t) != len(y_t):
                raise DataError(
                    f"school has {len(school_t)} entries but y has {len(y_t)}: they must be the same length"
                )
            if len(set(school_t)) != len(school_t):
                dup = next(s for s in school_t if school_t.count(s) > 1)
                raise DataError(f"school = {dup!r} appears twice: school labels must be unique")
        if not name or any(c in name for c in "/\\"):
            raise DataError(f"name = {name!r}: must be non-empty and contain no path separator")
        object.__setattr__(self, "y", y_t)
        object.__setattr__(self, "sigma", sigma_t)
        object.__setattr__(self, "school", school_t)
        object.__setattr__(self, "name", name)

    @property
    def J(self) -> int:
        return len(self.y)

    @property
    def y_array(self) -> np.ndarray:
        return np.asarray(self.y, dtype=np.float64)

    @property
    def sigma_array(self) -> np.ndarray:
        return np.asarray(self.sigma, dtype=np.float64)

    def to_dict(self) -> dict:
        return {"name": self.name, "y": list(self.y), "sigma": list(self.sigma), "school": list(self.school)}


def _floats(field: str, values: Sequence[float]) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)):
        raise DataError(f"{field} = {values!r}: expected a sequence of numbers")
    try:
        seq = list(np.asarray(values, dtype=object).ravel()) if isinstance(values, np.ndarray) else list(values)
    except TypeError:
        raise DataError(f"{field} = {values!r}: expected a sequence of numbers") from None
    out = []
    for j, v in enumerate(seq):
        if isinstance(v, bool):
            raise DataError(f"{field}[{j}] = {v!r}: expected a number")
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            raise DataError(f"{field}[{j}] = {v!r}: expected a number") from None
    return tuple(out)


#: Rubin (1981), BDA3 table 5.2: estimated coaching effects and their standard errors.
RUBIN = SchoolsData(
    y=[28, 8, -3, 7, -1, 1, 18, 12],
    sigma=[15, 10, 16, 11, 9, 11, 10, 18],
    school=["A", "B", "C", "D", "E", "F", "G", "H"],
    name="rubin",
)


def rubin() -> SchoolsData:
    return RUBIN


def load_data(path: str | Path) -> SchoolsData:
    """Read a CSV (header with ``y``, ``sigma``, optional ``school``) or JSON file.

    JSON may be an object of columns ``{"y": [...], "sigma": [...], "school": [...]}`` or a list of
    row objects. The data's name is the file's stem.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file = {str(p)!r}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            raw = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"data file = {str(p)!r}: not valid JSON ({e})") from None
        if isinstance(raw, list):
            cols = _columns_from_rows(raw, str(p))
        elif isinstance(raw, dict):
            cols = raw
        else:
            raise DataError(f"data file = {str(p)!r}: JSON must be an object of columns or a list of rows")
    elif suffix == ".csv":
        with p.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        cols = _columns_from_rows(rows, str(p))
    else:
        raise DataError(f"data file = {str(p)!r}: expected a .csv or .json file")
    for field in ("y", "sigma"):
        if field not in cols:
            raise DataError(f"{field}: missing from {str(p)!r} (columns: {sorted(cols)})")
    return SchoolsData(cols["y"], cols["sigma"], cols.get("school"), name=p.stem)


def _columns_from_rows(rows: list, where: str) -> dict[str, list]:
    if not rows:
        raise DataError(f"data file = {where!r}: no rows")
    cols: dict[str, list] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"row {i} = {row!r} in {where!r}: expected an object with y and sigma")
        for k, v in row.items():
            cols.setdefault(str(k).strip(), []).append(v)
    return cols


def synthetic(
    J: int,
    *,
    mu: float = 0.0,
    tau: float = 5.0,
    sigma_range: tuple[float, float] = (9.0, 18.0),
    seed: int = 0,
) -> SchoolsData:
    """Draw a data set from the hierarchical model itself.

    sigma_j ~ uniform(sigma_range), theta_j ~ normal(mu, tau), y_j ~ normal(theta_j, sigma_j).
    """
    if not isinstance(J, int) or isinstance(J, bool) or J < 2:
        raise DataError(f"J = {J!r}: must be an integer >= 2")
    if not (math.isfinite(mu)):
        raise DataError(f"mu = {mu}: must be finite")
    if not (math.isfinite(tau) and tau >= 0):
        raise DataError(f"tau = {tau}: must be finite and >= 0")
    lo, hi = (float(v) for v in sigma_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise DataError(f"sigma_range = {sigma_range!r}: need 0 < low <= high")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"seed = {seed!r}: must be a non-negative integer")
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(lo, hi, size=J)
    theta = rng.normal(mu, tau, size=J)
    y = rng.normal(theta, sigma)
    return SchoolsData(y, sigma, name=f"synthetic-J{J}-seed{seed}")
