"""``python -m reference [COMMAND] ...``: the reference from the command line.

Commands are registered in :data:`COMMANDS`; with no command, ``summary`` runs, so
``python -m reference --prior bda3`` and ``python -m reference summary --prior bda3`` are the same.
A later command (``check``) is added by registering another :class:`Command`.

Bad input (data, prior, an improper posterior, an unwritable output) exits with status 2 and a
one-line message naming the field and the value; argparse usage errors exit 2 as well.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.data import RUBIN, DataError, SchoolsData, load_data
from models.priors import PRESETS, Prior, PriorError, make_prior

from .check import CheckInputError
from .core import LEVELS, Reference, posterior
from .marginal import PosteriorError

__all__ = ["Command", "COMMANDS", "DEFAULT_COMMAND", "main", "build_parser"]

#: errors that mean "bad input": exit status 2
INPUT_ERRORS = (DataError, PriorError, PosteriorError, CheckInputError)


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a positive integer") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a positive integer")
    return n


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--data, --prior, --mu-prior, --tau-prior: shared by every command."""
    parser.add_argument(
        "--data", metavar="FILE", help="CSV or JSON with y, sigma[, school] (default: Rubin's)"
    )
    parser.add_argument(
        "--prior", metavar="PRESET", help=f"prior preset: {', '.join(PRESETS)} (default: default)"
    )
    parser.add_argument("--mu-prior", metavar="TEXT", help="e.g. 'normal(0, 5)', 'flat', 'uniform(-20, 20)'")
    parser.add_argument(
        "--tau-prior", metavar="TEXT", help="e.g. 'half_cauchy(0, 5)', 'uniform(0, 50)', 'fixed(8)'"
    )
    parser.add_argument("--panels", type=_positive_int, metavar="N", help="fix the grid's panel count (even)")


def model_from_args(args: argparse.Namespace) -> tuple[SchoolsData, Prior]:
    data = load_data(args.data) if args.data is not None else RUBIN
    prior = make_prior(args.prior, args.mu_prior, args.tau_prior)
    return data, prior


def reference_from_args(args: argparse.Namespace) -> Reference:
    data, prior = model_from_args(args)
    if args.panels is not None and args.panels % 2:
        raise PosteriorError(f"--panels = {args.panels}: must be even (the error estimate halves it)")
    opts = {} if args.panels is None else {"panels": args.panels}
    return posterior(data, prior, **opts)


# --- summary ------------------------------------------------------------------------------------


def _summary_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    parser.add_argument(
        "--draws", type=_positive_int, metavar="N", help="also write N exact draws (needs --out)"
    )
    parser.add_argument("--out", metavar="FILE.nc", help="netCDF file for the draws (ArviZ layout)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default: 0)")


def _fmt(x: float) -> str:
    return (
        f"{x:9.3f}" if math.isfinite(x) else f"{'inf' if x > 0 else 'nan' if math.isnan(x) else '-inf':>9s}"
    )


def format_table(ref: Reference) -> str:
    """The summaries as a fixed-width table with a header saying what was computed."""
    lines = [f"data: {ref.data.name} (J = {ref.data.J})   prior: {ref.prior} [{ref.prior.name}]"]
    if ref.grid_info is not None:
        g = ref.grid_info
        lines.append(
            f"grid: {g.panels} panels x {g.order} Gauss-Legendre nodes (sinh-mapped log tau) over tau in "
            f"[{math.exp(g.u_window[0]):.3g}, {math.exp(g.u_window[1]):.3g}]; mixtures on {g.mixture_nodes} nodes"
        )
    else:
        lines.append(f"tau fixed at {ref.fixed_tau:g}: closed form (no grid)")
    err = ref.max_error()
    lines.append(
        f"largest error estimate: means {err['mean_relative']:.1e} (rel), sds {err['sd_relative']:.1e} (rel), "
        f"quantiles {err['quantile_absolute']:.1e} (abs)"
    )
    head = (
        f"{'':14s}{'mean':>9s}{'sd':>9s}"
        + "".join(f"{f'{100 * q:g}%':>9s}" for q in LEVELS)
        + f"{'error':>9s}"
    )
    lines += ["", head]
    labels = {f"theta[{j + 1}]": s for j, s in enumerate(ref.data.school)}
    for name, s in ref.summaries().items():
        label = f"{name} {labels[name]}" if name in labels and labels[name] != name[6:-1] else name
        if s.fixed:
            lines.append(f"{label:14s}fixed at {s.mean:g}")
            continue
        errs = [s.error.mean, s.error.sd, *s.error.quantiles.values()]
        worst = max((e for e in errs if math.isfinite(e)), default=math.nan)
        row = _fmt(s.mean) + _fmt(s.sd) + "".join(_fmt(v) for v in s.quantiles.values())
        lines.append(f"{label:14s}{row}{worst:9.1e}" + (f"   ({s.note})" if s.note else ""))
    return "\n".join(lines)


def _run_summary(args: argparse.Namespace) -> int:
    if (args.draws is None) != (args.out is None):
        raise PosteriorError("--draws and --out go together: --draws N --out FILE.nc")
    if args.out is not None and not Path(args.out).resolve().parent.is_dir():
        raise PosteriorError(f"--out = {args.out!r}: its directory does not exist")
    ref = reference_from_args(args)
    print(ref.to_json(indent=1) if args.json else format_table(ref))
    if args.draws is not None:
        from .draws import write_draws

        try:
            write_draws(ref, args.draws, args.seed, Path(args.out))
        except OSError as e:
            raise PosteriorError(f"--out = {args.out!r}: cannot write ({e.strerror or e})") from None
        print(f"wrote {args.draws} exact draws to {args.out}", file=sys.stderr)
    return 0


# --- check -------------------------------------------------------------------------------------


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--posterior", required=True, metavar="FILE.nc", help="draws in ArviZ layout (NetCDF)")
    add_model_arguments(parser)
    parser.add_argument("--alpha", type=float, default=None, help="family-wise false-alarm rate (default 0.01)")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of a table")


def _run_check(args: argparse.Namespace) -> int:
    """Exit 0 on pass, 1 on fail; unusable input raises CheckInputError (exit 2)."""
    import json

    from .check import DEFAULT_ALPHA, check_file, format_verdict

    data, prior = model_from_args(args)
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    if not 0 < alpha < 1:
        raise PosteriorError(f"--alpha = {alpha!r}: must be in (0, 1)")
    verdict = check_file(Path(args.posterior), data, prior, alpha=alpha)
    print(json.dumps(verdict.to_json(), indent=1) if args.json else format_verdict(verdict))
    return 0 if verdict.passed else 1


# --- write-results ----------------------------------------------------------------------------


def _write_results_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("outdir", nargs="?", default="results/reference", help="default: results/reference")


def _run_write_results(args: argparse.Namespace) -> int:
    from .report import write_results

    for path in write_results(Path(args.outdir)):
        print(path)
    return 0


COMMANDS: dict[str, Command] = {
    "check": Command(
        "check draws against the exact posterior: z-scores in MCSE units, a verdict at a family-wise rate",
        _check_arguments,
        _run_check,
    ),
    "write-results": Command(
        "write results/reference/<data>-<prior>.json for every preset, with provenance, and the figures",
        _write_results_arguments,
        _run_write_results,
    ),
    "summary": Command(
        "print exact posterior summaries (mean, sd, quantiles, error); optionally write exact draws",
        _summary_arguments,
        _run_summary,
    ),
}
DEFAULT_COMMAND = "summary"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reference",
        description="Analytic grid reference for the eight-schools model.",
        epilog=f"With no command, '{DEFAULT_COMMAND}' runs: python -m reference --prior bda3 --json",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = [DEFAULT_COMMAND, *argv]
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except INPUT_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into head: not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stop the interpreter's flush at exit
        return 141
