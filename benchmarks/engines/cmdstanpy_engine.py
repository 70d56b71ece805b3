"""CmdStanPy engine: Stan's NUTS by a compiled CmdStan executable, one process per chain.

Needs a CmdStan install (``python -m cmdstanpy.install_cmdstan``, conda's ``cmdstan``, or ``CMDSTAN``
pointing at one). Each program is written, with its ``#include`` inlined (the very text PyStan
compiles), to ``<cache>/<hash>/<program>.stan``, the hash taken over the text and the CmdStan path, so
the executable built next to it serves every later run: ``Timings.compile_cached`` says whether it
existed before this run. ``<cache>`` is ``$EIGHT_SCHOOLS_CACHE/cmdstan``, else
``~/.cache/eight-schools-ppl/cmdstan`` (``$XDG_CACHE_HOME`` honoured).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from models import Prior, SchoolsData
from models.logdensity import check_parameterization
from models.stan_program import program_code, program_name, stan_data

from ._stan_common import (
    check_seed,
    dims_and_coords,
    stan_point,
    stan_result,
    to_layout,
)
from .base import EngineUnavailable, RunResult, Settings, check_run_args
from .caches import cache_root

INSTALL_HINT = ("install CmdStan with `python -m cmdstanpy.install_cmdstan` (or `conda install -c conda-forge "
                "cmdstan`), or set CMDSTAN to an existing install")

#: stan file -> CmdStanModel built from it in this process
_MODELS: dict[Path, object] = {}


def availability() -> str | None:
    try:
        import cmdstanpy
    except ImportError as e:
        return f"cmdstanpy is not installed ({e}): pip install 'cmdstanpy>=1.2', then {INSTALL_HINT}"
    try:
        cmdstanpy.cmdstan_path()
    except (ValueError, RuntimeError, OSError) as e:
        return f"no CmdStan install found: {INSTALL_HINT} (cmdstanpy: {str(e).strip()})"
    return None


def cache_dir() -> Path:
    return cache_root() / "cmdstan"


def stan_file_for(code: str, name: str, cmdstan: str) -> Path:
    """Where the program ``code`` (called ``name``) is compiled against the CmdStan at ``cmdstan``."""
    digest = hashlib.sha256(f"{cmdstan}\n{code}".encode()).hexdigest()[:16]
    return cache_dir() / digest / f"{name}.stan"


def _model(prior: Prior, param: str):
    """The CmdStanModel of the program for ``prior`` and ``param``, and whether it was compiled already."""
    if (reason := availability()) is not None:
        raise EngineUnavailable(f"engine cmdstanpy: {reason}")
    import cmdstanpy
    from cmdstanpy.utils import EXTENSION

    code = program_code(prior, param)
    stan_file = stan_file_for(code, program_name(prior, param), cmdstanpy.cmdstan_path())
    if stan_file in _MODELS:
        return _MODELS[stan_file], True
    cached = stan_file.with_suffix(EXTENSION).exists()
    if not stan_file.exists():
        stan_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = stan_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(code)
        tmp.replace(stan_file)  # atomic: a concurrent run never sees half a program
    model = cmdstanpy.CmdStanModel(stan_file=stan_file)  # compiles unless the executable is up to date
    _MODELS[stan_file] = model
    return model, cached


def run(data: SchoolsData, prior: Prior, param: str, settings: Settings) -> RunResult:
    check_run_args(data, prior, param, settings)
    seed = check_seed(settings.seed)
    t_start = time.perf_counter()
    model, cached = _model(prior, param)
    compile_s = time.perf_counter() - t_start

    import cmdstanpy
    from arviz_base import from_cmdstanpy

    parallel = min(settings.chains, os.cpu_count() or 1)
    # cmdstanpy refuses adaptation without warm-up, and adapt_delta without adaptation
    adapt = {"adapt_delta": settings.target_accept} if settings.warmup > 0 else {"adapt_engaged": False}
    t0 = time.perf_counter()
    fit = model.sample(
        data=stan_data(data, prior),
        chains=settings.chains,
        parallel_chains=parallel,
        seed=seed,
        iter_warmup=settings.warmup,
        iter_sampling=settings.draws,
        max_treedepth=settings.max_treedepth,
        show_progress=False,
        **adapt,
    )
    inference_s = time.perf_counter() - t0

    dims, coords = dims_and_coords(data)
    tree = to_layout(from_cmdstanpy(posterior=fit, dims=dims, coords=coords), data, prior, "cmdstanpy")
    total_s = time.perf_counter() - t_start

    version = cmdstanpy.cmdstan_version()
    return stan_result(
        "cmdstanpy", cmdstanpy.__version__, tree, data, prior, param, settings,
        parallel=f"one CmdStan process per chain ({parallel} at a time)", cached=cached,
        compile_s=compile_s, inference_s=inference_s, total_s=total_s,
        chain_elapsed=getattr(fit, "time", None) or [],  # cmdstanpy >= 1.3
        cmdstan_version=".".join(map(str, version)) if version else None,
        cmdstan_path=cmdstanpy.cmdstan_path(),
        exe_file=str(model.exe_file),
    )


def log_density(data: SchoolsData, prior: Prior, param: str) -> Callable[[Mapping], float]:
    """log p(y, parameters) at a constrained point by CmdStan's ``log_prob`` method, without Jacobian."""
    check_parameterization(param)
    model, _ = _model(prior, param)
    sdata = stan_data(data, prior)

    def lp(point: Mapping) -> float:
        values = stan_point(data, prior, param, point)
        if values is None:
            return -math.inf
        # sig_figs=18: CmdStan writes 6 significant figures by default
        result = model.log_prob(values, sdata, jacobian=False, sig_figs=18)
        return float(result["lp__"].iloc[0])

    return lp
