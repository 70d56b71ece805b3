"""Run a list of specs through an executor into a results folder: the loop every job uses.

Each finished run becomes one record in the store (the client is the folder's one writer); a run
whose worker timed out or crashed is a record of that kind, and the matrix goes on with a fresh
worker. An engine that is unavailable, or fails with a registered upstream break, is answered
once: its later specs get the same error without being run (``answered_by`` names the run that
answered), so a broken engine costs one run, not one per seed.

``timing.json`` accounts for the matrix's wall time (one entry per session, ``--resume`` adds one):
engine calls, diagnostics and reference checks, the worker round trip, and the harness (the rest);
and the ratio of the wall time to what the engines themselves need: their warmup + sampling time
plus one compile per distinct program (the first run of each program's compile_s).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable

from models.errors import UsageError

from .environment import environment, note_revision_drift
from .executors import Done, Executor
from .progress import Progress
from .spec import RunSpec
from .store import ResultsStore

__all__ = ["run_matrix", "record_from_done", "engine_budget"]

#: error kinds after which an engine's remaining specs are answered without running them
ANSWER_ONCE = ("unavailable", "known-break")


def record_from_done(done: Done) -> tuple[dict, dict | None, bytes | None]:
    """(record, manifest, draws NetCDF bytes) from an executor's result (the record keeps the
    reference check's every z-score under ``checks`` when the spec asked for them)."""
    spec = done.spec
    if done.reply is not None:
        rec = dict(done.reply["record"])
        manifest = done.reply.get("manifest")
        draws = base64.b64decode(done.reply["draws_nc"]) if done.reply.get("draws_nc") else None
        if done.reply.get("checks") is not None:
            rec["checks"] = done.reply["checks"]
    else:
        rec = _spec_fields(spec)
        rec.update(error=str(done.lost), error_kind=done.lost.kind, engine_call_s=done.wall_s)
        manifest, draws = None, None
    rec["worker_s"] = done.wall_s
    inside = sum(rec.get(k) or 0.0 for k in ("engine_call_s", "diagnostics_s", "check_s"))
    rec["harness_s"] = max(0.0, done.wall_s - inside)
    rec.pop("traceback", None)
    return rec, manifest, draws


def _spec_fields(spec: RunSpec) -> dict:
    w = spec.resolved()
    return {"key": spec.key, "digest": spec.digest, "section": spec.section, "engine": spec.engine,
            "parameterization": spec.parameterization, "prior": spec.prior, "prior_text": w["prior"]["text"],
            "data": w["data"]["name"], "data_spec": spec.data, "sigma_scale": w["data"]["sigma_scale"],
            "J": len(w["data"]["y"]), **spec.settings.to_dict(), "error": None,
            **({"kind": w["kind"]} if "kind" in w else {})}


def _answered(spec: RunSpec, by: dict) -> dict:
    rec = _spec_fields(spec)
    rec.update(error=by["error"], error_kind=by["error_kind"], error_link=by.get("error_link"),
               engine_call_s=0.0, worker_s=0.0, harness_s=0.0, machine=by.get("machine"),
               answered_by=by["key"])
    return rec


def engine_budget(records: Iterable[dict]) -> dict:
    """What the engines themselves need: warmup + sampling of every finished run, plus one compile per
    distinct program (the compile_s of its first run, in key order)."""
    inference, compiles = 0.0, {}
    for r in sorted(records, key=lambda r: r["key"]):
        if r.get("error"):
            continue
        if r.get("kind") == "approx":  # an approximation's own time: its optimisation and its draws
            inference += (r.get("fit_s") or 0.0) + (r.get("draw_s") or 0.0)
            program = (r["engine"], r["parameterization"], r["prior"], r["J"], "approx")
        else:
            inference += r.get("inference_s") or 0.0
            program = (r["engine"], r["parameterization"], r["prior"], r["J"], r["chains"], r["warmup"], r["draws"],
                       r["target_accept"], r["max_treedepth"], r.get("device") or "cpu", str(r.get("options") or ""))
        compiles.setdefault(program, r.get("compile_s") or 0.0)
    return {"inference_s": inference, "distinct_programs": len(compiles),
            "distinct_compile_s": sum(compiles.values()), "budget_s": inference + sum(compiles.values())}


def run_matrix(specs: list[RunSpec], store: ResultsStore, executor: Executor, *,
               progress: Progress | None = None, timeout_s: float | None = None,
               on_record: Callable[[dict, dict | None], None] | None = None) -> list[dict]:
    """Run every spec not already in ``store``; returns every record (old ones too, with --resume)."""
    keys = [s.key for s in specs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise UsageError(f"two specs of this matrix are the same run: {dup}")
    # the wall time counts from the executor's start: its workers' start-up is the matrix's time
    t_start = executor.created
    env = environment(executor=executor.describe())
    store.write_json("environment.json", env)
    todo = [s for s in specs if not store.has(s.key)]
    done_before = len(specs) - len(todo)
    if progress:
        progress.start(len(specs), done_before)
    answered: dict[str, dict] = {}
    account = {"runs": 0, "engine_call_s": 0.0, "diagnostics_s": 0.0, "worker_s": 0.0}
    queue = list(todo)
    in_flight = 0
    try:
        while queue or in_flight:
            while queue and in_flight < executor.capacity:
                spec = queue.pop(0)
                if spec.engine in answered:
                    rec = store.put(_answered(spec, answered[spec.engine]))
                    _tick(progress, spec, rec, on_record, None)
                    continue
                executor.submit(spec, spec.wire(timeout_s=timeout_s))
                in_flight += 1
            if not in_flight:
                break
            done = executor.next_done()
            in_flight -= 1
            rec, manifest, draws = record_from_done(done)
            rec = store.put(rec, manifest=manifest, draws_nc=draws, checks=rec.pop("checks", None))
            if rec.get("error_kind") in ANSWER_ONCE:
                answered.setdefault(done.spec.engine, rec)
            account["runs"] += 1
            account["engine_call_s"] += rec.get("engine_call_s") or 0.0
            account["diagnostics_s"] += (rec.get("diagnostics_s") or 0.0) + (rec.get("check_s") or 0.0)
            account["worker_s"] += done.wall_s
            _tick(progress, done.spec, rec, on_record, manifest)
    finally:
        if progress:
            progress.close()
        records = store.write_tables()
        _write_timing(store, t_start, account, done_before, records, executor.capacity)
        drifted = note_revision_drift(env)
        if drifted is not env:
            store.write_json("environment.json", drifted)
    return records


def _tick(progress, spec, rec, on_record, manifest) -> None:
    if on_record:
        on_record(rec, manifest)
    if progress:
        if rec.get("answered_by"):  # the reason was printed once, with the run that found it
            status = f"not run ({rec.get('error_kind')}, as above)"
        elif rec.get("error"):
            status = f"{rec.get('error_kind') or 'error'}: {rec['error'][:90]}"
            if rec.get("error_link"):
                status += f" ({rec['error_link']})"
        else:
            status = "ok (reference check FAILED)" if rec.get("check_passed") is False else "ok"
        progress.advance(spec.label(), status)


def _write_timing(store: ResultsStore, t_start: float, account: dict, done_before: int,
                  records: list[dict], parallel: int = 1) -> None:
    path = store.run_dir / "timing.json"
    sessions = json.loads(path.read_text())["sessions"] if path.exists() else []
    wall = time.perf_counter() - t_start
    inside = account["engine_call_s"] + account["diagnostics_s"]
    sessions.append({"runs": account["runs"], "records_before": done_before, "wall_s": wall, "parallel": parallel,
                     "engine_call_s": account["engine_call_s"], "diagnostics_s": account["diagnostics_s"],
                     "worker_round_trip_s": account["worker_s"],
                     "harness_s": max(0.0, wall - inside)})
    totals = {k: sum(s[k] for s in sessions) for k in ("runs", "wall_s", "engine_call_s", "diagnostics_s",
                                                         "harness_s")}
    totals["harness_fraction"] = totals["harness_s"] / totals["wall_s"] if totals["wall_s"] else None
    totals["parallel"] = max(s.get("parallel", 1) for s in sessions)
    if totals["parallel"] > 1:  # runs overlapped: sums of their times exceed the wall time, no harness figure
        totals["harness_s"] = totals["harness_fraction"] = None
    budget = engine_budget(records)
    totals.update(budget)
    totals["wall_over_budget"] = totals["wall_s"] / budget["budget_s"] if budget["budget_s"] else None
    store.write_json("timing.json", {
        "note": "wall time of the matrix (environment, every run, its record, the tables) = engine calls + "
                "diagnostics and reference checks + harness (the rest: worker start-up and messages, "
                "writing records). budget_s = the engines' own warmup + sampling time + one compile per "
                "distinct program; wall_over_budget = wall_s / budget_s. With parallel > 1 (Dask workers) runs "
                "overlap: engine and diagnostics times are sums over the workers and the harness is not separable",
        "sessions": sessions, "totals": totals})
