"""The sweep's outputs from its results folder: ``sweep.csv``, the figures and SWEEP.md.

Everything is computed from the folder (runs.json, sweep.json, timing.json, environment.json) and the
exact reference (:mod:`benchmarks.reporting.sweep_stats`); nothing is typed by hand, so
``render_sweep(folder)`` rewrites the same files from the same records.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from models.files import write_text

from ..runpath.spec import data_for
from .failures import Footnotes
from .report import machine_label
from .sweep_check import check_section
from .sweep_figures import SweepView, write_sweep_figures
from .sweep_stats import (
    CI_LEVEL,
    at_informativeness,
    clopper_pearson,
    crossovers,
    direction,
    first_failing,
    informativeness,
    ok,
    sound,
)
from .tables import seeds_text

__all__ = ["CSV_COLUMNS", "INFORMATIVENESS_COLUMNS", "DIRECTION_SCALES", "sweep_rows", "write_csv", "render_sweep", "sweep_markdown",
           "console_summary", "load_view"]

#: sweep.csv: (column, record field); then INFORMATIVENESS_COLUMNS, from the exact reference
CSV_COLUMNS = [
    ("engine", "engine"), ("parameterization", "parameterization"), ("sigma_scale", "sigma_scale"), ("J", "J"),
    ("seed", "seed"), ("ess_bulk_min", "min_ess_bulk"), ("gradient_evals", "gradient_evals"),
    ("ess_bulk_per_grad", "ess_bulk_per_grad"), ("ess_bulk_per_s", "ess_bulk_per_s"),
    ("ess_bulk_per_s_wall", "ess_bulk_per_s_wall"), ("divergences", "divergences"), ("n_draws", "n_draws"),
    ("max_rhat", "max_rhat"), ("treedepth_hits", "treedepth_hits"), ("passed", "check_passed"),
    ("max_abs_z", "check_max_abs_z"), ("check_failed", "check_failed"), ("data", "data"),
    ("data_spec", "data_spec"), ("prior", "prior"), ("chains", "chains"), ("warmup", "warmup"), ("draws", "draws"),
    ("error_kind", "error_kind"), ("error", "error"),
]
#: sweep.csv's last columns: how informative the row's data are (see the informativeness table of SWEEP.md)
INFORMATIVENESS_COLUMNS = ["sigma_over_tau", "pooling"]
#: the issue's test of direction: centred wins at the first scale, non-centred at the second
DIRECTION_SCALES = (0.1, 1.0)
FIGURE_TEXT = {
    "ess_per_grad.png": "ESS per gradient against sigma_scale, one panel per engine",
    "winner_map.png": "Which parameterisation wins, engine × sigma_scale",
    "check_pass_rate.png": "The reference check's pass rate against sigma_scale",
    "divergence_rate.png": "Divergences per draw against sigma_scale",
}


def _num(x, fmt: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return format(x, fmt)


def _scale(x: float, scales: list[float]) -> str:
    """A crossover scale, censored ones as '< smallest' / '> largest'."""
    if math.isnan(x):
        return "—"
    if x == 0:
        return f"< {scales[0]:g}"
    if math.isinf(x):
        return f"> {scales[-1]:g}"
    return f"{x:.2g}"


def load_view(run_dir: Path) -> tuple[SweepView, dict]:
    """The records of a sweep folder and its metadata (sweep.json, timing.json, environment.json)."""
    run_dir = Path(run_dir)
    records = json.loads((run_dir / "runs.json").read_text())

    def read(name: str) -> dict:
        try:
            return json.loads((run_dir / name).read_text())
        except (OSError, ValueError):
            return {}

    meta = {"sweep": read("sweep.json"), "timing": read("timing.json"), "env": read("environment.json")}
    finished = [r for r in records if ok(r)] or records
    first = finished[0] if finished else {}
    prior = first.get("prior", "default")
    prior_text = first.get("prior_text")
    settings = (f"{first.get('chains')} chains × ({first.get('warmup')} warmup + {first.get('draws')} draws), "
                f"target_accept {first.get('target_accept')}") if first else "?"
    templates = {int(J): t.replace("{sigma_scale}", "S") for J, t in meta["sweep"].get("data", {}).items()}
    for r in records:
        templates.setdefault(r["J"], r.get("data_spec") or r.get("data"))
    return SweepView(records, f"{prior} ({prior_text})" if prior_text else prior, settings, templates), meta


def _order(view: SweepView):
    rank = {e: i for i, e in enumerate(view.engines)}
    return lambda r: (r["J"], rank.get(r["engine"], 99), r["parameterization"], float(r["sigma_scale"]), r["seed"])


def sweep_rows(view: SweepView) -> list[dict]:
    rows = []
    for r in sorted(view.records, key=_order(view)):
        p = informativeness(r["data_spec"], r.get("prior") or "default") if r.get("data_spec") else None
        rows.append({**{col: r.get(field) for col, field in CSV_COLUMNS},
                     "sigma_over_tau": p.ratio if p else None, "pooling": p.pooling if p else None})
    return rows


def write_csv(run_dir: Path, view: SweepView) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[c for c, _ in CSV_COLUMNS] + INFORMATIVENESS_COLUMNS)
    w.writeheader()
    w.writerows(sweep_rows(view))
    return write_text(Path(run_dir) / "sweep.csv", buf.getvalue())


def _points(view: SweepView) -> dict[int, list]:
    prior = next((r["prior"] for r in view.records if r.get("prior")), "default")
    out = defaultdict(list)
    for spec in sorted({r["data_spec"] for r in view.records if r.get("data_spec")}):
        p = informativeness(spec, prior)
        out[p.J].append(p)
    return {J: sorted(ps, key=lambda p: p.sigma_scale) for J, ps in out.items()}


def _informativeness_table(points: dict[int, list]) -> list[str]:
    lines = ["| J | sigma_scale | data | median sigma_j | posterior median tau | sigma/tau | pooling |",
             "|---|---|---|---|---|---|---|"]
    for J, ps in sorted(points.items()):
        for p in ps:
            lines.append(f"| {J} | {p.sigma_scale:g} | `{p.data_spec}` | {p.sigma_median:.3g} | {p.tau_median:.3g} | "
                         f"{p.ratio:.2g} | {p.pooling:.2f} |")
    return lines


def _crossover_table(view: SweepView, points: dict[int, list]) -> tuple[list[str], list[tuple]]:
    cross = crossovers(view.records)
    scales = view.scales
    lines = ["| engine | J | crossover per seed | median [range] | of the median curve | as sigma/tau | "
             "as pooling | centred first fails the check at | ≥ half the centred fits fail first at |",
             "|---|---|---|---|---|---|---|---|---|"]
    found = []
    for engine in view.engines:
        for J in view.Js:
            c = cross.get((engine, J))
            if c is None or all(math.isnan(x.scale) and x.kind == "none" for x in c.per_seed.values()):
                lines.append(f"| {engine} | {J} | no pair of finished fits | — | — | — | — | — | — |")
                continue
            per = ", ".join(f"{s}: {_scale(x.scale, scales)}" + ("*" if x.sign_changes > 1 else "")
                            + (" (reversed)" if x.kind == "reversed" else "") for s, x in c.per_seed.items())
            ratio, pooling = at_informativeness(points.get(J, []), c.median)
            first, mostly = first_failing(view.records, engine, J)
            lines.append(f"| {engine} | {J} | {per} | {_scale(c.median, scales)} [{_scale(c.low, scales)}, "
                         f"{_scale(c.high, scales)}] | {_scale(c.pooled.scale, scales)} | {_num(ratio, '.2g')} | "
                         f"{'—' if math.isnan(pooling) else f'{pooling:.2f}'} | {_num(first) if first else 'never'} | "
                         f"{_num(mostly) if mostly else 'never'} |")
            if not math.isnan(ratio):
                found.append((engine, J, c.median, ratio, pooling))
    return lines, found


def _direction_lines(view: SweepView) -> tuple[list[str], list[str]]:
    small, large = DIRECTION_SCALES
    at_small, at_large = direction(view.records, small), direction(view.records, large)
    lines = [f"| engine | J | at {small:g}: centred / non-centred | seeds centred wins | at {large:g}: centred / "
             f"non-centred | seeds non-centred wins | as the issue expects |", "|---|---|---|---|---|---|---|"]
    broken = []
    for engine in view.engines:
        for J in view.Js:
            a, b = at_small.get((engine, J)), at_large.get((engine, J))
            if a is None and b is None:
                continue
            ok_a = a is not None and a[0] == a[1]
            ok_b = b is not None and b[0] == 0
            verdict = "yes" if ok_a and ok_b else "no"
            if verdict == "no":
                broken.append(f"{engine} J = {J}")
            cells = [f"×{a[2]:.3g}" if a else "—", f"{a[0]}/{a[1]}" if a else "—",
                     f"×{b[2]:.3g}" if b else "—", f"{b[1] - b[0]}/{b[1]}" if b else "—"]
            lines.append(f"| {engine} | {J} | " + " | ".join(cells) + f" | {verdict} |")
    return lines, broken


def _span(values: list[float], fmt: str) -> str:
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}–{hi}"


def _advice(found: list[tuple], points: dict[int, list], view: SweepView) -> list[str]:
    """What a user should pick, in the numbers of this sweep (``found``: (engine, J, crossover S, as
    sigma/tau, as pooling) for every engine and J whose median crossover lies inside the sweep)."""
    if not found:
        return ["No engine has a crossover inside the sweep's range, so the sweep cannot place one: see the "
                "tables above."]
    ratios = [f[3] for f in found]
    pools = [f[4] for f in found]
    per_j = [f"J = {J}: r ≈ {_span([f[3] for f in found if f[1] == J], '.2g')}, "
             f"b ≈ {_span([f[4] for f in found if f[1] == J], '.2f')}" for J in view.Js if any(f[1] == J for f in found)]
    fail_ratios = []
    for engine in view.engines:
        for J in view.Js:
            _, mostly = first_failing(view.records, engine, J)
            if mostly:
                r, b = at_informativeness(points.get(J, []), mostly)
                if not math.isnan(r):
                    fail_ratios.append((r, b, engine, J, mostly))
    nc_sound = [r for r in view.records if r["parameterization"] == "noncentered" and sound(r)]
    nc_rate = clopper_pearson(sum(bool(r.get("check_passed")) for r in nc_sound), len(nc_sound))
    lines = [
        "Compute, from your own data: r = (median of your sigma_j) / (posterior median of tau), and the mean "
        "pooling factor b = mean over schools of E[sigma_j² / (sigma_j² + tau²)] (the weight the posterior mean "
        "of theta_j puts on mu: the classic measure of how informative each school's data are). Tau's draws "
        "from a non-centred fit give both; the table above gives r and b at every point of the sweep.",
        "",
        f"- **The crossover sits at r ≈ {_span(ratios, '.2g')} (b ≈ {_span(pools, '.2f')})** over the engines "
        f"({'; '.join(per_j)}; per engine and J, median over seeds, in the crossover table).",
        f"- **r below {min(ratios):.2g} (b below {min(pools):.2f}): centred** is the efficient parameterisation for "
        "every engine here.",
        f"- **r above {max(ratios):.2g} (b above {max(pools):.2f}): non-centred** for every engine here; between "
        "the two the winner depends on the engine and J, and neither wins by much (the heat map).",
    ]
    if fail_ratios:
        r, b, engine, J, s = min(fail_ratios)
        lines.append(f"- At least half the centred fits already fail the reference check at r ≈ {r:.2g} (b ≈ {b:.2f}; "
                     f"the earliest engine and J: {engine}, J = {J}, sigma_scale {s:g}): there centred is not merely "
                     "slower, its answers are wrong.")
    lines.append(f"- Non-centred fits without divergences passed the check {nc_rate.text()} (of sound non-centred "
                 f"fits, {CI_LEVEL:.0%} exact interval) across the whole sweep, so where in doubt, non-centred costs "
                 "efficiency, not correctness (but see its R-hat and ESS at the informative end in sweep.csv).")
    return lines


def _data_lines(view: SweepView) -> list[str]:
    """What each J's data are, with the numbers that make them comparable: the spread of y against sigma."""
    lines = ["**Data**: every sigma_j multiplied by S (y fixed for Rubin's data; a synthetic draw's y is drawn "
             "with the scaled sigma, the same theta at every S). The sampler seeds vary; the data do not."]
    for J in view.Js:
        specs = sorted({(float(r["sigma_scale"]), r["data_spec"]) for r in view.records if r["J"] == J
                        and r.get("data_spec")})
        if not specs:
            continue
        smallest = data_for(specs[0][1])
        sd = float(np.std(smallest.y_array, ddof=1))
        sig = smallest.sigma_array / smallest.sigma_scale
        lines.append(f"- J = {J}: `{view.data.get(J)}`; sample sd of y {sd:.3g} at S = {specs[0][0]:g}, sigma_j / S "
                     f"from {sig.min():.3g} to {sig.max():.3g}.")
    if len(view.Js) > 1:
        lines.append("- The synthetic J is one draw from the model (data seed 0, the generator's default, not chosen) "
                     "with tau about the spread of Rubin's y and sigma_j / S in Rubin's range (9-18), so at a given S "
                     "a typical sigma_j against the spread of the effects is about Rubin's, and the J differ mainly "
                     "in how many schools inform tau (the informativeness table gives the posterior of tau at every "
                     "point).")
    return lines


def sweep_markdown(run_dir: Path, view: SweepView, meta: dict, figures: list[str]) -> str:
    records = view.records
    done = [r for r in records if ok(r)]
    timing = meta["timing"].get("totals", {})
    load = meta["sweep"].get("load_samples") or []
    points = _points(view)
    cross_lines, found = _crossover_table(view, points)
    dir_lines, broken = _direction_lines(view)
    notes = Footnotes(markdown=True)
    failed = defaultdict(int)
    for r in records:
        if not ok(r):
            failed[(r["engine"], notes.cite(r))] += 1
    wall = timing.get("wall_s")
    env = meta["env"]
    out = [
        "# Centred vs non-centred across data informativeness and J",
        "",
        "Generated by `python -m benchmarks sweep` (`nox -s sweep`) from this folder's records "
        "([sweep.csv](sweep.csv), runs.json); nothing here is typed by hand.",
        "",
        f"**What ran**: {len(records)} runs ({len(done)} finished): engines {', '.join(view.engines)} × centred/"
        f"non-centred × sigma_scale {', '.join(f'{s:g}' for s in view.scales)} × J {', '.join(map(str, view.Js))} × "
        f"sampler seeds {seeds_text(view.seeds)}; prior {view.prior}; {view.settings}. Each fit is checked against "
        "the exact reference for its own data.",
        "",
        *_data_lines(view), "",
        (f"**Wall time**: {wall / 60:.1f} min for the whole sweep" if wall else "**Wall time**: not recorded, ran")
        + (f" on {machine_label(env)}" if env else ""),
    ]
    out[-1] += (
        f"; the machine is shared: its 1-minute load average (this sweep's worker included) had median "
        f"{np.median(load):.2f} and maximum {max(load):.2f} over {len(load)} samples" if load else "") + (
        ". ESS per gradient does not depend on the load; times per second do." if wall else "")
    out += ["", "## The crossover: where centred's ESS per gradient overtakes non-centred's", "",
            "For each engine, J and sampler seed: d(S) = log(centred / non-centred ESS per gradient). Scanning from "
            "the informative end, the crossover is the first S where d turns from > 0 (centred better) to ≤ 0, "
            "interpolated linearly in log S between the two bracketing scales; '> largest' means centred won at "
            "every scale, '< smallest' that non-centred did; * marks a seed whose d changes sign more than once. "
            "The median over seeds is taken on the log scale. *As sigma/tau* and *as pooling* place the median "
            "crossover on the informativeness scale (the informativeness table below). The last two columns: the smallest S at "
            "which a centred fit fails the reference check, and the smallest S at which at least half the "
            "centred fits (over the seeds, this J) fail it.", "", *cross_lines, "",
            f"## Direction at sigma_scale {DIRECTION_SCALES[0]:g} and {DIRECTION_SCALES[1]:g}", "",
            f"The issue expects centred to beat non-centred on ESS per gradient at {DIRECTION_SCALES[0]:g} and the "
            f"reverse at {DIRECTION_SCALES[1]:g}, for every engine that runs (ratios: median over seeds).", "",
            *dir_lines, ""]
    out.append("Every engine and J follows the expected direction at both scales (every seed)." if not broken else
               f"Not as expected (at least one seed): {', '.join(broken)}.")
    out += ["", "## Data informativeness at each point", "",
            "From the exact posterior under the sweep's prior: sigma/tau = median sigma_j / posterior median of "
            "tau; pooling = mean over schools of E[sigma_j² / (sigma_j² + tau²) | y] (0: each school's own data "
            "decide theta_j; 1: complete pooling to mu).", "", *_informativeness_table(points), "",
            "## What to pick for your data", "", *_advice(found, points, view), "",
            *check_section(view)]
    out += ["## Figures", ""]
    for name in figures:
        out += [f"### {FIGURE_TEXT.get(name, name)}", "", f"![{FIGURE_TEXT.get(name, name)}]({name})", ""]
    if failed:
        out += ["## Runs without numbers", "", "| engine | runs | why |", "|---|---|---|"]
        out += [f"| {e} | {n} | {label} |" for (e, label), n in failed.items()]
        out += ["", notes.render(), ""]
    return "\n".join(out) + "\n"


def render_sweep(run_dir: Path) -> Path:
    """Write sweep.csv, the figures and SWEEP.md for a sweep folder; returns SWEEP.md's path."""
    run_dir = Path(run_dir)
    view, meta = load_view(run_dir)
    write_csv(run_dir, view)
    figures = write_sweep_figures(run_dir, view)
    return write_text(run_dir / "SWEEP.md", sweep_markdown(run_dir, view, meta, figures))


def console_summary(run_dir: Path) -> str:
    """The crossover per engine and J, and the direction at DIRECTION_SCALES, for the terminal."""
    view, _ = load_view(run_dir)
    cross = crossovers(view.records)
    small, large = DIRECTION_SCALES
    at_small, at_large = direction(view.records, small), direction(view.records, large)
    lines = [f"{'engine':<14} {'J':>3}  {'crossover median [range]':<28} {f'C/NC at {small:g}':>12} "
             f"{f'C/NC at {large:g}':>12}"]
    for engine in view.engines:
        for J in view.Js:
            c = cross.get((engine, J))
            a, b = at_small.get((engine, J)), at_large.get((engine, J))
            text = (f"{_scale(c.median, view.scales)} [{_scale(c.low, view.scales)}, {_scale(c.high, view.scales)}]"
                    if c else "—")
            lines.append(f"{engine:<14} {J:>3}  {text:<28} {f'×{a[2]:.3g}' if a else '—':>12} "
                         f"{f'×{b[2]:.3g}' if b else '—':>12}")
    return "\n".join(lines)

