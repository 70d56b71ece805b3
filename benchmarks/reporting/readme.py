"""Regenerate the README's result blocks from a results folder (no figure in the README is typed by hand).

A block is the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; each NAME maps to a
function of the results folder that returns the block's markdown. A block whose result is missing is
left as it is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from models.files import write_text

from .failures import error_kind
from .report import machine_label
from .tables import table_markdown

ROOT = Path(__file__).resolve().parents[2]


def _compare_block(results: Path) -> str:
    run_dir = results / "compare"
    records = json.loads((run_dir / "runs.json").read_text())
    env = json.loads((run_dir / "environment.json").read_text())
    timing = ""
    if (run_dir / "timing.json").exists():
        t = json.loads((run_dir / "timing.json").read_text())["totals"]
        ok = [r for r in records if error_kind(r) is None]
        reused = sum(bool(r.get("compile_reused")) for r in ok)
        cached = sum(bool(r.get("compile_cached")) for r in ok)
        timing = f" The matrix took {t['wall_s']:.0f} s of wall time"
        if t.get("wall_over_budget"):
            timing += (f", {t['wall_over_budget']:.2f}× what the engines themselves need (warmup + sampling "
                       f"{t['inference_s']:.0f} s + one compile per distinct program, {t['distinct_compile_s']:.0f} s)")
        timing += (f"; {reused} of {len(ok)} finished runs reused a program compiled earlier in their worker, "
                   f"{cached} compiled nothing.")
    return (f"From `results/compare/` ({machine_label(env)}, git "
            f"`{(env.get('git_revision') or '')[:12]}`); full report: "
            f"[results/compare/REPORT.md](results/compare/REPORT.md).{timing}\n\n" + table_markdown(records))


def _calibration_block(results: Path) -> str:
    """The measurement table of CALIBRATION.md (itself written by the calibrate job from calibration.json)."""
    text = (results / "calibration" / "CALIBRATION.md").read_text()
    start = text.index("| measurement")
    end = text.find("\n\n", start)
    table = text[start:end if end >= 0 else len(text)].rstrip()
    return table + "\n\nDetails: [results/calibration/CALIBRATION.md](results/calibration/CALIBRATION.md)."


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _durations_block(results: Path) -> str:
    """Cold and warm wall times of the README's commands, measured by `nox -s durations` (.ci/durations.py)
    in fresh clones with empty HOMEs."""
    d = json.loads((results / "durations" / "durations.json").read_text())
    c, t = d["scenarios"].get("compare", {}), d["scenarios"].get("tests", {})

    def wall(sc: dict, k: str) -> str:
        return _fmt_s((sc.get(k) or {}).get("wall_s"))

    def first(sc: dict, k: str, field: str = "first_own_line_s") -> str:
        v = (sc.get(k) or {}).get(field)
        return "—" if v is None else f"{v:.1f} s"

    return (f"Measured by `nox -s durations` on {d['cpu']} ({d['cores']} cores), git `{d['git_revision'][:12]}`, "
            "each in a fresh clone with an empty HOME (cold: every download and compile cache empty; warm: the "
            f"same command again): set-up line {wall(c, 'setup')}; `nox -s compare` cold {wall(c, 'cold')}, warm "
            f"{wall(c, 'warm')}; `nox -s tests` cold {wall(t, 'cold')}, warm {wall(t, 'warm')}. First output (the "
            f"session's plan line, before any install): compare {first(c, 'cold', 'first_output_s')} (cold), regress "
            f"{first(c, 'regress_first_line', 'first_output_s')}, bench {first(c, 'bench_first_line', 'first_output_s')}; "
            f"the job's own first line, after its install: compare {first(c, 'cold')} (cold), regress "
            f"{first(c, 'regress_first_line')}, bench {first(c, 'bench_first_line')}.")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end >= 0 else len(text)].strip()


def _sweep_block(results: Path) -> str:
    """The sweep's answer for users, copied from SWEEP.md (itself written by the sweep job from its
    records): which parameterisation for which data, and the crossover per engine."""
    text = (results / "sweep" / "SWEEP.md").read_text()
    what_ran = next(line for line in text.splitlines() if line.startswith("**What ran**"))
    pick = _section(text, "## What to pick for your data").replace("## What to pick for your data",
                                                                  "### What to pick for your data")
    pick = pick.replace("the table above", "SWEEP.md's informativeness table").replace(
        "in the crossover table", "in SWEEP.md's crossover table")
    return ("## Centred or non-centred? The problem space\n\n"
            "`nox -s sweep` moves along the data's informativeness (every sigma_j times sigma_scale) at J = 8 "
            f"and 64, with the exact reference at every point. {what_ran}\n\n{pick}\n\n"
            "Crossovers per engine, the check's pass rates and power across the space, and the figures: "
            "[results/sweep/SWEEP.md](results/sweep/SWEEP.md).\n\n![winner map](results/sweep/winner_map.png)")


def _chains_block(results: Path) -> str:
    """The chains job's crossover and centred-funnel tables, copied from CHAINS.md (written by the job)."""
    text = (results / "chains" / "CHAINS.md").read_text()
    first = next(line for line in text.splitlines() if line.startswith("Written by"))
    cross = _section(text, "## Crossover").replace("## Crossover", "### Crossover")
    cross = cross.replace("](ess_per_s_vs_chains.png)", "](results/chains/ess_per_s_vs_chains.png)")
    funnel = _section(text, "## The centred funnel").replace("## The centred funnel", "### The centred funnel")
    return (f"{first}\n\n{cross}\n\n{funnel}\n\nEvery configuration, nested R-hat and unadjusted MCLMC's bias "
            "against its step size: [results/chains/CHAINS.md](results/chains/CHAINS.md).")


def _approx_block(results: Path) -> str:
    """The approx job's headline table and k̂-versus-truth counts, copied from APPROX.md."""
    text = (results / "approx" / "APPROX.md").read_text()
    first = next(line for line in text.splitlines() if line.startswith("Written by"))
    head = _section(text, "## Rubin's data").replace("## Rubin's data", "### Rubin's data")
    head = re.sub(r"\]\((\w+\.png)\)", r"](results/approx/\1)", head)
    khat = _section(text, "## Does k̂ tell the truth?").replace("## Does", "### Does")
    khat = khat.split("\nPer method and data point:")[0].strip()
    return (f"{first}\n\n{head}\n\n{khat}\n\nPer data point, against informativeness, and the figures: "
            "[results/approx/APPROX.md](results/approx/APPROX.md).")


BLOCKS = {"compare-table": _compare_block, "calibration-table": _calibration_block,
          "durations": _durations_block, "sweep": _sweep_block, "chains": _chains_block, "approx": _approx_block}


def update_readme(readme: Path = ROOT / "README.md", results_root: Path = ROOT / "results") -> list[str]:
    """Rewrite every block whose result exists; returns the names of the blocks rewritten."""
    readme, results_root = Path(readme), Path(results_root)
    text = readme.read_text()
    done = []
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(\n<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            continue
        try:
            block = make(results_root)
        except FileNotFoundError:
            continue  # that result has not been produced here yet: leave the block as it is
        text = pattern.sub(lambda m, b=block: m.group(1) + b + m.group(2), text)
        done.append(name)
    if done:
        write_text(readme, text)
    return done

