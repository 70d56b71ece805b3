"""Property-based tests (Hypothesis): any input to the data reader, the prior parser and the check's
input validation either gives a valid object or raises the project's own error type, never another
exception.

Budget: each property runs a fixed number of examples (``max_examples`` below), chosen so that the
whole file runs in seconds on one core: the parsers cost microseconds to a millisecond per example,
so a few hundred examples each; a check costs ~50 ms (exact quantiles for 11 quantities plus
arviz-stats' ESS), so ~40. ``derandomize=True`` makes every run try the same examples (seeds are
explicit, never the clock: CI cannot flake) and ``database=None`` writes nothing into the tree. To
search harder, run with ``EIGHT_SCHOOLS_HYPOTHESIS=explore`` (random seeds, 20x the examples).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from models import (
    PRESETS,
    RUBIN,
    DataError,
    Dist,
    Prior,
    PriorError,
    SchoolsData,
    load_data,
    make_prior,
    parse_dist,
)
from models.errors import UsageError
from models.specs import resolve_data, resolve_prior
from reference import posterior
from reference.check import CheckInputError, Verdict, check, iid_as_draws

#: EIGHT_SCHOOLS_HYPOTHESIS=explore: random seeds and 20x the examples, for a deliberate hunt
EXPLORE = os.environ.get("EIGHT_SCHOOLS_HYPOTHESIS", "") == "explore"
#: the settings every property here uses (local, not a global profile: other test files are untouched)
BASE = settings(derandomize=not EXPLORE, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _budget(n: int) -> settings:
    return settings(BASE, max_examples=20 * n if EXPLORE else n)


#: parsers: microseconds per example
PARSER = _budget(400)
#: the data reader writes and reads a file per example: ~1 ms
READER = _budget(250)
#: a check costs ~50 ms (exact quantiles for 11 quantities, arviz-stats' ESS)
CHECK = _budget(40)

_DIR = Path(tempfile.mkdtemp(prefix="eight-schools-property-"))
atexit.register(shutil.rmtree, _DIR, True)


def _write(suffix: str, content: bytes) -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix, dir=_DIR)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
    return Path(name)


def _read(suffix: str, content: bytes):
    path = _write(suffix, content)
    try:
        d = load_data(path)
    except DataError:
        event("refused")
        return None
    finally:
        path.unlink()
    event("valid data")
    return d


def _is_valid(d: SchoolsData) -> bool:
    y, s = d.y_array, d.sigma_array
    return (d.J >= 2 and y.shape == s.shape == (d.J,) and np.all(np.isfinite(y)) and np.all(s > 0)
            and len(set(d.school)) == d.J)


# --- the data reader ----------------------------------------------------------------------------
# Hypothesis tries the simplest examples most (the first alternative of one_of, 0, False), so each
# strategy puts the well-formed case first and breaks it in one place or more after that: the
# examples reach the end of validation, not only its first refusal.

_odd_cell = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**500), max_value=10**500).map(str),
    st.text(max_size=8),
    st.sampled_from(["", " ", "nan", "inf", "-0", "1e999", "1e-400", "1_000", "١٢", "\x00", '"', "\ufeff1", "true"]),
)
_y = st.floats(-100, 100, allow_nan=False)
_sigma = st.floats(0.5, 50)
_label = st.text(st.characters(codec="utf-8"), min_size=1, max_size=4)


@st.composite
def _table(draw) -> tuple[list[str], list[list]]:
    """A header and rows of a plausible data table (y, sigma, maybe school), before any breakage."""
    header = ["y", "sigma"] + (["school"] if draw(st.booleans()) else [])
    header = draw(st.permutations(header))
    n = draw(st.integers(2, 6))
    columns = {"y": draw(st.lists(_y, min_size=n, max_size=n)), "sigma": draw(st.lists(_sigma, min_size=n, max_size=n)),
               "school": draw(st.lists(_label, min_size=n, max_size=n))}
    return list(header), [[columns[h][i] for h in header] for i in range(n)]


@st.composite
def _csv_text(draw) -> str:
    header, rows = draw(_table())
    cells = [[repr(v) if isinstance(v, float) else v for v in row] for row in rows]
    for _ in range(draw(st.integers(0, 3))):  # 0: well formed; else break a cell, a row or the header
        if not cells:
            break
        how = draw(st.sampled_from(["cell", "short", "long", "header", "drop"]))
        i = draw(st.integers(0, len(cells) - 1))
        if how == "cell" and cells[i]:
            cells[i][draw(st.integers(0, len(cells[i]) - 1))] = draw(_odd_cell)
        elif how == "short":
            cells[i] = cells[i][:-1]
        elif how == "long":
            cells[i] = [*cells[i], draw(_odd_cell)]
        elif how == "header":
            header = [*header[:-1], draw(st.sampled_from(["Y", " y ", "", "y", "extra", "sigma"]))]
        else:
            del cells[i:]
    sep = draw(st.sampled_from([",", ";"]))
    quote = draw(st.booleans())
    lines = [sep.join(header), *(sep.join(f'"{c}"' if quote else c for c in row) for row in cells)]
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines)


_json_value = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers(min_value=-(10**400), max_value=10**400) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@st.composite
def _json_doc(draw):
    header, rows = draw(_table())
    if draw(st.booleans()):
        doc = [dict(zip(header, row)) for row in rows]
        for _ in range(draw(st.integers(0, 2))):
            row = doc[draw(st.integers(0, len(doc) - 1))]
            key = draw(st.sampled_from(header))
            if draw(st.booleans()):
                row.pop(key, None)
            else:
                row[key] = draw(_json_value)
    else:
        doc = {h: [row[i] for row in rows] for i, h in enumerate(header)}
        for _ in range(draw(st.integers(0, 2))):
            key = draw(st.sampled_from([*header, "y", "school"]))
            doc[key] = draw(st.one_of(_json_value, st.dictionaries(st.text(max_size=3), st.floats(), max_size=3),
                                      st.lists(st.one_of(st.floats(), st.integers(-(10**400), 10**400), st.text(max_size=3),
                                                         st.none(), st.booleans()), max_size=6)))
    return draw(_json_value) if draw(st.integers(0, 9)) == 9 else doc


@READER
@given(text=_csv_text(), bom=st.booleans())
def test_any_csv_text_is_data_or_a_data_error(text, bom):
    d = _read(".csv", (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass"))
    assert d is None or _is_valid(d)


@READER
@given(doc=_json_doc())
def test_any_json_document_is_data_or_a_data_error(doc):
    text = json.dumps(doc, allow_nan=True)
    d = _read(".json", text.encode("utf-8", "surrogatepass"))
    assert d is None or _is_valid(d)


@READER
@given(raw=st.binary(max_size=200), suffix=st.sampled_from([".csv", ".json"]))
def test_any_bytes_are_data_or_a_data_error(raw, suffix):
    d = _read(suffix, raw)
    assert d is None or _is_valid(d)


_value = st.one_of(st.floats(), st.integers(-(10**400), 10**400), st.text(max_size=4), st.none(), st.booleans())


@st.composite
def _values(draw) -> tuple:
    """(y, sigma, school) as a caller might pass them: lists, arrays, mappings, with odd entries."""
    _, rows = draw(_table())
    y, sigma, school = ([r[i] for r in rows] for i in range(3)) if len(rows[0]) == 3 else (
        [r[0] for r in rows], [r[1] for r in rows], None)
    for _ in range(draw(st.integers(0, 2))):
        target = draw(st.sampled_from(["y", "sigma", "school"]))
        odd = draw(st.one_of(_value, _json_value))
        if target == "y":
            y[draw(st.integers(0, len(y) - 1))] = odd
        elif target == "sigma" and isinstance(sigma, list):
            kind = draw(st.sampled_from(["short", "mapping", "array", "odd"]))
            if kind == "short":
                sigma = sigma[:-1]
            elif kind == "mapping":
                sigma = {str(i): v for i, v in enumerate(sigma)}
            else:
                sigma = np.array(sigma) if kind == "array" else odd
        else:
            school = draw(st.one_of(st.lists(_value, max_size=6), _json_value))
    return y, sigma, school


@PARSER
@given(values=_values())
def test_any_values_are_data_or_a_data_error(values):
    try:
        d = SchoolsData(*values)
    except DataError:
        event("refused")
        return
    event("data")
    assert _is_valid(d)


_good_parts = {"rubin": ["sigma_scale=0.1", "sigma_scale=4"],
               "synthetic": ["seed=1", "tau=0", "mu=-3", "sigma_scale=0.1", "tau=2.5"]}
_bad_part = st.one_of(
    st.sampled_from(["J=0", "J=1", "seed=-1", "tau=1e300", "sigma_scale=1e-70", "sigma_scale=", "=", "", "J", "K=1",
                     "J=8.5", "sigma_scale=nan", "J=99999999999999999999"]),
    st.text(max_size=8),
)


@st.composite
def _data_spec(draw) -> str:
    head = draw(st.sampled_from(["synthetic", "rubin", "rubn", ""]))
    parts = (["J=" + str(draw(st.integers(2, 40)))] if head == "synthetic" else [])
    parts += draw(st.lists(st.sampled_from(_good_parts.get(head, ["x=1"])), unique=True, max_size=3))
    for _ in range(max(0, draw(st.integers(0, 4)) - 2)):  # mostly well formed, then 1-2 broken parts
        parts.insert(draw(st.integers(0, len(parts))), draw(_bad_part))
    parts = draw(st.permutations(parts))
    return ":".join([head, *parts]) if parts or draw(st.booleans()) else head


@PARSER
@given(spec=_data_spec())
def test_any_data_spec_is_data_or_a_data_error(spec):
    try:
        d = resolve_data(spec)
    except DataError as e:
        assert "\n" not in str(e)
        event("refused")
        return
    event("data")
    assert _is_valid(d) and resolve_data(d.spec) == d


# --- the prior parser -----------------------------------------------------------------------------

_ARITY = {"flat": 0, "normal": 2, "uniform": 2, "half_cauchy": 2, "half_normal": 1, "lognormal": 2, "fixed": 1,
          "cauchy": 2}
_odd_arg = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-(10**30), 10**30).map(str),
                     st.sampled_from(["", "1e999", "-0", ".5", "5.", "1e-400", "x", "1" * 400, "1e61", "0x10"]))


@st.composite
def _prior_text(draw) -> str:
    family = draw(st.sampled_from([*_ARITY, "gamma", "", "NORMAL"]))
    args = [repr(draw(st.floats(0, 100))) for _ in range(_ARITY.get(family, 1))]
    if family in ("uniform", "half_cauchy", "cauchy") and len(args) == 2:
        args[0] = "0" if family != "uniform" else args[0]
        args[1] = repr(float(args[0]) + 1 + draw(st.floats(0, 100)))
    for _ in range(draw(st.integers(0, 2))):
        how = draw(st.sampled_from(["arg", "drop", "add"]))
        if how == "arg" and args:
            args[draw(st.integers(0, len(args) - 1))] = draw(_odd_arg)
        elif how == "drop" and args:
            args.pop()
        else:
            args.append(draw(_odd_arg))
    text = f"{family}({', '.join(args)})" if args or draw(st.booleans()) else family
    return draw(st.text(max_size=30)) if draw(st.integers(0, 9)) == 9 else text


@PARSER
@given(text=_prior_text(), which=st.sampled_from(["mu", "tau"]))
def test_any_prior_text_is_a_dist_or_a_prior_error(text, which):
    try:
        d = parse_dist(text, which)
    except PriorError as e:
        assert "\n" not in str(e)
        event("refused")
        return
    event("parsed")
    assert isinstance(d, Dist) and d.which == which and all(np.isfinite(d.args))
    assert parse_dist(str(d), which) == d  # what parses, prints back to itself


@PARSER
@given(mu=st.none() | _prior_text(), tau=st.none() | _prior_text(), preset=st.none() | st.text(max_size=8))
def test_any_prior_texts_are_a_prior_or_a_prior_error(mu, tau, preset):
    spec = ";".join(f"{k}={v}" for k, v in (("mu", mu), ("tau", tau)) if v is not None) or (preset or "")
    for build in (lambda: make_prior(preset, mu, tau), lambda: resolve_prior(spec)):
        try:
            p = build()
        except PriorError:
            event("refused")
            continue
        event("prior")
        assert isinstance(p, Prior)


# --- the check's input validation ---------------------------------------------------------------


@pytest.fixture(scope="module")
def default_ref():
    return posterior(RUBIN, PRESETS["default"])


@functools.cache
def _exact() -> dict[str, np.ndarray]:
    """800 exact draws from the default posterior (seeded): well-formed draws that should pass."""
    return posterior(RUBIN, PRESETS["default"]).draws(800, seed=3)


_dtypes = st.sampled_from(["str", "object", "complex128", "bool", "int64", "float32"])
_special = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e300, -1e300, 5e-324, 1e308])


@st.composite
def _variable(draw, name: str, chains: int, n: int):
    """mu/tau/theta: well formed unless a draw says otherwise (shape, dims, dtype, odd values)."""
    proper = (chains, n, 8) if name == "theta" else (chains, n)
    shape = proper
    if draw(st.integers(0, 9)) == 9:
        shape = draw(st.sampled_from([(chains,), (chains, n, 3), (chains, n, 8, 2), (n, chains), (chains, n, 9)]))
    if shape == proper and draw(st.booleans()):
        values = np.array(_exact()[name][: chains * n].reshape(shape))  # exact draws: usually a PASS
    else:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        values = rng.normal(5.0 if name == "tau" else 0.0, 3.0, size=shape)
        if name == "tau":
            values = np.abs(values)
    for _ in range(max(0, draw(st.integers(0, 6)) - 4)):  # mostly clean, sometimes 1-2 odd values
        values.flat[draw(st.integers(0, values.size - 1))] = draw(_special)
    dtype = draw(_dtypes) if draw(st.integers(0, 9)) == 9 else "float64"
    dims = ["chain", "draw", "school", "extra"][: len(shape)]
    if draw(st.integers(0, 9)) == 9:
        dims = dims[::-1]
    with np.errstate(over="ignore"):  # 1e300 as float32 is inf: a value the check must refuse
        return xr.DataArray(values.astype(dtype), dims=dims)


@st.composite
def _draws(draw):
    chains, n = draw(st.sampled_from([4, 1, 2])), draw(st.sampled_from([200, 50, 4, 3, 1]))
    variables = {}
    for name in ("mu", "tau", "theta"):
        if draw(st.integers(0, 19)) < 19:  # one in twenty missing
            variables[name] = draw(_variable(name, chains, n))
    if draw(st.booleans()) and "theta" in variables and variables["theta"].sizes.get("school") == 8:
        labels = draw(st.sampled_from([list(RUBIN.school), list("ABCDEFGX"), [str(j) for j in range(8)]]))
        variables["theta"] = variables["theta"].assign_coords(school=labels)
    try:
        post = xr.Dataset(variables)
    except ValueError:  # dimension sizes that disagree between variables: xarray refuses them itself
        post = xr.Dataset({k: v.rename({d: f"{k}_{d}" for d in v.dims}) for k, v in variables.items()})
    wrap = "tree" if draw(st.integers(0, 9)) < 7 else draw(st.sampled_from(["dict", "dataset", "none"]))
    if wrap == "tree":
        return xr.DataTree.from_dict({"posterior": post})
    if wrap == "dict":
        return {"posterior": post}
    return post if wrap == "dataset" else None


@CHECK
@given(draws=_draws())
def test_any_draws_give_a_verdict_or_a_check_input_error(default_ref, draws):
    try:
        v = check(draws, default_ref)
    except CheckInputError as e:
        assert isinstance(e, UsageError) and "\n" not in str(e)
        event(f"refused: {str(e).split(':')[0]}")
        return
    event(f"verdict: {'PASS' if v.passed else 'FAIL'}")
    assert isinstance(v, Verdict) and isinstance(v.passed, bool)
    assert v.passed == (not v.failed)
    json.dumps(v.to_json(), allow_nan=False)  # the --json output is valid JSON whatever the draws


@st.composite
def _odd_values(draw):
    """Exact draws in the right layout whose values are shifted, scaled or partly replaced: every
    example reaches the numerics (a verdict), unless a value is one the check refuses (NaN, tau <= 0)."""
    chains, n = draw(st.sampled_from([4, 2, 1])), draw(st.sampled_from([200, 100, 4]))
    post = {k: np.array(v[: chains * n]).reshape(chains, n, *np.shape(v)[1:]) for k, v in _exact().items()}
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["mu", "tau", "theta"]))
        how = draw(st.sampled_from(["shift", "scale", "replace", "constant"]))
        x = post[name]
        if how == "shift":
            x += draw(st.floats(-1e6, 1e6))
        elif how == "scale":
            with np.errstate(over="ignore", under="ignore"):  # overflow to inf: a value the check refuses
                x *= draw(st.floats(1e-300, 1e300))
        elif how == "replace":
            x.flat[draw(st.integers(0, x.size - 1))] = draw(_special)
        else:
            x[...] = draw(st.floats(-1e300, 1e300))
    return iid_as_draws({k: v.reshape(chains * n, *v.shape[2:]) for k, v in post.items()}, chains, RUBIN.school)


@CHECK
@given(draws=_odd_values())
def test_any_values_in_well_formed_draws_give_a_verdict_or_a_check_input_error(default_ref, draws):
    try:
        with np.errstate(all="ignore"):
            v = check(draws, default_ref)
    except CheckInputError as e:
        assert "\n" not in str(e) and ("non-finite" in str(e) or "must be > 0" in str(e)), str(e)
        event("refused")
        return
    event(f"verdict: {'PASS' if v.passed else 'FAIL'}")
    assert v.passed == (not v.failed)
    json.dumps(v.to_json(), allow_nan=False)
