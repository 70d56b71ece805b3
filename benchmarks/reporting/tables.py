"""Tables of run records: one row per run for the console (:func:`format_table`), one row per group of
seeds for REPORT.md and the README (:func:`table_markdown`).

A run that has no numbers shows a short label and a footnote number in its note cell ("known upstream
break [1]", "unavailable [2]"); the footnotes below the table give each reason once, with its link.
Columns whose value is the same in every row leave the markdown table and are stated once above it,
with the seeds.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .failures import Footnotes, error_kind

#: one markdown row per distinct value of these (a row's cells are medians over the seeds in it)
GROUP = ("section", "data", "prior", "engine", "parameterization", "chains", "warmup", "draws", "target_accept",
         "max_treedepth")
#: the columns of GROUP that stay in the table even when constant (a row must name what it is)
ALWAYS = ("engine", "parameterization")
HEADS = {"section": "section", "data": "data", "prior": "prior", "engine": "engine", "parameterization": "param",
         "chains": "chains", "warmup": "warmup", "draws": "draws", "target_accept": "target_accept",
         "max_treedepth": "max_treedepth"}

#: the console table's default columns: (record field, heading, format)
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


def group_value(rec: dict, key: str):
    """A record's value for a GROUP column; ``data`` is the data spec where the record has one."""
    if key == "data":
        return rec.get("data_spec") or rec.get("data")
    return rec.get(key)


def ok_runs(rows: list[dict]) -> list[dict]:
    return [r for r in rows if error_kind(r) is None]


def _order(key: tuple) -> tuple:
    """Sort numbers as numbers (250 before 2000) and strings as strings; None first."""
    return tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, "" if v is None else str(v)) for v in key)


def groups(records: list[dict]) -> dict[tuple, list[dict]]:
    """Records by their GROUP values, in sorted order."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        out[tuple(group_value(r, k) for k in GROUP)].append(r)
    return dict(sorted(out.items(), key=lambda kv: _order(kv[0])))


def _q(values: list) -> tuple[float, float, float] | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    if not v:
        return None
    return tuple(float(x) for x in np.percentile(v, [50, 25, 75]))  # type: ignore[return-value]


def _fmt(q, digits: int = 1) -> str:
    if q is None:
        return "—"
    med, lo, hi = q
    return f"{med:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def summarise(rows: list[dict]) -> dict:
    ok = ok_runs(rows)
    phases = {r.get("ess_phase") for r in ok}
    checked = [r for r in ok if r.get("check_passed") is not None]
    return {
        "n": len(rows),
        "ok": len(ok),
        "seeds": sorted({r["seed"] for r in rows if r.get("seed") is not None}),
        "compile_s": _q([r.get("compile_s") for r in ok]),
        "inference_s": _q([r.get("inference_s") for r in ok]),
        "sampling_s": _q([r.get("sampling_s") for r in ok]),
        "ess_bulk": _q([r.get("min_ess_bulk") for r in ok]),
        "ess_bulk_per_s": _q([r.get("ess_bulk_per_s") for r in ok]),
        "ess_bulk_per_s_wall": _q([r.get("ess_bulk_per_s_wall") for r in ok]),
        "ess_tail_per_s": _q([r.get("ess_tail_per_s") for r in ok]),
        "ess_bulk_per_grad": _q([r.get("ess_bulk_per_grad") for r in ok]),
        "divergences": _q([r.get("divergences") for r in ok]),
        "max_rhat": max((r["max_rhat"] for r in ok if r.get("max_rhat") is not None), default=None),
        "check": (sum(bool(r["check_passed"]) for r in checked), len(checked)),
        "max_abs_z": _q([r.get("check_max_abs_z") for r in ok]),
        "ess_phase": "/".join(sorted(p for p in phases if p)) or "—",
    }


def seeds_text(seeds) -> str:
    """``[1, 2, 3, 5]`` -> ``1–3, 5``."""
    seeds = sorted(set(seeds))
    parts: list[str] = []
    i = 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if j == i else f"{seeds[i]}, {seeds[j]}" if j == i + 1
                     else f"{seeds[i]}–{seeds[j]}")
        i = j + 1
    return ", ".join(parts) or "—"


def _constant(records: list[dict], key: str):
    values = {group_value(r, key) for r in records}
    return values.pop() if len(values) == 1 else None


def settings_sentence(records: list[dict]) -> str:
    """What every row of the table shares, in words: sampler settings, data, prior, seeds."""
    bits = []
    for key, word in (("section", "section"), ("data", "data")):
        if (v := _constant(records, key)) is not None:
            bits.append(f"{word} `{v}`")
    if (prior := _constant(records, "prior")) is not None:
        text = _constant(records, "prior_text")
        bits.append(f"prior `{prior}`" + (f" ({text})" if text and text != prior else ""))
    c, w, d = (_constant(records, k) for k in ("chains", "warmup", "draws"))
    if None not in (c, w, d):
        bits.append(f"{c} chains × ({w} warmup + {d} draws)")
    else:
        bits += [f"{v} {word}" for v, word in ((c, "chains"), (w, "warmup"), (d, "draws")) if v is not None]
    for key in ("target_accept", "max_treedepth"):
        if (v := _constant(records, key)) is not None:
            bits.append(f"{key} {v}")
    seeds = sorted({r["seed"] for r in records if r.get("seed") is not None})
    per_row = {tuple(summarise(rows)["seeds"]) for rows in groups(records).values()}
    bits.append(f"seed{'s' if len(seeds) != 1 else ''} {seeds_text(seeds)}"
                + (" (not every row has every seed: see *seeds ok*)" if len(per_row) > 1 else ""))
    return "Every row: " + ", ".join(bits) + "."


def _note(rows: list[dict], notes: Footnotes) -> str:
    labels: list[str] = []
    for r in rows:
        label = notes.cite(r)
        if label and label not in labels:
            labels.append(label)
    failed = len(rows) - len(ok_runs(rows))
    if failed and failed < len(rows):
        return f"{failed} of {len(rows)} runs: " + "; ".join(labels)
    return "; ".join(labels)


def table_markdown(records: list[dict]) -> str:
    """The settings every row shares, the table (median [IQR] over seeds), and its footnotes."""
    keys = [k for k in GROUP if k in ALWAYS or _constant(records, k) is None]
    head = ([HEADS[k] for k in keys]
            + ["seeds ok", "compile s", "warmup+draws s", "min bulk ESS", "bulk ESS/s (warmup+draws)",
               "draw phase s", "bulk ESS/s (draw phase)", "tail ESS/s (draw phase)", "ESS/grad ×1000",
               "divergences", "max R-hat", "check pass", "max abs z", "note"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = Footnotes(markdown=True)
    for key, rows in groups(records).items():
        s = summarise(rows)
        named = dict(zip(GROUP, key))
        lead = [str(named[k]) for k in keys] + [f"{s['ok']}/{s['n']}"]
        note = _note(rows, notes)
        if not s["ok"]:
            lines.append("| " + " | ".join(lead + ["—"] * 12 + [note]) + " |")
            continue
        grad = s["ess_bulk_per_grad"]
        grad = tuple(1000 * x for x in grad) if grad else None
        split = s["ess_phase"] == "sampling"
        cells = [_fmt(s["compile_s"], 2), _fmt(s["inference_s"], 2), _fmt(s["ess_bulk"], 0),
                 _fmt(s["ess_bulk_per_s_wall"], 0), _fmt(s["sampling_s"], 3) if split else "—",
                 _fmt(s["ess_bulk_per_s"], 0) if split else "—", _fmt(s["ess_tail_per_s"], 0) if split else "—",
                 _fmt(grad, 2), _fmt(s["divergences"], 0),
                 f"{s['max_rhat']:.3f}" if s["max_rhat"] is not None else "—",
                 f"{s['check'][0]}/{s['check'][1]}", _fmt(s["max_abs_z"], 1)]
        lines.append("| " + " | ".join(lead + cells + [note]) + " |")
    out = [settings_sentence(records), "", *lines]
    if len(notes):
        out += ["", notes.render()]
    return "\n".join(out)


def _cell(record: dict, key: str, fmt: str) -> str:
    v = record.get(key)
    if v is None:
        return "—"
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def format_table(records: list[dict], columns=COLUMNS, markdown: bool = False) -> str:
    """One row per run; a failed run's note is a short label and a footnote number, the footnotes
    (one line per distinct reason, with its link) follow the table."""
    notes = Footnotes(markdown=markdown)
    head = [c[1] for c in columns] + ["note"]
    rows = []
    for r in records:
        note = notes.cite(r) or ("compile cached" if r.get("compile_cached") else "")
        rows.append([_cell(r, k, f) for k, _, f in columns] + [note])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        lines += [fmt.format(*row).rstrip() for row in rows]
    if len(notes):
        lines += ["", notes.render()]
    return "\n".join(lines)
