"""Is each engine run the fastest way its PPL offers? (``nox -s tune``: results/runs/tuning/)

For every engine, the configuration it ships with ("as shipped") and the alternatives its PPL offers
for running the same sampler on this machine (how chains run in parallel, threads, the compiled
backend) are timed on the same problem: Rubin's data, default prior, non-centred, 4 chains x (1000
warmup + 1000 draws). The measure is ``inference_s``, the wall time of warmup + draws, compile
excluded: the figure the benchmark's ESS/s divides by.

Each configuration runs through the run path in a fresh worker process of its own (``XLA_FLAGS`` and
the like only take effect before JAX is imported; module settings are applied as the worker starts):
one discarded run to warm the in-process caches, then ``seeds`` timed runs. The configurations are
visited in ``rounds`` rounds, the order reversed each round, so slow drift of the machine does not
favour one of them. The goal: the shipped configuration's median within ``GOAL_RATIO`` of the best
median found. A configuration that fails is recorded with its error.

On a cluster (``--workers N`` / ``--scheduler``) every (configuration, round) is one Dask task, holding its
worker's cores alone like a run; the task starts the configuration's fresh worker process there, in a
results folder of its own (the client writes tuning.json alone). Each timing names the machine that
measured it; TUNING.md says when they come from more than one.

Cold start: each engine once more, as shipped, in a worker whose every compile cache is empty (a
fresh ``HOME``, so httpstan's and PyTensor's caches, numba's and JAX's persistent cache all start
empty), with no discarded run: its ``compile_s`` is the cold number beside the warm medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from models.errors import UsageError
from models.files import write_json, write_text

from ..engines import ENGINES, default_engines
from ..engines.base import Settings
from ..runpath import ResultsStore, RunSpec, SerialExecutor, run_matrix
from ..runpath.environment import environment, note_revision_drift
from .common import RUNS, RunOptions, add_executor_options, make_executor
from .tune_chains import CHOICES, render_chains_markdown, run_chain_tuning
from .validate import check_count, check_output_folder

__all__ = ["HELP", "configure", "main", "CANDIDATES", "Config", "summarize", "cold_env", "run_tuning", "tune_task"]

HELP = "time each engine's shipped configuration against its PPL's alternatives"

#: each engine's sampling time within 1.2x of the best configuration of its PPL found
GOAL_RATIO = 1.2
#: seed of the discarded warm-up run in each worker (the timed runs use seeds 1..n)
WARM_SEED = 1000
#: the engines ask JAX for max(8, cores) CPU devices (_jax_common.cpu_devices_wanted); this
#: alternative runs "parallel" on exactly one device per default chain instead
PARALLEL_DEVICES = 4


@dataclass(frozen=True)
class Config:
    label: str
    #: "module:ATTR" or "module:ATTR[key]" -> value, set in the worker before the runs
    overrides: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)


_XLA_PARALLEL = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={PARALLEL_DEVICES}"}
_PYMC = "benchmarks.engines.pymc_engine"
_NUMPYRO = "benchmarks.engines.numpyro_engine"
_BLACKJAX = "benchmarks.engines.blackjax_engine"
_EXTERNAL = "benchmarks.engines.pymc_external"

#: the alternatives each PPL offers for this sampler on a CPU; the first entry is always "as shipped"
CANDIDATES: dict[str, list[Config]] = {
    "pymc": [
        Config("cores=2: a worker process per chain, two at a time", {f"{_PYMC}:CORES": 2}),
        Config("PyTensor's C backend (CVM) instead of its default numba", {f"{_PYMC}:COMPILE_MODE": "CVM"}),
    ],
    "numpyro": [
        Config("chain_method=vectorized", {f"{_NUMPYRO}:CHAIN_METHOD": "vectorized"}),
        Config("chain_method=sequential", {f"{_NUMPYRO}:CHAIN_METHOD": "sequential"}),
        Config(f"chain_method=parallel, {PARALLEL_DEVICES} XLA CPU devices", {}, _XLA_PARALLEL),
    ],
    "blackjax": [
        Config("chain_method=vectorized (jit of vmap)", {f"{_BLACKJAX}:CHAIN_METHOD": "vectorized"}),
        Config("chain_method=sequential", {f"{_BLACKJAX}:CHAIN_METHOD": "sequential"}),
        Config(f"chain_method=parallel, {PARALLEL_DEVICES} XLA CPU devices", {}, _XLA_PARALLEL),
    ],
    "pymc-numpyro": [
        Config("chain_method=vectorized", {f"{_EXTERNAL}:CHAIN_METHOD[numpyro]": "vectorized"}),
        Config("chain_method=sequential", {f"{_EXTERNAL}:CHAIN_METHOD[numpyro]": "sequential"}),
    ],
    "pymc-nutpie": [
        Config("cores=1: one thread, chains in turn", {f"{_EXTERNAL}:NUTPIE_CORES": 1}),
    ],
    # PyStan 3 exposes no parallel setting (httpstan runs one process per chain from its pool) and no
    # compiler setting; cmdstanpy's parallel_chains/threads would go here where CmdStan is installed.
    "pystan": [],
    "cmdstanpy": [],
    # fails upstream before it samples (see pymc_external): nothing to tune until that is fixed
    "pymc-blackjax": [],
}


def cold_env(root: Path) -> dict:
    """Environment of a worker whose compile caches are all empty (under ``root``)."""
    return {"HOME": str(root), "XDG_CACHE_HOME": str(root / ".cache"), "EIGHT_SCHOOLS_CACHE": str(root / "es"),
            "NUMBA_CACHE_DIR": str(root / "numba"), "PYTENSOR_FLAGS": f"compiledir={root / 'pytensor'}",
            "JAX_COMPILATION_CACHE_DIR": ""}


def summarize(configs: list[dict]) -> dict:
    """Median inference_s per configuration, each one's ratio to the best, and the goal's verdict for
    the shipped configuration (``configs[0]``)."""
    medians = []
    for c in configs:
        times = [r["inference_s"] for r in c.get("runs", [])]
        c["median_inference_s"] = float(np.median(times)) if times else None
        c["iqr_inference_s"] = [float(np.percentile(times, 25)), float(np.percentile(times, 75))] if times else None
        compile_times = [r["compile_s"] for r in c.get("runs", [])]
        c["median_compile_s"] = float(np.median(compile_times)) if compile_times else None
        medians.append(c["median_inference_s"])
    ok = [m for m in medians if m is not None]
    best = min(ok) if ok else None
    for c in configs:
        m = c["median_inference_s"]
        c["ratio_to_best"] = m / best if m is not None and best else None
    shipped = configs[0]["ratio_to_best"] if configs else None
    return {"best_median_inference_s": best, "shipped_ratio": shipped,
            "meets_goal": shipped is not None and shipped <= GOAL_RATIO}


def _specs(engine: str, section: str, seeds: list[int], settings: Settings, warm: bool) -> list[RunSpec]:
    return [RunSpec(engine=engine, parameterization="noncentered", settings=dataclasses.replace(settings, seed=s),
                    section=section) for s in ([WARM_SEED] if warm else []) + seeds]


def run_config(store: ResultsStore, engine: str, config: Config, section: str, seeds: list[int],
               settings: Settings, *, warm: bool = True, timeout_s: float = 900) -> dict:
    """One configuration in a fresh worker of its own: (discarded warm run +) the timed runs."""
    specs = _specs(engine, section, seeds, settings, warm)
    out: dict = {"runs": [], "errors": []}

    def collect(rec: dict, manifest: dict | None) -> None:
        if rec.get("error"):
            out["errors"].append(rec["error"][:300])
        elif rec["seed"] != WARM_SEED or not warm:
            out["runs"].append({"seed": rec["seed"], "inference_s": rec["inference_s"], "compile_s": rec["compile_s"],
                                "sampling_s": rec["sampling_s"], "compile_cached": rec["compile_cached"]})
        if manifest:
            out.update(parallel=manifest.get("parallel"), threads=manifest.get("threads"),
                       backend=manifest.get("backend"))

    with SerialExecutor(timeout_s=timeout_s, env=config.env, overrides=config.overrides) as ex:
        run_matrix(specs, store, ex, on_record=collect)
    out["host"] = platform.node()
    return out


def tune_task(engine: str, config: Config | None, section: str, seeds: list[int], settings: Settings,
              warm: bool = True) -> dict:
    """One (configuration, round) where it runs (this process or a Dask worker): its fresh worker
    process in a results folder of its own. ``config`` None: the cold start (every cache empty)."""
    with tempfile.TemporaryDirectory(prefix="eight-schools-tune-") as tmp:
        if config is None:
            config = Config("cold caches", env=cold_env(Path(tmp) / "home"))
        with ResultsStore.open(Path(tmp) / "runs", resume=False, what="tune runs") as store:
            return run_config(store, engine, config, section, seeds, settings, warm=warm)


def configurations(engine: str) -> list[Config]:
    """The engine's shipped configuration first, then its PPL's alternatives."""
    return [Config("as shipped"), *CANDIDATES.get(engine, [])]


def _jobs(engines: list[str], rounds: int, seeds: list[int], settings: Settings, cold: bool) -> list[tuple]:
    """(engine, config index or None for the cold start, task arguments): every configuration in every
    round, the order reversed each round so slow drift of the machine favours none of them."""
    jobs = []
    for engine in engines:
        configs = configurations(engine)
        for r in range(rounds):
            for i in (range(len(configs)) if r % 2 == 0 else reversed(range(len(configs)))):
                jobs.append((engine, i, (engine, configs[i], f"tune-{engine}-c{i}-r{r}", seeds, settings)))
        if cold:
            jobs.append((engine, None, (engine, None, f"tune-{engine}-cold", [1], settings, False)))
    return jobs


def run_tuning(outdir: Path, *, engines: list[str] | None = None, seeds: int = 3, rounds: int = 2,
               settings: Settings | None = None, cold: bool = True, progress=print,
               options: RunOptions | None = None) -> dict:
    """Every engine's configurations (``CANDIDATES``); the many-chain samplers' choices (tune_chains)."""
    engines = engines or [*default_engines(), *CHOICES]
    chain_engines = [e for e in engines if e in CHOICES]
    engines = [e for e in engines if e not in CHOICES]
    settings = settings or Settings()
    seed_list = list(range(1, seeds + 1))
    env = environment()
    s = {k: v for k, v in settings.to_dict().items() if k in ("chains", "warmup", "draws")}
    result: dict = {"goal_ratio": GOAL_RATIO, "settings": s, "seeds": seed_list, "rounds": rounds,
                    "problem": "rubin, default prior, noncentered", "measure": "inference_s (warmup + draws wall "
                    "time, compile excluded): median over rounds x seeds", "engines": {}}
    outdir = Path(outdir)
    jobs = _jobs(engines, rounds, seed_list, settings, cold)
    options = options or RunOptions()
    if options.workers is not None or options.scheduler:
        executor = make_executor(options)
        try:
            progress(f"tune: {len(jobs)} configurations x rounds, {executor.describe()}")
            outs = executor.map_plain(tune_task, [args for _, _, args in jobs])
        finally:
            executor.close()
    else:
        outs = []
        for engine, i, args in jobs:
            outs.append(tune_task(*args))
            label = args[1].label if i is not None else "cold start"
            progress(f"tune {engine}: {label}: " + ("; ".join(dict.fromkeys(outs[-1]["errors"])) or
                                                    ", ".join(f"{x['inference_s']:.3f}" for x in outs[-1]["runs"]) + " s"))
    hosts = sorted({o.get("host") for o in outs if o.get("host")})
    for engine in engines:
        collected = [{**asdict(c), "runs": [], "errors": [], "hosts": []} for c in configurations(engine)]
        cold_out = None
        for (e, i, _), out in zip(jobs, outs):
            if e != engine:
                continue
            if i is None:
                cold_out = out
                continue
            collected[i]["runs"] += out["runs"]
            collected[i]["errors"] += out["errors"]
            collected[i]["hosts"] = sorted(set(collected[i]["hosts"]) | {out.get("host")} - {None})
            for k in ("parallel", "threads", "backend"):
                if k in out:
                    collected[i][k] = out[k]
        if all(e.startswith("unavailable") for c in collected for e in c["errors"]) and \
                not any(c["runs"] for c in collected):
            result["engines"][engine] = {"error": collected[0]["errors"][0]}
            continue
        result["engines"][engine] = {"configs": collected, **summarize(collected)}
        if cold_out is not None:
            result["engines"][engine]["cold"] = {"error": cold_out["errors"][0]} if cold_out["errors"] else cold_out
    if chain_engines:
        with tempfile.TemporaryDirectory(prefix="eight-schools-tune-chains-") as tmp, \
                ResultsStore.open(Path(tmp) / "runs", resume=False, what="tune runs") as store:
            result["chains"] = run_chain_tuning(store, chain_engines, goal_ratio=GOAL_RATIO, warm_seed=WARM_SEED,
                                                seeds=seeds, progress=progress,
                                                options=RunOptions(timeout=None))
        hosts = sorted(set(hosts) | {platform.node()})
    result["hosts"] = hosts
    result["environment"] = note_revision_drift(env)
    write_json(outdir / "tuning.json", result)
    write_text(outdir / "TUNING.md", render_markdown(result))
    return result


def _fmt(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def render_markdown(r: dict) -> str:
    s = r["settings"]
    lines = [
        "# Is each engine run the fastest way its PPL offers?",
        "",
        "Written by `nox -s tune` (benchmarks/jobs/tune.py); do not edit by hand.",
        "",
        f"Problem: {r['problem']}, {s['chains']} chains × ({s['warmup']} warmup + {s['draws']} draws). "
        f"Measure: {r['measure']}; seeds {r['seeds']}, {r['rounds']} rounds, each configuration in a fresh "
        "process after one discarded run. Goal: the configuration each engine ships with within "
        f"{r['goal_ratio']:g}× of the best one found.",
        "",
        *([f"**Timings from {len(r['hosts'])} machines** ({', '.join(r['hosts'])}): a ratio between configurations "
           "measured on different machines compares the machines too; each configuration's machines are in "
           "tuning.json.", ""] if len(r.get("hosts") or []) > 1 else []),
        "| engine | configuration | what ran | inference s, median [IQR] | compile s | × best | runs |",
        "|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for engine, e in r["engines"].items():
        if "error" in e:
            lines.append(f"| {engine} | — | {e['error'][:90]} | — | — | — | 0 |")
            continue
        for c in e["configs"]:
            iqr = c.get("iqr_inference_s")
            what = json.dumps(c.get("parallel")) if c.get("parallel") is not None else "—"
            if c.get("backend"):
                what += f"; {c['backend']}"
            cell = (f"{c['median_inference_s']:.3f} [{iqr[0]:.3f}–{iqr[1]:.3f}]" if c["median_inference_s"] is not None
                    else "failed: " + "; ".join(dict.fromkeys(c["errors"]))[:120])
            lines.append(f"| {engine} | {c['label']} | {what.replace('|', '/')} | {cell} | "
                         f"{_fmt(c['median_compile_s'], '.2f')} | {_fmt(c['ratio_to_best'], '.2f')} | "
                         f"{len(c['runs'])} |")
        if e["shipped_ratio"] is None:
            verdicts.append(f"- **{engine}**: the shipped configuration did not run; no verdict.")
        else:
            alt = "" if len(e["configs"]) > 1 else " (its PPL offers no alternative here)"
            verdicts.append(f"- **{engine}**: shipped / best = {e['shipped_ratio']:.2f} → "
                            + ("meets" if e["meets_goal"] else "**misses**") + f" the {r['goal_ratio']:g}× goal{alt}.")
    colds = {k: e["cold"] for k, e in r["engines"].items() if e.get("cold")}
    if colds:
        lines += ["", "**Cold and warm compile.** `compile_s` of the shipped configuration: cold = one run in a "
                  "fresh process with every compile cache empty (a fresh `HOME`: httpstan's, PyTensor's, numba's "
                  "and JAX's caches), warm = the median above (caches filled, one discarded run first).", "",
                  "| engine | cold compile s | warm compile s | cold run loaded from a cache? |", "|---|---|---|---|"]
        for engine, c in colds.items():
            warm = r["engines"][engine]["configs"][0].get("median_compile_s")
            if "error" in c:
                lines.append(f"| {engine} | failed: {c['error'][:80]} | {_fmt(warm, '.2f')} | — |")
            else:
                run = c["runs"][0]
                lines.append(f"| {engine} | {run['compile_s']:.2f} | {_fmt(warm, '.2f')} | "
                             f"{'yes' if run.get('compile_cached') else 'no'} |")
    lines += ["", *verdicts]
    if r.get("chains"):
        lines += render_chains_markdown(r["chains"])
    lines += ["", "Environment: see `tuning.json`.", ""]
    return "\n".join(lines)


#: --rounds at most: each round times every configuration of every engine again
MAX_ROUNDS = 100


def configure(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--out", type=Path, default=RUNS / "tuning", help="output folder")
    ap.add_argument("--engines", help="comma-separated (default: the main engines' configurations and the "
                    "many-chain samplers' choices)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-start run of each engine")
    add_executor_options(ap)


def main(a: argparse.Namespace) -> int:
    engines = a.engines.split(",") if a.engines else None
    for e in engines or []:
        if e not in ENGINES:
            raise UsageError(f"--engines: engine = {e!r} is unknown; engines: {', '.join(ENGINES)}")
    if a.seeds < 1 or a.rounds < 1:
        raise UsageError(f"--seeds = {a.seeds}, --rounds = {a.rounds}: both must be >= 1")
    check_count(a.rounds, "--rounds", hi=MAX_ROUNDS)
    check_output_folder(a.out, "--out")
    res = run_tuning(a.out, engines=engines, seeds=a.seeds, rounds=a.rounds, cold=not a.no_cold,
                     options=RunOptions(timeout=None, workers=a.workers, scheduler=a.scheduler))
    print(render_markdown(res))
    return 0
