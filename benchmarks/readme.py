"""Regenerate the README's result blocks from results/ (no figure in the README is typed by hand).

A block is the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; each NAME maps to a
function of the results folder that returns the block's markdown.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .io import write_text
from .report import table_markdown

ROOT = Path(__file__).resolve().parents[1]


def _compare_block(results: Path) -> str:
    run_dir = results / "compare"
    records = json.loads((run_dir / "runs.json").read_text())
    env = json.loads((run_dir / "environment.json").read_text())
    timing = ""
    if (run_dir / "timing.json").exists():
        t = json.loads((run_dir / "timing.json").read_text())["totals"]
        ok = [r for r in records if not r.get("error")]
        cached = sum(bool(r.get("compile_cached")) for r in ok)
        timing = (f" The matrix took {t['wall_s']:.0f} s of wall time ({t['engine_call_s']:.0f} s in engine calls, "
                  f"harness overhead {100 * t['harness_fraction']:.1f} %); {cached} of {len(ok)} finished runs "
                  "loaded every compiled program from a cache (PyMC's own sampler and nutpie compile each run).")
    return (f"From `results/compare/` ({env.get('cpu')}, {env.get('cores')} cores, git "
            f"`{(env.get('git_revision') or '')[:12]}`); full report: "
            f"[results/compare/REPORT.md](results/compare/REPORT.md).{timing}\n\n" + table_markdown(records))


def _calibration_block(results: Path) -> str:
    from .calibrate import render_markdown

    cal = json.loads((results / "calibration" / "calibration.json").read_text())
    text = render_markdown(cal)
    start = text.index("| measurement")
    table = text[start:text.index("\n\n", start)]
    return table + "\n\nDetails: [results/calibration/CALIBRATION.md](results/calibration/CALIBRATION.md)."


BLOCKS = {"compare-table": _compare_block, "calibration-table": _calibration_block}


def update_readme(readme: Path = ROOT / "README.md", results: Path = ROOT / "results") -> list[str]:
    text = readme.read_text()
    done = []
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(\n<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            continue
        try:
            block = make(results)
        except FileNotFoundError:
            continue  # that result has not been produced here yet: leave the block as it is
        text = pattern.sub(lambda m, b=block: m.group(1) + b + m.group(2), text)
        done.append(name)
    write_text(readme, text)
    return done


if __name__ == "__main__":
    print("updated:", ", ".join(update_readme()) or "nothing")
