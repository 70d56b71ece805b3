"""CmdStan's approximate methods through CmdStanPy: ADVI (``model.variational``, mean-field) and
Pathfinder (``model.pathfinder``), on the same Stan programs (models/stan/) and the same compiled
executables as the cmdstanpy engine (benchmarks/engines/cmdstanpy_engine.py: how CmdStan is found and
programs are built and cached). Unavailable where no CmdStan install is found.

Settings are CmdStan's defaults (ADVI: 10000 iterations, adaptive eta, 1 gradient draw, 100 ELBO
draws; Pathfinder: 4 paths, 1000 L-BFGS iterations, ...); ApproxSettings.iterations sets ``iter`` /
``max_lbfgs_iters`` and learning_rate ADVI's ``eta`` (adaptation off). Pathfinder runs with
``psis_resample=False`` and ``num_single_draws = ceil(draws / 4)``: its draws are the paths' own (the
first ``draws`` of them), as pymc-pathfinder's here, and log_q is the generating path's density. Draws come as
constrained values (CSV, 18 significant digits): the suite's unconstrained vector is computed from them
(_target.unconstrain), log_p here, log_q CmdStan's own (ADVI ``log_g__``, Pathfinder ``lp_approx__``;
Stan may omit q's normalising constant, which does not change the Pareto k̂ of log_p - log_q).
"""

from __future__ import annotations

import math
import tempfile
import time

import numpy as np

from models.problem import Problem
from models.stan_program import stan_data

from ..engines import cmdstanpy_engine
from . import _target
from .base import (
    LIBRARY_DEFAULT,
    ApproxResult,
    ApproxSettings,
    ApproxTimings,
    ApproxUnavailable,
    approx_manifest,
    check_fit_args,
)

__all__ = ["APPROXIMATORS", "CmdStanApprox"]

#: CmdStan Pathfinder's default number of paths (not overridden here)
PATHFINDER_PATHS = 4

#: method -> (CmdStanModel method, its iterations argument, the column of log q, CmdStan's default iterations)
METHODS = {
    "advi": ("variational", "iter", "log_g__", 10000),
    "pathfinder": ("pathfinder", "max_lbfgs_iters", "lp_approx__", 1000),
}


class CmdStanApprox:
    ppl = "cmdstanpy"

    def __init__(self, name: str, method: str) -> None:
        self.name, self.method = name, method

    def availability(self) -> str | None:
        return cmdstanpy_engine.ENGINE.availability()

    def fit(self, problem: Problem, settings: ApproxSettings) -> ApproxResult:
        check_fit_args(problem, settings)
        if (reason := self.availability()) is not None:
            raise ApproxUnavailable(f"{self.name}: {reason}")
        cmdstanpy = cmdstanpy_engine._cmdstanpy()
        call, iter_arg, log_q_col, default_iters = METHODS[self.method]
        t0 = time.perf_counter()
        model, info, source = cmdstanpy_engine._model(problem)
        built = time.perf_counter()
        args = {"seed": settings.seed, "draws": settings.draws, "sig_figs": cmdstanpy_engine.SIG_FIGS,
                "show_console": False}
        if settings.iterations:
            args[iter_arg] = settings.iterations
        if self.method == "advi":
            args.update(algorithm="meanfield", require_converged=False)
            if settings.learning_rate:
                args.update(eta=settings.learning_rate, adapt_engaged=False)
        else:  # without resampling CmdStan returns every path's draws: num_paths x num_single_draws
            args.update(psis_resample=False, calculate_lp=True,
                        num_single_draws=math.ceil(settings.draws / PATHFINDER_PATHS))
        with tempfile.TemporaryDirectory(prefix="eight-schools-cmdstan-approx-") as output_dir:
            fit = getattr(model, call)(data=stan_data(problem.data, problem.prior), output_dir=output_dir, **args)
            fitted = time.perf_counter()
            names = [n for n, _ in _target.blocks(problem)]
            if self.method == "advi":
                point = {n: np.asarray(fit.stan_variable(n, mean=False)) for n in names}
                lq = np.asarray(fit.variational_sample_pd[log_q_col], dtype=np.float64)
            else:
                point = {n: np.asarray(fit.stan_variable(n)) for n in names}
                lq = np.asarray(fit.method_variables()[log_q_col], dtype=np.float64).reshape(-1)
        if lq.size < settings.draws:
            raise RuntimeError(f"{self.name}: CmdStan returned {lq.size} draws, fewer than draws = {settings.draws}")
        point = {n: v[: settings.draws] for n, v in point.items()}  # Pathfinder: the paths' draws in order
        U, lq = _target.unconstrain(problem, point), lq[: settings.draws]
        tree, lp = _target.to_datatree(problem, U, lq, "cmdstanpy")
        drawn = time.perf_counter()
        diag = _target.diagnostics(
            lp, lq, elbo_final=None, elbo_trace_length=None, evaluations=None,
            evaluations_note="not exposed: CmdStan prints its iterations and ELBO to the console, which "
                             "cmdstanpy does not parse",
            notes="CmdStan's ELBO trace is console output only; elbo_draws is the suite's estimate")
        version = cmdstanpy_engine.exe_version(info)
        manifest = approx_manifest(
            self.name, self.ppl, cmdstanpy.__version__, problem, settings,
            stan_version=version, cmdstan_version=version, exe_file=str(model.exe_file), program=source,
            method=f"CmdStanModel.{call}" + (" (algorithm meanfield)" if self.method == "advi" else
                                             " (psis_resample=False)"),
            iterations=(settings.iterations if settings.iterations else f"{default_iters} ({LIBRARY_DEFAULT})"),
            learning_rate=(f"eta {settings.learning_rate}, adaptation off" if settings.learning_rate and
                           self.method == "advi" else LIBRARY_DEFAULT),
            other_settings=LIBRARY_DEFAULT,
            draws_from=f"CmdStan's {call} output (seed=seed), converted from constrained values",
            timing_method="compile_s: finding or building the executable; fit_s: the CmdStan call (fit and "
                          "draws in one process); draw_s: reading the draws, log_p")
        timings = ApproxTimings(compile_s=built - t0, fit_s=fitted - built, draw_s=drawn - fitted,
                                total_s=time.perf_counter() - t0)
        return ApproxResult(draws=tree, timings=timings, manifest=manifest, diagnostics=diag)


APPROXIMATORS = {
    "cmdstanpy-advi": CmdStanApprox("cmdstanpy-advi", "advi"),
    "cmdstanpy-pathfinder": CmdStanApprox("cmdstanpy-pathfinder", "pathfinder"),
}
