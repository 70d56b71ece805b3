"""NumPyro's stochastic variational inference (``numpyro.infer.SVI``, ``Trace_ELBO``) on
models/numpyro_model.py with three autoguides: AutoNormal (mean-field Gaussian), AutoMultivariateNormal
(full-rank Gaussian) and AutoLaplaceApproximation (a MAP by SVI, then the Gaussian of the Hessian
there), each on NumPyro's unconstrained latent space (the suite's vector, _target.py), float64 on CPU.

Optimiser ``numpyro.optim.Adam(step_size=LEARNING_RATE)`` as in NumPyro's SVI docstring, NUM_STEPS steps
(ApproxSettings.learning_rate / iterations override them); guide initialisation (init_to_uniform,
init_scale 0.1) and one ELBO particle are NumPyro's defaults. Draws are the fitted Gaussian's, drawn
by NumPyro's distributions on the unconstrained scale; log_q is computed here from the Gaussian's
parameters (the test-suite checks it against NumPyro's own log_prob).
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np

from models.numpyro_model import build_model
from models.problem import Problem

from . import _target
from ._jax_fit import TIMING_METHOD, compiled, jax, jax_manifest, jnp, timed
from .base import (
    LIBRARY_DEFAULT,
    ApproxFailed,
    ApproxResult,
    ApproxSettings,
    ApproxTimings,
    approx_manifest,
    check_fit_args,
)

__all__ = ["APPROXIMATORS", "NumPyroSVI", "NUM_STEPS", "LEARNING_RATE"]

LEARNING_RATE = 0.0005  #: numpyro.optim.Adam's step size in NumPyro's SVI docstring example
NUM_STEPS = 20_000  #: the suite's choice (NumPyro has no default): enough for the docstring's step size here


class NumPyroSVI:
    ppl = "numpyro"

    def __init__(self, name: str, guide: str) -> None:
        self.name, self.guide = name, guide

    def availability(self) -> str | None:
        if jax is None or importlib.util.find_spec("numpyro") is None:
            return "numpyro/jax is not installed: pip install 'eight-schools-ppl[numpyro]'"
        return None

    def _guide(self, model):
        from numpyro.infer import autoguide  # optional: lazy

        return getattr(autoguide, self.guide)(model)

    def fit(self, problem: Problem, settings: ApproxSettings) -> ApproxResult:
        check_fit_args(problem, settings)
        import numpyro  # optional: lazy
        from numpyro.infer import SVI, Trace_ELBO

        t0 = time.perf_counter()
        steps = settings.iterations or NUM_STEPS
        lr = settings.learning_rate or LEARNING_RATE
        model = build_model(problem.data, problem.prior, problem.parameterization)
        guide = self._guide(model)
        svi = SVI(model, guide, numpyro.optim.Adam(step_size=lr), Trace_ELBO())
        state0 = svi.init(jax.random.fold_in(jax.random.PRNGKey(settings.seed), 0))  # sets the guide up
        perm = self._order(problem, guide, svi.get_params(state0))

        def fit(state):
            state, losses = jax.lax.scan(lambda s, _: svi.update(s), state, None, length=steps)
            return svi.get_params(state), losses

        def q(params):
            """(loc, scale) of the fitted Gaussian on the guide's latent vector: 1-D sds (AutoNormal) or
            the lower Cholesky factor (Laplace: from the Hessian at the MAP)."""
            if self.guide == "AutoNormal":
                loc, scale = self._normal_params(problem, params)
                return loc, scale
            t = guide.get_transform(params)
            return t.loc, t.scale_tril

        def draw(key, loc, scale):
            from numpyro import distributions as nd  # optional: lazy

            d = nd.Normal(loc, scale) if scale.ndim == 1 else nd.MultivariateNormal(loc, scale_tril=scale)
            return d.sample(key, (settings.draws,))

        built = time.perf_counter()
        fit_program, fit_compile = compiled(fit, state0)
        (params, losses), fit_s = timed(fit_program, state0)
        q_program, q_compile = compiled(q, params)
        (loc, scale), q_s = timed(q_program, params)
        diag_scale = scale if scale.ndim == 1 else np.diag(scale)
        if not (np.isfinite(scale).all() and np.isfinite(loc).all() and (diag_scale > 0).all()):
            raise ApproxFailed(  # NumPyro's Laplace falls back to a zero scale_tril at a singular Hessian
                f"{self.name}: the fitted Gaussian is degenerate (scale diagonal {np.round(diag_scale, 6).tolist()}, "
                f"at {np.round(loc, 3).tolist()}): " + ("the Hessian at the MAP is singular or not positive "
                                                        "definite" if self.guide == "AutoLaplaceApproximation"
                                                        else "the optimisation diverged"))
        key = jax.random.fold_in(jax.random.PRNGKey(settings.seed), 1)
        draw_program, draw_compile = compiled(draw, key, loc, scale)
        U, draw_s = timed(draw_program, key, loc, scale)
        t_q = time.perf_counter()
        U, mean = U[:, perm], loc[perm]
        if scale.ndim == 1:
            chol, cov = scale[perm], np.diag(scale[perm] ** 2)
        else:
            cov = (scale @ scale.T)[np.ix_(perm, perm)]
            chol = scale if np.array_equal(perm, np.arange(perm.size)) else np.linalg.cholesky(cov)
        lq = _target.gaussian_log_q(U, mean, chol)
        tree, lp = _target.to_datatree(problem, U, lq, "numpyro")
        draw_s += time.perf_counter() - t_q
        laplace = self.guide == "AutoLaplaceApproximation"
        diag = _target.diagnostics(
            lp, lq, elbo_final=None if laplace else -float(losses[-1]), elbo_trace_length=int(losses.size),
            evaluations=steps,
            evaluations_note=(f"gradient evaluations of log p: {steps} steps x 1 ELBO particle (derived: "
                              "NumPyro keeps no counter)" + ("; plus one Hessian at the MAP" if laplace else "")),
            extra={"q_family": "gaussian", "q_mean": mean.tolist(), "q_cov": cov.tolist(),
                   **({"map_log_density": -float(losses[-1])} if laplace else
                      {"elbo_last_100_mean": -float(np.mean(losses[-100:]))})},
            notes=("Laplace: the SVI loss of its delta guide is -log p at the point (Jacobian included), not "
                   "an ELBO: map_log_density is its last value" if laplace else ""))
        manifest = approx_manifest(
            self.name, self.ppl, numpyro.__version__, problem, settings, **jax_manifest(),
            method=f"numpyro.infer.SVI(Trace_ELBO()) with autoguide.{self.guide}",
            iterations=steps if settings.iterations else f"{steps} (suite's default; NumPyro has none)",
            optimizer=f"numpyro.optim.Adam(step_size={lr})" + (
                "" if settings.learning_rate else " (NumPyro's SVI docstring example)"),
            elbo_particles=f"1 ({LIBRARY_DEFAULT})",
            init=f"init_to_uniform(radius=2){'' if laplace else ', init_scale 0.1'} ({LIBRARY_DEFAULT}); "
                 "svi.init key fold_in(PRNGKey(seed), 0)",
            draws_from="the fitted Gaussian by numpyro.distributions on the unconstrained scale, key "
                       "fold_in(PRNGKey(seed), 1)",
            timing_method=TIMING_METHOD + " svi.init (guide set-up, eager) counts as compile_s; the Gaussian's "
                          f"parameters from the fitted guide ({q_s:.3f} s) count as fit_s.")
        timings = ApproxTimings(compile_s=(built - t0) + fit_compile + q_compile + draw_compile, fit_s=fit_s + q_s,
                                draw_s=draw_s, total_s=time.perf_counter() - t0)
        return ApproxResult(draws=tree, timings=timings, manifest=manifest, diagnostics=diag)

    def _normal_params(self, problem: Problem, params: dict):
        """AutoNormal's per-site (loc, scale) as flat vectors in the guide's site order (the model's)."""
        names = [n for n, _ in _target.blocks(problem)]
        loc = jnp.concatenate([jnp.reshape(params[f"{n}_auto_loc"], (-1,)) for n in names])
        scale = jnp.concatenate([jnp.reshape(params[f"{n}_auto_scale"], (-1,)) for n in names])
        return loc, scale

    def _order(self, problem: Problem, guide, params: dict) -> np.ndarray:
        """Column i of the suite's vector is column perm[i] of the guide's latent vector."""
        if self.guide == "AutoNormal":
            return np.arange(_target.dim(problem))  # _normal_params already puts the sites in suite order
        index = guide._unpack_latent(jnp.arange(_target.dim(problem), dtype=jnp.float64))
        return np.concatenate([np.asarray(index[n]).reshape(-1) for n, _ in _target.blocks(problem)]).astype(int)


APPROXIMATORS = {
    "numpyro-svi-normal": NumPyroSVI("numpyro-svi-normal", "AutoNormal"),
    "numpyro-svi-mvn": NumPyroSVI("numpyro-svi-mvn", "AutoMultivariateNormal"),
    "numpyro-svi-laplace": NumPyroSVI("numpyro-svi-laplace", "AutoLaplaceApproximation"),
}
