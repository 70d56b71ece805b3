"""``python -m benchmarks report results/<run-id>``: REPORT.md with tables and figures.

Everything here is computed from runs.json, the saved draws and the reference; nothing is typed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from .io import write_text

GROUP = ("section", "data", "prior", "engine", "parameterization", "draws", "target_accept", "max_treedepth")


def _q(values: list[float]) -> tuple[float, float, float] | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    if not v:
        return None
    return tuple(float(x) for x in np.percentile(v, [50, 25, 75]))  # type: ignore[return-value]


def _fmt(q, digits=1) -> str:
    if q is None:
        return "—"
    med, lo, hi = q
    return f"{med:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def groups(records: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        out[tuple(r.get(k) for k in GROUP)].append(r)
    return dict(out)


def summarise(rows: list[dict]) -> dict:
    ok = [r for r in rows if not r.get("error")]
    phases = {r.get("ess_phase") for r in ok}
    return {
        "n": len(rows),
        "ok": len(ok),
        "errors": sorted({r["error"] for r in rows if r.get("error")}),
        "compile_s": _q([r["compile_s"] for r in ok]),
        "inference_s": _q([r["inference_s"] for r in ok]),
        "sampling_s": _q([r["sampling_s"] for r in ok]),
        "ess_bulk": _q([r["min_ess_bulk"] for r in ok]),
        "ess_bulk_per_s": _q([r["ess_bulk_per_s"] for r in ok]),
        "ess_bulk_per_s_wall": _q([r.get("ess_bulk_per_s_wall") for r in ok]),
        "ess_tail_per_s": _q([r["ess_tail_per_s"] for r in ok]),
        "ess_bulk_per_grad": _q([r["ess_bulk_per_grad"] for r in ok]),
        "divergences": _q([r["divergences"] for r in ok]),
        "max_rhat": max((r["max_rhat"] for r in ok), default=None),
        "check": (sum(bool(r["check_passed"]) for r in ok if r.get("check_passed") is not None),
                  sum(r.get("check_passed") is not None for r in ok)),
        "max_abs_z": _q([r["check_max_abs_z"] for r in ok]),
        "ess_phase": "/".join(sorted(p for p in phases if p)) or "—",
    }


def table_markdown(records: list[dict]) -> str:
    head = ("| section | data | prior | engine | param | draws | seeds ok | compile s | warmup+draws s "
            "| min bulk ESS | bulk ESS/s (warmup+draws) | draw phase s | bulk ESS/s (draw phase) | tail ESS/s "
            "(draw phase) | ESS/grad ×1000 | divergences | max R-hat | check pass | max abs z |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for key, rows in groups(records).items():
        s = summarise(rows)
        section, data, prior, engine, param, draws, _, _ = key
        grad = s["ess_bulk_per_grad"]
        grad = tuple(1000 * x for x in grad) if grad else None
        lines.append(
            f"| {section} | {data} | {prior} | {engine} | {param} | {draws} | {s['ok']}/{s['n']} "
            f"| {_fmt(s['compile_s'], 2)} | {_fmt(s['inference_s'], 2)} | {_fmt(s['ess_bulk'], 0)} "
            f"| {_fmt(s['ess_bulk_per_s_wall'], 0)} | {_fmt(s['sampling_s'], 3) if s['ess_phase'] == 'sampling' else '—'} "
            f"| {_fmt(s['ess_bulk_per_s'], 0) if s['ess_phase'] == 'sampling' else '—'} "
            f"| {_fmt(s['ess_tail_per_s'], 0) if s['ess_phase'] == 'sampling' else '—'} | {_fmt(grad, 2)} | {_fmt(s['divergences'], 0)} "
            f"| {s['max_rhat']:.3f} | {s['check'][0]}/{s['check'][1]} | {_fmt(s['max_abs_z'], 1)} |"
            if s["ok"] else
            f"| {section} | {data} | {prior} | {engine} | {param} | {draws} | 0/{s['n']} | "
            + " | ".join(["—"] * 11) + f" | {'; '.join(s['errors'])[:120]} |"
        )
    return "\n".join(lines)


def _figures(run_dir: Path, records: list[dict]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    ok = [r for r in records if not r.get("error")]
    main = [r for r in ok if r["data"] == "rubin" and r["prior"] == "default"]
    if main:
        g = groups(main)
        labels, meds, los, his, divs, rhats = [], [], [], [], [], []
        for key, rows in sorted(g.items(), key=lambda kv: (kv[0][3], kv[0][4], kv[0][5] or 0)):
            s = summarise(rows)
            if s["ess_bulk_per_s_wall"] is None:
                continue
            labels.append(f"{key[3]}\n{key[4]}" + (f"\n{key[5]} draws" if len({k[5] for k in g}) > 1 else ""))
            m, lo, hi = s["ess_bulk_per_s_wall"]
            meds.append(m), los.append(m - lo), his.append(hi - m)
            divs.append([r["divergences"] for r in rows])
            rhats.append([r["max_rhat"] for r in rows])
        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels)), 4))
        ax.bar(range(len(labels)), meds, yerr=[los, his], capsize=3, color="tab:blue")
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_ylabel("min bulk ESS / s of warmup + draws (median, IQR)")
        ax.set_yscale("log")
        ax.set_title("ESS per second, Rubin's data, default prior")
        fig.tight_layout()
        fig.savefig(run_dir / "ess_per_s.png", dpi=110)
        plt.close(fig)
        made.append("ess_per_s.png")
        fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(labels)), 4))
        for i, vals in enumerate(divs):
            axes[0].plot([i] * len(vals), vals, "o", alpha=0.6, color="tab:red")
            axes[1].plot([i] * len(rhats[i]), rhats[i], "o", alpha=0.6, color="tab:purple")
        axes[0].set_ylabel("divergences (post-warmup)")
        axes[1].set_ylabel("max rank-normalised split R-hat")
        axes[1].axhline(1.01, color="k", lw=0.5, ls="--")
        for ax in axes:
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
        fig.tight_layout()
        fig.savefig(run_dir / "divergences_rhat.png", dpi=110)
        plt.close(fig)
        made.append("divergences_rhat.png")
    made += _draw_figures(run_dir, records, plt)
    return made


def _load_draws(run_dir: Path, rec: dict):
    import xarray as xr

    path = run_dir / "draws" / f"{rec['key']}.nc"
    return xr.open_datatree(path) if path.exists() else None


def _draw_figures(run_dir: Path, records: list[dict], plt) -> list[str]:
    made = []
    first = {}
    for r in records:
        if r.get("error") or r["data"] != "rubin" or r["prior"] != "default":
            continue
        k = (r["engine"], r["parameterization"])
        if k not in first and (run_dir / "draws" / f"{r['key']}.nc").exists():
            first[k] = r
    engines = sorted({k[0] for k in first})
    centred = [first[(e, "centered")] for e in engines if (e, "centered") in first]
    if centred:
        fig, axes = plt.subplots(1, len(centred), figsize=(4 * len(centred), 3.8), sharey=True, squeeze=False)
        for ax, rec in zip(axes[0], centred):
            dt = _load_draws(run_dir, rec)
            post, st = dt["posterior"], dt["sample_stats"]
            lt = np.log(post["tau"].values.ravel())
            th = post["theta"].values[..., 0].ravel()
            div = st["diverging"].values.ravel().astype(bool)
            ax.plot(th[~div], lt[~div], ".", ms=1.5, alpha=0.3, color="0.4")
            ax.plot(th[div], lt[div], "o", ms=3, color="tab:red", label=f"divergent ({div.sum()})")
            ax.set_title(f"{rec['engine']} centred, seed {rec['seed']}", fontsize=9)
            ax.set_xlabel("theta[1]")
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("log tau")
        fig.suptitle("The funnel: divergent transitions of the centred fits")
        fig.tight_layout()
        fig.savefig(run_dir / "funnel.png", dpi=110)
        plt.close(fig)
        made.append("funnel.png")
    if first:
        from models import PRESETS, RUBIN
        from reference import posterior

        ref = posterior(RUBIN, PRESETS["default"])
        grid = np.linspace(0.0, 25.0, 501)
        exact_pdf = np.gradient(np.asarray(ref.cdf("tau", grid), dtype=float), grid)
        fig, axes = plt.subplots(1, len(engines), figsize=(4 * len(engines), 3.5), sharey=True, squeeze=False)
        for ax, eng in zip(axes[0], engines):
            for param, color in (("centered", "tab:orange"), ("noncentered", "tab:blue")):
                rec = first.get((eng, param))
                if rec is None:
                    continue
                tau = _load_draws(run_dir, rec)["posterior"]["tau"].values.ravel()
                ax.hist(tau[tau < 25], bins=np.linspace(0, 25, 51), density=True, histtype="step", color=color,
                        label=param)
            ax.plot(grid, exact_pdf, "k", lw=1, label="exact")
            ax.set_title(eng, fontsize=9)
            ax.set_xlabel("tau")
            ax.legend(fontsize=7)
        fig.suptitle("Marginal posterior of tau against the exact density (default prior)")
        fig.tight_layout()
        fig.savefig(run_dir / "tau_marginal.png", dpi=110)
        plt.close(fig)
        made.append("tau_marginal.png")
    return made


def _timing_line(run_dir: Path, records: list[dict]) -> str:
    """Where the matrix's wall time went: from timing.json (the matrix's own clock) when present, else
    summed from the records (older runs: those miss the tables' writes and the set-up)."""
    path = run_dir / "timing.json"
    if path.exists():
        t = json.loads(path.read_text())["totals"]
        return (f"matrix wall time {t['wall_s']:.1f} s = engine calls {t['engine_call_s']:.1f} s (failed calls "
                f"included) + diagnostics and reference checks {t['diagnostics_s']:.1f} s + harness overhead "
                f"(everything else: set-up, records, tables) {t['harness_s']:.1f} s = "
                f"{100 * t['harness_fraction']:.1f} % of the wall time (`timing.json`)")
    engine_s = sum(r.get("engine_call_s") or r.get("total_s") or 0 for r in records)
    harness_s = sum(r.get("harness_s") or 0 for r in records)
    diag_s = sum(r.get("diagnostics_s") or 0 for r in records)
    return (f"engine time {engine_s:.1f} s; diagnostics and reference checks {diag_s:.1f} s; harness overhead "
            f"(set-up and records, summed per run) {harness_s:.1f} s = "
            f"{100 * harness_s / max(engine_s + diag_s + harness_s, 1e-9):.1f} % of the total")


def render(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    records = json.loads((run_dir / "runs.json").read_text())
    env = json.loads((run_dir / "environment.json").read_text())
    figures = _figures(run_dir, records)
    from .fairness import write_fairness_and_overhead

    write_fairness_and_overhead(run_dir, records)
    extra = ""
    for name in ("OVERHEAD.md", "FAIRNESS.md"):
        if (run_dir / name).exists():
            extra += f"- [{name}]({name})\n"
    pk = env.get("packages", {})
    versions = ", ".join(f"{k} {pk.get(k)}" for k in ("pymc", "numpyro", "jax", "pystan", "httpstan", "cmdstanpy",
                                                       "arviz-stats") if pk.get(k))
    ok = [r for r in records if not r.get("error")]
    timing_line = _timing_line(run_dir, records)
    text = "\n".join([
        f"# Benchmark report: `{run_dir.name.removesuffix(".partial")}`",
        "",
        "Written by `python -m benchmarks report`; every number below is computed from `runs.json`.",
        "",
        f"- machine: {env.get('cpu')}, {env.get('cores')} cores; Python {env.get('python')}; git {env.get('git_revision')}",
        f"- versions: {versions}",
        f"- runs: {len(records)} ({len(ok)} ok, {len(records) - len(ok)} errors); {timing_line}",
        "- cells are median [IQR] over seeds; ESS is the minimum over every scalar of mu, tau, theta "
        "(arviz-stats, all engines alike); ESS/s (warmup+draws) divides by the wall time of warmup and draws, "
        "measured alike for every engine; the draw-phase columns use the engine's own split where it has one "
        "(PyStan's is Stan's internal clock, so it leaves out httpstan's overhead); compile time is never "
        "included; ESS/grad counts leapfrog steps after warmup.",
        extra.rstrip(),
        "",
        table_markdown(records),
        "",
        *[f"![{f}]({f})" for f in figures],
        "",
    ])
    return write_text(run_dir / "REPORT.md", text)
