"""``python -m benchmarks engines``: every engine, then every approximate-inference method
(benchmarks.approx), with its PPL, version and availability here."""

from __future__ import annotations

import argparse
import json

from .. import approx
from ..engines import ENGINES, KNOWN_BREAKS, availability, engine_version

__all__ = ["HELP", "configure", "main", "engines_table", "approximators_table"]

HELP = "list every engine and approximator with its version and whether it can run here (and why not)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help='print JSON instead of a table: {"engines": [...], "approximators": [...]}')


def engines_table() -> list[dict]:
    rows = []
    for name, entry in ENGINES.items():
        reason = availability(name)
        kb = KNOWN_BREAKS.get(name)
        rows.append({"engine": name, "ppl": entry.ppl, "version": engine_version(name),
                     "available": reason is None, "reason": reason,
                     "known_break": {"summary": kb.summary, "upstream": kb.upstream,
                                     "seen_with": dict(kb.seen_with), "attempted": not kb.seen_here()}
                     if kb else None})
    return rows


def approximators_table() -> list[dict]:
    return [{"approximator": name, "ppl": entry.ppl, "version": approx.approximator_version(name),
             "available": (reason := approx.availability(name)) is None, "reason": reason}
            for name, entry in approx.APPROXIMATORS.items()]


def main(a: argparse.Namespace) -> int:
    rows, approx_rows = engines_table(), approximators_table()
    if a.json:
        print(json.dumps({"engines": rows, "approximators": approx_rows}, indent=1))
        return 0
    w = max(len(r["engine"]) for r in rows + [{"engine": r["approximator"]} for r in approx_rows])
    for r in rows:
        state = "available" if r["available"] else f"unavailable: {r['reason']}"
        if r["available"] and r["known_break"]:
            kb = r["known_break"]
            seen = ", ".join(f"{d} {v}" for d, v in kb["seen_with"].items())
            runs = (f"; runs not attempted with {seen} installed, the versions it was seen with" if not kb["attempted"]
                    else f"; seen with {seen}, runs attempted here" if seen else "")
            state += f" (known upstream break: {kb['summary']}; {kb['upstream']}{runs})"
        print(f"{r['engine']:<{w}}  {r['ppl']} {r['version'] or '(not installed)'}  {state}")
    print("\napproximators")
    for r in approx_rows:
        state = "available" if r["available"] else f"unavailable: {r['reason']}"
        print(f"{r['approximator']:<{w}}  {r['ppl']} {r['version'] or '(not installed)'}  {state}")
    return 0
