"""CmdStanPy engine: Stan's NUTS by a compiled CmdStan executable, one process per chain.

Needs a CmdStan install (``python -m cmdstanpy.install_cmdstan``, conda's ``cmdstan``, or ``CMDSTAN``
pointing at one). Each program is written, with its ``#include`` inlined (the very text PyStan
compiles), to ``<cache_root>/cmdstan/<key>/<program>.stan``, the key a hash of the text and of the
CmdStan install (its path, its makefile, so its version, and its ``make/local`` options): the
executable built next to it serves every later run, and an upgraded CmdStan at the same path gets
new executables. A file lock per program makes two processes on a cold cache run ``make`` once.
``Timings.compile_cached`` says whether this run compiled; a model is also kept in this process (a
few, least recently used evicted).

Each run writes CmdStan's CSV files (18 significant digits: full doubles, as every other engine
returns) to its own temporary folder, removed once the draws are converted. The manifest's Stan and
CmdStan versions are the compiled executable's own (``exe_info()``). cmdstanpy's logging goes to this
module's logger at DEBUG (errors stay errors), not to the console.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

import arviz_base
from filelock import FileLock

from models.files import write_text
from models.problem import Problem
from models.stan_program import program_code, program_name, stan_data

from ._stan_common import check_seed, dims_and_coords, stan_point, stan_result, to_layout
from .base import COMPILED, REUSED, EngineUnavailable, RunResult, Settings, check_problem, check_run_args
from .caches import cmdstan_store

log = logging.getLogger(__name__)

INSTALL_HINT = "install: python -m cmdstanpy.install_cmdstan, or set CMDSTAN"
#: where a run's executable came from when not REUSED or COMPILED
CACHED = "executable from the CmdStan build cache"
#: CmdStan's output precision (its largest): full doubles in the CSV files, as every engine returns
SIG_FIGS = 18
#: models kept per process
MODELS_KEPT = 8

_VERSION = re.compile(r"^CMDSTAN_VERSION\s*:=\s*(\S+)", re.MULTILINE)

#: stan file -> (CmdStanModel, its exe_info()) built in this process
_MODELS: OrderedDict[Path, tuple[object, dict]] = OrderedDict()


class _ToDebug(logging.Handler):
    """cmdstanpy's records, re-emitted by this module's logger: below ERROR at DEBUG."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = record.levelno if record.levelno >= logging.ERROR else logging.DEBUG
            log.log(level, "cmdstanpy %s: %s", record.levelname, record.getMessage())
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


def route_cmdstanpy_logging() -> None:
    """Send the ``cmdstanpy`` logger's records to this module's logger only (replacing the console
    handler cmdstanpy installs), so that they do not interleave with the suite's progress output."""
    lg = logging.getLogger("cmdstanpy")
    if any(isinstance(h, _ToDebug) for h in lg.handlers):
        return
    for h in list(lg.handlers):
        lg.removeHandler(h)
    lg.addHandler(_ToDebug())
    lg.setLevel(logging.DEBUG)  # what cmdstanpy itself sets; this module's logger decides what shows
    lg.propagate = False


def _cmdstanpy():
    route_cmdstanpy_logging()  # before the import: cmdstanpy installs its handler only on a bare logger
    import cmdstanpy  # optional: imported lazily

    return cmdstanpy


def cmdstan_install(path: str | os.PathLike) -> dict[str, str]:
    """What an executable built against the CmdStan at ``path`` depends on besides the program text:
    the path, the makefile (so the version; an upgrade in place changes it) and ``make/local``."""
    root = Path(path)
    makefile = _read(root / "makefile")
    m = _VERSION.search(makefile)
    return {
        "path": str(root),
        "version": m.group(1) if m else "unknown",
        "makefile_sha256": hashlib.sha256(makefile.encode()).hexdigest(),
        "make_local": _read(root / "make" / "local"),
    }


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def stan_file_for(code: str, name: str, install: Mapping[str, str]) -> Path:
    """Where the program ``code`` (called ``name``) is compiled against the CmdStan ``install``."""
    h = hashlib.sha256()
    for part in (code, install["path"], install["version"], install["makefile_sha256"], install["make_local"]):
        h.update(part.encode())
        h.update(b"\0")
    return cmdstan_store() / h.hexdigest()[:16] / f"{name}.stan"


def exe_version(info: Mapping[str, str]) -> str | None:
    """``major.minor.patch`` from an executable's ``info`` output (CmdStan >= 2.27), else None."""
    parts = [info.get(f"stan_version_{p}") for p in ("major", "minor", "patch")]
    return ".".join(parts) if all(parts) else None


def _model(problem: Problem) -> tuple[object, dict, str]:
    """The CmdStanModel for the problem's program, its exe_info(), and where the executable came from."""
    if (reason := ENGINE.availability()) is not None:
        raise EngineUnavailable(f"engine cmdstanpy: {reason}")
    cmdstanpy = _cmdstanpy()
    from cmdstanpy.utils import EXTENSION

    prior, param = problem.prior, problem.parameterization
    code = program_code(prior, param)
    stan_file = stan_file_for(code, program_name(prior, param), cmdstan_install(cmdstanpy.cmdstan_path()))
    if stan_file in _MODELS:
        _MODELS.move_to_end(stan_file)
        model, info = _MODELS[stan_file]
        return model, info, REUSED
    stan_file.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(stan_file.with_suffix(".lock")):  # one `make` per program, however many processes
        cached = stan_file.with_suffix(EXTENSION).exists()
        if not stan_file.exists():
            write_text(stan_file, code)
        if not cached:
            log.info("compiling Stan program %s with CmdStan (once per CmdStan install)", stan_file)
        model = cmdstanpy.CmdStanModel(stan_file=stan_file)  # compiles unless the executable is up to date
    info = model.exe_info()
    _MODELS[stan_file] = (model, info)
    while len(_MODELS) > MODELS_KEPT:
        _MODELS.popitem(last=False)
    return model, info, CACHED if cached else COMPILED


class CmdStanPyEngine:
    name = "cmdstanpy"
    ppl = "cmdstanpy"

    def availability(self) -> str | None:
        try:
            cmdstanpy = _cmdstanpy()
        except ImportError:
            return "cmdstanpy does not import: pip install 'eight-schools-ppl[cmdstan]'"
        try:
            cmdstanpy.cmdstan_path()
        except (ValueError, RuntimeError, OSError):
            return f"no CmdStan install found ({INSTALL_HINT})"
        return None

    def run(self, problem: Problem, settings: Settings) -> RunResult:
        check_run_args(problem, settings)
        seed = check_seed(settings.seed)
        t_start = time.perf_counter()
        model, info, source = _model(problem)
        compile_s = time.perf_counter() - t_start

        cmdstanpy = _cmdstanpy()
        parallel = min(settings.chains, os.cpu_count() or 1)
        # cmdstanpy refuses adaptation without warm-up, and adapt_delta without adaptation
        adapt = {"adapt_delta": settings.target_accept} if settings.warmup > 0 else {"adapt_engaged": False}
        with tempfile.TemporaryDirectory(prefix="eight-schools-cmdstan-") as output_dir:
            t0 = time.perf_counter()
            fit = model.sample(
                data=stan_data(problem.data, problem.prior),
                chains=settings.chains,
                parallel_chains=parallel,
                seed=seed,
                iter_warmup=settings.warmup,
                iter_sampling=settings.draws,
                max_treedepth=settings.max_treedepth,
                sig_figs=SIG_FIGS,
                output_dir=output_dir,
                show_progress=False,
                **adapt,
            )
            inference_s = time.perf_counter() - t0
            # the draws are read from the CSV files: converted before the folder goes
            dims, coords = dims_and_coords(problem.data)
            tree = to_layout(arviz_base.from_cmdstanpy(posterior=fit, dims=dims, coords=coords),
                             problem.data, problem.prior, "cmdstanpy")
            chain_elapsed = list(getattr(fit, "time", None) or [])  # parsed when sampling ended
        total_s = time.perf_counter() - t_start

        version = exe_version(info)
        install = cmdstan_install(cmdstanpy.cmdstan_path())
        return stan_result(
            self.name, cmdstanpy.__version__, tree, problem, settings,
            parallel=f"one CmdStan process per chain ({parallel} at a time)", cached=source != COMPILED,
            compile_s=compile_s, inference_s=inference_s, total_s=total_s, chain_elapsed=chain_elapsed,
            stan_version=version,
            cmdstan_version=version,  # the executable's own: CmdStan and Stan release together
            cmdstan_makefile_version=install["version"],
            cmdstan_path=install["path"],
            exe_file=str(model.exe_file),
            exe_info=dict(info),
            program=source,
            compile_reused=source == REUSED,
            output=f"CSV, sig_figs={SIG_FIGS}, in a temporary folder per run, removed after conversion",
        )

    def log_density(self, problem: Problem) -> Callable[[Mapping], float]:
        """log p(y, parameters) at a constrained point by CmdStan's ``log_prob`` method, without Jacobian."""
        check_problem(problem)
        model, _, _ = _model(problem)
        sdata = stan_data(problem.data, problem.prior)

        def lp(point: Mapping) -> float:
            values = stan_point(problem, point)
            if values is None:
                return -math.inf
            result = model.log_prob(values, sdata, jacobian=False, sig_figs=SIG_FIGS)
            return float(result["lp__"].iloc[0])

        return lp


ENGINE = CmdStanPyEngine()
