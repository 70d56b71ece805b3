"""PyStan 3 engine: Stan's NUTS through httpstan, in this process.

PyStan binds data (and the seed) when it builds a model. httpstan keeps each compiled extension
module on disk under a name computed from the program text, so only the first build of a program
compiles; a run says which it was in ``Timings.compile_cached``, read from httpstan's cache before
building. httpstan also caches every seeded *fit* by its arguments and would answer a repeated run
from disk without sampling: ``run`` removes its fits from that cache so every run really samples.

PyStan prints build and sampling progress; it is captured and sent to this module's logger.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import sys
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path

from arviz_base import from_pystan

from models import Prior, SchoolsData
from models.logdensity import check_parameterization
from models.stan_program import program_code, stan_data

from ._stan_common import (
    check_seed,
    dims_and_coords,
    elapsed_from_messages,
    stan_point,
    stan_result,
    to_layout,
)
from .base import RunResult, Settings, check_run_args

log = logging.getLogger(__name__)

_NUTS = "stan::services::sample::hmc_nuts_diag_e_adapt"

#: (program code, data JSON) -> built stan.Model (seed replaced per run; building binds data only)
_MODELS: dict[tuple[str, str], object] = {}


def _import_stan():
    """``import stan``, without the SyntaxWarnings its dependency clikit raises when compiled."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        import stan
    return stan


def availability() -> str | None:
    if sys.version_info >= (3, 13):
        return (f"PyStan on Python {sys.version.split()[0]}: httpstan's compiled models fail to import "
                "(undefined symbol _PyThreadState_UncheckedGet); run the suite on Python 3.12")
    try:
        _import_stan()
    except ImportError as e:
        return f"pystan is not installed ({e}): pip install 'pystan>=3.10' (Linux and macOS only)"
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "gcc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler {cc!r} on PATH: PyStan compiles each Stan program with it (install g++)"
    return None


@contextlib.contextmanager
def _output_captured():
    """Everything written to stdout and stderr, sent to a temporary file (yielded).

    Both levels: file descriptors 1 and 2 (g++, run by httpstan, writes to the inherited descriptor 2)
    and sys.stdout/sys.stderr (PyStan's progress; pytest, Jupyter, etc. replace them with objects
    that are not descriptors 1 and 2). sys.stderr is made descriptor 2 again because httpstan silences
    the compiler by redirecting sys.stderr's descriptor, which children only inherit when it is 2.
    """
    with tempfile.TemporaryFile("w+b") as out:
        _flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            with (open(1, "w", closefd=False) as stdout, open(2, "w", closefd=False) as stderr,
                  contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr)):
                yield out
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()


def _quietly(what: str, fn: Callable, *args, **kwargs):
    """Call a PyStan function with its console output captured and logged (and shown on failure)."""
    with _output_captured() as out:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise RuntimeError(f"{what} failed: {e}\n{_text(out)[-4000:]}") from e
        finally:
            if text := _text(out):
                log.debug("%s:\n%s", what, text)


def _text(out) -> str:
    _flush()  # sys.stdout/sys.stderr are _output_captured's buffered writers here
    out.seek(0)
    return out.read().decode(errors="replace").strip()


def _build(code: str, data: dict, seed: int | None) -> tuple[object, bool]:
    """The stan.Model for ``code`` and ``data`` with ``seed``, and whether it was already compiled."""
    import httpstan.cache
    import httpstan.models

    stan = _import_stan()
    key = (code, json.dumps(data, sort_keys=True))
    if key in _MODELS:
        return dataclasses.replace(_MODELS[key], random_seed=seed), True
    cached = httpstan.models.calculate_model_name(code) in httpstan.cache.list_model_names()
    model = _quietly("stan.build", stan.build, code, data=data, random_seed=seed)
    _MODELS[key] = model
    return model, cached


def _fit_files(model, num_chains: int, kwargs: dict) -> list[Path]:
    """Where httpstan stores the fits of ``model.sample(num_chains=..., **kwargs)`` (one per chain).

    Mirrors stan.Model._create_fit's payload and httpstan's fit naming (views.handle_create_fit).
    """
    import httpstan.cache
    import httpstan.fits
    import httpstan.schemas

    paths = []
    for chain in range(1, num_chains + 1):
        payload = {**kwargs, "function": _NUTS, "chain": chain, "data": model.data, "init": {},
                   "random_seed": model.random_seed}
        args = httpstan.schemas.CreateFitRequest().load(payload)
        function = args.pop("function")
        paths.append(httpstan.cache.fit_path(httpstan.fits.calculate_fit_name(function, model.model_name, args)))
    return paths


def run(data: SchoolsData, prior: Prior, param: str, settings: Settings) -> RunResult:
    check_run_args(data, prior, param, settings)
    seed = check_seed(settings.seed)
    t_start = time.perf_counter()
    code = program_code(prior, param)
    model, cached = _build(code, stan_data(data, prior), seed)
    compile_s = time.perf_counter() - t_start

    kwargs = {"num_warmup": settings.warmup, "num_samples": settings.draws,
              "delta": float(settings.target_accept), "max_depth": settings.max_treedepth}
    fit_files = _fit_files(model, settings.chains, kwargs)
    for f in fit_files:  # a cached fit would be returned without sampling
        f.unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        fit = _quietly("PyStan sampling", model.sample, num_chains=settings.chains, **kwargs)
    finally:
        found = [f for f in fit_files if f.exists()]
        for f in found:
            f.unlink()
    inference_s = time.perf_counter() - t0
    if len(found) != len(fit_files):
        log.warning("httpstan stored its fits elsewhere than expected (httpstan %s changed its naming?): "
                    "a repeated identical run may be answered from httpstan's fit cache", _version("httpstan"))

    dims, coords = dims_and_coords(data)
    converted = from_pystan(posterior=fit, posterior_model=model, dims=dims, coords=coords)
    tree = to_layout(converted, data, prior, "pystan")
    total_s = time.perf_counter() - t_start

    import httpstan.services_stub

    workers = getattr(httpstan.services_stub.executor, "_max_workers", None)
    return stan_result(
        "pystan", _version("pystan"), tree, data, prior, param, settings,
        parallel=f"one process per chain from httpstan's process pool ({workers} at a time)", cached=cached,
        compile_s=compile_s, inference_s=inference_s, total_s=total_s, chain_elapsed=_chain_elapsed(fit),
        httpstan_version=_version("httpstan"),
        stan_version=_stan_version(),
        model_name=model.model_name,
    )


def _chain_elapsed(fit) -> list[dict[str, float]]:
    """Per chain, Stan's elapsed warm-up/sampling seconds from the logger messages PyStan keeps."""
    chains = []
    for output in fit.stan_outputs:
        messages = (json.loads(line)["values"][0] for line in output.splitlines()
                    if b'"topic":"logger"' in line and b"seconds" in line)
        chains.append(elapsed_from_messages(messages))
    return chains


def log_density(data: SchoolsData, prior: Prior, param: str) -> Callable[[Mapping], float]:
    """log p(y, parameters) at a constrained point by the compiled program, without Jacobian."""
    check_parameterization(param)
    model, _ = _build(program_code(prior, param), stan_data(data, prior), None)

    def lp(point: Mapping) -> float:
        values = stan_point(data, prior, param, point)
        if values is None:
            return -math.inf
        return float(model.log_prob(model.unconstrain_pars(values), adjust_transform=False))

    return lp


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _stan_version() -> str | None:
    """Stan's version from the headers httpstan ships (include/stan/version.hpp)."""
    import httpstan

    try:
        text = (Path(httpstan.__file__).parent / "include" / "stan" / "version.hpp").read_text()
    except OSError:
        return None
    parts = [re.search(rf"#define STAN_{p} (\d+)", text) for p in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(m.group(1) for m in parts) if all(parts) else None
