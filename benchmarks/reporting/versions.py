"""``python -m benchmarks versions-report``: the runs of several PPL releases side by side, with the machine.

Each ``<root>/<ppl>-<version>/`` is a matrix results folder (runs.json, environment.json). A column is
one PPL release; its machine comes from its folder's environment.json (CPU, cores, host). ESS per
gradient, the divergence rate and the reference verdicts do not depend on the machine, so they compare
across every column; time per draw does, so when the columns ran on more than one machine each time is
shown in brackets, to be compared only with columns carrying the same machine letter.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.errors import UsageError
from models.files import write_text

from .failures import Footnotes
from .report import machine_label
from .tables import ok_runs


def _folder_machine(folder: Path, records: list[dict]) -> str:
    env_path = folder / "environment.json"
    if env_path.exists():
        return machine_label(json.loads(env_path.read_text()))
    named = {r["machine"] for r in records if isinstance(r.get("machine"), str) and r["machine"]}
    return named.pop() if len(named) == 1 else "unknown machine"


def _time_per_draw(r: dict) -> float | None:
    """Seconds per post-warmup draw: the draw phase where the engine splits it, else warmup + draws
    divided by every iteration (warmup iterations cost about as much as draws)."""
    n = (r.get("chains") or 0) * (r.get("draws") or 0)
    if not n:
        return None
    if r.get("sampling_s"):
        return r["sampling_s"] / n
    if r.get("inference_s"):
        return r["inference_s"] / ((r.get("chains") or 0) * ((r.get("warmup") or 0) + r["draws"]))
    return None


def collect(root: Path) -> tuple[list[str], dict[str, set[str]], dict[tuple[str, str], dict[str, list[dict]]]]:
    """(columns, machines per column, {(engine, param): {column: records}}) for every ``*/runs.json``."""
    columns: list[str] = []
    machines: dict[str, set[str]] = {}
    rows: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for runs_json in sorted(Path(root).glob("*/runs.json")):
        records = json.loads(runs_json.read_text())
        machine = _folder_machine(runs_json.parent, records)
        for rec in records:
            if ok_runs([rec]):
                label = f"{rec.get('ppl') or rec['engine']} {rec.get('ppl_version') or runs_json.parent.name}"
            else:
                label = f"{rec['engine']} {runs_json.parent.name}"
            if label not in columns:
                columns.append(label)
            machines.setdefault(label, set()).add(machine)
            rows.setdefault((rec["engine"], rec["parameterization"]), {}).setdefault(label, []).append(rec)
    return columns, machines, rows


def _cell(recs: list[dict] | None, notes: Footnotes, bracket_time: bool) -> str:
    if not recs:
        return ""
    ok = ok_runs(recs)
    labels = list(dict.fromkeys(label for r in recs if (label := notes.cite(r))))
    if not ok:
        return f"{len(recs)} run{'s' if len(recs) > 1 else ''}: " + "; ".join(labels)
    grads = [r["ess_bulk_per_grad"] for r in ok if r.get("ess_bulk_per_grad")]
    ess = f"{np.median(grads):.3g}" if grads else "—"
    transitions = sum((r.get("chains") or 0) * (r.get("draws") or 0) for r in ok)
    div = f"{sum(r.get('divergences') or 0 for r in ok) / transitions:.2%}" if transitions else "—"
    passed = sum(bool(r.get("check_passed")) for r in ok)
    times = [t for r in ok if (t := _time_per_draw(r)) is not None]
    tpd = f"{np.median(times) * 1e6:.0f} µs" if times else "—"
    if bracket_time and times:
        tpd = f"[{tpd}]"
    text = f"{ess} · {div} · {passed}/{len(ok)} · {tpd}"
    if len(ok) < len(recs):
        text += f" ({len(recs) - len(ok)} of {len(recs)} runs: {'; '.join(labels)})"
    return text


def versions_table(root: Path) -> str:
    """VERSIONS.md's text: one column per PPL release found under ``root``, its machine named."""
    columns, machines, rows = collect(root)
    if not rows:
        raise UsageError(f"versions root = {str(root)!r}: no */runs.json (run the `nox -s versions` sessions first)")
    letters: dict[str, str] = {}
    for col in columns:
        for m in sorted(machines[col]):
            letters.setdefault(m, chr(ord("A") + len(letters)))
    mixed = len(letters) > 1
    notes = Footnotes(markdown=True)
    heads = [f"{c} ({'+'.join(letters[m] for m in sorted(machines[c]))})" if mixed else c for c in columns]
    lines = ["# PPL versions side by side", "",
             "Written by `python -m benchmarks versions-report`. Each cell: median ESS (bulk) per gradient · "
             "divergence rate · reference passes / runs · median time per draw (draw phase). Columns are the "
             f"releases found under `{root}`.", ""]
    if mixed:
        lines += ["**These columns ran on different machines.** ESS per gradient, divergence rate and "
                  "reference verdicts do not depend on the machine and compare across all columns. Time per "
                  "draw does: it is shown [in brackets] and compares only between columns with the same "
                  "machine letter.", ""]
        lines += [f"- machine {letter}: {m}" for m, letter in letters.items()]
    else:
        lines += [f"- machine (every column): {next(iter(letters))}; times compare across columns."]
    lines += ["", "| engine | param | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(columns)]
    for (engine, param), by in sorted(rows.items()):
        lines.append(f"| {engine} | {param} | "
                     + " | ".join(_cell(by.get(c), notes, mixed) for c in columns) + " |")
    if len(notes):
        lines += ["", notes.render()]
    return "\n".join(lines) + "\n"


def write_versions_report(root: Path, out: Path | None = None) -> tuple[Path, str]:
    text = versions_table(root)
    return write_text(Path(out) if out else Path(root) / "VERSIONS.md", text), text


def cmd_versions_report(a: argparse.Namespace) -> int:
    """The ``versions-report`` subcommand: ``a.root`` (results/versions), ``a.out`` (None: ROOT/VERSIONS.md)."""
    out, text = write_versions_report(a.root, a.out)
    print(text)
    print(f"written to {out}")
    return 0
