"""The regression gate: a baseline of what each engine did over fixed seeds, and a statistical gate.

``python -m benchmarks baseline --config ci`` runs a named configuration (benchmarks/configs/regress.toml)
and writes a baseline file: per engine x parameterisation and per seed the reference verdict, ESS per
gradient, divergences (per chain), max R-hat and sampling time per draw, with their medians and
spreads, the settings, the seeds, every package version and the machine.

``python -m benchmarks regress --baseline FILE`` reruns the baseline's own configuration on the same
seeds and exits 1 when, for an engine x parameterisation,

* **error** - an engine that ran in the baseline now errors, times out or is unavailable;
* **verdict** - the share of seeds whose fit passes the reference check drops (one-sided Fisher's exact
  test of the pass counts, :func:`stats.pass_rate_drop_test`: it assumes nothing about how often an
  unchanged sampler fails the check, which the centred model does on most seeds by design);
* **ess_per_grad** - ESS per gradient drops beyond the baseline's seed-to-seed spread (a one-sided
  prediction bound on log scale, :func:`stats.ess_drop_test`);
* **divergences** - the divergence rate rises beyond a quasi-binomial bound (:func:`stats.divergence_rise_test`).

Time per draw is compared like ESS per gradient but only warns unless ``--strict-time`` (machines and
CI runners differ); max R-hat only warns. Each statistical check has a one-sided false-alarm rate of
at most ``ALPHA`` when nothing changed; with K checks the gate's family-wise rate is at most K x ALPHA
(union bound), which the summary states. Modules: ``thresholds`` (every constant, with its reason),
``config``, ``measure`` (through the run path), ``stats`` (pure decisions), ``gate``, ``reports``,
and the two commands ``baseline`` and ``command`` (regress).
"""
