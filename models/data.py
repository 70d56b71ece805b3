"""The eight-schools data: one validated type, Rubin's table, user files, synthetic draws.

Every engine, the reference and the benchmarks read data only through :class:`SchoolsData`,
so a value that passes validation here is usable everywhere. Validation is linear in the number of
schools (100 000 schools take a fraction of a second).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UsageError
from .limits import MAX_MAGNITUDE, MIN_MAGNITUDE, RANGE_TEXT, format_number

__all__ = ["DataError", "SchoolsData", "RUBIN", "rubin", "load_data", "synthetic",
           "MAX_SYNTHETIC_J"]


class DataError(UsageError):
    """Bad data: the message names the field and the offending value."""


@dataclass(frozen=True)
class SchoolsData:
    """Observed effects ``y`` with known standard errors ``sigma``, one entry per school.

    Where the data came from travels with them: ``name`` (readable, canonical: ``rubin``,
    ``rubin-sigma_scale0.1``, ``synthetic-J64-seed3``, a file's stem), ``sigma_scale`` (the factor
    every sigma was multiplied by; 1.0 when unscaled) and ``spec`` (the canonical spec text that
    :func:`models.specs.resolve_data` turns back into these data; None for data built in code).
    :meth:`digest` tells two data sets apart by content, whatever their names.
    """

    y: tuple[float, ...]
    sigma: tuple[float, ...]
    school: tuple[str, ...]
    name: str = "data"
    sigma_scale: float = 1.0
    spec: str | None = None

    def __init__(
        self,
        y: Sequence[float],
        sigma: Sequence[float],
        school: Sequence[str] | None = None,
        *,
        name: str = "data",
        sigma_scale: float = 1.0,
        spec: str | None = None,
    ) -> None:
        y_t = _floats("y", y)
        sigma_t = _floats("sigma", sigma)
        if len(y_t) != len(sigma_t):
            raise DataError(
                f"sigma has {len(sigma_t)} entries but y has {len(y_t)}: they must be the same length"
            )
        if len(y_t) < 2:
            raise DataError(f"J = {len(y_t)}: the hierarchical model needs at least 2 schools")
        _check_values(y_t, sigma_t)
        if school is None:
            school_t = tuple(str(j + 1) for j in range(len(y_t)))
        else:
            school_t = _labels(school)
            if len(school_t) != len(y_t):
                raise DataError(
                    f"school has {len(school_t)} entries but y has {len(y_t)}: they must be the same length"
                )
            _check_unique(school_t)
        if not isinstance(name, str) or not name or any(c in name for c in "/\\") or not name.isprintable():
            raise DataError(f"name = {name!r}: must be non-empty, printable and contain no path separator")
        if (isinstance(sigma_scale, bool) or not isinstance(sigma_scale, numbers.Real)
                or not (math.isfinite(sigma_scale) and sigma_scale > 0)):
            raise DataError(f"sigma_scale = {sigma_scale!r}: must be a finite number > 0")
        if spec is not None and not isinstance(spec, str):
            raise DataError(f"spec = {spec!r}: must be text or None")
        object.__setattr__(self, "y", y_t)
        object.__setattr__(self, "sigma", sigma_t)
        object.__setattr__(self, "school", school_t)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "sigma_scale", float(sigma_scale))
        object.__setattr__(self, "spec", spec)

    @property
    def J(self) -> int:
        return len(self.y)

    @property
    def y_array(self) -> np.ndarray:
        return np.asarray(self.y, dtype=np.float64)

    @property
    def sigma_array(self) -> np.ndarray:
        return np.asarray(self.sigma, dtype=np.float64)

    def digest(self) -> str:
        """sha256 (hex) of the canonical JSON of y, sigma and school: equal exactly when the content is.

        Floats are written by ``repr`` (shortest round-trip text), so the digest depends on the values
        only, not on how they were read; name, sigma_scale and spec are provenance, not content.
        """
        text = json.dumps({"y": list(self.y), "sigma": list(self.sigma), "school": list(self.school)},
                          separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode("ascii")).hexdigest()

    def to_dict(self) -> dict:
        return {"name": self.name, "y": list(self.y), "sigma": list(self.sigma), "school": list(self.school),
                "sigma_scale": self.sigma_scale, "spec": self.spec, "digest": self.digest()}


#: element types converted in one NumPy call (same result as float() on each; bool is excluded: it is
#: an int to NumPy but not a number here)
_FAST_NUMBER_TYPES = {str, float, int}


def _floats(field: str, values: Iterable[float]) -> tuple[float, ...]:
    """The values as floats; a mapping (a JSON object), a set or text is not a sequence of numbers."""
    if isinstance(values, (str, bytes, bytearray)):
        raise DataError(f"{field} = {_short(values)}: expected a list of numbers, got text")
    if isinstance(values, Mapping):
        raise DataError(f"{field} = {_short(values)}: expected a list of numbers, got an object "
                        f"(a mapping's keys are not its values)")
    if isinstance(values, (set, frozenset)):
        raise DataError(f"{field} = {_short(values)}: expected a list of numbers, got an unordered set")
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise DataError(f"{field}: array of shape {values.shape}: expected one dimension")
        if values.dtype.kind in "iuf":
            return tuple(values.astype(np.float64).tolist())
        seq = values.tolist()
    else:
        try:
            seq = list(values)
        except TypeError:
            raise DataError(f"{field} = {_short(values)}: expected a list of numbers") from None
    if set(map(type, seq)) <= _FAST_NUMBER_TYPES:  # text and plain numbers: NumPy parses them as float() does
        try:
            return tuple(np.array(seq, dtype=np.float64).tolist())
        except (TypeError, ValueError, OverflowError):
            pass  # the loop below names the entry
    out = []
    for j, v in enumerate(seq):
        if isinstance(v, (bool, np.bool_)):
            raise DataError(f"{field}[{j}] = {v!r}: expected a number")
        try:
            out.append(float(v))
        except OverflowError:
            raise DataError(f"{field}[{j}] = {_short(v)}: outside the supported range ({RANGE_TEXT})") from None
        except (TypeError, ValueError):
            raise DataError(f"{field}[{j}] = {_short(v)}: expected a number") from None
    return tuple(out)


def _check_values(y: tuple[float, ...], sigma: tuple[float, ...]) -> None:
    """Finite y of supported magnitude (or 0), sigma > 0 of supported magnitude: vectorised, and the
    first offending entry named."""
    ya, sa = np.asarray(y), np.asarray(sigma)
    bad = ~np.isfinite(ya)
    if bad.any():
        j = int(np.argmax(bad))
        raise DataError(f"y[{j}] = {y[j]}: every y must be finite")
    ay = np.abs(ya)
    bad = (ay > MAX_MAGNITUDE) | ((ay < MIN_MAGNITUDE) & (ay != 0))
    if bad.any():
        j = int(np.argmax(bad))
        raise DataError(f"y[{j}] = {y[j]!r}: outside the supported range (0 or {RANGE_TEXT}): "
                        f"its square would overflow or underflow")
    bad = ~(np.isfinite(sa) & (sa > 0))
    if bad.any():
        j = int(np.argmax(bad))
        raise DataError(f"sigma[{j}] = {sigma[j]}: every sigma must be finite and > 0")
    bad = (sa > MAX_MAGNITUDE) | (sa < MIN_MAGNITUDE)
    if bad.any():
        j = int(np.argmax(bad))
        raise DataError(f"sigma[{j}] = {sigma[j]!r}: outside the supported range ({RANGE_TEXT}): "
                        f"its square would overflow or underflow")


def _labels(school: Iterable) -> tuple[str, ...]:
    if isinstance(school, (str, bytes, bytearray, Mapping, set, frozenset)):
        raise DataError(f"school = {_short(school)}: expected a list of labels (text or integers)")
    try:
        seq = list(school)
    except TypeError:
        raise DataError(f"school = {_short(school)}: expected a list of labels (text or integers)") from None
    if set(map(type, seq)) <= {str}:  # the usual case, checked in a few C-level passes
        labels = [s.strip() for s in seq]
        if all(labels) and "".join(labels).isprintable():
            return tuple(labels)
    out = []
    for j, s in enumerate(seq):
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (str, numbers.Integral)):
            raise DataError(f"school[{j}] = {_short(s)}: expected a label (text or an integer)")
        label = str(s).strip()
        if not label or not label.isprintable():
            raise DataError(f"school[{j}] = {_short(s)}: a label must be non-empty and printable")
        out.append(label)
    return tuple(out)


def _check_unique(school: tuple[str, ...]) -> None:
    """Linear (a set, then one pass with a dict to name the first repeat), where counting each label
    was quadratic."""
    if len(set(school)) == len(school):
        return
    first: dict[str, int] = {}
    for j, s in enumerate(school):
        i = first.setdefault(s, j)
        if i != j:
            raise DataError(f"school = {s!r} appears twice (entries {i} and {j}): school labels must be unique")


def _short(v, limit: int = 60) -> str:
    """repr, cut to ``limit`` characters (a 400-digit integer or a whole column is not a message)."""
    text = repr(v)
    if isinstance(v, int) and not isinstance(v, bool) and len(text) > limit:
        return f"{text[:12]}...({len(text)} digits)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Rubin (1981), BDA3 table 5.2: estimated coaching effects and their standard errors.
RUBIN = SchoolsData(
    y=[28, 8, -3, 7, -1, 1, 18, 12],
    sigma=[15, 10, 16, 11, 9, 11, 10, 18],
    school=["A", "B", "C", "D", "E", "F", "G", "H"],
    name="rubin",
    spec="rubin",
)


def rubin() -> SchoolsData:
    return RUBIN


def load_data(path: str | Path) -> SchoolsData:
    """Read a CSV (header with ``y``, ``sigma``, optional ``school``) or JSON file, UTF-8 (a BOM is
    accepted).

    JSON may be an object of columns ``{"y": [...], "sigma": [...], "school": [...]}`` (each a list)
    or a list of row objects. Other columns are ignored. The data's name is the file's stem and its
    spec the path as given.
    """
    p = Path(path)
    where = str(p)
    if not p.is_file():
        raise DataError(f"data file = {where!r}: no such file")
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise DataError(f"data file = {where!r}: expected a .csv or .json file")
    text = _read_text(p)
    cols = _json_columns(text, where) if suffix == ".json" else _csv_columns(text, where)
    for field in ("y", "sigma"):
        if field not in cols:
            raise DataError(f"{field}: missing from {where!r} (columns: {sorted(cols)})")
    name = "".join("-" if c in "/\\" or not c.isprintable() else c for c in p.stem) or "data"
    return SchoolsData(cols["y"], cols["sigma"], cols.get("school"), name=name, spec=str(path))


def _read_text(p: Path) -> str:
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DataError(f"data file = {str(p)!r}: cannot read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark (Excel's UTF-8 export) is dropped
    except UnicodeDecodeError as e:
        raise DataError(f"data file = {str(p)!r}: not UTF-8 text (byte {e.object[e.start]:#04x} at "
                        f"offset {e.start}); save it as UTF-8") from None


def _json_columns(text: str, where: str) -> dict[str, list]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"data file = {where!r}: not valid JSON ({e})") from None
    except (ValueError, RecursionError) as e:  # an integer beyond Python's digit limit; absurd nesting
        raise DataError(f"data file = {where!r}: unreadable JSON ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(raw, list):
        return _columns_from_rows(raw, where)
    if not isinstance(raw, dict):
        raise DataError(f"data file = {where!r}: JSON must be an object of columns or a list of rows")
    for field in ("y", "sigma", "school"):
        if field in raw and not isinstance(raw[field], list):
            kind = "an object" if isinstance(raw[field], dict) else type(raw[field]).__name__
            raise DataError(f"{field} = {_short(raw[field])} in {where!r}: expected a list (one entry per "
                            f"school), got {kind}")
    return raw


def _csv_rows(text: str) -> list[list[str]]:
    """Every non-blank row, parsed in one pass of the csv module."""
    return [r for r in csv.reader(io.StringIO(text, newline="")) if r and (len(r) > 1 or r[0].strip())]


def _csv_columns(text: str, where: str) -> dict[str, list]:
    try:
        rows = _csv_rows(text)
    except csv.Error as e:
        raise DataError(f"data file = {where!r}: not readable as CSV ({e})") from None
    if not rows:
        raise DataError(f"data file = {where!r}: empty (expected a header with y, sigma[, school])")
    header, body = rows[0], rows[1:]
    width = len(header)
    ragged = next((k for k, row in enumerate(body) if len(row) != width), None)
    if ragged is not None:  # name its line: parse again, counting (only on this error path)
        reader = csv.reader(io.StringIO(text, newline=""))
        kept = (reader.line_num for r in reader if r and (len(r) > 1 or r[0].strip()))
        line = next(n for k, n in enumerate(kept) if k == ragged + 1)
        raise DataError(f"line {line} of {where!r} has {len(body[ragged])} values but the header has {width}: "
                        f"{_short(body[ragged])}")
    index: dict[str, int] = {}
    for i, n in enumerate(h.strip() for h in header):
        if n in index and n in ("y", "sigma", "school"):
            raise DataError(f"column {n!r} appears twice in the header of {where!r}")
        index.setdefault(n, i)
    if not body:
        raise DataError(f"data file = {where!r}: no rows")
    return {n: [row[i] for row in body] for n, i in index.items()}


def _columns_from_rows(rows: list, where: str) -> dict[str, list]:
    if not rows:
        raise DataError(f"data file = {where!r}: no rows")
    if not all(isinstance(row, dict) for row in rows):
        i, row = next((i, r) for i, r in enumerate(rows) if not isinstance(r, dict))
        raise DataError(f"row {i} = {_short(row)} in {where!r}: expected an object with y and sigma")
    keys = [k for k in ("y", "sigma", "school") if any(k in row for row in rows)]
    for i, row in enumerate(rows):
        for k in keys:
            if k not in row:
                raise DataError(f"row {i} = {_short(row)} in {where!r}: {k} missing (other rows have it)")
    return {k: [row[k] for row in rows] for k in keys}


#: the most schools :func:`synthetic` draws: SchoolsData keeps Python tuples (~100 bytes a school) and
#: the reference vectorises over schools, so 10^6 schools is ~0.3 GB; a typo such as J=10**9 is refused
#: with a message instead of exhausting memory
MAX_SYNTHETIC_J = 1_000_000


def synthetic(
    J: int,
    *,
    mu: float = 0.0,
    tau: float = 5.0,
    sigma_range: tuple[float, float] = (9.0, 18.0),
    seed: int = 0,
    sigma_scale: float = 1.0,
) -> SchoolsData:
    """Draw a data set from the hierarchical model itself.

    sigma_j = sigma_scale * s_j with s_j ~ uniform(sigma_range), theta_j ~ normal(mu, tau),
    y_j ~ normal(theta_j, sigma_j): y is drawn with the scaled sigma, so the data are the model's own
    draw at that informativeness (with the same seed, sigma_scale changes the spread of y about theta,
    not theta). sigma_scale = 1 gives the same draw as before the option existed.
    """
    if not isinstance(J, numbers.Integral) or isinstance(J, bool) or not 2 <= J <= MAX_SYNTHETIC_J:
        raise DataError(f"J = {J!r}: must be an integer in [2, {MAX_SYNTHETIC_J}]")
    J = int(J)
    for field, v in (("mu", mu), ("tau", tau), ("sigma_scale", sigma_scale)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise DataError(f"{field} = {v!r}: must be a number")
    if not math.isfinite(mu):
        raise DataError(f"mu = {mu}: must be finite")
    if not (math.isfinite(tau) and tau >= 0):
        raise DataError(f"tau = {tau}: must be finite and >= 0")
    if not (math.isfinite(sigma_scale) and sigma_scale > 0):
        raise DataError(f"sigma_scale = {sigma_scale}: must be finite and > 0")
    try:
        lo, hi = (float(v) for v in sigma_range)
    except (TypeError, ValueError):
        raise DataError(f"sigma_range = {sigma_range!r}: expected (low, high)") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise DataError(f"sigma_range = {sigma_range!r}: need 0 < low <= high")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"seed = {seed!r}: must be a non-negative integer")
    rng = np.random.default_rng(int(seed))
    sigma = rng.uniform(lo, hi, size=J) * float(sigma_scale)
    theta = rng.normal(mu, tau, size=J)
    y = rng.normal(theta, sigma)
    name, spec = f"synthetic-J{J}-seed{seed}", f"synthetic:J={J}:seed={seed}"
    for key, v, default in (("tau", tau, 5.0), ("mu", mu, 0.0), ("sigma_scale", sigma_scale, 1.0)):
        if float(v) != default:
            name += f"-{key}{format_number(v)}"
            spec += f":{key}={format_number(v)}"
    if (lo, hi) != (9.0, 18.0):  # not expressible as a spec
        name += f"-sigma{format_number(lo)}to{format_number(hi)}"
        spec = None
    return SchoolsData(y, sigma, name=name, sigma_scale=sigma_scale, spec=spec)
