"""The gradient floor: each engine's own log-density gradient, timed in the loop its sampler uses.

- numpyro (JAX): the potential's value_and_grad inside a jitted ``lax.fori_loop`` (no Python per step);
- pymc: PyTensor's compiled ``dlogp`` called from Python, as PyMC's NUTS calls it per leapfrog step.
Stan's gradient is not reachable in a loop from PyStan (one HTTP request per call), so it has none.
Written to ``<run_dir>/gradient_floor.json`` for OVERHEAD.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from models import PRESETS, RUBIN, SchoolsData
from models.files import write_json

N_INNER = 100_000


def numpyro_floor(data: SchoolsData = RUBIN, n: int = N_INNER) -> float:
    import jax
    from numpyro.infer.util import initialize_model

    from models.numpyro_model import build_model

    jax.config.update("jax_enable_x64", True)
    info = initialize_model(jax.random.PRNGKey(0), build_model(data, PRESETS["default"], "noncentered"))
    potential = info.potential_fn
    x0 = info.param_info.z
    vg = jax.value_and_grad(potential)

    @jax.jit
    def loop(x):
        def body(i, carry):
            x, acc = carry
            v, g = vg(x)
            x = jax.tree.map(lambda a, b: a + 1e-12 * b, x, g)  # data dependence: no loop hoisting
            return x, acc + v
        return jax.lax.fori_loop(0, n, body, (x, 0.0))

    jax.block_until_ready(loop(x0))
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(loop(x0))
        best = min(best, time.perf_counter() - t)
    return best / n * 1e6


def pymc_floor(data: SchoolsData = RUBIN, n: int = 20_000) -> float:
    from models.pymc_model import build_model

    model = build_model(data, PRESETS["default"], "noncentered")
    dlogp = model.compile_dlogp()
    point = model.initial_point()
    dlogp(point)
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            dlogp(point)
        best = min(best, time.perf_counter() - t)
    return best / n * 1e6


def write_floor(run_dir: Path) -> dict:
    out = {}
    for engine, fn, how in (("numpyro", numpyro_floor, "jax value_and_grad in a jitted fori_loop"),
                            ("pymc", pymc_floor, "compiled dlogp called from Python")):
        try:
            out[engine] = {"per_grad_us": fn(), "how": how}
        except Exception as e:  # noqa: BLE001 - an engine missing here is a row without a floor
            out[engine] = {"per_grad_us": None, "how": how, "error": f"{type(e).__name__}: {e}"}
    write_json(Path(run_dir) / "gradient_floor.json", out)
    return out

