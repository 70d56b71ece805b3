"""What one approximate-inference run is: a method, a problem and its settings (issue 19).

:class:`ApproxSpec` is the approximators' counterpart of :class:`~benchmarks.runpath.spec.RunSpec`:
the same duck-typed face to the one run path (``key``, ``digest``, ``engine``, ``label()``,
``resolved()``, ``wire()``), so the same executors, worker processes, results store and matrix loop
run it; its wire carries ``kind = "approx"`` and the worker's :func:`~benchmarks.runpath.execute.execute`
hands it to :func:`~benchmarks.runpath.approx_execute.execute_approx`. ``engine`` is the method's
registry name (records keep one name column for whatever ran).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass

from models.errors import UsageError
from models.problem import PARAMETERIZATIONS, Problem

from ..approx import APPROXIMATORS, ApproxSettings
from .spec import DIGEST_CHARS, _sigma_scale, data_for, prior_for

__all__ = ["ApproxSpec", "approx_settings_from_wire"]


@dataclass(frozen=True, kw_only=True)
class ApproxSpec:
    engine: str  #: the method's registry name (benchmarks.approx.APPROXIMATORS)
    parameterization: str
    prior: str = "default"
    data: str = "rubin"
    settings: ApproxSettings = ApproxSettings()
    section: str = "main"
    save_draws: bool = False
    keep_checks: bool = False  # the run path's field; an approximation keeps its scores in its record

    def __post_init__(self) -> None:
        if self.engine not in APPROXIMATORS:
            raise UsageError(f"method = {self.engine!r} is unknown; approximators: {', '.join(APPROXIMATORS)}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise UsageError(f"parameterization = {self.parameterization!r}: must be one of "
                             f"{', '.join(PARAMETERIZATIONS)}")
        if not isinstance(self.settings, ApproxSettings):
            raise TypeError(f"settings = {type(self.settings).__name__}: expected ApproxSettings")

    @property
    def seed(self) -> int:
        return self.settings.seed

    def with_seed(self, seed: int) -> ApproxSpec:
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, seed=seed))

    def problem(self) -> Problem:
        return Problem(data_for(self.data), prior_for(self.prior), self.parameterization)

    def resolved(self) -> dict:
        data = data_for(self.data)
        return {"kind": "approx", "section": self.section, "engine": self.engine,
                "parameterization": self.parameterization, "prior": prior_for(self.prior).to_dict(),
                "data": {**data.to_dict(), "spec": self.data, "sigma_scale": _sigma_scale(data)},
                "settings": self.settings.to_dict()}

    @property
    def digest(self) -> str:
        blob = json.dumps(self.resolved(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def key(self) -> str:
        s = self.settings
        raw = (f"{self.section}__{self.engine}__{self.parameterization}__{self.prior}__{data_for(self.data).name}"
               f"__s{s.seed}__n{s.draws}" + (f"__it{s.iterations}" if s.iterations else "")
               + (f"__lr{s.learning_rate:g}" if s.learning_rate else ""))
        return f"{re.sub(r'[^A-Za-z0-9_.=-]+', '-', raw)[:160]}__{self.digest[:DIGEST_CHARS]}"

    def label(self) -> str:
        return f"{self.engine} {self.parameterization} {self.prior} {self.data} seed {self.seed}"

    def wire(self, *, timeout_s: float | None = None) -> dict:
        return {**self.resolved(), "key": self.key, "digest": self.digest, "prior_spec": self.prior,
                "save_draws": self.save_draws, "keep_checks": False, "timeout_s": timeout_s}


def approx_settings_from_wire(wire: dict) -> ApproxSettings:
    return ApproxSettings(**wire["settings"])
