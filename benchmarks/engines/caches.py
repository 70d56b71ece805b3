"""Where the engines keep compiled programs between runs and processes (no PPL is imported here, so
the harness can record these paths without paying for an import)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root", "compilation_cache_dir"]


def cache_root() -> Path:
    """The suite's own cache folder: ``$EIGHT_SCHOOLS_CACHE``, else ``~/.cache/eight-schools-ppl``
    (``$XDG_CACHE_HOME`` honoured)."""
    root = os.environ.get("EIGHT_SCHOOLS_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eight-schools-ppl"


def compilation_cache_dir() -> Path | None:
    """Where XLA executables are cached on disk between runs and processes, or None (disabled).

    The JAX counterpart of httpstan's compiled-model cache: NumPyro traces and compiles fresh jitted
    loops on every run, and without a persistent cache a warm run still pays XLA's backend compile
    (~6 of ~8 s per NumPyro run here, measured). JAX's own ``JAX_COMPILATION_CACHE_DIR`` wins when
    set; else ``$EIGHT_SCHOOLS_CACHE/jax`` or ``~/.cache/eight-schools-ppl/jax`` (``$XDG_CACHE_HOME``
    honoured). ``EIGHT_SCHOOLS_JAX_CACHE=0`` turns it off, for cold-compile measurements.
    """
    if os.environ.get("EIGHT_SCHOOLS_JAX_CACHE", "1").strip().lower() in ("0", "off", "false", "no"):
        return None
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    return cache_root() / "jax"
