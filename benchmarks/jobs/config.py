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
from .validate import MAX_SEEDS

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


def _nonempty(values: list, where: str, what: str) -> list:
    if not values:
        raise ConfigError(f"{where} = []: empty; name at least one {what}")
    return values


def _strings(values: list, where: str, what: str) -> list[str]:
    for v in values:
        if not isinstance(v, str):
            raise ConfigError(f"{where}: {what} = {v!r} must be a string")
    return values


def check_engines(names, where: str = "engines") -> list[str]:
    names = _strings(as_list(names, where), where, "engine")
    for e in names:
        if e not in ENGINES:
            raise ConfigError(f"{where}: engine = {e!r} is unknown; engines: {', '.join(ENGINES)}")
    return [str(e) for e in names]


def check_parameterizations(params, where: str = "parameterizations") -> list[str]:
    params = _strings(as_list(params, where), where, "parameterization")
    for p in params:
        if p not in PARAMETERIZATIONS:
            raise ConfigError(f"{where}: {p!r} must be one of {PARAMETERIZATIONS}")
    return [str(p) for p in params]


def check_seeds(seeds, where: str = "seeds") -> list[int]:
    seeds = as_list(seeds, where)
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"{where}: {len(seeds)} seeds; at most {MAX_SEEDS}")
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
    except IsADirectoryError:
        raise ConfigError(f"config = {str(path)!r}: is a folder; name a TOML file") from None
    except OSError as e:
        raise ConfigError(f"config = {str(path)!r}: cannot read ({e.strerror or e})") from None
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
                                try:
                                    spec = RunSpec(engine=engine, parameterization=param, prior=prior, data=d,
                                                   settings=dataclasses.replace(settings, seed=seed),
                                                   section=self.name, save_draws=self.save_draws and i == 0)
                                except UsageError as e:  # settings this engine cannot take (a device, an option)
                                    raise ConfigError(f"section {self.name!r} settings, engine {engine}: {e}") from None
                                out.append(spec)
        return out


KNOWN_KEYS = {"engines", "parameterizations", "priors", "data", "seeds", "settings", "draws", "save_draws",
              "description"}


#: the most runs one matrix file may name (every section together): 10^5 runs at a second each is a day
MAX_RUNS = 100_000


def parse_sections(config: dict, engines: list[str] | None = None, seeds: int | None = None) -> list[Section]:
    """Every section of a matrix configuration, each key checked (type, emptiness, value) before any run."""
    if not isinstance(config, dict):
        raise ConfigError(f"config = {config!r}: expected a table")
    defaults = {k: v for k, v in config.items() if k != "section"}
    tables = config.get("section", {"main": {}})
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"section = {tables!r}: expected tables [section.NAME]")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS):
        raise ConfigError(f"--seeds = {seeds!r}: must be a whole number in [1, {MAX_SEEDS}]")
    sections, runs = [], 0
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"section.{name} = {table!r}: expected a table [section.{name}] of keys")
        merged = {**defaults, **table}
        unknown = set(merged) - KNOWN_KEYS
        if unknown:
            raise ConfigError(f"section {name!r}: unknown keys {sorted(unknown)}")
        where = f"section {name!r}"
        eng = _nonempty(check_engines(engines if engines is not None else merged.get("engines", default_engines()),
                                      f"{where} engines"), f"{where} engines", "engine")
        params = _nonempty(check_parameterizations(merged.get("parameterizations", list(PARAMETERIZATIONS)),
                                                   f"{where} parameterizations"), f"{where} parameterizations",
                           "parameterization")
        priors = _nonempty(_strings(as_list(merged.get("priors", ["default"]), f"{where} priors"), f"{where} priors",
                                    "prior"), f"{where} priors", "prior")
        for p in priors:
            prior_for(p)  # raises naming a bad prior
        data = _nonempty(_strings(as_list(merged.get("data", ["rubin"]), f"{where} data"), f"{where} data",
                                  "data spec"), f"{where} data", "data spec")
        for d in data:
            data_for(d)  # raises naming a bad data spec, before any run
        seed_list = list(range(1, seeds + 1)) if seeds is not None else check_seeds(merged.get("seeds", [1, 2, 3]),
                                                                                     f"{where} seeds")
        base = merged.get("settings", {})
        if not isinstance(base, dict):
            raise ConfigError(f"{where} settings = {base!r}: expected a table, e.g. settings = {{ draws = 500 }}")
        draws_list = _nonempty(as_list(merged.get("draws", base.get("draws", Settings().draws)), f"{where} draws"),
                               f"{where} draws", "number of draws")
        settings = [settings_from({**base, "draws": d}, where) for d in draws_list]
        for key, kind in (("save_draws", bool), ("description", str)):
            if key in merged and not isinstance(merged[key], kind):
                raise ConfigError(f"{where} {key} = {merged[key]!r}: expected a {kind.__name__}")
        runs += len(eng) * len(params) * len(priors) * len(data) * len(seed_list) * len(settings)
        if runs > MAX_RUNS:
            raise ConfigError(f"{where}: the matrix names more than {MAX_RUNS} runs; split it")
        sections.append(Section(name, eng, params, priors, data, seed_list, settings,
                                bool(merged.get("save_draws", False)), str(merged.get("description", ""))))
    return sections


def load_config(path: Path, **overrides) -> list[Section]:
    return parse_sections(read_toml(path), **overrides)


def specs_of(sections: list[Section]) -> list[RunSpec]:
    return [s for sec in sections for s in sec.specs()]
