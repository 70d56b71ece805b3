"""Is each engine run the fastest way its PPL offers? (``nox -s tune``: results/tuning/)

For every engine, the configuration it ships with ("as shipped") and the alternatives its PPL offers
for running the same sampler on this machine (how chains run in parallel, threads, the compiled
backend) are timed on the same problem: Rubin's data, default prior, non-centred, 4 chains x (1000
warmup + 1000 draws). The measure is ``inference_s``, the wall time of warmup + draws, compile
excluded: the figure the benchmark's ESS/s divides by.

Each configuration runs in a fresh process (``XLA_FLAGS`` and the like only take effect before JAX
is imported): one discarded run to warm the in-process caches, then ``seeds`` timed runs. The
configurations are visited in ``rounds`` rounds, the order reversed each round, so slow drift of the
machine does not favour one of them. The goal (issue 5): the shipped configuration's median within
``GOAL_RATIO`` of the best median found. A configuration that fails is recorded with its error.

Cold start: each engine once more, as shipped, in a process whose every compile cache is empty (a
fresh ``HOME``, so httpstan's and PyTensor's caches, numba's and JAX's persistent cache all start
empty), with no discarded run: its ``compile_s`` is the cold number beside the warm medians.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .engines import ENGINES, availability
from .environment import environment, note_revision_drift
from .io import write_json, write_text

ROOT = Path(__file__).resolve().parents[1]

#: issue 5: each engine's sampling time within 1.2x of the best configuration of its PPL found
GOAL_RATIO = 1.2
#: seed of the discarded warm-up run in each process (the timed runs use seeds 1..n)
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

WORKER = """
import importlib, json, sys
from benchmarks.tuning import worker
print("TUNING-RESULT " + json.dumps(worker(json.loads(sys.argv[1]))))
"""


def _apply(overrides: dict) -> None:
    import importlib

    for target, value in overrides.items():
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        if attr.endswith("]"):
            name, _, key = attr[:-1].partition("[")
            table = getattr(module, name)
            if key not in table:
                raise KeyError(f"{target}: {name} has no key {key!r}")
            table[key] = value
        else:
            if not hasattr(module, attr):
                raise AttributeError(f"{target}: {module_name} has no {attr}")
            setattr(module, attr, value)


def worker(job: dict) -> dict:
    """In a fresh process: apply the overrides, one discarded run, then the timed runs."""
    from models import PRESETS, RUBIN

    from .engines import Settings, get_engine

    _apply(job["overrides"])
    engine = get_engine(job["engine"])
    settings = Settings(**job["settings"])
    runs, manifest = [], None
    for seed in ([WARM_SEED] if job.get("warm", True) else []) + job["seeds"]:
        result = engine.run(RUBIN, PRESETS["default"], "noncentered", Settings(**{**settings.to_dict(), "seed": seed}))
        t = result.timings
        manifest = result.manifest
        if seed != WARM_SEED:
            runs.append({"seed": seed, "inference_s": t.inference_s, "compile_s": t.compile_s,
                         "sampling_s": t.sampling_s, "compile_cached": t.compile_cached})
    return {"runs": runs, "parallel": manifest.get("parallel"), "threads": manifest.get("threads"),
            "backend": manifest.get("backend")}


def cold_env(root: Path) -> dict:
    """Environment of a process whose compile caches are all empty (under ``root``)."""
    return {"HOME": str(root), "XDG_CACHE_HOME": str(root / ".cache"), "EIGHT_SCHOOLS_CACHE": str(root / "es"),
            "NUMBA_CACHE_DIR": str(root / "numba"), "PYTENSOR_FLAGS": f"compiledir={root / 'pytensor'}",
            "JAX_COMPILATION_CACHE_DIR": ""}


def run_config(engine: str, config: Config, seeds: list[int], settings: dict, timeout_s: float = 900,
               warm: bool = True) -> dict:
    job = {"engine": engine, "overrides": config.overrides, "seeds": seeds, "settings": settings, "warm": warm}
    env = {**os.environ, **config.env}
    env = {k: v for k, v in env.items() if v != ""}  # an empty value unsets
    try:
        proc = subprocess.run([sys.executable, "-c", WORKER, json.dumps(job)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:g} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("TUNING-RESULT "):
            return json.loads(line.removeprefix("TUNING-RESULT "))
    tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    # the exception's own line, not a note added after it
    named = [ln for ln in tail if re.match(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b", ln)]
    return {"error": (named[-1] if named else tail[-1] if tail else f"exit code {proc.returncode}")[:300]}


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


def run_tuning(outdir: Path, *, engines: list[str] | None = None, seeds: int = 3, rounds: int = 2,
               settings: dict | None = None, cold: bool = True, progress=print) -> dict:
    engines = engines or list(ENGINES)
    settings = settings or {"chains": 4, "warmup": 1000, "draws": 1000}
    seed_list = list(range(1, seeds + 1))
    env = environment()
    result: dict = {"goal_ratio": GOAL_RATIO, "settings": settings, "seeds": seed_list, "rounds": rounds,
                    "problem": "rubin, default prior, noncentered", "measure": "inference_s (warmup + draws wall "
                    "time, compile excluded): median over rounds x seeds", "engines": {}}
    for engine in engines:
        reason = availability(engine)
        if reason is not None:
            result["engines"][engine] = {"error": f"unavailable: {reason}"}
            progress(f"tune {engine}: unavailable")
            continue
        configs = [Config("as shipped"), *CANDIDATES.get(engine, [])]
        collected = [{**asdict(c), "runs": [], "errors": []} for c in configs]
        for r in range(rounds):
            order = range(len(configs)) if r % 2 == 0 else reversed(range(len(configs)))
            for i in order:
                out = run_config(engine, configs[i], seed_list, settings)
                if "error" in out:
                    collected[i]["errors"].append(out["error"])
                else:
                    collected[i]["runs"] += out["runs"]
                    collected[i].update(parallel=out["parallel"], threads=out["threads"], backend=out["backend"])
                progress(f"tune {engine} round {r + 1}: {configs[i].label}: "
                         + (out["error"] if "error" in out else
                            ", ".join(f"{x['inference_s']:.3f}" for x in out["runs"]) + " s"))
        result["engines"][engine] = {"configs": collected, **summarize(collected)}
        if cold:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="eight-schools-cold-") as tmp:
                out = run_config(engine, Config("cold caches", env=cold_env(Path(tmp))), [1], settings, warm=False)
            result["engines"][engine]["cold"] = out
            progress(f"tune {engine} cold start: " + (out["error"] if "error" in out else
                                                      f"compile {out['runs'][0]['compile_s']:.2f} s"))
    result["environment"] = note_revision_drift(env)
    outdir = Path(outdir)
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
        "Written by `nox -s tune` (benchmarks/tuning.py); do not edit by hand.",
        "",
        f"Problem: {r['problem']}, {s['chains']} chains × ({s['warmup']} warmup + {s['draws']} draws). "
        f"Measure: {r['measure']}; seeds {r['seeds']}, {r['rounds']} rounds, each configuration in a fresh "
        "process after one discarded run. Goal (issue 5): the configuration each engine ships with within "
        f"{r['goal_ratio']:g}× of the best one found.",
        "",
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
    lines += ["", *verdicts, "", "Environment: see `tuning.json`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m benchmarks.tuning", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--engines", help="comma-separated (default: every engine)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-start run of each engine")
    a = ap.parse_args(argv)
    res = run_tuning(a.outdir, engines=a.engines.split(",") if a.engines else None, seeds=a.seeds, rounds=a.rounds,
                     cold=not a.no_cold)
    print(render_markdown(res))
    shipped = [e for e in res["engines"].values() if "configs" in e]
    return 0 if all(e["meets_goal"] for e in shipped if e["shipped_ratio"] is not None) else 1


if __name__ == "__main__":
    raise SystemExit(main())
