"""The chains job's outputs from its results folder: ``chains.csv``, the figure and CHAINS.md.

Everything is computed from the folder (runs.json, chains.json, timing.json, environment.json) and
the exact reference; ``render_chains(folder)`` rewrites the same files from the same records.

Definitions. ESS/s is the smallest bulk ESS over every scalar of mu, tau, theta divided by the wall
time of warmup + draws (compile apart), as everywhere in the suite. The yardstick is 4-chain NUTS at
the suite's default settings (the best median ESS/s among the yardstick's NUTS engines, per
parameterisation); a many-chain sampler's *crossover* is the smallest number of chains at which its
median ESS/s over the seeds exceeds that, reported with how many of its fits there passed the check.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from models.files import write_bytes, write_text
from reference import posterior

from ..engines import ENGINES
from ..runpath.spec import data_for, prior_for
from .report import git_text, load_job_folder, machines_line
from .tables import seeds_text

__all__ = ["CSV_COLUMNS", "FIGURE", "render_chains", "chains_markdown", "console_summary", "crossovers",
           "load_records"]

FIGURE = "ess_per_s_vs_chains.png"
#: chains.csv: (column, record field)
CSV_COLUMNS = [
    ("section", "section"), ("engine", "engine"), ("parameterization", "parameterization"), ("device", "device"),
    ("chains", "chains"), ("warmup", "warmup"), ("draws", "draws"), ("seed", "seed"), ("options", "options"),
    ("inference_s", "inference_s"), ("compile_s", "compile_s"), ("ess_bulk_min", "min_ess_bulk"),
    ("ess_bulk_per_s_wall", "ess_bulk_per_s_wall"), ("gradient_evals", "gradient_evals"),
    ("ess_bulk_per_grad", "ess_bulk_per_grad"), ("max_rhat", "max_rhat"), ("max_nested_rhat", "max_nested_rhat"),
    ("superchains", "superchains"), ("divergences", "divergences"), ("passed", "check_passed"),
    ("max_abs_z", "check_max_abs_z"), ("tau_mean_error", "tau_mean_error"), ("tau_mean_z", "tau_mean_z"),
    ("check_failed", "check_failed"), ("error_kind", "error_kind"), ("error", "error"),
]
def load_records(folder: Path) -> tuple[list[dict], dict, dict, dict]:
    return load_job_folder(folder, "chains.json")


def _ok(r: dict) -> bool:
    return not r.get("error")


def _median(values) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.median(v)) if v else None


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "—"
    if abs(x) >= 1e6:  # a chain gone astray (R-hat, |z| of 1e20): its order of magnitude says it
        return f"{x:.2g}"
    if abs(x) >= 1000:
        return f"{x:,.0f}".replace(",", " ")
    return f"{x:.{digits}g}"


def _spread(values, digits: int = 3) -> str:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return "—"
    med = _fmt(float(np.median(v)), digits)
    return med if len(v) == 1 else f"{med} [{_fmt(min(v), digits)}, {_fmt(max(v), digits)}]"


def _groups(records: list[dict], section_prefix: str) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r["section"].startswith(section_prefix):
            out[(r["engine"], r["parameterization"], r["chains"], json.dumps(r.get("options") or {}))].append(r)
    return out


def _nuts(engine: str) -> bool:
    """The suite's 4-chain NUTS engines are the registry's "main" group (pymc-nutpie-flow, in the yardstick
    section too, adapts a flow: a contender at 4 chains, not the NUTS it is measured against)."""
    return engine in ENGINES and ENGINES[engine].group == "main"


def yardstick(records: list[dict]) -> dict[str, tuple[str, float]]:
    """param -> (engine, median ESS/s) of the best 4-chain NUTS engine in the yardstick section."""
    best: dict[str, tuple[str, float]] = {}
    for (engine, param, _, _), runs in _groups(records, "yardstick").items():
        if not _nuts(engine):
            continue
        m = _median(r.get("ess_bulk_per_s_wall") for r in runs if _ok(r))
        if m is not None and (param not in best or m > best[param][1]):
            best[param] = (engine, m)
    return best


def crossovers(records: list[dict]) -> list[dict]:
    """For each scaling engine, non-centred (where 4-chain NUTS itself passes the check): the smallest
    number of chains whose median ESS/s beats the yardstick, and its fits' check passes there. The
    centred model is judged by the check alone (the funnel table): an ESS/s of fits that fail means little."""
    yard = yardstick(records)
    by: dict[tuple, dict[int, list[dict]]] = defaultdict(dict)
    for (engine, param, chains, _), runs in _groups(records, "scaling").items():
        by[(engine, param)][chains] = runs
    rows = []
    for (engine, param), per in sorted(by.items()):
        if param != "noncentered" or param not in yard:
            continue
        found = None
        for n in sorted(per):
            m = _median(r.get("ess_bulk_per_s_wall") for r in per[n] if _ok(r))
            if m is not None and m > yard[param][1]:
                found = (n, m, per[n])
                break
        best_n = max(per, key=lambda n: _median(r.get("ess_bulk_per_s_wall") for r in per[n] if _ok(r)) or -1)
        rows.append({"engine": engine, "parameterization": param, "yardstick": yard[param][0],
                     "yardstick_ess_per_s": yard[param][1], "crossover_chains": found[0] if found else None,
                     "ess_per_s_there": found[1] if found else None,
                     "passed_there": (sum(bool(r.get("check_passed")) for r in found[2]), len(found[2])) if found else None,
                     "tested": sorted(per), "best_chains": best_n,
                     "best_ess_per_s": _median(r.get("ess_bulk_per_s_wall") for r in per[best_n] if _ok(r))})
    return rows


def _passes(runs: list[dict]) -> str:
    done = [r for r in runs if _ok(r)]
    return f"{sum(bool(r.get('check_passed')) for r in done)}/{len(done)}" if done else "—"


def _row(runs: list[dict]) -> list[str]:
    done = [r for r in runs if _ok(r)]
    if not done:
        err = next((r for r in runs if r.get("error")), {})
        why = str(err.get("error"))
        why = why if why.startswith(f"{err.get('error_kind')}:") else f"{err.get('error_kind')}: {why}"
        return ["0/" + str(len(runs))] + ["—"] * 9 + [why[:100]]
    return [f"{len(done)}/{len(runs)}", _spread([r.get("inference_s") for r in done]),
            _spread([r.get("min_ess_bulk") for r in done]), _spread([r.get("ess_bulk_per_s_wall") for r in done]),
            _spread([1000 * r["ess_bulk_per_grad"] if r.get("ess_bulk_per_grad") else None for r in done]),
            _fmt(max(r.get("max_rhat") or math.nan for r in done), 4),
            _fmt(_max(r.get("max_nested_rhat") for r in done), 4),
            _spread([r.get("divergences") for r in done]), _passes(done),
            _spread([r.get("check_max_abs_z") for r in done], 2), ""]


def _max(values) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return max(v) if v else None


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


RUN_HEADER = ["runs ok", "warmup+draws s", "min bulk ESS", "bulk ESS/s", "ESS/grad ×1000", "max R-hat",
              "max nested R-hat", "divergences", "check pass", "max abs z", "note"]


def _tau_sd(records: list[dict]) -> float | None:
    r = next((r for r in records if r.get("data_spec")), None)
    if r is None:
        return None
    return posterior(data_for(r["data_spec"]), prior_for(r["prior"])).summary("tau").sd


def chains_markdown(records: list[dict], meta: dict, env: dict, timing: dict) -> str:
    seeds = sorted({r["seed"] for r in records})
    wall = (timing.get("totals") or {}).get("wall_s")
    out = ["# Samplers beyond four NUTS chains", "",
           f"Written by `python -m benchmarks chains` (nox -s chains) from this folder's records; "
           f"{machines_line(env, records)}; device: {meta.get('device')}; {git_text(env)}; "
           f"seeds {seeds_text(seeds)}; {len(records)} runs" + (f" in {wall / 60:.1f} min of wall time" if wall else "")
           + ". Data: " + ", ".join(sorted({r['data_spec'] for r in records})) + "; prior "
           + ", ".join(sorted({r['prior'] for r in records})) + "." + _load_text(meta)
           + (f" Note: {meta['note']}." if meta.get("note") else ""), "",
           "Cells are median [min, max] over the seeds. ESS is the smallest bulk ESS over every scalar of mu, "
           "tau and theta (arviz-stats, all chains pooled); ESS/s divides it by warmup + draws wall time "
           "(compile time apart); ESS/grad by the gradient evaluations after warmup. Nested R-hat "
           "(Margossian et al. 2024) treats chains sharing an initial point as a superchain. *check pass* "
           "counts fits whose draws match the exact posterior (z-scores in units of each run's own MCSE).", ""]
    yard = yardstick(records)
    out += ["## Crossover: from how many chains does each many-chain sampler beat 4-chain NUTS in ESS/s here?", "",
            "Non-centred (the parameterisation where 4-chain NUTS passes the check); the centred model is "
            "judged by the check in the funnel table below.", ""]
    rows = []
    for c in crossovers(records):
        n = c["crossover_chains"]
        rows.append([c["engine"], c["parameterization"], f"{c['yardstick']} {_fmt(c['yardstick_ess_per_s'])}",
                     str(n) if n else f"not within {max(c['tested'])}",
                     _fmt(c["ess_per_s_there"]), "{}/{}".format(*c["passed_there"]) if c["passed_there"] else "—",
                     f"{c['best_chains']}: {_fmt(c['best_ess_per_s'])}"])
    out += [_table(["engine", "param", "4-chain NUTS yardstick (bulk ESS/s)", "crossover chains",
                    "bulk ESS/s there", "check pass there", "best chains: bulk ESS/s"], rows), "",
            f"![bulk ESS/s against chains]({FIGURE})", ""]
    out += ["## Every configuration", ""]
    rows = []
    for (engine, param, chains, opts), runs in sorted(_groups(records, "").items(),
                                                       key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3])):
        section = runs[0]["section"].split("-")[0]
        rows.append([section, engine, param, f"{chains} × ({runs[0]['warmup']} + {runs[0]['draws']})",
                     "" if opts == "{}" else opts, *_row(runs)])
    out += [_table(["part", "engine", "param", "chains × (warmup + draws)", "options", *RUN_HEADER], rows), ""]
    out += _funnel(records) + _step_size(records, meta)
    out += ["## How to read it", "",
            "- A many-chain sampler wins ESS/s by running its chains in one vectorised program; on 2 CPU "
            "cores that ends where the chains fill the cores' vector units, on a GPU much later "
            "(`nox -s chains -- --device gpu`).",
            "- With ESS in the 10^5 range the check's MCSE is ~1e-3 posterior sd, far above the exact "
            "reference's own error (tests/test_reference_precision.py states the bound), so a bias the "
            "sampler has shows.", ""]
    if yard:
        out += ["Yardstick per parameterisation: " + "; ".join(f"{p}: {e} {_fmt(v)} bulk ESS/s"
                                                              for p, (e, v) in sorted(yard.items())), ""]
    return "\n".join(out) + "\n"


def _load_text(meta: dict) -> str:
    """How busy the machine was while the job ran: its timings are comparable within this run only."""
    load = [x for x in meta.get("load_samples") or [] if x is not None]
    if not load:
        return ""
    return (f" The machine's 1-minute load average while the job ran (its own worker included): median "
            f"{float(np.median(load)):.1f}, max {max(load):.1f}, on {meta.get('cores')} cores; above ~1 the "
            "timings include other work on the machine, so ESS/s compares within this run only.")


def _funnel(records: list[dict]) -> list[str]:
    """Does any sampler pass the check on the centred model at Rubin's data where NUTS fails?"""
    rows = []
    for (engine, param, chains, opts), runs in sorted(_groups(records, "").items()):
        if param != "centered" or opts != "{}":
            continue
        done = [r for r in runs if _ok(r)]
        if not done:
            continue
        rows.append([engine, f"{chains} × ({runs[0]['warmup']} + {runs[0]['draws']})", seeds_text([r["seed"] for r in done]),
                     _passes(done), _spread([r.get("check_max_abs_z") for r in done], 2),
                     _spread([r.get("tau_mean_z") for r in done], 2), _spread([r.get("divergences") for r in done]),
                     _fmt(_max(r.get("max_nested_rhat") for r in done), 4)])
    return ["## The centred funnel (Rubin's data, default prior)", "",
            "Every centred configuration run, seeds and all: does a sampler pass where 4-chain NUTS fails?", "",
            _table(["engine", "chains × (warmup + draws)", "seeds", "check pass", "max abs z", "z of tau's mean",
                    "divergences", "max nested R-hat"], rows), ""]


def _step_size(records: list[dict], meta: dict) -> list[str]:
    steps = [r for r in records if r["section"].startswith("step-") and _ok(r)]
    if not steps:
        return []
    sd = _tau_sd(steps)
    by: dict[float, list[dict]] = defaultdict(list)
    for r in steps:
        by[float(next(iter((r.get("options") or {}).values()), math.nan))].append(r)
    rows = []
    for scale, runs in sorted(by.items()):
        bias = [r["tau_mean_error"] / sd if sd and r.get("tau_mean_error") is not None else None for r in runs]
        rows.append([f"{scale:g}", _spread(bias, 2), _spread([r.get("tau_mean_z") for r in runs], 2),
                     _spread([r.get("check_max_abs_z") for r in runs], 2), _passes(runs),
                     _spread([r.get("ess_bulk_per_s_wall") for r in runs])])
    first = steps[0]
    return [f"## Unadjusted MCLMC: bias against step size ({first['engine']}, {first['parameterization']}, "
            f"{first['chains']} × ({first['warmup']} + {first['draws']}))", "",
            "The tuned step size times the scale. Bias of tau's mean in exact posterior sds (the draws' mean "
            "minus the exact mean), its z in units of the run's MCSE, and the whole check.", "",
            _table(["step size × ", "bias of tau's mean (exact sds)", "z of tau's mean", "max abs z", "check pass",
                    "bulk ESS/s"], rows), ""]


def write_csv(folder: Path, records: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([c for c, _ in CSV_COLUMNS])
    for r in records:
        w.writerow([json.dumps(r.get(f)) if isinstance(r.get(f), dict) else r.get(f) for _, f in CSV_COLUMNS])
    write_text(Path(folder) / "chains.csv", buf.getvalue())


def write_figure(folder: Path, records: list[dict]) -> None:
    from matplotlib.figure import Figure  # figures only: lazy

    fig = Figure(figsize=(8.5, 5.2), layout="constrained")
    ax = fig.subplots()
    colours = {}
    for engine, *_ in sorted(_groups(records, "scaling")):
        colours.setdefault(engine, f"C{len(colours) % 10}")
    lines: dict[tuple, list] = defaultdict(list)
    for (engine, param, chains, _), runs in _groups(records, "scaling").items():
        m = _median(r.get("ess_bulk_per_s_wall") for r in runs if _ok(r))
        if m is not None:
            lines[(engine, param)].append((chains, m))
    for (engine, param), pts in sorted(lines.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=colours[engine],
                linestyle="-" if param == "noncentered" else "--", label=f"{engine} ({param})")
    for param, (engine, value) in sorted(yardstick(records).items()):
        ax.axhline(value, color="0.3", linestyle="-" if param == "noncentered" else "--", linewidth=0.9)
        ax.annotate(f"4-chain NUTS ({engine}, {param})", (0.01, value), xycoords=("axes fraction", "data"),
                    fontsize=7.5, va="bottom", color="0.3")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("chains (each warmup + draws as in CHAINS.md)")
    ax.set_ylabel("min bulk ESS / s (warmup + draws)")
    ax.set_title("Bulk ESS per second against the number of chains (median over seeds)", fontsize=10)
    ax.legend(fontsize=7.5, ncols=2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_bytes(Path(folder) / FIGURE, buf.getvalue())


def render_chains(folder: Path) -> Path:
    folder = Path(folder)
    records, meta, env, timing = load_records(folder)
    write_csv(folder, records)
    write_figure(folder, records)
    path = folder / "CHAINS.md"
    write_text(path, chains_markdown(records, meta, env, timing))
    return path


def console_summary(folder: Path) -> str:
    records, *_ = load_records(folder)
    lines = ["crossover (bulk ESS/s above 4-chain NUTS):"]
    for c in crossovers(records):
        where = f"{c['crossover_chains']} chains" if c["crossover_chains"] else f"not within {max(c['tested'])}"
        lines.append(f"  {c['engine']} {c['parameterization']}: {where}")
    return "\n".join(lines)
