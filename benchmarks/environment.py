"""What a result was made with: versions, machine, git revision, thread and XLA settings."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("numpy", "scipy", "xarray", "arviz", "arviz-base", "arviz-stats", "pymc", "pytensor",
            "numpyro", "jax", "jaxlib", "pystan", "httpstan", "cmdstanpy", "nutpie", "blackjax")
ENV_VARS = ("XLA_FLAGS", "JAX_PLATFORMS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
            "PYTENSOR_FLAGS", "OPENBLAS_CORETYPE", "CMDSTAN", "JAX_COMPILATION_CACHE_DIR",
            "EIGHT_SCHOOLS_JAX_CACHE", "EIGHT_SCHOOLS_CACHE")


def git_revision(root: Path | None = None) -> str | None:
    root = root or Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        # results/ holds outputs, not inputs: regenerating a committed result must not mark it dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev.stdout.strip() + ("-dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def environment() -> dict:
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "packages": versions(),
        "git_revision": git_revision(),
        "env": {k: os.environ.get(k) for k in ENV_VARS},
        "jax_compilation_cache": _jax_cache(),
    }


def _jax_cache() -> str | None:
    """The persistent XLA cache the JAX engines use (see engines/_jax_common.py), or None if off."""
    from .engines.caches import compilation_cache_dir

    where = compilation_cache_dir()
    return str(where) if where is not None else None


def note_revision_drift(env: dict) -> dict:
    """``env`` (recorded when a long job started) plus ``git_revision_end`` when the code changed under
    the job: modules are imported lazily, so a job can run code committed (or edited) after its start."""
    end = git_revision()
    return env if end == env.get("git_revision") else {**env, "git_revision_end": end}
