"""The pool: a regress configuration's engines x parameterisations run on many seeds beyond the
baseline's, through the one run path with their draws kept, then reduced to what the gate compares
(:func:`benchmarks.jobs.regress.measure.gate_run`) plus the reference verdict of each run's draws
shifted by each bias level (the check rerun on the shifted draws, cached in ``bias-verdicts.json``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import xarray as xr

from reference import posterior
from reference.check import DEFAULT_ALPHA, check

from ...engines.base import Settings
from ...runpath.spec import RunSpec, data_for, prior_for
from ...runpath.store import ResultsStore
from ..common import RunOptions, run_specs
from ..regress.config import RegressConfig
from ..regress.measure import gate_run, group_key
from .inject import shift_draws
from .resample import PoolRun

__all__ = ["Pool", "pool_specs", "run_pool", "settings_tag", "BIAS_FILE"]

BIAS_FILE = "bias-verdicts.json"


def settings_tag(s: Settings) -> str:
    return f"c{s.chains}w{s.warmup}d{s.draws}ta{s.target_accept:g}td{s.max_treedepth}"


def pool_specs(config: RegressConfig, settings: Settings, seeds: list[int], shifted: int) -> list[RunSpec]:
    """Every engine x parameterisation x seed; the first ``shifted`` seeds keep their draws (for the bias)."""
    return [RunSpec(engine=e, parameterization=p, prior=config.prior, data=config.data,
                    settings=dataclasses.replace(settings, seed=s), section=f"power-{config.name}",
                    save_draws=i < shifted)
            for e in config.engines for p in config.parameterizations for i, s in enumerate(seeds)]


def _bias_verdicts(store: ResultsStore, records: list[dict], shifted: set[str], biases: tuple[float, ...],
                   config: RegressConfig, say) -> dict[str, list[bool | None]]:
    """key -> the check's verdict on the run's draws shifted by each bias level (in posterior sds of mu), for
    the runs in ``shifted``; the others keep their own (unshifted) verdict only."""
    path = store.run_dir / BIAS_FILE
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if cached.get("biases") != list(biases):
        cached = {"biases": list(biases), "verdicts": {}}
    ref = posterior(data_for(config.data), prior_for(config.prior))
    sd_mu = float(ref.summary("mu").sd)
    out: dict[str, list[bool | None]] = {}
    todo = [r for r in records if not r.get("error") and r["key"] in shifted and r["key"] not in cached["verdicts"]]
    if todo:
        say(f"  rerunning the reference check on {len(todo)} runs' draws x {len(biases)} bias levels "
            f"(mu and theta shifted by delta x posterior sd of mu = {sd_mu:.3g})")
    for rec in records:
        if rec.get("error"):
            continue
        if rec["key"] not in shifted:
            out[rec["key"]] = [rec.get("check_passed")]
            continue
        if rec["key"] in cached["verdicts"]:
            out[rec["key"]] = cached["verdicts"][rec["key"]]
            continue
        with xr.open_datatree(store.run_dir / "draws" / f"{rec['key']}.nc") as tree:
            tree = tree.load()
        out[rec["key"]] = [bool(check(shift_draws(tree, delta * sd_mu), ref, alpha=DEFAULT_ALPHA).passed)
                           for delta in biases]
    store.write_json(BIAS_FILE, {"biases": list(biases), "sd_mu": sd_mu,
                                 "verdicts": {k: v for k, v in out.items() if k in shifted}})
    return out


@dataclasses.dataclass(frozen=True)
class Pool:
    settings: Settings
    seeds: list[int]
    groups: dict[str, list[PoolRun]]  #: engine/param -> its finished runs, in seed order
    errors: dict[str, list[str]]  #: engine/param -> the errors of its failed runs (left out of the resampling)
    run_dir: Path


def run_pool(config: RegressConfig, settings: Settings, seeds: list[int], biases: tuple[float, ...], *,
             run_dir: Path, options: RunOptions, shifted: int) -> Pool:
    """Run (or, with --resume, finish) the pool through the run path, the first ``shifted`` seeds' draws kept
    and checked again shifted by each bias level."""
    specs = pool_specs(config, settings, seeds, shifted)
    verdicts: dict[str, list[bool | None]] = {}

    def finish(store: ResultsStore, records: list[dict]) -> None:
        mine = {s.key for s in specs}
        verdicts.update(_bias_verdicts(store, [r for r in records if r["key"] in mine],
                                       {sp.key for sp in specs if sp.save_draws}, biases, config, print))

    options = dataclasses.replace(options, timeout=config.timeout_s)
    records = {r["key"]: r for r in run_specs(f"power pool {settings_tag(settings)}", specs, run_dir, options,
                                              fresh=True, finish=finish)}
    groups: dict[str, list[PoolRun]] = {}
    errs: dict[str, list[str]] = {}
    for spec in specs:
        rec = records[spec.key]
        key = group_key(spec.engine, spec.parameterization)
        runs = groups.setdefault(key, [])
        if rec.get("error"):
            errs.setdefault(key, []).append(f"seed {spec.seed}: {rec['error'][:200]}")
            continue
        g = gate_run(rec)
        if rec.get("check_passed") != verdicts[spec.key][0] and biases[0] == 0:
            raise RuntimeError(f"{spec.key}: the check on the saved draws ({verdicts[spec.key][0]}) disagrees with the "
                               f"run's own verdict ({rec.get('check_passed')})")
        runs.append(PoolRun(seed=g["seed"], ess=g["ess_bulk_per_grad"],
                            divergences=tuple(g["divergences_per_chain"]),
                            transitions=tuple(g["transitions_per_chain"]), verdicts=tuple(verdicts[spec.key]),
                            wall_s=g["wall_s"], first=spec.seed == seeds[0]))
    return Pool(settings, list(seeds), groups, errs, Path(run_dir))
