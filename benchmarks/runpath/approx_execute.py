"""The run path's approximate-inference branch: one resolved :class:`ApproxSpec` in, one record out.

Runs inside the same worker processes as the engines (isolation, timeouts, the one writer), and
never raises for a method's failure: the record carries the error. What it adds after the fit is the
judgement (issue 19): the method's draws scored against the exact posterior (reference.scores: error
of the mean in exact sds, sd ratio, W1 against the exact CDF, exact mass in the central 90 %
interval, for mu, tau, log tau and every theta_j; the energy distance to exact draws with its null
spread), Pareto k̂ of log p - log q, and the same scores after PSIS reweighting, as a method of its own.
"""

from __future__ import annotations

import time
import traceback

import numpy as np

from reference import posterior
from reference.check import CheckInputError
from reference.scores import Scores, score, score_psis, verdict

from ..approx import availability, get_approximator
from .approx_spec import approx_settings_from_wire
from .spec import problem_from_wire

__all__ = ["execute_approx", "scores_json", "SCORED"]

#: the scalars whose scores the record keeps one column each for (every scalar is in ``scores``)
SCORED = ("mu", "tau", "log_tau")


def scores_json(s: Scores) -> dict:
    """Every scalar's score as plain JSON, and the joint energy score and PSIS summary."""
    out = {"marginals": {k: {f: (float(v) if isinstance(v, (float, np.floating)) else v)
                             for f, v in m._asdict().items()} for k, m in s.marginals.items()}}
    if s.energy is not None:
        out["energy"] = {k: (list(v) if isinstance(v, tuple) else float(v) if isinstance(v, (float, np.floating)) else v)
                         for k, v in s.energy._asdict().items()}
    if s.psis is not None:
        out["psis"] = {"khat": float(s.psis.khat), "khat_threshold": float(s.psis.khat_threshold),
                       "n_eff": float(s.psis.n_eff)}
    return out


def _flat(prefix: str, s: Scores) -> dict:
    rec = {}
    for name in SCORED:
        m = s.marginals.get(name)
        if m is None:
            continue
        rec.update({f"{prefix}{name}_mean_error": float(m.mean_error), f"{prefix}{name}_sd_ratio": float(m.sd_ratio),
                    f"{prefix}{name}_w1": float(m.w1), f"{prefix}{name}_coverage": float(m.coverage)})
    if s.energy is not None:
        rec[f"{prefix}energy_z"] = float(s.energy.z)
    v = verdict(s)
    rec[f"{prefix}truly_fine"] = bool(v.truly_fine)
    rec[f"{prefix}worst"] = "; ".join(v.failed[:4])
    rec[f"{prefix}noise_limited"] = bool(v.noise_limited)
    return rec


def execute_approx(wire: dict, base: dict) -> tuple[dict, dict | None, object | None]:
    """Fit one method and score it: (record, manifest, the draws when the spec keeps them, else None);
    ``base`` is the record's spec fields (execute's ``_base``)."""
    rec = {**base, "kind": "approx"}
    name = wire["engine"]
    problem = problem_from_wire(wire)
    settings = approx_settings_from_wire(wire)
    t0 = time.perf_counter()
    reason = availability(name)
    if reason is not None:
        rec.update(error=f"unavailable: {reason}", error_kind="unavailable", engine_call_s=time.perf_counter() - t0)
        return rec, None, None
    try:
        result = get_approximator(name).fit(problem, settings)
    except Exception as e:  # noqa: BLE001 - a failing method is a record and the job goes on
        rec.update(error=f"{type(e).__name__}: {e}".splitlines()[0][:2000], error_kind="error",
                   engine_call_s=time.perf_counter() - t0, traceback=traceback.format_exc()[-4000:])
        return rec, None, None
    rec["engine_call_s"] = time.perf_counter() - t0
    m, t, d = result.manifest, result.timings, result.diagnostics
    rec.update(ppl=m.get("ppl"), ppl_version=m.get("ppl_version"), compile_s=t.compile_s, fit_s=t.fit_s,
               draw_s=t.draw_s, total_s=t.total_s)
    if d is not None:
        rec.update(elbo_final=d.elbo_final, elbo_draws=d.elbo_draws, evaluations=d.evaluations,
                   evaluations_note=d.evaluations_note)
    t1 = time.perf_counter()
    ref = posterior(problem.data, problem.prior)
    stats = result.draws["sample_stats"]
    log_p = np.asarray(stats["log_p"].values, dtype=float).ravel()
    log_q = np.asarray(stats["log_q"].values, dtype=float).ravel()
    try:
        plain = score(result.draws, ref, seed=settings.seed)
    except CheckInputError as e:  # draws no score can use (tau overflowing to inf): the method failed
        rec.update(error=f"unusable draws: {e}"[:2000], error_kind="error", scoring_s=time.perf_counter() - t1)
        return rec, m, None
    rec.update(_flat("", plain))
    try:
        # the reweighted draws' marginal scores; the joint energy distance is the method's own (plain draws)
        weighted = score_psis(result.draws, ref, log_p, log_q, seed=settings.seed, energy=False)
    except (ValueError, FloatingPointError) as e:  # e.g. every ratio non-finite: no PSIS for this fit
        weighted = None
        rec["psis_error"] = f"{type(e).__name__}: {e}"[:300]
    if weighted is not None:
        rec["khat"] = float(weighted.psis.khat)
        rec["khat_ok"] = bool(verdict(plain, khat=weighted.psis.khat).khat_ok)
        rec.update(_flat("psis_", weighted))
    rec["scores"] = {"draws": scores_json(plain), "psis": scores_json(weighted) if weighted is not None else None}
    rec["scoring_s"] = time.perf_counter() - t1
    return rec, m, (result.draws if wire.get("save_draws") else None)
