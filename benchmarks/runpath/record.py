"""The record of one run: its fields, and the rates derived from the engine's numbers.

A record is flat JSON: what ran (spec), where (machine), how long each part took, the arviz-stats
diagnostics, the reference verdict, and the error if it failed. ``error_kind`` says what kind of
failure: ``unavailable`` (the engine cannot run here), ``known-break`` (a registered upstream break,
with ``error_link``), ``error`` (the engine raised), ``timeout`` (the worker's process group was
killed at the per-run limit), ``crashed`` (the worker died: a signal, out of memory, a non-zero exit).
"""

from __future__ import annotations

__all__ = ["RECORD_FIELDS", "APPROX_RECORD_FIELDS", "ERROR_KINDS", "derive_rates", "ordered", "csv_value"]

RECORD_FIELDS = [
    "key", "digest", "section", "engine", "ppl", "ppl_version", "parameterization", "prior", "prior_text",
    "data", "data_spec", "sigma_scale", "J",
    "seed", "chains", "warmup", "draws", "target_accept", "max_treedepth",
    "compile_s", "compile_cached", "compile_reused", "first_in_process", "warmup_s", "sampling_s",
    "inference_s", "total_s",
    "min_ess_bulk", "min_ess_tail", "ess_bulk_per_s_wall", "ess_bulk_per_s", "ess_tail_per_s", "ess_phase",
    "gradient_evals", "ess_bulk_per_grad", "divergences", "divergences_per_chain", "n_draws", "max_rhat",
    "min_bfmi", "treedepth_hits", "mean_step_size",
    "check_passed", "check_max_abs_z", "check_failed",
    "engine_call_s", "diagnostics_s", "check_s", "worker_s", "harness_s",
    "error", "error_kind", "error_link", "answered_by", "machine", "worker", "cpus",
    # samplers beyond 4-chain NUTS: the device and engine options (absent: cpu, none), nested R-hat over
    # superchains (chains sharing an initial point), and tau's mean against the exact one (its bias in
    # the draws' own estimate, and z in units of its MCSE) for the samplers biased by design
    "device", "options", "max_nested_rhat", "superchains", "tau_mean_error", "tau_mean_z",
]

#: an approximate-inference run's record (``kind = "approx"``, issue 19): the spec, timings, the method's
#: own diagnostics, scores of mu, tau and log tau against the exact posterior (every scalar's scores,
#: and the energy distance, are under ``scores``), Pareto k̂ and the same scores after PSIS reweighting
_SCORE_COLUMNS = [f"{p}{q}_{f}" for p in ("", "psis_") for q in ("mu", "tau", "log_tau")
                  for f in ("mean_error", "sd_ratio", "w1", "coverage")]
APPROX_RECORD_FIELDS = [
    "key", "digest", "kind", "section", "engine", "ppl", "ppl_version", "parameterization", "prior", "prior_text",
    "data", "data_spec", "sigma_scale", "J", "seed", "draws", "iterations", "learning_rate",
    "compile_s", "fit_s", "draw_s", "total_s", "evaluations", "evaluations_note", "elbo_final", "elbo_draws",
    "khat", "khat_ok", *_SCORE_COLUMNS, "energy_z", "truly_fine", "worst", "noise_limited",
    "psis_energy_z", "psis_truly_fine", "psis_worst", "psis_noise_limited", "psis_error", "scores",
    "engine_call_s", "scoring_s", "worker_s", "harness_s",
    "error", "error_kind", "error_link", "answered_by", "machine", "worker", "cpus",
]

ERROR_KINDS = ("unavailable", "known-break", "error", "timeout", "crashed")


def _per(x: float | None, seconds: float | None) -> float | None:
    return x / seconds if x is not None and seconds else None


def derive_rates(rec: dict) -> dict:
    """ESS per second and per gradient from a finished run's numbers (in place; returns ``rec``).

    ``ess_bulk_per_s_wall`` divides by the wall time of warmup + draws, measured alike for every
    engine (the comparable figure); ``ess_bulk_per_s``/``ess_tail_per_s`` divide by the draw phase
    where the engine reports one (``ess_phase`` says which), else by warmup + draws. Compile time is
    never in a denominator. ESS per gradient evaluation is the hardware-free efficiency."""
    if rec.get("error"):
        return rec
    phase_s = rec.get("sampling_s")
    rec["ess_phase"] = "sampling" if phase_s is not None else "warmup+sampling"
    phase_s = phase_s if phase_s is not None else rec.get("inference_s")
    rec["ess_bulk_per_s"] = _per(rec.get("min_ess_bulk"), phase_s)
    rec["ess_tail_per_s"] = _per(rec.get("min_ess_tail"), phase_s)
    rec["ess_bulk_per_grad"] = _per(rec.get("min_ess_bulk"), rec.get("gradient_evals"))
    rec["ess_bulk_per_s_wall"] = _per(rec.get("min_ess_bulk"), rec.get("inference_s"))
    return rec


def ordered(rec: dict) -> dict:
    """The record with exactly its kind's fields (RECORD_FIELDS, or APPROX_RECORD_FIELDS for an
    approximation), in order (absent fields None)."""
    return {k: rec.get(k) for k in (APPROX_RECORD_FIELDS if rec.get("kind") == "approx" else RECORD_FIELDS)}


def csv_value(v):
    """A record value as a CSV cell (lists joined with ';')."""
    if isinstance(v, (list, tuple)):
        return ";".join(str(x) for x in v)
    return v
