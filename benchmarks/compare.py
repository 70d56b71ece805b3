"""The main job: every available engine x both parameterisations, default prior, Rubin's data,
3 seeds, checked against the exact reference, with a report (results/compare/REPORT.md); when it
finishes, results/latest points at it."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from .matrix import load_config, point_latest, run_matrix
from .report import render, table_markdown
from .table import format_table

ROOT = Path(__file__).resolve().parents[1]
CONFIG = Path(__file__).parent / "configs" / "compare.toml"

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


def progress_printer(stream=sys.stdout):
    """A one-line progress bar on a terminal, plain lines elsewhere (CI logs)."""
    tty = stream.isatty()
    t0 = time.perf_counter()

    def progress(i: int, n: int, spec, status: str) -> None:
        label = f"[{i}/{n}] {spec.engine} {spec.param} {spec.prior} {spec.data} seed {spec.seed}: {status}"
        if tty:
            bar = "#" * int(30 * i / n)
            stream.write(f"\r{bar:<30} {label[:90]:<90} {time.perf_counter() - t0:6.0f} s")
            if i == n:
                stream.write("\n")
        else:
            stream.write(label + "\n")
        stream.flush()

    return progress


def compare(*, out: Path = Path("results/compare"), engines: list[str] | None = None,
            seeds: int | None = None, config: Path = CONFIG) -> int:
    sections = load_config(config, engines=engines, seeds=seeds)
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    t0 = time.perf_counter()
    records = run_matrix(sections, partial, progress=progress_printer())
    render(partial)
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)  # results/compare is replaced whole, never left half-written
    point_latest(out.parent, out)  # results/latest: the newest finished run (nox -s bench also moves it)
    wall = time.perf_counter() - t0
    print()
    print(format_table(records, COMPARE_COLUMNS))
    print()
    print(table_markdown(records))
    print(f"\ncompare: {len(records)} runs in {wall:.1f} s wall; report in {out / 'REPORT.md'}")
    if out.resolve() == (ROOT / "results" / "compare").resolve():
        from .readme import update_readme

        update_readme()
    return 0 if any(not r.get("error") for r in records) else 1
