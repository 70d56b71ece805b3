"""``python -m benchmarks chains``: samplers beyond four NUTS chains (issue 18).

Three parts, each an ordinary matrix section run through the one run path and checked against the
exact reference (``benchmarks/configs/chains.toml``):

- ``scaling``: the many-chain samplers (group "chains" of the registry) at each number of chains in
  ``counts`` (up to each engine's ``max_chains``), short chains (``warmup`` + ``draws`` each);
- ``yardstick``: 4-chain NUTS at the suite's default settings, what "beats 4-chain NUTS" is measured
  against (on the CPU whatever ``--device`` says: it is this machine's NUTS);
- ``step_size``: unadjusted MCLMC with its tuned step size times each scale, to show where the check
  starts to see the bias that dropping the Metropolis step buys.

Writes ``<results>/<run-id>/`` (default ``results/runs/chains/``, ``chains-gpu`` with ``--device gpu``;
staged in ``<run-id>.partial`` and swapped in whole): the records, ``chains.csv``, the figure and
CHAINS.md (:mod:`benchmarks.reporting.chains`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from models.errors import UsageError

from ..engines.base import DEVICES, Settings
from ..reporting.chains import console_summary, render_chains
from ..runpath import check_run_id, remove_created
from ..runpath.progress import fmt_duration
from .common import add_run_options, run_specs
from .config import (
    CONFIGS,
    ConfigError,
    Section,
    as_list,
    check_engines,
    check_parameterizations,
    check_seeds,
    read_toml,
    specs_of,
)
from .sweep import LoadSampler

__all__ = ["HELP", "configure", "main", "CONFIG", "ChainsPlan", "load_chains", "parse_counts", "engine_warmups"]

CONFIG = CONFIGS / "chains.toml"
HELP = "many-chain and flow-adapted samplers against the number of chains, checked (CHAINS.md)"
#: the most chains a run may ask for (the issue's axis: 1 to 10^5)
MAX_CHAINS = 100_000
TOP_KEYS = {"parameterizations", "priors", "data", "seeds", "scaling", "yardstick", "step_size"}


@dataclass
class ChainsPlan:
    sections: list[Section]
    counts: list[int]
    max_chains: dict[str, int]
    yardstick: list[str]
    step_engine: str | None
    step_scales: list[float]
    seeds: list[int]
    device: str


def parse_counts(text: str | None) -> list[int] | None:
    """``"4,64"`` -> [4, 64]: whole numbers from 1 to MAX_CHAINS, no repeats."""
    if text is None:
        return None
    out = []
    for part in text.split(","):
        p = part.strip()
        if not p.isascii() or not p.isdigit() or not 1 <= int(p) <= MAX_CHAINS:
            raise UsageError(f"--counts = {text!r}: {p!r} is not a number of chains from 1 to {MAX_CHAINS}")
        out.append(int(p))
    if len(set(out)) != len(out):
        raise UsageError(f"--counts = {text!r}: a count repeats")
    return out


def _table(config: dict, name: str, path: Path, keys: set[str]) -> dict:
    t = config.get(name)
    if not isinstance(t, dict):
        raise ConfigError(f"{path}: needs a [{name}] table")
    unknown = set(t) - keys
    if unknown:
        raise ConfigError(f"{path}: [{name}] has unknown keys {sorted(unknown)}")
    return t


def _whole(v, where: str, low: int, high: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise ConfigError(f"{where} = {v!r}: must be a whole number from {low} to {high}")
    return v


def engine_warmups(scaling: dict, path: Path) -> dict[str, int]:
    """``[scaling.engine_warmup]``: engine -> its own number of warmup steps (measured by ``nox -s tune``)."""
    table = scaling.get("engine_warmup", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: scaling.engine_warmup = {table!r}: expected a table engine = warmup steps")
    check_engines(list(table), "scaling.engine_warmup")
    return {e: _whole(w, f"scaling.engine_warmup.{e}", 0, 10**6) for e, w in table.items()}


def load_chains(path: Path = CONFIG, *, engines: list[str] | None = None, seeds: int | None = None,
                counts: list[int] | None = None, device: str = "cpu") -> ChainsPlan:
    """The job's sections, every engine, prior, data spec and setting checked before anything runs."""
    if device not in DEVICES:
        raise UsageError(f"--device = {device!r}: must be one of {', '.join(DEVICES)}")
    config = read_toml(path)
    unknown = set(config) - TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    params = check_parameterizations(config.get("parameterizations", ["centered", "noncentered"]))
    priors = [str(p) for p in as_list(config.get("priors", ["default"]), "priors")]
    data = [str(d) for d in as_list(config.get("data", ["rubin"]), "data")]
    seed_list = list(range(1, seeds + 1)) if seeds else check_seeds(config.get("seeds", [1, 2, 3]))
    scaling = _table(config, "scaling", path, {"counts", "warmup", "draws", "max_chains", "engine_warmup"})
    count_list = counts or [_whole(c, "scaling.counts", 1, MAX_CHAINS) for c in as_list(scaling.get("counts"),
                                                                                          "scaling.counts")]
    if not count_list:
        raise ConfigError(f"{path}: scaling.counts = []: needs at least one number of chains")
    limits = scaling.get("max_chains")
    if not isinstance(limits, dict) or not limits:
        raise ConfigError(f"{path}: scaling.max_chains = {limits!r}: expected a table engine = most chains")
    check_engines(list(limits), "scaling.max_chains")
    max_chains = {e: _whole(n, f"scaling.max_chains.{e}", 1, MAX_CHAINS) for e, n in limits.items()}
    warmup = _whole(scaling.get("warmup", 300), "scaling.warmup", 0, 10**6)
    draws = _whole(scaling.get("draws", 100), "scaling.draws", 4, 10**6)
    own_warmup = engine_warmups(scaling, path)
    for e in own_warmup:
        if e not in max_chains:
            raise ConfigError(f"{path}: scaling.engine_warmup: engine = {e!r} is not in scaling.max_chains")
    yard_table = _table(config, "yardstick", path, {"engines", "seeds"})
    yard = check_engines(yard_table.get("engines", []), "yardstick.engines")
    yard_seeds = yard_table.get("seeds", {})  # engine -> its own seeds (a run of minutes: fewer seeds)
    if not isinstance(yard_seeds, dict):
        raise ConfigError(f"{path}: yardstick.seeds = {yard_seeds!r}: expected a table engine = [seeds]")
    for e, sl in yard_seeds.items():
        if e not in yard:
            raise ConfigError(f"{path}: yardstick.seeds: engine = {e!r} is not in yardstick.engines")
        yard_seeds[e] = [s for s in check_seeds(sl, f"yardstick.seeds.{e}") if s in seed_list]
    step = _table(config, "step_size", path, {"engine", "option", "scales", "chains", "warmup", "draws",
                                              "parameterizations"})
    chosen = set(check_engines(engines, "--engines")) if engines is not None else None
    if chosen is not None and not chosen:
        raise UsageError("--engines = '': names no engine")

    def keep(e: str) -> bool:
        return chosen is None or e in chosen

    sections = []

    def add(name: str, names: list[str], settings: Settings, section_params: list[str],
            seeds_of: list[int] | None = None) -> None:
        names = [e for e in names if keep(e)]
        if names and (seeds_of is None or seeds_of):
            sections.append(Section(name, names, section_params, priors, data, seeds_of or seed_list, [settings]))

    for n in count_list:
        at_n = [e for e, most in max_chains.items() if n <= most]
        for w in dict.fromkeys(own_warmup.get(e, warmup) for e in at_n):  # one section per number of warmup steps
            add(f"scaling-c{n}", [e for e in at_n if own_warmup.get(e, warmup) == w],
                Settings(chains=n, warmup=w, draws=draws, device=device), params)
    add("yardstick", [e for e in yard if e not in yard_seeds], Settings(), params)
    for e, own in yard_seeds.items():
        add(f"yardstick-{e}", [e], Settings(), params, own)
    step_engine = step.get("engine")
    scales = []
    if step_engine is not None:
        check_engines([step_engine], "step_size.engine")
        option = str(step.get("option", "step_size_scale"))
        scales = [float(s) for s in as_list(step.get("scales", []), "step_size.scales")]
        for s in scales:
            if not (math.isfinite(s) and s > 0):
                raise ConfigError(f"{path}: step_size.scales: {s!r} must be a number > 0")
        base = Settings(chains=_whole(step.get("chains", 1024), "step_size.chains", 1, MAX_CHAINS),
                        warmup=_whole(step.get("warmup", warmup), "step_size.warmup", 0, 10**6),
                        draws=_whole(step.get("draws", draws), "step_size.draws", 4, 10**6), device=device)
        step_params = check_parameterizations(step.get("parameterizations", ["noncentered"]),
                                              "step_size.parameterizations")
        for s in scales:
            add(f"step-{s:g}", [step_engine], dataclasses.replace(base, options={option: s}), step_params)
    if not sections:
        raise UsageError(f"--engines = {','.join(sorted(chosen or []))!r}: none of them is in {path}")
    specs_of(sections)  # every spec built (engine capabilities: a device or option it lacks) before any run
    return ChainsPlan(sections, count_list, max_chains, yard, step_engine, scales, seed_list, device)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engines", help="comma-separated subset of the config's engines")
    p.add_argument("--seeds", type=int, help="use seeds 1..N (default: the config's, 1-3)")
    p.add_argument("--counts", help="comma-separated numbers of chains (default: the config's 4 ... 4096)")
    p.add_argument("--device", default="cpu", help="cpu | gpu: where the many-chain samplers run (JAX's "
                                                    "platform; the 4-chain NUTS yardstick stays on the CPU)")
    p.add_argument("--config", type=Path, default=CONFIG, help=f"configuration (default: {CONFIG})")
    p.add_argument("--run-id", help="folder name under --results (default: chains, or chains-gpu)")
    add_run_options(p)


def main(a: argparse.Namespace) -> int:
    if a.seeds is not None and a.seeds < 1:
        raise UsageError(f"--seeds = {a.seeds}: must be >= 1")
    plan = load_chains(a.config, engines=a.engines.split(",") if a.engines is not None else None, seeds=a.seeds,
                       counts=parse_counts(a.counts), device=a.device)
    run_id = check_run_id(a.run_id if a.run_id is not None else ("chains" if a.device == "cpu" else f"chains-{a.device}"))
    specs = specs_of(plan.sections)
    results = Path(a.results)
    final = results / run_id
    staging = results / f"{run_id}.partial"
    meta = {"config": str(a.config), "counts": plan.counts, "max_chains": plan.max_chains,
            "yardstick": plan.yardstick, "step_size": {"engine": plan.step_engine, "scales": plan.step_scales},
            "seeds": plan.seeds, "device": plan.device, "cores": os.cpu_count()}
    t0 = time.perf_counter()

    with LoadSampler() as load:
        def finish(store, records) -> None:  # still holding the staging folder's lock
            load.stop()
            store.write_json("chains.json", {**meta, "load_samples": load.samples, "load_period_s": load.period})
            render_chains(staging)
            remove_created(final)
            os.replace(staging, final)  # the finished folder is swapped in whole, never half-written

        records = run_specs(f"chains ({plan.device})", specs, staging, a, fresh=True, finish=finish)
    print()
    print(console_summary(final))
    ok = [r for r in records if not r.get("error")]
    print(f"\nchains: {len(records)} runs ({len(ok)} finished) in {fmt_duration(time.perf_counter() - t0)} wall; "
          f"{final / 'CHAINS.md'}")
    if not ok:
        raise UsageError(f"chains: no run finished (every engine unavailable or failing here; see {final / 'chains.csv'})")
    return 0
