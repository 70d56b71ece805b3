"""Plain-text tables of run records (terminal, CI logs and markdown alike)."""

from __future__ import annotations

COLUMNS = [
    ("engine", "engine", "{}"),
    ("parameterization", "param", "{}"),
    ("compile_s", "compile s", "{:.2f}"),
    ("inference_s", "sampling s", "{:.2f}"),
    ("min_ess_bulk", "min bulk ESS", "{:.0f}"),
    ("min_ess_tail", "min tail ESS", "{:.0f}"),
    ("max_rhat", "max R-hat", "{:.3f}"),
    ("divergences", "divergences", "{:d}"),
]


def _cell(record: dict, key: str, fmt: str) -> str:
    v = record.get(key)
    if v is None:
        return "—"
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def format_table(records: list[dict], columns=COLUMNS, markdown: bool = False) -> str:
    head = [c[1] for c in columns] + ["note"]
    rows = []
    for r in records:
        note = (r.get("error") or ("compile cached" if r.get("compile_cached") else ""))[:70]
        rows.append([_cell(r, k, f) for k, _, f in columns] + [note])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(lines)
