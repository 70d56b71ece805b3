"""``python -m benchmarks COMMAND ...``: one pattern for every command.

Each command is a module with ``HELP`` (one line), ``configure(parser)`` and ``main(args) -> int``;
only the chosen command's module is imported, so ``--help`` and argument errors answer at once.
Validate, then act: the options commands share are checked by one step (:mod:`benchmarks.jobs.validate`)
before the command's ``main`` runs; ``main`` checks its own input (a configuration, a baseline) before
it creates a folder, takes a lock, starts a worker or samples.
Exit codes follow :mod:`models.errors`: 0 success, 1 a FAIL verdict or a regression only,
2 unusable input (one line naming the field and the value), 3 internal error (traceback in a log).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from models.errors import EXIT_USAGE, UsageError, run_cli

from .jobs.validate import check_options
from .runpath.plugins import register_from_env

__all__ = ["COMMANDS", "main", "build_parser"]

#: command -> module (each with HELP, configure, main); in the order ``--help`` lists them
COMMANDS: dict[str, str] = {
    "run": "benchmarks.jobs.run",
    "engines": "benchmarks.jobs.engines",
    "compare": "benchmarks.jobs.compare",
    "matrix": "benchmarks.jobs.matrix",
    "sweep": "benchmarks.jobs.sweep",
    "chains": "benchmarks.jobs.chains",
    "approx": "benchmarks.jobs.approx",
    "report": "benchmarks.jobs.report",
    "baseline": "benchmarks.jobs.regress.baseline",
    "regress": "benchmarks.jobs.regress.command",
    "candidate": "benchmarks.jobs.candidate",
    "calibrate": "benchmarks.jobs.calibrate",
    "tune": "benchmarks.jobs.tune",
    "notebook": "benchmarks.jobs.notebook",
    "versions-report": "benchmarks.jobs.versions",
    "publish": "benchmarks.jobs.publish",
}

#: one-line help per command, here so that ``--help`` imports nothing
SUMMARY: dict[str, str] = {
    "run": "fit one engine once, print an ArviZ summary and the check (--out: NetCDF draws)",
    "engines": "list every engine with its version and whether it can run here (and why not)",
    "compare": "the main job: every engine x both parameterisations, 3 seeds, report",
    "matrix": "run a benchmark matrix from a TOML file (nox -s bench uses configs/bench.toml)",
    "sweep": "centred vs non-centred across data informativeness (sigma_scale) and J",
    "chains": "many-chain and flow-adapted samplers against the number of chains, checked (CHAINS.md)",
    "approx": "approximate inference (ADVI, Pathfinder, Laplace, SVI) scored against the exact posterior",
    "report": "write REPORT.md for a results folder",
    "baseline": "run a named regress configuration and write a baseline file",
    "regress": "rerun a baseline's seeds; exit 1 on a regression (JUnit XML + markdown)",
    "candidate": "gate a candidate PPL build (a requirement) against a baseline, in a fresh venv",
    "calibrate": "measure the reference check's false-alarm rate and power",
    "tune": "time each engine's shipped configuration against its PPL's alternatives",
    "notebook": "reproduce the seed notebook's printed table against the exact posterior",
    "versions-report": "side-by-side table of results/runs/versions/<ppl>-<version>/ runs",
    "publish": "copy finished runs from results/runs/ into the committed snapshot and the README",
}


class _Parser(argparse.ArgumentParser):
    """argparse with the contract's one-line error (exit 2) instead of its usage block."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} -h)")

    def _get_values(self, action, arg_strings):
        # argparse turns '--x=--' into [] (it drops the '--'); a value is a value, or an error
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected one argument, got '--'")
        return super()._get_values(action, arg_strings)


def build_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    module = importlib.import_module(COMMANDS[name])
    p = _Parser(prog=f"python -m benchmarks {name}", description=SUMMARY[name])
    module.configure(p)
    return p, module


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m benchmarks COMMAND [options]   (python -m benchmarks COMMAND -h for its options)",
             "", "commands:"]
    lines += [f"  {n:<{width}}  {SUMMARY[n]}" for n in COMMANDS]
    lines += ["", "exit codes: 0 success, 1 FAIL verdict or regression, 2 unusable input, 3 internal error"]
    return "\n".join(lines)


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else EXIT_USAGE
    name = argv[0]
    if name not in COMMANDS:
        print(f"python -m benchmarks: error: command = {name!r} is unknown; commands: {', '.join(COMMANDS)} "
              "(python -m benchmarks --help)", file=sys.stderr)
        return EXIT_USAGE
    register_from_env()
    parser, module = build_parser(name)
    args = parser.parse_args(argv[1:])
    args.command = name
    check_options(args)  # validate, then act: every shared option before the command does anything
    return module.main(args)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv, prog="python -m benchmarks")
