"""Choose the reference check's statistic by measurement (issue 20), offline on saved draws.

``python -m benchmarks.reporting.check_selection features RUN_DIR ...`` reduces each saved fit of a
calibration run folder (``calibrate --save-draws``) to what every candidate statistic needs: the
exact probability integral transform u = F_exact(tau) of its tau draws, (chain, draw), and the
z-scores and KS p-value of the Bonferroni check it was run with (``runs/checks/``). The same is
done for exact iid replications. ``select`` then measures each candidate's false alarms on iid
replications and power on the centred fits of the *selection* seeds (1-100); ``heldout`` applies
the chosen one to seeds 101-300. Nothing here runs an engine: the fits come from the run path.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import xarray as xr
from arviz_stats.base import array_stats
from scipy import stats

from benchmarks.jobs.calibrate import z_calibration
from benchmarks.reporting.calibration_report import render_markdown
from models import PRESETS, RUBIN
from models.files import write_json, write_text
from reference import posterior
from reference.check import (
    FUNCTIONAL_PROBS,
    TAIL_ALPHA_SHARE,
    TAIL_PROBS,
    bonferroni_threshold,
    check,
    iid_as_draws,
    tail_functional,
    theta_label,
)

#: features cache file in each run folder
CACHE = "check_features.npz"


def _ref():
    return posterior(RUBIN, PRESETS["default"])


def old_vector(v) -> tuple[np.ndarray, float, list[str]]:
    """(z of every functional, KS p, names) of a Verdict or its JSON."""
    if isinstance(v, dict):
        checks, ks = v["checks"], v.get("ks")
        z = np.array([np.nan if c["z"] is None else c["z"] for c in checks], float)
        names = [f"{c['quantity']} {c['functional']}" for c in checks]
        p = np.nan if not ks or ks.get("p_value") is None else ks["p_value"]
    else:
        z = np.array([c.z for c in v.checks], float)
        names = [f"{c.quantity} {c.functional}" for c in v.checks]
        p = v.ks.p_value if v.ks else np.nan
    return z, float(p), names


def run_features(run_dir: Path, ref=None) -> dict:
    """Features of every saved fit of ``run_dir`` (cached in run_dir/CACHE; new fits are added)."""
    run_dir = Path(run_dir)
    ref = ref or _ref()
    cache = run_dir / CACHE
    have: dict[str, dict] = {}
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            arrays = {f: z[f] for f in z.files}  # each read once (an NpzFile reads a field on every access)
        for i, k in enumerate(arrays["key"]):
            have[str(k)] = {f: v[i] for f, v in arrays.items()}
    names = None
    for rec_path in sorted((run_dir / "records").glob("*.json")):
        key = rec_path.stem
        if key in have:
            continue
        rec = json.loads(rec_path.read_text())
        draws = run_dir / "draws" / f"{key}.nc"
        checks = run_dir / "checks" / f"{key}.json"
        if rec.get("error") or not draws.is_file() or not checks.is_file():
            continue
        with xr.open_datatree(draws) as tree:
            tau = np.asarray(tree["posterior"]["tau"].values, float)
            div = tree["sample_stats"]["diverging"].values.sum() if "sample_stats" in tree.children and \
                "diverging" in tree["sample_stats"].data_vars else -1
        zv, ksp, names = old_vector(json.loads(checks.read_text()))
        have[key] = {"key": key, "engine": rec["engine"], "param": rec["parameterization"],
                     "seed": int(rec["seed"]), "u": ref.cdf("tau", tau).astype(np.float64),
                     "z": zv, "ks_p": ksp, "divergences": int(div)}
    if not have:
        return {}
    keys = sorted(have)
    out = {f: np.stack([np.asarray(have[k][f]) for k in keys]) for f in have[keys[0]]}
    np.savez(cache, **out)
    return out


def iid_features(reps: int, seed: int, path: Path, chains: int = 4, draws: int = 1000) -> dict:
    """Features of ``reps`` exact iid replications (replication r: seed + r), cached at ``path`` (saved
    every 250 replications; a later call goes on from there)."""
    path = Path(path)
    cols: dict[str, list] = {"u": [], "z": [], "ks_p": [], "seed": []}
    if path.exists():
        z = np.load(path, allow_pickle=False)
        cols = {f: list(z[f]) for f in cols}
    ref = _ref()

    def save():
        out = {f: np.asarray(v) for f, v in cols.items()}
        n = len(cols["seed"])
        out.update(engine=np.array(["iid"] * n), param=np.array(["iid"] * n))
        np.savez(path, **out)
        return out

    for r in range(len(cols["seed"]), reps):
        s = ref.draws(chains * draws, seed=seed + r)
        v = check(iid_as_draws(s, chains, RUBIN.school), ref)
        zv, ksp, _ = old_vector(v)
        cols["u"].append(ref.cdf("tau", s["tau"].reshape(chains, draws)))
        cols["z"].append(zv)
        cols["ks_p"].append(ksp)
        cols["seed"].append(seed + r)
        if r % 250 == 249:
            save()
            print(f"iid {r + 1}/{reps}", file=sys.stderr, flush=True)
    out = save()
    return {f: v[:reps] for f, v in out.items()}


# --- candidate statistics on u = F_exact(tau), (chain, draw) ------------------------------------

def ess_of(u: np.ndarray, kind: str) -> float:
    if kind == "bulk":
        return float(array_stats.ess(u, method="bulk"))
    if kind == "tail":
        return float(array_stats.ess(u, method="tail", prob=(0.05, 0.95)))
    if kind == "min":
        return min(ess_of(u, "bulk"), ess_of(u, "tail"))
    raise ValueError(kind)


def edf_stats(u: np.ndarray) -> dict:
    """Anderson-Darling, Cramer-von Mises and a lower-half AD on the pooled u, per draw (divide by n:
    the statistic of n draws is n times these), so an ESS can stand in for n."""
    x = np.clip(np.sort(u.ravel()), 1e-12, 1 - 1e-12)
    n = x.size
    i = np.arange(1, n + 1)
    ad = -1.0 - np.mean((2 * i - 1) / n * (np.log(x) + np.log1p(-x[::-1])))
    cvm = np.mean((x - (2 * i - 1) / (2 * n)) ** 2) + 1 / (12 * n * n)
    # lower-tail weighted: integral over u < 1/2 of (F_n - u)^2 / (u (1 - u)) du, on a fine grid
    g = np.linspace(0, 0.5, 2001)[1:]
    Fn = np.searchsorted(x, g, side="right") / n
    w = (Fn - g) ** 2 / (g * (1 - g))
    ad_low = float(np.sum(0.5 * (w[1:] + w[:-1]) * np.diff(g)))
    return {"ad": float(ad), "cvm": float(cvm), "ad_low": ad_low}


# --- candidates: per-fit statistics, then a verdict at a family-wise alpha ---------------------

ESS_KINDS = ("own", "quantile", "bulk", "tail")
SEL_PROBS = (0.01, 0.025, 0.05, 0.1)


def tail_z_kinds(u: np.ndarray, probs=SEL_PROBS) -> dict[str, np.ndarray]:
    """z of P(tau < q_p) = p for each p, with the indicator's MCSE from four ESS: the indicator's own
    (n when it is constant: no draw below q_p), arviz's quantile ESS at p (the indicator at the
    draws' own p-quantile), tau's bulk ESS, tau's tail ESS."""
    out = {k: [] for k in ESS_KINDS}
    eb, et = ess_of(u, "bulk"), ess_of(u, "tail")
    for p in probs:
        ind = (u < p).astype(float)
        own = float(array_stats.ess(ind, method="mean"))
        if not math.isfinite(own) or own <= 0:
            own = float(ind.size)
        qe = float(array_stats.ess(u, method="quantile", prob=p))
        d = ind.mean() - p
        v = p * (1 - p)
        for k, e in (("own", own), ("quantile", qe), ("bulk", eb), ("tail", et)):
            out[k].append(d / math.sqrt(v / e))
    return {k: np.array(v) for k, v in out.items()}


def stats_table(feat: dict) -> dict:
    n = len(feat["u"])
    tab: dict[str, np.ndarray] = {f"tz_{k}": np.zeros((n, len(SEL_PROBS))) for k in ESS_KINDS}
    for f in ("ess_bulk", "ess_tail", "ad", "cvm", "ad_low"):
        tab[f] = np.zeros(n)
    for i in range(n):
        u = feat["u"][i]
        for k, v in tail_z_kinds(u).items():
            tab[f"tz_{k}"][i] = v
        tab["ess_bulk"][i], tab["ess_tail"][i] = ess_of(u, "bulk"), ess_of(u, "tail")
        e = edf_stats(u)
        tab["ad"][i], tab["cvm"][i], tab["ad_low"][i] = e["ad"], e["cvm"], e["ad_low"]
    return tab


def old_fails(feat: dict, alpha: float, cols=None) -> np.ndarray:
    """The Bonferroni check at family-wise ``alpha`` over its 66 z's + KS (or the columns ``cols``)."""
    z = feat["z"] if cols is None else feat["z"][:, cols]
    m = z.shape[1] + 1
    thr = stats.norm.isf(alpha / (2 * m))
    bad = ~(np.abs(z) <= thr)
    return bad.any(axis=1) | ~(feat["ks_p"] >= alpha / m)


def simes_fails(feat: dict, alpha: float) -> np.ndarray:
    p = np.concatenate([2 * stats.norm.sf(np.abs(feat["z"])), feat["ks_p"][:, None]], axis=1)
    p = np.where(np.isfinite(p), p, 0.0)
    m = p.shape[1]
    ps = np.sort(p, axis=1)
    return (ps <= alpha * np.arange(1, m + 1) / m).any(axis=1)


def tail_fails(tab: dict, kind: str, alpha: float, sided: int = 2, idx=None) -> np.ndarray:
    """The lower-tail family (SEL_PROBS, or the columns ``idx``) at ``alpha``, Bonferroni."""
    z = tab[f"tz_{kind}"] if idx is None else tab[f"tz_{kind}"][:, idx]
    m = z.shape[1]
    if sided == 2:
        return ~(np.abs(z) <= stats.norm.isf(alpha / (2 * m))).all(axis=1)
    return ~(z >= -stats.norm.isf(alpha / m)).all(axis=1)


#: the chosen statistic's share of alpha and probabilities (reference.check: TAIL_ALPHA_SHARE, TAIL_PROBS)
CHOSEN = "functionals + KS at 0.8 %, lower tail P(tau<q_p), p = 0.01, 0.025, 0.05, 0.1, own ESS, two-sided, at 0.2 %"


def _with_tail(f, t, *, a1: float, a2: float, kind: str, sided: int = 2) -> np.ndarray:
    return old_fails(f, a1) | tail_fails(t, kind, a2, sided)


def _with_edf(f, t, *, a1: float, stat: str, ess: str, thr: float) -> np.ndarray:
    return old_fails(f, a1) | (t[stat] * t[ess] > thr)


def candidates(iid_tab: dict, alpha: float = 0.01) -> dict:
    """name -> verdict(feat, tab): fails per fit. AD/CvM thresholds are the iid selection replications'
    1 - alpha/2 quantiles (chosen on the selection data)."""
    c = {"Bonferroni over 66 functionals + KS (before)": lambda f, t: old_fails(f, alpha),
         "Simes over the same 67 p-values": lambda f, t: simes_fails(f, alpha),
         "tau/log tau functionals + KS at 0.5 %, the rest at 0.5 %":
             lambda f, t: old_fails(f, alpha / 2, cols=TAU_COLS) | old_fails(f, alpha / 2, cols=REST_COLS)}
    for kind in ESS_KINDS:
        for sided in (2, 1):
            c[f"Bonferroni at 0.5 % + tail P(tau<q_p) [{kind} ESS, {sided}-sided] at 0.5 %"] = partial(
                _with_tail, a1=alpha / 2, a2=alpha / 2, kind=kind, sided=sided)
    for stat in ("ad", "cvm", "ad_low"):
        for ek in ("ess_bulk", "ess_tail"):
            thr = float(np.quantile(iid_tab[stat] * iid_tab[ek], 1 - alpha / 2))
            c[f"Bonferroni at 0.5 % + {stat.upper()} x {ek} > {thr:.2f} at 0.5 %"] = partial(
                _with_edf, a1=alpha / 2, stat=stat, ess=ek, thr=thr)
    for share in (0.1, 0.2):
        name = (f"Bonferroni at {100 * alpha * (1 - share):g} % + tail P(tau<q_p) [own ESS, 2-sided] at "
                f"{100 * alpha * share:g} %")
        c[name] = partial(_with_tail, a1=alpha * (1 - share), a2=alpha * share, kind="own")
    return c


#: column indices of the 66 functionals (11 quantities x 6: mu, tau, log_tau, then theta) in the checks
TAU_COLS = list(range(6, 18))
REST_COLS = list(range(0, 6)) + list(range(18, 66))


def rate(k: int, n: int) -> dict:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact") if n else None
    return {"flagged": int(k), "n": int(n), "rate": k / n if n else None, "ci95": [ci.low, ci.high] if ci else None}


def evaluate(fits: dict, fits_tab: dict, iid: dict, iid_tab: dict, cands: dict) -> list[dict]:
    out = []
    engines = sorted(set(fits["engine"]))
    for name, fn in cands.items():
        fi, ff = fn(iid, iid_tab), fn(fits, fits_tab)
        row = {"name": name, "iid": rate(fi.sum(), len(fi)), "power": {}, "false_alarms": {}}
        for e in engines:
            for param, key in (("centered", "power"), ("noncentered", "false_alarms")):
                m = (fits["engine"] == e) & (fits["param"] == param)
                if m.any():
                    row[key][e] = rate(ff[m].sum(), m.sum())
        out.append(row)
    return out


def select(select_dir: Path, iid_path: Path, out: Path) -> dict:
    """Every candidate on the selection fits (seeds 1-100) and selection iid replications."""
    fits, iid = run_features(select_dir), dict(np.load(iid_path))
    ft, it = stats_table(fits), stats_table(iid)
    rows = evaluate(fits, ft, iid, it, candidates(it))
    for r in rows:
        r["chosen"] = r["name"].startswith("Bonferroni at 0.8 % + tail")
    seeds = sorted(set(int(s) for s in fits["seed"]))
    res = {"text": (f"Centred fits of seeds {seeds[0]}–{seeds[-1]} ({len(fits['seed'])} fits) and {len(iid['seed'])} "
                    f"exact-iid replications (seeds {int(iid['seed'][0])}…), all at 4 × 1000. Only the indicator "
                    "of the exact lower tail with its own MCSE raised the power; the ESS-adjusted EDF tests, "
                    "Simes and the re-weighted Bonferroni did not (their MCSE, or their n, is the centred fits' "
                    "small ESS). Its share of alpha: 0.1 % already caught every selection fit; 0.2 % leaves a "
                    "margin."),
           "engines": sorted(set(fits["engine"])), "candidates": rows}
    Path(out).write_text(json.dumps(res, indent=1))
    return res


#: the held-out exact-iid replications: the calibrate job's own seeds (its default seed + r, r < 10^4)
IID_SEED, IID_REPS = 20261124, 10_000


# --- the held-out measurement: merged into the calibrate job's calibration.json ----------------


def _names() -> list[str]:
    quantities = ["mu", "tau", "log_tau", *(theta_label(s) for s in RUBIN.school)]
    return [f"{q} {f}" for q in quantities for f in FUNCTIONAL_PROBS]


def after_iid(iid: dict, alpha: float = 0.01) -> dict:
    """The current check's verdict on exact-iid replications, from their features (the functionals'
    z-scores and KS p-value as check() computed them, the tail family from u = F_exact(tau): the
    indicator I(u < p) is I(tau < q_p)). Same numbers as check() (``verify_iid`` tests it)."""
    names = _names()
    m = len(names) + 1
    a1, a2 = alpha * (1 - TAIL_ALPHA_SHARE), alpha * TAIL_ALPHA_SHARE
    thr, tthr = bonferroni_threshold(a1, m), bonferroni_threshold(a2, len(TAIL_PROBS))
    tz = np.stack([tail_z_kinds(u, TAIL_PROBS)["own"] for u in iid["u"]])
    z = iid["z"]
    which: Counter = Counter()
    flagged = 0
    for i in range(len(z)):
        failed = [names[j] for j in np.flatnonzero(~(np.abs(z[i]) <= thr))]
        if not iid["ks_p"][i] >= a1 / m:
            failed.append("tau ks")
        failed += [f"tau {tail_functional(p)}" for p, v in zip(TAIL_PROBS, tz[i]) if not abs(v) <= tthr]
        flagged += bool(failed)
        which.update(failed)
    functionals = [n.split(" ")[1] for n in names] + [tail_functional(p) for p in TAIL_PROBS]
    thresholds = [thr] * len(names) + [tthr] * len(TAIL_PROBS)
    zc = z_calibration(np.concatenate([z, tz], axis=1), functionals, iid["ks_p"], thresholds)
    return {**rate(flagged, len(z)), "which": dict(which.most_common()), "z_calibration": zc}


def verify_iid(iid: dict, reps: int = 20) -> int:
    """Replications where the feature-based verdict differs from check() on the same draws (0 expected)."""
    ref = _ref()
    a = after_iid({k: v[:reps] for k, v in iid.items()})
    mism = 0
    per = []
    for r in range(reps):
        s = ref.draws(4000, seed=int(iid["seed"][r]))
        v = check(iid_as_draws(s, 4, RUBIN.school), ref)
        per.append(not v.passed)
        tz = tail_z_kinds(iid["u"][r], tuple(c.exact for c in v.tail))["own"]
        mism += not np.allclose(tz, [c.z for c in v.tail], rtol=1e-9, atol=1e-9)
    mism += abs(sum(per) - a["flagged"])
    return mism


def load_iid(paths: list[Path], first: int | None = None, reps: int | None = None) -> dict:
    """Replications from several caches (computed in parallel), each seed once, in seed order; with
    ``first``/``reps``, only seeds first .. first + reps - 1 (read part by part: the caches are large)."""
    taken: set[int] = set()
    pieces: list[dict] = []
    for p in paths:
        with np.load(p) as z:
            seeds = z["seed"]
            keep = np.array([int(x) not in taken and (first is None or first <= x < first + (reps or 10**9))
                             for x in seeds], dtype=bool)
            taken |= {int(x) for x in seeds[keep]}
            pieces.append({k: z[k][keep] for k in z.files})
    cat = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    order = np.argsort(cat["seed"])
    return {k: v[order] for k, v in cat.items()}


def finalize(cal_dir: Path, iid_paths: list[Path], selection: Path, alpha: float = 0.01) -> dict:
    """Merge into ``cal_dir``/calibration.json (written by ``calibrate --recheck``): the exact-iid false
    alarms of the current check from the held-out replications' features, the check before issue 20 on
    the same fits and replications, and the selection; then rewrite CALIBRATION.md."""
    cal_dir = Path(cal_dir)
    res = json.loads((cal_dir / "calibration.json").read_text())
    iid = load_iid(iid_paths, IID_SEED, IID_REPS)
    seeds = iid["seed"]
    res["iid"] = {"reps": int(len(seeds)), "chains": 4, "draws": 1000, "seed": int(seeds.min()),
                  "source": f"features of {len(seeds)} exact-iid replications, seeds {int(seeds.min())}–"
                            f"{int(seeds.max())} (benchmarks/reporting/check_selection.py)", **after_iid(iid, alpha)}
    fits = run_features(cal_dir / "runs")
    before: dict = {"text": "a Bonferroni at family-wise 1 % over the 66 functionals and the KS test for tau, "
                            "no lower-tail family (issue 4's check).",
                    "iid": rate(int(old_fails(iid, alpha).sum()), len(seeds)), "centered": {}, "noncentered": {}}
    fails = old_fails(fits, alpha)
    for e in sorted(set(fits["engine"])):
        for param in ("centered", "noncentered"):
            m = (fits["engine"] == e) & (fits["param"] == param)
            if m.any():
                before[param][e] = rate(int(fails[m].sum()), int(m.sum()))
    res["before"] = before
    res["selection"] = json.loads(Path(selection).read_text())
    write_json(cal_dir / "calibration.json", res)
    write_text(cal_dir / "CALIBRATION.md", render_markdown(res))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.reporting.check_selection")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("features")
    f.add_argument("run_dirs", nargs="+", type=Path)
    i = sub.add_parser("iid")
    i.add_argument("--reps", type=int, required=True)
    i.add_argument("--seed", type=int, required=True)
    i.add_argument("--out", type=Path, required=True)
    sl = sub.add_parser("select")
    sl.add_argument("select_dir", type=Path)
    sl.add_argument("--iid", type=Path, required=True)
    sl.add_argument("--out", type=Path, required=True)
    fz = sub.add_parser("finalize")
    fz.add_argument("cal_dir", type=Path)
    fz.add_argument("--iid", type=Path, nargs="+", required=True)
    fz.add_argument("--selection", type=Path, required=True)
    vf = sub.add_parser("verify")
    vf.add_argument("--iid", type=Path, nargs="+", required=True)
    vf.add_argument("--reps", type=int, default=20)
    a = ap.parse_args(argv)
    if a.cmd == "features":
        for d in a.run_dirs:
            out = run_features(d)
            print(d, len(out.get("key", [])), "fits")
    elif a.cmd == "select":
        res = select(a.select_dir, a.iid, a.out)
        for r in res["candidates"]:
            print(f"{r['name'][:90]:90s} iid {r['iid']['flagged']}/{r['iid']['n']} " + " ".join(
                f"{e[:8]} {v['flagged']}/{v['n']}" for e, v in r["power"].items()))
    elif a.cmd == "finalize":
        res = finalize(a.cal_dir, a.iid, a.selection)
        print(json.dumps({k: res[k] for k in ("iid", "before")}, indent=1, default=str)[:3000])
    elif a.cmd == "verify":
        print("mismatches:", verify_iid(load_iid(a.iid), a.reps))
    elif a.cmd == "iid":
        iid_features(a.reps, a.seed, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
