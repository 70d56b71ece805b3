"""Command line: ``python -m benchmarks run ...`` (one fit) and ``python -m benchmarks compare``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models import DataError, PriorError, load_data, make_prior, rubin
from models.logdensity import PARAMETERIZATIONS

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
    cmp_ = sub.add_parser("compare", help="every available engine x both parameterisations, one table")
    cmp_.add_argument("--engines", help="comma-separated subset of engines")
    _add_model_args(cmp_)
    _add_settings_args(cmp_)
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


def _cmd_compare(a: argparse.Namespace) -> int:
    from .compare import compare

    engines = a.engines.split(",") if a.engines else None
    data = load_data(a.data) if a.data else rubin()
    prior = make_prior(a.prior, a.mu_prior, a.tau_prior)
    return compare(data=data, prior=prior, settings=_settings(a), engines=engines)


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        if a.command == "run":
            return _cmd_run(a)
        return _cmd_compare(a)
    except (DataError, PriorError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
