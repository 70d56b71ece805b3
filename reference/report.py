"""Reference results on Rubin's data for every prior preset: JSON with provenance, and figures.

``write_results(outdir)`` writes ``<data>-<prior>.json`` for each preset and the "pooling knob"
figure (p(tau | y) with E[theta_j | tau, y] +- sd against tau, as BDA3 figures 5.5-5.7) for the
bda3 and default priors. Every file is written atomically (temporary file, then os.replace).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import scipy

from models.data import RUBIN, SchoolsData
from models.priors import PRESETS, Prior

from .core import LEVELS, Reference, posterior
from .marginal import theta_given_tau

__all__ = ["atomic_path", "provenance", "write_results", "pooling_figure", "FIGURE_PRIORS"]

#: the presets whose pooling-knob figure is drawn
FIGURE_PRIORS: tuple[str, ...] = ("bda3", "default")
_REPO = Path(__file__).resolve().parents[1]


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else remove it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with suppress(FileNotFoundError):
            tmp.unlink()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def provenance(ref: Reference) -> dict:
    """How a reference was made: data, prior, method, grid, errors, versions and git revision."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    if ref.grid_info is None:
        method = {"kind": "closed form", "detail": f"tau fixed at {ref.fixed_tau:g}: fully conjugate"}
    else:
        method = {"kind": "grid in log tau, mu integrated in closed form", **ref.grid_info.to_dict()}
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
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
        },
        "git_revision": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
    }


def _write_json(obj: dict, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n")
    return path


def pooling_figure(ref: Reference, path: Path, *, tau_max: float | None = None) -> Path:
    """p(tau | y) above E[theta_j | tau, y] +- sd against tau (BDA3 figures 5.5-5.7), as a PNG."""
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
    return path


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
