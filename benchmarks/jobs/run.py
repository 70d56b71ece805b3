"""``python -m benchmarks run``: fit one engine once, through the run path (an isolated worker),
print the ArviZ summary, the diagnostics row and the reference verdict; ``--out`` keeps the draws.

Exit 0 when the fit passes the reference check, 1 when it fails it (``--no-check``: 0 either way),
2 for unusable input, 3 when the engine's run failed."""

from __future__ import annotations

import argparse
import base64
import os
from pathlib import Path

import arviz_stats as azs

from models.errors import EXIT_FAIL, EXIT_OK, EngineFailure, UsageError
from models.files import check_replaceable, write_bytes
from models.problem import PARAMETERIZATIONS

from ..engines import ENGINES
from ..engines.base import Settings
from ..reporting.tables import format_table
from ..runpath import RunSpec
from ..runpath.execute import draws_from_b64
from ..runpath.executors import SerialExecutor
from ..runpath.matrix import record_from_done
from .common import DEFAULT_TIMEOUT_S
from .model_args import add_model_arguments, specs_from_args

__all__ = ["HELP", "configure", "main", "add_settings_arguments", "settings_from_args", "check_out_path"]

HELP = "fit one engine once, print an ArviZ summary and the check (--out: NetCDF draws)"


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    d = Settings()
    g = p.add_argument_group("sampler settings (the same defaults for every engine)")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--chains", type=int, default=d.chains)
    g.add_argument("--warmup", type=int, default=d.warmup)
    g.add_argument("--draws", type=int, default=d.draws)
    g.add_argument("--target-accept", type=float, default=d.target_accept)
    g.add_argument("--max-treedepth", type=int, default=d.max_treedepth)


def settings_from_args(a: argparse.Namespace) -> Settings:
    return Settings(chains=a.chains, warmup=a.warmup, draws=a.draws, target_accept=a.target_accept,
                    max_treedepth=a.max_treedepth, seed=a.seed)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", required=True, help=f"one of {', '.join(ENGINES)}")
    p.add_argument("--param", required=True, help="centered | noncentered")
    add_model_arguments(p)
    add_settings_arguments(p)
    p.add_argument("--out", type=Path, help="write the draws as NetCDF (ArviZ layout; an existing file is "
                   "replaced only if its name ends in .nc or it is NetCDF)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="limit in seconds")
    p.add_argument("--no-check", action="store_true",
                   help="exit 0 even when the fit fails the reference check (the check still runs and prints "
                        "its verdict); without it a FAIL is exit 1")


def check_out_path(path: Path) -> None:
    """An output file the run can write, checked before any sampling (a directory, a missing or
    read-only folder are input errors, not a loss of the draws after sampling)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--out = {str(path)!r}: is a directory; name a file, e.g. {path / 'fit.nc'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--out = {str(path)!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"--out = {str(path)!r}: not writable")
    check_replaceable(path, "--out")


def main(a: argparse.Namespace) -> int:
    if a.engine not in ENGINES:
        raise UsageError(f"--engine = {a.engine!r}: engine = {a.engine!r} is unknown; engines: {', '.join(ENGINES)}")
    if a.param not in PARAMETERIZATIONS:
        raise UsageError(f"--param = {a.param!r}: must be one of {', '.join(PARAMETERIZATIONS)}")
    if a.out is not None:
        check_out_path(a.out)
    data_spec, prior_spec = specs_from_args(a)
    spec = RunSpec(engine=a.engine, parameterization=a.param, prior=prior_spec, data=data_spec,
                   settings=settings_from_args(a), section="run", save_draws=True)
    problem = spec.problem()  # input errors (data, prior, settings) before any worker starts
    print(f"{a.engine} · {problem} · seed {a.seed}", flush=True)
    with SerialExecutor(timeout_s=a.timeout, on_event=lambda e: print(f"  {e.get('message')}", flush=True)) as ex:
        ex.submit(spec, spec.wire(timeout_s=a.timeout))
        done = ex.next_done()
    rec, _, _ = record_from_done(done)
    if rec.get("error"):
        if rec.get("error_kind") == "unavailable":
            raise UsageError(f"--engine = {a.engine!r}: {rec['error']}")
        tb = (done.reply or {}).get("record", {}).get("traceback")
        raise EngineFailure(f"{a.engine} failed ({rec.get('error_kind')}): {rec['error']}"
                           + (f"\n{tb}" if tb else ""))
    draws = draws_from_b64(done.reply["draws_nc"])
    names = [v for v in ("mu", "tau", "theta") if v in draws["posterior"].data_vars]
    print(azs.summary(draws, var_names=names))
    print()
    print(format_table([rec]))
    verdict = "PASS" if rec["check_passed"] else "FAIL"
    print(f"\nreference check: {verdict} (max |z| = {rec['check_max_abs_z']:.2f}"
          + (f"; failed: {rec['check_failed']}" if rec.get("check_failed") else "") + ")")
    if a.out is not None:
        write_bytes(a.out, base64.b64decode(done.reply["draws_nc"]))
        print(f"draws written to {a.out}")
    return EXIT_OK if rec["check_passed"] or a.no_check else EXIT_FAIL

