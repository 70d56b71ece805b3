"""Thresholds of the regression gate: every one named, with its reason."""

from __future__ import annotations

__all__ = ["SCHEMA", "ALPHA", "ESS_DROP_FLOOR", "LOG_SPREAD_FLOOR", "DIVERGENCE_RISE_FLOOR",
           "TIME_LOG_SPREAD_FLOOR", "TIME_RISE_FLOOR", "RHAT_WARN", "REPORTED_POWER", "KINDS", "GATED",
           "thresholds"]

SCHEMA = "eight-schools-ppl/regress-baseline/1"


#: One-sided false-alarm rate of each statistical check (ESS per gradient, divergences, verdicts) when
#: the sampler's behaviour did not change. 1 % per check keeps a gate of ~10 checks below ~10 %
#: family-wise in the worst case (union bound) while still catching large regressions with 5 seeds.
ALPHA = 0.01

#: ESS per gradient must also drop by at least this fraction to fail: a statistically detectable 3 %
#: drop (possible with many seeds) is not a regression worth breaking a build for.
ESS_DROP_FLOOR = 0.10

#: Smallest seed-to-seed standard deviation of log(ESS per gradient) assumed. Below it the spread is
#: not measured but an artefact (e.g. identical seeds); ESS estimates themselves carry a relative
#: error of ~5 % or more at the ESS of these runs.
LOG_SPREAD_FLOOR = 0.05

#: The divergence rate must also rise by at least this much (absolute, per transition) to fail: a few
#: extra divergences in thousands of transitions are noise, and the reference verdict catches the
#: cases where they bias the answer.
DIVERGENCE_RISE_FLOOR = 0.002

#: Smallest seed-to-seed standard deviation of log(time per draw) assumed: on shared machines (CI
#: runners, this project's 2 shared cores) an unchanged rerun's times move by 15 % or more, more than
#: the spread within one baseline shows.
TIME_LOG_SPREAD_FLOOR = 0.15

#: Time per draw must also rise by at least this fraction to warn (timer resolution, e.g. Stan reports
#: whole milliseconds, and load on shared CI runners).
TIME_RISE_FLOOR = 0.25

#: Max R-hat above this (and above the baseline's worst seed) warns; R-hat is not gated because short
#: CI runs of the centred model exceed any fixed bound in the baseline already.
RHAT_WARN = 1.01

#: Power reported for each ESS check: the drop detected with this probability.
REPORTED_POWER = 0.8

KINDS = ("error", "verdict", "ess_per_grad", "divergences", "time_per_draw", "max_rhat")
GATED = ("error", "verdict", "ess_per_grad", "divergences")


def thresholds() -> dict:
    return {"alpha": ALPHA, "ess_drop_floor": ESS_DROP_FLOOR, "log_spread_floor": LOG_SPREAD_FLOOR,
            "divergence_rise_floor": DIVERGENCE_RISE_FLOOR, "time_rise_floor": TIME_RISE_FLOOR,
            "time_log_spread_floor": TIME_LOG_SPREAD_FLOOR,
            "rhat_warn": RHAT_WARN}
