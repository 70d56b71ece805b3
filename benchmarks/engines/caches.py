"""Where the engines keep compiled programs between runs, processes and virtual environments, all
under the suite's one cache folder (``models.errors.cache_root()``). No PPL is imported here, so the
harness can record these paths without paying for an import."""

from __future__ import annotations

import os
from pathlib import Path

from models.errors import cache_root

__all__ = ["compilation_cache_dir", "httpstan_store", "cmdstan_store"]


def httpstan_store() -> Path:
    """PyStan's compiled Stan programs, by content, shared by every venv of this machine
    (``_httpstan.py`` seeds httpstan's own per-interpreter cache from here)."""
    return cache_root() / "httpstan"


def cmdstan_store() -> Path:
    """CmdStan executables, by program text, CmdStan path and CmdStan version."""
    return cache_root() / "cmdstan"


def compilation_cache_dir() -> Path | None:
    """Where XLA executables are cached on disk between runs and processes, or None (disabled).

    The JAX counterpart of the Stan stores above: a warm run that traces and compiles again still
    pays XLA's backend compile without a persistent cache (~6 of ~8 s per NumPyro run here,
    measured). JAX's own ``JAX_COMPILATION_CACHE_DIR`` wins when set; else ``<cache_root>/jax``.
    ``EIGHT_SCHOOLS_JAX_CACHE=0`` turns it off, for cold-compile measurements.
    """
    if os.environ.get("EIGHT_SCHOOLS_JAX_CACHE", "1").strip().lower() in ("0", "off", "false", "no"):
        return None
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    return cache_root() / "jax"
