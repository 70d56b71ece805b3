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
from reference.check import (
    DEFAULT_ALPHA,
    FUNCTIONAL_PROBS,
    MIN_DRAWS_PER_CHAIN,
    TAIL_ALPHA_SHARE,
    bonferroni_threshold,
    check,
    iid_as_draws,
    load_draws,
)

from ..engines import default_engines
from ..engines.base import Settings
from ..reporting.calibration_report import CHECK_TEXT, render_markdown
from ..runpath import Progress, ResultsStore, run_matrix
from ..runpath.environment import environment, note_revision_drift
from ..runpath.spec import RunSpec
from ..runpath.store import read_checks
from .common import RUNS, RunOptions, add_run_options, executor_timeout, make_executor, plan_line
from .validate import MAX_SEEDS, check_count, check_output_folder, engine_names


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
                 "functionals": [], "thresholds": []}
    for r in range(start, start + n):
        sample = ref.draws(chains * draws, seed=seed + r)
        v = check(iid_as_draws(sample, chains, data.school), ref, alpha=alpha)
        out["flagged"] += not v.passed
        out["which"].update(v.failed)
        out["z"].append([c.z for c in (*v.checks, *v.tail)])
        out["ks_p"].append(v.ks.p_value if v.ks else np.nan)
        out["threshold"], out["functionals"] = v.threshold, [c.functional for c in (*v.checks, *v.tail)]
        out["thresholds"] = [v.threshold] * len(v.checks) + [v.tail_threshold] * len(v.tail)
        if r < FIGURE_REPS:
            out["rows"] += [{"source": "iid", "rep": r, **c._asdict()} for c in (*v.checks, *v.tail)]
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
    thresholds, functionals = [], []
    for b in blocks:
        flagged += b["flagged"]
        which.update(b["which"])
        rows += b["rows"]
        zs += b["z"]
        ks_p += b["ks_p"]
        thresholds, functionals = b["thresholds"], b["functionals"]
    z_cal = z_calibration(np.array(zs), functionals, np.array(ks_p), thresholds) if reps else {}
    return {**rate(flagged, reps), "which": dict(which.most_common()), "z_calibration": z_cal}, rows


#: |z| beyond which the per-test tail is compared with the normal's (2 P(Z > 3) = 0.27 %): far enough
#: out to show fat tails, close enough in that 10^4 replications x 11 quantities see ~300 exceedances.
TAIL_Z = 3.0


def z_calibration(z: np.ndarray, functionals: list[str], ks_p: np.ndarray, thresholds: list[float] | float) -> dict:
    """How exact iid draws' z-scores compare with N(0, 1), per functional: their sd, the fraction
    beyond |z| = 3 and beyond its family's Bonferroni threshold (``thresholds``: one per column, or
    one for all), each with the normal's value. This is the evidence behind the family-wise rate:
    if every z is N(0, 1), the weighted Bonferroni guarantees <= alpha."""
    thr = np.broadcast_to(np.asarray(thresholds, dtype=float), (len(functionals),))
    out: dict = {"tail_z": TAIL_Z, "threshold": float(thr[0]),
                 "normal_tail": float(2 * stats.norm.sf(TAIL_Z)),
                 "normal_beyond_threshold": float(2 * stats.norm.sf(thr[0])), "functionals": {}}
    for f in dict.fromkeys(functionals):
        idx = [i for i, g in enumerate(functionals) if g == f]
        cols, t = z[:, idx], float(thr[idx[0]])
        out["functionals"][f] = {
            "n": int(cols.size),
            "mean": float(cols.mean()),
            "sd": float(cols.std(ddof=1)),
            "beyond_tail_z": int((np.abs(cols) > TAIL_Z).sum()),
            "threshold": t,
            "normal_beyond_threshold": float(2 * stats.norm.sf(t)),
            "beyond_threshold": int((np.abs(cols) > t).sum()),
        }
    finite = ks_p[np.isfinite(ks_p)]
    if finite.size:
        out["ks"] = {"n": int(finite.size), "p_below_0.05": float((finite < 0.05).mean()),
                     "p_below_0.01": float((finite < 0.01).mean()),
                     "uniformity_p": float(stats.kstest(finite, "uniform").pvalue)}
    return out


def engine_specs(engines: list[str], param: str, settings: Settings, seeds: list[int], section: str, *,
                 save_draws: bool = False) -> list[RunSpec]:
    """Seed-major (every engine's seed 1, then every engine's seed 2, ...): a run cut short has
    about as many fits of each engine."""
    return [RunSpec(engine=e, parameterization=param, settings=dataclasses.replace(settings, seed=seed),
                    section=section, keep_checks=True, save_draws=save_draws) for seed in seeds for e in engines]


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """``N`` (seeds 1..N), ``A-B`` (seeds A..B, inclusive) or ``none`` (no seeds): the seed ranges that keep
    the statistic's selection (seeds 1-100) apart from its held-out measurement (101-300)."""
    t = str(text).strip()
    if t.lower() == "none":
        return []
    try:
        if "-" in t:
            a, b = (int(x) for x in t.split("-", 1))
        else:
            a, b = 1, int(t)
    except ValueError:
        raise UsageError(f"{option} = {text!r}: expected N, A-B or none") from None
    if a < 1 or b < a:
        raise UsageError(f"{option} = {text!r}: seeds must be >= 1 and A <= B")
    if b - a + 1 > MAX_SEEDS:
        raise UsageError(f"{option} = {text!r}: {b - a + 1} seeds; at most {MAX_SEEDS}")
    return list(range(a, b + 1))


def engine_rates(specs: list[RunSpec], records: dict[str, dict], run_dir: Path,
                 recheck: bool = False) -> tuple[dict, list[dict]]:
    """Per engine: how many of its runs the check flagged (and which functionals), from the run path's
    records; a run that failed is listed under ``errors``, an unavailable engine says so. ``recheck``
    re-applies the current check to each run's saved draws (``runs/draws/``; a run without them keeps
    its record's verdict): a changed check is measured on the same fits without sampling again."""
    out, rows = {}, []
    ref = posterior(RUBIN, PRESETS["default"]) if recheck else None
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
            saved = Path(run_dir) / "draws" / f"{r['key']}.nc"
            if recheck and saved.is_file():
                v = check(load_draws(saved), ref)
                flagged += not v.passed
                which.update(v.failed)
                rows += [{"source": f"{name} {r['parameterization']}", "rep": r["seed"], **c._asdict()}
                         for c in (*v.checks, *v.tail)]
                continue
            flagged += not r["check_passed"]
            which.update(f for f in (r.get("check_failed") or "").split(";") if f)
            checks = read_checks(run_dir, r["key"])
            if checks:
                rows += [{"source": f"{name} {r['parameterization']}", "rep": r["seed"], **c}
                         for c in (*checks["checks"], *checks.get("tail", []))]
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
        if src.endswith(" centered") and not str(r["functional"]).startswith("P(<"):  # the functionals' family
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


def run_calibration(outdir: Path, *, reps: int = DEFAULT_REPS, seeds: int | list[int] = 20,
                    engines: list[str] | None = None, seed: int = 20261124, long_draws: int = DEFAULT_LONG_DRAWS,
                    noncentered_seeds: list[int] | None = None, save_draws: bool = False,
                    recheck: bool = False, options: RunOptions | None = None) -> dict:
    """``seeds``: N (seeds 1..N) or a list; ``noncentered_seeds``: the non-centred runs' seeds (default: the
    same); ``save_draws`` keeps every run's draws (``runs/draws/``) so a statistic can be re-applied offline;
    ``recheck`` re-applies the current check to the saved draws of runs already in the folder (--resume)."""
    data, prior = RUBIN, PRESETS["default"]
    engines = engines or default_engines()
    seed_list = list(range(1, seeds + 1)) if isinstance(seeds, int) else list(seeds)
    nc_seeds = seed_list if noncentered_seeds is None else list(noncentered_seeds)
    outdir = Path(outdir)
    env = environment()
    t0 = time.perf_counter()
    nc_settings, c_settings = Settings(target_accept=0.95), Settings()
    long_settings = Settings(draws=long_draws) if long_draws else None
    groups = {"centered": engine_specs(engines, "centered", c_settings, seed_list, "centered", save_draws=save_draws),
              "noncentered": engine_specs(engines, "noncentered", nc_settings, nc_seeds, "noncentered-ta0.95",
                                          save_draws=save_draws)}
    if long_settings:
        groups["long"] = engine_specs(engines, "centered", long_settings, seed_list, f"centered-draws{long_draws}",
                                      save_draws=save_draws)
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
    nc, nc_rows = engine_rates(groups["noncentered"], records, run_dir, recheck=recheck)
    c, c_rows = engine_rates(groups["centered"], records, run_dir, recheck=recheck)
    long = None
    if long_settings:
        long_rates, _ = engine_rates(groups["long"], records, run_dir, recheck=recheck)
        long = {"settings": long_settings.to_dict(), "seeds": seed_list, "engines": long_rates}
    result = {
        "alpha": DEFAULT_ALPHA,
        "data": data.name,
        "prior": prior.to_dict(),
        "iid": {"reps": reps, "chains": 4, "draws": 1000, "seed": seed, **iid},
        "noncentered_false_alarms": {"settings": nc_settings.to_dict(), "seeds": nc_seeds, "engines": nc},
        "centered_power": {"settings": c_settings.to_dict(), "seeds": seed_list, "engines": c},
        "centered_power_long": long,
        "check": CHECK_TEXT,
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
    """The functionals' family threshold (its share of alpha: the rest goes to the lower tail of tau)."""
    n_quantities = 1 + data.J + (0 if prior.tau_fixed else 2)
    share = 1.0 if prior.tau_fixed else 1 - TAIL_ALPHA_SHARE
    return bonferroni_threshold(alpha * share, n_quantities * len(FUNCTIONAL_PROBS) + (0 if prior.tau_fixed else 1))


HELP = "measure the reference check's false-alarm rate and power"


def configure(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--out", type=Path, default=RUNS / "calibration", help="output folder")
    ap.add_argument("--reps", type=int, default=DEFAULT_REPS)
    ap.add_argument("--long-draws", type=int, default=DEFAULT_LONG_DRAWS,
                    help="draws per chain of the measured long-run centred power (0 skips it)")
    ap.add_argument("--seeds", default="20", help="sampler seeds: N (1..N) or A-B (held-out: 101-300)")
    ap.add_argument("--noncentered-seeds", help="the non-centred runs' seeds (N, A-B or none; default: --seeds)")
    ap.add_argument("--save-draws", action="store_true",
                    help="keep every run's draws (runs/draws/) to re-apply a check offline")
    ap.add_argument("--recheck", action="store_true",
                    help="re-apply the current check to saved draws (with --resume: the runs are not redone)")
    ap.add_argument("--engines")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite CALIBRATION.md from calibration.json and zscores.csv without running")
    add_run_options(ap)


#: --reps at most: 10^6 exact-iid replications are ~100 x the default's hours
MAX_REPS = 1_000_000
#: --long-draws at most (per chain; the long centred runs keep 4 chains of them in memory)
MAX_LONG_DRAWS = 1_000_000


def _rendered(out: Path) -> str:
    """CALIBRATION.md from ``out``/calibration.json, or a UsageError naming what is wrong with it."""
    path = Path(out) / "calibration.json"
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--out = {str(out)!r}: no calibration.json to render") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"--out = {str(out)!r}: calibration.json is unreadable or not JSON ({e})") from None
    try:
        return render_markdown(res)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise UsageError(f"--out = {str(out)!r}: calibration.json is not a calibration result "
                         f"({type(e).__name__}: {e})") from None


def main(a: argparse.Namespace) -> int:
    check_count(a.reps, "--reps", lo=0, hi=MAX_REPS)
    if a.long_draws != 0:
        check_count(a.long_draws, "--long-draws", lo=MIN_DRAWS_PER_CHAIN, hi=MAX_LONG_DRAWS,
                    why=f"0 skips the long runs; else at least the check's {MIN_DRAWS_PER_CHAIN} draws per chain")
    if a.render_only:
        text = _rendered(a.out)  # rendered in full before anything is written
        write_text(a.out / "CALIBRATION.md", text)
        print(text)
        return 0
    seeds = parse_seeds(a.seeds)
    nc_seeds = None if a.noncentered_seeds is None else parse_seeds(a.noncentered_seeds, "--noncentered-seeds")
    if not seeds and not nc_seeds:
        raise UsageError(f"--seeds = {a.seeds!r}: must name at least one seed (or give --noncentered-seeds)")
    check_output_folder(a.out, "--out")
    res = run_calibration(a.out, reps=a.reps, seeds=seeds, long_draws=a.long_draws,
                          engines=engine_names(a.engines), options=a, noncentered_seeds=nc_seeds,
                          save_draws=a.save_draws, recheck=a.recheck)
    print(render_markdown(res))
    return 0
