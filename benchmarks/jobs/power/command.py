"""``python -m benchmarks.jobs.power``: the regression gate's power against known injected regressions.

Runs the ``ci`` configuration's engines x parameterisations on a pool of seeds beyond the baseline's
(and, with ``--variant``, other sampler settings), through the run path with draws kept; then
estimates by resampling how often the gate's own decisions catch a known drop in ESS per gradient, a
known rise in the divergence rate and a known bias, for the configuration's number of seeds and for
others; reports the smallest of each caught 80 % of the time, the false-alarm rates at zero injection,
the seeds (and settings) that would catch a 25 % ESS drop and a doubled divergence rate, and that
configuration's wall time from the measured run times. Writes ``power.json``, ``POWER.md`` and
``power.png`` under ``<results>/power/``. ``--resume`` keeps finished pool runs and cached verdicts.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import time
from pathlib import Path

from models.errors import UsageError, run_cli
from models.files import write_json, write_text
from reference.check import DEFAULT_ALPHA

from ...engines.base import Settings, SettingsError
from ...runpath.environment import environment
from ...runpath.plugins import register_from_env
from ..common import RunOptions, add_run_options
from ..regress.config import load_config
from ..regress.measure import machine
from ..regress.thresholds import ALPHA, REPORTED_POWER, thresholds
from .analyse import OPERATING_POINT_FACTOR, TARGET_DROP, TARGET_RATE, TIME_BUDGET_S, analyse_pool
from .pool import run_pool, settings_tag
from .report import draw_figure, markdown
from .resample import Levels

__all__ = ["HELP", "configure", "main", "parse_variant", "LEVELS", "NS", "DEFAULT_POOL_SEEDS", "FIRST_POOL_SEED"]

HELP = "measure the regression gate's power against injected regressions (results/runs/power/)"

#: seeds in each pool: 2 n <= pool for disjoint baseline and new seeds, so 500 resamples up to 250 a side
#: (the ci configuration's 225 seeds included); a pool costs ~0.2-0.5 s per run here
DEFAULT_POOL_SEEDS = 500
#: seeds of each pool whose draws are kept and checked again shifted by each bias level (the bias curves
#: resample these; the rest of a larger pool serves the ESS and divergence curves and the false alarms)
SHIFTED_SEEDS = 80
#: the pool's first seed: beyond every committed baseline's seeds (1..10)
FIRST_POOL_SEED = 1001
#: the resampling's own seed (explicit, never from the clock)
RESAMPLING_SEED = 20261127
#: replicates per (group, n): the Monte Carlo standard error of a power near 0.8 is ~0.013, of a
#: false-alarm rate near 0.01 ~0.003
REPLICATES = 1000
#: injection levels: ESS drops d, divergence-rate multipliers k, bias in posterior sds of mu
LEVELS = Levels(drops=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
                rates=(1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0),
                biases=(0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0))
#: seeds a side evaluated (those with 2 n above a pool's size are left out)
NS = (3, 5, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 125, 150, 175, 200, 225, 250)
_SETTINGS = ("chains", "warmup", "draws", "target_accept", "max_treedepth")


def parse_variant(text: str, base: Settings) -> tuple[Settings, int | None]:
    """``"draws=1000"`` or ``"chains=4,warmup=500,draws=1000,seeds=200"``: the configuration's settings
    changed, and optionally this variant's own pool size (``seeds``; default ``--pool-seeds``)."""
    changes: dict = {}
    seeds = None
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in {*_SETTINGS, "seeds"}:
            raise UsageError(f"--variant = {text!r}: expected NAME=VALUE,... with NAME one of {', '.join(_SETTINGS)} "
                             "or seeds (the variant's pool size)")
        try:
            number = float(value) if name == "target_accept" else int(value)
        except ValueError:
            raise UsageError(f"--variant = {text!r}: {name} = {value!r} is not a number") from None
        if name == "seeds":
            if number < 4:
                raise UsageError(f"--variant = {text!r}: seeds = {number} must be >= 4 (two disjoint halves of >= 2)")
            seeds = number
        else:
            changes[name] = number
    try:
        return dataclasses.replace(base, **changes), seeds
    except SettingsError as e:
        raise UsageError(f"--variant = {text!r}: {e}") from None


def _ints(text: str, what: str) -> list[int]:
    try:
        out = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise UsageError(f"{what} = {text!r}: expected comma-separated integers") from None
    if not out or out[0] < 2:
        raise UsageError(f"{what} = {text!r}: every value must be >= 2")
    return out


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="ci", help="a regress configuration (default: ci)")
    p.add_argument("--pool-seeds", type=int, default=DEFAULT_POOL_SEEDS,
                   help=f"seeds per pool (default {DEFAULT_POOL_SEEDS})")
    p.add_argument("--first-seed", type=int, default=FIRST_POOL_SEED,
                   help=f"the pool's first seed (default {FIRST_POOL_SEED})")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=VALUE,...",
                   help="settings measured besides the configuration's own, e.g. 'draws=1000' or "
                   "'draws=1000,seeds=200' (its own pool size; repeatable)")
    p.add_argument("--n", default=",".join(map(str, NS)), help="seeds a side to evaluate (default %(default)s)")
    p.add_argument("--highlight", type=int, action="append", default=[], metavar="N",
                   help="also report the configuration's own settings with N seeds in full (repeatable), e.g. the "
                   "number of seeds of a baseline made before the configuration changed")
    p.add_argument("--replicates", type=int, default=REPLICATES, help=f"per group and n (default {REPLICATES})")
    p.add_argument("--seed", type=int, default=RESAMPLING_SEED, help="the resampling's seed")
    p.add_argument("--out", type=Path, help="output folder (default: <results>/power/)")
    p.add_argument("--report-only", action="store_true", help="rewrite POWER.md and power.png from power.json")
    add_run_options(p)


def measured_baseline(results: Path, config) -> dict | None:
    """The configuration's own baseline run (``python -m benchmarks baseline``), when one was made here for
    exactly this configuration: its wall time is the configuration's cost, measured rather than estimated."""
    path = Path(results) / "baselines" / f"{config.name}.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    mine = {k: v for k, v in config.to_dict().items() if k != "description"}
    if not isinstance(doc, dict) or {k: v for k, v in doc.get("config", {}).items() if k != "description"} != mine:
        return None
    runs = sum(len(g.get("runs", [])) for g in doc.get("groups", {}).values())
    return {"path": str(path), "wall_s": doc.get("wall_s"), "created": doc.get("created"), "runs": runs,
            "seeds": len(doc.get("seeds", [])), "machine": doc.get("machine")}


def _write(power: dict, out: Path) -> None:
    write_json(out / "power.json", power)
    draw_figure(power, out / "power.png")
    write_text(out / "POWER.md", markdown(power))
    print(f"power: {out / 'POWER.md'}, {out / 'power.json'}, {out / 'power.png'}")


def main(a: argparse.Namespace) -> int:
    config = load_config(a.config)
    out = a.out or Path(a.results) / "power"
    if a.report_only:
        try:
            power = json.loads((out / "power.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UsageError(f"--report-only: cannot read {out / 'power.json'} ({e}); run the job first") from None
        power["measured_baseline"] = measured_baseline(Path(a.results), load_config(power["config"]["name"]))
        _write(power, out)
        return 0
    if a.pool_seeds < 4:
        raise UsageError(f"--pool-seeds = {a.pool_seeds}: needs >= 4 (two disjoint halves of >= 2)")
    if a.replicates < 1:
        raise UsageError(f"--replicates = {a.replicates}: must be >= 1")
    variants = dict([(config.settings, None), *(parse_variant(v, config.settings) for v in a.variant)])
    sizes = {s: size or a.pool_seeds for s, size in variants.items()}  # one pool per settings, the last size wins
    seeds = list(range(a.first_seed, a.first_seed + max(sizes.values())))
    clash = sorted(set(seeds) & set(config.seeds))
    if clash or a.first_seed < 0:
        raise UsageError(f"--first-seed = {a.first_seed}: the pool must avoid the baseline's seeds {clash}")
    ns = _ints(a.n, "--n")
    if 2 * len(config.seeds) > sizes[config.settings]:
        print(f"power: warning: the configuration's {len(config.seeds)} seeds need a pool of {2 * len(config.seeds)} "
              f"(--pool-seeds {sizes[config.settings]}): its own power is not measured")
    options = RunOptions(results=Path(a.results), resume=a.resume, timeout=config.timeout_s,
                         workers=a.workers, scheduler=a.scheduler)
    print(f"power: config {config.name} ({', '.join(config.engines)} x {', '.join(config.parameterizations)}), "
          f"{len(variants)} settings x {'/'.join(str(n) for n in sizes.values())} seeds from {seeds[0]}, "
          f"{a.replicates} replicates; "
          f"into {out}")
    docs = []
    for s, size in sizes.items():
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        pool = run_pool(config, s, seeds[:size], LEVELS.biases, run_dir=out / "pools" / settings_tag(s),
                        options=options, shifted=SHIFTED_SEEDS)
        pool_s, load1 = time.perf_counter() - t0, os.getloadavg()[0]
        t1 = time.perf_counter()
        doc = analyse_pool(pool, LEVELS, ns, replicates=a.replicates, seed=a.seed, check_alpha=DEFAULT_ALPHA,
                           current_n=len(config.seeds) if s == config.settings else None,
                           highlight=a.highlight if s == config.settings else [])
        doc.update(pool_wall_s=pool_s, load_1min=[load0, load1], resampling_s=time.perf_counter() - t1)
        docs.append(doc)
        print(f"  {doc['tag']}: pool {pool_s:.0f} s (1-min load {load0:.1f} -> {load1:.1f}), resampling "
              f"{doc['resampling_s']:.0f} s; both targets need {doc['n_required'] or '?'} seeds "
              f"(~{doc['wall_s_required'] or float('nan'):.0f} s)")
    power = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": config.to_dict(), "alpha": ALPHA, "check_alpha": DEFAULT_ALPHA, "power": REPORTED_POWER,
        "targets": {"ess_drop": TARGET_DROP, "divergence_rate": TARGET_RATE, "time_budget_s": TIME_BUDGET_S},
        "levels": dataclasses.asdict(LEVELS), "replicates": a.replicates,
        "operating_point_replicates": a.replicates * OPERATING_POINT_FACTOR, "resampling_seed": a.seed,
        "thresholds": thresholds(), "machine": machine(), "packages": environment()["packages"],
        "variants": docs, "measured_baseline": measured_baseline(Path(a.results), config),
    }
    _write(power, out)
    return 0


def cli(argv: list[str] | None = None) -> int:
    def _main(args: list[str] | None) -> int:
        register_from_env()
        p = argparse.ArgumentParser(prog="python -m benchmarks.jobs.power", description=HELP)
        configure(p)
        return main(p.parse_args(args))

    return run_cli(_main, argv, prog="python -m benchmarks.jobs.power")
