"""SWEEP.md's section on the reference check across the space: where fits are sound they should pass at
the check's nominal rate; where they are biased, the fraction flagged is the check's power. Both with
exact (Clopper-Pearson) intervals, per engine and sigma_scale, and split at each engine's crossover.
"""

from __future__ import annotations

import math
from collections import defaultdict

from .sweep_figures import SweepView
from .sweep_stats import (
    CI_LEVEL,
    NOMINAL_PASS,
    SOUND_RHAT,
    BinomialRate,
    check_space,
    clopper_pearson,
    ok,
    regime_rates,
    sound,
)

__all__ = ["check_section"]

#: failing functionals a row of the "sound fits that failed" table lists before "…"
FAILED_SHOWN = 4


def _pass(rate: BinomialRate) -> str:
    """A pass rate, marked when its whole interval lies below the nominal rate."""
    return rate.text() + (" ⚠ below nominal" if rate.n and rate.high < NOMINAL_PASS else "")


def _regime_lines(view: SweepView) -> list[str]:
    lines = ["| engine | centred, informative side, sound: pass | centred, informative side, divergent/unconverged: "
             "flagged | centred, weak side, sound: pass | centred, weak side, divergent/unconverged: flagged "
             "(power) | their median min bulk ESS | non-centred sound, anywhere: pass |",
             "|---|---|---|---|---|---|---|"]
    engines = [e for e in view.engines if any(ok(r) for r in view.runs(e))]
    for key in [*engines, None]:
        rr = regime_rates(view.records, key)
        ess = "—" if math.isnan(rr.weak_unsound_ess) else f"{rr.weak_unsound_ess:.0f}"
        lines.append(f"| {key or '**all engines**'} | {_pass(rr.informative_sound)} | {rr.informative_unsound.text()} | "
                     f"{_pass(rr.weak_sound)} | {rr.weak_unsound.text()} | {ess} | {_pass(rr.noncentred_sound)} |")
    return lines


def _failed_sound(view: SweepView) -> list[str]:
    rows = sorted((r for r in view.records if sound(r) and r.get("check_passed") is False),
                  key=lambda r: (r["parameterization"], float(r["sigma_scale"]), r["J"], r["engine"], r["seed"]))
    if not rows:
        return ["No sound fit failed the check."]
    lines = ["Every sound fit that failed the check (so the reader can tell a false alarm, one functional a little "
             "past the threshold, from a bias the diagnostics missed):", "",
             "| engine | parameterisation | sigma_scale | J | seed | min bulk ESS | max R-hat | max abs z | failed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        failed = [f for f in (r.get("check_failed") or "").split(";") if f]
        text = ", ".join(failed[:FAILED_SHOWN]) + (" …" if len(failed) > FAILED_SHOWN else "")
        lines.append(f"| {r['engine']} | {r['parameterization']} | {float(r['sigma_scale']):g} | {r['J']} | {r['seed']} "
                     f"| {r['min_ess_bulk']:.0f} | {r['max_rhat']:.4f} | {r['check_max_abs_z']:.1f} | {text} |")
    return lines


def _per_scale_lines(view: SweepView) -> list[str]:
    cen = {(c.engine, c.sigma_scale): c for c in check_space(view.records, param="centered")}
    non = {(c.engine, c.sigma_scale): c for c in check_space(view.records, param="noncentered")}
    lines = ["| engine | sigma_scale | centred sound: pass | centred divergent/unconverged: flagged | "
             "non-centred sound: pass | non-centred divergent/unconverged: flagged | runs failed |",
             "|---|---|---|---|---|---|---|"]
    totals: dict[str, list[int]] = defaultdict(lambda: [0] * 8)
    none = [e for e in view.engines if not any(ok(r) for r in view.runs(e))]
    for engine in view.engines:
        if engine in none:
            continue
        for s in view.scales:
            c, n = cen.get((engine, s)), non.get((engine, s))
            if c is None and n is None:
                continue
            failed = (c.failed_runs if c else 0) + (n.failed_runs if n else 0)
            lines.append(f"| {engine} | {s:g} | {_pass(c.sound_pass) if c else '—'} | "
                         f"{c.suspect_flagged.text() if c else '—'} | {_pass(n.sound_pass) if n else '—'} | "
                         f"{n.suspect_flagged.text() if n else '—'} | {failed or ''} |")
            for key in (engine, "**all engines**"):
                for i, rate in enumerate((c and c.sound_pass, c and c.suspect_flagged, n and n.sound_pass,
                                          n and n.suspect_flagged)):
                    if rate:
                        totals[key][2 * i] += rate.k
                        totals[key][2 * i + 1] += rate.n
    if none:
        lines += ["", f"No finished run (see *Runs without numbers*): {', '.join(none)}."]
    lines += ["", "Pooled over every sigma_scale and J:", "",
              "| engine | centred sound: pass | centred divergent/unconverged: flagged | non-centred sound: pass | "
              "non-centred divergent/unconverged: flagged |", "|---|---|---|---|---|"]
    for key, t in sorted(totals.items(), key=lambda kv: kv[0] == "**all engines**"):  # the total last
        rates = [clopper_pearson(t[2 * i], t[2 * i + 1]) for i in range(4)]
        lines.append(f"| {key} | {_pass(rates[0])} | {rates[1].text()} | {_pass(rates[2])} | {rates[3].text()} |")
    return lines


def check_section(view: SweepView) -> list[str]:
    """The markdown lines of SWEEP.md's "The check across the space"."""
    return [
        "## The check across the space", "",
        f"A fit is *sound* when it has no divergent transition and max R-hat < {SOUND_RHAT}. Sound fits should pass "
        f"the check at its nominal rate, {NOMINAL_PASS:.0%} (family-wise false-alarm rate {1 - NOMINAL_PASS:.0%}; "
        "the rate measured on exact iid draws is in the calibration job's CALIBRATION.md). For divergent or "
        "unconverged centred fits on the weak-data side, where the funnel biases the small-tau quantiles, the "
        "fraction the check flags is its power. *Informative side* / *weak side*: sigma_scale below / above the "
        "median crossover of that engine and J (the crossover table). k/n [low, high]: the exact "
        f"(Clopper–Pearson) {CI_LEVEL:.0%} interval; ⚠ marks a pass rate whose whole interval lies below the "
        "nominal rate. The check's power falls with the fit's ESS: its z-scores are in units of the fit's own "
        "MCSE, so a fit with a few dozen effective draws has wide MCSEs, and its divergences and R-hat, not the "
        "check, are what give it away.", "",
        *_regime_lines(view), "", *_failed_sound(view), "",
        "### Per engine and sigma_scale (J pooled)", "", *_per_scale_lines(view), "",
    ]
