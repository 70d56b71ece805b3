"""Priors as data: the one specification every PPL translation and the reference read.

A prior is a family name and its arguments. The same objects are written as Stan-style text,
``normal(0, 5)``, ``half_cauchy(0, 5)``, ``uniform(0, 50)``, ``flat``, ``fixed(8)``, and parsed back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from .errors import UsageError
from .limits import LOG_MAX_MAGNITUDE, RANGE_TEXT, format_number, in_range

__all__ = [
    "PriorError",
    "Dist",
    "Prior",
    "MU_FAMILIES",
    "TAU_FAMILIES",
    "PRESETS",
    "parse_dist",
    "preset",
    "make_prior",
    "ACCEPTED_FORMS",
]

Which = Literal["mu", "tau"]


class PriorError(UsageError):
    """Bad prior: the message names the field, the value and the accepted forms."""


#: family -> argument names, for each parameter.
MU_FAMILIES: dict[str, tuple[str, ...]] = {
    "flat": (),
    "normal": ("loc", "scale"),
    "uniform": ("lower", "upper"),
}
TAU_FAMILIES: dict[str, tuple[str, ...]] = {
    "flat": (),
    "uniform": ("lower", "upper"),
    "half_cauchy": ("scale",),
    "half_normal": ("scale",),
    "lognormal": ("mu", "sigma"),
    "fixed": ("value",),
}
_FAMILIES = {"mu": MU_FAMILIES, "tau": TAU_FAMILIES}

ACCEPTED_FORMS: dict[str, str] = {
    "mu": "flat | normal(loc, scale) | uniform(lower, upper)",
    "tau": (
        "flat | uniform(0, upper) | half_cauchy(0, scale) | half_normal(0, scale) "
        "| lognormal(mu, sigma) | fixed(value)"
    ),
}


#: arguments that are locations on the log scale (bounded by log of the largest magnitude), not magnitudes
_LOG_SCALE_ARGS = {("lognormal", "mu")}
#: arguments that may be 0 (a location, a bound, a fixed tau); the others are scales, > 0
_ZERO_OK = {"loc", "lower", "upper", "value"}


def _arg(a) -> float:
    if isinstance(a, bool):
        raise TypeError("a bool is not a prior argument")
    return float(a)


def _check_range(field: str, family: str, kw: dict[str, float]) -> None:
    """Every argument within what the reference integrates without overflow (see models.limits)."""
    for n, a in kw.items():
        if (family, n) in _LOG_SCALE_ARGS:
            if abs(a) > LOG_MAX_MAGNITUDE:
                raise PriorError(f"{field} {family}: {n} = {a:g} is outside the supported range "
                                 f"|{n}| <= {LOG_MAX_MAGNITUDE:.4g} (exp({n}) must be a supported magnitude)")
        elif n in ("scale", "sigma") and a <= 0:
            continue  # reported below as "must be > 0"
        elif not in_range(a, zero_ok=n in _ZERO_OK):
            zero = "0 or " if n in _ZERO_OK else ""
            raise PriorError(f"{field} {family}: {n} = {a:g} is outside the supported range ({zero}{RANGE_TEXT}): "
                             f"its square would overflow or underflow")


@dataclass(frozen=True)
class Dist:
    """One prior: ``family`` and its arguments in the order of ``*_FAMILIES[family]``."""

    which: Which
    family: str
    args: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.which not in _FAMILIES:
            raise PriorError(f"which = {self.which!r}: must be 'mu' or 'tau'")
        families = _FAMILIES[self.which]
        field = f"{self.which} prior"
        if self.family not in families:
            raise PriorError(
                f"{field} family = {self.family!r} is not offered; accepted forms: {ACCEPTED_FORMS[self.which]}"
            )
        names = families[self.family]
        try:
            args = tuple(_arg(a) for a in self.args)
        except (TypeError, ValueError, OverflowError):
            raise PriorError(f"{field} {self.family}: arguments {self.args!r} must be numbers") from None
        object.__setattr__(self, "args", args)
        if len(args) != len(names):
            raise PriorError(
                f"{field} {self.family} takes {len(names)} argument(s) {names}, got {len(args)}: {self.args!r}"
            )
        for n, a in zip(names, args):
            if not math.isfinite(a):
                raise PriorError(f"{field} {self.family}: {n} = {a} must be finite")
        kw = dict(zip(names, args))
        _check_range(field, self.family, kw)
        for n in ("scale", "sigma"):
            if n in kw and kw[n] <= 0:
                raise PriorError(f"{field} {self.family}: {n} = {kw[n]:g} must be > 0")
        if self.family == "uniform":
            if kw["upper"] <= kw["lower"]:
                raise PriorError(
                    f"{field} uniform: upper = {kw['upper']:g} must exceed lower = {kw['lower']:g}"
                )
            if self.which == "tau" and kw["lower"] < 0:
                raise PriorError(f"{field} uniform: lower = {kw['lower']:g} must be >= 0 (tau > 0)")
        if self.family == "fixed" and kw["value"] < 0:
            raise PriorError(f"{field} fixed: value = {kw['value']:g} must be >= 0")

    def __getitem__(self, name: str) -> float:
        names = _FAMILIES[self.which][self.family]
        if name not in names:
            raise KeyError(f"{self.family} has no argument {name!r} (it has {names})")
        return self.args[names.index(name)]

    @property
    def is_fixed(self) -> bool:
        return self.family == "fixed"

    def __str__(self) -> str:
        if self.family == "flat":
            return "flat"
        args = self.args
        if self.family in ("half_cauchy", "half_normal"):
            args = (0.0, *args)
        return f"{self.family}({', '.join(format_number(a) for a in args)})"  # reads back exactly

    def to_dict(self) -> dict:
        return {"family": self.family, **dict(zip(_FAMILIES[self.which][self.family], self.args))}


@dataclass(frozen=True)
class Prior:
    """The priors on mu and tau; ``name`` is the preset name or ``custom``."""

    mu: Dist
    tau: Dist
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.mu.which != "mu":
            raise PriorError(f"mu prior = {self.mu}: is a {self.mu.which} prior")
        if self.tau.which != "tau":
            raise PriorError(f"tau prior = {self.tau}: is a {self.tau.which} prior")

    @property
    def tau_fixed(self) -> bool:
        return self.tau.is_fixed

    def __str__(self) -> str:
        return f"mu ~ {self.mu}, tau ~ {self.tau}"

    def to_dict(self) -> dict:
        return {"name": self.name, "mu": self.mu.to_dict(), "tau": self.tau.to_dict(), "text": str(self)}


# one way to match each number (no nested ambiguity): a long digit string fails in linear time
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_CALL = re.compile(rf"^\s*([a-z_]+)\s*(?:\(\s*((?:{_NUMBER})(?:\s*,\s*{_NUMBER})*)?\s*\))?\s*$")


def parse_dist(text: str, which: Which) -> Dist:
    """Parse Stan-style text such as ``normal(0, 5)`` into a :class:`Dist` for ``mu`` or ``tau``.

    For tau, ``half_cauchy``/``half_normal`` take ``(0, scale)`` or ``(scale)``; Stan's own spelling
    ``cauchy(0, s)`` and ``normal(0, s)`` on the positive tau mean the same half distributions.
    """
    if which not in _FAMILIES:
        raise PriorError(f"which = {which!r}: must be 'mu' or 'tau'")
    field = f"{which} prior"
    m = _CALL.match(text) if isinstance(text, str) else None
    if m is None:
        raise PriorError(f"{field} = {text!r} is malformed; accepted forms: {ACCEPTED_FORMS[which]}")
    family = m.group(1)
    args = [float(a) for a in re.findall(_NUMBER, m.group(2))] if m.group(2) else []
    if which == "tau":
        if family in ("cauchy", "normal"):
            family = "half_" + family
            if len(args) != 2:
                raise PriorError(
                    f"{field} = {text!r}: {m.group(1)} on tau takes (0, scale); "
                    f"accepted forms: {ACCEPTED_FORMS[which]}"
                )
        if family in ("half_cauchy", "half_normal") and len(args) == 2:
            if args[0] != 0:
                raise PriorError(
                    f"{field} = {text!r}: location {args[0]:g} must be 0 for a half distribution; "
                    f"accepted forms: {ACCEPTED_FORMS[which]}"
                )
            args = args[1:]
    families = _FAMILIES[which]
    if family not in families:
        raise PriorError(
            f"{field} = {text!r}: unknown family {family!r}; accepted forms: {ACCEPTED_FORMS[which]}"
        )
    if len(args) != len(families[family]):
        raise PriorError(
            f"{field} = {text!r}: {family} takes {len(families[family])} argument(s); "
            f"accepted forms: {ACCEPTED_FORMS[which]}"
        )
    return Dist(which, family, tuple(args))


PRESETS: dict[str, Prior] = {
    # posteriordb's eight_schools programs.
    "default": Prior(Dist("mu", "normal", (0, 5)), Dist("tau", "half_cauchy", (5,)), "default"),
    # BDA3 section 5.5: uniform (improper) on mu and on tau.
    "bda3": Prior(Dist("mu", "flat"), Dist("tau", "flat"), "bda3"),
    # The two programs of the notebook in shared/seed/.
    "notebook": Prior(Dist("mu", "uniform", (-20, 20)), Dist("tau", "uniform", (0, 50)), "notebook"),
    "notebook-tau8": Prior(Dist("mu", "uniform", (-20, 20)), Dist("tau", "fixed", (8,)), "notebook-tau8"),
}


def preset(name: str) -> Prior:
    try:
        return PRESETS[name]
    except KeyError:
        raise PriorError(f"prior preset = {name!r} is unknown; presets: {', '.join(PRESETS)}") from None


def make_prior(
    preset_name: str | None = None, mu_text: str | None = None, tau_text: str | None = None
) -> Prior:
    """A prior from a preset name, or from mu and tau texts (a missing text takes the default preset's)."""
    if preset_name is not None and (mu_text is not None or tau_text is not None):
        raise PriorError(f"prior preset = {preset_name!r}: give a preset or mu/tau texts, not both")
    if mu_text is None and tau_text is None:
        return preset(preset_name or "default")
    base = PRESETS["default"]
    mu = parse_dist(mu_text, "mu") if mu_text is not None else base.mu
    tau = parse_dist(tau_text, "tau") if tau_text is not None else base.tau
    return Prior(mu, tau, "custom")
