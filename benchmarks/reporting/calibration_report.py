"""CALIBRATION.md from the calibrate job's calibration.json: the measurement table, the check before and
after issue 20 on the same fits, how its statistic was chosen, and the iid z-scores' calibration."""

from __future__ import annotations

from reference.check import TAIL_ALPHA_SHARE, TAIL_PROBS

__all__ = ["CHECK_TEXT", "render_markdown"]


def _fmt_rate(r: dict) -> str:
    if "error" in r:
        return f"— ({r['error'][:60]}…)"
    if not r.get("n"):
        return "— (no run finished)"
    lo, hi = r["ci95"]
    return f"{r['flagged']}/{r['n']} = {r['rate']:.3f} (95% CI {lo:.3f}–{hi:.3f})"


def _top(which: dict, k: int = 4) -> str:
    return ", ".join(f"{name} ×{n}" for name, n in list(which.items())[:k]) or "—"


#: what the check tests, for CALIBRATION.md (reference/check.py's docstring has the reasons)
CHECK_TEXT = (f"The check (reference/check.py): a weighted Bonferroni at family-wise alpha; "
              f"{100 * (1 - TAIL_ALPHA_SHARE):g} % of alpha over the z-scores of the mean and five quantiles of mu, "
              f"tau, log tau and every theta_j plus a KS test for tau, {100 * TAIL_ALPHA_SHARE:g} % over the lower "
              f"tail of tau: the share of draws below the exact quantile q_p against p, p = "
              f"{', '.join(f'{p:g}' for p in TAIL_PROBS)}, in units of the indicator's own MCSE (issue 20).")


def _fmt_seeds(seeds: list[int] | None) -> str:
    """', seeds 101–200' for a contiguous list (else ', N seeds'); '' when none are known."""
    if not seeds:
        return ""
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f", seeds {seeds[0]}–{seeds[-1]}"
    return f", {len(seeds)} seeds"


def _before_after(r: dict) -> list[str]:
    """The same fits under the check before issue 20 (Bonferroni over the functionals and KS only)."""
    b = r.get("before")
    if not b:
        return []
    out = ["", f"**Before and after, on the same fits and replications.** Before: {b['text']}", "",
           "| measurement | before | after |", "|---|---|---|",
           f"| false alarms, exact iid draws | {_fmt_rate(b['iid'])} | {_fmt_rate(r['iid'])} |"]
    for name, e in b.get("noncentered", {}).items():
        after = r["noncentered_false_alarms"]["engines"].get(name, {})
        out.append(f"| false alarms, {name} non-centred | {_fmt_rate(e)} | {_fmt_rate(after)} |")
    for name, e in b.get("centered", {}).items():
        after = r["centered_power"]["engines"].get(name, {})
        out.append(f"| power, {name} centred | {_fmt_rate(e)} | {_fmt_rate(after)} |")
    return out


def _selection(r: dict) -> list[str]:
    """How the statistic was chosen: each candidate on the selection seeds (not the seeds above)."""
    sel = r.get("selection")
    if not sel:
        return []
    engines = sel["engines"]
    out = ["", f"**How the statistic was chosen (selection data, kept apart from the measurements above).** "
           f"{sel['text']}", "",
           "| candidate | iid false alarms | " + " | ".join(f"{e} centred" for e in engines) + " |",
           "|---|---|" + "---|" * len(engines)]
    for c in sel["candidates"]:
        cells = [f"{c['power'][e]['flagged']}/{c['power'][e]['n']}" if e in c["power"] else "—" for e in engines]
        iid = c["iid"]
        out.append(f"| {c['name']}{' **(chosen)**' if c.get('chosen') else ''} | "
                   f"{iid['flagged']}/{iid['n']} = {100 * iid['rate']:.2f} % | " + " | ".join(cells) + " |")
    return out


def render_markdown(r: dict) -> str:
    lines = [
        "# Calibration of the reference check",
        "",
        "Written by `nox -s calibrate` (benchmarks/calibrate.py); do not edit by hand.",
        "",
        f"Data `{r['data']}`, prior `{r['prior']['text']}`, family-wise alpha = {r['alpha']}.",
        "",
        r.get("check", CHECK_TEXT),
        "",
        "| measurement | goal | flagged / runs (95 % exact CI) | functionals that flagged most |",
        "|---|---|---|---|",
        f"| false alarms, exact iid draws (4 × 1000) | ≤ 1 % | {_fmt_rate(r['iid'])} | {_top(r['iid']['which'])} |",
    ]
    nc_seeds = _fmt_seeds(r["noncentered_false_alarms"].get("seeds"))
    for name, e in r["noncentered_false_alarms"]["engines"].items():
        lines.append(f"| false alarms, {name} non-centred, target_accept 0.95{nc_seeds} | ≤ 5 % | {_fmt_rate(e)} | "
                     f"{_top(e.get('which', {}))} |")
    c_seeds = _fmt_seeds(r["centered_power"].get("seeds"))
    for name, e in r["centered_power"]["engines"].items():
        lines.append(f"| power, {name} centred, default settings{c_seeds} | ≥ 80 % | {_fmt_rate(e)} | "
                     f"{_top(e.get('which', {}))} |")
    long = r.get("centered_power_long")
    if long:
        d = long["settings"]
        for name, e in long["engines"].items():
            lines.append(f"| power, {name} centred, {d['chains']} × {d['draws']} draws (measured; not the goal's "
                         f"setting) | — | {_fmt_rate(e)} | {_top(e.get('which', {}))} |")
    lines += _before_after(r) + _selection(r)
    zc = r["iid"].get("z_calibration")
    if zc:
        lines += ["", f"**Are the iid z-scores N(0, 1)?** Each functional's z over all {r['iid']['reps']} "
                  f"replications of exact draws (every quantity pooled; `P(<q…)` are the lower-tail tests of "
                  f"tau). The weighted Bonferroni keeps the family-wise rate ≤ alpha when each z is N(0, 1); "
                  f"the columns show how close they are, and the tails (|z| > {zc['tail_z']:g}: the normal "
                  f"gives {100 * zc['normal_tail']:.2f} %; beyond its family's threshold, the normal's share "
                  f"in brackets).", "",
                  "| functional | z values | mean | sd | beyond "
                  f"{zc['tail_z']:g} | beyond its threshold (normal) |", "|---|---|---|---|---|---|"]
        for f, v in zc["functionals"].items():
            t = v.get("threshold", zc["threshold"])
            normal = v.get("normal_beyond_threshold", zc["normal_beyond_threshold"])
            lines.append(f"| {f} | {v['n']} | {v['mean']:+.3f} | {v['sd']:.3f} | "
                         f"{v['beyond_tail_z']} ({100 * v['beyond_tail_z'] / v['n']:.2f} %) | "
                         f"{v['beyond_threshold']} ({100 * v['beyond_threshold'] / v['n']:.4f} %) beyond {t:.2f} "
                         f"({100 * normal:.4f} %) |")
        if "ks" in zc:
            k = zc["ks"]
            lines += ["", f"KS test for tau: p < 0.05 in {100 * k['p_below_0.05']:.2f} % and p < 0.01 in "
                      f"{100 * k['p_below_0.01']:.2f} % of {k['n']} replications; the p-values' own uniformity "
                      f"test gives p = {k['uniformity_p']:.3g}."]
    proj = r.get("centered_power_projection")
    if proj:
        engines = sorted({e for per in proj.values() for e in per})
        lines += ["", "**Power of the functionals' family alone, with longer runs (projection).** Runs flagged "
                  "if each centred run kept its bias and its MCSE shrank as 1/√k with k times the draws (the "
                  "functionals' z-tests only, at their threshold: no KS and no lower-tail test; k = 1 is that "
                  "part of the measurement above):", "",
                  "| draws × k | " + " | ".join(engines) + " |", "|---|" + "---|" * len(engines)]
        for k, per in proj.items():
            cells = [f"{per[e][0]}/{per[e][1]}" if e in per else "—" for e in engines]
            lines.append(f"| {k} × (4 × 1000) | " + " | ".join(cells) + " |")
        lines += ["", "The funnel's neck is under-sampled: the functionals that see it (tau q0.05, log_tau mean, "
                  "tau q0.25) have too large an MCSE at 4 × 1000 draws for every biased run to stand out, which "
                  "is why the lower-tail family exists; the projection says where the functionals alone would "
                  "reach the goal, as long as longer chains do not themselves shrink the bias." + (" The measured rows at "
                  f"{long['settings']['chains']} × {long['settings']['draws']} draws above test that assumption."
                  if long else "")]
    lines += ["", "![z-scores](zscores.png)", "", "Environment: see `calibration.json`.", ""]
    return "\n".join(lines)
