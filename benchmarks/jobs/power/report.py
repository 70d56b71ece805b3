"""POWER.md and power.png from the power document (works on power.json as read back, too)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from models.files import atomic_path

__all__ = ["markdown", "draw_figure", "false_alarm_ci"]

DPI = 110
PARAM_STYLE = {"noncentered": "-", "centered": "--"}
ENGINE_COLOUR = {"pystan": "tab:red", "numpyro": "tab:blue", "pymc": "tab:green", "cmdstanpy": "tab:purple"}


def _by_n(group: dict) -> dict[int, dict]:
    return {int(k): v for k, v in group["by_n"].items()}


def _pct(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f} %"


def _num(x: float | None, fmt: str = ".2g") -> str:
    return "—" if x is None else format(x, fmt)


def false_alarm_ci(rate: float, replicates: int) -> tuple[float, float]:
    """Clopper-Pearson 95 % interval of a rate measured over ``replicates`` resamples (resamples of one
    finite pool are not independent draws of the world, so this understates the uncertainty)."""
    k = round(rate * replicates)
    ci = stats.binomtest(k, replicates).proportion_ci(0.95)
    return float(ci.low), float(ci.high)


def _fa(rate: float, replicates: int, alpha: float) -> str:
    lo, hi = false_alarm_ci(rate, replicates)
    flag = " ⚠️" if lo > alpha else ""
    return f"{100 * rate:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]{flag}"


def _at(block: dict, level: float) -> float:
    return block["power"][[float(x) for x in block["levels"]].index(level)]


def _current(power: dict) -> tuple[dict, int] | None:
    for v in power["variants"]:
        if v.get("current_n"):
            return v, int(v["current_n"])
    return None


def _settings_text(s: dict) -> str:
    return f"{s['chains']} chains × ({s['warmup']} warmup + {s['draws']} draws), target_accept {s['target_accept']:g}"


def _bias_bound(g: dict, n: int) -> str:
    """The bias cell where 2n exceeds the seeds whose draws were kept: the smallest shift caught at the
    largest n that was measured, an upper bound for n (the verdict test's power grows with the seeds)."""
    if g.get("summary", {}).get("reference_pass_rate") == 0:
        return "n/a (the check fails every seed of the pool: no pass rate left to drop)"
    measured = [(m, r["bias"]) for m, r in sorted(_by_n(g).items())
                if m < n and r["bias"]["power"] is not None and r["bias"]["mean_at_risk"]]
    if not measured or measured[-1][1]["delta80"] is None:
        return "not measured (2n > the seeds with shifted draws)"
    m, b = measured[-1]
    return f"≤ {_num(b['delta80'], '.2f')} (caught with {m} seeds a side, the most with shifted draws; more seeds add power)"


def _current_table(power: dict, v: dict, n: int) -> list[str]:
    t, a = power["targets"], power["alpha"]
    lines = [f"| engine / param | ESS drop caught 80 % | power at a {_pct(t['ess_drop'])} drop | divergence rate × "
             f"caught 80 % | power at ×{t['divergence_rate']:g} | bias caught 80 % (sd of mu) | false alarms at zero "
             f"injection: ESS · divergences · verdict (α = {a:g}; 95 % interval) | any gated check |",
             "|---|---|---|---|---|---|---|---|"]
    for key, g in v["groups"].items():
        r = _by_n(g).get(n)
        if r is None:
            continue
        e, d, b = r["ess_drop"], r["divergence_rise"], r["bias"]

        def flag(x: dict, reps: int = r["replicates"]) -> str:  # a check that false-alarms beyond alpha "catches"
            return " ⚠️" if false_alarm_ci(x["false_alarm"], reps)[0] > a else ""  # anything: say so

        below_floor = g.get("requirement", {}).get("divergence_rise", {}).get("n") == 0
        div_k = ("n/a (no divergences)" if not d["applicable"] else
                 f"n/a (rate {g['summary']['divergence_rate']:.4f}: a rise below the gate's floor)" if below_floor else
                 f"> {d['levels'][-1]:g}" if d["k80"] is None else _num(d["k80"], ".2f")) + flag(d)
        div_p = _pct(_at(d, t["divergence_rate"])) if d["applicable"] and not below_floor else "n/a"
        if b["power"] is None:
            bias = _bias_bound(g, n)
        elif b["mean_at_risk"] == 0:
            bias = "n/a (the reference fails every seed)"
        else:
            bias = (_num(b["delta80"], ".2f") if b["delta80"] is not None else f"> {b['levels'][-1]:g}") + flag(b)
        fas = " · ".join(_fa(x["false_alarm"], r["replicates"], a) for x in (e, d, b))
        lines.append(f"| {key} | {_pct(e['d80'])}{flag(e)} | {_pct(_at(e, t['ess_drop']))} | {div_k} | {div_p} | {bias} | "
                     f"{fas} | {_fa(r['gate_false_alarm'], r['replicates'], 3 * a)} |")
    return lines


def _verdict_table(power: dict, v: dict, n: int) -> list[str]:
    """The gate's verdict test (Fisher's exact) beside the flip test it replaced."""
    a = power["alpha"]
    lines = ["| engine / param | reference pass rate (pool) | Fisher's exact test (the gate): false alarms · bias "
             "caught 80 % | flip test (the gate before): false alarms · bias caught 80 % |", "|---|---|---|---|"]
    for key, g in v["groups"].items():
        r = _by_n(g).get(n)
        if r is None or "bias_flip" not in r:
            continue
        cells = []
        for b in (r["bias"], r["bias_flip"]):
            caught = ("not measured" if b["power"] is None else _num(b["delta80"], ".2f") if b["delta80"] is not None
                      else f"> {b['levels'][-1]:g}")
            cells.append(f"{_fa(b['false_alarm'], r['replicates'], a)} · {caught}")
        lines.append(f"| {key} | {_pct(g['summary']['reference_pass_rate'])} | {cells[0]} | {cells[1]} |")
    return lines


def _requirement_tables(power: dict) -> list[str]:
    t = power["targets"]
    lines = ["| settings | engine / param | pool: runs · log sd of ESS/grad · divergence rate · reference pass rate · "
             f"s per run | seeds for a {_pct(t['ess_drop'])} ESS drop | seeds for ×{t['divergence_rate']:g} "
             "divergences |", "|---|---|---|---|---|"]
    for v in power["variants"]:
        for key, g in v["groups"].items():
            s, req = g["summary"], g["requirement"]
            pool = (f"{s['runs']} · {_num(s['ess_per_grad_log_sd'])} · {_num(s['divergence_rate'], '.3f')} · "
                    f"{_pct(s['reference_pass_rate'])} · {_num(s['run_s_median'])}")
            cells = []
            for kind in ("ess_drop", "divergence_rise"):
                r = req[kind]
                cells.append("n/a" if r["n"] == 0 else f"**{r['n']}**" if r["how"] == "resampled" else
                              f"≈{r['n']} ({r['how']})" if r["n"] else f"? ({r['how']})")
            lines.append(f"| {v['tag']} | {key} | {pool} | {cells[0]} | {cells[1]} |")
    lines += ["", "| settings | seeds needed (every group, both targets) | estimated gate wall time | "
              f"within {power['targets']['time_budget_s']:.0f} s? |", "|---|---|---|---|"]
    for v in power["variants"]:
        n, w = v["n_required"], v["wall_s_required"]
        lines.append(f"| {v['tag']} ({_settings_text(v['settings'])}) | {n or 'not reached'} | "
                     f"{'—' if w is None else f'{w:.0f} s'} | {'yes' if v['meets_budget'] else 'no'} |")
    return lines


def _curve_table(power: dict, v: dict) -> list[str]:
    t = power["targets"]
    keys = list(v["groups"])
    lines = [f"Power against a {_pct(t['ess_drop'])} ESS drop · a ×{t['divergence_rate']:g} divergence rate, by seeds "
             f"a side ({v['tag']}; resampled, {power['replicates']} replicates):", "",
             "| seeds | " + " | ".join(keys) + " | est. wall |", "|---" * (len(keys) + 2) + "|"]
    walls = {int(k): w for k, w in v["wall_s_by_n"].items()}
    for n in v["ns"]:
        cells = []
        for k in keys:
            r = _by_n(v["groups"][k])[int(n)]
            d = r["divergence_rise"]
            cells.append(f"{_pct(_at(r['ess_drop'], t['ess_drop']))} · "
                         + (_pct(_at(d, t["divergence_rate"])) if d["applicable"] else "n/a"))
        w = walls.get(int(n))
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {'—' if w is None else f'{w:.0f} s'} |")
    return lines


def _best(power: dict) -> tuple[dict, int] | None:
    """The variant (and its seeds) that catches both targets in every group within the budget, cheapest first."""
    ok = [v for v in power["variants"] if v["meets_budget"]]
    if not ok:
        return None
    best = min(ok, key=lambda v: v["wall_s_required"])
    return best, int(best["n_required"])


def _config_section(power: dict, v: dict, n: int, title: str) -> list[str]:
    lines = [f"## {title}", ""] + _current_table(power, v, n)
    lines += ["", "Smallest injection caught 80 % of the time (ESS: the 80 % quantile of each replicate's smallest "
              "caught drop; divergences and bias: interpolated between the levels "
              f"{power['levels']['rates']} and {power['levels']['biases']}). ⚠️ marks a false-alarm rate whose "
              "whole interval lies above its bound (α per check, 3α for any of the three); beside a smallest injection "
              "caught, it says that check fails often without any injection, so catching proves little.", ""]
    lines += ["Verdicts: the gate compares the share of seeds that pass the reference check (one-sided Fisher's "
              "exact test of the pass counts, `pass_rate_drop_test`), which assumes nothing about how often an "
              "unchanged sampler fails the check. The test it replaced (`verdict_flip_test`) counted seeds that "
              "passed in the baseline and fail now, and called more flips than the check's own 1 % false-alarm "
              "rate explains a regression: true for a sampler that matches the posterior, not for the centred "
              "model at short settings (a declared expected failure: it fails the check on a random part of its "
              "seeds), so a candidate whose seeds draw other random numbers flipped seeds by chance. Both on the "
              "same replicates:", ""]
    return lines + _verdict_table(power, v, n) + [""]


def _measured(power: dict) -> list[str]:
    mb = power.get("measured_baseline")
    if not mb or mb.get("wall_s") is None:
        return []
    return ["", f"**Measured:** `python -m benchmarks baseline --config {power['config']['name']}` ran this "
            f"configuration's {mb['runs']} runs ({mb['seeds']} seeds) in {mb['wall_s']:.0f} s on "
            f"{(mb.get('machine') or {}).get('cpu')} ({(mb.get('machine') or {}).get('cores')} cores), "
            f"{mb['created']}, warm caches; the gate reruns the same runs."]


def _recommendation(power: dict) -> list[str]:
    return _recommend(power) + _measured(power)


def _recommend(power: dict) -> list[str]:
    budget = power["targets"]["time_budget_s"]
    found = _best(power)
    if found:
        best = found[0]
        return [f"**Cheapest measured configuration that catches both targets in every engine × parameterisation "
                f"within {budget:.0f} s:** {_settings_text(best['settings'])}, {best['n_required']} seeds "
                f"(estimated {best['wall_s_required']:.0f} s from the pool's run times)."]
    lines = [f"**No measured configuration catches both targets in every engine × parameterisation within "
             f"{budget:.0f} s.** What binds (seeds needed, against the most that fit the budget):"]
    for v in power["variants"]:
        fit = v.get("n_within_budget") or 0
        for key, g in v["groups"].items():
            for kind, r in g["requirement"].items():
                if r["n"] is None or r["n"] > fit:
                    lines.append(f"- {v['tag']} {key}, {kind.replace('_', ' ')}: "
                                 f"{'unknown' if r['n'] is None else r['n']} seeds ({r['how']}); {fit} fit")
    return lines


METHOD = """\
*Method.* Each settings variant ran the configuration's engines × parameterisations on a pool of seeds
beyond the baseline's, through the suite's run path with draws kept. Each replicate draws 2n distinct
runs of one engine × parameterisation: n play the baseline, n the candidate, which gets the injection;
the gate's own decision functions (`benchmarks/jobs/regress/stats.py`: `ess_drop_test`,
`divergence_rise_test`, `pass_rate_drop_test`, at the gate's α) decide. Power is the fraction of
replicates that fail; at zero injection it is the false-alarm rate. Injections:

- **ESS per gradient**: the candidate's values × (1 − d). The power at every d comes from one call per
  replicate (the test fails when the ratio of geometric means falls below its bound and the 10 % floor;
  the ratio scales by 1 − d, the bound does not), checked against direct calls in tests/test_power.py.
- **Divergence rate**: each candidate chain's count × k (m·c + Binomial(c, f) for k = m + f, capped at
  its transitions). Chains without divergences keep none: the extra divergences cluster where the
  sampler already diverges, keeping the counts' overdispersion; a regression that spread divergences
  evenly would be caught more easily, so these numbers are conservative. No target where doubling the
  pool's rate rises it by less than the gate's 0.002 floor (the non-centred models' ~0.0002): the gate
  ignores such rises by design.
- **Bias**: every draw of mu and of each theta_j shifted by δ × the exact posterior sd of mu (theta − mu
  and tau unchanged), then the reference check rerun on the shifted draws; verdicts flip as a sampler
  biased in the population mean would make them. Only mu/theta functionals can flip (tau is untouched),
  and the verdict test can only see seeds whose baseline passed ("at risk"). The check reruns cost ~0.1 s
  each, so only each pool's first 80 seeds keep their draws: bias curves exist for n <= 40; the verdict
  tests' false alarms (no shift) use every run.

*Assumptions.* Runs at different seeds are independent draws from the unchanged sampler, and a candidate
build's runs at the baseline's seeds are independent of the baseline's (another build draws other
random numbers; a same-build rerun reproduces the draws and passes trivially) — so baseline and
candidate seeds are disjoint here, as the gate's unpaired tests assume. Resampling one finite pool
understates the uncertainty of the estimates (the intervals shown are Monte Carlo only), and 2n can
never exceed the pool: beyond it, the ESS requirement is the noncentral-t value for normal log ESS per
gradient with the pool's spread (marked ≈), and the divergence requirement is unknown. Wall times
are estimates: per group the pool's first run (PPL import, program load/compile, JIT) plus n − 1 median
runs, measured with the compiled-program caches warm, on this machine at the load shown.
"""


def markdown(power: dict) -> str:
    m, cfg = power["machine"], power["config"]
    pk = power.get("packages", {})
    versions = ", ".join(f"{p} {pk[p]}" for p in ("numpyro", "jax", "pystan", "httpstan") if pk.get(p))
    lines = [f"# The regression gate's power (config `{cfg['name']}`)", "",
             f"Measured {power['created']} on {m.get('cpu')} ({m.get('cores')} cores); {versions}. "
             f"Each check's false-alarm rate α = {power['alpha']:g}; power target {_pct(power['power'])}; "
             f"{power['replicates']} resampling replicates per engine × parameterisation and number of seeds"
             + (f", {power['operating_point_replicates']} at the configuration's own number of seeds and the "
                "highlighted ones, whose false-alarm rates decide a ⚠️" if power.get("operating_point_replicates")
                else "") + f" (seed {power['resampling_seed']}).", ""]
    loads = [f"{v['tag']}: {v['load_1min'][0]:.1f} → {v['load_1min'][1]:.1f}" for v in power["variants"]
             if v.get("load_1min")]
    if loads:
        lines += [f"1-minute load average before and after each pool's step of the run that wrote this (2 cores; "
                  f"above ~1 run times include other users' work; a resumed pool reuses run times measured "
                  f"earlier, at their own load): {'; '.join(loads)}.", ""]
    cur = _current(power)
    best = _best(power)
    if cur:
        lines += _config_section(power, *cur, f"The `{cfg['name']}` configuration measured (its {cur[1]} seeds, "
                                 f"{_settings_text(cur[0]['settings'])})")
        for n in cur[0].get("highlight", []):
            if n != cur[1]:
                lines += _config_section(power, cur[0], n, f"The `{cfg['name']}` settings with {n} seeds")
    if best and (not cur or (best[0]["tag"], best[1]) != (cur[0]["tag"], cur[1])):
        lines += _config_section(power, *best, f"The cheapest configuration that catches both targets: {best[1]} "
                                 f"seeds, {_settings_text(best[0]['settings'])}")
    lines += ["## What catching both targets takes", ""]
    lines += _requirement_tables(power) + [""]
    for v in power["variants"]:
        lines += _curve_table(power, v) + [""]
    lines += ["## Recommendation", ""] + _recommendation(power) + ["", "## Method and assumptions", "", METHOD]
    lines += ["![power curves](power.png)", ""]
    return "\n".join(lines)


def draw_figure(power: dict, path: Path) -> None:
    """Power curves of the configuration measured, of the other seed counts highlighted and of the cheapest
    configuration that catches both targets (one line style per seed count, one colour per engine)."""
    shown: list[tuple[dict, int]] = []
    cur, best = _current(power), _best(power)
    if cur:
        shown += [cur, *((cur[0], int(n)) for n in cur[0].get("highlight", []))]
    if best:
        shown.append(best)
    shown = list({(v["tag"], n): (v, n) for v, n in shown}.values())
    fig = Figure(figsize=(13, 5.0), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 3)
    markers = "osD^v"
    for i, (v, n) in enumerate(shown):
        for key, g in v["groups"].items():
            r = _by_n(g).get(n)
            if r is None:
                continue
            engine, param = key.split("/")
            style = dict(color=ENGINE_COLOUR.get(engine, "0.3"), ls=PARAM_STYLE.get(param, "-"), marker=markers[i % 5],
                         ms=4, alpha=1.0 if i == 0 else 0.55)
            label = f"{key}, {n} seeds" + ("" if v is (cur or best)[0] else f" ({v['tag']})")
            axes[0].plot(100 * np.asarray(r["ess_drop"]["levels"]), r["ess_drop"]["power"], label=label, **style)
            if g["requirement"]["divergence_rise"]["n"] != 0:  # rises below the gate's floor are no target
                axes[1].plot(r["divergence_rise"]["levels"], r["divergence_rise"]["power"], **style)
            if r["bias"]["power"] is not None:
                axes[2].plot(r["bias"]["levels"], r["bias"]["power"], **style)
    titles = ("ESS per gradient drop (%)", "divergence rate × k (centred: the others' rates are below the floor)",
              "bias δ (posterior sds of mu; the gate's Fisher test)")
    for ax, title in zip(axes, titles):
        ax.axhline(power["power"], color="0.5", lw=0.8, ls=":")
        ax.set_xlabel(title, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("P(the gate fails the check)")
    axes[1].set_xscale("log", base=2)
    if shown:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=8)
    fig.suptitle(f"Power of the regression gate against injected regressions (config {power['config']['name']}; "
                 f"α = {power['alpha']:g} per check; solid lines = non-centred, dashed = centred)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
