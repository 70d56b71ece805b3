"""The main job: every engine x both parameterisations, default prior, Rubin's data, 3 seeds, each
fit checked against the exact reference, with a report. Writes ``results/runs/compare/`` (staged in
``compare.partial`` and swapped in whole when finished) and points ``results/runs/latest`` at it."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from models.errors import UsageError

from ..reporting.tables import format_table
from ..reporting.warm import warm_up
from ..runpath import check_run_id, point_latest, remove_created
from ..runpath.progress import fmt_duration
from .common import add_run_options, run_specs
from .config import CONFIGS, load_config, specs_of
from .validate import engine_names

__all__ = ["HELP", "configure", "main", "CONFIG"]

CONFIG = CONFIGS / "compare.toml"

COMPARE_COLUMNS = [
    ("engine", "engine", "{}"),
    ("parameterization", "param", "{}"),
    ("seed", "seed", "{}"),
    ("compile_s", "compile s", "{:.2f}"),
    ("inference_s", "sampling s", "{:.2f}"),
    ("min_ess_bulk", "min bulk ESS", "{:.0f}"),
    ("ess_bulk_per_s_wall", "bulk ESS/s", "{:.0f}"),
    ("max_rhat", "max R-hat", "{:.3f}"),
    ("divergences", "divergences", "{:d}"),
    ("check_passed", "reference", "{}"),
    ("check_max_abs_z", "max |z|", "{:.1f}"),
]


HELP = "the main job: every engine x both parameterisations, 3 seeds, reference check, report"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engines", help="comma-separated subset of engines")
    p.add_argument("--seeds", type=int, help="number of seeds (default: the config's)")
    p.add_argument("--run-id", default="compare", help="folder name under --results (default: compare)")
    add_run_options(p)


def main(a: argparse.Namespace) -> int:
    if a.seeds is not None and a.seeds < 1:
        raise UsageError(f"--seeds = {a.seeds}: must be >= 1")
    sections = load_config(CONFIG, engines=engine_names(a.engines), seeds=a.seeds)
    specs = specs_of(sections)
    results = Path(a.results)
    final = results / check_run_id(a.run_id)
    staging = results / f"{a.run_id}.partial"
    t0 = time.perf_counter()

    def finish(store, records) -> None:  # still holding the staging folder's lock
        from ..reporting.report import render  # imported by warm_up while the worker started

        render(staging)
        remove_created(final)
        os.replace(staging, final)  # the finished folder is swapped in whole, never half-written

    # the worker imports the PPLs and the client the report's modules at the same time, before the first run
    records = run_specs("compare", specs, staging, a, fresh=True, finish=finish, prepare=True, meanwhile=warm_up)
    point_latest(results, final)
    wall = time.perf_counter() - t0
    print()
    print(format_table(records, COMPARE_COLUMNS))
    ok = [r for r in records if not r.get("error")]
    if not ok:
        raise UsageError("compare: no run finished (every engine unavailable or failing here; see "
                         f"{final / 'runs.csv'})")
    t = json.loads((final / "timing.json").read_text())["totals"]
    print(f"\ncompare: {len(records)} runs ({len(ok)} finished) in {fmt_duration(wall)} wall; the matrix "
          f"{t['wall_s']:.1f} s against the engines' own {t['budget_s']:.1f} s (warmup + sampling "
          f"{t['inference_s']:.1f} s + {t['distinct_programs']} distinct compiles {t['distinct_compile_s']:.1f} s)"
          f" = {t['wall_over_budget']:.2f}x; report in {final / 'REPORT.md'}")
    whole = process_age_s()
    if whole is not None:
        print(f"compare: the whole command {whole:.1f} s from its process's start (start-up, imports, the matrix, "
              f"the report and its figures) against the engines' own {t['budget_s']:.1f} s = "
              f"{whole / t['budget_s']:.2f}x")
    return 0


def process_age_s() -> float | None:
    """Seconds since this process started (Linux's /proc: its start time in clock ticks after boot), so
    the whole command is timed, interpreter start-up and imports included; None where /proc has no answer."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None
