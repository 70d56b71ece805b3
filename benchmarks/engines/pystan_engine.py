"""PyStan 3 engine: Stan's NUTS through httpstan, in this process.

PyStan binds data (and the seed) when it builds a model. Compiled programs come from the machine's
store (``_httpstan.py``: one build per program, shared by every venv); a run says whether it compiled
in ``Timings.compile_cached``. A built model is kept in this process (a few of them, least recently
used evicted), so a later seed of it skips even httpstan's load. httpstan also caches every seeded
*fit* by its arguments and would answer a repeated run from disk without sampling: ``run`` removes its
fits from that cache so every run really samples. httpstan's chain pool starts its workers from a
forkserver (``_httpstan.ensure_pool``), never by forking this process.

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
from collections import OrderedDict
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path

from arviz_base import from_pystan

from models.problem import Problem
from models.stan_program import program_code, stan_data

from ._stan_common import (
    check_seed,
    dims_and_coords,
    elapsed_from_messages,
    stan_point,
    stan_result,
    to_layout,
)
from .base import COMPILED, REUSED, RunResult, Settings, check_problem, check_run_args

#: where a run's compiled program came from when not REUSED or COMPILED
CACHED = "loaded from the compiled-program store"

log = logging.getLogger(__name__)

_NUTS = "stan::services::sample::hmc_nuts_diag_e_adapt"

#: built stan.Model objects kept per process (each holds the program text and the data, no compiled code)
MODELS_KEPT = 8

#: (program code, data JSON) -> built stan.Model (seed replaced per run; building binds data only)
_MODELS: OrderedDict[tuple[str, str], object] = OrderedDict()


def _import_stan():
    """``import stan``, without the SyntaxWarnings its dependency clikit raises when compiled."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        import stan  # PyStan stays optional: imported lazily
    return stan


def _httpstan():
    from . import _httpstan  # imports httpstan (with PyStan: optional, lazy)

    return _httpstan


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


def _build(code: str, data: dict, seed: int | None) -> tuple[object, str]:
    """The stan.Model for ``code`` and ``data`` with ``seed``, and where its compiled program came from:
    REUSED (a model kept in this process), CACHED (the store or httpstan's cache), or COMPILED."""
    stan = _import_stan()
    key = (code, json.dumps(data, sort_keys=True))
    if key in _MODELS:
        _MODELS.move_to_end(key)
        return dataclasses.replace(_MODELS[key], random_seed=seed), REUSED
    with _httpstan().compiled(code) as found:
        if not found:
            log.info("compiling Stan program %s (once per machine; ~40 s of g++)", _httpstan().entry_dir(code).name)
        model = _quietly("stan.build", stan.build, code, data=data, random_seed=seed)
    _MODELS[key] = model
    while len(_MODELS) > MODELS_KEPT:
        _MODELS.popitem(last=False)
    return model, CACHED if found else COMPILED


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


#: (id of httpstan's pool, model name): programs every worker of that pool has loaded
_PRELOADED: set[tuple[int, str]] = set()
#: rounds of loading tasks before giving up on a worker that never takes one (it then loads the
#: program on its first chain, inside the timed sampling, as it would without this)
PRELOAD_ROUNDS = 8


def _preload(model_name: str) -> None:
    """Have every worker of httpstan's pool load ``model_name``'s compiled program (once per pool):
    a forkserver worker does not inherit this process's loaded modules, and loading a ~35 MB program
    on a worker's first chain would otherwise fall inside the first run's sampling time."""
    import httpstan.services_stub  # PyStan's modules load lazily, with the PPL

    from . import _stan_preload

    pool = httpstan.services_stub.executor
    key = (id(pool), model_name)
    if key in _PRELOADED:
        return
    workers = set(getattr(pool, "_processes", None) or {})
    loaded: set[int] = set()
    for _ in range(PRELOAD_ROUNDS):
        futures = [pool.submit(_stan_preload.load, model_name) for _ in range(max(1, len(workers)))]
        loaded |= {f.result() for f in futures}
        workers |= set(getattr(pool, "_processes", None) or {})
        if workers <= loaded:
            break
    _PRELOADED.add(key)


class PyStanEngine:
    name = "pystan"
    ppl = "pystan"

    def availability(self) -> str | None:
        if sys.version_info >= (3, 13):
            return (f"PyStan on Python {sys.version.split()[0]}: httpstan's compiled models fail to import; "
                    "run the suite on Python 3.12")
        try:
            _import_stan()
        except ImportError as e:
            return f"pystan does not import ({e}): pip install 'eight-schools-ppl[stan]' (Linux, macOS)"
        cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "gcc").split()[0]
        if shutil.which(cc) is None:
            return f"no C compiler {cc!r} on PATH: PyStan compiles each Stan program with it (install g++)"
        return None

    def run(self, problem: Problem, settings: Settings) -> RunResult:
        check_run_args(problem, settings)
        seed = check_seed(settings.seed)
        t_start = time.perf_counter()
        code = program_code(problem.prior, problem.parameterization)
        model, source = _build(code, stan_data(problem.data, problem.prior), seed)
        compile_s = time.perf_counter() - t_start

        t_pool = time.perf_counter()
        start_method = _httpstan().ensure_pool()  # starts httpstan's workers on a process's first run
        pool_s = time.perf_counter() - t_pool
        t_load = time.perf_counter()
        _preload(model.model_name)  # every pool worker maps the program now, not in the timed sampling
        compile_s += time.perf_counter() - t_load
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

        dims, coords = dims_and_coords(problem.data)
        converted = from_pystan(posterior=fit, posterior_model=model, dims=dims, coords=coords)
        tree = to_layout(converted, problem.data, problem.prior, "pystan")
        total_s = time.perf_counter() - t_start

        import httpstan.services_stub  # loaded with PyStan above

        workers = getattr(httpstan.services_stub.executor, "_max_workers", None)
        return stan_result(
            self.name, _version("pystan"), tree, problem, settings,
            parallel=f"one process per chain from httpstan's process pool ({workers} at a time, "
                     f"started by {start_method})",
            cached=source != COMPILED, compile_s=compile_s, inference_s=inference_s, total_s=total_s,
            chain_elapsed=_chain_elapsed(fit),
            httpstan_version=_version("httpstan"),
            stan_version=_stan_version(),
            model_name=model.model_name,
            program=source,
            compile_reused=source == REUSED,
            stan_build=str(_httpstan().entry_dir(code)),
            pool_start_s=pool_s,  # in total_s only: starting the worker processes is not sampling
        )

    def log_density(self, problem: Problem) -> Callable[[Mapping], float]:
        """log p(y, parameters) at a constrained point by the compiled program, without Jacobian."""
        check_problem(problem)
        model, _ = _build(program_code(problem.prior, problem.parameterization),
                          stan_data(problem.data, problem.prior), None)

        def lp(point: Mapping) -> float:
            values = stan_point(problem, point)
            if values is None:
                return -math.inf
            return float(model.log_prob(model.unconstrain_pars(values), adjust_transform=False))

        return lp


def _chain_elapsed(fit) -> list[dict[str, float]]:
    """Per chain, Stan's elapsed warm-up/sampling seconds from the logger messages PyStan keeps."""
    chains = []
    for output in fit.stan_outputs:
        messages = (json.loads(line)["values"][0] for line in output.splitlines()
                    if b'"topic":"logger"' in line and b"seconds" in line)
        chains.append(elapsed_from_messages(messages))
    return chains


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


ENGINE = PyStanEngine()
