"""The sweep's figures: ESS per gradient against sigma_scale, the check's pass rate and the divergence
rate against sigma_scale, and a heat map of which parameterisation wins where.

Panels are one per engine, in the registry's order, at the same place in every figure; an engine with
no finished run keeps its panel, saying why (unavailable, known upstream break, failed). Colour is the
parameterisation (orange centred, blue non-centred, as in REPORT.md's figures); line style and marker
are J (solid circles J = 8, dashed squares J = 64). Drawn with matplotlib's object API.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from models.files import atomic_path

from ..engines import ENGINES
from .failures import LONG, SHORT, brief, failure, issue_name
from .figures import DPI, FAILED_TEXT, PARAM_COLOUR, PARAM_WORD, STYLE
from .sweep_stats import NOMINAL_PASS, crossovers, log_ratios, ok
from .tables import seeds_text

__all__ = ["SweepView", "draw_sweep_figures", "write_sweep_figures", "FIGURES"]

PARAMS = ("centered", "noncentered")
J_STYLE = {0: dict(ls="-", marker="o"), 1: dict(ls="--", marker="s")}
#: horizontal dodge (a factor on sigma_scale) of each (parameterisation, J) line where they would overlap
DODGE = (0.90, 0.97, 1.03, 1.10)
#: the divergence-rate axis is linear below this fraction of draws (one divergence in 1000), log above
DIV_LINTHRESH = 1e-3
#: the heat map's colour scale ends at this |log10 ratio| (a factor of 100): beyond it cells saturate
HEAT_CAP = 2.0
#: inches: narrower figures (a sweep of one engine or two scales) cannot hold their titles and legends
MIN_WIDTH = 11.0
HEAT_CMAP = LinearSegmentedColormap.from_list("nc-c", [PARAM_COLOUR["noncentered"], "white",
                                                       PARAM_COLOUR["centered"]])


@dataclass
class SweepView:
    """The records and the words every figure says about them."""

    records: list[dict]
    prior: str
    settings: str
    data: dict[int, str]  # J -> how its data were made, in words

    @property
    def engines(self) -> list[str]:
        present = {r["engine"] for r in self.records}
        return [e for e in ENGINES if e in present] + sorted(present - set(ENGINES))

    @property
    def Js(self) -> list[int]:
        return sorted({r["J"] for r in self.records})

    @property
    def scales(self) -> list[float]:
        return sorted({float(r["sigma_scale"]) for r in self.records})

    @property
    def seeds(self) -> list[int]:
        return sorted({r["seed"] for r in self.records})

    def runs(self, engine: str, param: str | None = None, J: int | None = None) -> list[dict]:
        return [r for r in self.records if r["engine"] == engine and (param is None or r["parameterization"] == param)
                and (J is None or r["J"] == J)]

    def caption(self) -> str:
        data = "; ".join(f"J = {J}: {self.data.get(J, '?')}" for J in self.Js)
        return f"seeds {seeds_text(self.seeds)}; prior {self.prior}; {self.settings}; {data}"


def _title(fig: Figure, *lines: str) -> None:
    chars = int(fig.get_figwidth() * 72 / (0.52 * STYLE["figure.titlesize"]))
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in lines), x=0.01, ha="left")


def _panels(view: SweepView, height: float = 3.1) -> tuple[Figure, list]:
    n = len(view.engines)
    ncols = min(4, max(n, 1))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(max(MIN_WIDTH, 4.1 * ncols), 2.2 + height * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)).ravel().tolist()
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, axes[:n]


def _scale_axis(ax, scales: list[float]) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(scales))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlim(scales[0] / 1.5, scales[-1] * 1.5)
    ax.tick_params(axis="x", labelsize=8.5)


def _xlabel(axes: list, text: str) -> None:
    """The x label under the bottom panel of each column."""
    ncols = min(4, len(axes))
    for k, ax in enumerate(axes):
        if k + ncols >= len(axes):
            ax.set_xlabel(text, fontsize=9.5)


def why_failed(runs: list[dict]) -> str:
    """Why an engine has no finished run, in a few words (the full reason is in SWEEP.md)."""
    f = next((failure(r) for r in runs if failure(r)), None)
    if f is None:
        return "no runs"
    if f.kind == "known-break":
        return "known upstream break" + (f" ({issue_name(f.link)})" if f.link else "")
    return f"{LONG[f.kind]}: {brief(f.reason.split(' (')[0], 60)}"


def _failed_panel(ax, view: SweepView, engine: str) -> bool:
    """Grey out a panel whose engine has no finished run, saying why; True when it did."""
    runs = view.runs(engine)
    if any(ok(r) for r in runs):
        return False
    ax.set_facecolor("0.94")
    ax.text(0.04, 0.5, textwrap.fill(why_failed(runs), 30), transform=ax.transAxes, **FAILED_TEXT)
    return True


def _series(view: SweepView, engine: str, param: str, J: int, value) -> tuple[list, list, list]:
    """(S, every seed's value, the seeds' median) for one line; failed runs as S in a separate list."""
    by_s: dict[float, list] = defaultdict(list)
    failed = []
    for r in view.runs(engine, param, J):
        v = value(r) if ok(r) else None
        if v is None:
            failed.append(float(r["sigma_scale"]))
        else:
            by_s[float(r["sigma_scale"])].append(v)
    xs = sorted(by_s)
    return xs, [by_s[s] for s in xs], failed


def _legend(fig: Figure, view: SweepView, extra: list) -> None:
    handles = [Line2D([], [], color=PARAM_COLOUR[p], label=f"{PARAM_WORD[p]} J = {J}", **J_STYLE[i])
               for i, J in enumerate(view.Js) for p in PARAMS]
    fig.legend(handles=handles + extra, loc="outside lower center", ncols=min(4, len(handles + extra)),
               frameon=False)


def ess_per_grad(view: SweepView) -> Figure:
    """ESS per gradient against sigma_scale, log-log: every seed as a point, the median as a line, the
    crossover (median over seeds) as a vertical line per J."""
    fig, axes = _panels(view)
    cross = crossovers(view.records)
    for ax, engine in zip(axes, view.engines):
        ax.set_title(engine, loc="left", fontweight="bold")
        _scale_axis(ax, view.scales)
        if _failed_panel(ax, view, engine):
            continue
        ax.set_yscale("log")
        for i, J in enumerate(view.Js):
            for p in PARAMS:
                xs, vals, failed = _series(view, engine, p, J, lambda r: r["ess_bulk_per_grad"] or None)
                style = J_STYLE[i]
                ax.plot(xs, [np.median(v) for v in vals], color=PARAM_COLOUR[p], lw=1.8, ms=5, **style)
                for s, v in zip(xs, vals):
                    ax.plot([s] * len(v), v, ls="", marker=style["marker"], ms=3.5, mfc="none",
                            mec=PARAM_COLOUR[p], alpha=0.55)
                for s in failed:
                    ax.plot(s, 0.04, "x", color=PARAM_COLOUR[p], ms=7, mew=2, transform=ax.get_xaxis_transform())
            c = cross.get((engine, J))
            if c and 0 < c.median < math.inf:
                ax.axvline(c.median, color="0.25", lw=1, ls=J_STYLE[i]["ls"], zorder=0)
        ax.grid(which="major", alpha=0.3)
    for ax in axes[::4]:
        ax.set_ylabel("min bulk ESS / gradient")
    extra = [Line2D([], [], ls="", marker="o", mfc="none", mec="0.4", label="one seed"),
             Line2D([], [], color="0.25", lw=1, label="crossover, median over seeds ("
                    + ", ".join(f"{'solid' if i == 0 else 'dashed'} J = {J}" for i, J in enumerate(view.Js)) + ")"),
             Line2D([], [], ls="", marker="x", color="0.3", mew=2, label="run failed")]
    _legend(fig, view, extra)
    _xlabel(axes, "sigma_scale (× every sigma_j)\n← informative data · weak data →")
    _title(fig, "ESS per gradient evaluation (smallest bulk ESS over mu, tau, theta / leapfrog steps after "
                "warmup) against sigma_scale, log–log; lines: median over seeds, points: each seed. "
                "Where orange is above blue the centred parameterisation is the efficient one.", view.caption())
    return fig


def _rate_lines(view: SweepView, axes, value, aggregate):
    """Per engine panel: its title and axis, then one line per parameterisation and J of ``aggregate``
    over seeds of ``value(record)``, dodged sideways; yields each panel that has runs, for its own styling."""
    for ax, engine in zip(axes, view.engines):
        ax.set_title(engine, loc="left", fontweight="bold")
        _scale_axis(ax, view.scales)
        if _failed_panel(ax, view, engine):
            continue
        k = 0
        for i, J in enumerate(view.Js):
            for p in PARAMS:
                xs, vals, _ = _series(view, engine, p, J, value)
                dodge = DODGE[k % len(DODGE)]
                k += 1
                ax.plot([s * dodge for s in xs], [aggregate(v) for v in vals], color=PARAM_COLOUR[p], lw=1.6, ms=5,
                        **J_STYLE[i])
        yield ax


def check_rate(view: SweepView) -> Figure:
    """Fraction of seeds whose fit passes the reference check, against sigma_scale."""
    fig, axes = _panels(view, height=2.7)
    for ax in _rate_lines(view, axes, lambda r: float(bool(r.get("check_passed"))), np.mean):
        ax.axhline(NOMINAL_PASS, color="0.3", lw=0.8, ls=":")
        ax.set_ylim(-0.06, 1.06)
        ax.grid(alpha=0.3)
    for ax in axes[::4]:
        ax.set_ylabel("fraction of seeds passing")
    extra = [Line2D([], [], color="0.3", lw=0.8, ls=":", label=f"nominal pass rate {NOMINAL_PASS:.0%}")]
    _legend(fig, view, extra)
    _xlabel(axes, "sigma_scale (lines dodged sideways)\n← informative data · weak data →")
    _title(fig, "The reference check across the space: fraction of seeds whose fit passes (z-scores of mean "
                "and quantiles of mu, tau, log tau, theta in units of the run's MCSE, family-wise 1 %).",
           view.caption())
    return fig


def divergence_rate(view: SweepView) -> Figure:
    """Divergent transitions per post-warmup draw against sigma_scale (median over seeds)."""
    fig, axes = _panels(view, height=2.7)
    for ax in _rate_lines(view, axes, lambda r: (r.get("divergences") or 0) / r["n_draws"] if r.get("n_draws") else None,
                          np.median):
        ax.set_yscale("symlog", linthresh=DIV_LINTHRESH, linscale=0.5)
        ax.yaxis.set_major_locator(FixedLocator([0, 1e-3, 1e-2, 1e-1, 1]))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: "0" if y == 0 else f"{y:.1%}".replace(".0%", "%")))
        ax.set_ylim(-DIV_LINTHRESH / 5, 1)
        ax.grid(alpha=0.3)
    for ax in axes[::4]:
        ax.set_ylabel("divergent / draws")
    _legend(fig, view, [])
    _xlabel(axes, "sigma_scale\n← informative data · weak data →")
    _title(fig, "Divergent transitions after warmup, as a fraction of draws (median over seeds), against "
                "sigma_scale.", view.caption())
    return fig


def _engine_label(view: SweepView, engine: str) -> str:
    """The engine's name, and for one with no finished run what kind of failure (the reason is in SWEEP.md)."""
    runs = view.runs(engine)
    if any(ok(r) for r in runs):
        return engine
    f = next((failure(r) for r in runs if failure(r)), None)
    return f"{engine}\n({SHORT[f.kind] if f else 'no runs'})"


def winner_map(view: SweepView) -> Figure:
    """Engine x sigma_scale, one panel per J: colour = median over seeds of log10(centred / non-centred
    ESS per gradient); text = the factor and how many seeds agree."""
    ratios = log_ratios(view.records)
    engines, scales = view.engines, view.scales
    fig = Figure(figsize=(max(MIN_WIDTH, 2.3 + 1.05 * len(scales) * len(view.Js)), 2.6 + 0.5 * len(engines)),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(view.Js), squeeze=False)).ravel()
    image = None
    for ax, J in zip(axes, view.Js):
        grid = np.full((len(engines), len(scales)), np.nan)
        for i, engine in enumerate(engines):
            seeds = ratios.get((engine, J), {})
            for j, s in enumerate(scales):
                ds = [pts[s] for pts in seeds.values() if pts.get(s) is not None]
                if not ds:
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.9",
                                                              hatch="///", edgecolor="0.7", lw=0))
                    ax.text(j, i, "no fit", ha="center", va="center", fontsize=8, color="0.35", style="italic")
                    continue
                med = float(np.median(ds)) / math.log(10)
                grid[i, j] = med
                wins = sum(d > 0 for d in ds) if med > 0 else sum(d <= 0 for d in ds)
                who = "C" if med > 0 else "NC"
                ax.text(j, i, f"{who} ×{10 ** abs(med):.3g}\n{wins}/{len(ds)}", ha="center", va="center",
                        fontsize=7.5, color="black" if abs(med) < 0.75 * HEAT_CAP else "white")
        image = ax.imshow(grid, cmap=HEAT_CMAP, vmin=-HEAT_CAP, vmax=HEAT_CAP, aspect="auto")
        ax.set_xticks(range(len(scales)), [f"{s:g}" for s in scales])
        ax.set_yticks(range(len(engines)), [_engine_label(view, e) for e in engines])
        ax.set_xlabel("sigma_scale")
        ax.set_title(f"J = {J}", loc="left", fontweight="bold")
        ax.tick_params(length=0)
        ax.set_xticks(np.arange(len(scales)) - 0.5, minor=True)
        ax.set_yticks(np.arange(len(engines)) - 0.5, minor=True)
        ax.grid(which="minor", color="white", lw=1.5)
    for ax in axes[1:]:
        ax.set_yticklabels([])
    if image is not None:
        bar = fig.colorbar(image, ax=axes.tolist(), shrink=0.9, pad=0.01)
        bar.set_label("log10(centred / non-centred ESS per gradient)")
    fig.legend(handles=[Patch(color=PARAM_COLOUR["centered"], label="C: centred wins by ×factor"),
                        Patch(color=PARAM_COLOUR["noncentered"], label="NC: non-centred wins by ×factor"),
                        Patch(facecolor="0.9", hatch="///", edgecolor="0.7",
                              label="no fit: the engine failed there (SWEEP.md says why)")],
               loc="outside lower center", ncols=3, frameon=False)
    _title(fig, "Which parameterisation wins, and by how much: median over seeds of the ratio of ESS per "
                "gradient (centred / non-centred); under it, how many seeds agree.", view.caption())
    return fig


#: file name -> the function drawing it
FIGURES = {"ess_per_grad.png": ess_per_grad, "check_pass_rate.png": check_rate,
           "divergence_rate.png": divergence_rate, "winner_map.png": winner_map}


def draw_sweep_figures(view: SweepView) -> dict[str, Figure]:
    if not view.records:
        return {}
    with matplotlib.rc_context(STYLE):
        return {name: draw(view) for name, draw in FIGURES.items()}


def write_sweep_figures(run_dir: Path, view: SweepView) -> list[str]:
    """Write every figure (atomically); returns their file names."""
    figures = draw_sweep_figures(view)
    with matplotlib.rc_context(STYLE):
        for name, fig in figures.items():
            with atomic_path(Path(run_dir) / name) as tmp:
                fig.savefig(tmp, dpi=DPI, format="png")
    return list(figures)
