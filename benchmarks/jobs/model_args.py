"""The model arguments (--prior, --mu-prior, --tau-prior, --data) as the spec texts a RunSpec holds."""

from __future__ import annotations

import argparse

from models import PRESETS
from models.cli_args import add_model_arguments
from models.errors import UsageError

__all__ = ["add_model_arguments", "specs_from_args"]


def specs_from_args(a: argparse.Namespace) -> tuple[str, str]:
    """(data spec, prior spec) from the parsed model arguments; each is resolved (and so validated)
    by the RunSpec that carries it."""
    data = str(a.data) if a.data is not None else "rubin"
    if a.prior is not None and (a.mu_prior is not None or a.tau_prior is not None):
        raise UsageError(f"--prior = {a.prior!r}: give a preset or --mu-prior/--tau-prior, not both")
    if a.mu_prior is None and a.tau_prior is None:
        return data, a.prior or "default"
    base = PRESETS["default"]
    mu = a.mu_prior if a.mu_prior is not None else str(base.mu)
    tau = a.tau_prior if a.tau_prior is not None else str(base.tau)
    return data, f"mu={mu};tau={tau}"
