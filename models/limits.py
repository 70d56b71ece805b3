"""The range of magnitudes the suite accepts for data values and prior parameters, and why.

float64 holds normal numbers from 2^-1022 to just under 2^1024. The reference squares the data and
the prior's scales and sums the results over the schools: sigma^2, tau^2, 1 / (sigma^2 + tau^2),
sum_j y_j^2 / sigma_j^2 (the Q of BDA3 5.20), sum_j 1 / sigma_j^2 (W), s0^2 of a normal mu prior. With
every magnitude in [2^-E, 2^E] (E = :data:`MAGNITUDE_EXPONENT` = 200):

* a square lies in [2^-400, 2^400] and a ratio of squares (y^2 / sigma^2, B = sigma^2 / (sigma^2 +
  tau^2)) in [2^-800, 2^800];
* a sum over J schools of such ratios is at most J 2^800, finite for any J below 2^223 (far beyond
  memory);
* the tau grid reaches about e^(+-40) (2^(+-58)) beyond the scale of the data: its window keeps every
  tau where the density is within e^-36 of its peak (``reference.grid``), so tau^2 stays within
  [2^-516, 2^516] and 1 / (sigma^2 + tau^2) >= 2^-516, a normal number with 2^500 to spare.

So neither a square nor the reference's sums can overflow or underflow: a value outside the range is
rejected up front, naming it and the range, instead of turning into a traceback or a table of NaN.
Zero is accepted wherever the model allows it (y, a location, a bound, a fixed tau): it has no
magnitude to lose. The same range binds every PPL translation (they read the same validated objects).
"""

from __future__ import annotations

import math

__all__ = ["MAGNITUDE_EXPONENT", "MAX_MAGNITUDE", "MIN_MAGNITUDE", "RANGE_TEXT", "LOG_MAX_MAGNITUDE",
           "in_range", "range_problem", "format_number"]

#: magnitudes 2^-E .. 2^E are supported; see the module docstring for the derivation
MAGNITUDE_EXPONENT = 200
MAX_MAGNITUDE = 2.0**MAGNITUDE_EXPONENT  # ~1.6e60
MIN_MAGNITUDE = 2.0**-MAGNITUDE_EXPONENT  # ~6.2e-61
#: log(MAX_MAGNITUDE): the bound on a location on the log scale (a lognormal tau prior's mu)
LOG_MAX_MAGNITUDE = MAGNITUDE_EXPONENT * math.log(2.0)  # ~138.6
RANGE_TEXT = f"magnitude in [2^-{MAGNITUDE_EXPONENT}, 2^{MAGNITUDE_EXPONENT}] (~{MIN_MAGNITUDE:.1e} .. {MAX_MAGNITUDE:.1e})"


def in_range(x: float, *, zero_ok: bool) -> bool:
    """|x| within [MIN_MAGNITUDE, MAX_MAGNITUDE] (or x == 0 where ``zero_ok``); False for NaN/inf."""
    a = abs(x)
    if a == 0:
        return zero_ok
    return MIN_MAGNITUDE <= a <= MAX_MAGNITUDE


def range_problem(x: float, *, zero_ok: bool) -> str | None:
    """None if ``x`` is supported, else the text saying what range is (for an error message)."""
    if in_range(x, zero_ok=zero_ok):
        return None
    return f"outside the supported range: {'0 or ' if zero_ok else ''}{RANGE_TEXT}"


def format_number(x: float) -> str:
    """A number as the shortest text that reads back to exactly it, for names, specs and prior texts:
    2.0 -> '2', 0.1 -> '0.1', 1e-05 -> '1e-05', 0.001953125 -> '0.001953125' (``:g`` would round it)."""
    x = float(x)
    if x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return repr(x)
