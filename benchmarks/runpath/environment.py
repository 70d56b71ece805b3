"""What a set of results was made with: versions, machine, git revision, thread and XLA settings.

Built on :mod:`models.provenance` (the bottom layer shared with reference/); adds what only the
benchmarks know: the environment variables that change an engine's speed and where compiled
programs are cached.
"""

from __future__ import annotations

import os
import platform
import sys

from models.provenance import git_revision, machine, versions

from ..engines.caches import compilation_cache_dir

__all__ = ["ENV_VARS", "environment", "note_revision_drift"]

ENV_VARS = ("XLA_FLAGS", "JAX_PLATFORMS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
            "PYTENSOR_FLAGS", "OPENBLAS_CORETYPE", "CMDSTAN", "JAX_COMPILATION_CACHE_DIR",
            "EIGHT_SCHOOLS_JAX_CACHE", "EIGHT_SCHOOLS_CACHE")


def environment(**extra) -> dict:
    m = machine()
    cache = compilation_cache_dir()
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "os": m["os"],
        "cpu": m["cpu"],
        "cores": m["cores"],
        "affinity": m["affinity"],
        "host": m["host"],
        "packages": versions(),
        "git_revision": git_revision(),
        "env": {k: os.environ.get(k) for k in ENV_VARS},
        "jax_compilation_cache": str(cache) if cache is not None else None,
        **extra,
    }


def note_revision_drift(env: dict) -> dict:
    """``env`` (recorded when a long job started) plus ``git_revision_end`` when the code changed under
    the job: worker processes import code when they start, so a job can run code committed (or edited)
    after its start."""
    end = git_revision()
    return env if end == env.get("git_revision") else {**env, "git_revision_end": end}
