"""The model's command-line arguments, written once: ``--data``, ``--prior``, ``--mu-prior``, ``--tau-prior``.

Every command that takes a problem (``python -m reference``, ``python -m reference check``, the
benchmarks' commands) adds them with :func:`add_model_arguments` and reads them back with
:func:`model_from_args`, so the flags, their help and their errors are the same everywhere.
"""

from __future__ import annotations

import argparse

from .data import RUBIN, SchoolsData
from .priors import PRESETS, Prior, make_prior
from .specs import DATA_FORMS, resolve_data, resolve_prior

__all__ = ["add_model_arguments", "model_from_args"]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --data SPEC, --prior PRESET, --mu-prior TEXT and --tau-prior TEXT to ``parser``."""
    parser.add_argument("--data", metavar="SPEC", help=f"{DATA_FORMS} (default: rubin)")
    parser.add_argument("--prior", metavar="PRESET",
                        help=f"prior preset: {', '.join(PRESETS)}, or 'mu=TEXT;tau=TEXT' (default: default)")
    parser.add_argument("--mu-prior", metavar="TEXT", help="e.g. 'normal(0, 5)', 'flat', 'uniform(-20, 20)'")
    parser.add_argument("--tau-prior", metavar="TEXT",
                        help="e.g. 'half_cauchy(0, 5)', 'uniform(0, 50)', 'fixed(8)'")


def model_from_args(args: argparse.Namespace) -> tuple[SchoolsData, Prior]:
    """(data, prior) from the parsed flags; bad values raise a UsageError naming the flag's value.

    ``--prior`` alone takes a preset or ``mu=TEXT;tau=TEXT``; with ``--mu-prior``/``--tau-prior`` it is an
    error (give one or the other); the texts alone fill in the default preset's other half.
    """
    data = RUBIN if args.data is None else resolve_data(args.data)
    if args.prior is not None and args.mu_prior is None and args.tau_prior is None:
        prior = resolve_prior(args.prior)
    else:
        prior = make_prior(args.prior, args.mu_prior, args.tau_prior)
    return data, prior
