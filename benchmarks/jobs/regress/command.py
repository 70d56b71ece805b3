"""``python -m benchmarks regress --baseline FILE``: rerun a baseline's own configuration on its seeds
through the run path and gate against it. Exit 1 on a regression (and only then), with JUnit XML and
a markdown summary (appended to ``$GITHUB_STEP_SUMMARY`` when set)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from models.files import write_json, write_text

from ..common import RunOptions, add_run_options
from ..validate import check_output_file
from .baseline import subset
from .config import RegressConfig, RegressError
from .gate import CheckResult, gate
from .measure import load_baseline, measure
from .reports import junit_xml, markdown_summary
from .thresholds import ALPHA

__all__ = ["HELP", "configure", "main", "run_gate"]

HELP = "rerun a baseline's seeds; exit 1 on a regression (JUnit XML + markdown)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baseline", type=Path, required=True, help="results/baselines/<name>.json")
    p.add_argument("--engines", help="comma-separated subset of the baseline's engines")
    p.add_argument("--junit", type=Path, help="JUnit XML (default: <results>/regress/junit.xml)")
    p.add_argument("--summary", type=Path, help="markdown summary (default: <results>/regress/summary.md)")
    p.add_argument("--save", type=Path, help="also write this rerun's measurements (baseline format)")
    p.add_argument("--alpha", type=float, default=ALPHA, help=f"per-check false-alarm rate (default {ALPHA})")
    p.add_argument("--strict-time", action="store_true", help="fail (not warn) when time per draw rises")
    g = p.add_argument_group("settings overrides (e.g. to prove the gate catches a crippled sampler)")
    for name, typ in (("chains", int), ("warmup", int), ("draws", int), ("target-accept", float),
                      ("max-treedepth", int)):
        g.add_argument(f"--{name}", type=typ)
    add_run_options(p)


def run_gate(baseline_path: Path, *, options: RunOptions | argparse.Namespace | None = None,
             engines: list[str] | None = None, overrides: dict | None = None, junit: Path | None = None,
             summary: Path | None = None, save: Path | None = None, alpha: float = ALPHA,
             strict_time: bool = False, run_dir: Path | None = None) -> tuple[int, list[CheckResult], dict]:
    """Load, rerun, compare, write the reports; returns (exit code, results, the rerun)."""
    if not 0 < alpha < 1:
        raise RegressError(f"--alpha = {alpha!r}: must be in (0, 1)")
    baseline = load_baseline(baseline_path)
    config = RegressConfig.from_dict(baseline["config"])
    if engines:
        subset(",".join(engines), list(baseline["engines"]), "baseline")
    options = options or RunOptions()
    t0 = time.perf_counter()
    run_dir = run_dir or Path(options.results) / "regress" / f"{config.name}.runs"
    current = measure(config, overrides=overrides, engines=engines or list(baseline["engines"]), options=options,
                      run_dir=run_dir)
    results = gate(baseline, current, alpha=alpha, strict_time=strict_time)
    if save:
        write_json(save, current)
    props = {"baseline": str(baseline_path), "alpha": alpha, "seeds": baseline["seeds"],
             "overrides": current["overrides"], **{f"version.{p}": v for p, v in
                                                  current["environment"]["packages"].items() if v}}
    if junit:
        write_text(junit, junit_xml(results, properties=props, time_s=time.perf_counter() - t0))
    md = markdown_summary(results, baseline, current, baseline_path=str(baseline_path), alpha=alpha)
    if summary:
        write_text(summary, md)
    step = os.environ.get("GITHUB_STEP_SUMMARY")
    if step:
        with open(step, "a", encoding="utf-8") as f:  # GitHub's file: appended to, as GitHub asks
            f.write(md)
    return (1 if any(r.failed for r in results) else 0), results, current


def main(a: argparse.Namespace) -> int:
    overrides = {"chains": a.chains, "warmup": a.warmup, "draws": a.draws, "target_accept": a.target_accept,
                 "max_treedepth": a.max_treedepth}
    junit = a.junit or Path(a.results) / "regress" / "junit.xml"
    summary = a.summary or Path(a.results) / "regress" / "summary.md"
    for field, path in (("--junit", junit), ("--summary", summary), ("--save", a.save)):
        if path is not None:  # the reports are written after the runs: their paths are checked before
            check_output_file(path, field)
    code, results, _ = run_gate(a.baseline, options=a, engines=a.engines.split(",") if a.engines else None,
                                overrides=overrides, junit=junit, summary=summary, save=a.save, alpha=a.alpha,
                                strict_time=a.strict_time)
    width = max(len(f"{r.engine} {r.param} {r.kind}") for r in results)
    for r in results:
        print(f"{r.status.upper():>5}  {f'{r.engine} {r.param} {r.kind}':<{width}}  {r.message}")
    failed = [r for r in results if r.failed]
    print(f"\nregress: {len(failed)} of {len(results)} checks failed"
          + (f" ({', '.join(sorted({f'{r.engine} {r.param} {r.kind}' for r in failed}))})" if failed else "")
          + f"; JUnit {junit}, summary {summary}")
    return code
