"""``python -m benchmarks matrix CONFIG``: a benchmark matrix from a TOML file (``nox -s bench`` runs
configs/bench.toml), through the run path, into ``<results>/<run-id>/`` with its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..reporting.report import render
from ..runpath import check_run_id, point_latest
from .common import add_run_options, run_specs
from .config import load_config, specs_of
from .floor import write_floor
from .validate import engine_names

__all__ = ["HELP", "configure", "main"]

HELP = "run a benchmark matrix from a TOML file (nox -s bench uses configs/bench.toml)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path)
    p.add_argument("--engines", help="comma-separated subset of engines")
    p.add_argument("--seeds", type=int, help="use seeds 1..N instead of the config's")
    p.add_argument("--run-id", help="<results>/<run-id> (default: the config's file name)")
    p.add_argument("--latest", action="store_true", help="point <results>/latest at this run when it ends")
    add_run_options(p)


def main(a: argparse.Namespace) -> int:
    run_id = check_run_id(a.run_id if a.run_id is not None else a.config.stem)
    sections = load_config(a.config, engines=engine_names(a.engines), seeds=a.seeds)
    run_dir = Path(a.results) / run_id

    def finish(store, records) -> None:
        if any(s.name == "overhead" for s in sections):
            write_floor(run_dir)
        print(f"report: {render(run_dir)}")

    run_specs(f"matrix {run_id}", specs_of(sections), run_dir, a, finish=finish)
    if a.latest:
        point_latest(Path(a.results), run_dir)
    return 0
