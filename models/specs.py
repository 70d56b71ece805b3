"""Data and prior specs: the short texts a command line, a matrix config or a record names them by.

Data (:func:`resolve_data`)::

    rubin                                   Rubin's eight schools (BDA3 table 5.2)
    rubin:sigma_scale=S                     the same y, every sigma multiplied by S (> 0)
    synthetic:J=N[:seed=S][:tau=T][:mu=M][:sigma_scale=K]
                                            a draw from the model itself (models.data.synthetic):
                                            sigma_j = K s_j with s_j ~ uniform(9, 18), theta_j ~
                                            normal(M, T), y_j ~ normal(theta_j, sigma_j): y is drawn
                                            with the scaled sigma, so the data are the model's own
                                            draw at that informativeness (defaults: seed 0, tau 5,
                                            mu 0, sigma_scale 1)
    PATH.csv | PATH.json                    a file (models.data.load_data)

Scaling sigma by S moves the data along the informativeness axis: small S, informative data (the
centred parameterisation's regime); large S, weak data (the non-centred one's). The resulting
:class:`~models.data.SchoolsData` carries a canonical ``name`` (``rubin-sigma_scale0.1``), its
``sigma_scale`` and the canonical ``spec`` (defaults dropped, keys in the order above), so
``resolve_data(d.spec) == d``.

Priors (:func:`resolve_prior`): a preset name (``default``, ``bda3``, ...) or ``mu=TEXT;tau=TEXT``
(either part may be left out: it takes the default preset's; see models.priors for TEXT).

Every malformed spec raises one :class:`~models.errors.UsageError` (DataError or PriorError) that
names the spec and the part that is wrong.
"""

from __future__ import annotations

import math
from pathlib import Path

from .data import RUBIN, DataError, SchoolsData, load_data, synthetic
from .limits import format_number
from .priors import PRESETS, Prior, PriorError, make_prior

__all__ = ["resolve_data", "resolve_prior", "DATA_FORMS", "PRIOR_FORMS"]

DATA_FORMS = ("rubin | rubin:sigma_scale=S | synthetic:J=N[:seed=S][:tau=T][:mu=M][:sigma_scale=K] "
              "| a .csv or .json file")
PRIOR_FORMS = f"a preset ({', '.join(PRESETS)}) | mu=TEXT;tau=TEXT"

#: the keys each generator accepts, in canonical order
_KEYS = {"rubin": ("sigma_scale",), "synthetic": ("J", "seed", "tau", "mu", "sigma_scale")}


def resolve_data(spec: str) -> SchoolsData:
    """The data a spec names (see the module docstring)."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"data = {spec!r}: expected {DATA_FORMS}")
    head, sep, rest = spec.partition(":")
    kind = head.strip()
    if kind in _KEYS and (sep or kind == "rubin"):
        kw = _parts(spec, kind, rest if sep else "")
        return _rubin(spec, kw) if kind == "rubin" else _synthetic(spec, kw)
    if kind == "synthetic":
        raise DataError(f"data = {spec!r}: synthetic needs J, e.g. synthetic:J=64; expected {DATA_FORMS}")
    if Path(spec).suffix.lower() not in (".csv", ".json") and not Path(spec).is_file():
        raise DataError(f"data = {spec!r}: not a known spec nor a .csv/.json file; expected {DATA_FORMS}")
    return load_data(spec)


def _parts(spec: str, kind: str, rest: str) -> dict[str, str]:
    kw: dict[str, str] = {}
    if not rest.strip() and kind == "rubin":
        return kw
    for part in rest.split(":"):
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise DataError(f"data = {spec!r}: part {part!r} is not KEY=VALUE; expected {DATA_FORMS}")
        if key not in _KEYS[kind]:
            raise DataError(f"data = {spec!r}: unknown key {key!r} for {kind} (keys: {', '.join(_KEYS[kind])})")
        if key in kw:
            raise DataError(f"data = {spec!r}: {key} given twice")
        kw[key] = value
    return kw


def _number(spec: str, key: str, value: str, *, positive: bool = False, nonneg: bool = False) -> float:
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not math.isfinite(x) or (positive and x <= 0) or (nonneg and x < 0):
        want = "a finite number" + (" > 0" if positive else " >= 0" if nonneg else "")
        raise DataError(f"data = {spec!r}: {key} = {value!r} must be {want}")
    return x


def _integer(spec: str, key: str, value: str, *, low: int) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 18 or int(value) < low:
        raise DataError(f"data = {spec!r}: {key} = {value!r} must be an integer >= {low}")
    return int(value)


def _rubin(spec: str, kw: dict[str, str]) -> SchoolsData:
    scale = _number(spec, "sigma_scale", kw["sigma_scale"], positive=True) if kw else 1.0
    if scale == 1.0:
        return RUBIN
    text = format_number(scale)
    sigma = [s * scale for s in RUBIN.sigma]
    try:
        return SchoolsData(RUBIN.y, sigma, RUBIN.school, name=f"rubin-sigma_scale{text}", sigma_scale=scale,
                           spec=f"rubin:sigma_scale={text}")
    except DataError as e:
        raise DataError(f"data = {spec!r}: sigma_scale = {text} takes sigma out of range ({e})") from None


def _synthetic(spec: str, kw: dict[str, str]) -> SchoolsData:
    if "J" not in kw:
        raise DataError(f"data = {spec!r}: synthetic needs J, e.g. synthetic:J=64; expected {DATA_FORMS}")
    J = _integer(spec, "J", kw["J"], low=2)
    seed = _integer(spec, "seed", kw.get("seed", "0"), low=0)
    tau = _number(spec, "tau", kw.get("tau", "5"), nonneg=True)
    mu = _number(spec, "mu", kw.get("mu", "0"))
    scale = _number(spec, "sigma_scale", kw.get("sigma_scale", "1"), positive=True)
    try:
        return synthetic(J, seed=seed, tau=tau, mu=mu, sigma_scale=scale)
    except DataError as e:
        raise DataError(f"data = {spec!r}: {e}") from None


def resolve_prior(spec: str) -> Prior:
    """A preset name, or ``mu=TEXT;tau=TEXT`` (either part optional, in either order)."""
    if not isinstance(spec, str) or not spec.strip():
        raise PriorError(f"prior = {spec!r}: expected {PRIOR_FORMS}")
    text = spec.strip()
    if text in PRESETS:
        return PRESETS[text]
    if "=" not in text:
        raise PriorError(f"prior preset = {spec!r} is unknown; presets: {', '.join(PRESETS)}; "
                         f"or give mu=TEXT;tau=TEXT")
    texts: dict[str, str] = {}
    for part in text.split(";"):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in ("mu", "tau"):
            raise PriorError(f"prior = {spec!r}: part {part!r} is not mu=TEXT or tau=TEXT; expected {PRIOR_FORMS}")
        if key in texts:
            raise PriorError(f"prior = {spec!r}: {key} given twice")
        texts[key] = value
    try:
        return make_prior(mu_text=texts.get("mu"), tau_text=texts.get("tau"))
    except PriorError as e:
        raise PriorError(f"prior = {spec!r}: {e}") from None
