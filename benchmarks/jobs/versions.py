"""``python -m benchmarks versions-report [ROOT]``: releases of each PPL side by side (after the
``nox -s versions`` sessions), each column naming the machine it ran on."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..reporting.versions import cmd_versions_report
from .common import RUNS

__all__ = ["HELP", "configure", "main"]

HELP = "side-by-side table of results/runs/versions/<ppl>-<version>/ runs"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", type=Path, nargs="?", default=RUNS / "versions")
    p.add_argument("--out", type=Path, help="markdown file (default: ROOT/VERSIONS.md)")


def main(a: argparse.Namespace) -> int:
    return cmd_versions_report(a)
