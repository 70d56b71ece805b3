"""The gate's reports: JUnit XML (one testsuite, one testcase per engine x parameterisation x check)
and a markdown summary."""

from __future__ import annotations

import datetime as _dt
import platform
import xml.etree.ElementTree as ET

from .gate import CheckResult
from .thresholds import ALPHA

__all__ = ["junit_xml", "markdown_summary", "version_changes", "seed_ranges"]


def seed_ranges(seeds: list[int]) -> str:
    """[1, 2, 3, 5, 7, 8] -> '1–3, 5, 7–8'."""
    out, run = [], []
    for s in sorted(seeds):
        if run and s == run[-1] + 1:
            run.append(s)
            continue
        if run:
            out.append(f"{run[0]}–{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [s]
    if run:
        out.append(f"{run[0]}–{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def junit_xml(results: list[CheckResult], *, properties: dict | None = None, time_s: float = 0.0) -> str:
    """One testsuite 'ppl-regress', one testcase per engine x parameterisation x check."""
    fails = sum(r.status == "fail" for r in results)
    errors = sum(r.status == "error" for r in results)
    skipped = sum(r.status == "skip" for r in results)
    attrs = {"name": "ppl-regress", "tests": str(len(results)), "failures": str(fails), "errors": str(errors),
             "skipped": str(skipped), "time": f"{time_s:.3f}"}
    root = ET.Element("testsuites", attrs)
    suite = ET.SubElement(root, "testsuite", {**attrs, "hostname": platform.node(),
                                              "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")})
    if properties:
        props = ET.SubElement(suite, "properties")
        for k, v in properties.items():
            ET.SubElement(props, "property", {"name": str(k), "value": str(v)})
    for r in results:
        case = ET.SubElement(suite, "testcase", {"classname": f"ppl-regress.{r.engine}.{r.param}",
                                                 "name": r.kind, "time": "0"})
        text = f"{r.engine} {r.param} {r.kind}: {r.message}\nbaseline: {r.baseline}\nnow: {r.now}"
        if r.status == "fail":
            ET.SubElement(case, "failure", {"message": r.message, "type": f"regression.{r.kind}"}).text = text
        elif r.status == "error":
            ET.SubElement(case, "error", {"message": r.message, "type": f"harness.{r.kind}"}).text = text
        elif r.status == "skip":
            ET.SubElement(case, "skipped", {"message": r.message})
        else:
            ET.SubElement(case, "system-out").text = ("WARNING: " if r.status == "warn" else "") + text
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


_ICON = {"pass": "✅ pass", "fail": "❌ FAIL", "warn": "⚠️ warn", "skip": "➖ skip", "error": "❌ ERROR"}


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def version_changes(old: dict, new: dict) -> list[str]:
    a, b = old.get("packages", {}), new.get("packages", {})
    return [f"{p} {a.get(p)} → {b.get(p)}" for p in sorted(set(a) | set(b)) if a.get(p) != b.get(p)]


def markdown_summary(results: list[CheckResult], baseline: dict, current: dict, *, baseline_path: str = "",
                     alpha: float = ALPHA) -> str:
    failed = [r for r in results if r.failed]
    warned = [r for r in results if r.status == "warn"]
    gated = [r for r in results if r.kind in ("verdict", "ess_per_grad", "divergences") and r.status != "skip"]
    head = "❌ **regression**" if failed else "✅ **no regression**"
    lines = [f"## PPL regression gate: {head}", ""]
    lines.append(f"Baseline `{baseline_path or baseline.get('name')}` (config `{baseline['config']['name']}`, "
                 f"made {baseline.get('created')}) vs now: {len(results)} checks, {len(failed)} failed, "
                 f"{len(warned)} warnings; seeds {seed_ranges(baseline['seeds'])}; {current.get('wall_s', 0):.0f} s.")
    lines.append("")
    if failed:
        lines.append("**Failed:**")
        lines += [f"- `{r.engine}` {r.param} **{r.kind}**: {_md_cell(r.message)}" for r in failed]
        lines.append("")
    lines += ["| engine | param | check | result | baseline | now | detail |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.engine} | {r.param} | {r.kind} | {_ICON[r.status]} | {_md_cell(r.baseline)} | "
                     f"{_md_cell(r.now)} | {_md_cell(r.message)} |")
    lines.append("")
    if current.get("settings") != baseline.get("settings"):
        diffs = [f"{k} {baseline['settings'].get(k)} → {v}" for k, v in current["settings"].items()
                 if baseline["settings"].get(k) != v]
        lines += [f"**Settings differ from the baseline's** ({', '.join(diffs)}): an override, not the baseline's "
                  "configuration.", ""]
    changes = version_changes(baseline.get("environment", {}), current.get("environment", {}))
    lines.append("**Versions:** " + ("; ".join(changes) if changes else "same packages as the baseline") + ".")
    bm, nm = baseline.get("machine", {}), current.get("machine", {})
    same = (bm.get("cpu"), bm.get("cores")) == (nm.get("cpu"), nm.get("cores"))
    lines.append(f"**Machine:** baseline {bm.get('cpu')} ({bm.get('cores')} cores), now {nm.get('cpu')} "
                 f"({nm.get('cores')} cores)" + ("" if same else ": different, so time per draw is only indicative")
                 + ".")
    lines += ["", f"*Method.* Each gated statistical check (verdict, ESS per gradient, divergences) has a one-sided "
              f"false-alarm rate ≤ {alpha:g} when behaviour is unchanged; with {len(gated)} such checks here the "
              f"gate's family-wise rate is ≤ {min(1.0, len(gated) * alpha):.2g} (union bound). ESS per gradient and "
              "time per draw: Student-t prediction bound on log scale from the baseline's seed-to-seed spread. "
              "Divergences: conditional binomial test on per-chain counts, corrected for overdispersion. "
              "Verdicts: pass → fail flips beyond the reference check's own 1 % false-alarm rate. An engine that ran "
              "in the baseline and errors now fails. A same-build rerun of the same seeds reproduces the draws "
              "exactly and passes."]
    return "\n".join(lines) + "\n"
