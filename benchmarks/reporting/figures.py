"""The report's figures, drawn from runs.json, the saved draws and the exact reference.

Every figure is drawn for one slice of the results (one data set, prior and sampler settings: the
``rubin``/``default`` runs when there are any, else the largest slice) and says so in its own title:
what it shows, which seeds, which prior. Each (engine, parameterisation) of the slice has a place in
every figure; one whose runs failed keeps its place, labelled with why ("unavailable", "known upstream
break (o/r#n)"), instead of vanishing.

Drawn with matplotlib's object API (``matplotlib.figure.Figure`` renders PNGs through Agg): no pyplot,
no global backend switch, nothing left open.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from models import PRESETS, RUBIN, SchoolsData, make_prior
from models.files import atomic_path
from reference import posterior

from ..forking import fork_child, fork_is_safe
from .failures import LONG, brief, failure, issue_name
from .tables import group_value, ok_runs, seeds_text

STYLE = {"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "xtick.labelsize": 10,
         "ytick.labelsize": 10, "legend.fontsize": 9.5, "figure.titlesize": 12.5}
DPI = 110
PARAM_COLOUR = {"centered": "tab:orange", "noncentered": "tab:blue"}
PARAM_WORD = {"centered": "centred", "noncentered": "non-centred"}
FAILED_TEXT = dict(color="0.35", style="italic", va="center", ha="left", fontsize=10)
#: R-hat above which a fit is usually called unconverged (Vehtari et al. 2021)
RHAT_LINE = 1.01
#: R-hat axis end; a run above it is drawn at the edge as a triangle with its value
RHAT_CAP = 1.2
SLICE_KEYS = ("section", "data", "prior", "chains", "warmup", "draws", "target_accept", "max_treedepth")


@dataclass
class Slice:
    """The records one figure shows, and the words that say which they are."""

    records: list[dict]
    data: str
    prior: str
    prior_text: str
    settings: str
    seeds: list[int]

    @property
    def rows(self) -> list[tuple[str, str]]:
        """(engine, parameterisation) in display order."""
        return sorted({(r["engine"], r["parameterization"]) for r in self.records})

    @property
    def engines(self) -> list[str]:
        return sorted({r["engine"] for r in self.records})

    def runs(self, engine: str, param: str) -> list[dict]:
        return [r for r in self.records if r["engine"] == engine and r["parameterization"] == param]

    @property
    def caption(self) -> str:
        data = "Rubin's eight schools" if self.data == "rubin" else f"data {self.data}"
        return f"{data}; prior {self.prior} ({self.prior_text}); {self.settings}"


def main_slice(records: list[dict]) -> Slice | None:
    """Rubin's data under the default prior when present, else the slice with the most runs."""
    if not records:
        return None
    counts = Counter(tuple(group_value(r, k) for k in SLICE_KEYS) for r in records)
    best = max(counts, key=lambda k: (k[1] == "rubin" and k[2] == "default", counts[k]))
    picked = [r for r in records if tuple(group_value(r, k) for k in SLICE_KEYS) == best]
    named = dict(zip(SLICE_KEYS, best))
    settings = (f"{named['chains']} chains × ({named['warmup']} warmup + {named['draws']} draws), "
                f"target_accept {named['target_accept']}")
    return Slice(picked, str(named["data"]), str(named["prior"]),
                 next((r["prior_text"] for r in picked if r.get("prior_text")), str(named["prior"])),
                 settings, sorted({r["seed"] for r in picked if r.get("seed") is not None}))


def why_failed(runs: list[dict]) -> str:
    """One short phrase for an (engine, parameterisation) with no finished run."""
    f = next((failure(r) for r in runs if failure(r)), None)
    if f is None:
        return "no runs"
    if f.kind == "known-break":
        return f"failed: known upstream break ({issue_name(f.link)})" if f.link else "failed: known upstream break"
    if f.kind == "unavailable":  # "no CmdStan install found (install: ...)" -> its first clause
        return f"unavailable: {brief(re.split(r': | [(]', f.reason, maxsplit=1)[0], 48)}"
    return f"{LONG[f.kind]}: {brief(f.reason, 48)}"


def _label(engine: str, param: str) -> str:
    return f"{engine} · {PARAM_WORD.get(param, param)}"


def _title(fig: Figure, *lines: str) -> None:
    """A left-aligned figure title, each line wrapped to the figure's width (constrained layout does not
    wrap text, and a title cut at the edge hides what the figure shows)."""
    chars = int(fig.get_figwidth() * 72 / (0.52 * STYLE["figure.titlesize"]))
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in lines), x=0.01, ha="left")


def _row_axes(ax, sl: Slice) -> list[tuple[str, str]]:
    rows = sl.rows
    ax.set_yticks(range(len(rows)), [_label(*r) for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first row at the top
    return rows


def _mark_failed(axes, sl: Slice) -> None:
    """A grey band across every panel for each row without a finished run, its reason in the first panel."""
    for i, (eng, param) in enumerate(sl.rows):
        runs = sl.runs(eng, param)
        if ok_runs(runs):
            continue
        for ax in axes:
            ax.axhspan(i - 0.45, i + 0.45, color="0.92", zorder=0)
        axes[0].text(0.01, i, why_failed(runs), transform=axes[0].get_yaxis_transform(), **FAILED_TEXT)


def ess_per_s(run_dir: Path, sl: Slice) -> Figure:
    """Bulk ESS per second of warmup + draws: every seed, the median and the IQR; failed rows labelled."""
    fig = Figure(figsize=(10, 2.2 + 0.42 * len(sl.rows)), layout="constrained")
    ax = fig.add_subplot()
    rows = _row_axes(ax, sl)
    _mark_failed([ax], sl)
    for i, (eng, param) in enumerate(rows):
        runs = sl.runs(eng, param)
        ok = ok_runs(runs)
        vals = np.array([r["ess_bulk_per_s_wall"] for r in ok if r.get("ess_bulk_per_s_wall")], float)
        if vals.size == 0:
            continue
        med, lo, hi = np.percentile(vals, [50, 25, 75])
        colour = PARAM_COLOUR.get(param, "0.3")
        ax.plot([lo, hi], [i, i], color=colour, lw=6, alpha=0.45, solid_capstyle="butt")
        ax.plot(vals, np.full(vals.size, i), "o", ms=5, mfc="white", mec=colour, mew=1.3)
        ax.plot(med, i, "D", ms=8, color=colour)
        if len(ok) < len(runs):
            ax.annotate(f"{len(runs) - len(ok)} of {len(runs)} runs failed", (vals.max(), i), xytext=(10, 0),
                        textcoords="offset points", va="center", fontsize=9.5, color="0.3")
    if any(ok_runs(sl.records)):
        ax.set_xscale("log")
        lo_x, hi_x = ax.get_xlim()
        ax.set_xlim(lo_x / 3, hi_x * 1.5)  # room on the left for the failed rows' text
    else:
        ax.set_xticks([])
    ax.set_xlabel("smallest bulk ESS (over mu, tau, theta) per second of warmup + draws, log scale")
    ax.grid(axis="x", which="both", alpha=0.25)
    ax.legend(handles=[Line2D([], [], ls="", marker="D", ms=8, color="0.3", label="median over seeds"),
                       Line2D([], [], lw=6, alpha=0.45, color="0.3", label="interquartile range"),
                       Line2D([], [], ls="", marker="o", mfc="white", mec="0.3", label="one seed")],
              loc="lower right", framealpha=0.95)
    _title(fig, f"Sampling efficiency: bulk ESS per second, seeds {seeds_text(sl.seeds)}",
           "orange: centred, blue: non-centred; compile time excluded", sl.caption)
    return fig


def divergences_rhat(run_dir: Path, sl: Slice) -> Figure:
    """Per run: post-warmup divergences (left) and the largest R-hat (right), one colour per seed."""
    fig = Figure(figsize=(12, 2.4 + 0.42 * len(sl.rows)), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    rows = _row_axes(left, sl)
    _mark_failed([left, right], sl)
    colours = {s: matplotlib.colormaps["tab10"](k % 10) for k, s in enumerate(sl.seeds)}
    offsets = {s: (k - (len(sl.seeds) - 1) / 2) * min(0.5 / max(len(sl.seeds), 1), 0.15)
               for k, s in enumerate(sl.seeds)}
    transitions = set()
    rhats = [r["max_rhat"] for r in ok_runs(sl.records) if r.get("max_rhat") is not None]
    cap = min(max(rhats, default=RHAT_CAP), RHAT_CAP)
    for i, (eng, param) in enumerate(rows):
        for r in ok_runs(sl.runs(eng, param)):
            y = i + offsets.get(r["seed"], 0.0)
            c = colours.get(r["seed"], "k")
            if r.get("divergences") is not None:
                left.plot(r["divergences"], y, "o", color=c, ms=6)
            if r.get("max_rhat") is not None:
                if r["max_rhat"] > cap:
                    right.plot(cap, y, ">", color=c, ms=8)
                    right.annotate(f"{r['max_rhat']:.2f}", (cap, y), xytext=(-10, 0), textcoords="offset points",
                                   ha="right", va="center", fontsize=9.5, color=c)
                else:
                    right.plot(r["max_rhat"], y, "o", color=c, ms=6)
            transitions.add(r.get("chains", 0) * r.get("draws", 0))
    left.set_xscale("symlog", linthresh=1)
    left.xaxis.set_major_formatter(ScalarFormatter())
    left.set_xlim(-0.3, max(left.get_xlim()[1], 10))
    per = f" (of {transitions.pop():,})" if len(transitions) == 1 else ""
    left.set_xlabel(f"divergent transitions after warmup per run{per}")
    left.set_title("Divergences (0, then log scale)", loc="left")
    right.axvline(RHAT_LINE, color="k", ls="--", lw=1)
    right.set_xlim(min([0.998, *rhats]), cap + 0.01 * (cap - 0.99) + 0.005)
    right.set_xlabel("largest rank-normalised split R-hat (mu, tau, theta)")
    right.set_title(f"R-hat (dashed: {RHAT_LINE}, the usual convergence threshold)", loc="left")
    right.xaxis.set_major_locator(MaxNLocator(6))
    for ax in (left, right):
        ax.grid(axis="x", which="both", alpha=0.25)
    handles = [Line2D([], [], ls="", marker="o", color=c, label=f"seed {s}") for s, c in colours.items()]
    if any(x > cap for x in rhats):
        handles.append(Line2D([], [], ls="", marker=">", color="0.3", label=f"above {cap:.2f} (value printed)"))
    right.legend(handles=handles, loc="lower right", title="one point per run", framealpha=0.95)
    _title(fig, "Divergences and R-hat of every run, one colour per seed", sl.caption)
    return fig


def _draws_path(run_dir: Path, rec: dict) -> Path:
    return run_dir / "draws" / f"{rec['key']}.nc"


@lru_cache(maxsize=64)
def _read(path: str, mtime_ns: int, size: int) -> xr.DataTree:
    """One draws file in memory (file closed), read once for every figure that shows it; keyed on the
    file's modification time and size as well as its name, so a rewritten file is read again."""
    with xr.open_datatree(path) as dt:
        return dt.load()


def _saved(run_dir: Path, runs: list[dict]) -> list[tuple[dict, xr.DataTree]]:
    out = []
    for r in ok_runs(runs):
        path = _draws_path(run_dir, r) if r.get("key") else None
        if path is not None and path.exists():
            st = path.stat()
            out.append((r, _read(str(path), st.st_mtime_ns, st.st_size)))
    return sorted(out, key=lambda p: p[0].get("seed") or 0)


def _panels(n: int, width: float = 4.4, height: float = 3.6, ncols: int = 3) -> tuple[Figure, list]:
    ncols = min(ncols, max(n, 1))
    nrows = -(-max(n, 1) // ncols)
    fig = Figure(figsize=(width * ncols, height * nrows + 1.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _empty(ax, title: str, text: str) -> None:
    """A labelled empty slot: the engine's place in the grid, saying why it has nothing to show."""
    ax.set_title(title, loc="left")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_facecolor("0.96")
    wrapped = "\n".join(textwrap.fill(line, 40, break_on_hyphens=False) for line in text.splitlines())
    ax.text(0.5, 0.5, wrapped, transform=ax.transAxes, ha="center", va="center",
            **{k: v for k, v in FAILED_TEXT.items() if k not in ("va", "ha")})


def _drawn_first(engines: list[str], has_draws) -> list[str]:
    """Engines with something to draw first, then the empty slots, each group in name order."""
    return sorted(engines, key=lambda e: (not has_draws(e), e))


def _saved_seeds_note(seeds: set[int], sl: Slice) -> str:
    if set(sl.seeds) <= seeds:
        return f"seeds {seeds_text(seeds)} pooled"
    return (f"seed{'s' if len(seeds) > 1 else ''} {seeds_text(seeds)} only: draws are saved for "
            f"{'these seeds' if len(seeds) > 1 else 'the first seed'} of {seeds_text(sl.seeds)}; "
            "divergences_rhat.png has every seed")


def funnel(run_dir: Path, sl: Slice) -> Figure | None:
    """theta[first school] against log tau for each engine's centred fit; divergent transitions in red."""
    engines = [e for e in sl.engines if sl.runs(e, "centered")]
    if not engines:
        return None
    saved = {e: _saved(run_dir, sl.runs(e, "centered")) for e in engines}
    if not any(saved.values()):
        return None
    engines = _drawn_first(engines, lambda e: bool(saved[e]))
    fig, axes = _panels(len(engines))
    school = "1"
    seeds_shown: set[int] = set()
    for ax, eng in zip(axes, engines):
        pairs = saved[eng]
        if not pairs:
            runs = sl.runs(eng, "centered")
            _empty(ax, eng, why_failed(runs) if not ok_runs(runs) else "ran, but no draws were saved")
            continue
        counts = []
        for rec, dt in pairs:
            post, st = dt["posterior"], dt["sample_stats"]
            school = str(post["theta"]["school"].values[0]) if "school" in post["theta"].coords else "1"
            lt = np.log(post["tau"].values.ravel())
            th = post["theta"].values[..., 0].ravel()
            div = st["diverging"].values.ravel().astype(bool)
            ax.plot(th[~div], lt[~div], ".", ms=2, alpha=0.25, color="0.45", rasterized=True)
            ax.plot(th[div], lt[div], "o", ms=3.5, color="tab:red", alpha=0.8)
            counts.append(f"seed {rec['seed']}: {int(div.sum())} of {div.size:,}")
            seeds_shown.add(rec["seed"])
        ax.set_title(f"{eng}\ndivergent: " + "; ".join(counts), loc="left", fontsize=10.5)
        ax.set_xlabel(f"theta[{school}]")
        ax.set_ylabel("log tau")
        ax.grid(alpha=0.25)
    _title(fig, "The funnel of the centred model: one school's effect against log tau; grey = draws, "
           "red = divergent transitions", f"{sl.caption}; {_saved_seeds_note(seeds_shown, sl)}")
    return fig


def _data(spec: str) -> SchoolsData | None:
    """The data of a ``rubin`` or ``rubin:sigma_scale=S`` spec (None for any other: no exact overlay)."""
    name, *opts = spec.split(":")
    if name != "rubin":
        return None
    kw = dict(o.split("=", 1) for o in opts if "=" in o)
    if set(kw) - {"sigma_scale"}:
        return None
    scale = float(kw.get("sigma_scale", 1.0))
    if scale == 1.0:
        return RUBIN
    return SchoolsData(RUBIN.y, [s * scale for s in RUBIN.sigma], RUBIN.school, name=f"rubin-sigma_scale={scale:g}")


def _prior(name: str):
    if name in PRESETS:
        return PRESETS[name]
    if name.startswith("mu=") and ";tau=" in name:
        mu, tau = name[3:].split(";tau=", 1)
        return make_prior(mu_text=mu, tau_text=tau)
    return None


def tau_marginal(run_dir: Path, sl: Slice) -> Figure | None:
    """Histograms of tau (centred and non-centred) against the exact marginal density, one panel per engine."""
    prior = _prior(sl.prior)
    if prior is not None and prior.tau_fixed:
        return None  # tau is fixed: it has no marginal to draw
    saved = {(e, p): _saved(run_dir, sl.runs(e, p)) for e, p in sl.rows}
    if not any(saved.values()):
        return None
    data = _data(sl.data)
    ref = posterior(data, prior) if data is not None and prior is not None else None
    hi = float(np.max(np.concatenate([p[1]["posterior"]["tau"].values.ravel() for v in saved.values() for p in v])))
    if ref is not None:
        probe = np.linspace(0.0, max(hi, 1.0), 4001)
        hi = float(probe[np.searchsorted(np.asarray(ref.cdf("tau", probe)), 0.995)]) if probe.size else hi
    grid = np.linspace(0.0, hi, 401)
    exact = np.asarray(ref.pdf("tau", grid), float) if ref is not None else None
    bins = np.linspace(0.0, hi, 41)
    width = bins[1] - bins[0]
    fig, axes = _panels(len(sl.engines), width=4.6, height=3.4)
    top = 1.6 * float(exact.max()) if exact is not None else None
    seeds_shown: set[int] = set()
    engines = _drawn_first(sl.engines, lambda e: bool(saved.get((e, "centered")) or saved.get((e, "noncentered"))))
    for ax, eng in zip(axes, engines):
        drawn = False
        failed = []
        for param in ("centered", "noncentered"):
            pairs = saved.get((eng, param), [])
            if not pairs:
                runs = sl.runs(eng, param)
                if runs:
                    failed.append(f"{PARAM_WORD[param]}: " + (why_failed(runs) if not ok_runs(runs) else "no draws saved"))
                continue
            tau = np.concatenate([dt["posterior"]["tau"].values.ravel() for _, dt in pairs])
            seeds_shown |= {rec["seed"] for rec, _ in pairs}
            # density over all draws (draws beyond the window still count in the normalisation)
            h, _ = np.histogram(tau, bins=bins, weights=np.full(tau.size, 1.0 / (tau.size * width)))
            ax.stairs(h, bins, color=PARAM_COLOUR[param], lw=1.6, label=PARAM_WORD[param])
            drawn = True
            if top is not None:
                for k in np.flatnonzero(h > top):
                    ax.annotate(f"{h[k]:.2f} ↑", (bins[k + 1], top), xytext=(4, -12),
                                textcoords="offset points", color=PARAM_COLOUR[param], fontsize=9.5)
        if not drawn:
            reasons = {f.split(": ", 1)[1] for f in failed}
            _empty(ax, eng, reasons.pop() if len(reasons) == 1 else "\n".join(failed) or "no draws saved")
            continue
        if exact is not None:
            ax.plot(grid, exact, "k", lw=1.3, label="exact")
        ax.set_title(eng + ("\n" + "; ".join(failed) if failed else ""), loc="left", fontsize=10.5)
        ax.set_xlabel("tau")
        ax.set_ylabel("posterior density of tau")
        if top is not None:
            ax.set_ylim(0, top)
        ax.set_xlim(0, hi)
        ax.legend(loc="upper right")
        ax.grid(alpha=0.25)
    clip = "; y axis cut at 1.6 × the exact peak, a taller bin marked with its height ↑" if top else ""
    exact_note = "" if ref is not None else "; no exact density for this data"
    _title(fig, f"Marginal posterior of tau: histograms of the draws against the exact density{clip}",
           f"{sl.caption}; {_saved_seeds_note(seeds_shown, sl)}{exact_note}")
    return fig


#: file name -> the function drawing it from a results folder and its slice (None: nothing to draw)
FIGURES = {"ess_per_s.png": ess_per_s, "divergences_rhat.png": divergences_rhat, "funnel.png": funnel,
           "tau_marginal.png": tau_marginal}


def _drawn(run_dir: Path, sl: Slice, names: list[str]) -> Iterator[tuple[str, Figure]]:
    """(file name, Figure) for each of ``names`` that has something to show, in the report's style (held
    while the caller handles each figure: its savefig renders in that style too)."""
    with matplotlib.rc_context(STYLE):
        for name in names:
            fig = FIGURES[name](Path(run_dir), sl)
            if fig is not None:
                yield name, fig


def draw_figures(run_dir: Path, records: list[dict]) -> dict[str, Figure]:
    """Every figure this results folder supports, drawn but not written: file name -> Figure."""
    sl = main_slice(records)
    return {} if sl is None else dict(_drawn(run_dir, sl, list(FIGURES)))


def _draw_and_save(run_dir: Path, sl: Slice, names: list[str]) -> list[str]:
    """Draw and write (atomically) each of ``names`` that has something to show; returns those written."""
    out = []
    for name, fig in _drawn(run_dir, sl, names):
        with atomic_path(Path(run_dir) / name) as tmp:
            fig.savefig(tmp, dpi=DPI, format="png")
        out.append(name)
    return out


def _can_fork() -> bool:
    return len(os.sched_getaffinity(0)) >= 2 and fork_is_safe()


def make_figures(run_dir: Path, records: list[dict]) -> list[str]:
    """Write every figure this results folder supports (atomically); returns their file names.

    Drawing is CPU-bound and the figures are independent: with two or more CPUs, a forked child draws
    every other figure while this process draws the rest (the child inherits the imports and caches, so
    it starts at once), halving the report's wait after the last run; not where a fork is unsafe (a
    runtime's threads running here: benchmarks/forking.py). A child that fails leaves its figures to
    this process, which draws them again, so a real failure shows here with its reason."""
    sl = main_slice(records)
    if sl is None:
        return []
    names = list(FIGURES)
    if not _can_fork() or len(names) < 2:
        return _draw_and_save(run_dir, sl, names)
    theirs, ours = names[::2], names[1::2]
    read_end, write_end = os.pipe()

    def child() -> int:
        os.write(write_end, json.dumps(_draw_and_save(run_dir, sl, theirs)).encode())
        return 0

    pid = fork_child(child, close=(read_end,))
    os.close(write_end)
    try:
        done = _draw_and_save(run_dir, sl, ours)
    finally:
        with os.fdopen(read_end, "rb") as f:
            reply = f.read()
        _, status = os.waitpid(pid, 0)
    if status == 0 and reply:
        done += json.loads(reply)
    else:
        done += _draw_and_save(run_dir, sl, theirs)
    return [n for n in names if n in done]
