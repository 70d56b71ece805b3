"""Reference results on Rubin's data for every prior preset: JSON with provenance, and figures.

``write_results(outdir)`` writes ``<data>-<prior>.json`` for each preset and the "pooling knob"
figure (p(tau | y) with E[theta_j | tau, y] +- sd against tau, as BDA3 figures 5.5-5.7) for the
bda3 and default priors. Every file is written atomically (``models.files``); provenance (versions,
machine, git revision) comes from ``models.provenance``, the suite's one bottom layer.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from models.data import RUBIN, SchoolsData
from models.files import atomic_path, write_text
from models.priors import PRESETS, Prior
from models.provenance import git_revision, machine, versions

from .core import LEVELS, Reference, posterior
from .marginal import theta_given_tau

__all__ = ["provenance", "write_results", "pooling_figure", "FIGURE_PRIORS", "REFERENCE_PACKAGES"]

#: the presets whose pooling-knob figure is drawn
FIGURE_PRIORS: tuple[str, ...] = ("bda3", "default")
#: the packages whose versions can change the reference's numbers
REFERENCE_PACKAGES: tuple[str, ...] = ("numpy", "scipy")


def provenance(ref: Reference) -> dict:
    """How a reference was made: data, prior, method, grid, errors, versions, machine, git revision."""
    if ref.grid_info is None:
        method = {"kind": "closed form", "detail": f"tau fixed at {ref.fixed_tau:g}: fully conjugate"}
    else:
        method = {"kind": "grid in log tau, mu integrated in closed form", **ref.grid_info.to_dict()}
    revision = git_revision()
    return {
        "data": ref.data.to_dict(),
        "prior": ref.prior.to_dict(),
        "method": method,
        "levels": list(LEVELS),
        "error_meaning": (
            "absolute; the difference to a grid with half the panels (and to a Gauss rule with twice the "
            "nodes where mixtures are compressed), plus truncated tail mass and a 1e-13 relative round-off floor"
        ),
        "max_error": ref.max_error(),
        "fixed_tau": "tau is {'fixed': value} and log_tau is omitted" if ref.fixed_tau is not None else None,
        "versions": {"python": platform.python_version(), **versions(REFERENCE_PACKAGES)},
        "machine": machine(),
        "git_revision": revision,
        "git_dirty": revision.endswith("-dirty") if revision is not None else None,
    }


def _write_json(obj: dict, path: Path) -> Path:
    return write_text(path, json.dumps(obj, indent=1, allow_nan=False) + "\n")


def pooling_figure(ref: Reference, path: Path, *, tau_max: float | None = None) -> Path:
    """p(tau | y) above E[theta_j | tau, y] +- sd against tau (BDA3 figures 5.5-5.7), as a PNG."""
    # matplotlib stays lazy (as in benchmarks/reporting): every `python -m reference` command imports
    # this module, and only write-results draws; the Agg canvas needs no backend selection
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if ref.fixed_tau is not None:
        raise ValueError("the pooling figure needs a tau prior, not a fixed tau")
    hi = tau_max if tau_max is not None else max(30.0, float(ref.quantile("tau", 0.99)))
    tau = np.linspace(0.0, hi, 601)
    dens = ref.pdf("tau", tau)
    mean, sd = theta_given_tau(ref.schools, ref.prior, tau)
    fig = Figure(figsize=(7.0, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(1, 2))
    top.plot(tau, dens, color="black")
    top.set_ylabel("p(tau | y)")
    top.set_ylim(bottom=0)
    top.set_title(f"{ref.data.name}: {ref.prior}  [{ref.prior.name}]", fontsize=10)
    colors = [f"C{j % 10}" for j in range(ref.data.J)]
    for j, label in enumerate(ref.data.school):
        bottom.plot(tau, mean[:, j], color=colors[j], lw=1.5)
        bottom.fill_between(
            tau, mean[:, j] - sd[:, j], mean[:, j] + sd[:, j], color=colors[j], alpha=0.08, lw=0
        )
        bottom.annotate(label, (tau[-1], mean[-1, j]), xytext=(3, 0), textcoords="offset points", va="center")
    bottom.set_xlabel("tau")
    bottom.set_ylabel("E[theta_j | tau, y]  (band: +- sd)")
    bottom.set_xlim(0, hi)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(path)


def write_results(
    outdir: Path, data: SchoolsData = RUBIN, presets: dict[str, Prior] | None = None
) -> list[Path]:
    """Write ``<data>-<prior>.json`` for every preset (default: all) and the pooling figures."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, prior in (presets or PRESETS).items():
        ref = posterior(data, prior)
        doc = {"meta": provenance(ref), "summary": ref.to_dict()}
        written.append(_write_json(doc, outdir / f"{data.name}-{name}.json"))
        if name in FIGURE_PRIORS and ref.fixed_tau is None:
            written.append(pooling_figure(ref, outdir / f"{data.name}-{name}-pooling.png"))
    return written
