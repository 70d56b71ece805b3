"""``python -m benchmarks approx``: approximate inference scored against the exact posterior (issue 19).

Every approximator of the registry (``benchmarks.approx``) x the sections of
``benchmarks/configs/approx.toml`` (Rubin's data in both parameterisations; the sweep's data specs
across informativeness, J = 8 and 64) x seeds, through the one run path: each fit runs in the
worker, is scored against the exact reference for its own data and reweighted by PSIS. Writes
``<results>/<run-id>/`` (default ``results/runs/approx/``; staged in ``<run-id>.partial`` and swapped
in whole): the records, ``approx.csv``, the figures and APPROX.md (:mod:`benchmarks.reporting.approx`).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

from models.errors import UsageError
from models.problem import PARAMETERIZATIONS

from ..approx import APPROXIMATORS, ApproxSettings
from ..reporting.approx import console_summary, render_approx
from ..runpath import check_run_id, remove_created
from ..runpath.approx_spec import ApproxSpec
from ..runpath.progress import fmt_duration
from ..runpath.spec import data_for, prior_for
from .common import add_run_options, run_specs
from .config import CONFIGS, ConfigError, as_list, check_parameterizations, check_seeds, read_toml

__all__ = ["HELP", "configure", "main", "CONFIG", "ApproxPlan", "load_approx"]

CONFIG = CONFIGS / "approx.toml"
HELP = "approximate inference (ADVI, Pathfinder, Laplace, SVI) scored against the exact posterior"
KEYS = {"methods", "parameterizations", "priors", "data", "seeds", "draws", "description", "save_draws"}


@dataclass
class ApproxPlan:
    specs: list[ApproxSpec]
    methods: list[str]
    seeds: list[int]
    sections: dict[str, str]  # name -> description


def _methods(names, where: str) -> list[str]:
    names = as_list(names, where)
    if not names:
        raise ConfigError(f"{where} = []: names no method")
    for n in names:
        if n not in APPROXIMATORS:
            raise ConfigError(f"{where}: method = {n!r} is unknown; approximators: {', '.join(APPROXIMATORS)}")
    return [str(n) for n in names]


def load_approx(path: Path = CONFIG, *, methods: list[str] | None = None, seeds: int | None = None,
                sections: list[str] | None = None) -> ApproxPlan:
    """Every spec of the job, each method, prior, data spec and setting checked before anything runs."""
    config = read_toml(path)
    tables = config.pop("section", None) or {"main": {}}
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise ConfigError(f"{path}: section = {tables!r}: expected tables [section.NAME]")
    unknown = set(config) - KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    for s in sections or []:
        if s not in tables:
            raise UsageError(f"--sections: section = {s!r} is not in {path} ({', '.join(tables)})")
    specs, described = [], {}
    for name, table in tables.items():
        if sections and name not in sections:
            continue
        merged = {**config, **table}
        unknown = set(merged) - KEYS
        if unknown:
            raise ConfigError(f"{path}: section {name!r}: unknown keys {sorted(unknown)}")
        chosen = methods or _methods(merged.get("methods", list(APPROXIMATORS)), f"section {name!r} methods")
        params = check_parameterizations(merged.get("parameterizations", list(PARAMETERIZATIONS)),
                                         f"section {name!r} parameterizations")
        priors = [str(p) for p in as_list(merged.get("priors", ["default"]), "priors")]
        data = [str(d) for d in as_list(merged.get("data", ["rubin"]), "data")]
        for p in priors:
            prior_for(p)
        for d in data:
            data_for(d)
        seed_list = list(range(1, seeds + 1)) if seeds else check_seeds(merged.get("seeds", [1, 2, 3]))
        draws = merged.get("draws", 1000)
        save = merged.get("save_draws", False)
        if not isinstance(save, bool):
            raise ConfigError(f"{path}: section {name!r} save_draws = {save!r}: expected true or false")
        described[name] = str(merged.get("description", ""))
        for d in data:
            for p in priors:
                for m in chosen:
                    for param in params:
                        for i, seed in enumerate(seed_list):
                            specs.append(ApproxSpec(engine=m, parameterization=param, prior=p, data=d,
                                                    settings=ApproxSettings(draws=draws, seed=seed), section=name,
                                                    save_draws=save and i == 0))
    if not specs:
        raise UsageError(f"{path}: the chosen sections name no run")
    return ApproxPlan(specs, methods or sorted({s.engine for s in specs}, key=list(APPROXIMATORS).index),
                      seed_list, described)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", help="comma-separated subset of the approximators")
    p.add_argument("--seeds", type=int, help="use seeds 1..N (default: the config's, 1-3)")
    p.add_argument("--sections", help="comma-separated subset of the config's sections (rubin, sweep-J8, sweep-J64)")
    p.add_argument("--config", type=Path, default=CONFIG, help=f"configuration (default: {CONFIG})")
    p.add_argument("--run-id", default="approx", help="folder name under --results (default: approx)")
    add_run_options(p)


def _names(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise UsageError(f"{option} = {text!r}: an empty name")
    return names


def main(a: argparse.Namespace) -> int:
    if a.seeds is not None and a.seeds < 1:
        raise UsageError(f"--seeds = {a.seeds}: must be >= 1")
    methods = _names(a.methods, "--methods")
    if methods:
        _methods(methods, "--methods")
    plan = load_approx(a.config, methods=methods, seeds=a.seeds, sections=_names(a.sections, "--sections"))
    run_id = check_run_id(a.run_id)
    results = Path(a.results)
    final, staging = results / run_id, results / f"{run_id}.partial"
    t0 = time.perf_counter()

    def finish(store, records) -> None:  # still holding the staging folder's lock
        store.write_json("approx.json", {"config": str(a.config), "methods": plan.methods, "seeds": plan.seeds,
                                         "sections": plan.sections, "cores": os.cpu_count()})
        render_approx(staging)
        remove_created(final)
        os.replace(staging, final)  # the finished folder is swapped in whole, never half-written

    records = run_specs("approx", plan.specs, staging, a, fresh=True, finish=finish)
    print()
    print(console_summary(final))
    ok = [r for r in records if not r.get("error")]
    print(f"\napprox: {len(records)} fits ({len(ok)} finished) in {fmt_duration(time.perf_counter() - t0)} wall; "
          f"{final / 'APPROX.md'}")
    if not ok:
        raise UsageError(f"approx: no fit finished (every method unavailable or failing here; see {final / 'approx.csv'})")
    return 0
