"""The gate: every check of every engine x parameterisation of a baseline against a rerun."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .stats import divergence_rise_test, ess_drop_test, pass_rate_drop_test, positive, time_rise_test
from .thresholds import (
    ALPHA,
    DIVERGENCE_RISE_FLOOR,
    ESS_DROP_FLOOR,
    KINDS,
    REPORTED_POWER,
    RHAT_WARN,
    TIME_RISE_FLOOR,
)

__all__ = ["CheckResult", "compare_group", "gate", "fmt_g"]


@dataclass
class CheckResult:
    engine: str
    param: str
    kind: str
    status: str  # pass | fail | warn | skip | error
    message: str
    baseline: str = ""
    now: str = ""
    details: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "error")


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def fmt_g(x: float | None, fmt: str = ".3g") -> str:
    return "—" if x is None else format(x, fmt)


def compare_group(key: str, bg: dict, ng: dict | None, *, alpha: float = ALPHA,
                  strict_time: bool = False) -> list[CheckResult]:
    engine, param = bg["engine"], bg["parameterization"]
    out: list[CheckResult] = []

    def add(kind, status, message, baseline="", now="", **details):
        out.append(CheckResult(engine, param, kind, status, message, baseline, now, details))

    bruns = bg["runs"]
    b_ok = {r["seed"]: r for r in bruns if not r.get("error")}
    if ng is None:
        add("error", "skip", "not rerun (left out with --engines)")
        return out
    nruns = ng["runs"]
    n_ok = {r["seed"]: r for r in nruns if not r.get("error")}
    # error: an engine that ran now errors
    if not b_ok:
        why = bg.get("unavailable") or "; ".join(bg["summary"]["errors"]) or "no run"
        if not n_ok:
            add("error", "skip", f"did not run in the baseline nor now ({why})")
        else:
            add("error", "pass", f"runs now but did not in the baseline ({why}); nothing to compare")
        for kind in KINDS[1:]:
            add(kind, "skip", "no baseline runs")
        return out
    broke = [r for r in nruns if r.get("error") and r["seed"] in b_ok]
    if broke:
        msgs = sorted({r["error"] for r in broke})
        add("error", "fail", f"ran in the baseline, now errors on seeds {[r['seed'] for r in broke]}: "
            + "; ".join(m[:200] for m in msgs), f"{len(b_ok)}/{len(bruns)} ran", f"{len(n_ok)}/{len(nruns)} ran")
    else:
        add("error", "pass", "ran on every seed that ran in the baseline", f"{len(b_ok)}/{len(bruns)} ran",
            f"{len(n_ok)}/{len(nruns)} ran")
    seeds = [s for s in b_ok if s in n_ok]
    if not seeds:
        for kind in KINDS[1:]:
            add(kind, "skip", "no seed ran on both sides")
        return out
    B = [b_ok[s] for s in seeds]
    N = [n_ok[s] for s in seeds]

    # verdict
    bv, nv = [r.get("check_passed") for r in B], [r.get("check_passed") for r in N]
    if any(v is None for v in nv) and any(v is not None for v in bv):
        errs = sorted({r.get("check_error") or "?" for r in N if r.get("check_passed") is None})
        add("verdict", "error", "the reference check could not run now: " + "; ".join(errs))
    else:
        vt = pass_rate_drop_test(bv, nv, alpha=alpha)
        bs, ns = f"{vt.passed_base}/{vt.checked_base} pass", f"{vt.passed_new}/{vt.checked_new} pass"
        flipped = [s for s, b, n in zip(seeds, bv, nv) if b and n is False]
        flips = f"; pass -> fail on seeds {flipped}" if flipped else ""
        if vt.regressed:
            add("verdict", "fail", f"fewer seeds pass the reference check ({vt.passed_new}/{vt.checked_new} against "
                f"{vt.passed_base}/{vt.checked_base}; Fisher's exact p = {vt.p_value:.2g} < {alpha:g}){flips}",
                bs, ns, **vt._asdict())
        elif flipped:
            add("verdict", "warn", f"pass counts {vt.passed_new}/{vt.checked_new} against {vt.passed_base}/"
                f"{vt.checked_base}: no significant drop (Fisher's exact p = {vt.p_value:.2g}){flips}",
                bs, ns, **vt._asdict())
        else:
            add("verdict", "pass", f"no drop in the share of seeds that pass (Fisher's exact p = {vt.p_value:.2g})",
                bs, ns, **vt._asdict())

    # ESS per gradient
    be, ne = [r.get("ess_bulk_per_grad") for r in B], [r.get("ess_bulk_per_grad") for r in N]
    if len(positive(be)) < 2 or len(positive(ne)) < 1:
        add("ess_per_grad", "skip", "fewer than 2 baseline seeds with ESS per gradient")
    else:
        et = ess_drop_test(be, ne, alpha=alpha)
        bs = f"median {fmt_g(float(np.median(positive(be))))}"
        ns = f"median {fmt_g(float(np.median(positive(ne))))}"
        msg = (f"geometric mean x{et.ratio:.2f} (fails below x{et.bound:.2f} at alpha {alpha:g} and a "
               f"{_pct(ESS_DROP_FLOOR)} floor; p = {et.p_value:.2g}); a drop of {_pct(et.detectable)} is caught "
               f"{_pct(REPORTED_POWER)} of the time")
        add("ess_per_grad", "fail" if et.regressed else "pass", msg, bs, ns, **et._asdict())

    # divergences
    try:
        dt = divergence_rise_test(
            [c for r in B for c in r["divergences_per_chain"]], [c for r in B for c in r["transitions_per_chain"]],
            [c for r in N for c in r["divergences_per_chain"]], [c for r in N for c in r["transitions_per_chain"]],
            alpha=alpha)
    except (KeyError, ValueError) as e:
        add("divergences", "skip", f"cannot compare divergences ({e})")
    else:
        msg = (f"rate {dt.rate_base:.4f} -> {dt.rate_new:.4f} (p = {dt.p_value:.2g}, dispersion {dt.dispersion:.1f}; "
               f"fails at p < {alpha:g} with a rise > {DIVERGENCE_RISE_FLOOR:g})")
        add("divergences", "fail" if dt.regressed else "pass", msg,
            f"{dt.divergences_base} ({dt.rate_base:.2%})", f"{dt.divergences_new} ({dt.rate_new:.2%})",
            **dt._asdict())

    # time per draw: warns (fails with strict_time)
    bt, nt = [r.get("time_per_draw_s") for r in B], [r.get("time_per_draw_s") for r in N]
    if len(positive(bt)) < 2 or len(positive(nt)) < 1:
        add("time_per_draw", "skip", "fewer than 2 baseline seeds with a measurable time per draw")
    else:
        tt = time_rise_test(bt, nt, alpha=alpha)
        msg = (f"geometric mean x{tt.ratio:.2f} (flagged above x{tt.bound:.2f} and a {_pct(TIME_RISE_FLOOR)} floor; "
               f"p = {tt.p_value:.2g})" + ("" if strict_time else "; warns only (--strict-time to gate)"))
        status = ("fail" if strict_time else "warn") if tt.regressed else "pass"
        add("time_per_draw", status, msg, f"median {fmt_g(float(np.median(positive(bt))) * 1e6)} µs",
            f"median {fmt_g(float(np.median(positive(nt))) * 1e6)} µs", **tt._asdict())

    # max R-hat: warns
    br = [r["max_rhat"] for r in B if r.get("max_rhat") is not None]
    nr = [r["max_rhat"] for r in N if r.get("max_rhat") is not None]
    if br and nr:
        limit = max(RHAT_WARN, max(br))
        worse = max(nr) > limit
        add("max_rhat", "warn" if worse else "pass",
            f"worst seed {max(nr):.3f} vs limit {limit:.3f} (the larger of {RHAT_WARN} and the baseline's worst); "
            "warns only", f"worst {max(br):.3f}", f"worst {max(nr):.3f}")
    else:
        add("max_rhat", "skip", "no R-hat on both sides")
    return out


def gate(baseline: dict, current: dict, *, alpha: float = ALPHA, strict_time: bool = False) -> list[CheckResult]:
    """Every check of every engine x parameterisation in the baseline."""
    results = []
    for key, bg in baseline["groups"].items():
        results += compare_group(key, bg, current["groups"].get(key), alpha=alpha, strict_time=strict_time)
    return results
