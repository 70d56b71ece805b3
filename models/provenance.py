"""What a result was made with: package versions, the machine, the git revision.

The bottom layer of the suite (with :mod:`models.files`); imports no PPL, so recording provenance
costs no import of what it describes.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["REPO", "PACKAGES", "git_revision", "cpu_model", "versions", "version", "machine"]

REPO = Path(__file__).resolve().parents[1]

#: every package whose version can change a result (numerics, PPLs, their compilers)
PACKAGES = ("numpy", "scipy", "xarray", "arviz", "arviz-base", "arviz-stats", "pymc", "pytensor",
            "numpyro", "jax", "jaxlib", "pystan", "httpstan", "cmdstanpy", "nutpie", "blackjax")


def git_revision(root: Path | None = None) -> str | None:
    """``HEAD``'s hash, ``-dirty`` when tracked files outside ``results/`` differ from it; None
    outside a git checkout (an installed copy). results/ holds outputs, not inputs: regenerating a
    committed result must not mark it dirty."""
    root = root or REPO
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
                               cwd=root, capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
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


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    return {p: version(p) for p in packages}


def machine() -> dict:
    """The machine a run happened on: enough to tell two machines apart and to say what they are."""
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "os": platform.platform(),
        "python": sys.version.split()[0],
    }
