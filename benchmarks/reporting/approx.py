"""The approx job's outputs from its results folder: ``approx.csv``, the figures and APPROX.md.

Everything is computed from the folder (runs.json, approx.json, timing.json, environment.json, the
kept draws) and the exact reference; ``render_approx(folder)`` rewrites the same files from the same
records. Scores are defined in :mod:`reference.scores`: error of the mean in exact posterior sds, sd
ratio (approximation / exact), W1 = ∫|F_approx − F_exact| against the exact CDF, and coverage = the
exact mass inside the approximation's central 90 % interval; "truly fine" = every scalar's |mean
error| < 0.1 sd and sd ratio within [0.9, 1.1]; Pareto k̂ of log p − log q (PSIS).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import xarray as xr

from models.files import write_bytes, write_text
from reference import posterior
from reference.scores import KHAT_OK, MEAN_TOL, SD_RATIO_RANGE

from ..approx import APPROXIMATORS
from ..runpath.record import APPROX_RECORD_FIELDS
from ..runpath.spec import data_for, prior_for
from .report import git_text, load_job_folder, machines_line
from .tables import seeds_text

__all__ = ["render_approx", "approx_markdown", "console_summary", "khat_agreement", "FIGURES"]

FIGURES = {"tau_marginal.png": "tau's marginal under each method against the exact density (Rubin's data, seed 1)",
           "tau_error_vs_scale.png": "error of tau's mean (exact sds) against sigma_scale, per method",
           "khat_vs_error.png": "Pareto k̂ against the true error: does k̂ < 0.7 mean the approximation is fine?"}


def _ok(r: dict) -> bool:
    return not r.get("error")


def _median(values) -> float | None:
    v = [x for x in values if x is not None and isinstance(x, (int, float)) and math.isfinite(x)]
    return float(np.median(v)) if v else None


def _fmt(x, digits: int = 2) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if abs(x) >= 10000:
        return f"{x:.3g}"
    return f"{x:.{digits}f}"


def _cell(runs: list[dict], field: str, digits: int = 2) -> str:
    v = [r.get(field) for r in runs if _ok(r) and r.get(field) is not None]
    if not v:
        return "—"
    med = _fmt(_median(v), digits)
    return med if len(v) == 1 else f"{med} [{_fmt(min(v), digits)}, {_fmt(max(v), digits)}]"


def _count(runs: list[dict], field: str) -> str:
    done = [r for r in runs if _ok(r) and r.get(field) is not None]
    return f"{sum(bool(r[field]) for r in done)}/{len(done)}" if done else "—"


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _order(name: str) -> int:
    return list(APPROXIMATORS).index(name) if name in APPROXIMATORS else len(APPROXIMATORS)


def _by(records: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        out[tuple(r[k] for k in keys)].append(r)
    def rank(k, v):
        return _order(v) if k == "engine" else (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))

    return dict(sorted(out.items(), key=lambda kv: tuple(rank(k, v) for k, v in zip(keys, kv[0], strict=True))))


def khat_agreement(records: list[dict], prefix: str = "") -> dict[str, int]:
    """The 2 x 2 counts of "k̂ < 0.7" against "truly fine" over every finished fit with a k̂."""
    out = {"khat_ok_and_fine": 0, "khat_ok_not_fine": 0, "khat_high_and_fine": 0, "khat_high_not_fine": 0}
    for r in records:
        if not _ok(r) or r.get("khat") is None or r.get(f"{prefix}truly_fine") is None:
            continue
        low = r["khat"] < KHAT_OK
        fine = bool(r[f"{prefix}truly_fine"])
        out[("khat_ok_" if low else "khat_high_") + ("and_fine" if fine else "not_fine")] += 1
    return out


def _energy(runs: list[dict]) -> str:
    """Median energy distance of the runs, and the exact-vs-exact null (mean ± sd) of the first scored one."""
    scored = [e for r in runs if (e := ((r.get("scores") or {}).get("draws") or {}).get("energy"))]
    if not scored:
        return "—"
    null = scored[0]
    return f"{_fmt(_median(e['distance'] for e in scored), 3)} ({null['null_mean']:.3f} ± {null['null_sd']:.3f})"


def _headline(records: list[dict]) -> list[str]:
    rows = []
    for (method, param), runs in _by([r for r in records if r["section"] == "rubin"], "engine", "parameterization").items():
        done = [r for r in runs if _ok(r)]
        if not done:
            err = runs[0]
            why = str(err.get("error"))
            why = why if why.startswith(f"{err.get('error_kind')}:") else f"{err.get('error_kind')}: {why}"
            rows.append([method, param, f"0/{len(runs)}", *["—"] * 13, why[:100]])
            continue
        rows.append([method, param, f"{len(done)}/{len(runs)}", _cell(done, "tau_mean_error"), _cell(done, "tau_sd_ratio"),
                     _cell(done, "tau_w1"), _cell(done, "tau_coverage"), _energy(done), _cell(done, "energy_z", 1),
                     _cell(done, "khat"), _count(done, "truly_fine"),
                     _cell(done, "psis_tau_mean_error"), _cell(done, "psis_tau_sd_ratio"), _count(done, "psis_truly_fine"),
                     _cell(done, "fit_s"), _cell(done, "evaluations", 0), ""])
    return ["## Rubin's data, default prior", "",
            "Median [min, max] over the seeds. tau: error of its mean in exact posterior sds, sd ratio, W1 "
            "(in tau's units, against the exact CDF), exact mass inside the method's central 90 % interval. "
            "Jointly: the energy distance of the draws (mu, log tau and the thetas, each standardised by its exact "
            "posterior mean and sd) to as many exact iid draws, beside its sampling error: the same distance "
            "between two exact samples of that size, mean ± sd over 20 pairs; *energy z* = (distance − that mean) "
            "/ that sd, ~N(0, 1) for draws from the exact posterior. "
            "*fine*: every scalar's |mean error| < 0.1 sd and sd ratio in [0.9, 1.1]. PSIS: the same draws "
            "reweighted by Pareto-smoothed importance sampling.", "",
            _table(["method", "param", "fits ok", "tau mean err (sd)", "tau sd ratio", "tau W1", "tau 90 % coverage",
                    "energy distance (exact vs exact)", "energy z", "k̂", "fine", "PSIS tau mean err", "PSIS tau sd ratio", "PSIS fine", "fit s", "evaluations",
                    "note"], rows), ""]


def _khat_table(records: list[dict]) -> list[str]:
    rows = []
    for (method, spec, param), runs in _by(records, "engine", "data_spec", "parameterization").items():
        done = [r for r in runs if _ok(r) and r.get("khat") is not None]
        if not done:
            continue
        rows.append([method, spec, param, _cell(done, "khat"), _count([{**r, "low": r["khat"] < KHAT_OK} for r in done], "low"),
                     _count(done, "truly_fine"), _count(done, "psis_truly_fine"), _cell(done, "tau_mean_error"),
                     _cell(done, "tau_w1")])
    c, p = khat_agreement(records), khat_agreement(records, "psis_")
    n = sum(c.values())
    agree = c["khat_ok_and_fine"] + c["khat_high_not_fine"]
    return ["## Does k̂ tell the truth?", "",
            f"Over every finished fit with a k̂ (n = {n}): \"k̂ < {KHAT_OK}\" against \"truly fine\" (|mean error| < "
            f"{MEAN_TOL} sd and sd ratio in [{SD_RATIO_RANGE[0]}, {SD_RATIO_RANGE[1]}] for every scalar).", "",
            _table(["", "truly fine", "not fine"],
                   [[f"k̂ < {KHAT_OK}", c["khat_ok_and_fine"], c["khat_ok_not_fine"]],
                    [f"k̂ ≥ {KHAT_OK}", c["khat_high_and_fine"], c["khat_high_not_fine"]]]), "",
            f"k̂ agreed with the truth in {agree} of {n} fits" + (f" ({agree / n:.0%})" if n else "") + "; "
            f"of the {c['khat_ok_and_fine'] + c['khat_ok_not_fine']} fits where k̂ said \"fine\", "
            f"{c['khat_ok_not_fine']} were not. After PSIS reweighting, with k̂ < {KHAT_OK}: "
            f"{p['khat_ok_and_fine']} fine, {p['khat_ok_not_fine']} not.", "",
            "Per method and data point:", "",
            _table(["method", "data", "param", "k̂", "k̂ < 0.7", "fine", "PSIS fine", "tau mean err (sd)", "tau W1"], rows),
            ""]


def _scale_table(records: list[dict]) -> list[str]:
    rows = []
    for (method, J), runs in _by([r for r in records if r["parameterization"] == "noncentered"], "engine", "J").items():
        by_s = defaultdict(list)
        for r in runs:
            by_s[float(r["sigma_scale"])].append(r)
        cells = [f"{s:g}: {_fmt(_median(x.get('tau_mean_error') for x in rs if _ok(x)))}" for s, rs in sorted(by_s.items())]
        rows.append([method, J, "; ".join(cells)])
    return ["## Error of tau's mean (exact sds) against data informativeness (non-centred)", "",
            "sigma_scale S: every sigma times S (small S: informative data; large S: weak data). Median over seeds.", "",
            _table(["method", "J", "S: tau mean error"], rows), ""]


def approx_markdown(records: list[dict], meta: dict, env: dict, timing: dict) -> str:
    seeds = sorted({r["seed"] for r in records})
    wall = (timing.get("totals") or {}).get("wall_s")
    ok = [r for r in records if _ok(r)]
    out = ["# Approximate inference against the exact posterior", "",
           f"Written by `python -m benchmarks approx` (nox -s approx) from this folder's records; "
           f"{machines_line(env, records)}; {git_text(env)}; seeds {seeds_text(seeds)}; "
           f"{len(records)} fits ({len(ok)} finished)" + (f" in {wall / 60:.1f} min" if wall else "") + "; prior "
           + ", ".join(sorted({r['prior'] for r in records})) + ". Each method with its library's defaults "
           "(manifests/ names them), 1000 draws from the fitted approximation.", ""]
    out += _headline(records)
    out += [f"![{text}]({name})" + "\n" for name, text in FIGURES.items()]
    out += _khat_table(records) + _scale_table(records)
    unavailable = sorted({(r["engine"], r["error"]) for r in records if r.get("error_kind") == "unavailable"},
                         key=lambda t: _order(t[0]))
    if unavailable:
        out += ["## Not run here", ""] + [f"- {m}: {e}" for m, e in unavailable] + [""]
    return "\n".join(out) + "\n"


def write_csv(folder: Path, records: list[dict]) -> None:
    fields = [f for f in APPROX_RECORD_FIELDS if f != "scores"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(records)
    write_text(Path(folder) / "approx.csv", buf.getvalue())


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def write_figures(folder: Path, records: list[dict]) -> None:
    from matplotlib.figure import Figure  # figures only: lazy

    folder = Path(folder)
    kept = [r for r in records if _ok(r) and r["section"] == "rubin" and (folder / "draws" / f"{r['key']}.nc").is_file()]
    methods = [m for (m,) in _by(kept, "engine")] or ["none"]
    ncols = min(4, len(methods))
    nrows = math.ceil(len(methods) / ncols)
    fig = Figure(figsize=(3.4 * ncols, 2.6 * nrows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, sharex=True).ravel())
    for ax in axes[len(methods):]:
        ax.set_axis_off()
    ref = posterior(data_for(kept[0]["data_spec"]), prior_for(kept[0]["prior"])) if kept else None
    x = np.linspace(1e-3, float(ref.quantile("tau", 0.99)), 300) if ref is not None else np.linspace(0, 1, 2)
    bins = np.linspace(0, x[-1], 40)
    for ax, method in zip(axes, methods, strict=False):
        if ref is not None:
            ax.fill_between(x, ref.pdf("tau", x), color="0.82", label="exact")
        for r in [r for r in kept if r["engine"] == method]:
            with xr.open_datatree(folder / "draws" / f"{r['key']}.nc") as tree:
                tau = np.asarray(tree["posterior"]["tau"].values).ravel()
            h, edges = np.histogram(tau, bins=bins)
            h = h / (len(tau) * np.diff(edges))  # density over all draws: mass beyond the axis is missing
            centred = r["parameterization"] == "centered"
            ax.step(edges[:-1], h, where="post", color="C3" if centred else "C0", linestyle="--" if centred else "-",
                    linewidth=1.1, label=r["parameterization"])
        ax.set_title(method, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle("tau under each method (seed 1) over the exact density, Rubin's data, default prior", fontsize=10)
    write_bytes(folder / "tau_marginal.png", _png(fig))

    nc = [r for r in records if _ok(r) and r["parameterization"] == "noncentered"]
    Js = sorted({r["J"] for r in nc}) or [8]
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(Js), squeeze=False).ravel())
    for ax, J in zip(axes, Js, strict=True):
        for i, (method, runs) in enumerate(_by([r for r in nc if r["J"] == J], "engine").items()):
            by_s = defaultdict(list)
            for r in runs:
                by_s[float(r["sigma_scale"])].append(r.get("tau_mean_error"))
            s = sorted(by_s)
            ax.plot(s, [_median(by_s[k]) for k in s], marker="o", color=f"C{i % 10}", label=method[0])
        ax.axhspan(-MEAN_TOL, MEAN_TOL, color="0.9")
        ax.set_xscale("log")
        ax.set_title(f"J = {J}, non-centred", fontsize=10)
        ax.set_xlabel("sigma_scale (small: informative data)")
        ax.set_ylabel("error of tau's mean (exact sds)")
    axes[-1].legend(fontsize=7)
    write_bytes(folder / "tau_error_vs_scale.png", _png(fig))

    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    for i, (method, runs) in enumerate(_by([r for r in records if _ok(r) and r.get("khat") is not None], "engine").items()):
        worst = [max(abs(r.get(f"{q}_mean_error") or 0) for q in ("mu", "tau", "log_tau")) for r in runs]
        ax.scatter([r["khat"] for r in runs], worst, s=14, color=f"C{i % 10}", label=method[0],
                   marker="o" if i < 10 else "^")
    ax.axvline(KHAT_OK, color="0.3", linestyle="--", linewidth=0.9)
    ax.axhline(MEAN_TOL, color="0.3", linestyle=":", linewidth=0.9)
    ax.set_yscale("log")
    ax.set_xlabel("Pareto k̂ of log p − log q")
    ax.set_ylabel("largest |mean error| of mu, tau, log tau (exact sds)")
    ax.legend(fontsize=7, ncols=2)
    write_bytes(folder / "khat_vs_error.png", _png(fig))


def render_approx(folder: Path) -> Path:
    folder = Path(folder)
    records, meta, env, timing = load_job_folder(folder, "approx.json", meta_required=False)
    write_csv(folder, records)
    write_figures(folder, records)
    path = folder / "APPROX.md"
    write_text(path, approx_markdown(records, meta, env, timing))
    return path


def console_summary(folder: Path) -> str:
    records = json.loads((Path(folder) / "runs.json").read_text())
    lines = ["Rubin's data (median over seeds): tau mean error (sd), tau W1, tau 90 % coverage, k̂"]
    for (method, param), runs in _by([r for r in records if r["section"] == "rubin"], "engine", "parameterization").items():
        done = [r for r in runs if _ok(r)]
        if done:
            lines.append(f"  {method:<24} {param:<12} {_fmt(_median(r.get('tau_mean_error') for r in done)):>6} "
                         f"{_fmt(_median(r.get('tau_w1') for r in done)):>6} {_fmt(_median(r.get('tau_coverage') for r in done)):>6} "
                         f"{_fmt(_median(r.get('khat') for r in done)):>6}")
        else:
            lines.append(f"  {method:<24} {param:<12} not run: {str(runs[0].get('error'))[:80]}")
    return "\n".join(lines)
