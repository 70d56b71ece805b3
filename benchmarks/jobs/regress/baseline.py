"""``python -m benchmarks baseline --config NAME``: run a named regress configuration through the run
path and write its baseline file (default ``results/runs/baselines/<name>.json``; ``publish
baselines`` copies it to the committed ``results/baselines/``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from models.errors import UsageError
from models.files import write_json

from ..common import add_run_options
from ..validate import check_output_file
from .config import RegressError, load_config
from .gate import fmt_g
from .measure import measure

__all__ = ["HELP", "configure", "main", "subset"]

HELP = "run a named regress configuration and write a baseline file"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="full", help="a name in benchmarks/configs/regress.toml (ci, full) "
                   "or FILE.toml:NAME (default: full)")
    p.add_argument("--out", type=Path, help="baseline file (default: <results>/baselines/<config name>.json)")
    p.add_argument("--engines", help="comma-separated subset of the configuration's engines")
    add_run_options(p)


def subset(arg: str | None, allowed: list[str], what: str) -> list[str] | None:
    if not arg:
        return None
    names = [e.strip() for e in arg.split(",") if e.strip()]
    bad = [e for e in names if e not in allowed]
    if bad:
        raise RegressError(f"--engines: {bad} not in the {what}'s engines {allowed}")
    return names


def main(a: argparse.Namespace) -> int:
    config = load_config(a.config)
    engines = subset(a.engines, config.engines, "configuration")
    out = a.out or Path(a.results) / "baselines" / f"{config.name}.json"
    if out.is_dir():
        raise UsageError(f"--out = {str(out)!r}: is a directory")
    check_output_file(out, "--out")
    t0 = time.perf_counter()
    doc = measure(config, engines=engines, options=a,
                  run_dir=Path(a.results) / "baselines" / f"{config.name}.runs")
    write_json(out, doc)
    ran = sum(g["summary"]["n_ok"] for g in doc["groups"].values())
    total = sum(g["summary"]["n_runs"] for g in doc["groups"].values())
    print(f"baseline {config.name}: {ran}/{total} runs ok in {time.perf_counter() - t0:.1f} s -> {out}")
    for key, g in doc["groups"].items():
        s = g["summary"]
        e = s["ess_bulk_per_grad"] or {}
        print(f"  {key:<28} ok {s['n_ok']}/{s['n_runs']}  ESS/grad median {fmt_g(e.get('median'))} "
              f"(log sd {fmt_g(e.get('log_sd'), '.2f')})  divergences {s['divergence_rate']['divergences']}  "
              f"reference {s['verdicts']['passed']}/{s['n_ok']} pass")
    if not ran:
        raise UsageError(f"baseline {config.name}: no run finished here (see {out}); nothing to gate against")
    return 0


