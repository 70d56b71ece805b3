"""Reproduce the seed notebook (``nox -s notebook``): results/runs/notebook/README.md.

The notebook ran two Stan programs (tau ~ uniform(0, 50), and tau fixed at 8) with 4 chains,
500 warmup + 500 draws, seed 101, and printed one summary table. For every printed row this puts
side by side: the printed value, the exact posterior value (reference/), and our PyStan fit (through
the run path) with its MCSE; then it asks which fixed tau the printed table is actually consistent with.

The facts taken from the notebook (its printed table, its settings, its cells' execution counts)
ship in the repository as data, with their provenance: ``benchmarks/configs/notebook_seed.json``.
A clone needs nothing else; ``--extract-from NOTEBOOK.txt`` rewrites that file from a notebook text
(a maintainer's explicit step, like ``publish``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import xarray as xr
from arviz_stats.base import array_stats

from models import PRESETS, RUBIN, Prior, make_prior
from models.errors import UsageError
from models.files import write_json, write_text
from reference import posterior

from ..engines.base import Settings
from ..runpath import RunSpec
from ..runpath.environment import environment
from .common import RUNS, RunOptions, add_run_options, run_specs
from .config import CONFIGS
from .validate import check_output_file, check_output_folder

__all__ = ["HELP", "configure", "main", "SEED_FACTS", "load_facts", "extract_facts", "printed_table", "reproduce"]

HELP = "reproduce the seed notebook's printed table against the exact posterior"

#: the notebook's facts as data, with provenance (see the module docstring)
SEED_FACTS = CONFIGS / "notebook_seed.json"
TABLE_HEADER = "Unnamed: 0,mean,se_mean,sd,2.5%,25%,50%,75%,97.5%,n_eff,Rhat"
#: Monte Carlo size for exact lp__ moments (lp__ is not a grid quantity): error sd/sqrt(N) ~ 0.002
LP_DRAWS = 1_000_000
#: fixed-tau values scanned for the value the printed table is consistent with
TAU_SCAN = np.concatenate([np.linspace(0.05, 2.0, 40), np.linspace(2.25, 12.0, 40)])


def printed_table(text: str) -> dict[str, dict[str, float]]:
    """The summary table the notebook printed, parsed from its text (not retyped)."""
    lines = text.splitlines()
    if TABLE_HEADER not in lines:
        raise UsageError(f"notebook: no printed Stan summary (a line {TABLE_HEADER!r})")
    start = lines.index(TABLE_HEADER)
    block = [TABLE_HEADER]
    for line in lines[start + 1:]:
        if not line.strip():
            break
        block.append(line)
    rows = csv.DictReader(io.StringIO("\n".join(block)))
    return {r["Unnamed: 0"]: {k: float(v) for k, v in r.items() if k != "Unnamed: 0"} for r in rows}


def execution_counts(text: str) -> list[int]:
    """The notebook's cell execution counts, in the order the cells appear."""
    return [int(n) for n in re.findall(r"^In \[(\d+)\]:", text, flags=re.M)]


_SAMPLING = re.compile(r"sm\.sampling\((.*?)\n\)", re.S)


def sampling_settings(text: str) -> Settings:
    """The settings of the notebook's ``sm.sampling(...)`` call (iter, chains, warmup, adapt_delta,
    seed), read from its text; PyStan 2's iter counts warmup too."""
    m = _SAMPLING.search(text)
    if m is None:
        raise UsageError("notebook: no sm.sampling(...) call to read the settings from")
    call = m.group(1)

    def arg(name: str) -> str:
        found = re.search(rf"\b{name}\s*=\s*([0-9.]+)", call)
        if found is None:
            raise UsageError(f"notebook: sm.sampling(...) has no {name}=")
        return found.group(1)

    warmup = int(arg("warmup"))
    return Settings(chains=int(arg("chains")), warmup=warmup, draws=int(arg("iter")) - warmup,
                    target_accept=float(arg("adapt_delta")), seed=int(arg("seed")))


def extract_facts(path: Path) -> dict:
    """What the reproduction needs from a notebook text, with where it came from."""
    raw = Path(path).read_bytes()
    text = raw.decode("utf-8")
    return {
        "provenance": {
            "source": f"shared/seed/{Path(path).name}",
            "sha256": hashlib.sha256(raw).hexdigest(),
            "extracted_by": "python -m benchmarks notebook --extract-from NOTEBOOK.txt",
            "what": "the summary table printed under cell In [29] (parsed, not retyped), the settings of its "
                    "sm.sampling(...) call, and the cells' execution counts in the order they appear",
        },
        "settings": sampling_settings(text).to_dict(),
        "printed": printed_table(text),
        "execution_counts": execution_counts(text),
    }


def load_facts(path: Path = SEED_FACTS) -> dict:
    try:
        facts = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"notebook facts = {str(path)!r}: unreadable ({e})") from None
    if not isinstance(facts, dict):
        raise UsageError(f"notebook facts = {str(path)!r}: expected a JSON object")
    for k in ("provenance", "settings", "printed", "execution_counts"):
        if k not in facts:
            raise UsageError(f"notebook facts = {str(path)!r}: field {k!r} missing")
    if not isinstance(facts["provenance"], dict) or "source" not in facts["provenance"]:
        raise UsageError(f"notebook facts = {str(path)!r}: provenance.source missing")
    if not isinstance(facts["settings"], dict):
        raise UsageError(f"notebook facts = {str(path)!r}: settings = {facts['settings']!r}: expected an object")
    try:
        Settings(**facts["settings"])
    except TypeError as e:
        raise UsageError(f"notebook facts = {str(path)!r}: settings: {e}") from None
    return facts


def notebook_lp(mu: np.ndarray, theta: np.ndarray, tau: float) -> np.ndarray:
    """lp__ of the notebook's tau-fixed program: `~` drops constants, plus the Jacobian of
    mu's (-20, 20) logit transform: log((mu + 20)(20 - mu) / 40)."""
    y, s = RUBIN.y_array, RUBIN.sigma_array
    return (-0.5 * (((theta - mu[..., None]) / tau) ** 2).sum(-1)
            - 0.5 * (((y - theta) / s) ** 2).sum(-1)
            + np.log((mu + 20) * (20 - mu) / 40))


def _fit_row(x: np.ndarray) -> dict:
    """Mean with MCSE, sd and quantiles of a (chain, draw) array."""
    flat = x.ravel()
    return {"mean": float(flat.mean()), "mcse": float(array_stats.mcse(x, method="mean")),
            "sd": float(flat.std(ddof=1)), "q2.5": float(np.quantile(flat, 0.025)),
            "q50": float(np.quantile(flat, 0.5)), "q97.5": float(np.quantile(flat, 0.975)),
            "ess_bulk": float(array_stats.ess(x, method="bulk"))}


def _exact_row(ref, name: str) -> dict:
    s = ref.summary(name)
    return {"mean": s.mean, "sd": s.sd, "q2.5": s.quantiles["0.025"], "q50": s.quantiles["0.5"],
            "q97.5": s.quantiles["0.975"], "error": max(s.error.mean, s.error.sd)}


def _exact_lp(prior: Prior, seed: int) -> dict:
    ref = posterior(RUBIN, prior)
    d = ref.draws(LP_DRAWS, seed=seed)
    lp = notebook_lp(d["mu"], d["theta"], prior.tau["value"])
    return {"mean": float(lp.mean()), "sd": float(lp.std(ddof=1)), "q2.5": float(np.quantile(lp, 0.025)),
            "q50": float(np.quantile(lp, 0.5)), "q97.5": float(np.quantile(lp, 0.975)),
            "error": float(lp.std(ddof=1) / math.sqrt(LP_DRAWS))}


def consistent_tau(printed: dict) -> dict:
    """The fixed tau whose exact posterior best matches the printed means and sds of mu and theta,
    in units of the printed MCSE (se_mean) for means and of sd/sqrt(2 n_eff) for sds."""
    names = ["mu"] + [f"theta[{j}]" for j in range(1, RUBIN.J + 1)]
    scores = []
    for tau in TAU_SCAN:
        ref = posterior(RUBIN, make_prior(mu_text="uniform(-20, 20)", tau_text=f"fixed({tau:.6g})"))
        chi2 = 0.0
        for n in names:
            s, p = ref.summary(n), printed[n]
            chi2 += ((p["mean"] - s.mean) / p["se_mean"]) ** 2
            chi2 += ((p["sd"] - s.sd) / (p["sd"] / math.sqrt(2 * p["n_eff"]))) ** 2
        scores.append(chi2)
    scores = np.array(scores)
    i = int(np.argmin(scores))
    at8 = posterior(RUBIN, PRESETS["notebook-tau8"])
    chi2_8 = sum(((printed[n]["mean"] - at8.summary(n).mean) / printed[n]["se_mean"]) ** 2
                 + ((printed[n]["sd"] - at8.summary(n).sd) / (printed[n]["sd"] / math.sqrt(2 * printed[n]["n_eff"]))) ** 2
                 for n in names)
    return {"best_tau": float(TAU_SCAN[i]), "chi2_best": float(scores[i]), "chi2_tau8": float(chi2_8),
            "dof": 2 * len(names), "scan": [[float(t), float(c)] for t, c in zip(TAU_SCAN, scores)]}


def _quantity(post: xr.Dataset, q: str) -> np.ndarray:
    return post["theta"].values[..., int(q[6:-1]) - 1] if q.startswith("theta") else post[q].values


def reproduce(outdir: Path, facts: dict, options: RunOptions | None = None) -> dict:
    settings = Settings(**facts["settings"])
    printed = facts["printed"]
    out: dict = {"settings": settings.to_dict(), "seed_file": facts["provenance"]["source"],
                 "provenance": facts["provenance"], "printed": printed,
                 "execution_counts": facts["execution_counts"], "programs": {}, "environment": environment()}
    names = ("notebook-tau8", "notebook")
    specs = {n: RunSpec(engine="pystan", parameterization="centered", prior=n, settings=settings,
                        section="notebook", save_draws=True) for n in names}
    run_dir = Path(outdir) / "runs"
    records = {r["key"]: r for r in run_specs("notebook", list(specs.values()), run_dir, options or RunOptions(),
                                              fresh=True)}
    for name in names:
        prior = PRESETS[name]
        rec = records[specs[name].key]
        if rec.get("error"):
            raise RuntimeError(f"notebook: pystan failed on {name}: {rec['error']}")
        post = xr.open_datatree(run_dir / "draws" / f"{rec['key']}.nc")["posterior"].to_dataset()
        ref = posterior(RUBIN, prior)
        quantities = ["mu"] + ([] if prior.tau_fixed else ["tau"]) + [f"theta[{j}]" for j in range(1, 9)]
        rows = {q: {"exact": _exact_row(ref, q), "fit": _fit_row(_quantity(post, q))} for q in quantities}
        if prior.tau_fixed:
            lp = notebook_lp(post["mu"].values, post["theta"].values, prior.tau["value"])
            rows["lp__"] = {"exact": _exact_lp(prior, seed=settings.seed), "fit": _fit_row(lp)}
        manifest = json.loads((run_dir / "manifests" / "pystan-centered.json").read_text())
        out["programs"][name] = {"prior": str(prior), "rows": rows, "divergences": rec["divergences"],
                                 "manifest": manifest}
    out["consistent_tau"] = consistent_tau(printed)
    write_json(Path(outdir) / "notebook.json", out)
    write_text(Path(outdir) / "README.md", render(out))
    return out


def _z(a: float, b: float, se: float) -> str:
    return f"{(a - b) / se:+.1f}" if se > 0 else "—"


def render(o: dict) -> str:
    tau8 = o["programs"]["notebook-tau8"]
    ct = o["consistent_tau"]
    lines = [
        "# The notebook, reproduced",
        "",
        "Written by `nox -s notebook` (benchmarks/jobs/notebook.py) from the facts of the seed notebook "
        f"(`{o['seed_file']}`, sha256 `{o['provenance']['sha256'][:16]}…`), shipped as data in "
        "`benchmarks/configs/notebook_seed.json`; nothing here is typed by hand.",
        "",
        f"Settings as printed there: {o['settings']['chains']} chains, {o['settings']['warmup']} warmup + "
        f"{o['settings']['draws']} draws, adapt_delta {o['settings']['target_accept']}, seed {o['settings']['seed']}; "
        f"our engine: PyStan {tau8['manifest']['ppl_version']} (Stan {tau8['manifest'].get('stan_version')}).",
        "",
        "## The printed table (program 2: tau fixed at 8, mu ~ uniform(-20, 20))",
        "",
        "Mean (sd) of each row. *z printed* is (printed mean − exact mean) / printed se_mean; "
        "*z ours* is (our mean − exact mean) / our MCSE. lp__ is computed in the notebook's convention "
        "(constants dropped by `~`, Jacobian of mu's bounds kept), for our draws too; its exact value is "
        f"a Monte Carlo mean over {LP_DRAWS:,} exact draws (error shown).",
        "",
        "| row | printed mean (sd) | exact mean (sd) | ours: mean ± MCSE (sd) | z printed | z ours |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in o["printed"].items():
        r = tau8["rows"].get(name)
        if r is None:
            continue
        e, f = r["exact"], r["fit"]
        lines.append(
            f"| {name} | {p['mean']:.3f} ({p['sd']:.3f}) | {e['mean']:.3f} ({e['sd']:.3f}) "
            f"| {f['mean']:.3f} ± {f['mcse']:.3f} ({f['sd']:.3f}) | {_z(p['mean'], e['mean'], p['se_mean'])} "
            f"| {_z(f['mean'], e['mean'], f['mcse'])} |")
    worst_printed = max(abs((p["mean"] - tau8["rows"][n]["exact"]["mean"]) / p["se_mean"])
                        for n, p in o["printed"].items() if n in tau8["rows"])
    worst_ours = max(abs((r["fit"]["mean"] - r["exact"]["mean"]) / r["fit"]["mcse"]) for r in tau8["rows"].values())
    n_eff = [p["n_eff"] for n, p in o["printed"].items() if n != "lp__"]
    rhat = [p["Rhat"] for n, p in o["printed"].items() if n != "lp__"]
    counts = ", ".join(f"In [{c}]" for c in o["execution_counts"])
    lines += [
        "",
        "## What agrees and what does not",
        "",
        f"- Our fit of the tau = 8 program agrees with the exact posterior: the largest |z| over these rows is "
        f"{worst_ours:.1f} (divergences: {tau8['divergences']}).",
        f"- The printed table does not: its largest |z| against the exact tau = 8 posterior is {worst_printed:.1f}. "
        "Its theta_j are all ≈ 8 with sd ≈ sd(mu), i.e. almost complete pooling, while tau = 8 leaves "
        f"theta[1] at {tau8['rows']['theta[1]']['exact']['mean']:.2f} (sd {tau8['rows']['theta[1]']['exact']['sd']:.2f}).",
        f"- Scanning fixed tau, the printed means and sds are best matched by tau ≈ {ct['best_tau']:.2f} "
        f"(chi² {ct['chi2_best']:.1f} on {ct['dof']} values, against {ct['chi2_tau8']:.0f} at tau = 8).",
        "",
        "**Likeliest explanation.** The printed table is not the output of the code above it. The cells carry "
        f"execution counts {counts}: the notebook was run out of order, and the "
        f"table matches a fit with tau fixed near {ct['best_tau']:.1f}, not 8 — presumably `model_data['tau']` "
        f"held another value when that fit ran. Its low n_eff ({min(n_eff):.0f}–{max(n_eff):.0f} of "
        f"{o['settings']['chains'] * o['settings']['draws']} draws) and R-hat {min(rhat):.3f}–{max(rhat):.3f} fit "
        "that too: with a small fixed tau, mu and every theta_j move together along a narrow ridge, which "
        "NUTS with a diagonal metric crosses slowly.",
        "",
        "## Program 1: tau ~ uniform(0, 50) (no table was printed for it)",
        "",
        "| quantity | exact mean (sd) | ours: mean ± MCSE (sd) | z ours |",
        "|---|---|---|---|",
    ]
    prog1 = o["programs"]["notebook"]
    for name, r in prog1["rows"].items():
        e, f = r["exact"], r["fit"]
        lines.append(f"| {name} | {e['mean']:.3f} ({e['sd']:.3f}) | {f['mean']:.3f} ± {f['mcse']:.3f} ({f['sd']:.3f}) "
                     f"| {_z(f['mean'], e['mean'], f['mcse'])} |")
    lines += ["", f"Centred program as in the notebook; divergences: {prog1['divergences']} "
              "(the funnel at small tau).", ""]
    return "\n".join(lines)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=RUNS / "notebook", help="output folder")
    p.add_argument("--facts", type=Path, default=SEED_FACTS, help="the notebook's facts as data")
    p.add_argument("--extract-from", type=Path, metavar="NOTEBOOK.txt",
                   help="rewrite --facts from a notebook text instead of reproducing (maintainers)")
    add_run_options(p)


def main(a: argparse.Namespace) -> int:
    if a.extract_from is not None:
        if not a.extract_from.is_file():
            raise UsageError(f"--extract-from = {str(a.extract_from)!r}: no such file")
        check_output_file(a.facts, "--facts")
        write_json(a.facts, extract_facts(a.extract_from))
        print(f"notebook facts written to {a.facts}")
        return 0
    facts = load_facts(a.facts)
    check_output_folder(a.out, "--out")
    o = reproduce(a.out, facts, options=a)
    print(render(o))
    return 0
