"""Engines from outside the suite: ``EIGHT_SCHOOLS_EXTRA_ENGINES="name=module:ATTR[@ppl][#runtime],..."``.

A PPL team can gate a sampler that is not (yet) in the registry (or replace a registered one by
its development version), and the test-suite can register stand-in engines, without editing
``benchmarks/engines``: each entry names an object implementing
:class:`benchmarks.engines.Engine`, importable where the runs execute (the worker's PYTHONPATH).
The variable is read by every command at start and by every worker process, so a matrix can name
these engines like any other. An extra engine may declare its own upstream breaks
(``known_breaks``: a tuple of :class:`benchmarks.engines.KnownBreak`); ``#runtime`` is the registry's
``EngineEntry.runtime`` (what its compiled code runs on), which a replaced engine otherwise keeps.
"""

from __future__ import annotations

import os
import re

from models.errors import UsageError

from ..engines import ENGINES, EngineEntry

__all__ = ["ENV_VAR", "register_extra_engines", "register_from_env"]

ENV_VAR = "EIGHT_SCHOOLS_EXTRA_ENGINES"
_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][\w.-]*)=(?P<target>[\w.]+:\w+(?:\[[\w-]+\])?)(?:@(?P<ppl>[\w.-]+))?"
                    r"(?:#(?P<runtime>[\w.-]+))?$")


def register_extra_engines(text: str) -> list[str]:
    """Add every ``name=module:ATTR[@ppl][#runtime]`` of ``text`` to the registry; returns the names added."""
    added = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        m = _ENTRY.match(part)
        if m is None:
            raise UsageError(f"{ENV_VAR}: entry {part!r} is malformed; expected name=module:ATTR[@ppl][#runtime]")
        name = m["name"]
        old = ENGINES.get(name)
        if old is not None and old.target == m["target"] and m["runtime"] in (None, old.runtime):
            continue
        # a registered name may be replaced: a PPL team gating its development build of a sampler
        ppl = m["ppl"] or (old.ppl if old is not None else name)
        runtime = m["runtime"] or (old.runtime if old is not None else "")
        ENGINES[name] = EngineEntry(m["target"], ppl, "", runtime=runtime)
        added.append(name)
    return added


def register_from_env() -> list[str]:
    return register_extra_engines(os.environ.get(ENV_VAR, ""))
