"""Matrix configurations (benchmarks/configs/*.toml) into run specs; one validation for every job.

A matrix file's top-level keys are defaults; ``[section.NAME]`` tables override them. Keys:
``engines``, ``parameterizations``, ``priors`` (presets or ``mu=TEXT;tau=TEXT``), ``data`` (specs:
``rubin``, ``rubin:sigma_scale=S``, ``synthetic:J=N[...]``, a file), ``seeds``, ``settings`` (the
Settings fields but the seed), ``draws`` (a list varies draws), ``save_draws``, ``description``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import UsageError
from models.problem import PARAMETERIZATIONS

from ..engines import ENGINES, default_engines
from ..engines.base import Settings
from ..runpath.spec import RunSpec, data_for, prior_for

__all__ = ["ConfigError", "Section", "parse_sections", "load_config", "specs_of", "check_engines",
           "check_parameterizations", "check_seeds", "settings_from", "read_toml"]

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class ConfigError(UsageError):
    """A bad configuration: the message names the field and the value."""


def as_list(v, field_name: str) -> list:
    if isinstance(v, list):
        return v
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return [v]
    raise ConfigError(f"{field_name} = {v!r}: expected a value or a list")


def check_engines(names, where: str = "engines") -> list[str]:
    names = as_list(names, where)
    for e in names:
        if e not in ENGINES:
            raise ConfigError(f"{where}: engine = {e!r} is unknown; engines: {', '.join(ENGINES)}")
    return [str(e) for e in names]


def check_parameterizations(params, where: str = "parameterizations") -> list[str]:
    params = as_list(params, where)
    for p in params:
        if p not in PARAMETERIZATIONS:
            raise ConfigError(f"{where}: {p!r} must be one of {PARAMETERIZATIONS}")
    return [str(p) for p in params]


def check_seeds(seeds, where: str = "seeds") -> list[int]:
    seeds = as_list(seeds, where)
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"{where}: seed = {s!r} must be a non-negative integer")
        out.append(s)
    if len(set(out)) != len(out):
        raise ConfigError(f"{where} = {out}: a seed repeats")
    if not out:
        raise ConfigError(f"{where}: needs at least one seed")
    return out


def settings_from(d: dict, where: str) -> Settings:
    if not isinstance(d, dict):
        raise ConfigError(f"{where} settings = {d!r}: expected a table")
    if "seed" in d:
        raise ConfigError(f"{where} settings.seed is not allowed (seeds come from `seeds`)")
    try:
        return Settings(**d)
    except TypeError as e:
        raise ConfigError(f"{where} settings = {d!r}: {e}") from None


def read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config = {str(path)!r}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config = {str(path)!r}: invalid TOML ({e})") from None


@dataclass
class Section:
    name: str
    engines: list[str]
    parameterizations: list[str]
    priors: list[str]
    data: list[str]
    seeds: list[int]
    settings: list[Settings] = field(default_factory=lambda: [Settings()])
    save_draws: bool = False
    description: str = ""

    def specs(self) -> list[RunSpec]:
        out = []
        for d in self.data:
            for prior in self.priors:
                for settings in self.settings:
                    for engine in self.engines:
                        for param in self.parameterizations:
                            for i, seed in enumerate(self.seeds):
                                # draws are kept for each section's first seed only: enough for the figures
                                out.append(RunSpec(engine=engine, parameterization=param, prior=prior, data=d,
                                                   settings=dataclasses.replace(settings, seed=seed),
                                                   section=self.name, save_draws=self.save_draws and i == 0))
        return out


KNOWN_KEYS = {"engines", "parameterizations", "priors", "data", "seeds", "settings", "draws", "save_draws",
              "description"}


def parse_sections(config: dict, engines: list[str] | None = None, seeds: int | None = None) -> list[Section]:
    defaults = {k: v for k, v in config.items() if k != "section"}
    tables = config.get("section") or {"main": {}}
    sections = []
    for name, table in tables.items():
        merged = {**defaults, **table}
        unknown = set(merged) - KNOWN_KEYS
        if unknown:
            raise ConfigError(f"section {name!r}: unknown keys {sorted(unknown)}")
        eng = check_engines(engines or merged.get("engines", default_engines()))
        params = check_parameterizations(merged.get("parameterizations", list(PARAMETERIZATIONS)))
        priors = [str(p) for p in as_list(merged.get("priors", ["default"]), "priors")]
        for p in priors:
            prior_for(p)  # raises naming a bad prior
        data = [str(d) for d in as_list(merged.get("data", ["rubin"]), "data")]
        for d in data:
            data_for(d)  # raises naming a bad data spec, before any run
        seed_list = list(range(1, seeds + 1)) if seeds else check_seeds(merged.get("seeds", [1, 2, 3]))
        base = merged.get("settings", {})
        draws_list = as_list(merged.get("draws", base.get("draws", Settings().draws)), "draws")
        settings = [settings_from({**base, "draws": d}, f"section {name!r}") for d in draws_list]
        sections.append(Section(name, eng, params, priors, data, seed_list, settings,
                                bool(merged.get("save_draws", False)), str(merged.get("description", ""))))
    return sections


def load_config(path: Path, **overrides) -> list[Section]:
    return parse_sections(read_toml(path), **overrides)


def specs_of(sections: list[Section]) -> list[RunSpec]:
    return [s for sec in sections for s in sec.specs()]
