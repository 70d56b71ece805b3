"""Why a run has no numbers, said once: a short label in the table cell, one footnote with the reason and link.

A record's ``error_kind`` is one of ``KINDS`` (null when the run finished). Records written before the
run path recorded it are classified from their ``error`` text: ``unavailable: ...`` is unavailable, a
known upstream break (``benchmarks.engines.known_break``) is known-break with its issue link, a per-run
time limit is timeout. The raw exception text stays in runs.json; tables show only the label, and
:class:`Footnotes` gives each distinct reason one numbered line, never cut mid-word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..engines import known_break

#: every value a record's ``error_kind`` takes (None: the run finished)
KINDS = ("unavailable", "known-break", "error", "timeout", "crashed")

#: the words a table cell says for each kind; markdown tables use LONG, the console table SHORT
LONG = {"unavailable": "unavailable", "known-break": "known upstream break", "error": "failed",
        "timeout": "timed out", "crashed": "crashed"}
SHORT = {"unavailable": "unavailable", "known-break": "known break", "error": "failed",
         "timeout": "timeout", "crashed": "crashed"}

#: longest reason a footnote prints; longer ones end at a clause or word boundary with an ellipsis
REASON_CHARS = 200


@dataclass(frozen=True)
class Failure:
    kind: str
    reason: str  # one line, at most REASON_CHARS
    link: str | None = None


def error_kind(rec: dict) -> str | None:
    """The record's ``error_kind``, or for an older record the kind its error text implies."""
    if rec.get("error_kind"):
        return rec["error_kind"]
    text = rec.get("error") or ""
    if not text:
        return None
    if text.startswith("unavailable"):
        return "unavailable"
    if known_break(rec.get("engine") or "", text):
        return "known-break"
    if text.startswith("timeout") or "exceeded the per-run limit" in text:
        return "timeout"
    if text.startswith("crashed"):
        return "crashed"
    return "error"


def brief(text: str, limit: int = REASON_CHARS) -> str:
    """The first line of ``text``, at most ``limit`` characters: a longer line ends at its last clause
    boundary (``" ("``, ``"; "``, ``", "``, ``". "``) or else word boundary before the limit, with "…",
    never inside a backtick pair."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    if len(line) <= limit:
        return line
    head = line[:limit]
    cut = max(head.rfind(sep) for sep in (" (", "; ", ", ", ". "))
    if cut < limit // 2:
        cut = head.rfind(" ")
    if cut <= 0:
        cut = limit
    out = head[:cut].rstrip(" ,;:(")
    if out.count("`") % 2:
        out = out[:out.rfind("`")].rstrip(" ,;:(")
    return out + " …"


def failure(rec: dict) -> Failure | None:
    """Why ``rec`` has no numbers, or None when it finished."""
    kind = error_kind(rec)
    if kind is None:
        return None
    text = rec.get("error") or ""
    link = rec.get("error_link")
    reason = ""
    if kind == "known-break" and (hit := known_break(rec.get("engine") or "", text)):
        reason, link = hit.summary, link or hit.upstream
    if not reason:
        reason = text.removeprefix("unavailable:").strip() if kind == "unavailable" else text
        reason = re.sub(rf"^{re.escape(rec.get('engine') or '')}: ", "", reason) if rec.get("engine") else reason
    return Failure(kind, brief(reason) or kind, link)


def issue_name(link: str) -> str:
    """``https://github.com/o/r/issues/7`` -> ``o/r#7``; anything else unchanged."""
    m = re.match(r"https?://github\.com/([^/]+/[^/]+)/(?:issues|pull)/(\d+)", link or "")
    return f"{m.group(1)}#{m.group(2)}" if m else link


@dataclass
class Footnotes:
    """Numbered reasons, one per distinct (kind, reason, link), in the order first cited."""

    markdown: bool = True
    _index: dict[Failure, int] = field(default_factory=dict)
    _engines: dict[Failure, list[str]] = field(default_factory=dict)

    def cite(self, rec: dict) -> str:
        """The cell text for a failed record (e.g. ``known upstream break [1]``); "" when it finished."""
        f = failure(rec)
        if f is None:
            return ""
        n = self._index.setdefault(f, len(self._index) + 1)
        engines = self._engines.setdefault(f, [])
        if rec.get("engine") and rec["engine"] not in engines:
            engines.append(rec["engine"])
        return f"{(LONG if self.markdown else SHORT)[f.kind]} [{n}]"

    def __len__(self) -> int:
        return len(self._index)

    def lines(self) -> list[str]:
        out = []
        for f, n in self._index.items():
            who = ", ".join(self._engines.get(f, [])) or "—"
            reason = f.reason.replace("|", "/") if self.markdown else f.reason
            text = f"[{n}] {who} ({LONG[f.kind]}): {reason}"
            if f.link:
                text += f" ({f'[{issue_name(f.link)}]({f.link})' if self.markdown else f.link})"
            out.append(text)
        return out

    def render(self) -> str:
        """The footnotes as text: a markdown list, or plain lines for a terminal."""
        return "\n".join(f"- {line}" if self.markdown else line for line in self.lines())
