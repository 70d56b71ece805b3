"""Command line: ``python -m benchmarks run ...`` (one fit) and ``python -m benchmarks compare``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models import DataError, PriorError, load_data, make_prior, rubin
from models.logdensity import PARAMETERIZATIONS

from . import regress
from .engines import ENGINES, Settings


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prior", help="prior preset (default, bda3, notebook, notebook-tau8)")
    p.add_argument("--mu-prior", help="prior on mu as text, e.g. 'normal(0, 5)'")
    p.add_argument("--tau-prior", help="prior on tau as text, e.g. 'half_cauchy(0, 5)'")
    p.add_argument("--data", type=Path, help="CSV or JSON with columns y, sigma[, school] (default: Rubin's)")


def _add_settings_args(p: argparse.ArgumentParser) -> None:
    d = Settings()
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--chains", type=int, default=d.chains)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--draws", type=int, default=d.draws)
    p.add_argument("--target-accept", type=float, default=d.target_accept)
    p.add_argument("--max-treedepth", type=int, default=d.max_treedepth)


def _settings(a: argparse.Namespace) -> Settings:
    return Settings(chains=a.chains, warmup=a.warmup, draws=a.draws, target_accept=a.target_accept,
                    max_treedepth=a.max_treedepth, seed=a.seed)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fit one engine once and print an ArviZ summary")
    run.add_argument("--engine", required=True, help=f"one of {', '.join(ENGINES)}")
    run.add_argument("--param", required=True, help="centered | noncentered")
    _add_model_args(run)
    _add_settings_args(run)
    run.add_argument("--out", type=Path, help="write the draws as NetCDF (ArviZ layout)")
    cmp_ = sub.add_parser("compare", help="the main job: every engine x both parameterisations, 3 seeds, report")
    cmp_.add_argument("--engines", help="comma-separated subset of engines")
    cmp_.add_argument("--seeds", type=int, help="number of seeds (default: the config's)")
    cmp_.add_argument("--out", type=Path, default=Path("results/compare"))
    mat = sub.add_parser("matrix", help="run a benchmark matrix from a TOML file")
    mat.add_argument("config", type=Path)
    mat.add_argument("--engines", help="comma-separated subset of engines")
    mat.add_argument("--seeds", type=int, help="use seeds 1..N instead of the config's")
    mat.add_argument("--run-id", help="results/<run-id> (default: the config's file name)")
    mat.add_argument("--results", type=Path, default=Path("results"))
    mat.add_argument("--resume", action="store_true", help="keep finished records and run the rest")
    mat.add_argument("--timeout", type=float, default=600.0, help="per-run limit in seconds")
    mat.add_argument("--latest", action="store_true", help="point results/latest at this run when it ends")
    rep = sub.add_parser("report", help="write REPORT.md for results/<run-id>")
    rep.add_argument("run_dir", type=Path)
    regress.add_subcommands(sub)  # baseline, regress, versions-report
    return ap


def _cmd_run(a: argparse.Namespace) -> int:
    from .engines import get_engine
    from .io import write_netcdf
    from .runner import run_one
    from .table import format_table

    if a.param not in PARAMETERIZATIONS:
        raise ValueError(f"--param = {a.param!r}: must be one of {', '.join(PARAMETERIZATIONS)}")
    get_engine(a.engine)  # unknown engine: clear error before any work
    data = load_data(a.data) if a.data else rubin()
    prior = make_prior(a.prior, a.mu_prior, a.tau_prior)
    outcome = run_one(a.engine, data, prior, a.param, _settings(a))
    if outcome.result is None:
        print(outcome.error, file=sys.stderr)
        print(f"error: {a.engine} failed: {outcome.record['error']}", file=sys.stderr)
        return 1
    import arviz_stats as azs

    print(f"{a.engine} · {a.param} · {prior} · data {data.name} (J = {data.J}) · seed {a.seed}")
    names = [v for v in ("mu", "tau", "theta") if v in outcome.result.draws["posterior"].data_vars]
    print(azs.summary(outcome.result.draws, var_names=names))
    print()
    print(format_table([outcome.record]))
    if a.out:
        write_netcdf(outcome.result.draws, a.out)
        print(f"draws written to {a.out}")
    return 0


def _engines(a: argparse.Namespace) -> list[str] | None:
    return a.engines.split(",") if a.engines else None


def _cmd_compare(a: argparse.Namespace) -> int:
    from .compare import compare

    return compare(out=a.out, engines=_engines(a), seeds=a.seeds)


def _cmd_matrix(a: argparse.Namespace) -> int:
    from .compare import progress_printer
    from .matrix import load_config, point_latest, run_matrix
    from .report import render

    sections = load_config(a.config, engines=_engines(a), seeds=a.seeds)
    run_dir = a.results / (a.run_id or a.config.stem)
    records = run_matrix(sections, run_dir, resume=a.resume, timeout_s=a.timeout, progress=progress_printer())
    if any(s.name == "overhead" for s in sections):
        from .floor import write_floor

        write_floor(run_dir)
    print(f"report: {render(run_dir)}")
    if a.latest:
        point_latest(a.results, run_dir)
    return 0 if any(not r.get("error") for r in records) else 1


def _cmd_report(a: argparse.Namespace) -> int:
    from .report import render

    print(render(a.run_dir))
    return 0


COMMANDS = {"run": _cmd_run, "compare": _cmd_compare, "matrix": _cmd_matrix, "report": _cmd_report,
            **regress.COMMANDS}


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        return COMMANDS[a.command](a)
    except (DataError, PriorError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
