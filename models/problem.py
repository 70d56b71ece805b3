"""A problem: the data, the prior and the parameterisation, travelling together.

Every engine, the reference check and the benchmarks take a :class:`Problem` instead of the loose
triple; the reference depends only on its data and prior (both parameterisations have one posterior).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .data import SchoolsData
from .errors import UsageError
from .priors import Prior

__all__ = ["Problem", "PARAMETERIZATIONS", "Parameterization"]

#: the two ways of writing the model (theta_j = mu + tau * theta_tilde_j, non-centred)
Parameterization = Literal["centered", "noncentered"]
PARAMETERIZATIONS: tuple[str, ...] = ("centered", "noncentered")


@dataclass(frozen=True)
class Problem:
    data: SchoolsData
    prior: Prior
    parameterization: str

    def __post_init__(self) -> None:
        if not isinstance(self.data, SchoolsData):
            raise TypeError(f"data = {type(self.data).__name__}: expected models.SchoolsData")
        if not isinstance(self.prior, Prior):
            raise TypeError(f"prior = {type(self.prior).__name__}: expected models.Prior")
        if self.parameterization not in PARAMETERIZATIONS:
            raise UsageError(f"parameterization = {self.parameterization!r}: must be one of "
                             f"{', '.join(PARAMETERIZATIONS)}")
        if (self.parameterization == "centered" and self.prior.tau_fixed
                and self.prior.tau["value"] == 0):
            raise UsageError("tau prior = fixed(0): the centred model is degenerate at tau = 0 "
                             "(theta = mu exactly); use parameterization 'noncentered'")

    @property
    def param(self) -> str:
        return self.parameterization

    @property
    def J(self) -> int:
        return self.data.J

    def __str__(self) -> str:
        return f"{self.parameterization} · {self.prior} · data {self.data.name} (J = {self.data.J})"
