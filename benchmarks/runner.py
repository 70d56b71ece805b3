"""Run one engine once and turn the outcome into a flat record; a failure is a record too."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from models import Prior, SchoolsData

from .diagnostics import diagnose
from .engines import RunResult, Settings, availability, get_engine


@dataclass
class Outcome:
    record: dict[str, Any]
    result: RunResult | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def base_record(engine: str, data: SchoolsData, prior: Prior, param: str, settings: Settings) -> dict:
    return {
        "engine": engine,
        "parameterization": param,
        "prior": prior.name,
        "prior_text": str(prior),
        "data": data.name,
        "J": data.J,
        **settings.to_dict(),
    }


def run_one(engine: str, data: SchoolsData, prior: Prior, param: str, settings: Settings) -> Outcome:
    """Run and diagnose; never raises for an engine's failure (the record carries the error)."""
    record = base_record(engine, data, prior, param, settings)
    # the engine's time starts before its availability check, which imports its PPL (first run only)
    t0 = time.perf_counter()
    reason = availability(engine)
    if reason is not None:
        record["error"] = f"unavailable: {reason}"
        record["engine_call_s"] = time.perf_counter() - t0
        return Outcome(record, error=record["error"])
    try:
        result = get_engine(engine).run(data, prior, param, settings)
    except Exception as e:  # noqa: BLE001 - a failing engine is recorded and the rest goes on
        record["error"] = f"{type(e).__name__}: {e}".splitlines()[0]
        record["engine_call_s"] = time.perf_counter() - t0
        return Outcome(record, error=traceback.format_exc())
    engine_call_s = time.perf_counter() - t0
    t_diag = time.perf_counter()
    d = diagnose(result.draws, settings.max_treedepth)
    diagnostics_s = time.perf_counter() - t_diag
    t = result.timings
    record.update(
        ppl=result.manifest.get("ppl"),
        ppl_version=result.manifest.get("ppl_version"),
        compile_s=t.compile_s,
        warmup_s=t.warmup_s,
        sampling_s=t.sampling_s,
        inference_s=t.inference_s,
        total_s=t.total_s,
        compile_cached=t.compile_cached,
        **d._asdict(),
        engine_call_s=engine_call_s,
        diagnostics_s=diagnostics_s,
        error=None,
    )
    return Outcome(record, result=result)
