"""Regression gate: a baseline of what each engine did over fixed seeds, and a statistical gate against it.

``python -m benchmarks baseline --config ci`` runs a named configuration (benchmarks/configs/regress.toml)
and writes ``results/baselines/ci.json``: per engine x parameterisation and per seed the reference
verdict, ESS per gradient, divergences (per chain), max R-hat and sampling time per draw, with their
medians and spreads, the settings, the seeds, every package version and the machine.

``python -m benchmarks regress --baseline FILE`` reruns the baseline's own configuration on the same
seeds and exits 1 when, for an engine x parameterisation,

* **error** - an engine that ran in the baseline now errors, times out or is unavailable;
* **verdict** - reference verdicts turn from pass to fail on more seeds than the check's own false-alarm
  rate explains (see :func:`verdict_flip_test`);
* **ess_per_grad** - ESS per gradient drops beyond the baseline's seed-to-seed spread (a one-sided
  prediction bound on log scale, :func:`ess_drop_test`);
* **divergences** - the divergence rate rises beyond a quasi-binomial bound (:func:`divergence_rise_test`).

Time per draw is compared like ESS per gradient but only warns unless ``--strict-time`` (machines and
CI runners differ); max R-hat only warns. The gate writes JUnit XML (one testsuite ``ppl-regress``,
one testcase per engine x parameterisation x check) and a markdown summary (appended to
``$GITHUB_STEP_SUMMARY`` when that is set), both atomically.

False alarms. Each statistical check has a one-sided false-alarm rate of at most ``ALPHA`` (0.01) when
nothing changed in distribution; with K such checks the whole gate's rate is at most K x ALPHA (union
bound), which the summary states. A rerun with the same PPL build and seeds reproduces the draws
exactly, so it passes with certainty; the tests matter across versions and machines, where the same
seed gives different draws. The summary also states each ESS check's power: the drop it catches 80 %
of the time with the baseline's spread and number of seeds.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import platform
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy import optimize, special, stats

from .engines import ENGINES, Settings
from .environment import environment
from .io import write_json, write_text

SCHEMA = "eight-schools-ppl/regress-baseline/1"
CONFIG_FILE = Path(__file__).parent / "configs" / "regress.toml"

# --- thresholds: every one named, with its reason ------------------------------------------------

#: One-sided false-alarm rate of each statistical check (ESS per gradient, divergences, verdicts) when
#: the sampler's behaviour did not change. 1 % per check keeps a gate of ~10 checks below ~10 %
#: family-wise in the worst case (union bound) while still catching large regressions with 5 seeds.
ALPHA = 0.01

#: ESS per gradient must also drop by at least this fraction to fail: a statistically detectable 3 %
#: drop (possible with many seeds) is not a regression worth breaking a build for.
ESS_DROP_FLOOR = 0.10

#: Smallest seed-to-seed standard deviation of log(ESS per gradient) assumed. Below it the spread is
#: not measured but an artefact (e.g. identical seeds); ESS estimates themselves carry a relative
#: error of ~5 % or more at the ESS of these runs.
LOG_SPREAD_FLOOR = 0.05

#: The divergence rate must also rise by at least this much (absolute, per transition) to fail: a few
#: extra divergences in thousands of transitions are noise, and the reference verdict catches the
#: cases where they bias the answer.
DIVERGENCE_RISE_FLOOR = 0.002

#: Smallest seed-to-seed standard deviation of log(time per draw) assumed: on shared machines (CI
#: runners, this project's 2 shared cores) an unchanged rerun's times move by 15 % or more, more than
#: the spread within one baseline shows.
TIME_LOG_SPREAD_FLOOR = 0.15

#: Time per draw must also rise by at least this fraction to warn (timer resolution, e.g. Stan reports
#: whole milliseconds, and load on shared CI runners).
TIME_RISE_FLOOR = 0.25

#: Max R-hat above this (and above the baseline's worst seed) warns; R-hat is not gated because short
#: CI runs of the centred model exceed any fixed bound in the baseline already.
RHAT_WARN = 1.01

#: Power reported for each ESS check: the drop detected with this probability.
REPORTED_POWER = 0.8

KINDS = ("error", "verdict", "ess_per_grad", "divergences", "time_per_draw", "max_rhat")
GATED = ("error", "verdict", "ess_per_grad", "divergences")


class RegressError(ValueError):
    """A bad baseline file, configuration or argument; the message names it."""


# --- configurations -----------------------------------------------------------------------------


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
        from models.logdensity import PARAMETERIZATIONS

        name = name or d.get("name")
        known = {"name", "description", "engines", "parameterizations", "prior", "data", "seeds", "timeout_s",
                 "settings"}
        unknown = set(d) - known
        if unknown:
            raise RegressError(f"config {name!r}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        engines = list(d.get("engines", []))
        for e in engines:
            if e not in ENGINES:
                raise RegressError(f"config {name!r}: engine = {e!r} is unknown; engines: {', '.join(ENGINES)}")
        params = list(d.get("parameterizations", PARAMETERIZATIONS))
        for p in params:
            if p not in PARAMETERIZATIONS:
                raise RegressError(f"config {name!r}: parameterization = {p!r} must be one of {PARAMETERIZATIONS}")
        seeds = [int(s) for s in d.get("seeds", [])]
        if not engines or not seeds:
            raise RegressError(f"config {name!r}: needs at least one engine and one seed")
        if len(set(seeds)) != len(seeds):
            raise RegressError(f"config {name!r}: seeds = {seeds} repeat a seed")
        settings = dict(d.get("settings", {}))
        if "seed" in settings:
            raise RegressError(f"config {name!r}: settings.seed is not allowed (use seeds = [...])")
        try:
            st = Settings(**settings)
        except (TypeError, ValueError) as e:
            raise RegressError(f"config {name!r}: settings = {settings!r}: {e}") from None
        return cls(name=str(name), engines=engines, parameterizations=params, seeds=seeds, settings=st,
                   prior=str(d.get("prior", "default")), data=str(d.get("data", "rubin")),
                   timeout_s=float(d.get("timeout_s", 600.0)), description=str(d.get("description", "")))


def load_config(spec: str, path: Path = CONFIG_FILE) -> RegressConfig:
    """``NAME`` (a table of benchmarks/configs/regress.toml) or ``FILE.toml[:NAME]``."""
    if ".toml" in spec:
        file, _, name = spec.partition(".toml")
        path, name = Path(file + ".toml"), name.lstrip(":")
    else:
        name = spec
    try:
        doc = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RegressError(f"config file {str(path)!r}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise RegressError(f"config file {str(path)!r}: invalid TOML ({e})") from None
    tables = doc.get("config", {})
    if not name:
        if len(tables) != 1:
            raise RegressError(f"config file {str(path)!r}: name one of {sorted(tables)} as FILE.toml:NAME")
        name = next(iter(tables))
    if name not in tables:
        raise RegressError(f"config = {name!r}: not in {path} (configs: {', '.join(sorted(tables))})")
    return RegressConfig.from_dict(tables[name], name=name)


# --- running: one measurement (a baseline is a measurement written to a file) -------------------


def _finite(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _run_record(engine: str, param: str, seed: int, data, prior, settings: Settings, timeout_s: float,
                refs) -> dict:
    """One engine run reduced to what the gate compares; never raises for the engine's failure."""
    from reference.check import DEFAULT_ALPHA, check

    from .matrix import RunTimeout, time_limit
    from .runner import run_one

    rec: dict[str, Any] = {"seed": seed, "error": None}
    t0 = time.perf_counter()
    try:
        with time_limit(timeout_s):
            outcome = run_one(engine, data, prior, param, settings)
    except RunTimeout as e:
        rec.update(error=f"timeout: {e}", wall_s=time.perf_counter() - t0)
        return rec
    r = outcome.record
    rec["wall_s"] = time.perf_counter() - t0
    if outcome.result is None:
        rec["error"] = r.get("error") or "failed"
        return rec
    draws = outcome.result.draws
    n_chain_draws = int(draws["posterior"].sizes["draw"])
    div_chain = draws["sample_stats"]["diverging"].values.reshape(-1, n_chain_draws).sum(axis=1)
    n_draws = r["n_draws"]
    if r.get("sampling_s") is not None:
        time_per_draw, phase = r["sampling_s"] / n_draws, "sampling"
    else:
        per_chain = settings.warmup + settings.draws
        time_per_draw, phase = r["inference_s"] / (settings.chains * per_chain), "warmup+sampling"
    rec.update(
        ppl=r.get("ppl"), ppl_version=r.get("ppl_version"),
        min_ess_bulk=r["min_ess_bulk"], gradient_evals=r["gradient_evals"],
        ess_bulk_per_grad=_finite(r["min_ess_bulk"] / r["gradient_evals"]) if r["gradient_evals"] else None,
        divergences=int(r["divergences"]), divergences_per_chain=[int(x) for x in div_chain],
        transitions_per_chain=[n_chain_draws] * len(div_chain), n_draws=n_draws,
        divergence_rate=r["divergences"] / n_draws, max_rhat=_finite(r["max_rhat"]),
        treedepth_hits=r["treedepth_hits"], time_per_draw_s=time_per_draw, time_phase=phase,
        compile_s=r.get("compile_s"), total_s=r.get("total_s"),
    )
    try:
        v = check(draws, refs.get(data, prior), J=data.J, tau_fixed=prior.tau_fixed, alpha=DEFAULT_ALPHA)
    except Exception as e:  # noqa: BLE001 - the reference being unusable is reported, not a crash
        rec.update(check_passed=None, check_error=f"{type(e).__name__}: {e}".splitlines()[0])
    else:
        rec.update(check_passed=bool(v.passed), check_max_abs_z=_finite(v.max_abs_z),
                   check_failed=v.failed[:8], check_alpha=v.alpha, check_error=None)
    return rec


def _spread(values: Sequence[float]) -> dict | None:
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if x.size == 0:
        return None
    q25, med, q75 = np.quantile(x, [0.25, 0.5, 0.75])
    out = {"n": int(x.size), "median": float(med), "mad": float(np.median(np.abs(x - med))),
           "q25": float(q25), "q75": float(q75), "min": float(x.min()), "max": float(x.max())}
    if np.all(x > 0):
        lx = np.log(x)
        out["log_mean"] = float(lx.mean())
        out["log_sd"] = float(lx.std(ddof=1)) if x.size > 1 else None
    return out


def summarise_group(runs: list[dict]) -> dict:
    ok = [r for r in runs if not r.get("error")]
    div = sum(r["divergences"] for r in ok)
    n = sum(r["n_draws"] for r in ok)
    verdicts = [r.get("check_passed") for r in ok]
    return {
        "n_runs": len(runs), "n_ok": len(ok),
        "errors": sorted({r["error"] for r in runs if r.get("error")}),
        "ess_bulk_per_grad": _spread([r["ess_bulk_per_grad"] for r in ok]),
        "divergence_rate": {**(_spread([r["divergence_rate"] for r in ok]) or {}), "divergences": div,
                            "transitions": n, "pooled": div / n if n else None},
        "max_rhat": _spread([r["max_rhat"] for r in ok]),
        "time_per_draw_s": _spread([r["time_per_draw_s"] for r in ok]),
        "verdicts": {"passed": sum(v is True for v in verdicts), "failed": sum(v is False for v in verdicts),
                     "unchecked": sum(v is None for v in verdicts)},
        "ppl_versions": sorted({str(r.get("ppl_version")) for r in ok}),
    }


def group_key(engine: str, param: str) -> str:
    return f"{engine}/{param}"


def machine() -> dict:
    env = environment()
    return {"cpu": env["cpu"], "cores": env["cores"], "affinity": env["affinity"], "os": env["os"],
            "node": platform.node(), "python": env["python"]}


def measure(config: RegressConfig, *, overrides: dict | None = None, engines: list[str] | None = None,
            progress: Callable[[str], None] | None = None) -> dict:
    """Run every engine x parameterisation x seed of ``config``; returns the baseline-shaped dict."""
    from benchmarks.engines import availability

    from .matrix import ReferenceCache, resolve_data, resolve_prior

    engines = list(engines or config.engines)
    base = config.settings.to_dict()
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    settings = {**base, **overrides}
    Settings(**settings)  # validate before any work
    data, prior = resolve_data(config.data), resolve_prior(config.prior)
    refs = ReferenceCache()
    t0 = time.perf_counter()
    groups: dict[str, dict] = {}
    n_total = len(engines) * len(config.parameterizations) * len(config.seeds)
    i = 0
    for engine in engines:
        reason = availability(engine)
        for param in config.parameterizations:
            runs = []
            for seed in config.seeds:
                i += 1
                if reason is not None:
                    runs.append({"seed": seed, "error": f"unavailable: {reason}"})
                else:
                    st = Settings(**{**settings, "seed": seed})
                    runs.append(_run_record(engine, param, seed, data, prior, st, config.timeout_s, refs))
                if progress:
                    r = runs[-1]
                    status = r["error"] or (f"ESS/grad {r['ess_bulk_per_grad']:.4f}, {r['divergences']} div, "
                                            f"reference {'pass' if r.get('check_passed') else 'FAIL'}")
                    progress(f"[{i}/{n_total}] {engine} {param} seed {seed}: {status}"
                             f" ({time.perf_counter() - t0:.0f} s)")
            groups[group_key(engine, param)] = {
                "engine": engine, "parameterization": param,
                "status": "unavailable" if reason else "ran",
                "unavailable": reason, "runs": runs, "summary": summarise_group(runs),
            }
    return {
        "schema": SCHEMA,
        "name": config.name,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "settings": {k: v for k, v in settings.items() if k != "seed"},
        "overrides": overrides,
        "seeds": list(config.seeds),
        "engines": engines,
        "thresholds": thresholds(),
        "environment": environment(),
        "machine": machine(),
        "wall_s": time.perf_counter() - t0,
        "groups": groups,
    }


def thresholds() -> dict:
    return {"alpha": ALPHA, "ess_drop_floor": ESS_DROP_FLOOR, "log_spread_floor": LOG_SPREAD_FLOOR,
            "divergence_rise_floor": DIVERGENCE_RISE_FLOOR, "time_rise_floor": TIME_RISE_FLOOR,
            "time_log_spread_floor": TIME_LOG_SPREAD_FLOOR,
            "rhat_warn": RHAT_WARN}


def load_baseline(path: Path) -> dict:
    """Read and validate a baseline file; raises RegressError naming what is wrong."""
    import json

    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise RegressError(f"--baseline = {str(path)!r}: no such file (make one with `nox -s baseline`)") from None
    except json.JSONDecodeError as e:
        raise RegressError(f"--baseline = {str(path)!r}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise RegressError(f"--baseline = {str(path)!r}: schema {got!r}, expected {SCHEMA!r}")
    for k in ("config", "seeds", "groups", "environment", "machine", "settings"):
        if k not in doc:
            raise RegressError(f"--baseline = {str(path)!r}: field {k!r} missing")
    RegressConfig.from_dict(doc["config"])
    for key, g in doc["groups"].items():
        if len(g.get("runs", [])) != len(doc["seeds"]):
            raise RegressError(f"--baseline = {str(path)!r}: group {key} has {len(g.get('runs', []))} runs "
                               f"for {len(doc['seeds'])} seeds")
        if [r["seed"] for r in g["runs"]] != doc["seeds"]:
            raise RegressError(f"--baseline = {str(path)!r}: group {key} runs are not the seeds {doc['seeds']}")
    return doc


# --- statistical decisions (pure functions of numbers) ------------------------------------------


class DropTest(NamedTuple):
    """One-sided test that a positive quantity moved in the bad direction, on log scale."""

    regressed: bool
    ratio: float  # geometric mean now / geometric mean in the baseline
    p_value: float
    bound: float  # the ratio below (or above) which the test rejects at alpha
    detectable: float | None  # relative change detected with REPORTED_POWER (None: cannot estimate)
    log_sd: float  # the spread used
    n_base: int
    n_new: int


def _positive(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v) and v > 0], float)


def _detectable_shift(se: float, df: int, t_crit: float, power: float) -> float:
    """The log shift caught with probability ``power``: the noncentral t's noncentrality times se."""
    f = lambda nc: stats.nct.sf(t_crit, df, nc) - power  # noqa: E731
    return float(optimize.brentq(f, 0.0, 200.0)) * se


def log_shift_test(base: Sequence[float], new: Sequence[float], *, alpha: float = ALPHA,
                   direction: str = "drop", floor: float = ESS_DROP_FLOOR,
                   spread_floor: float = LOG_SPREAD_FLOOR, power: float = REPORTED_POWER) -> DropTest:
    """Has the geometric mean of ``new`` moved below (``drop``) or above (``rise``) ``base`` by more than
    the baseline's seed-to-seed spread allows?

    Statistic: t = (mean log base - mean log new) / (s * sqrt(1/n_b + 1/n_n)), s the baseline's
    standard deviation of log values (at least ``spread_floor``). If log values are normal with the
    baseline's variance and nothing changed, t follows Student's t with n_b - 1 degrees of freedom, so
    rejecting at its upper ``alpha`` quantile (a one-sided prediction bound for the new mean) has false-
    alarm rate ``alpha``. Unpaired on purpose: the same seed reproduces the same draws only with the
    same PPL build, so across versions pairing carries no information, and within a build a paired
    spread would collapse to zero and turn any tiny nondeterminism into an alarm. The change must also
    exceed ``floor`` (a relative change) to count. Power: ``detectable`` is the relative change caught
    with probability ``power`` (noncentral t), so a pass says "no change larger than this".
    """
    if direction not in ("drop", "rise"):
        raise ValueError(f"direction = {direction!r}: must be 'drop' or 'rise'")
    b, n = np.log(_positive(base)), np.log(_positive(new))
    if b.size < 2 or n.size < 1:
        raise ValueError(f"need >= 2 baseline values and >= 1 new value (have {b.size} and {n.size})")
    sign = 1.0 if direction == "drop" else -1.0
    s = max(float(b.std(ddof=1)), spread_floor)
    se = s * math.sqrt(1 / b.size + 1 / n.size)
    df = b.size - 1
    diff = sign * (b.mean() - n.mean())  # > 0: moved the bad way
    t = diff / se
    p = float(stats.t.sf(t, df))
    t_crit = float(stats.t.isf(alpha, df))
    ratio = float(math.exp(n.mean() - b.mean()))
    change = 1 - ratio if direction == "drop" else ratio - 1
    bound = math.exp(-sign * t_crit * se)
    shift = _detectable_shift(se, df, t_crit, power)
    detectable = 1 - math.exp(-shift) if direction == "drop" else math.exp(shift) - 1
    detectable = max(detectable, floor)
    return DropTest(bool(p < alpha and change > floor), ratio, p, float(bound), float(detectable), s,
                    int(b.size), int(n.size))


def ess_drop_test(base: Sequence[float], new: Sequence[float], *, alpha: float = ALPHA,
                  floor: float = ESS_DROP_FLOOR) -> DropTest:
    """ESS per gradient dropped (see :func:`log_shift_test`)."""
    return log_shift_test(base, new, alpha=alpha, direction="drop", floor=floor)


def time_rise_test(base: Sequence[float], new: Sequence[float], *, alpha: float = ALPHA,
                   floor: float = TIME_RISE_FLOOR) -> DropTest:
    """Time per draw rose (see :func:`log_shift_test`)."""
    return log_shift_test(base, new, alpha=alpha, direction="rise", floor=floor,
                          spread_floor=TIME_LOG_SPREAD_FLOOR)


class DivergenceTest(NamedTuple):
    regressed: bool
    rate_base: float
    rate_new: float
    p_value: float
    dispersion: float
    divergences_base: int
    divergences_new: int


def _pearson(counts: np.ndarray, totals: np.ndarray) -> float:
    p = counts.sum() / totals.sum() if totals.sum() else 0.0
    if p <= 0 or p >= 1:
        return 0.0
    expected = totals * p
    return float(np.sum((counts - expected) ** 2 / (expected * (1 - p))))


def divergence_rise_test(base_counts: Sequence[int], base_totals: Sequence[int], new_counts: Sequence[int],
                         new_totals: Sequence[int], *, alpha: float = ALPHA,
                         floor: float = DIVERGENCE_RISE_FLOOR) -> DivergenceTest:
    """Did the divergence rate rise?  Counts are per chain (divergences, transitions).

    Given the total number of divergences D, the number in the new runs is binomial(D, N_new / N)
    if both share one rate (the conditional test for two Poisson rates). Divergences cluster in
    chains stuck near the funnel's neck, which makes counts overdispersed and that test far too
    eager, so counts are first divided by a dispersion factor phi >= 1: Pearson's chi-square of the
    per-chain counts about each side's own rate, over its degrees of freedom (quasi-binomial). The
    p-value is the upper tail P(X >= D_new / phi) of binomial(D / phi, N_new / N), continued to
    non-integer counts through the regularised incomplete beta function. The rise in rate must also
    exceed ``floor`` to count.
    """
    bc, bt = np.asarray(base_counts, float), np.asarray(base_totals, float)
    nc, nt = np.asarray(new_counts, float), np.asarray(new_totals, float)
    if bc.shape != bt.shape or nc.shape != nt.shape or bt.sum() <= 0 or nt.sum() <= 0:
        raise ValueError("counts and totals must match in length, with transitions on both sides")
    if np.any(bc < 0) or np.any(nc < 0) or np.any(bc > bt) or np.any(nc > nt):
        raise ValueError("divergence counts must lie between 0 and the transitions")
    db, dn, nb, nn = bc.sum(), nc.sum(), bt.sum(), nt.sum()
    df = bc.size + nc.size - 2
    phi = max(1.0, (_pearson(bc, bt) + _pearson(nc, nt)) / df) if df > 0 else 1.0
    rate_b, rate_n = db / nb, dn / nn
    if dn == 0:
        p = 1.0
    else:
        k, n, pi = dn / phi, (db + dn) / phi, nn / (nb + nn)
        p = float(special.betainc(k, n - k + 1, pi))  # P(X >= k) for X ~ binomial(n, pi)
    regressed = p < alpha and (rate_n - rate_b) > floor
    return DivergenceTest(bool(regressed), float(rate_b), float(rate_n), p, float(phi), int(db), int(dn))


class VerdictTest(NamedTuple):
    regressed: bool
    flips: int  # seeds that passed in the baseline and fail now
    at_risk: int  # seeds that passed in the baseline and were checked now
    needed: int | None  # flips needed to fail (None: at_risk too small for any to be significant)
    recoveries: int  # failed in the baseline, pass now
    p_value: float


def flips_needed(at_risk: int, check_alpha: float, alpha: float = ALPHA) -> int | None:
    """Fewest pass -> fail flips among ``at_risk`` seeds whose chance under a correct sampler, each
    seed failing independently with the check's own family-wise rate ``check_alpha``, is <= alpha."""
    for k in range(1, at_risk + 1):
        if stats.binom.sf(k - 1, at_risk, check_alpha) <= alpha:
            return k
    return None


def verdict_flip_test(base: Sequence[bool | None], new: Sequence[bool | None], *, check_alpha: float,
                      alpha: float = ALPHA) -> VerdictTest:
    """Reference verdicts turned from pass to fail on more seeds than the check's false alarms explain.

    The reference check (reference/check.py) fails a correct sampler with family-wise probability at
    most ``check_alpha`` (1 %, Bonferroni, conservative). One flip in 5 seeds happens by chance with
    probability up to 5 %, so it only warns; two flips have probability <= 0.1 % and fail the gate.
    Seeds are paired by seed; a seed unchecked on either side is left out.
    """
    if len(base) != len(new):
        raise ValueError(f"base and new verdicts differ in length ({len(base)} vs {len(new)})")
    pairs = [(b, n) for b, n in zip(base, new) if b is not None and n is not None]
    at_risk = sum(1 for b, _ in pairs if b)
    flips = sum(1 for b, n in pairs if b and not n)
    recoveries = sum(1 for b, n in pairs if not b and n)
    need = flips_needed(at_risk, check_alpha, alpha)
    p = float(stats.binom.sf(flips - 1, at_risk, check_alpha)) if flips else 1.0
    return VerdictTest(need is not None and flips >= need, flips, at_risk, need, recoveries, p)


# --- the gate -------------------------------------------------------------------------------------


@dataclass
class CheckResult:
    engine: str
    param: str
    kind: str
    status: str  # pass | fail | warn | skip | error
    message: str
    baseline: str = ""
    now: str = ""
    details: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "error")


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _g(x: float | None, fmt: str = ".3g") -> str:
    return "—" if x is None else format(x, fmt)


def compare_group(key: str, bg: dict, ng: dict | None, *, alpha: float = ALPHA,
                  strict_time: bool = False, check_alpha: float = 0.01) -> list[CheckResult]:
    engine, param = bg["engine"], bg["parameterization"]
    out: list[CheckResult] = []

    def add(kind, status, message, baseline="", now="", **details):
        out.append(CheckResult(engine, param, kind, status, message, baseline, now, details))

    bruns = bg["runs"]
    b_ok = {r["seed"]: r for r in bruns if not r.get("error")}
    if ng is None:
        add("error", "skip", "not rerun (left out with --engines)")
        return out
    nruns = ng["runs"]
    n_ok = {r["seed"]: r for r in nruns if not r.get("error")}
    # error: an engine that ran now errors
    if not b_ok:
        why = bg.get("unavailable") or "; ".join(bg["summary"]["errors"]) or "no run"
        if not n_ok:
            add("error", "skip", f"did not run in the baseline nor now ({why})")
        else:
            add("error", "pass", f"runs now but did not in the baseline ({why}); nothing to compare")
        for kind in KINDS[1:]:
            add(kind, "skip", "no baseline runs")
        return out
    broke = [r for r in nruns if r.get("error") and r["seed"] in b_ok]
    if broke:
        msgs = sorted({r["error"] for r in broke})
        add("error", "fail", f"ran in the baseline, now errors on seeds {[r['seed'] for r in broke]}: "
            + "; ".join(m[:200] for m in msgs), f"{len(b_ok)}/{len(bruns)} ran", f"{len(n_ok)}/{len(nruns)} ran")
    else:
        add("error", "pass", "ran on every seed that ran in the baseline", f"{len(b_ok)}/{len(bruns)} ran",
            f"{len(n_ok)}/{len(nruns)} ran")
    seeds = [s for s in b_ok if s in n_ok]
    if not seeds:
        for kind in KINDS[1:]:
            add(kind, "skip", "no seed ran on both sides")
        return out
    B = [b_ok[s] for s in seeds]
    N = [n_ok[s] for s in seeds]

    # verdict
    bv, nv = [r.get("check_passed") for r in B], [r.get("check_passed") for r in N]
    if any(v is None for v in nv) and any(v is not None for v in bv):
        errs = sorted({r.get("check_error") or "?" for r in N if r.get("check_passed") is None})
        add("verdict", "error", "the reference check could not run now: " + "; ".join(errs))
    else:
        vt = verdict_flip_test(bv, nv, check_alpha=check_alpha, alpha=alpha)
        bs, ns = f"{sum(v is True for v in bv)}/{len(bv)} pass", f"{sum(v is True for v in nv)}/{len(nv)} pass"
        flipped = [s for s, b, n in zip(seeds, bv, nv) if b and n is False]
        if vt.at_risk == 0:
            add("verdict", "skip", "the baseline passed the reference on no seed; nothing can turn pass -> fail",
                bs, ns, **vt._asdict())
        elif vt.regressed:
            add("verdict", "fail", f"pass -> fail on seeds {flipped} ({vt.flips} of {vt.at_risk}; by chance "
                f"p = {vt.p_value:.2g} < {alpha:g} given the check's {check_alpha:g} false-alarm rate)",
                bs, ns, **vt._asdict())
        elif vt.flips:
            need = "no number of flips is significant" if vt.needed is None else f"{vt.needed} needed to fail"
            add("verdict", "warn", f"pass -> fail on seeds {flipped} ({vt.flips} of {vt.at_risk}; {need}: "
                f"chance p = {vt.p_value:.2g})", bs, ns, **vt._asdict())
        else:
            note = "" if vt.needed is not None else " (too few passing seeds for a flip to be significant)"
            add("verdict", "pass", f"no seed turned pass -> fail{note}", bs, ns, **vt._asdict())

    # ESS per gradient
    be, ne = [r.get("ess_bulk_per_grad") for r in B], [r.get("ess_bulk_per_grad") for r in N]
    if len(_positive(be)) < 2 or len(_positive(ne)) < 1:
        add("ess_per_grad", "skip", "fewer than 2 baseline seeds with ESS per gradient")
    else:
        et = ess_drop_test(be, ne, alpha=alpha)
        bs = f"median {_g(float(np.median(_positive(be))))}"
        ns = f"median {_g(float(np.median(_positive(ne))))}"
        msg = (f"geometric mean x{et.ratio:.2f} (fails below x{et.bound:.2f} at alpha {alpha:g} and a "
               f"{_pct(ESS_DROP_FLOOR)} floor; p = {et.p_value:.2g}); a drop of {_pct(et.detectable)} is caught "
               f"{_pct(REPORTED_POWER)} of the time")
        add("ess_per_grad", "fail" if et.regressed else "pass", msg, bs, ns, **et._asdict())

    # divergences
    try:
        dt = divergence_rise_test(
            [c for r in B for c in r["divergences_per_chain"]], [c for r in B for c in r["transitions_per_chain"]],
            [c for r in N for c in r["divergences_per_chain"]], [c for r in N for c in r["transitions_per_chain"]],
            alpha=alpha)
    except (KeyError, ValueError) as e:
        add("divergences", "skip", f"cannot compare divergences ({e})")
    else:
        msg = (f"rate {dt.rate_base:.4f} -> {dt.rate_new:.4f} (p = {dt.p_value:.2g}, dispersion {dt.dispersion:.1f}; "
               f"fails at p < {alpha:g} with a rise > {DIVERGENCE_RISE_FLOOR:g})")
        add("divergences", "fail" if dt.regressed else "pass", msg,
            f"{dt.divergences_base} ({dt.rate_base:.2%})", f"{dt.divergences_new} ({dt.rate_new:.2%})",
            **dt._asdict())

    # time per draw: warns (fails with strict_time)
    bt, nt = [r.get("time_per_draw_s") for r in B], [r.get("time_per_draw_s") for r in N]
    if len(_positive(bt)) < 2 or len(_positive(nt)) < 1:
        add("time_per_draw", "skip", "fewer than 2 baseline seeds with a measurable time per draw")
    else:
        tt = time_rise_test(bt, nt, alpha=alpha)
        msg = (f"geometric mean x{tt.ratio:.2f} (flagged above x{tt.bound:.2f} and a {_pct(TIME_RISE_FLOOR)} floor; "
               f"p = {tt.p_value:.2g})" + ("" if strict_time else "; warns only (--strict-time to gate)"))
        status = ("fail" if strict_time else "warn") if tt.regressed else "pass"
        add("time_per_draw", status, msg, f"median {_g(float(np.median(_positive(bt))) * 1e6)} µs",
            f"median {_g(float(np.median(_positive(nt))) * 1e6)} µs", **tt._asdict())

    # max R-hat: warns
    br = [r["max_rhat"] for r in B if r.get("max_rhat") is not None]
    nr = [r["max_rhat"] for r in N if r.get("max_rhat") is not None]
    if br and nr:
        limit = max(RHAT_WARN, max(br))
        worse = max(nr) > limit
        add("max_rhat", "warn" if worse else "pass",
            f"worst seed {max(nr):.3f} vs limit {limit:.3f} (the larger of {RHAT_WARN} and the baseline's worst); "
            "warns only", f"worst {max(br):.3f}", f"worst {max(nr):.3f}")
    else:
        add("max_rhat", "skip", "no R-hat on both sides")
    return out


def gate(baseline: dict, current: dict, *, alpha: float = ALPHA, strict_time: bool = False) -> list[CheckResult]:
    """Every check of every engine x parameterisation in the baseline."""
    from reference.check import DEFAULT_ALPHA

    results = []
    for key, bg in baseline["groups"].items():
        check_alpha = next((r.get("check_alpha") for r in bg["runs"] if r.get("check_alpha")), DEFAULT_ALPHA)
        results += compare_group(key, bg, current["groups"].get(key), alpha=alpha, strict_time=strict_time,
                                 check_alpha=check_alpha)
    return results


# --- reports --------------------------------------------------------------------------------------


def junit_xml(results: list[CheckResult], *, properties: dict | None = None, time_s: float = 0.0) -> str:
    """One testsuite 'ppl-regress', one testcase per engine x parameterisation x check."""
    fails = sum(r.status == "fail" for r in results)
    errors = sum(r.status == "error" for r in results)
    skipped = sum(r.status == "skip" for r in results)
    attrs = {"name": "ppl-regress", "tests": str(len(results)), "failures": str(fails), "errors": str(errors),
             "skipped": str(skipped), "time": f"{time_s:.3f}"}
    root = ET.Element("testsuites", attrs)
    suite = ET.SubElement(root, "testsuite", {**attrs, "hostname": platform.node(),
                                              "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")})
    if properties:
        props = ET.SubElement(suite, "properties")
        for k, v in properties.items():
            ET.SubElement(props, "property", {"name": str(k), "value": str(v)})
    for r in results:
        case = ET.SubElement(suite, "testcase", {"classname": f"ppl-regress.{r.engine}.{r.param}",
                                                 "name": r.kind, "time": "0"})
        text = f"{r.engine} {r.param} {r.kind}: {r.message}\nbaseline: {r.baseline}\nnow: {r.now}"
        if r.status == "fail":
            ET.SubElement(case, "failure", {"message": r.message, "type": f"regression.{r.kind}"}).text = text
        elif r.status == "error":
            ET.SubElement(case, "error", {"message": r.message, "type": f"harness.{r.kind}"}).text = text
        elif r.status == "skip":
            ET.SubElement(case, "skipped", {"message": r.message})
        else:
            ET.SubElement(case, "system-out").text = ("WARNING: " if r.status == "warn" else "") + text
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


_ICON = {"pass": "✅ pass", "fail": "❌ FAIL", "warn": "⚠️ warn", "skip": "➖ skip", "error": "❌ ERROR"}


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def version_changes(old: dict, new: dict) -> list[str]:
    a, b = old.get("packages", {}), new.get("packages", {})
    return [f"{p} {a.get(p)} → {b.get(p)}" for p in sorted(set(a) | set(b)) if a.get(p) != b.get(p)]


def markdown_summary(results: list[CheckResult], baseline: dict, current: dict, *, baseline_path: str = "",
                     alpha: float = ALPHA) -> str:
    failed = [r for r in results if r.failed]
    warned = [r for r in results if r.status == "warn"]
    gated = [r for r in results if r.kind in ("verdict", "ess_per_grad", "divergences") and r.status != "skip"]
    head = "❌ **regression**" if failed else "✅ **no regression**"
    lines = [f"## PPL regression gate: {head}", ""]
    lines.append(f"Baseline `{baseline_path or baseline.get('name')}` (config `{baseline['config']['name']}`, "
                 f"made {baseline.get('created')}) vs now: {len(results)} checks, {len(failed)} failed, "
                 f"{len(warned)} warnings; seeds {baseline['seeds']}; {current.get('wall_s', 0):.0f} s.")
    lines.append("")
    if failed:
        lines.append("**Failed:**")
        lines += [f"- `{r.engine}` {r.param} **{r.kind}**: {_md_cell(r.message)}" for r in failed]
        lines.append("")
    lines += ["| engine | param | check | result | baseline | now | detail |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.engine} | {r.param} | {r.kind} | {_ICON[r.status]} | {_md_cell(r.baseline)} | "
                     f"{_md_cell(r.now)} | {_md_cell(r.message)} |")
    lines.append("")
    if current.get("settings") != baseline.get("settings"):
        diffs = [f"{k} {baseline['settings'].get(k)} → {v}" for k, v in current["settings"].items()
                 if baseline["settings"].get(k) != v]
        lines += [f"**Settings differ from the baseline's** ({', '.join(diffs)}): an override, not the baseline's "
                  "configuration.", ""]
    changes = version_changes(baseline.get("environment", {}), current.get("environment", {}))
    lines.append("**Versions:** " + ("; ".join(changes) if changes else "same packages as the baseline") + ".")
    bm, nm = baseline.get("machine", {}), current.get("machine", {})
    same = (bm.get("cpu"), bm.get("cores")) == (nm.get("cpu"), nm.get("cores"))
    lines.append(f"**Machine:** baseline {bm.get('cpu')} ({bm.get('cores')} cores), now {nm.get('cpu')} "
                 f"({nm.get('cores')} cores)" + ("" if same else ": different, so time per draw is only indicative")
                 + ".")
    lines += ["", f"*Method.* Each gated statistical check (verdict, ESS per gradient, divergences) has a one-sided "
              f"false-alarm rate ≤ {alpha:g} when behaviour is unchanged; with {len(gated)} such checks here the "
              f"gate's family-wise rate is ≤ {min(1.0, len(gated) * alpha):.2g} (union bound). ESS per gradient and "
              "time per draw: Student-t prediction bound on log scale from the baseline's seed-to-seed spread. "
              "Divergences: conditional binomial test on per-chain counts, corrected for overdispersion. "
              "Verdicts: pass → fail flips beyond the reference check's own 1 % false-alarm rate. An engine that ran "
              "in the baseline and errors now fails. A same-build rerun of the same seeds reproduces the draws "
              "exactly and passes."]
    return "\n".join(lines) + "\n"


# --- CLI ------------------------------------------------------------------------------------------


def _progress(line: str) -> None:
    print(line, flush=True)


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("baseline", help="run a named regress configuration and write results/baselines/<name>.json")
    b.add_argument("--config", default="full", help="a name in benchmarks/configs/regress.toml (ci, full) "
                   "or FILE.toml:NAME (default: full)")
    b.add_argument("--out", type=Path, help="baseline file (default: results/baselines/<config name>.json)")
    b.add_argument("--engines", help="comma-separated subset of the configuration's engines")
    r = sub.add_parser("regress", help="rerun a baseline's seeds; exit 1 on a regression (JUnit XML + markdown)")
    r.add_argument("--baseline", type=Path, required=True, help="results/baselines/<name>.json")
    r.add_argument("--engines", help="comma-separated subset of the baseline's engines")
    r.add_argument("--junit", type=Path, default=Path("results/regress/junit.xml"))
    r.add_argument("--summary", type=Path, default=Path("results/regress/summary.md"))
    r.add_argument("--save", type=Path, help="also write this rerun's measurements (baseline format)")
    r.add_argument("--alpha", type=float, default=ALPHA, help=f"per-check false-alarm rate (default {ALPHA})")
    r.add_argument("--strict-time", action="store_true", help="fail (not warn) when time per draw rises")
    g = r.add_argument_group("settings overrides (e.g. to prove the gate catches a crippled sampler)")
    for name, typ in (("chains", int), ("warmup", int), ("draws", int), ("target-accept", float),
                      ("max-treedepth", int)):
        g.add_argument(f"--{name}", type=typ)
    vr = sub.add_parser("versions-report", help="side-by-side table of results/versions/<ppl>-<version>/ runs")
    vr.add_argument("root", type=Path, nargs="?", default=Path("results/versions"))
    vr.add_argument("--out", type=Path, help="markdown file (default: ROOT/VERSIONS.md)")


def _subset(arg: str | None, allowed: list[str], what: str) -> list[str] | None:
    if not arg:
        return None
    names = [e.strip() for e in arg.split(",") if e.strip()]
    bad = [e for e in names if e not in allowed]
    if bad:
        raise RegressError(f"--engines: {bad} not in the {what}'s engines {allowed}")
    return names


def cmd_baseline(a: argparse.Namespace) -> int:
    config = load_config(a.config)
    engines = _subset(a.engines, config.engines, "configuration")
    out = a.out or Path("results/baselines") / f"{config.name}.json"
    t0 = time.perf_counter()
    doc = measure(config, engines=engines, progress=_progress)
    write_json(out, doc)
    ran = sum(g["summary"]["n_ok"] for g in doc["groups"].values())
    total = sum(g["summary"]["n_runs"] for g in doc["groups"].values())
    print(f"baseline {config.name}: {ran}/{total} runs ok in {time.perf_counter() - t0:.1f} s -> {out}")
    for key, g in doc["groups"].items():
        s = g["summary"]
        e = s["ess_bulk_per_grad"] or {}
        print(f"  {key:<28} ok {s['n_ok']}/{s['n_runs']}  ESS/grad median {_g(e.get('median'))} "
              f"(log sd {_g(e.get('log_sd'), '.2f')})  divergences {s['divergence_rate']['divergences']}  "
              f"reference {s['verdicts']['passed']}/{s['n_ok']} pass")
    return 0 if ran else 1


def run_gate(baseline_path: Path, *, engines: list[str] | None = None, overrides: dict | None = None,
             junit: Path | None = None, summary: Path | None = None, save: Path | None = None,
             alpha: float = ALPHA, strict_time: bool = False, progress=_progress) -> tuple[int, list[CheckResult]]:
    """Load, rerun, compare, write the reports; returns (exit code, results)."""
    if not 0 < alpha < 1:
        raise RegressError(f"--alpha = {alpha!r}: must be in (0, 1)")
    baseline = load_baseline(baseline_path)
    config = RegressConfig.from_dict(baseline["config"])
    if engines:
        _subset(",".join(engines), list(baseline["engines"]), "baseline")
    t0 = time.perf_counter()
    current = measure(config, overrides=overrides, engines=engines or list(baseline["engines"]), progress=progress)
    results = gate(baseline, current, alpha=alpha, strict_time=strict_time)
    if save:
        write_json(save, current)
    props = {"baseline": str(baseline_path), "alpha": alpha, "seeds": baseline["seeds"],
             "overrides": current["overrides"], **{f"version.{p}": v for p, v in
                                                  current["environment"]["packages"].items() if v}}
    if junit:
        write_text(junit, junit_xml(results, properties=props, time_s=time.perf_counter() - t0))
    md = markdown_summary(results, baseline, current, baseline_path=str(baseline_path), alpha=alpha)
    if summary:
        write_text(summary, md)
    step = os.environ.get("GITHUB_STEP_SUMMARY")
    if step:
        with open(step, "a", encoding="utf-8") as f:  # GitHub's file: appended to, as GitHub asks
            f.write(md)
    return (1 if any(r.failed for r in results) else 0), results


def cmd_regress(a: argparse.Namespace) -> int:
    overrides = {"chains": a.chains, "warmup": a.warmup, "draws": a.draws, "target_accept": a.target_accept,
                 "max_treedepth": a.max_treedepth}
    code, results = run_gate(a.baseline, engines=a.engines.split(",") if a.engines else None,
                             overrides=overrides, junit=a.junit, summary=a.summary, save=a.save, alpha=a.alpha,
                             strict_time=a.strict_time)
    width = max(len(f"{r.engine} {r.param} {r.kind}") for r in results)
    for r in results:
        print(f"{r.status.upper():>5}  {f'{r.engine} {r.param} {r.kind}':<{width}}  {r.message}")
    failed = [r for r in results if r.failed]
    print(f"\nregress: {len(failed)} of {len(results)} checks failed"
          + (f" ({', '.join(sorted({f'{r.engine} {r.param} {r.kind}' for r in failed}))})" if failed else "")
          + f"; JUnit {a.junit}, summary {a.summary}")
    return code


# --- versions side by side ------------------------------------------------------------------------


def versions_table(root: Path) -> str:
    import json

    rows: dict[tuple[str, str], dict[str, list[dict]]] = {}
    columns: list[str] = []
    for runs_json in sorted(Path(root).glob("*/runs.json")):
        for rec in json.loads(runs_json.read_text()):
            label = f"{rec.get('ppl') or rec['engine']} {rec.get('ppl_version') or runs_json.parent.name}"
            if rec.get("error"):
                label = f"{rec['engine']} {runs_json.parent.name}"
            if label not in columns:
                columns.append(label)
            rows.setdefault((rec["engine"], rec["parameterization"]), {}).setdefault(label, []).append(rec)
    if not rows:
        raise RegressError(f"{root}: no */runs.json (run `nox -s versions` sessions first)")

    def cell(recs: list[dict] | None) -> str:
        if not recs:
            return ""
        ok = [r for r in recs if not r.get("error")]
        if not ok:
            return f"error ×{len(recs)}"
        e = np.median([r["ess_bulk_per_grad"] for r in ok if r.get("ess_bulk_per_grad")] or [np.nan])
        div = sum(r["divergences"] for r in ok) / sum(r["chains"] * r["draws"] for r in ok)
        tpd = np.median([(r["sampling_s"] or r["inference_s"]) / (r["chains"] * r["draws"]) for r in ok])
        passed = sum(bool(r.get("check_passed")) for r in ok)
        return f"{e:.3g} · {div:.2%} · {passed}/{len(ok)} · {tpd * 1e6:.0f} µs"

    lines = ["# PPL versions side by side", "",
             "Each cell: median ESS (bulk) per gradient · divergence rate · reference passes / runs · "
             "median time per draw. Columns are the versions found under " + f"`{root}`.", "",
             "| engine | param | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for (engine, param), by in sorted(rows.items()):
        lines.append(f"| {engine} | {param} | " + " | ".join(cell(by.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def cmd_versions_report(a: argparse.Namespace) -> int:
    text = versions_table(a.root)
    out = a.out or Path(a.root) / "VERSIONS.md"
    write_text(out, text)
    print(text)
    print(f"written to {out}")
    return 0


COMMANDS = {"baseline": cmd_baseline, "regress": cmd_regress, "versions-report": cmd_versions_report}

