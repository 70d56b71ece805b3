"""Observing the calls of one library function without replacing or tracing anything else: how the
engines that sample through ``pm.sample`` time the call PyMC itself times as ``sampling_time``."""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
import types
from collections.abc import Iterator

__all__ = ["function_at", "call_times"]


def function_at(where: str, engine: str) -> types.FunctionType:
    """The Python function at ``"module:function"`` (an error naming ``engine`` if it is not one)."""
    module, _, name = where.partition(":")
    fn = getattr(importlib.import_module(module), name, None)
    if not isinstance(fn, types.FunctionType):
        raise RuntimeError(
            f"{engine}: {module}.{name} is not a Python function here, so the call that PyMC times "
            "as sampling_time cannot be observed and sampling cannot be told apart from compilation"
        )
    return fn


@contextlib.contextmanager
def call_times(fn: types.FunctionType) -> Iterator[list[tuple[float, float]]]:
    """(entry, return), in time.time() seconds, of each call of ``fn`` that returns while active: seen
    through sys.monitoring's PY_START/PY_RETURN events on ``fn``'s code object alone (nothing else is
    traced, and nothing is replaced)."""
    mon = sys.monitoring
    tool = next((t for t in range(6) if mon.get_tool(t) is None), None)  # tool ids are 0..5
    if tool is None:
        raise RuntimeError("every sys.monitoring tool id is taken: the sampling call cannot be timed")
    calls: list[tuple[float, float]] = []
    entries: list[float] = []
    events = mon.events.PY_START | mon.events.PY_RETURN
    mon.use_tool_id(tool, "eight-schools-ppl timing")
    try:
        mon.register_callback(tool, mon.events.PY_START, lambda code, offset: entries.append(time.time()))
        mon.register_callback(tool, mon.events.PY_RETURN,
                              lambda code, offset, value: calls.append((entries.pop(), time.time())))
        mon.set_local_events(tool, fn.__code__, events)
        yield calls
    finally:
        mon.set_local_events(tool, fn.__code__, 0)
        mon.register_callback(tool, mon.events.PY_START, None)
        mon.register_callback(tool, mon.events.PY_RETURN, None)
        mon.free_tool_id(tool)
