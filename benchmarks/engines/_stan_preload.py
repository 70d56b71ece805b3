"""Run in httpstan's pool workers: load a compiled Stan program before the timed sampling starts.

A small module of its own: a worker unpickles the task by importing this module, which needs nothing
beyond httpstan (already loaded in every worker).
"""

from __future__ import annotations

import os
import time

import httpstan.models

#: how long a loading task holds its worker, so that the other idle workers take the other tasks
HOLD_S = 0.05


def load(model_name: str) -> int:
    """Map the program's extension module into this worker (the dynamic loader keeps it mapped, so
    httpstan's own import of it on each chain is then free); returns this worker's pid."""
    httpstan.models.import_services_extension_module(model_name)
    time.sleep(HOLD_S)
    return os.getpid()
