"""``python -m reference [COMMAND] ...``: the reference from the command line.

Commands are registered in :data:`COMMANDS`; with no command, ``summary`` runs, so
``python -m reference --prior bda3`` and ``python -m reference summary --prior bda3`` are the same.
A later command is added by registering another :class:`Command`.

Exit codes (``models.errors.run_cli``): 0 success or PASS; 1 a FAIL verdict (``check``) only; 2 unusable
input (data, prior, draws, an improper posterior, a flag, an unwritable output), one line on stderr
naming the field and the value; 3 an internal error, one line on stderr and the traceback in a log file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.cli_args import add_model_arguments, model_from_args
from models.errors import EXIT_FAIL, EXIT_OK, UsageError, run_cli
from models.files import check_replaceable

from .check import DEFAULT_ALPHA, check_file, format_verdict
from .core import LEVELS, Reference, posterior
from .draws import write_draws
from .export import MAX_TOTAL_DRAWS, check_out, write_posteriordb
from .report import write_results
from .summary import Summary

__all__ = ["Command", "COMMANDS", "DEFAULT_COMMAND", "PROG", "main", "build_parser", "format_table"]

PROG = "python -m reference"


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are UsageErrors: one line on stderr and exit 2, as for every other
    bad input (argparse itself prints the whole usage block first)."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} -h)")

    def _get_values(self, action, arg_strings):  # argparse turns '--x=--' into []: refuse it instead
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected one argument, got '--'")
        return super()._get_values(action, arg_strings)


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


def _seed(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected an integer >= 0")
    return n


def _emit(text: str) -> None:
    """Print to stdout; a reader that closed the pipe (``| head``) is not an error of ours."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stop the interpreter's flush at exit


def _add_reference_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--panels", type=_positive_int, metavar="N", help="fix the grid's panel count (even)")


def reference_from_args(args: argparse.Namespace) -> Reference:
    data, prior = model_from_args(args)
    if args.panels is not None and args.panels % 2:
        raise UsageError(f"--panels = {args.panels}: must be even (the error estimate halves it)")
    opts = {} if args.panels is None else {"panels": args.panels}
    return posterior(data, prior, **opts)


# --- summary ------------------------------------------------------------------------------------


def _summary_arguments(parser: argparse.ArgumentParser) -> None:
    _add_reference_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    parser.add_argument(
        "--draws", type=_positive_int, metavar="N", help="also write N exact draws (needs --out)"
    )
    parser.add_argument("--out", metavar="FILE.nc", help="netCDF file for the draws (ArviZ layout)")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the draws (default: 0)")


def _cell(x: float, exists: bool = True) -> str:
    return f"{x:9.3f}" if exists else f"{'-':>9s}"


def _moment_note(s: Summary) -> str:
    """'mean and sd do not exist (...)' for a heavy tail, with the reason from the summary's note."""
    missing = s.missing_moments
    if not missing:
        return s.note
    what = "mean and sd do not exist" if len(missing) == 2 else f"{missing[0]} does not exist"
    reason = s.note.split(": ", 1)[-1] if s.note else ""
    return f"{what}: {reason}" if reason else what


def format_table(ref: Reference) -> str:
    """The summaries as a fixed-width table with a header saying what was computed.

    Every number printed is finite; a moment that does not exist reads "-" and the row's note says so.
    With a fixed tau, log tau is left out (as in the JSON).
    """
    data = ref.data
    scaled = f", sigma x {data.sigma_scale:g}" if data.sigma_scale != 1.0 else ""
    lines = [f"data: {data.name} (J = {data.J}{scaled})   prior: {ref.prior} [{ref.prior.name}]"]
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
    labels = {f"theta[{j + 1}]": s for j, s in enumerate(data.school)}
    for name, s in ref.summaries().items():
        if s.fixed and name == "log_tau":
            continue
        label = f"{name} {labels[name]}" if name in labels and labels[name] != name[6:-1] else name
        if s.fixed:
            lines.append(f"{label:14s}fixed at {s.mean:g}")
            continue
        errs = [s.error.mean, s.error.sd, *s.error.quantiles.values()]
        worst = max(e for e in errs if math.isfinite(e))
        missing = s.missing_moments
        row = (_cell(s.mean, "mean" not in missing) + _cell(s.sd, "sd" not in missing)
               + "".join(_cell(v) for v in s.quantiles.values()))
        note = _moment_note(s)
        lines.append(f"{label:14s}{row}{worst:9.1e}" + (f"   ({note})" if note else ""))
    return "\n".join(lines)


#: --draws at most: 10^7 exact draws of J = 8 are ~1 GB in memory, and the NetCDF writer copies them
MAX_DRAWS = 10**7


def _run_summary(args: argparse.Namespace) -> int:
    if (args.draws is None) != (args.out is None):
        raise UsageError("--draws and --out go together: --draws N --out FILE.nc")
    if args.out is not None:
        out = Path(args.out)
        if out.is_dir():
            raise UsageError(f"--out = {args.out!r}: is a directory (expected a file name)")
        if not out.resolve().parent.is_dir():
            raise UsageError(f"--out = {args.out!r}: its directory does not exist")
        if not os.access(out.resolve().parent, os.W_OK):
            raise UsageError(f"--out = {args.out!r}: its directory is not writable")
        check_replaceable(out, "--out")
    if args.draws is not None and args.draws > MAX_DRAWS:
        raise UsageError(f"--draws = {args.draws}: at most {MAX_DRAWS} (the draws are made in memory)")
    ref = reference_from_args(args)
    _emit(ref.to_json(indent=1) if args.json else format_table(ref))
    if args.draws is not None:
        try:
            write_draws(ref, args.draws, args.seed, Path(args.out))
        except OSError as e:
            raise UsageError(f"--out = {args.out!r}: cannot write ({e.strerror or e})") from None
        print(f"wrote {args.draws} exact draws to {args.out}", file=sys.stderr)
    return EXIT_OK


# --- check -------------------------------------------------------------------------------------


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--posterior", required=True, metavar="FILE.nc", help="draws in ArviZ layout (NetCDF)")
    _add_reference_arguments(parser)
    parser.add_argument("--alpha", type=float, default=None,
                        help=f"family-wise false-alarm rate (default {DEFAULT_ALPHA:g})")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of a table")


def _run_check(args: argparse.Namespace) -> int:
    """Exit 0 on PASS, 1 on FAIL; unusable input raises a UsageError (exit 2)."""
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha = {alpha!r}: must be in (0, 1)")
    ref = reference_from_args(args)
    verdict = check_file(Path(args.posterior), ref, alpha=alpha)
    _emit(json.dumps(verdict.to_json(), indent=1, allow_nan=False) if args.json else format_verdict(verdict))
    return EXIT_OK if verdict.passed else EXIT_FAIL


# --- write-results ----------------------------------------------------------------------------


def _write_results_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("outdir", nargs="?", default="results/reference", help="default: results/reference")


def _run_write_results(args: argparse.Namespace) -> int:
    outdir = Path(args.outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"outdir = {args.outdir!r}: cannot create ({e.strerror or e})") from None
    if not os.access(outdir, os.W_OK):
        raise UsageError(f"outdir = {args.outdir!r}: not writable")
    for path in write_results(outdir):
        _emit(str(path))
    return EXIT_OK


# --- export ------------------------------------------------------------------------------------


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="posteriordb", metavar="FORMAT",
                        help="posteriordb (the only one; default): reference_posteriors/draws/{draws,info}/ under --out")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder to write (new, empty, or a previous export, which is replaced)")
    _add_reference_arguments(parser)
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the draws (default: 0)")
    parser.add_argument("--chains", type=_positive_int, default=10, help="chains (blocks of iid draws; default 10)")
    parser.add_argument("--draws", type=_positive_int, default=1000, help="draws per chain (default 1000)")


def _run_export(args: argparse.Namespace) -> int:
    if args.format != "posteriordb":
        raise UsageError(f"--format = {args.format!r}: the only format is posteriordb")
    if args.chains * args.draws > MAX_TOTAL_DRAWS:
        raise UsageError(f"--chains x --draws = {args.chains * args.draws}: at most {MAX_TOTAL_DRAWS} draws in all")
    check_out(Path(args.out))  # before the reference is computed; write_posteriordb checks again
    ref = reference_from_args(args)
    try:
        done = write_posteriordb(ref, Path(args.out), chains=args.chains, draws=args.draws, seed=args.seed)
    except OSError as e:
        raise UsageError(f"--out = {args.out!r}: cannot write ({e.strerror or e})") from None
    if done.replaced:
        print(f"replaced a previous export: {', '.join(done.replaced)}", file=sys.stderr)
    _emit(str(done.draws_path))
    _emit(str(done.info_path))
    return EXIT_OK


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
    "export": Command(
        "write exact iid draws as a posteriordb reference posterior (draws .json.zip and .info.json)",
        _export_arguments,
        _run_export,
    ),
    "summary": Command(
        "print exact posterior summaries (mean, sd, quantiles, error); optionally write exact draws",
        _summary_arguments,
        _run_summary,
    ),
}
DEFAULT_COMMAND = "summary"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Analytic grid reference for the eight-schools model.",
        epilog=f"With no command, '{DEFAULT_COMMAND}' runs: {PROG} --prior bda3 --json. "
        "Exit codes: 0 success/PASS, 1 FAIL verdict, 2 unusable input, 3 internal error.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(run=cmd.run)
    return parser


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = [DEFAULT_COMMAND, *argv]
    args = build_parser().parse_args(argv)
    return args.run(args)


def main(argv: list[str] | None = None) -> int:
    """Run a command and return its exit code under the suite's contract (``models.errors.run_cli``)."""
    return run_cli(_main, argv, prog=PROG)
