"""``python -m benchmarks sweep``: centred vs non-centred across data informativeness and J (issue 13).

Every engine x both parameterisations x sigma_scale x J x seeds (``benchmarks/configs/sweep.toml``),
default prior and settings, through the one run path, each fit checked against the exact reference
for its own data. Writes ``<results>/<run-id>/`` (default ``results/runs/sweep/``; staged in
``<run-id>.partial`` and swapped in whole when finished): the records, ``sweep.csv``, the figures and
SWEEP.md (:mod:`benchmarks.reporting.sweep`).

The config's ``[sweep]`` table names the scales and, per J, a data spec with ``{sigma_scale}`` in it;
this module turns them into ordinary matrix sections (one per J) for :func:`parse_sections`.
"""

from __future__ import annotations

import argparse
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from models.errors import UsageError

from ..reporting.sweep import console_summary, render_sweep
from ..runpath import check_run_id, remove_created
from ..runpath.progress import fmt_duration
from ..runpath.spec import data_for
from .common import add_run_options, run_specs
from .config import CONFIGS, ConfigError, Section, as_list, parse_sections, read_toml, specs_of
from .validate import engine_names

__all__ = ["HELP", "configure", "main", "CONFIG", "SweepPlan", "load_sweep", "parse_scales", "parse_js",
           "LoadSampler"]

CONFIG = CONFIGS / "sweep.toml"
HELP = "centred vs non-centred across data informativeness (sigma_scale) and J"
#: the placeholder a [sweep.data] spec holds for the scale
PLACEHOLDER = "{sigma_scale}"
#: how often the machine's 1-minute load average is sampled while the sweep runs (seconds)
LOAD_PERIOD_S = 15.0


@dataclass
class SweepPlan:
    sections: list[Section]
    scales: list[float]
    data: dict[int, str]  # J -> data spec template
    seeds: list[int]
    engines: list[str]


def _float_text(x: float) -> str:
    return f"{x:g}"


def parse_scales(text: str | None) -> list[float] | None:
    """``"0.1,1"`` -> [0.1, 1.0]; each > 0 and finite, no repeats."""
    if text is None:
        return None
    out = []
    for part in text.split(","):
        try:
            x = float(part)
        except ValueError:
            x = math.nan
        if not (math.isfinite(x) and x > 0):
            raise UsageError(f"--scales = {text!r}: {part.strip()!r} is not a finite number > 0")
        out.append(x)
    if len(set(out)) != len(out):
        raise UsageError(f"--scales = {text!r}: a scale repeats")
    return out


def parse_js(text: str | None) -> list[int] | None:
    """``"8,64"`` -> [8, 64]."""
    if text is None:
        return None
    out = []
    for part in text.split(","):
        p = part.strip()
        if not p.isascii() or not p.isdigit() or len(p) > 9:
            raise UsageError(f"--J = {text!r}: {p!r} is not a whole number of schools")
        out.append(int(p))
    if len(set(out)) != len(out):
        raise UsageError(f"--J = {text!r}: a J repeats")
    return out


def _config_scales(table: dict, path: Path) -> list[float]:
    scales = as_list(table.get("sigma_scales"), "sweep.sigma_scales")
    for s in scales:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not (math.isfinite(s) and s > 0):
            raise ConfigError(f"{path}: sweep.sigma_scales: {s!r} must be a number > 0")
    if not scales or len(set(scales)) != len(scales):
        raise ConfigError(f"{path}: sweep.sigma_scales = {scales!r}: needs distinct scales")
    return [float(s) for s in scales]


def _config_data(table: dict, path: Path) -> dict[int, str]:
    data = table.get("data")
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: sweep.data = {data!r}: expected a table J = \"data spec with {PLACEHOLDER}\"")
    out = {}
    for key, spec in data.items():
        if not key.isdigit() or int(key) < 2:
            raise ConfigError(f"{path}: sweep.data key = {key!r}: must be J, a whole number >= 2")
        if not isinstance(spec, str) or PLACEHOLDER not in spec:
            raise ConfigError(f"{path}: sweep.data.{key} = {spec!r}: must be a data spec holding {PLACEHOLDER}")
        out[int(key)] = spec
    return out


def load_sweep(path: Path = CONFIG, *, engines: list[str] | None = None, seeds: int | None = None,
               scales: list[float] | None = None, js: list[int] | None = None) -> SweepPlan:
    """The sweep's sections (one per J, named ``J8``, ``J64``): every data spec resolved (so a bad
    template fails here, naming it) and checked to have its J and its scale."""
    config = read_toml(path)
    table = config.pop("sweep", None)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: needs a [sweep] table with sigma_scales and [sweep.data]")
    unknown = set(table) - {"sigma_scales", "data"}
    if unknown:
        raise ConfigError(f"{path}: [sweep] has unknown keys {sorted(unknown)}")
    if "section" in config:
        raise ConfigError(f"{path}: a sweep config has no [section.*] tables (its sections are its J)")
    scale_list = scales or _config_scales(table, path)
    templates = _config_data(table, path)
    for J in js or []:
        if J not in templates:
            raise UsageError(f"--J = {J}: the config has data for J in {sorted(templates)} only")
    chosen = {J: templates[J] for J in (js or sorted(templates))}
    sections = {}
    for J, template in chosen.items():
        specs = []
        for s in scale_list:
            spec = template.replace(PLACEHOLDER, _float_text(s))
            d = data_for(spec)  # raises naming a bad spec
            if d.J != J or not math.isclose(d.sigma_scale, s, rel_tol=1e-12):
                raise ConfigError(f"{path}: sweep.data.{J} = {template!r} gives J = {d.J}, sigma_scale = "
                                  f"{d.sigma_scale:g} for scale {s:g}")
            specs.append(spec)
        sections[f"J{J}"] = {"data": specs}
    sections_list = parse_sections({**config, "section": sections}, engines=engines, seeds=seeds)
    first = sections_list[0]
    return SweepPlan(sections_list, scale_list, chosen, first.seeds, first.engines)


class LoadSampler:
    """The 1-minute load average, sampled every ``period`` seconds on a daemon thread: how busy the
    shared machine was while the sweep ran (its own worker included)."""

    def __init__(self, period: float = LOAD_PERIOD_S) -> None:
        self.period = period
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="load-sampler", daemon=True)

    def _loop(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.period):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * self.period)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engines", help="comma-separated subset of engines")
    p.add_argument("--seeds", type=int, help="use seeds 1..N (default: the config's, 1-3)")
    p.add_argument("--scales", help="comma-separated sigma_scales (default: the config's 0.05 ... 4)")
    p.add_argument("--J", dest="J", help="comma-separated numbers of schools among the config's (8, 64)")
    p.add_argument("--config", type=Path, default=CONFIG, help=f"sweep configuration (default: {CONFIG})")
    p.add_argument("--run-id", default="sweep", help="folder name under --results (default: sweep)")
    add_run_options(p)


def main(a: argparse.Namespace) -> int:
    if a.seeds is not None and a.seeds < 1:
        raise UsageError(f"--seeds = {a.seeds}: must be >= 1")
    plan = load_sweep(a.config, engines=engine_names(a.engines), seeds=a.seeds,
                      scales=parse_scales(a.scales), js=parse_js(a.J))
    specs = specs_of(plan.sections)
    results = Path(a.results)
    final = results / check_run_id(a.run_id)
    staging = results / f"{a.run_id}.partial"
    t0 = time.perf_counter()
    meta = {"config": str(a.config), "sigma_scales": plan.scales, "data": {str(J): t for J, t in plan.data.items()},
            "seeds": plan.seeds, "engines": plan.engines, "cores": os.cpu_count()}

    with LoadSampler() as load:
        def finish(store, records) -> None:  # still holding the staging folder's lock
            load.stop()
            store.write_json("sweep.json", {**meta, "load_samples": load.samples, "load_period_s": load.period,
                                            "note": "load_samples: the 1-minute load average while this "
                                                    "session ran (the sweep's own worker included)"})
            render_sweep(staging)
            remove_created(final)
            os.replace(staging, final)  # the finished folder is swapped in whole, never half-written

        records = run_specs("sweep", specs, staging, a, fresh=True, finish=finish)
    wall = time.perf_counter() - t0
    print()
    print(console_summary(final))
    ok = [r for r in records if not r.get("error")]
    print(f"\nsweep: {len(records)} runs ({len(ok)} finished) in {fmt_duration(wall)} wall; "
          f"{final / 'SWEEP.md'}")
    if not ok:
        raise UsageError(f"sweep: no run finished (every engine unavailable or failing here; see {final / 'sweep.csv'})")
    return 0

