"""The benchmark matrix: engines x parameterisations x priors x data x seeds x settings.

A matrix is read from a TOML file (see benchmarks/configs/) and CLI flags. Each run ends in one
record written atomically to ``<outdir>/records/<key>.json``: those files are the crash-safe truth,
so a crash or a killed matrix loses nothing finished and ``--resume`` continues where it stopped.
``runs.csv`` and ``runs.json`` are rewritten (atomically) from the records held in memory at most
every ``TABLE_INTERVAL_S`` seconds and whenever the matrix stops, however it stops; rewriting them
after every run made the harness quadratic in the number of runs. An engine that raises, times out
or is missing is an error row, and the matrix goes on. ``timing.json`` accounts for the matrix's
wall time: engine calls, diagnostics and reference checks, and the harness (everything else).
"""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from models import PRESETS, Prior, SchoolsData, load_data, make_prior, rubin, synthetic
from models.logdensity import PARAMETERIZATIONS

from .engines import ENGINES, Settings
from .environment import environment, note_revision_drift
from .io import write_json, write_netcdf, write_text
from .runner import run_one

#: ESS/s: ``ess_bulk_per_s_wall`` divides by the wall time of warmup + draws, measured alike for every
#: engine (the comparable figure); ``ess_bulk_per_s``/``ess_tail_per_s`` divide by the draw phase where
#: the engine reports one (``ess_phase`` says which), else by warmup + draws.
RECORD_FIELDS = [
    "key", "section", "engine", "ppl", "ppl_version", "parameterization", "prior", "prior_text", "data", "J",
    "seed", "chains", "warmup", "draws", "target_accept", "max_treedepth",
    "compile_s", "compile_cached", "first_in_process", "warmup_s", "sampling_s", "inference_s", "total_s",
    "min_ess_bulk", "min_ess_tail", "ess_bulk_per_s_wall", "ess_bulk_per_s", "ess_tail_per_s", "ess_phase",
    "gradient_evals", "ess_bulk_per_grad", "divergences", "max_rhat", "min_bfmi", "treedepth_hits",
    "mean_step_size", "check_passed", "check_max_abs_z", "check_failed", "engine_call_s", "diagnostics_s",
    "harness_s", "error",
]
#: runs.csv/runs.json are rewritten at most this often while a matrix runs (and always at its end)
TABLE_INTERVAL_S = 30.0


class MatrixError(ValueError):
    """A bad matrix configuration; the message names the field and value."""


@dataclass(frozen=True)
class RunSpec:
    section: str
    engine: str
    param: str
    prior: str
    data: str
    seed: int
    settings: Settings

    @property
    def key(self) -> str:
        s = self.settings
        raw = (f"{self.section}__{self.engine}__{self.param}__{self.prior}__{self.data}__s{self.seed}"
               f"__c{s.chains}w{s.warmup}d{s.draws}ta{s.target_accept:g}td{s.max_treedepth}")
        return re.sub(r"[^A-Za-z0-9_.=-]+", "-", raw)


@dataclass
class Section:
    name: str
    engines: list[str]
    parameterizations: list[str]
    priors: list[str]
    data: list[str]
    seeds: list[int]
    settings: list[Settings] = field(default_factory=lambda: [Settings()])
    save_draws: bool = False

    def runs(self) -> Iterator[RunSpec]:
        for d in self.data:
            for prior in self.priors:
                for settings in self.settings:
                    for engine in self.engines:
                        for param in self.parameterizations:
                            for seed in self.seeds:
                                yield RunSpec(self.name, engine, param, prior, d, seed,
                                              Settings(**{**settings.to_dict(), "seed": seed}))


def resolve_data(spec: str) -> SchoolsData:
    """``rubin``, ``synthetic:J=64[:seed=0][:tau=5][:mu=0]``, or a path to a CSV/JSON file."""
    if spec == "rubin":
        return rubin()
    if spec.startswith("synthetic"):
        kw = dict(part.split("=", 1) for part in spec.split(":")[1:])
        unknown = set(kw) - {"J", "seed", "tau", "mu"}
        if unknown or "J" not in kw:
            raise MatrixError(f"data = {spec!r}: expected synthetic:J=N[:seed=S][:tau=T][:mu=M]")
        return synthetic(int(kw["J"]), seed=int(kw.get("seed", 0)), tau=float(kw.get("tau", 5.0)),
                         mu=float(kw.get("mu", 0.0)))
    return load_data(spec)


def resolve_prior(spec: str) -> Prior:
    """A preset name, or ``mu=TEXT;tau=TEXT``."""
    if spec in PRESETS:
        return PRESETS[spec]
    if spec.startswith("mu=") and ";tau=" in spec:
        mu, tau = spec[3:].split(";tau=", 1)
        return make_prior(mu_text=mu, tau_text=tau)
    return make_prior(spec)  # raises naming the unknown preset


def _as_list(v, field_name: str) -> list:
    if isinstance(v, list):
        return v
    if isinstance(v, (str, int, float)):
        return [v]
    raise MatrixError(f"{field_name} = {v!r}: expected a value or a list")


def parse_sections(config: dict, engines: list[str] | None = None, seeds: int | None = None) -> list[Section]:
    """Sections from a parsed TOML: top-level keys are defaults, ``[section.NAME]`` tables override."""
    defaults = {k: v for k, v in config.items() if k != "section"}
    tables = config.get("section") or {"main": {}}
    sections = []
    for name, table in tables.items():
        merged = {**defaults, **table}
        unknown = set(merged) - {"engines", "parameterizations", "priors", "data", "seeds", "settings",
                                 "draws", "save_draws", "description"}
        if unknown:
            raise MatrixError(f"section {name!r}: unknown keys {sorted(unknown)}")
        eng = engines or _as_list(merged.get("engines", list(ENGINES)), "engines")
        for e in eng:
            if e not in ENGINES:
                raise MatrixError(f"engines: engine = {e!r} is unknown; engines: {', '.join(ENGINES)}")
        params = _as_list(merged.get("parameterizations", list(PARAMETERIZATIONS)), "parameterizations")
        for p in params:
            if p not in PARAMETERIZATIONS:
                raise MatrixError(f"parameterizations: {p!r} must be one of {PARAMETERIZATIONS}")
        priors = _as_list(merged.get("priors", ["default"]), "priors")
        for p in priors:
            resolve_prior(p)
        data = _as_list(merged.get("data", ["rubin"]), "data")
        seed_list = list(range(1, seeds + 1)) if seeds else _as_list(merged.get("seeds", [1, 2, 3]), "seeds")
        base = merged.get("settings", {})
        try:
            draws_list = _as_list(merged.get("draws", base.get("draws", Settings().draws)), "draws")
            settings = [Settings(**{**base, "draws": int(d)}) for d in draws_list]
        except TypeError as e:
            raise MatrixError(f"section {name!r} settings = {base!r}: {e}") from None
        sections.append(Section(name, eng, params, priors, data, [int(s) for s in seed_list], settings,
                                bool(merged.get("save_draws", False))))
    return sections


def load_config(path: Path, **overrides) -> list[Section]:
    try:
        config = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MatrixError(f"config = {str(path)!r}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise MatrixError(f"config = {str(path)!r}: invalid TOML ({e})") from None
    return parse_sections(config, **overrides)


class RunTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float | None):
    """Raise RunTimeout in the main thread after ``seconds`` (SIGALRM; a no-op where unavailable).

    A PPL stuck inside compiled code is interrupted when control returns to Python."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def handler(signum, frame):
        raise RunTimeout(f"run exceeded the per-run limit of {seconds:g} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _per_s(ess: float | None, seconds: float | None) -> float | None:
    return ess / seconds if ess is not None and seconds else None


def finish_record(record: dict, check_verdict, spec: RunSpec, first_in_process: bool, harness_s: float) -> dict:
    rec = {"key": spec.key, "section": spec.section, "seed": spec.seed, **record,
           "first_in_process": first_in_process, "harness_s": harness_s}
    if not rec.get("error"):
        phase_s = rec.get("sampling_s")
        rec["ess_phase"] = "sampling" if phase_s is not None else "warmup+sampling"
        phase_s = phase_s if phase_s is not None else rec["inference_s"]
        rec["ess_bulk_per_s"] = _per_s(rec["min_ess_bulk"], phase_s)
        rec["ess_tail_per_s"] = _per_s(rec["min_ess_tail"], phase_s)
        rec["ess_bulk_per_grad"] = _per_s(rec["min_ess_bulk"], rec["gradient_evals"])
        # the one phase every engine measures alike: wall time of warmup + draws (compile excluded)
        rec["ess_bulk_per_s_wall"] = _per_s(rec["min_ess_bulk"], rec["inference_s"])
    if check_verdict is not None:
        rec["check_passed"] = check_verdict.passed
        rec["check_max_abs_z"] = check_verdict.max_abs_z
        rec["check_failed"] = ";".join(check_verdict.failed[:8])
    return {k: rec.get(k) for k in RECORD_FIELDS}


def read_records(outdir: Path) -> dict[str, dict]:
    """Every finished run's record, by key, from ``<outdir>/records/``."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((Path(outdir) / "records").glob("*.json"))}


def write_tables(outdir: Path, records: dict[str, dict] | None = None) -> list[dict]:
    """runs.csv and runs.json, ordered by key, from ``records`` (read from disk when None)."""
    records = read_records(outdir) if records is None else records
    records = [records[k] for k in sorted(records)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RECORD_FIELDS)
    w.writeheader()
    w.writerows(records)
    write_text(outdir / "runs.csv", buf.getvalue())
    write_json(outdir / "runs.json", records)
    return records


class ReferenceCache:
    def __init__(self) -> None:
        self._cache: dict = {}

    def get(self, data: SchoolsData, prior: Prior):
        from reference import posterior

        key = (data, prior)
        if key not in self._cache:
            self._cache[key] = posterior(data, prior)
        return self._cache[key]


def run_matrix(sections: list[Section], outdir: Path, *, resume: bool = False, timeout_s: float | None = 600,
               progress=None) -> list[dict]:
    """Run every spec; returns all records (old ones too, with --resume)."""
    outdir = Path(outdir)
    records_dir = outdir / "records"
    if records_dir.exists() and any(records_dir.iterdir()) and not resume:
        raise MatrixError(f"outdir = {str(outdir)!r}: already holds records; pass --resume or another run id")
    records_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    env = environment()
    write_json(outdir / "environment.json", env)
    specs = [s for sec in sections for s in sec.runs()]
    # draws are kept for each section's first seed only: enough for the report's figures
    save = {sec.name: sec.seeds[0] if sec.save_draws else None for sec in sections}
    refs = ReferenceCache()
    seen_engines: set[str] = set()
    data_cache: dict[str, SchoolsData] = {}
    records = read_records(outdir)
    done_before = len(records)
    account = {"engine_call_s": 0.0, "diagnostics_s": 0.0, "runs": 0}
    try:
        _run_specs(specs, outdir, records, save, refs, seen_engines, data_cache, timeout_s, progress, account)
    finally:
        write_tables(outdir, records)
        _write_timing(outdir, t_start, account, done_before)
        drifted = note_revision_drift(env)
        if drifted is not env:
            write_json(outdir / "environment.json", drifted)
    return [records[k] for k in sorted(records)]


def _write_timing(outdir: Path, t_start: float, account: dict, done_before: int) -> None:
    """Append this session's wall-time account to timing.json (one entry per run_matrix call)."""
    path = outdir / "timing.json"
    sessions = json.loads(path.read_text())["sessions"] if path.exists() else []
    wall = time.perf_counter() - t_start
    inside = account["engine_call_s"] + account["diagnostics_s"]
    sessions.append({"runs": account["runs"], "records_before": done_before, "wall_s": wall,
                     "engine_call_s": account["engine_call_s"], "diagnostics_s": account["diagnostics_s"],
                     "harness_s": max(0.0, wall - inside)})
    totals = {k: sum(s[k] for s in sessions) for k in ("runs", "wall_s", "engine_call_s", "diagnostics_s",
                                                         "harness_s")}
    totals["harness_fraction"] = totals["harness_s"] / totals["wall_s"] if totals["wall_s"] else None
    write_json(path, {"note": "wall time of run_matrix (environment, every run, its record, the tables) = "
                              "engine calls + diagnostics and reference checks + harness (the rest)",
                      "sessions": sessions, "totals": totals})


def _run_specs(specs, outdir, records, save, refs, seen_engines, data_cache, timeout_s, progress, account) -> None:
    from reference.check import check

    records_dir = outdir / "records"
    last_tables = time.perf_counter()
    for i, spec in enumerate(specs, 1):
        path = records_dir / f"{spec.key}.json"
        if path.exists():
            if progress:
                progress(i, len(specs), spec, "done earlier")
            continue
        t0 = time.perf_counter()
        data = data_cache.setdefault(spec.data, resolve_data(spec.data))
        prior = resolve_prior(spec.prior)
        first = spec.engine not in seen_engines
        seen_engines.add(spec.engine)
        try:
            with time_limit(timeout_s):
                outcome = run_one(spec.engine, data, prior, spec.param, spec.settings)
        except RunTimeout as e:
            from .runner import base_record

            outcome = None
            record = {**base_record(spec.engine, data, prior, spec.param, spec.settings), "error": str(e)}
        else:
            record = outcome.record
        # the engine call's wall time, finished or failed (a failing engine's time is not the harness's)
        engine_s = record.get("engine_call_s") or 0.0
        if outcome is None:  # timed out outside the engine call
            engine_s = record["engine_call_s"] = time.perf_counter() - t0
        verdict = None
        if outcome is not None and outcome.result is not None:
            t_check = time.perf_counter()
            verdict = check(outcome.result.draws, refs.get(data, prior), J=data.J, tau_fixed=prior.tau_fixed)
            record["diagnostics_s"] = record.get("diagnostics_s", 0.0) + time.perf_counter() - t_check
            if save[spec.section] == spec.seed:
                write_netcdf(outcome.result.draws, outdir / "draws" / f"{spec.key}.nc")
            manifest_path = outdir / "manifests" / f"{spec.engine}-{spec.param}.json"
            if not manifest_path.exists():  # what each engine ran with, for FAIRNESS.md
                write_json(manifest_path, outcome.result.manifest)
        # harness = everything outside the engine call, arviz-stats diagnostics and the reference check
        harness_s = max(0.0, time.perf_counter() - t0 - engine_s - (record.get("diagnostics_s") or 0.0))
        rec = finish_record(record, verdict, spec, first, harness_s)
        write_json(path, rec)
        records[spec.key] = rec
        account["runs"] += 1
        account["engine_call_s"] += engine_s
        account["diagnostics_s"] += record.get("diagnostics_s") or 0.0
        if time.perf_counter() - last_tables >= TABLE_INTERVAL_S:
            write_tables(outdir, records)
            last_tables = time.perf_counter()
        if progress:
            progress(i, len(specs), spec, record.get("error") or "ok")


def point_latest(results: Path, run_dir: Path) -> None:
    """results/latest -> run_dir (a relative symlink, replaced atomically)."""
    link = Path(results) / "latest"
    tmp = Path(results) / ".latest.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(Path(run_dir).resolve().relative_to(Path(results).resolve()))
    tmp.replace(link)
