"""``python -m benchmarks report results/<run-id>``: REPORT.md with its tables and figures.

Everything here is computed from the results folder (runs.json, environment.json, timing.json,
manifests/, draws/) and the exact reference; nothing is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from models.files import write_text

from .failures import error_kind
from .fairness import write_fairness_and_overhead
from .figures import make_figures
from .tables import table_markdown

#: the diagnostics library every engine's numbers come from, named in the versions line
DIAGNOSTICS = ("arviz-stats",)
#: manifest keys ``<name>_version`` -> how the versions line names them
VERSION_NAMES = {"cmdstan": "CmdStan", "stan": "Stan", "httpstan": "httpstan", "jax": "jax", "jaxlib": "jaxlib",
                 "pytensor": "pytensor", "cmdstanpy": "cmdstanpy"}


def _manifests(run_dir: Path) -> list[dict]:
    mdir = run_dir / "manifests"
    return [json.loads(p.read_text()) for p in sorted(mdir.glob("*.json"))] if mdir.is_dir() else []


def versions_used(run_dir: Path, records: list[dict], env: dict) -> dict[str, list[str]]:
    """Every PPL, sampler and compiler version behind a finished run: the records' ``ppl_version``
    and every ``*_version`` in the manifests (CmdStan's from cmdstanpy's manifest), plus the
    diagnostics library."""
    found: dict[str, set[str]] = {}

    def add(name, version):
        if name and version:
            found.setdefault(str(name), set()).add(str(version))

    for r in records:
        if error_kind(r) is None:
            add(r.get("ppl"), r.get("ppl_version"))
    for m in _manifests(run_dir):
        add(m.get("ppl"), m.get("ppl_version"))
        if m.get("sampler_version") and m.get("sampler"):
            add(str(m["sampler"]).split()[0], m["sampler_version"])
        for key, value in m.items():
            if key.endswith("_version") and key not in ("ppl_version", "sampler_version"):
                base = key.removesuffix("_version")
                add(VERSION_NAMES.get(base, base), value)
    packages = env.get("packages") or {}
    for name in DIAGNOSTICS:
        add(name, packages.get(name))
    return {k: sorted(v) for k, v in sorted(found.items(), key=lambda kv: kv[0].lower())}


def machine_label(env: dict) -> str:
    """``CPU, N cores @ host`` from an environment.json (flat, or with a nested ``machine``)."""
    m = {**env, **(env.get("machine") if isinstance(env.get("machine"), dict) else {})}
    text = f"{m.get('cpu') or 'unknown CPU'}, {m.get('cores') or '?'} cores"
    if m.get("affinity") and m.get("affinity") != m.get("cores"):
        text += f" ({m['affinity']} usable)"
    host = m.get("host") or m.get("node")
    return text + (f" @ {host}" if host else "")


def load_job_folder(folder: Path, meta: str, *, meta_required: bool = True) -> tuple[list[dict], dict, dict, dict]:
    """(records, the job's own ``meta`` JSON, environment, timing) of a job's results folder; timing is {}
    where the folder has none, and so is meta where it is not required."""
    folder = Path(folder)
    records = json.loads((folder / "runs.json").read_text())
    own = folder / meta
    meta_doc = json.loads(own.read_text()) if meta_required or own.exists() else {}
    env = json.loads((folder / "environment.json").read_text())
    timing = json.loads((folder / "timing.json").read_text()) if (folder / "timing.json").exists() else {}
    return records, meta_doc, env, timing


def git_text(env: dict) -> str:
    """``git `abc123`'`` from an environment.json, saying where the tree had uncommitted changes when the
    job started and where the code changed under it (``git_revision_end``)."""
    rev = str(env.get("git_revision") or "unknown")
    text = f"git `{rev.removesuffix('-dirty')[:12]}`" + (" with uncommitted changes" if rev.endswith("-dirty") else "")
    end = env.get("git_revision_end")
    if end and end != rev:
        text += f" (at the end: `{str(end).removesuffix('-dirty')[:12]}`" + (", uncommitted changes" if str(end).endswith("-dirty") else "") + ")"
    return text


def machines_line(env: dict, records: list[dict]) -> str:
    from_records = sorted({r["machine"] for r in records if isinstance(r.get("machine"), str) and r["machine"]})
    if len(from_records) > 1:
        return ("machines: " + "; ".join(from_records)
                + " (runs from different machines: compare their times only within a machine)")
    return f"machine: {from_records[0] if from_records else machine_label(env)}"


def timing_line(run_dir: Path, records: list[dict]) -> str:
    """Where the matrix's wall time went: from timing.json (the matrix's own clock) when present, else
    summed from the records (older runs: those miss the tables' writes and the set-up)."""
    path = run_dir / "timing.json"
    if path.exists():
        t = json.loads(path.read_text())["totals"]
        if (t.get("parallel") or 1) > 1:
            return (f"matrix wall time {t['wall_s']:.1f} s with {t['parallel']} runs at a time (Dask workers): engine "
                    f"calls {t['engine_call_s']:.1f} s and diagnostics and reference checks {t['diagnostics_s']:.1f} s "
                    f"summed over the workers (`timing.json`)")
        line = (f"matrix wall time {t['wall_s']:.1f} s = engine calls {t['engine_call_s']:.1f} s (failed calls "
                f"included) + diagnostics and reference checks {t['diagnostics_s']:.1f} s + harness overhead "
                f"(everything else: set-up, records, tables) {t['harness_s']:.1f} s = "
                f"{100 * t['harness_fraction']:.1f} % of the wall time (`timing.json`)")
        if t.get("wall_over_budget"):
            line += (f"; the engines' own time (warmup + sampling {t['inference_s']:.1f} s + one compile per "
                     f"distinct program, {t['distinct_programs']} programs, {t['distinct_compile_s']:.1f} s) is "
                     f"{t['budget_s']:.1f} s: wall / that = {t['wall_over_budget']:.2f}")
        return line
    engine_s = sum(r.get("engine_call_s") or r.get("total_s") or 0 for r in records)
    harness_s = sum(r.get("harness_s") or 0 for r in records)
    diag_s = sum(r.get("diagnostics_s") or 0 for r in records)
    return (f"engine time {engine_s:.1f} s; diagnostics and reference checks {diag_s:.1f} s; harness overhead "
            f"(set-up and records, summed per run) {harness_s:.1f} s = "
            f"{100 * harness_s / max(engine_s + diag_s + harness_s, 1e-9):.1f} % of the total")


def runs_line(records: list[dict]) -> str:
    kinds: dict[str, int] = {}
    for r in records:
        k = error_kind(r)
        if k:
            kinds[k] = kinds.get(k, 0) + 1
    ok = len(records) - sum(kinds.values())
    detail = ", ".join(f"{n} {k}" for k, n in kinds.items())
    return f"runs: {len(records)} ({ok} finished" + (f"; {detail}" if detail else "") + ")"


def render(run_dir: Path) -> Path:
    """Write REPORT.md (and FAIRNESS.md, OVERHEAD.md, the figures) into ``run_dir``; returns REPORT.md's path."""
    run_dir = Path(run_dir)
    records = json.loads((run_dir / "runs.json").read_text())
    env_path = run_dir / "environment.json"
    env = json.loads(env_path.read_text()) if env_path.exists() else {}
    figures = make_figures(run_dir, records)
    extra = [f"- [{name}]({name})" for name in write_fairness_and_overhead(run_dir, records)]
    versions = "; ".join(f"{name} {'/'.join(v)}" for name, v in versions_used(run_dir, records, env).items())
    name = run_dir.name.removesuffix(".partial")
    text = "\n".join([
        f"# Benchmark report: `{name}`",
        "",
        "Written by `python -m benchmarks report`; every number below is computed from `runs.json`.",
        "",
        f"- {machines_line(env, records)}; Python {env.get('python')}; git {env.get('git_revision')}",
        f"- versions: {versions or '—'}",
        f"- {runs_line(records)}; {timing_line(run_dir, records)}",
        "- cells are median [IQR] over the seeds stated above the table; ESS is the minimum over every "
        "scalar of mu, tau, theta (arviz-stats, all engines alike); ESS/s (warmup+draws) divides by the wall "
        "time of warmup and draws, measured alike for every engine; the draw-phase columns use the engine's "
        "own split where it has one (PyStan's is Stan's internal clock, so it leaves out httpstan's "
        "overhead); compile time is never included; ESS/grad counts leapfrog steps after warmup. A run "
        "without numbers says why in its note, with the reason once below the table; the raw error text "
        "is in `runs.json`.",
        *extra,
        "",
        table_markdown(records),
        "",
        *[f"![{f}]({f})" for f in figures],
        "",
    ])
    return write_text(run_dir / "REPORT.md", text)
