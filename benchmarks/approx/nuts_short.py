"""A short NUTS run scored like an approximation: the yardstick the Pathfinder paper (Zhang et al.
2022) holds approximate methods against, a sampler given a budget of the same order.

``blackjax-nuts-short`` is the suite's blackjax engine (its NUTS after window adaptation, one
compiled program per problem) with 4 chains of ``iterations`` warmup (default 250) and
``settings.draws`` draws in all (default 1000, as every approximation: 4 x 250), in the
approximations' layout (chain 1). Its draws are scored by the same functions against the exact posterior. NUTS has no
density q of its draws, so ``log_q`` is NaN and there is no PSIS k̂ (the record says so); ``log_p``
is the target at each draw (benchmarks.approx._target.log_p). Gradient evaluations: the leapfrog
steps of the draw phase, counted, plus the warmup's, estimated at the draw phase's mean per
iteration (BlackJAX's window adaptation keeps no count; the note says so).
"""

from __future__ import annotations

import time

import numpy as np

from models.problem import Problem

from ..engines.base import Settings
from ._target import diagnostics, to_datatree, unconstrain
from .base import ApproxResult, ApproxSettings, ApproxTimings, approx_manifest, check_fit_args

__all__ = ["NutsShort", "APPROXIMATORS", "CHAINS", "DEFAULT_ITERATIONS"]

CHAINS = 4
#: warmup iterations and draws per chain when settings.iterations is None: 4 x 250 = 1000 draws
DEFAULT_ITERATIONS = 250


class NutsShort:
    name = "blackjax-nuts-short"
    ppl = "blackjax"

    def _engine(self):
        from ..engines.blackjax_engine import ENGINE  # the PPL side: lazy, as every engine

        return ENGINE

    def availability(self) -> str | None:
        return self._engine().availability()

    def fit(self, problem: Problem, settings: ApproxSettings) -> ApproxResult:
        check_fit_args(problem, settings)
        warmup = settings.iterations or DEFAULT_ITERATIONS
        per_chain = -(-settings.draws // CHAINS)  # ceil: the first settings.draws of the chains' draws
        run = self._engine().run(problem, Settings(chains=CHAINS, warmup=warmup, draws=per_chain, seed=settings.seed))
        t0 = time.perf_counter()
        post = run.draws["posterior"]
        point = {k: np.asarray(post[k].values).reshape(CHAINS * per_chain, *post[k].shape[2:])[: settings.draws]
                 for k in ("mu", "tau", "theta", "theta_tilde") if k in post.data_vars}
        U = unconstrain(problem, point)
        lq = np.full(U.shape[0], np.nan)  # no density q: no PSIS
        tree, lp = to_datatree(problem, U, lq, "blackjax")
        steps = np.asarray(run.draws["sample_stats"]["n_steps"].values)
        mean_steps = float(steps.mean())
        evaluations = int(steps.sum() + round(mean_steps * warmup * CHAINS))
        t = run.timings
        timings = ApproxTimings(compile_s=t.compile_s, fit_s=t.warmup_s or 0.0, draw_s=t.sampling_s or 0.0,
                                total_s=t.total_s + time.perf_counter() - t0)
        diag = diagnostics(lp, np.zeros_like(lp), elbo_final=None, elbo_trace_length=None, evaluations=evaluations,
                           evaluations_note=(f"leapfrog steps: the draw phase's {int(steps.sum())} counted, the "
                                             f"warmup's estimated at the draw phase's mean of {mean_steps:.1f} per "
                                             "iteration (BlackJAX's window adaptation keeps no count)"),
                           extra={"divergences": int(np.asarray(run.draws["sample_stats"]["diverging"].values).sum()),
                                  "chains": CHAINS, "warmup": warmup, "draws_per_chain": per_chain},
                           notes="a sampler, not an approximation: no density q, so log_q is NaN, no ELBO and no "
                                 "PSIS; elbo_draws is the mean of log_p")
        manifest = approx_manifest(self.name, self.ppl, run.manifest.get("ppl_version"), problem, settings,
                                   method=f"blackjax NUTS (the blackjax engine), {CHAINS} chains x ({warmup} warmup + "
                                          f"{per_chain} draws)",
                                   engine_manifest={k: run.manifest.get(k) for k in ("sampler", "adaptation", "init",
                                                                                     "mass_matrix", "jax_version")})
        return ApproxResult(draws=tree, timings=timings, manifest=manifest, diagnostics=diag)


APPROXIMATORS = {"blackjax-nuts-short": NutsShort()}
