"""``python -m benchmarks engines``: every engine with its PPL, version and availability here."""

from __future__ import annotations

import argparse
import json

from ..engines import ENGINES, KNOWN_BREAKS, availability, engine_version

__all__ = ["HELP", "configure", "main", "engines_table"]

HELP = "list every engine with its version and whether it can run here (and why not)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def engines_table() -> list[dict]:
    rows = []
    for name, entry in ENGINES.items():
        reason = availability(name)
        kb = KNOWN_BREAKS.get(name)
        rows.append({"engine": name, "ppl": entry.ppl, "version": engine_version(name),
                     "available": reason is None, "reason": reason,
                     "known_break": {"summary": kb.summary, "upstream": kb.upstream} if kb else None})
    return rows


def main(a: argparse.Namespace) -> int:
    rows = engines_table()
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    w = max(len(r["engine"]) for r in rows)
    for r in rows:
        state = "available" if r["available"] else f"unavailable: {r['reason']}"
        if r["available"] and r["known_break"]:
            state += f" (known upstream break: {r['known_break']['summary']}; {r['known_break']['upstream']})"
        print(f"{r['engine']:<{w}}  {r['ppl']} {r['version'] or '(not installed)'}  {state}")
    return 0
