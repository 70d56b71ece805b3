"""``python -m benchmarks report RUN_DIR``: rewrite REPORT.md (tables and figures) for a results folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from models.errors import UsageError

from ..reporting.report import render

__all__ = ["HELP", "configure", "main"]

HELP = "write REPORT.md for a results folder"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path)


def main(a: argparse.Namespace) -> int:
    if not (Path(a.run_dir) / "runs.json").is_file():
        raise UsageError(f"run_dir = {str(a.run_dir)!r}: no runs.json there (not a finished results folder)")
    print(render(a.run_dir))
    return 0
