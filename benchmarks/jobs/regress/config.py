"""Named configurations of the regression gate (benchmarks/configs/regress.toml), validated by the
same functions as every matrix configuration (:mod:`benchmarks.jobs.config`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.problem import PARAMETERIZATIONS

from ...engines.base import Settings
from ...runpath.spec import data_for, prior_for
from ..config import (
    CONFIGS,
    ConfigError,
    check_engines,
    check_parameterizations,
    check_seeds,
    read_toml,
    settings_from,
)

__all__ = ["RegressError", "RegressConfig", "load_config", "CONFIG_FILE"]

CONFIG_FILE = CONFIGS / "regress.toml"


class RegressError(ConfigError):
    """A bad baseline file, configuration or argument; the message names it (exit 2)."""


KNOWN = {"name", "description", "engines", "parameterizations", "prior", "data", "seeds", "timeout_s", "settings"}


@dataclass(frozen=True)
class RegressConfig:
    name: str
    engines: list[str]
    parameterizations: list[str]
    seeds: list[int]
    settings: Settings  # seed is per run
    prior: str = "default"
    data: str = "rubin"
    timeout_s: float = 600.0
    description: str = ""

    def to_dict(self) -> dict:
        s = self.settings.to_dict()
        s.pop("seed")
        return {"name": self.name, "description": self.description, "engines": list(self.engines),
                "parameterizations": list(self.parameterizations), "prior": self.prior, "data": self.data,
                "seeds": list(self.seeds), "timeout_s": self.timeout_s, "settings": s}

    @classmethod
    def from_dict(cls, d: dict, name: str | None = None) -> RegressConfig:
        try:
            return cls._from_dict(d, name)
        except RegressError:
            raise
        except ConfigError as e:  # the shared validation's error, as the gate's own type
            raise RegressError(str(e)) from None

    @classmethod
    def _from_dict(cls, d: dict, name: str | None) -> RegressConfig:
        if not isinstance(d, dict):
            raise RegressError(f"config {name!r} = {d!r}: expected a table")
        name = name or d.get("name")
        where = f"config {name!r}"
        unknown = set(d) - KNOWN
        if unknown:
            raise RegressError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(KNOWN)})")
        engines = check_engines(d.get("engines", []), f"{where} engines")
        if not engines:
            raise RegressError(f"{where}: needs at least one engine")
        params = check_parameterizations(d.get("parameterizations", list(PARAMETERIZATIONS)),
                                         f"{where} parameterizations")
        seeds = check_seeds(d.get("seeds", []), f"{where} seeds")
        settings = settings_from(d.get("settings", {}), where)
        for key in ("prior", "data", "description"):
            if key in d and not isinstance(d[key], str):
                raise RegressError(f"{where} {key} = {d[key]!r}: expected a string")
        prior, data = str(d.get("prior", "default")), str(d.get("data", "rubin"))
        prior_for(prior)
        data_for(data)
        timeout = d.get("timeout_s", 600.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise RegressError(f"{where} timeout_s = {timeout!r}: must be a number of seconds > 0")
        return cls(name=str(name), engines=engines, parameterizations=params, seeds=seeds, settings=settings,
                   prior=prior, data=data, timeout_s=float(timeout), description=str(d.get("description", "")))


def load_config(spec: str, path: Path = CONFIG_FILE) -> RegressConfig:
    """``NAME`` (a table of benchmarks/configs/regress.toml) or ``FILE.toml[:NAME]``."""
    if ".toml" in spec:
        file, _, name = spec.partition(".toml")
        path, name = Path(file + ".toml"), name.lstrip(":")
    else:
        name = spec
    tables = read_toml(path).get("config", {})
    if not isinstance(tables, dict):
        raise RegressError(f"config file {str(path)!r}: config = {tables!r}: expected tables [config.NAME]")
    if not name:
        if len(tables) != 1:
            raise RegressError(f"config file {str(path)!r}: name one of {sorted(tables)} as FILE.toml:NAME")
        name = next(iter(tables))
    if name not in tables:
        raise RegressError(f"config = {name!r}: not in {path} (configs: {', '.join(sorted(tables))})")
    return RegressConfig.from_dict(tables[name], name=name)
