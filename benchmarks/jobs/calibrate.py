"""Measure the reference check's false-alarm rate and power (``nox -s calibrate``).

Three measurements, each with an exact (Clopper-Pearson) binomial interval:
  1. false alarms on exact iid draws from the reference, arranged as 4 chains x 1000 (the reference
     alone: no engine, so it runs here in the client);
  2. false alarms on non-centred runs of every engine (default prior, target_accept 0.95);
  3. power on centred runs at default settings (the declared expected failure), and measured at 4x
     the draws.
The engine runs go through the run path (worker processes; ``--workers``/``--scheduler`` spread
them on Dask); their records are in ``<out>/runs/``. Output: ``calibration.json``, ``CALIBRATION.md``,
``zscores.csv``, ``zscores.png`` (default ``results/runs/calibration/``; ``publish calibration``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import stats

from models import PRESETS, RUBIN, Prior, SchoolsData
from models.errors import UsageError
from models.files import write_json, write_text
from reference import posterior
from reference.check import DEFAULT_ALPHA, FUNCTIONAL_PROBS, bonferroni_threshold, check, iid_as_draws

from ..engines import ENGINES, default_engines
from ..engines.base import Settings
from ..runpath import Progress, ResultsStore, run_matrix
from ..runpath.environment import environment, note_revision_drift
from ..runpath.spec import RunSpec
from ..runpath.store import read_checks
from .common import RUNS, RunOptions, add_run_options, executor_timeout, make_executor, plan_line


def rate(k: int, n: int) -> dict:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact") if n else None
    return {"flagged": k, "n": n, "rate": k / n if n else None,
            "ci95": [ci.low, ci.high] if ci else None}


#: exact-iid replications per task: big enough that a task's overhead (the reference, on a Dask
#: worker) is small against its checks, small enough that 10^4 replications spread over many workers
IID_BLOCK = 250
#: replications whose every z-score is kept for the figure
FIGURE_REPS = 50


def iid_block(data: SchoolsData, prior: Prior, start: int, n: int, seed: int, chains: int, draws: int,
              alpha: float) -> dict:
    """Replications start .. start + n - 1 of the exact-iid false-alarm measurement (replication r
    uses seed + r, so blocks give the same numbers however they are split or where they run)."""
    ref = posterior(data, prior)
    out: dict = {"flagged": 0, "which": Counter(), "z": [], "ks_p": [], "rows": [], "threshold": None,
                 "functionals": []}
    for r in range(start, start + n):
        sample = ref.draws(chains * draws, seed=seed + r)
        v = check(iid_as_draws(sample, chains, data.school), ref, alpha=alpha)
        out["flagged"] += not v.passed
        out["which"].update(v.failed)
        out["z"].append([c.z for c in v.checks])
        out["ks_p"].append(v.ks.p_value if v.ks else np.nan)
        out["threshold"], out["functionals"] = v.threshold, [c.functional for c in v.checks]
        if r < FIGURE_REPS:
            out["rows"] += [{"source": "iid", "rep": r, **c._asdict()} for c in v.checks]
    return out


def iid_false_alarms(data: SchoolsData, prior: Prior, reps: int, seed: int, chains: int = 4,
                     draws: int = 1000, alpha: float = DEFAULT_ALPHA,
                     mapper: Callable | None = None) -> tuple[dict, list[dict]]:
    """False alarms on exact iid draws, in blocks of IID_BLOCK replications: run here, or spread by
    ``mapper`` (an executor's ``map_plain``: on Dask, the blocks run on the cluster's workers)."""
    starts = list(range(0, reps, IID_BLOCK))
    args = [(data, prior, s, min(IID_BLOCK, reps - s), seed, chains, draws, alpha) for s in starts]
    blocks = mapper(iid_block, args) if mapper else [iid_block(*a) for a in args]
    flagged, which, rows, zs, ks_p = 0, Counter(), [], [], []
    threshold, functionals = None, []
    for b in blocks:
        flagged += b["flagged"]
        which.update(b["which"])
        rows += b["rows"]
        zs += b["z"]
        ks_p += b["ks_p"]
        threshold, functionals = b["threshold"], b["functionals"]
    z_cal = z_calibration(np.array(zs), functionals, np.array(ks_p), threshold) if reps else {}
    return {**rate(flagged, reps), "which": dict(which.most_common()), "z_calibration": z_cal}, rows


#: |z| beyond which the per-test tail is compared with the normal's (2 P(Z > 3) = 0.27 %): far enough
#: out to show fat tails, close enough in that 10^4 replications x 11 quantities see ~300 exceedances.
TAIL_Z = 3.0


def z_calibration(z: np.ndarray, functionals: list[str], ks_p: np.ndarray, threshold: float) -> dict:
    """How exact iid draws' z-scores compare with N(0, 1), per functional: their sd, the fraction
    beyond |z| = 3 and beyond the Bonferroni threshold, each with the normal's value. This is the
    evidence behind the family-wise rate: if every z is N(0, 1), Bonferroni guarantees <= alpha."""
    out: dict = {"tail_z": TAIL_Z, "threshold": threshold,
                 "normal_tail": float(2 * stats.norm.sf(TAIL_Z)),
                 "normal_beyond_threshold": float(2 * stats.norm.sf(threshold)), "functionals": {}}
    for f in dict.fromkeys(functionals):
        cols = z[:, [i for i, g in enumerate(functionals) if g == f]]
        out["functionals"][f] = {
            "n": int(cols.size),
            "mean": float(cols.mean()),
            "sd": float(cols.std(ddof=1)),
            "beyond_tail_z": int((np.abs(cols) > TAIL_Z).sum()),
            "beyond_threshold": int((np.abs(cols) > threshold).sum()),
        }
    finite = ks_p[np.isfinite(ks_p)]
    if finite.size:
        out["ks"] = {"n": int(finite.size), "p_below_0.05": float((finite < 0.05).mean()),
                     "p_below_0.01": float((finite < 0.01).mean()),
                     "uniformity_p": float(stats.kstest(finite, "uniform").pvalue)}
    return out


def engine_specs(engines: list[str], param: str, settings: Settings, seeds: list[int], section: str) -> list[RunSpec]:
    return [RunSpec(engine=e, parameterization=param, settings=dataclasses.replace(settings, seed=seed),
                    section=section, keep_checks=True) for e in engines for seed in seeds]


def engine_rates(specs: list[RunSpec], records: dict[str, dict], run_dir: Path) -> tuple[dict, list[dict]]:
    """Per engine: how many of its runs the check flagged (and which functionals), from the run path's
    records; a run that failed is listed under ``errors``, an unavailable engine says so."""
    out, rows = {}, []
    for name in dict.fromkeys(s.engine for s in specs):
        recs = [records[s.key] for s in specs if s.engine == name]
        if all(r.get("error_kind") == "unavailable" for r in recs):
            out[name] = {"error": recs[0]["error"]}
            continue
        flagged, which, errors, n = 0, Counter(), [], 0
        for r in recs:
            if r.get("error"):
                errors.append(f"seed {r['seed']}: {r['error']}"[:300])
                continue
            n += 1
            flagged += not r["check_passed"]
            which.update(f for f in (r.get("check_failed") or "").split(";") if f)
            checks = read_checks(run_dir, r["key"])
            if checks:
                rows += [{"source": f"{name} {r['parameterization']}", "rep": r["seed"], **c}
                         for c in checks["checks"]]
        out[name] = {**rate(flagged, n), "which": dict(which.most_common()), "errors": errors}
    return out, rows


#: draw multipliers for the projected power: with k times the draws the MCSE shrinks by sqrt(k)
PROJECTION_FACTORS = (1, 2, 4)


def project_power(rows: list[dict], threshold: float, factors=PROJECTION_FACTORS) -> dict:
    """Fraction of centred runs that k-times longer runs would flag, if each run's bias stayed as it is
    and its MCSE shrank as 1/sqrt(k): flagged when max |z| sqrt(k) exceeds the threshold. (k = 1
    reproduces the z-test part of the measured power; the KS test is left out.)"""
    worst: dict[tuple[str, str], float] = {}
    for r in rows:
        src = r["source"]
        if src.endswith(" centered"):
            key = (src.removesuffix(" centered"), str(r["rep"]))
            worst[key] = max(worst.get(key, 0.0), abs(float(r["z"])))
    out: dict = {}
    for k in factors:
        per: dict[str, list[int]] = {}
        for (engine, _), z in worst.items():
            c = per.setdefault(engine, [0, 0])
            c[0] += z * k ** 0.5 > threshold
            c[1] += 1
        out[str(k)] = per
    return out


def _figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({f"{r['quantity']} {r['functional']}" for r in rows},
                    key=lambda s: (not s.startswith("mu"), not s.startswith("tau"), s))
    index = {lab: i for i, lab in enumerate(labels)}
    sources = sorted({r["source"] for r in rows})
    fig, ax = plt.subplots(figsize=(14, 5.5))
    for k, src in enumerate(sources):
        pts = [(index[f"{r['quantity']} {r['functional']}"], r["z"]) for r in rows if r["source"] == src]
        x = np.array([p[0] for p in pts]) + (k - len(sources) / 2) * 0.8 / len(sources)
        ax.plot(x, np.clip([p[1] for p in pts], -15, 15), ".", ms=2, alpha=0.5, label=src)
    thr = max(abs(r["z"]) for r in rows if not r["failed"]) if rows else 0
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    ax.set_ylabel("z = (estimate − exact) / MCSE  (clipped at ±15)")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_title(f"Reference-check z-scores by functional (largest passing |z| = {thr:.2f})")
    ax.legend(markerscale=6, fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: Exact iid replications: at 10^4 the 95 % interval of a ~1 % rate is about +-0.2 percentage points,
#: narrow enough to tell the rate from the 1 % goal (10^3 gave +-0.7 points).
DEFAULT_REPS = 10_000
#: Draws per chain of the measured long-run power (4x the default's 1000): where the projection below
#: says the goal would be reached, measured instead of assumed. 0 skips it.
DEFAULT_LONG_DRAWS = 4000


def run_calibration(outdir: Path, *, reps: int = DEFAULT_REPS, seeds: int = 20, engines: list[str] | None = None,
                    seed: int = 20261124, long_draws: int = DEFAULT_LONG_DRAWS,
                    options: RunOptions | None = None) -> dict:
    data, prior = RUBIN, PRESETS["default"]
    engines = engines or default_engines()
    seed_list = list(range(1, seeds + 1))
    outdir = Path(outdir)
    env = environment()
    t0 = time.perf_counter()
    nc_settings, c_settings = Settings(target_accept=0.95), Settings()
    long_settings = Settings(draws=long_draws) if long_draws else None
    groups = {"noncentered": engine_specs(engines, "noncentered", nc_settings, seed_list, "noncentered-ta0.95"),
              "centered": engine_specs(engines, "centered", c_settings, seed_list, "centered")}
    if long_settings:
        groups["long"] = engine_specs(engines, "centered", long_settings, seed_list, f"centered-draws{long_draws}")
    specs = [s for g in groups.values() for s in g]
    run_dir = outdir / "runs"
    options = options or RunOptions()
    progress = Progress("calibrate")
    executor = make_executor(options, on_event=lambda e: progress.say(f"  {e.get('message')}"))
    where = executor.describe()
    try:
        progress.say(plan_line("calibrate", specs, run_dir, executor,
                               f"then {reps} exact-iid replications in blocks of {IID_BLOCK}"))
        with ResultsStore.open(run_dir, resume=True, what="calibrate runs") as store:
            if not options.resume:
                store.clear()
            records = {r["key"]: r for r in run_matrix(specs, store, executor, progress=progress,
                                                       timeout_s=executor_timeout(options))}
        t_iid = time.perf_counter()
        iid, rows = iid_false_alarms(data, prior, reps, seed, mapper=executor.map_plain)
        progress.say(f"calibrate: {reps} exact-iid replications in {time.perf_counter() - t_iid:.0f} s")
    finally:
        executor.close()
    nc, nc_rows = engine_rates(groups["noncentered"], records, run_dir)
    c, c_rows = engine_rates(groups["centered"], records, run_dir)
    long = None
    if long_settings:
        long_rates, _ = engine_rates(groups["long"], records, run_dir)
        long = {"settings": long_settings.to_dict(), "seeds": seed_list, "engines": long_rates}
    result = {
        "alpha": DEFAULT_ALPHA,
        "data": data.name,
        "prior": prior.to_dict(),
        "iid": {"reps": reps, "chains": 4, "draws": 1000, "seed": seed, **iid},
        "noncentered_false_alarms": {"settings": nc_settings.to_dict(), "seeds": seed_list, "engines": nc},
        "centered_power": {"settings": c_settings.to_dict(), "seeds": seed_list, "engines": c},
        "centered_power_long": long,
        "goals": {"iid_false_alarm": "<= 0.01", "noncentered_false_alarm": "<= 0.05", "centered_power": ">= 0.80"},
        "environment": note_revision_drift(env),
        "executor": where,
        "wall_s": time.perf_counter() - t0,
    }
    all_rows = rows + nc_rows + c_rows
    result["centered_power_projection"] = project_power(c_rows, _threshold(data, prior))
    write_json(outdir / "calibration.json", result)
    buf = io.StringIO()
    if all_rows:
        w = csv.DictWriter(buf, fieldnames=list(all_rows[0]))
        w.writeheader()
        w.writerows(all_rows)
    write_text(outdir / "zscores.csv", buf.getvalue())
    _figure(all_rows, outdir / "zscores.png")
    write_text(outdir / "CALIBRATION.md", render_markdown(result))
    return result


def _threshold(data: SchoolsData, prior: Prior, alpha: float = DEFAULT_ALPHA) -> float:
    n_quantities = 1 + data.J + (0 if prior.tau_fixed else 2)
    return bonferroni_threshold(alpha, n_quantities * len(FUNCTIONAL_PROBS) + (0 if prior.tau_fixed else 1))


def _fmt_rate(r: dict) -> str:
    if "error" in r:
        return f"— ({r['error'][:60]}…)"
    if not r.get("n"):
        return "— (no run finished)"
    lo, hi = r["ci95"]
    return f"{r['flagged']}/{r['n']} = {r['rate']:.3f} (95% CI {lo:.3f}–{hi:.3f})"


def _top(which: dict, k: int = 4) -> str:
    return ", ".join(f"{name} ×{n}" for name, n in list(which.items())[:k]) or "—"


def render_markdown(r: dict) -> str:
    lines = [
        "# Calibration of the reference check",
        "",
        "Written by `nox -s calibrate` (benchmarks/calibrate.py); do not edit by hand.",
        "",
        f"Data `{r['data']}`, prior `{r['prior']['text']}`, family-wise alpha = {r['alpha']}.",
        "",
        "| measurement | goal | flagged / runs (95 % exact CI) | functionals that flagged most |",
        "|---|---|---|---|",
        f"| false alarms, exact iid draws (4 × 1000) | ≤ 1 % | {_fmt_rate(r['iid'])} | {_top(r['iid']['which'])} |",
    ]
    for name, e in r["noncentered_false_alarms"]["engines"].items():
        lines.append(f"| false alarms, {name} non-centred, target_accept 0.95 | ≤ 5 % | {_fmt_rate(e)} | "
                     f"{_top(e.get('which', {}))} |")
    for name, e in r["centered_power"]["engines"].items():
        lines.append(f"| power, {name} centred, default settings | ≥ 80 % | {_fmt_rate(e)} | "
                     f"{_top(e.get('which', {}))} |")
    long = r.get("centered_power_long")
    if long:
        d = long["settings"]
        for name, e in long["engines"].items():
            lines.append(f"| power, {name} centred, {d['chains']} × {d['draws']} draws (measured; not the goal's "
                         f"setting) | — | {_fmt_rate(e)} | {_top(e.get('which', {}))} |")
    zc = r["iid"].get("z_calibration")
    if zc:
        lines += ["", f"**Are the iid z-scores N(0, 1)?** Each functional's z over all {r['iid']['reps']} "
                  f"replications of exact draws (every quantity pooled). Bonferroni keeps the family-wise rate "
                  f"≤ alpha when each z is N(0, 1); the columns show how close they are, and the tails "
                  f"(|z| > {zc['tail_z']:g}: the normal gives {100 * zc['normal_tail']:.2f} %; "
                  f"|z| > {zc['threshold']:.2f}, the threshold: {100 * zc['normal_beyond_threshold']:.4f} %).", "",
                  "| functional | z values | mean | sd | beyond "
                  f"{zc['tail_z']:g} | beyond {zc['threshold']:.2f} |", "|---|---|---|---|---|---|"]
        for f, v in zc["functionals"].items():
            lines.append(f"| {f} | {v['n']} | {v['mean']:+.3f} | {v['sd']:.3f} | "
                         f"{v['beyond_tail_z']} ({100 * v['beyond_tail_z'] / v['n']:.2f} %) | "
                         f"{v['beyond_threshold']} ({100 * v['beyond_threshold'] / v['n']:.4f} %) |")
        if "ks" in zc:
            k = zc["ks"]
            lines += ["", f"KS test for tau: p < 0.05 in {100 * k['p_below_0.05']:.2f} % and p < 0.01 in "
                      f"{100 * k['p_below_0.01']:.2f} % of {k['n']} replications; the p-values' own uniformity "
                      f"test gives p = {k['uniformity_p']:.3g}."]
    proj = r.get("centered_power_projection")
    if proj:
        engines = sorted({e for per in proj.values() for e in per})
        lines += ["", "**Power with longer runs (projection).** Runs flagged if each centred run kept its bias "
                  "and its MCSE shrank as 1/√k with k times the draws (z-tests only; k = 1 reproduces the "
                  "measurement above without the KS test):", "",
                  "| draws × k | " + " | ".join(engines) + " |", "|---|" + "---|" * len(engines)]
        for k, per in proj.items():
            cells = [f"{per[e][0]}/{per[e][1]}" if e in per else "—" for e in engines]
            lines.append(f"| {k} × (4 × 1000) | " + " | ".join(cells) + " |")
        lines += ["", "The centred fits are flagged by the small-tau functionals (tau q0.05, log_tau mean, "
                  "tau q0.25, as the table shows): the funnel's neck is under-sampled. At 4 × 1000 draws the "
                  "MCSE of those functionals is too large for every biased run to stand out; the projection "
                  "says where the goal would be reached, as long as longer chains do not themselves shrink "
                  "the bias." + (" The measured rows at "
                  f"{long['settings']['chains']} × {long['settings']['draws']} draws above test that assumption."
                  if long else "")]
    lines += ["", "![z-scores](zscores.png)", "", "Environment: see `calibration.json`.", ""]
    return "\n".join(lines)


HELP = "measure the reference check's false-alarm rate and power"


def configure(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--out", type=Path, default=RUNS / "calibration", help="output folder")
    ap.add_argument("--reps", type=int, default=DEFAULT_REPS)
    ap.add_argument("--long-draws", type=int, default=DEFAULT_LONG_DRAWS,
                    help="draws per chain of the measured long-run centred power (0 skips it)")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--engines")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite CALIBRATION.md from calibration.json and zscores.csv without running")
    add_run_options(ap)


def main(a: argparse.Namespace) -> int:
    for name in ("reps", "seeds", "long_draws"):
        v = getattr(a, name)
        if v < 0 or (name == "seeds" and v < 1):
            raise UsageError(f"--{name.replace('_', '-')} = {v}: must be {'>= 1' if name == 'seeds' else '>= 0'}")
    if a.render_only:
        try:
            res = json.loads((a.out / "calibration.json").read_text())
        except FileNotFoundError:
            raise UsageError(f"--out = {str(a.out)!r}: no calibration.json to render") from None
        write_text(a.out / "CALIBRATION.md", render_markdown(res))
        print(render_markdown(res))
        return 0
    engines = a.engines.split(",") if a.engines else None
    for e in engines or []:
        if e not in ENGINES:
            raise UsageError(f"--engines: engine = {e!r} is unknown; engines: {', '.join(ENGINES)}")
    res = run_calibration(a.out, reps=a.reps, seeds=a.seeds, long_draws=a.long_draws, engines=engines, options=a)
    print(render_markdown(res))
    return 0
