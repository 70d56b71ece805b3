"""The exact reference exported as a posteriordb reference posterior (``python -m reference export``).

posteriordb (github.com/stan-dev/posteriordb) keeps, under ``posterior_database/``::

    reference_posteriors/draws/draws/<name>.json.zip   a zip holding <name>.json: a list of chains,
                                                      each {"theta[1]": [...], ..., "mu": [...],
                                                      "tau": [...]} (its eight-schools file has
                                                      10 chains x 1000 draws, keys in that order)
    reference_posteriors/draws/info/<name>.info.json  how the draws were made

``--out DIR`` plays the part of ``posterior_database/``: the same two files at the same relative
paths, so DIR can be laid over a posteriordb checkout. The info file has exactly the top-level keys
posteriordb's R package asserts (name, inference, diagnostics, checks_made, comments, added_by,
added_date, versions) and ``inference.method = "analytical"``, one of the two it accepts. Its
``versions`` may only name R/rstan entries, so it is null here and this suite's versions sit in
``inference.method_arguments.provenance`` with the method, prior, data, seed, chains and draws.

Under the default prior and Rubin's data the posterior is posteriordb's
``eight_schools-eight_schools_noncentered`` (mu ~ normal(0, 5), tau ~ cauchy(0, 5) on tau > 0); the
centred posterior points to the same reference. Other data or priors get a name of this suite's own,
``<data>-eight_schools_<prior>``, which posteriordb does not have.

The draws are exact and independent (``Reference.draws``); chain c holds draws c*D .. (c+1)*D - 1.
The export is written into a temporary folder beside DIR and renamed into place: a failed command
leaves DIR as it was. A non-empty DIR is replaced only when it holds nothing but a previous export.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import arviz_base
import numpy as np

from models.data import RUBIN
from models.errors import UsageError
from models.priors import PRESETS

from .core import Reference
from .report import provenance

__all__ = ["POSTERIORDB_NAME", "GENERATOR", "MAX_TOTAL_DRAWS", "Export", "posteriordb_name", "draws_json",
           "info_json", "previous_export", "check_out", "write_posteriordb", "read_posteriordb", "relative_paths",
           "to_datatree"]

#: posteriordb's name of this posterior (the default prior on Rubin's data)
POSTERIORDB_NAME = "eight_schools-eight_schools_noncentered"
#: marks an export of this suite (how a previous export is recognised)
GENERATOR = "eight-schools-ppl: python -m reference export"
#: at most this many draws in all (~20 bytes per value in JSON, J + 2 values per draw)
MAX_TOTAL_DRAWS = 1_000_000
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member time: the same seed gives the same bytes


class Export(NamedTuple):
    out: Path
    name: str
    draws_path: Path
    info_path: Path
    replaced: list[str]  # files of a previous export that this one replaced (relative to out)


def posteriordb_name(ref: Reference) -> str:
    """posteriordb's name for Rubin's data under the default prior; ``<data>-eight_schools_<prior>`` else."""
    default = PRESETS["default"]
    if ref.data.digest() == RUBIN.digest() and (ref.prior.mu, ref.prior.tau) == (default.mu, default.tau):
        return POSTERIORDB_NAME
    prior = ref.prior.name if ref.prior.name else str(ref.prior)
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", f"{ref.data.name}-eight_schools_{prior}").strip("_")


def relative_paths(name: str) -> tuple[Path, Path]:
    """(draws zip, info json) relative to the export folder, as in posteriordb's tree."""
    base = Path("reference_posteriors", "draws")
    return base / "draws" / f"{name}.json.zip", base / "info" / f"{name}.info.json"


def _names(ref: Reference) -> list[str]:
    tau = [] if ref.prior.tau_fixed else ["tau"]
    return [*(f"theta[{j + 1}]" for j in range(ref.data.J)), "mu", *tau]


def draws_json(ref: Reference, chains: int, draws: int, seed: int) -> list[dict[str, list[float]]]:
    """``chains`` dicts of parameter name -> ``draws`` exact iid values (posteriordb's layout)."""
    raw = ref.draws(chains * draws, seed=seed)
    cols = {f"theta[{j + 1}]": raw["theta"][:, j] for j in range(ref.data.J)}
    cols["mu"] = raw["mu"]
    if not ref.prior.tau_fixed:
        cols["tau"] = raw["tau"]
    return [{k: cols[k].reshape(chains, draws)[c].tolist() for k in _names(ref)} for c in range(chains)]


def info_json(ref: Reference, name: str, chains: int, draws: int, seed: int) -> dict:
    """The info object, with exactly the top-level keys posteriordb's R package asserts."""
    method = ("exact independent draws: mu and theta integrated out in closed form given tau (a normal, or "
              "truncated-normal, integral), p(tau | y) on a 1-D Gauss-Legendre grid in log tau; tau by inverse "
              "CDF on that grid, then mu | tau, y and theta | mu, tau, y exactly (BDA3 section 5.4)")
    if ref.prior.tau_fixed:
        method = f"exact independent draws: tau fixed at {ref.fixed_tau:g}, mu and theta conjugate (no grid)"
    return {
        "name": name,
        "inference": {
            "method": "analytical",
            "method_arguments": {
                "description": method,
                "generator": GENERATOR,
                "prior": str(ref.prior),
                "prior_name": ref.prior.name,
                "data": ref.data.name,
                "data_digest": ref.data.digest(),
                "seed": seed,
                "rng": "numpy.random.default_rng (PCG64)",
                "chains": chains,
                "draws_per_chain": draws,
                "posteriordb_posterior": name if name == POSTERIORDB_NAME else None,
                "provenance": provenance(ref),
            },
        },
        "diagnostics": {"diagnostic_information": {"names": _names(ref)}, "ndraws": chains * draws,
                        "nchains": chains},
        "checks_made": {"ndraws_is_10k": chains * draws == 10_000, "nchains_is_gte_4": chains >= 4,
                        "independent_draws": True},
        "comments": (f"Exact iid draws from the eight-schools posterior (prior {ref.prior}; data {ref.data.name}, "
                     f"J = {ref.data.J}); chains are consecutive blocks of independent draws, not MCMC chains."),
        "added_by": GENERATOR,
        "added_date": _dt.datetime.now(_dt.UTC).date().isoformat(),
        "versions": None,
    }


def previous_export(out: Path) -> list[str] | None:
    """The files of a previous export in ``out`` (relative paths), or None if ``out`` holds anything
    else (a file that is not one of ours, or an info file without this suite's generator)."""
    allowed_dirs = {("reference_posteriors",), ("reference_posteriors", "draws"),
                    ("reference_posteriors", "draws", "draws"), ("reference_posteriors", "draws", "info")}
    entries = list(out.rglob("*"))
    if any(p.is_dir() and (p.is_symlink() or p.relative_to(out).parts not in allowed_dirs) for p in entries):
        return None
    files = [p for p in entries if not p.is_dir()]
    rel = [p.relative_to(out) for p in files]
    for p, r in zip(files, rel):
        if p.is_symlink() or len(r.parts) != 4 or r.parts[:2] != ("reference_posteriors", "draws"):
            return None
        if r.parts[2] == "draws" and r.name.endswith(".json.zip"):
            continue
        if r.parts[2] != "info" or not r.name.endswith(".info.json"):
            return None
        try:
            info = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(info, dict) or info.get("added_by") != GENERATOR:
            return None
    return sorted(str(r) for r in rel)


def check_out(out: Path) -> list[str]:
    """Validate ``--out`` before anything is computed or written; the files it would replace."""
    shown = str(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out = {shown!r}: exists and is not a directory")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"--out = {shown!r}: its parent directory does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--out = {shown!r}: its parent directory is not writable")
    if not out.exists() or not any(out.iterdir()):
        return []
    replaced = previous_export(out)
    if replaced is None:
        raise UsageError(f"--out = {shown!r}: not empty and not a previous export; give a new or empty directory")
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out = {shown!r}: not writable")
    return replaced


def _write_zip(path: Path, member: str, text: str) -> None:
    info = zipfile.ZipInfo(member, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info, text)


def write_posteriordb(ref: Reference, out: Path | str, *, chains: int = 10, draws: int = 1000,
                      seed: int = 0) -> Export:
    """Write the export into ``out`` (see the module docstring); UsageError (exit 2) before any write
    when ``out`` or the sizes cannot be used."""
    out = Path(out)
    for field, v in (("--chains", chains), ("--draws", draws)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise UsageError(f"{field} = {v!r}: must be a positive integer")
    if chains * draws > MAX_TOTAL_DRAWS:
        raise UsageError(f"--chains x --draws = {chains * draws}: at most {MAX_TOTAL_DRAWS} draws in all")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"--seed = {seed!r}: must be an integer >= 0")
    replaced = check_out(out)
    name = posteriordb_name(ref)
    draws_rel, info_rel = relative_paths(name)
    chain_list = draws_json(ref, chains, draws, seed)
    info = info_json(ref, name, chains, draws, seed)
    text = json.dumps(chain_list, allow_nan=False)
    info_text = json.dumps(info, indent=2, allow_nan=False) + "\n"
    parent = out.resolve().parent
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.export-"))
    old = None
    try:
        (tmp / draws_rel).parent.mkdir(parents=True)
        (tmp / info_rel).parent.mkdir(parents=True)
        _write_zip(tmp / draws_rel, f"{name}.json", text)
        (tmp / info_rel).write_text(info_text, encoding="utf-8")
        for d in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            os.chmod(d, 0o755)  # mkdtemp makes 0700; an export is meant to be read by anyone
        if out.exists() and any(out.iterdir()):
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.old-"))
            os.rmdir(old)
            os.rename(out, old)
        os.replace(tmp, out)  # onto a missing or empty directory: atomic
    except BaseException:
        if old is not None and not out.exists():
            os.rename(old, out)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return Export(out, name, out / draws_rel, out / info_rel, replaced)


def read_posteriordb(out: Path | str, name: str = POSTERIORDB_NAME) -> tuple[list[dict[str, list[float]]], dict]:
    """(chains, info) of an export (or of a posteriordb checkout's ``posterior_database``) by name."""
    draws_rel, info_rel = relative_paths(name)
    with zipfile.ZipFile(Path(out) / draws_rel) as zf:
        chains = json.loads(zf.read(zf.namelist()[0]))
    info = json.loads((Path(out) / info_rel).read_text(encoding="utf-8"))
    return chains, info


def to_datatree(chains: list[dict[str, list[float]]], school=None):
    """posteriordb chains as the suite's ArviZ layout: a DataTree whose posterior holds mu, tau (when
    present) over (chain, draw) and theta over (chain, draw, school)."""
    J = sum(1 for k in chains[0] if k.startswith("theta["))
    post = {"mu": np.array([c["mu"] for c in chains], dtype=float),
            "theta": np.stack([np.array([c[f"theta[{j + 1}]"] for c in chains], dtype=float) for j in range(J)],
                              axis=-1)}
    if "tau" in chains[0]:
        post["tau"] = np.array([c["tau"] for c in chains], dtype=float)
    coords = {"school": list(school)} if school is not None else None
    return arviz_base.from_dict({"posterior": post}, dims={"theta": ["school"]}, coords=coords)
