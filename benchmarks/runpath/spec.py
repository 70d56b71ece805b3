"""What one run is: an engine, a problem (data + prior + parameterisation) and settings.

A :class:`RunSpec` names its data and prior by their spec texts (``rubin:sigma_scale=0.1``, a preset
or ``mu=...;tau=...``) so records and reports can show them; :meth:`RunSpec.wire` resolves them once,
on the client, into plain JSON (the data's values included), which is what a worker process or a
Dask worker on another machine receives: no worker reads a file the client named.

Keys: every record is stored under ``<readable>__<digest>``, the readable part for people and a
digest of the whole resolved spec (engine, parameterisation, prior, the data's values, settings,
section) for uniqueness, so two specs that read alike (``/p/a/x.csv`` and ``/p/a-x.csv``) never share
a key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache

from models import Prior, SchoolsData
from models.errors import UsageError
from models.priors import MU_FAMILIES, TAU_FAMILIES, Dist
from models.problem import PARAMETERIZATIONS, Problem
from models.specs import resolve_data, resolve_prior
from reference.limits import MIN_DRAWS_PER_CHAIN

from ..engines import ENGINES, check_capabilities
from ..engines.base import Settings, SettingsError

__all__ = ["RunSpec", "data_for", "prior_for", "problem_from_wire", "settings_from_wire", "DIGEST_CHARS"]

#: hex characters of the spec digest in a record key: 48 bits, so a collision among even a million
#: specs has probability ~2e-3 * 1e-3; the digest of the full spec is kept in the record as well
DIGEST_CHARS = 12


@lru_cache(maxsize=64)
def data_for(spec: str) -> SchoolsData:
    """The data a spec names (cached: a matrix names one data set in many specs)."""
    return resolve_data(spec)


@lru_cache(maxsize=64)
def prior_for(spec: str) -> Prior:
    return resolve_prior(spec)


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    engine: str
    parameterization: str
    prior: str = "default"
    data: str = "rubin"
    settings: Settings = Settings()
    section: str = "main"
    save_draws: bool = False
    keep_checks: bool = False  # keep every z-score of the reference check (calibration's figure)

    def __post_init__(self) -> None:
        if self.parameterization not in PARAMETERIZATIONS:
            raise UsageError(f"parameterization = {self.parameterization!r}: must be one of "
                             f"{', '.join(PARAMETERIZATIONS)}")
        if not isinstance(self.settings, Settings):
            raise TypeError(f"settings = {type(self.settings).__name__}: expected Settings")
        if self.settings.draws < MIN_DRAWS_PER_CHAIN:  # every run is checked: refuse before it samples
            raise SettingsError(f"draws = {self.settings.draws}: the reference check needs at least "
                                f"{MIN_DRAWS_PER_CHAIN} draws per chain (fewer have no MCSE)")
        if self.engine in ENGINES:  # an unknown name is refused where it is chosen, with the list
            check_capabilities(self.engine, self.settings)

    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def param(self) -> str:
        return self.parameterization

    def with_seed(self, seed: int) -> RunSpec:
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, seed=seed))

    def problem(self) -> Problem:
        return Problem(data_for(self.data), prior_for(self.prior), self.parameterization)

    def resolved(self) -> dict:
        """Everything that determines the run's draws, as canonical JSON-able values."""
        data = data_for(self.data)
        prior = prior_for(self.prior)
        return {
            "section": self.section,
            "engine": self.engine,
            "parameterization": self.parameterization,
            "prior": prior.to_dict(),
            "data": {**data.to_dict(), "spec": self.data, "sigma_scale": _sigma_scale(data)},
            "settings": self.settings.to_dict(),
        }

    @property
    def digest(self) -> str:
        blob = json.dumps(self.resolved(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def readable(self) -> str:
        s = self.settings
        data = data_for(self.data)
        raw = (f"{self.section}__{self.engine}__{self.parameterization}__{self.prior}__{data.name}"
               f"__s{s.seed}__c{s.chains}w{s.warmup}d{s.draws}ta{s.target_accept:g}td{s.max_treedepth}"
               + (f"__{s.device}" if s.device != "cpu" else "")
               + "".join(f"__{k}={v}" for k, v in s.options))
        return re.sub(r"[^A-Za-z0-9_.=-]+", "-", raw)[:160]

    @property
    def key(self) -> str:
        return f"{self.readable}__{self.digest[:DIGEST_CHARS]}"

    @property
    def program(self) -> tuple:
        """What one compiled program serves: runs that differ only in their seed share it."""
        s = dataclasses.asdict(self.settings)  # options stay (name, value) pairs: hashable
        s.pop("seed")
        return (self.engine, self.parameterization, self.prior, data_for(self.data).J, tuple(sorted(s.items())))

    def label(self) -> str:
        return f"{self.engine} {self.parameterization} {self.prior} {self.data} seed {self.seed}"

    def wire(self, *, timeout_s: float | None = None) -> dict:
        """The JSON a worker process (local or on a Dask worker) runs."""
        return {**self.resolved(), "key": self.key, "digest": self.digest, "prior_spec": self.prior,
                "save_draws": self.save_draws, "keep_checks": self.keep_checks, "timeout_s": timeout_s}


def _sigma_scale(data: SchoolsData) -> float:
    return float(getattr(data, "sigma_scale", 1.0) or 1.0)


def problem_from_wire(wire: dict) -> Problem:
    """The Problem a wire dict describes (in the worker: no file is read, no spec re-parsed)."""
    d = wire["data"]
    data = SchoolsData(d["y"], d["sigma"], d["school"], name=d["name"])
    p = wire["prior"]
    prior = Prior(_dist("mu", p["mu"]), _dist("tau", p["tau"]), p["name"])
    return Problem(data, prior, wire["parameterization"])


def _dist(which: str, d: dict) -> Dist:
    names = (MU_FAMILIES if which == "mu" else TAU_FAMILIES)[d["family"]]
    return Dist(which, d["family"], tuple(d[n] for n in names))


def settings_from_wire(wire: dict) -> Settings:
    return Settings(**wire["settings"])
