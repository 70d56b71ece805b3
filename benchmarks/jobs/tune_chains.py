"""The many-chain samplers' own choices, measured (``nox -s tune``, beside the engines' configurations).

Where BlackJAX offers a tuned default the engine uses it and records it in its manifest (MEADS's
``num_folds`` = 4, the unadjusted MCLMC tuner's energy-variance target). Where it needs a choice, the
choice is measured here, each against its alternatives, on the chains job's problem: Rubin's data,
default prior, non-centred, ``CHAINS`` chains x (the engine's warmup + ``DRAWS`` draws), seeds 1..n, where
the engine's warmup is the chains job's (chains.toml: ``scaling.engine_warmup``, else ``scaling.warmup``),
and the alternatives are drawn around what ships (a quarter, half and twice its learning rate) or from
a fixed grid (``WARMUP_GRID``):

- ChEES: Adam's learning rate on the log trajectory length (BlackJAX takes an optimizer and has no
  default), the metric (BlackJAX's identity default or its ensemble-estimated diagonal), and the number
  of warmup (tuning) steps;
- MEADS and adjusted MCLMC: the number of warmup steps; adjusted MCLMC also its target acceptance rate
  (``adjusted_mclmc_find_L_and_step_size`` has no default ``target``).

Unadjusted MCLMC's one choice, its step size, biases it by design: chains job's step-size table
(results/chains/CHAINS.md) measures that, not this.

The measure is the chains job's: bulk ESS per second of warmup + draws (``ess_bulk_per_s_wall``), median
over seeds, and every seed must pass the reference check (a faster configuration whose answers are
wrong is no choice). Every configuration runs in one worker (the choices are run settings, not module
state), one discarded run first (its compile), then one round per seed over every configuration, the
order reversed every other round, so drift of the machine favours none. Goal: the shipped choice within tune's ``GOAL_RATIO`` of the
best configuration that passes on every seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..engines.base import Settings
from ..runpath import ResultsStore, RunSpec, run_matrix
from .chains import CONFIG, engine_warmups
from .common import RunOptions, make_executor
from .config import read_toml

__all__ = ["CHOICES", "CHAINS", "WARMUP", "DRAWS", "Choice", "shipped_warmup", "summarize_choices", "run_chain_tuning",
           "render_chains_markdown"]

#: the chains job's own setting (benchmarks/configs/chains.toml): CHAINS chains x (WARMUP + DRAWS), each
#: engine at its own number of warmup steps where [scaling.engine_warmup] names one (shipped_warmup)
CHAINS, WARMUP, DRAWS = 1024, 300, 100


@dataclass(frozen=True)
class Choice:
    label: str
    options: dict = field(default_factory=dict)
    #: run settings changed (the number of warmup steps)
    settings: dict = field(default_factory=dict)


def shipped_warmup(engine: str) -> int:
    """The number of warmup steps the chains job runs ``engine`` with (one source: chains.toml)."""
    return engine_warmups(read_toml(CONFIG).get("scaling", {}), CONFIG).get(engine, WARMUP)


#: the numbers of warmup steps measured, the same for every engine and every run of the job (a grid
#: relative to what ships would keep moving: at a fixed 100 draws, ESS per second of warmup + draws
#: rewards every shorter warmup that still converges): a quarter to twice the chains job's 300
WARMUP_GRID = (75, 150, 300, 600)


def _warmups(w: int) -> list[Choice]:
    """Every number of warmup steps of the grid but the shipped ``w``."""
    return [Choice(f"{n} warmup steps", settings={"warmup": n}) for n in WARMUP_GRID if n != w]


def _chees(w: int) -> list[Choice]:
    from ..engines.blackjax_chees import LEARNING_RATE as lr

    return [Choice(f"as shipped: Adam {lr:g}, diagonal metric, {w} warmup steps"),
            *(Choice(f"Adam learning rate {x:g}", {"learning_rate": x}) for x in (lr / 4, lr / 2, 2 * lr)),
            Choice("identity metric (BlackJAX's default)", {"mass_matrix": "identity"}), *_warmups(w)]


def _meads(w: int) -> list[Choice]:
    from ..engines.blackjax_meads import NUM_FOLDS

    return [Choice(f"as shipped: BlackJAX's {NUM_FOLDS} folds, {w} warmup steps"), *_warmups(w)]


def _mclmc_adjusted(w: int) -> list[Choice]:
    from ..engines.blackjax_mclmc import TARGET_ACCEPTANCE_RATE as target

    others = [x for x in (0.5, 0.65, 0.8, 0.9) if abs(x - target) > 1e-9]
    return [Choice(f"as shipped: target acceptance {target:g}, {w} warmup steps"),
            *(Choice(f"target acceptance {x:g}", {"target_acceptance_rate": x}) for x in others), *_warmups(w)]


#: per engine: given its shipped number of warmup steps, what it ships with first, then the alternatives
#: measured (built when the job runs: the labels read the engines' own constants, whose modules import JAX)
CHOICES: dict[str, Callable[[int], list[Choice]]] = {
    "blackjax-chees": _chees,
    "blackjax-meads": _meads,
    "blackjax-mclmc-adjusted": _mclmc_adjusted,
}


def _settings(choice: Choice, seed: int, warmup: int) -> Settings:
    base = {"chains": CHAINS, "warmup": warmup, "draws": DRAWS, **choice.settings}
    return Settings(**base, seed=seed, options=choice.options)


def _specs(engine: str, choices: list[Choice], warmup: int, seeds: list[int],
           warm_seed: int) -> list[tuple[int, RunSpec]]:
    """(choice index, spec): each choice's discarded warm-up run (``warm_seed``: its compile), then one
    round per seed over every choice, the choices' order reversed every other round; ``warmup`` unless a
    choice sets its own."""
    out = [(i, RunSpec(engine=engine, parameterization="noncentered", settings=_settings(c, warm_seed, warmup),
                       section=f"tune-chains-{engine}-c{i}")) for i, c in enumerate(choices)]
    for r, s in enumerate(seeds):
        for i in (range(len(choices)) if r % 2 == 0 else reversed(range(len(choices)))):
            out.append((i, RunSpec(engine=engine, parameterization="noncentered", settings=_settings(choices[i], s, warmup),
                                   section=f"tune-chains-{engine}-c{i}")))
    return out


def summarize_choices(configs: list[dict], goal: float) -> dict:
    """Each configuration's median ESS/s and its passes; the best configuration that passes on every seed;
    the shipped one's (``configs[0]``) ratio best / shipped and the goal's verdict."""
    for c in configs:
        rates = [r["ess_bulk_per_s_wall"] for r in c["runs"] if r.get("ess_bulk_per_s_wall")]
        c["median_ess_per_s"] = float(np.median(rates)) if rates else None
        c["passed"] = sum(1 for r in c["runs"] if r.get("check_passed"))
        c["sound"] = bool(c["runs"]) and c["passed"] == len(c["runs"]) and not c["errors"]
    sound = [c for c in configs if c["sound"] and c["median_ess_per_s"]]
    best = max(sound, key=lambda c: c["median_ess_per_s"]) if sound else None
    for c in configs:
        c["best_over_this"] = (best["median_ess_per_s"] / c["median_ess_per_s"]
                               if best and c["median_ess_per_s"] else None)
    shipped = configs[0] if configs else None
    ratio = shipped["best_over_this"] if shipped and shipped["sound"] else None
    return {"best": best["label"] if best else None, "shipped_ratio": ratio,
            "meets_goal": ratio is not None and ratio <= goal}


def run_chain_tuning(store: ResultsStore, engines: list[str], *, goal_ratio: float, warm_seed: int, seeds: int = 3,
                     options: RunOptions | None = None, progress=print) -> dict:
    """Every choice of every engine in ``engines`` (those in :data:`CHOICES`) on this machine's worker;
    ``goal_ratio`` and ``warm_seed`` are tune's (one goal and one discarded seed for the whole job)."""
    seed_list = list(range(1, seeds + 1))
    out: dict = {"problem": "rubin, default prior, noncentered", "chains": CHAINS, "warmup": WARMUP, "draws": DRAWS,
                 "seeds": seed_list, "goal_ratio": goal_ratio,
                 "measure": "min bulk ESS / wall time of warmup + draws (ess_bulk_per_s_wall), median over seeds; "
                            "a configuration counts only if every seed passes the reference check",
                 "engines": {}}
    for engine in [e for e in engines if e in CHOICES]:
        warmup = shipped_warmup(engine)
        choices = CHOICES[engine](warmup)
        pairs = _specs(engine, choices, warmup, seed_list, warm_seed)
        index = {sp.key: i for i, sp in pairs}
        configs = [{**dataclasses.asdict(c), "runs": [], "errors": []} for c in choices]

        def collect(rec: dict, manifest: dict | None, configs=configs, index=index) -> None:
            c = configs[index[rec["key"]]]
            if rec.get("error"):  # the discarded run's too: a configuration that fails on any seed is no choice
                c["errors"].append(f"seed {rec['seed']}: {rec['error'][:300]}")
            elif rec["seed"] != warm_seed:
                c["runs"].append({k: rec.get(k) for k in ("seed", "warmup", "ess_bulk_per_s_wall", "min_ess_bulk", "inference_s",
                                                          "ess_bulk_per_grad", "check_passed", "check_max_abs_z",
                                                          "max_rhat", "divergences")})

        executor = make_executor(options or RunOptions(timeout=None), prepare=[engine])
        try:
            progress(f"tune {engine}: {len(choices)} choices x {seeds} seeds at {CHAINS} chains x "
                     f"({warmup} + {DRAWS}), {executor.describe()}")
            run_matrix([sp for _, sp in pairs], store, executor, on_record=collect)
        finally:
            executor.close()
        out["engines"][engine] = {"configs": configs, "warmup": warmup,
                                  **summarize_choices(configs, goal_ratio)}
        for c in configs:
            progress(f"tune {engine}: {c['label']}: " + (f"{c['median_ess_per_s']:.0f} bulk ESS/s, "
                     f"{c['passed']}/{len(c['runs'])} pass" if c["median_ess_per_s"] else
                     "; ".join(dict.fromkeys(c["errors"])) or "no runs"))
    return out


def _fmt(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def render_chains_markdown(r: dict) -> list[str]:
    lines = ["", "## The many-chain samplers' choices", "",
             f"Problem: {r['problem']}, {r['chains']} chains × (each engine's shipped warmup + {r['draws']} draws: "
             + ", ".join(f"{e} {v.get('warmup', r['warmup'])}" for e, v in r["engines"].items())
             + f"; a row may change the warmup), seeds {r['seeds']}. Measure: {r['measure']}. Goal: the shipped choice within "
             f"{r['goal_ratio']:g}× of the best configuration that passes on every seed (benchmarks/jobs/tune_chains.py "
             "says which choices BlackJAX leaves to the user).", "",
             "| engine | configuration | bulk ESS/s, median | ESS per gradient, median | passes | max \\|z\\| | best / this |",
             "|---|---|---|---|---|---|---|"]
    verdicts = []
    for engine, e in r["engines"].items():
        for c in e["configs"]:
            per_grad = [x["ess_bulk_per_grad"] for x in c["runs"] if x.get("ess_bulk_per_grad")]
            z = [x["check_max_abs_z"] for x in c["runs"] if x.get("check_max_abs_z") is not None]
            ess = (f"{c['median_ess_per_s']:.0f}" if c["median_ess_per_s"] else
                   "failed: " + "; ".join(dict.fromkeys(c["errors"]))[:100])
            lines.append(f"| {engine} | {c['label']} | {ess} | {_fmt(float(np.median(per_grad)) if per_grad else None, '.4f')} "
                         f"| {c['passed']}/{len(c['runs'])}" + "".join(f"; failed, {x[:80]}" for x in dict.fromkeys(c["errors"]))
                         + f" | {_fmt(max(z) if z else None, '.1f')} | "
                         f"{_fmt(c['best_over_this'], '.2f')} |")
        if e["shipped_ratio"] is None:
            verdicts.append(f"- **{engine}**: the shipped choice failed or did not pass on some seed (the discarded "
                            f"run's included); best that passed everywhere: {e['best'] or 'none'}.")
        else:
            verdicts.append(f"- **{engine}**: best / shipped = {e['shipped_ratio']:.2f} (best: {e['best']}) → "
                            + ("meets" if e["meets_goal"] else "**misses**") + f" the {r['goal_ratio']:g}× goal.")
    return [*lines, "", *verdicts]
