"""What the JAX methods (BlackJAX VI and Pathfinder, NumPyro SVI) share: float64 JAX from the engines'
:mod:`benchmarks.engines._jax_common`, programs lowered and compiled ahead of time so that compile
time is measured apart, and the data as arguments of the compiled programs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from models.problem import Problem

# jax is None when JAX is missing; _jax_common enables float64 before any JAX array exists
from ..engines._jax_common import jax, jax_manifest, jnp

__all__ = ["jax", "jnp", "jax_manifest", "compiled", "timed", "data_args", "TIMING_METHOD"]

TIMING_METHOD = (
    "The fit and the draws are each one JAX program, lowered and compiled ahead of time "
    "(jax.jit(...).lower(...).compile()): compile_s is the model build plus both compilations, fit_s "
    "the compiled fit's run and draw_s the compiled draw's run (plus log_q and log_p in NumPy), each "
    "timed to block_until_ready. Nothing is kept between fits: every fit compiles."
)


def compiled(fn: Callable, *args: Any) -> tuple[Callable, float]:
    """(``fn`` jitted, lowered and compiled for ``args``, the seconds it took)."""
    t0 = time.perf_counter()
    program = jax.jit(fn).lower(*args).compile()
    return program, time.perf_counter() - t0


def timed(program: Callable, *args: Any) -> tuple[Any, float]:
    """(``program(*args)`` as NumPy arrays, its wall time to block_until_ready)."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(program(*args))
    return jax.tree.map(np.asarray, out), time.perf_counter() - t0


def data_args(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray(problem.data.y_array, dtype=np.float64),
            np.asarray(problem.data.sigma_array, dtype=np.float64))
